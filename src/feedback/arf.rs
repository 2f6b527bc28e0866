//! Abuse reports (RFC 5965, the Abuse Reporting Format): what a mailbox
//! provider's feedback loop sends when a reader presses "Report spam".
//!
//! An ARF report is `multipart/report; report-type=feedback-report` with a
//! `message/feedback-report` part (`Feedback-Type`, and often
//! `Original-Mail-From` — our envelope sender, so the VERP address — and
//! `Original-Rcpt-To`, once per recipient) and the reported message or its
//! headers. Only `Feedback-Type: abuse` is a complaint; the other types
//! (`not-spam`, `auth-failure`, `fraud`, `virus`, `other`) ask nothing of a list.
//!
//! A report about several recipients is one complaint per recipient, each
//! with its own id, so each is applied once. Who the recipients are is
//! [`Reported::recipients`]' rule, which Microsoft's own format (`jmrp.rs`) shares.

use mail_parser::{Message, MessagePart};

use super::message::{
    Fields, ParseError, Parsed, ReportFormat, Whole, is_one_of, original_headers, per_recipient_id, pick_return_path,
    short_digest, text_values, with_original,
};
use super::webhook::recipient;
use super::{Report, ReportKind, ReportSource};
use crate::domain::EmailAddress;
use crate::domain::delivery_tag::has_tag_shape;

pub(super) const ORIGINAL_PARTS: [&str; 4] =
    ["message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"];

/// The header Microsoft's feedback loop puts on the reported message: the
/// address it was delivered to, as the provider states it.
pub(super) const MICROSOFT_RECIPIENT: &str = "X-HmXmrOriginalRecipient";

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
    let original = children.iter().copied().find(|p| is_one_of(p, &ORIGINAL_PARTS));
    let (message_id, original_return_path) = original.map_or((None, None), original_headers);
    let mail_from = fields.address("Original-Mail-From").map(str::to_owned);
    let return_path = pick_return_path(mail_from.into_iter().chain(original_return_path).chain(whole.delivered_to()));
    // `Removal-Recipient` is the older drafts' name for the same field.
    let stated = [fields.addresses("Original-Rcpt-To"), fields.addresses("Removal-Recipient")].concat();
    let reported = Reported {
        stated: stated.into_iter().map(str::to_owned).collect(),
        original,
        redacted: fields.get("Redacted-Address").is_some(),
        return_path: return_path.as_deref(),
        message_id: message_id.as_deref(),
    };
    let user_agent = fields.get("User-Agent").unwrap_or("an unnamed feedback loop");
    // Its own id with a digest of what it reports: reports that share a
    // Message-ID are still told apart.
    let report_id = format!("{}:{}", whole.report_id(), short_digest(feedback.contents()));
    parsed.reports = complaints(
        ReportSource::Arf,
        &reported.recipients(),
        return_path.as_deref(),
        message_id.as_deref(),
        &format!("abuse report from {user_agent}"),
        &report_id,
    );
    Ok(parsed)
}

/// What a complaint says, and shows, about whom it is about.
pub(super) struct Reported<'a, 'p> {
    /// The envelope recipients the report states (`Original-Rcpt-To`).
    pub stated: Vec<String>,
    /// The reported message (or its headers), when attached.
    pub original: Option<&'a MessagePart<'p>>,
    /// The provider says it hid addresses (`Redacted-Address`).
    pub redacted: bool,
    pub return_path: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

impl Reported<'_, '_> {
    /// The recipients a complaint is about, best evidence first: the
    /// envelope recipients the provider states (the report's own fields, else
    /// Microsoft's header on the reported message); else, only when nothing
    /// else can name the delivery, the reported message's single `To`.
    ///
    /// That `To` is no envelope: providers redact it, lists and Bcc put
    /// someone else there. So it is not taken from a report that says it
    /// redacted addresses, nor when it is a stand-in (`redacted@`, `xxxx@`, a
    /// hash), nor from a report whose return path or Message-ID has the
    /// shape of our tags: such a report matches its delivery by the tag or
    /// nothing, and a header-made recipient must not veto that match.
    pub fn recipients(&self) -> Vec<EmailAddress> {
        let mut found = unique(self.stated.iter().map(String::as_str));
        if found.is_empty() {
            let stamped = self.original_headers(|m| text_values(m, MICROSOFT_RECIPIENT)).unwrap_or_default();
            found = unique(stamped.iter().map(String::as_str));
        }
        if found.is_empty() && !self.redacted && !has_tag_shape(self.return_path, self.message_id) {
            let to = self.original_headers(single_to).flatten();
            found.extend(to.as_deref().and_then(recipient).filter(|address| !is_stand_in(address)));
        }
        found
    }

    fn original_headers<T>(&self, read: impl FnOnce(&Message<'_>) -> T) -> Option<T> {
        self.original.and_then(|part| with_original(part, read))
    }
}

/// One complaint per recipient (or, when none is known, one that only its
/// return path or Message-ID can match), each with its own id.
pub(super) fn complaints(
    source: ReportSource,
    recipients: &[EmailAddress],
    return_path: Option<&str>,
    message_id: Option<&str>,
    detail: &str,
    report_id: &str,
) -> Vec<Report> {
    let report = |n: usize, recipient: Option<&EmailAddress>| Report {
        kind: ReportKind::Complaint,
        source,
        recipient: recipient.cloned(),
        return_path: return_path.map(str::to_owned),
        message_id: message_id.map(str::to_owned),
        detail: detail.to_owned(),
        reason: None,
        report_id: Some(per_recipient_id(report_id, recipient, n)),
    };
    if recipients.is_empty() {
        return vec![report(0, None)];
    }
    recipients.iter().enumerate().map(|(n, r)| report(n, Some(r))).collect()
}

/// The addresses that parse, each once.
fn unique<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Vec<EmailAddress> {
    let mut found: Vec<EmailAddress> = vec![];
    for address in addresses.into_iter().filter_map(recipient) {
        if !found.iter().any(|f| f.key() == address.key()) {
            found.push(address);
        }
    }
    found
}

/// The one address in `To`, when there is exactly one.
fn single_to(message: &Message<'_>) -> Option<String> {
    let mut addresses = message.to()?.iter();
    let only = addresses.next()?.address()?.to_owned();
    addresses.next().is_none().then_some(only)
}

/// Whether an address is a provider's stand-in for one it hid: a word
/// (`redacted@`, `undisclosed@`), a mask (`xxxx@`, `****@`) or a hash.
fn is_stand_in(address: &EmailAddress) -> bool {
    let local = address.as_str().rsplit_once('@').map_or("", |(local, _)| local).to_ascii_lowercase();
    let masked = local.chars().all(|c| matches!(c, 'x' | '*' | '#' | '_' | '.' | '-'));
    let hashed = local.len() >= 32 && local.chars().all(|c| c.is_ascii_hexdigit());
    let said = ["redacted", "undisclosed", "hidden", "removed", "anonymi"].iter().any(|w| local.contains(w));
    masked || hashed || said
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
        // Its Message-ID, a digest of what it reports, the recipient.
        let id = report.report_id.as_deref().unwrap();
        assert!(id.starts_with("<20030712040037.46341.5F8J@example.com>:"), "{id}");
        assert!(id.ends_with("#user@example.com"), "{id}");
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

    fn recipients_of(report: &str) -> Vec<Option<String>> {
        let parsed = parse(report.as_bytes(), None).unwrap();
        parsed.reports.iter().map(|r| r.recipient.as_ref().map(|a| a.as_str().to_owned())).collect()
    }

    #[test]
    fn a_report_about_several_recipients_is_a_complaint_about_each() {
        let extra = "Original-Rcpt-To: <ada@example.com>\r\n\
                     Original-Rcpt-To: bo@example.com\r\n\
                     Original-Rcpt-To: <ADA@example.com>\r\n\
                     Removal-Recipient: cy@example.org\r\n";
        let parsed = parse(arf("abuse", extra).as_bytes(), None).unwrap();
        let named: Vec<_> = parsed.reports.iter().map(|r| r.recipient.as_ref().unwrap().as_str()).collect();
        assert_eq!(named, ["ada@example.com", "bo@example.com", "cy@example.org"], "each once");
        let ids: std::collections::HashSet<_> = parsed.reports.iter().map(|r| r.report_id.clone().unwrap()).collect();
        assert_eq!(ids.len(), 3, "each with its own id: {ids:?}");
        assert!(
            parsed
                .reports
                .iter()
                .all(|r| r.kind == ReportKind::Complaint && r.message_id == parsed.reports[0].message_id)
        );
        // The same report read again has the same ids; another report under the same Message-ID has others.
        let again = parse(arf("abuse", extra).as_bytes(), None).unwrap();
        assert_eq!(again.reports, parsed.reports);
        let other = parse(arf("abuse", &extra.replace("bo@", "dee@")).as_bytes(), None).unwrap();
        assert_ne!(other.reports[0].report_id, parsed.reports[0].report_id);
    }

    /// A report with no recipient field about a message of someone else's
    /// (no tag of ours), whose `To` is `to`.
    fn untagged(to: &str, extra: &str) -> String {
        arf("abuse", extra)
            .replace("To: <Undisclosed Recipients>", &format!("To: {to}"))
            .replace("<8787.0123456789abcdef@example.net>", "<CAF=abc@mail.example.net>")
    }

    #[test]
    fn without_a_stated_recipient_the_reported_to_is_taken_when_it_can_be_trusted() {
        let reader = Some("reader@example.com".to_owned());
        assert_eq!(recipients_of(&untagged("Reader <reader@example.com>", "")), [reader]);
        // The provider says it hid addresses, or the To is a stand-in: nobody.
        let said = untagged("reader@example.com", "Redacted-Address: redacted@\r\n");
        assert_eq!(recipients_of(&said), [None]);
        for stand_in in ["redacted@example.net", "xxxxxxxx@example.com", "0123456789abcdef0123456789abcdef@example.com"]
        {
            assert_eq!(recipients_of(&untagged(stand_in, "")), [None], "{stand_in}");
        }
        // A list's or several readers' To names no one reader.
        assert_eq!(recipients_of(&untagged("reader@example.com, other@example.com", "")), [None]);
        assert_eq!(recipients_of(&untagged("\"undisclosed\"", "")), [None]);
        // A report our tags can match is matched by them or by nothing: no header recipient may veto it.
        let verp =
            untagged("reader@example.com", "Original-Mail-From: <bounces+8787-00112233aabbccdd@example.net>\r\n");
        assert_eq!(recipients_of(&verp), [None]);
        let ours = untagged("reader@example.com", "")
            .replace("<CAF=abc@mail.example.net>", "<8787.0123456789abcdef@example.net>");
        assert_eq!(recipients_of(&ours), [None]);
        // The envelope recipient the report states wins over the To.
        let stated = untagged("reader@example.com", "Original-Rcpt-To: envelope@example.org\r\n");
        assert_eq!(recipients_of(&stated), [Some("envelope@example.org".to_owned())]);
    }

    #[test]
    fn microsofts_header_on_the_reported_message_states_its_recipient() {
        let stamped = arf("abuse", "").replace(
            "From: <news@example.net>\r\n",
            "X-HmXmrOriginalRecipient: <reader@outlook.example.com>\r\nFrom: <news@example.net>\r\n",
        );
        // Stated by the provider: taken even beside a tag of ours.
        assert_eq!(recipients_of(&stamped), [Some("reader@outlook.example.com".to_owned())]);
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
