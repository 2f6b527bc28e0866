//! Abuse reports (RFC 5965, the Abuse Reporting Format): what a mailbox
//! provider's feedback loop sends when a reader presses "Report spam".
//!
//! An ARF report is `multipart/report; report-type=feedback-report` with a
//! `message/feedback-report` part (`Feedback-Type`, and often
//! `Original-Mail-From` — our envelope sender, so the VERP address — and
//! `Original-Rcpt-To`) and the reported message or its headers. Only
//! `Feedback-Type: abuse` is a complaint; the other types (`not-spam`,
//! `auth-failure`, `fraud`, `virus`, `other`) ask nothing of a list.

use mail_parser::MessagePart;

use super::message::{Fields, ParseError, Parsed, ReportFormat, Whole, is_one_of, original_headers, pick_return_path};
use super::{Report, ReportKind, ReportSource};
use crate::domain::EmailAddress;

const ORIGINAL_PARTS: [&str; 4] = ["message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"];

pub(super) fn read(whole: &Whole<'_, '_>, report: &MessagePart<'_>) -> Result<Parsed, ParseError> {
    let children = whole.children(report);
    let feedback = children
        .iter()
        .find(|p| is_one_of(p, &["message/feedback-report"]))
        .ok_or(ParseError::MissingPart("abuse report", "message/feedback-report"))?;
    let body = String::from_utf8_lossy(feedback.contents());
    let fields = Fields::groups(&body).into_iter().next().unwrap_or_default();
    let Some(feedback_type) = fields.get("Feedback-Type") else {
        return Err(ParseError::MissingPart("abuse report", "Feedback-Type field"));
    };
    let mut parsed = Parsed { format: ReportFormat::Arf, reports: vec![], ignored: 0 };
    if !feedback_type.eq_ignore_ascii_case("abuse") {
        parsed.ignored = 1;
        return Ok(parsed);
    }
    let (message_id, original_return_path) =
        children.iter().find(|p| is_one_of(p, &ORIGINAL_PARTS)).map_or((None, None), |p| original_headers(p));
    let mail_from = fields.address("Original-Mail-From").map(str::to_owned);
    let return_path = pick_return_path(mail_from.into_iter().chain(original_return_path).chain(whole.delivered_to()));
    // Only the envelope recipient the provider states: the reported message's
    // To header is often redacted, and a wrong recipient must not match.
    let recipient = fields.address("Original-Rcpt-To").and_then(|a| EmailAddress::parse(a).ok());
    let user_agent = fields.get("User-Agent").unwrap_or("an unnamed feedback loop");
    parsed.reports.push(Report {
        kind: ReportKind::Complaint,
        source: ReportSource::Arf,
        recipient,
        return_path,
        message_id,
        detail: format!("abuse report from {user_agent}"),
        reason: None,
        report_id: Some(whole.report_id()),
    });
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::super::message::parse;
    use super::*;

    /// RFC 5965 appendix B.2's shape.
    fn arf(feedback_type: &str, extra: &str) -> String {
        format!(
            "From: <abusedesk@example.com>\r\n\
             Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n\
             Subject: FW: Earn money\r\n\
             To: <abuse@example.net>\r\n\
             Message-ID: <20030712040037.46341.5F8J@example.com>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report;\r\n\
             \x20    boundary=\"part1_13d.2e68ed54_boundary\"\r\n\
             \r\n\
             --part1_13d.2e68ed54_boundary\r\n\
             Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             \r\n\
             This is an email abuse report for an email message received from IP\r\n\
             192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n\
             \r\n\
             --part1_13d.2e68ed54_boundary\r\n\
             Content-Type: message/feedback-report\r\n\
             \r\n\
             Feedback-Type: {feedback_type}\r\n\
             User-Agent: SomeGenerator/1.0\r\n\
             Version: 1\r\n\
             {extra}\
             Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n\
             Source-IP: 192.0.2.1\r\n\
             Reported-Domain: example.net\r\n\
             \r\n\
             --part1_13d.2e68ed54_boundary\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Disposition: inline\r\n\
             \r\n\
             From: <news@example.net>\r\n\
             Received: from mailserver.example.net (mailserver.example.net\r\n\
             \x20   [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;\r\n\
             \x20   Thu, 08 Mar 2005 14:00:00 -0400\r\n\
             To: <Undisclosed Recipients>\r\n\
             Subject: Earn money\r\n\
             MIME-Version: 1.0\r\n\
             Content-type: text/plain\r\n\
             Message-ID: <8787.0123456789abcdef@example.net>\r\n\
             Date: Thu, 02 Sep 2004 12:31:03 -0500\r\n\
             \r\n\
             Spam Spam Spam\r\n\
             --part1_13d.2e68ed54_boundary--\r\n"
        )
    }

    #[test]
    fn an_abuse_report_is_a_complaint() {
        let extra = "Original-Mail-From: <bounces+8787-00112233aabbccdd@example.net>\r\n\
                     Original-Rcpt-To: <user@example.com>\r\n";
        let parsed = parse(arf("abuse", extra).as_bytes(), None).unwrap();
        assert_eq!(parsed.format, ReportFormat::Arf);
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::Complaint);
        assert_eq!(report.source, ReportSource::Arf);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("user@example.com"));
        assert_eq!(report.return_path.as_deref(), Some("bounces+8787-00112233aabbccdd@example.net"));
        assert_eq!(report.message_id.as_deref(), Some("<8787.0123456789abcdef@example.net>"));
        assert_eq!(report.report_id.as_deref(), Some("<20030712040037.46341.5F8J@example.com>"));
        assert_eq!(report.detail, "abuse report from SomeGenerator/1.0");
    }

    #[test]
    fn a_redacted_report_still_names_the_message() {
        let parsed = parse(arf("abuse", "").as_bytes(), None).unwrap();
        let report = &parsed.reports[0];
        assert_eq!(report.recipient, None);
        assert_eq!(report.return_path, None);
        assert_eq!(report.message_id.as_deref(), Some("<8787.0123456789abcdef@example.net>"));
    }

    #[test]
    fn other_feedback_types_ask_for_nothing() {
        for kind in ["not-spam", "auth-failure", "other"] {
            let parsed = parse(arf(kind, "").as_bytes(), None).unwrap();
            assert_eq!((parsed.reports.len(), parsed.ignored), (0, 1), "{kind}");
        }
        let without = arf("abuse", "").replace("message/feedback-report", "text/plain");
        assert!(matches!(parse(without.as_bytes(), None), Err(ParseError::MissingPart("abuse report", _))));
    }
}
