//! Complaints from Microsoft's Junk Mail Reporting Program (Outlook.com,
//! Hotmail, Live, MSN) in Microsoft's own format: no `multipart/report`, but
//! a mail from `staff@hotmail.com` ("complaint about message from <IP>")
//! with the reported message attached. Microsoft names the reader in an
//! `X-HmXmrOriginalRecipient` header it adds to that message; every such mail
//! is a "Junk" click, so a complaint. Who it is about follows the ARF rule
//! ([`Reported::recipients`]); a mail from that sender without an attached
//! message (a programme notice) is no report and is left to the next reader.

use super::ReportSource;
use super::arf::{MICROSOFT_RECIPIENT, ORIGINAL_PARTS, Reported, complaints};
use super::message::{
    ParseError, Parsed, ReportFormat, Whole, is_one_of, original_headers, pick_return_path, short_digest, text_values,
};

/// The sender of Microsoft's feedback-loop mail.
const SENDER: &str = "staff@hotmail.com";

/// The complaint a JMRP mail makes, or `None` when the message is no JMRP mail.
pub(super) fn read(whole: &Whole<'_, '_>) -> Option<Result<Parsed, ParseError>> {
    let from = whole.message.from().and_then(|f| f.first()).and_then(|a| a.address())?;
    if !from.trim().eq_ignore_ascii_case(SENDER) {
        return None;
    }
    // The attached message, not a part of it: its parts are in its own tree.
    let original = whole.message.parts.iter().skip(1).find(|p| is_one_of(p, &ORIGINAL_PARTS))?;
    let (message_id, original_return_path) = original_headers(original);
    let return_path = pick_return_path(original_return_path.into_iter().chain(whole.delivered_to()));
    let reported = Reported {
        stated: text_values(whole.message, MICROSOFT_RECIPIENT),
        original: Some(original),
        redacted: false,
        return_path: return_path.as_deref(),
        message_id: message_id.as_deref(),
    };
    let report_id = format!("{}:{}", whole.report_id(), short_digest(original.contents()));
    let reports = complaints(
        ReportSource::Jmrp,
        &reported.recipients(),
        return_path.as_deref(),
        message_id.as_deref(),
        "abuse report from Microsoft JMRP",
        &report_id,
    );
    Some(Ok(Parsed { format: ReportFormat::Jmrp, reports, ignored: 0 }))
}

#[cfg(test)]
mod tests {
    use super::super::ReportKind;
    use super::super::message::parse;
    use super::*;

    /// sisimai's arf-22: a JMRP mail as Microsoft sends it.
    const JMRP: &str = include_str!("../../tests/fixtures/bounces/arf-22.eml");

    #[test]
    fn a_jmrp_mail_is_a_complaint_about_the_recipient_microsoft_names() {
        let parsed = parse(JMRP.as_bytes(), None).unwrap();
        assert_eq!(parsed.format, ReportFormat::Jmrp);
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::Complaint);
        assert_eq!(report.source, ReportSource::Jmrp);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("kijitora@example.com"));
        assert_eq!(report.message_id.as_deref(), Some("<0000000000fffffffff0000000000000@example.com>"));
        assert_eq!(report.detail, "abuse report from Microsoft JMRP");
        let id = report.report_id.as_deref().unwrap();
        assert!(id.starts_with("<CAT0-NNE-000000000000000022@CAT0-RRR.example.org>:"), "{id}");
        assert!(id.ends_with("#kijitora@example.com"), "{id}");
    }

    #[test]
    fn without_microsofts_header_the_reported_to_names_the_reader() {
        let without = JMRP.replace("X-HmXmrOriginalRecipient: kijitora@example.com\n", "");
        let parsed = parse(without.as_bytes(), None).unwrap();
        assert_eq!(parsed.reports[0].recipient.as_ref().map(|r| r.as_str()), Some("kijitora@example.com"));
        // Microsoft's header wins over the To it may have left in.
        let moved = JMRP.replace("To: kijitora@example.com\n", "To: someone-else@example.com\n");
        let parsed = parse(moved.as_bytes(), None).unwrap();
        assert_eq!(parsed.reports[0].recipient.as_ref().map(|r| r.as_str()), Some("kijitora@example.com"));
    }

    #[test]
    fn only_microsofts_mail_with_a_message_attached_is_read_as_jmrp() {
        let stranger = JMRP.replace("From: staff@hotmail.com", "From: someone@hotmail.com");
        assert_eq!(parse(stranger.as_bytes(), None), Err(ParseError::NotAReport));
        let notice = "From: staff@hotmail.com\nTo: fbl@example.com\nSubject: Welcome to JMRP\n\nYou are enrolled.\n";
        assert_eq!(parse(notice.as_bytes(), None), Err(ParseError::NotAReport));
    }
}
