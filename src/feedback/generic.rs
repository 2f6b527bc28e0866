//! Bulletin's own webhook form, for any provider or script that can post JSON:
//!
//! ```json
//! {"type": "hard_bounce" | "soft_bounce" | "complaint",
//!  "email": "reader@example.com", "message_id": "<…>", "return_path": "bounces+…@…",
//!  "detail": "5.1.1 user unknown", "id": "provider-event-id"}
//! ```
//!
//! One object or an array of them. `type` and at least one of `email`,
//! `message_id` and `return_path` are required; the rest is optional. The
//! whole body is checked before anything is applied, so a bad entry changes nothing.

use serde::Deserialize;

use super::webhook::{Parsed, detail, message_id};
use super::{Report, ReportKind, ReportSource};
use crate::domain::{BounceReason, EmailAddress};

/// More entries than this in one body are refused: split them.
pub const MAX_ENTRIES: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    return_path: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    HardBounce,
    SoftBounce,
    Complaint,
}

/// What the form looks like, for error messages.
pub const SHAPE: &str = r#"{"type": "hard_bounce"|"soft_bounce"|"complaint", "email"?: "...", "message_id"?: "<...>", "return_path"?: "...", "detail"?: "...", "id"?: "..."} or an array of them"#;

/// Reads a generic webhook body; `Err` says which entry is wrong and why.
pub fn parse(body: &[u8]) -> Result<Parsed, String> {
    let entries = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<Entry>>(body).map_err(json_error)?,
        _ => vec![serde_json::from_slice::<Entry>(body).map_err(json_error)?],
    };
    if entries.len() > MAX_ENTRIES {
        return Err(format!("at most {MAX_ENTRIES} entries in one request; split them"));
    }
    let reports = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| report(entry).map_err(|e| format!("entry {}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parsed { reports, ignored: 0 })
}

fn json_error(e: serde_json::Error) -> String {
    if e.is_data() { format!("expected {SHAPE}: {e}") } else { format!("the body is not valid JSON: {e}") }
}

fn report(entry: Entry) -> Result<Report, String> {
    let text = |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let recipient = text(entry.email)
        .map(|email| EmailAddress::parse(&email).map_err(|e| format!("email is not a valid address ({e})")))
        .transpose()?;
    let message_id = match text(entry.message_id) {
        Some(id) => Some(message_id(&id).ok_or("message_id is not a Message-ID such as <id@host>")?),
        None => None,
    };
    let return_path = text(entry.return_path);
    if recipient.is_none() && message_id.is_none() && return_path.is_none() {
        return Err("give at least one of email, message_id and return_path".into());
    }
    let kind = match entry.kind {
        Kind::HardBounce => ReportKind::HardBounce,
        Kind::SoftBounce => ReportKind::SoftBounce,
        Kind::Complaint => ReportKind::Complaint,
    };
    let said = text(entry.detail).unwrap_or_else(|| format!("{kind:?} reported by webhook"));
    // A provider's event id may cover several entries of one post (one event,
    // many recipients): the key names the entry too, so each applies once.
    let about = [recipient.as_ref().map(EmailAddress::as_str), message_id.as_deref(), return_path.as_deref()]
        .map(Option::unwrap_or_default)
        .join(" ");
    let report_id = text(entry.id).map(|id| format!("generic:{id}:{}:{about}", kind.as_str()));
    Ok(Report {
        kind: kind.with_words(&said),
        source: ReportSource::Generic,
        recipient,
        return_path,
        message_id,
        detail: detail(&said),
        reason: BounceReason::by_words(&said),
        report_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_or_an_array() {
        let one = br#"{"type":"hard_bounce","email":"reader@example.com","id":"ev-1","detail":"5.1.1 user unknown"}"#;
        let parsed = parse(one).unwrap();
        let [report] = parsed.reports.as_slice() else { panic!("{parsed:?}") };
        assert_eq!(report.kind, ReportKind::HardBounce);
        assert_eq!(report.source, ReportSource::Generic);
        assert_eq!(report.recipient.as_ref().map(|r| r.as_str()), Some("reader@example.com"));
        assert_eq!(report.detail, "5.1.1 user unknown");
        assert_eq!(report.report_id.as_deref(), Some("generic:ev-1:hard_bounce:reader@example.com  "));

        let many = br#"[{"type":"soft_bounce","return_path":"bounces+x@example.com"},
                        {"type":"complaint","message_id":"abc@example.com"}]"#;
        let parsed = parse(many).unwrap();
        assert_eq!(parsed.reports.len(), 2);
        assert_eq!(parsed.reports[0].kind, ReportKind::SoftBounce);
        assert_eq!(parsed.reports[0].return_path.as_deref(), Some("bounces+x@example.com"));
        assert_eq!(parsed.reports[1].message_id.as_deref(), Some("<abc@example.com>"));
        assert_eq!(parsed.reports[1].detail, "Complaint reported by webhook");
        assert!(parse(b"[]").unwrap().reports.is_empty());
    }

    #[test]
    fn entries_sharing_an_id_are_reports_of_their_own() {
        let body = br#"[{"type":"hard_bounce","email":"a@example.com","id":"ev-1"},
                        {"type":"hard_bounce","email":"b@example.com","id":"ev-1"},
                        {"type":"complaint","email":"a@example.com","id":"ev-1"}]"#;
        let ids: Vec<_> = parse(body).unwrap().reports.into_iter().map(|r| r.report_id.unwrap()).collect();
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2], "{ids:?}");
        let again: Vec<_> = parse(body).unwrap().reports.into_iter().map(|r| r.report_id.unwrap()).collect();
        assert_eq!(ids, again, "the same post twice is the same reports");
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        for (body, says) in [
            ("{", "not valid JSON"),
            (r#"{"type":"bounce","email":"a@example.com"}"#, "unknown variant `bounce`"),
            (r#"{"type":"hard_bounce","email":"a@example.com","extra":1}"#, "unknown field `extra`"),
            (r#"{"type":"hard_bounce"}"#, "at least one of email"),
            (r#"{"type":"hard_bounce","email":"not an address"}"#, "email is not a valid address"),
            (r#"[{"type":"complaint","email":"a@example.com"},{"email":"b@example.com"}]"#, "missing field `type`"),
            (r#"[{"type":"complaint","email":"a@example.com"},{"type":"complaint","email":"x"}]"#, "entry 2"),
            (r#"{"type":"complaint","message_id":"<>"}"#, "message_id is not a Message-ID"),
            ("42", "expected"),
        ] {
            let error = parse(body.as_bytes()).unwrap_err();
            assert!(error.contains(says), "{body}: {error}");
        }
        let too_many =
            format!("[{}]", vec![r#"{"type":"complaint","email":"a@example.com"}"#; MAX_ENTRIES + 1].join(","));
        assert!(parse(too_many.as_bytes()).unwrap_err().contains("split them"));
    }
}
