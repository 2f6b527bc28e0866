//! Postmark's bounce and spam-complaint webhooks as [`Report`]s.
//!
//! A `Bounce` record's `Type` decides: `HardBounce` and `BadEmailAddress` are
//! hard bounces; `SoftBounce` and `DnsError` soft ones; `SpamComplaint` (also
//! its own `SpamComplaint` record) is a complaint. Every other type says
//! nothing about the address or the reader (`Transient`: only delayed, Postmark
//! retries; `AutoResponder`, `AddressChange`, `Unsubscribe`, `Subscribe`,
//! `ChallengeVerification`, `SpamNotification`, `VirusNotification`,
//! `OpenRelayTest`, `Blocked`, `ManuallyDeactivated`, `DMARCPolicy`, `Unknown`,
//! ...) and is ignored, as are Delivery, Open, Click and SubscriptionChange records.
//!
//! Postmark's `MessageID` is its own, not the Message-ID Bulletin set, so a
//! report names the recipient only, unless `Metadata` carries `message_id`
//! or `return_path`.

use std::collections::HashMap;

use serde::Deserialize;

use super::webhook::{Parsed, detail, message_id, recipient};
use super::{Report, ReportKind, ReportSource};
use crate::domain::BounceReason;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    record_type: String,
    #[serde(rename = "ID", default)]
    id: Option<serde_json::Value>,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, serde_json::Value>>,
}

/// Reads one Postmark webhook body.
pub fn parse(body: &[u8]) -> Result<Parsed, String> {
    let record: Record =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a Postmark webhook: {e}"))?;
    if !matches!(record.record_type.as_str(), "Bounce" | "SpamComplaint") {
        return Ok(Parsed { reports: vec![], ignored: 1 });
    }
    let kind_name =
        record.kind.as_deref().unwrap_or(if record.record_type == "SpamComplaint" { "SpamComplaint" } else { "" });
    // Postmark's bounce types (its "Bounce webhook" docs); the ones about the
    // message or the sender, not the address, never suppress the reader.
    let (kind, typed) = match kind_name {
        "HardBounce" => (ReportKind::HardBounce, None),
        "BadEmailAddress" => (ReportKind::HardBounce, Some(BounceReason::UserUnknown)),
        // "Transient" is a delay, like a DSN's `delayed`: nothing failed yet.
        "SoftBounce" => (ReportKind::SoftBounce, None),
        "DnsError" => (ReportKind::SoftBounce, Some(BounceReason::Temporary)),
        "Blocked" => (ReportKind::SenderRefused, Some(BounceReason::Blocked)),
        "DMARCPolicy" => (ReportKind::SenderRefused, Some(BounceReason::AuthFailure)),
        "SpamNotification" | "VirusNotification" => (ReportKind::SenderRefused, Some(BounceReason::Filtered)),
        "SpamComplaint" => (ReportKind::Complaint, None),
        _ => return Ok(Parsed { reports: vec![], ignored: 1 }),
    };
    let email = record.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let email = email.ok_or_else(|| format!("a Postmark {} record has no Email", record.record_type))?;
    let metadata = |key: &str| {
        let value = record.metadata.as_ref()?.get(key)?.as_str()?.trim();
        (!value.is_empty()).then(|| value.to_owned())
    };
    let said = record.details.as_deref().filter(|d| !d.trim().is_empty()).or(record.description.as_deref());
    let text = match said {
        Some(said) => format!("Postmark {kind_name}: {said}"),
        None => format!("Postmark {kind_name}"),
    };
    let id = match &record.id {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(Parsed {
        reports: vec![Report {
            kind: kind.with_words(&text),
            source: ReportSource::Postmark,
            recipient: recipient(email),
            return_path: metadata("return_path"),
            message_id: metadata("message_id").as_deref().and_then(message_id),
            detail: detail(&text),
            reason: BounceReason::by_words(&text).or(typed),
            report_id: id.map(|id| format!("postmark:{}:{id}", record.record_type)),
        }],
        ignored: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Postmark's documented bounce webhook example.
    const BOUNCE: &str = r#"{
      "RecordType": "Bounce",
      "MessageStream": "outbound",
      "ID": 4323372036854775807,
      "Type": "HardBounce",
      "TypeCode": 1,
      "Name": "Hard bounce",
      "Tag": "Test",
      "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
      "Metadata" : {"a_key" : "a_value", "b_key": "b_value"},
      "ServerID": 23,
      "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
      "Details": "smtp;550 5.1.1 The email account john@example.com does not exist",
      "Email": "john@example.com",
      "From": "sender@example.com",
      "BouncedAt": "2019-11-05T16:33:54.9070259Z",
      "DumpAvailable": true,
      "Inactive": true,
      "CanActivate": true,
      "Subject": "Test subject",
      "Content": "<Full dump of bounce>"
    }"#;

    /// Postmark's documented spam complaint webhook example.
    const COMPLAINT: &str = r#"{
      "RecordType": "SpamComplaint",
      "MessageStream": "outbound",
      "ID": 42,
      "Type": "SpamComplaint",
      "TypeCode": 100001,
      "Name": "Spam complaint",
      "Tag": "Test",
      "MessageID": "00000000-0000-0000-0000-000000000000",
      "Metadata" : {"message_id" : "abc@bulletin.example"},
      "ServerID": 1234,
      "Description": "",
      "Details": "Test spam complaint details",
      "Email": "john@example.com",
      "From": "sender@example.com",
      "BouncedAt": "2019-11-05T16:33:54.9070259Z",
      "DumpAvailable": true,
      "Inactive": true,
      "CanActivate": false,
      "Subject": "Test subject",
      "Content": "<Abuse report dump>"
    }"#;

    #[test]
    fn a_hard_bounce_names_the_recipient_only() {
        let parsed = parse(BOUNCE.as_bytes()).unwrap();
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::HardBounce);
        assert_eq!(report.source, ReportSource::Postmark);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("john@example.com"));
        assert_eq!(report.message_id, None, "Postmark's MessageID is not ours");
        assert_eq!(report.return_path, None);
        assert_eq!(report.detail, "Postmark HardBounce: smtp;550 5.1.1 The email account <address> does not exist");
        assert_eq!(report.report_id.as_deref(), Some("postmark:Bounce:4323372036854775807"));
    }

    #[test]
    fn a_spam_complaint_is_a_complaint_and_metadata_may_carry_our_message_id() {
        let parsed = parse(COMPLAINT.as_bytes()).unwrap();
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::Complaint);
        assert_eq!(report.message_id.as_deref(), Some("<abc@bulletin.example>"));
        assert_eq!(report.report_id.as_deref(), Some("postmark:SpamComplaint:42"));
    }

    #[test]
    fn types_map_and_non_bounces_are_ignored() {
        for (kind, expected) in [
            ("SoftBounce", Some(ReportKind::SoftBounce)),
            ("DnsError", Some(ReportKind::SoftBounce)),
            ("BadEmailAddress", Some(ReportKind::HardBounce)),
            ("SpamComplaint", Some(ReportKind::Complaint)),
            ("Transient", None),
            ("AutoResponder", None),
            ("Unsubscribe", None),
            ("Blocked", Some(ReportKind::SenderRefused)),
            ("DMARCPolicy", Some(ReportKind::SenderRefused)),
            ("SpamNotification", Some(ReportKind::SenderRefused)),
            ("ManuallyDeactivated", None),
        ] {
            let body = BOUNCE.replace("\"HardBounce\"", &format!("\"{kind}\""));
            let parsed = parse(body.as_bytes()).unwrap();
            assert_eq!(parsed.reports.first().map(|r| r.kind), expected, "{kind}");
            assert_eq!(parsed.ignored, usize::from(expected.is_none()), "{kind}");
        }
        let delivery = r#"{"RecordType":"Delivery","Recipient":"john@example.com","MessageID":"x"}"#;
        assert_eq!(parse(delivery.as_bytes()).unwrap().ignored, 1);
        assert!(parse(br#"{"Type":"HardBounce"}"#).is_err(), "no RecordType");
        assert!(parse(br#"{"RecordType":"Bounce","Type":"HardBounce"}"#).unwrap_err().contains("Email"));
        assert!(parse(b"[1,2]").is_err());
    }
}
