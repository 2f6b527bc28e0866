//! Delivery status notifications (RFC 3464): the bounce a mail server sends
//! back, days after it took a message, when it finally could not deliver it.
//!
//! A DSN is `multipart/report; report-type=delivery-status` with a
//! `message/delivery-status` part (a per-message group of fields, then one
//! group per recipient) and usually the original message or its headers.
//! Per recipient: `Action: failed` is a bounce whose kind its status and
//! diagnostic decide ([`BounceCause`]: gone, soft or the sender's problem;
//! `4.x.x`, the server gave up retrying, is never gone); `delayed`,
//! `delivered`, `relayed` and `expanded` call for nothing.

use mail_parser::{MessagePart, MimeHeaders, PartType};

use super::message::{
    Fields, ParseError, Parsed, ReportFormat, Whole, is_one_of, original_headers, per_recipient_id, pick_return_path,
    short_digest, status_of,
};
use super::plain;
use super::{Report, ReportKind, ReportSource};
use crate::domain::{Bounce, EmailAddress, SmtpStage};

const STATUS_PARTS: [&str; 2] = ["message/delivery-status", "message/global-delivery-status"];
const ORIGINAL_PARTS: [&str; 4] = ["message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"];

pub(super) fn read(whole: &Whole<'_, '_>, report: &MessagePart<'_>) -> Result<Parsed, ParseError> {
    let children = whole.children(report);
    let status = children
        .iter()
        .find(|p| is_one_of(p, &STATUS_PARTS))
        .ok_or(ParseError::MissingPart("delivery status notification", "message/delivery-status"))?;
    let (message_id, original_return_path) =
        children.iter().find(|p| is_one_of(p, &ORIGINAL_PARTS)).map_or((None, None), |p| original_headers(p));
    let return_path = pick_return_path(whole.delivered_to().into_iter().chain(original_return_path));
    let body = String::from_utf8_lossy(status.contents());
    let groups = Fields::groups(&body);
    // The first group is about the message; each further one about a
    // recipient. Some MTAs (AOL's, McAfee's) run the two together or leave
    // the first out: a group that names a recipient is about one wherever it stands.
    let recipients = groups.iter().enumerate().filter(|(n, g)| {
        (*n > 0 || recipient_field(g).is_some()) && (g.get("Action").is_some() || g.get("Status").is_some())
    });
    // The command a refusal answered is often named only in the words for people
    // (Postfix's "in reply to end of DATA command", Sendmail's transcript).
    // That part comes first (RFC 3462), often with no Content-Type of its own.
    let notice = children.first().filter(|p| !is_one_of(p, &STATUS_PARTS)).and_then(|p| p.text_contents());
    // Its own id with a digest of what it reports: reports that share a
    // Message-ID (some MTAs reuse one) are still told apart.
    let report_id = format!("{}:{}", whole.report_id(), short_digest(status.contents()));
    let mut parsed = Parsed { format: ReportFormat::Dsn, reports: vec![], ignored: 0 };
    let recipients: Vec<&Fields> = recipients.map(|(_, g)| g).collect();
    let single = recipients.len() == 1;
    // What the notice says of each recipient, for groups that carry no words of
    // the remote's (OpenSMTPD writes `Status: 5.0.0` alone, the reply in the notice).
    let named = notice.map(|text| plain::recipients(&text.replace("\r\n", "\n"), &plain::own_addresses(whole.message)));
    for (n, fields) in recipients.into_iter().enumerate() {
        let recipient = recipient_field(fields).and_then(|a| EmailAddress::parse(a).ok()).or_else(|| {
            // A garbled one (Sendmail's `RFC822; @mx.example.org`): the
            // notice's words name it when the report is about one recipient.
            single.then(|| notice_recipient(whole, &children)).flatten()
        });
        let detail = detail(fields, named.as_deref(), recipient.as_ref());
        let stage = SmtpStage::named_in(&detail).or_else(|| {
            let notice = notice?;
            if single {
                SmtpStage::named_in(notice)
            } else {
                SmtpStage::named_about(notice, recipient.as_ref()?.as_str())
            }
        });
        let Some(bounce) = bounce_of(fields, &detail, stage) else {
            parsed.ignored += 1;
            continue;
        };
        // One DSN may be about several recipients: each is its own report.
        let id = per_recipient_id(&report_id, recipient.as_ref(), n);
        parsed.reports.push(Report {
            kind: ReportKind::of_cause(bounce.cause),
            source: ReportSource::Dsn,
            recipient,
            return_path: return_path.clone(),
            message_id: message_id.clone(),
            detail,
            reason: Some(bounce.reason),
            report_id: Some(id),
        });
    }
    if parsed.reports.is_empty() && parsed.ignored == 0 {
        return Err(ParseError::MissingPart("delivery status notification", "per-recipient Action and Status"));
    }
    Ok(parsed)
}

/// The recipient a group names: its Original-Recipient, else its Final-Recipient.
fn recipient_field(fields: &Fields) -> Option<&str> {
    fields.address("Original-Recipient").or_else(|| fields.address("Final-Recipient"))
}

/// The one recipient the report's human-readable part names, if it names exactly one.
fn notice_recipient(whole: &Whole<'_, '_>, children: &[&MessagePart<'_>]) -> Option<EmailAddress> {
    let notice = children.iter().find(|p| matches!(p.body, PartType::Text(_)) && !p.is_content_type("text", "html"))?;
    let text = notice.text_contents()?.replace("\r\n", "\n");
    let found = plain::recipients(&text, &plain::own_addresses(whole.message));
    match found.as_slice() {
        [(address, _)] => EmailAddress::parse(address).ok(),
        _ => None,
    }
}

/// What one recipient's fields call for: a bounce judged by its cause
/// (see [`Bounce`]) and the stage it came at, or nothing.
fn bounce_of(fields: &Fields, detail: &str, stage: Option<SmtpStage>) -> Option<Bounce> {
    let action = fields.get("Action")?.to_ascii_lowercase();
    if action.split_whitespace().next() != Some("failed") {
        return None;
    }
    let permanent = match status(fields)?.chars().next() {
        Some('5') => true,
        Some('4') => false,
        _ => return None,
    };
    Some(Bounce::at(stage, detail, permanent))
}

/// The recipient's status; without a Status field (McAfee's reports), the
/// one its Diagnostic-Code names.
fn status(fields: &Fields) -> Option<String> {
    match fields.get("Status") {
        Some(status) => Some(status.trim().to_owned()),
        None => status_of(fields.get("Diagnostic-Code")?),
    }
}

/// `5.1.1 smtp; 550 5.1.1 … user unknown`: the status and the remote's
/// words, from the Diagnostic-Code, else from what the notice (`named`: each
/// address it names with its lines) says of this recipient.
fn detail(fields: &Fields, named: Option<&[(String, String)]>, recipient: Option<&EmailAddress>) -> String {
    let status = status(fields).unwrap_or_default();
    let diagnostic = fields.get("Diagnostic-Code").map(str::to_owned).or_else(|| {
        let recipient = recipient?.as_str();
        named?.iter().find(|(address, _)| address.eq_ignore_ascii_case(recipient)).map(|(_, words)| words.clone())
    });
    format!("{status} {}", diagnostic.unwrap_or_default()).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::message::parse;
    use super::*;

    /// RFC 3464 appendix's shape, as Postfix writes it.
    fn dsn(action: &str, status: &str, original: &str) -> String {
        format!(
            "Return-Path: <>\r\n\
             X-Original-To: bounces+17-0123456789abcdef@news.example.com\r\n\
             Delivered-To: bounces+17-0123456789abcdef@news.example.com\r\n\
             From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             To: bounces+17-0123456789abcdef@news.example.com\r\n\
             Message-Id: <20261128.ABC123@mx.example.com>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"B1/mx.example.com\"\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --B1/mx.example.com\r\n\
             Content-Description: Notification\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients.\r\n\
             \r\n\
             --B1/mx.example.com\r\n\
             Content-Description: Delivery report\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.example.com\r\n\
             X-Postfix-Queue-ID: ABC123\r\n\
             Arrival-Date: Sat, 28 Nov 2026 10:00:00 +0000 (UTC)\r\n\
             \r\n\
             Final-Recipient: rfc822; reader@example.org\r\n\
             Original-Recipient: rfc822;reader@example.org\r\n\
             Action: {action}\r\n\
             Status: {status}\r\n\
             Remote-MTA: dns; mail.example.org\r\n\
             Diagnostic-Code: smtp; 550 {status} <reader@example.org>:\r\n\
             \x20   Recipient address rejected: User unknown\r\n\
             \r\n\
             --B1/mx.example.com\r\n\
             {original}\
             --B1/mx.example.com--\r\n"
        )
    }

    const HEADERS: &str = "Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         Return-Path: <bounces+17-0123456789abcdef@news.example.com>\r\n\
         From: Morning Briefing <news@example.com>\r\n\
         To: reader@example.org\r\n\
         Message-ID: <17.fedcba9876543210@example.com>\r\n\
         Subject: First light\r\n\
         \r\n";

    #[test]
    fn a_failed_recipient_is_a_bounce() {
        let parsed = parse(dsn("failed", "5.1.1", HEADERS).as_bytes(), None).unwrap();
        assert_eq!(parsed.format, ReportFormat::Dsn);
        assert_eq!(parsed.ignored, 0);
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::HardBounce);
        assert_eq!(report.source, ReportSource::Dsn);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("reader@example.org"));
        assert_eq!(report.message_id.as_deref(), Some("<17.fedcba9876543210@example.com>"));
        assert_eq!(report.return_path.as_deref(), Some("bounces+17-0123456789abcdef@news.example.com"));
        let id = report.report_id.clone().unwrap();
        assert!(id.starts_with("<20261128.ABC123@mx.example.com>:") && id.ends_with("#reader@example.org"), "{id}");
        // The same report again is the same report; another under the same Message-ID is not.
        let again = parse(dsn("failed", "5.1.1", HEADERS).as_bytes(), None).unwrap();
        assert_eq!(again.reports[0].report_id.as_deref(), Some(id.as_str()));
        let other = parse(dsn("failed", "5.1.2", HEADERS).as_bytes(), None).unwrap();
        assert_ne!(other.reports[0].report_id.as_deref(), Some(id.as_str()));
        assert!(report.detail.starts_with("5.1.1 smtp; 550 5.1.1"), "{}", report.detail);
        assert!(report.detail.ends_with("Recipient address rejected: User unknown"), "{}", report.detail);

        let soft = parse(dsn("failed", "4.2.2", HEADERS).as_bytes(), None).unwrap();
        assert_eq!(soft.reports[0].kind, ReportKind::SoftBounce);
        for action in ["delayed", "delivered", "relayed", "expanded"] {
            let none = parse(dsn(action, "4.4.1", HEADERS).as_bytes(), None).unwrap();
            assert_eq!((none.reports.len(), none.ignored), (0, 1), "{action}");
        }
    }

    #[test]
    fn the_envelope_recipient_and_the_whole_original_count_too() {
        let original = "Content-Type: message/rfc822\r\n\r\n\
             Return-Path: <news@example.com>\r\n\
             Message-ID: <99.0011223344556677@example.com>\r\n\
             Subject: x\r\n\r\nBody\r\n\r\n";
        let raw =
            dsn("failed", "5.2.1", original).replace("X-Original-To", "X-Other").replace("Delivered-To", "X-Else");
        let parsed = parse(raw.as_bytes(), Some("bounces+99-aaaaaaaaaaaaaaaa@news.example.com")).unwrap();
        let report = &parsed.reports[0];
        assert_eq!(report.message_id.as_deref(), Some("<99.0011223344556677@example.com>"));
        assert_eq!(report.return_path.as_deref(), Some("bounces+99-aaaaaaaaaaaaaaaa@news.example.com"));
        let plain = parse(raw.as_bytes(), None).unwrap();
        assert_eq!(plain.reports[0].return_path.as_deref(), Some("news@example.com"));
    }

    fn corpus(name: &str) -> Vec<(Option<String>, ReportKind, String)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces").join(name);
        let parsed = parse(&std::fs::read(path).unwrap(), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.format, ReportFormat::Dsn, "{name}");
        let status = |r: &Report| r.detail.split_whitespace().next().unwrap_or_default().to_owned();
        parsed
            .reports
            .iter()
            .map(|r| (r.recipient.as_ref().map(|a| a.as_str().to_owned()), r.kind, status(r)))
            .collect()
    }

    #[test]
    fn a_recipient_group_is_one_wherever_it_stands() {
        let hard = |a: &str, s: &str| vec![(Some(a.to_owned()), ReportKind::HardBounce, s.to_owned())];
        // AOL runs the per-message and per-recipient fields together in one group.
        assert_eq!(corpus("rhost-aol-04.eml"), hard("kijitora@example.co.jp", "5.1.1"));
        assert_eq!(corpus("rhost-aol-01.eml"), hard("kijitora@example.jp", "5.4.4"));
        // McAfee: no per-message group, no Status (its Diagnostic-Code has it), in multipart/mixed.
        assert_eq!(corpus("lhost-mcafee-02.eml"), hard("kijitora@example.jp", "5.1.1"));
    }

    #[test]
    fn a_group_without_words_takes_the_notices_words_for_its_recipient() {
        // OpenSMTPD: `Status: 5.0.0` and no Diagnostic-Code; each recipient's
        // reply is in the notice, and each is judged by its own.
        assert_eq!(
            corpus("lhost-opensmtpd-17.eml"),
            vec![
                (Some("userunknown@libsisimai.net".to_owned()), ReportKind::HardBounce, "5.0.0".to_owned()),
                (Some("mailboxfull@libsisimai.net".to_owned()), ReportKind::SoftBounce, "5.0.0".to_owned()),
            ]
        );
    }

    #[test]
    fn a_garbled_recipient_is_the_one_the_notice_names() {
        // Sendmail's `Final-Recipient: RFC822; @mx.example.org`; the notice says `<kijitora@example.org>`.
        assert_eq!(
            corpus("lhost-sendmail-15.eml"),
            [(Some("kijitora@example.org".to_owned()), ReportKind::HardBounce, "5.1.2".to_owned())]
        );
    }

    #[test]
    fn other_mail_is_refused_with_a_reason() {
        assert_eq!(parse(b"", None), Err(ParseError::NotAMessage));
        assert!(parse(b"\x00\x01garbage without headers", None).is_err());
        let plain = "From: a@example.org\r\nSubject: hello\r\n\r\nJust a note.\r\n";
        assert_eq!(parse(plain.as_bytes(), None), Err(ParseError::NotAReport));
        let no_status = dsn("failed", "5.1.1", HEADERS).replace("message/delivery-status", "text/plain");
        assert!(matches!(parse(no_status.as_bytes(), None), Err(ParseError::MissingPart(..))));
        assert!(!ParseError::NotAReport.to_string().contains('\n'));
    }
}
