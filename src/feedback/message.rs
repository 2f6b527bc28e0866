//! One mail message read by `bulletin bounces ingest`: a delivery status
//! notification (RFC 3464) or an abuse report (RFC 5965), told apart by
//! their `multipart/report` type and parsed with `mail-parser`; a message
//! without that part is tried as a complaint in a provider's own shape
//! (Microsoft's JMRP, an Amazon SES notification sent by mail), then goes to
//! the plain-text bounce reader (`plain.rs`), as does a report that lacks the
//! part it promised. What they all share — the report's field groups, the
//! original message's headers, the address the report itself was delivered
//! to, the status in a remote's words — lives here.

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use super::{Report, arf, dsn, jmrp, plain, ses_mail};

/// What one message held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub format: ReportFormat,
    /// One report per recipient the message is about that calls for action.
    pub reports: Vec<Report>,
    /// Recipients or reports that call for none: a delay, a relay, a
    /// successful delivery, an ARF report of another type than abuse.
    pub ignored: usize,
}

/// Which kind of report a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    /// A delivery status notification (RFC 3464).
    Dsn,
    /// An abuse report in the Abuse Reporting Format (RFC 5965).
    Arf,
    /// A bounce in plain text (qmail, Exim, older Gmail, Exchange...): see `plain.rs`.
    Plain,
    /// A complaint from Microsoft's Junk Mail Reporting Program in its own
    /// format (the reported message attached to a mail from staff@hotmail.com).
    Jmrp,
    /// An Amazon SES notification an SNS topic sent by mail.
    Ses,
}

/// Why a message is no report Bulletin can read. The message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a mail message (no header lines)")]
    NotAMessage,
    #[error(
        "not a bounce or complaint report: neither multipart/report with report-type=delivery-status (a DSN, RFC 3464) or report-type=feedback-report (an abuse report, RFC 5965), nor a plain-text bounce from a mail daemon"
    )]
    NotAReport,
    #[error("a {0} without its {1} part")]
    MissingPart(&'static str, &'static str),
}

/// Reads one message. `envelope_recipient` is the address it was delivered
/// to when the delivering agent says so (Postfix `pipe`'s `${recipient}`):
/// with VERP, it names the delivery the report is about.
pub fn parse(raw: &[u8], envelope_recipient: Option<&str>) -> Result<Parsed, ParseError> {
    // Old Mac mail ends its lines with CR alone, which no parser reads as lines.
    let cr_only;
    let raw = if raw.contains(&b'\r') && !raw.contains(&b'\n') {
        cr_only = String::from_utf8_lossy(raw).replace('\r', "\r\n").into_bytes();
        cr_only.as_slice()
    } else {
        raw
    };
    let message = MessageParser::default().parse(raw).ok_or(ParseError::NotAMessage)?;
    if message.parts.first().is_none_or(|root| root.headers.is_empty()) {
        return Err(ParseError::NotAMessage);
    }
    let whole = Whole { message: &message, raw, envelope_recipient };
    let Some((report, report_type)) = report_part(&message) else {
        return jmrp::read(&whole)
            .or_else(|| ses_mail::read(&whole))
            .unwrap_or_else(|| plain::read(&whole).or_else(|error| forwarded(&whole, error)));
    };
    let read = match report_type.as_deref() {
        Some("delivery-status") => dsn::read(&whole, report),
        Some("feedback-report") => arf::read(&whole, report),
        _ => {
            // No (or another) report-type: go by the parts it holds.
            if has_part(&message, report, &STATUS_PARTS) {
                dsn::read(&whole, report)
            } else if has_part(&message, report, &["message/feedback-report"]) {
                arf::read(&whole, report)
            } else {
                Err(ParseError::NotAReport)
            }
        }
    };
    match read {
        // A report without the part it promised (Office 365 sends the text
        // alone; a wrong boundary hides every part) may still say in words
        // whom it is about: read it as a plain-text bounce, which asks for a
        // daemon's headers before it takes a message for one.
        Err(error @ (ParseError::MissingPart(..) | ParseError::NotAReport)) => plain::read(&whole).or(Err(error)),
        read => read,
    }
}

const STATUS_PARTS: [&str; 2] = ["message/delivery-status", "message/global-delivery-status"];

/// A bounce that names no recipient itself but carries another MTA's report
/// as its attachment (a gateway passing on the bounce it got): that report.
/// Our own mail is never a report, so an attached one is the bounce, not the
/// original. Otherwise `error` stands.
fn forwarded(whole: &Whole<'_, '_>, error: ParseError) -> Result<Parsed, ParseError> {
    if !matches!(error, ParseError::MissingPart(..)) {
        return Err(error);
    }
    let attached = whole.message.parts.iter().filter_map(|part| match &part.body {
        PartType::Message(inner) if report_part(inner).is_some() => Some(inner),
        _ => None,
    });
    for inner in attached {
        let inner_whole =
            Whole { message: inner, raw: inner.raw_message(), envelope_recipient: whole.envelope_recipient };
        if let Some((report, _)) = report_part(inner)
            && let Ok(parsed) = dsn::read(&inner_whole, report)
        {
            return Ok(parsed);
        }
    }
    Err(error)
}

/// One recipient's report within a report about several (`report_id` of the
/// whole): by the recipient's address, else by its place (`n`, from 0).
pub(super) fn per_recipient_id(report_id: &str, recipient: Option<&crate::domain::EmailAddress>, n: usize) -> String {
    match recipient {
        Some(address) => format!("{report_id}#{}", address.key()),
        None => format!("{report_id}#{}", n + 1),
    }
}

/// 16 hex digits of the SHA-256 of `bytes`: enough to tell two reports apart.
pub(super) fn short_digest(bytes: &[u8]) -> String {
    crate::domain::token::hex(&Sha256::digest(bytes)[..8])
}

/// The message being read, for the DSN and ARF readers.
pub(super) struct Whole<'a, 'x> {
    pub message: &'a Message<'x>,
    pub raw: &'a [u8],
    pub envelope_recipient: Option<&'a str>,
}

impl Whole<'_, '_> {
    /// Identifies the report: its own Message-ID, else a hash of its bytes,
    /// so a maildir run twice finds the same reports.
    pub fn report_id(&self) -> String {
        match self.message.message_id() {
            Some(id) if !id.trim().is_empty() => format!("<{}>", id.trim()),
            _ => format!("sha256:{}", crate::domain::token::hex(&Sha256::digest(self.raw))),
        }
    }

    /// The sub-parts of the report part, in order.
    pub fn children(&self, report: &MessagePart<'_>) -> Vec<&MessagePart<'_>> {
        report.sub_parts().unwrap_or_default().iter().filter_map(|id| self.message.parts.get(*id as usize)).collect()
    }

    /// Addresses the report itself was delivered to, best first: the one
    /// the delivering agent passed, then `X-Original-To` and `Delivered-To`
    /// (Postfix's local and virtual delivery add them to a maildir file).
    pub fn delivered_to(&self) -> Vec<String> {
        let mut found: Vec<String> = self.envelope_recipient.map(str::to_owned).into_iter().collect();
        for name in ["X-Original-To", "Delivered-To"] {
            found.extend(self.message.header_values(name).filter_map(|v| v.as_text()).map(|v| v.trim().to_owned()));
        }
        found.retain(|a| !a.is_empty());
        found
    }
}

/// The `multipart/report` part (the message itself, or one inside it) and
/// its report-type; else a multipart holding a delivery-status part (McAfee
/// sends one in `multipart/mixed`), with no report-type.
fn report_part<'a, 'x>(message: &'a Message<'x>) -> Option<(&'a MessagePart<'x>, Option<String>)> {
    let report = message.parts.iter().find(|part| part.is_content_type("multipart", "report")).map(|part| {
        let report_type = part.content_type().and_then(|ct| ct.attribute("report-type")).map(str::to_ascii_lowercase);
        (part, report_type)
    });
    report.or_else(|| {
        message
            .parts
            .iter()
            .find(|part| matches!(part.body, PartType::Multipart(_)) && has_part(message, part, &STATUS_PARTS))
            .map(|part| (part, None))
    })
}

fn has_part(message: &Message<'_>, report: &MessagePart<'_>, types: &[&str]) -> bool {
    report
        .sub_parts()
        .unwrap_or_default()
        .iter()
        .filter_map(|id| message.parts.get(*id as usize))
        .any(|part| is_one_of(part, types))
}

/// Whether `part` has one of these `type/subtype`s.
pub(super) fn is_one_of(part: &MessagePart<'_>, types: &[&str]) -> bool {
    types.iter().any(|t| t.split_once('/').is_some_and(|(ty, sub)| part.is_content_type(ty, sub)))
}

/// A group of `Name: value` fields (RFC 3464's per-message and per-recipient
/// groups, RFC 5965's report), read with mail-parser: names compared without
/// case, folded values unfolded.
#[derive(Debug, Default)]
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    /// Splits a report body into its groups (separated by blank lines).
    pub fn groups(body: &str) -> Vec<Fields> {
        let body = body.replace("\r\n", "\n");
        let mut groups = vec![];
        let mut current = String::new();
        for line in body.lines() {
            if line.trim().is_empty() {
                if !current.is_empty() {
                    groups.push(Self::read(&current));
                    current.clear();
                }
            } else {
                current.push_str(line);
                current.push_str("\r\n");
            }
        }
        if !current.is_empty() {
            groups.push(Self::read(&current));
        }
        groups.retain(|g| !g.0.is_empty());
        groups
    }

    /// The fields of one group.
    fn read(group: &str) -> Self {
        let text = format!("{group}\r\n");
        let Some(parsed) = MessageParser::default().parse_headers(text.as_bytes()) else { return Self::default() };
        Self(parsed.headers_raw().map(|(name, value)| (name.to_ascii_lowercase(), unfold(value))).collect())
    }

    /// The first value of the field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// `type; address` (Final-Recipient, Original-Recipient, Original-Rcpt-To
    /// may go without the type): the address, when the type is rfc822 or absent.
    pub fn address(&self, name: &str) -> Option<&str> {
        address_of(self.get(name)?)
    }

    /// The addresses of every field `name` (Original-Rcpt-To may appear once per recipient), in order.
    pub fn addresses(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.0.iter().filter(|(n, _)| *n == name).filter_map(|(_, v)| address_of(v)).collect()
    }
}

/// The address of a `type; address` value, when the type is rfc822 or absent.
fn address_of(value: &str) -> Option<&str> {
    let address = match value.split_once(';') {
        Some((kind, address)) if kind.trim().eq_ignore_ascii_case("rfc822") => address,
        Some(_) => return None,
        None => value,
    };
    Some(address.trim().trim_start_matches('<').trim_end_matches('>').trim()).filter(|a| !a.is_empty())
}

/// A header value on one line.
fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The original message's Message-ID (in angle brackets) and Return-Path,
/// from a `message/rfc822` part or a `text/rfc822-headers` one.
pub(super) fn original_headers(part: &MessagePart<'_>) -> (Option<String>, Option<String>) {
    with_original(part, |message| {
        let id = message.message_id().map(|id| format!("<{}>", id.trim()));
        let return_path = message.return_path().as_text().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        (id, return_path)
    })
    .unwrap_or_default()
}

/// `read` over the original message of a `message/rfc822` part, or over the
/// headers of a `text/rfc822-headers` one.
pub(super) fn with_original<T>(part: &MessagePart<'_>, read: impl FnOnce(&Message<'_>) -> T) -> Option<T> {
    match &part.body {
        PartType::Message(message) => Some(read(message)),
        _ => {
            let text = format!("{}\r\n\r\n", part.text_contents().unwrap_or_default().trim_end());
            MessageParser::default().parse_headers(text.as_bytes()).map(|m| read(&m))
        }
    }
}

/// Every value of the header `name` of `message`, as text.
pub(super) fn text_values(message: &Message<'_>, name: &str) -> Vec<String> {
    message.header_values(name).filter_map(|v| v.as_text()).map(|v| v.trim().to_owned()).collect()
}

/// The return path to match a report by: the first address with a `+` tag
/// (a VERP address) among `candidates`, else the first one.
pub(super) fn pick_return_path(candidates: impl IntoIterator<Item = String>) -> Option<String> {
    let candidates: Vec<String> = candidates.into_iter().filter(|c| !c.trim().is_empty()).collect();
    let tagged = |c: &&String| c.rsplit_once('@').is_some_and(|(local, _)| local.contains('+'));
    candidates.iter().find(tagged).or(candidates.first()).cloned()
}

/// The RFC 3463 status in `text` (`5.1.1`, qmail's `#5.1.1`), else one made
/// of the SMTP reply code (`550` gives `5.0.0`).
pub(super) fn status_of(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split(|c: char| c.is_whitespace() || "()#[];:,<>-".contains(c)).collect();
    let enhanced = words.iter().map(|w| w.trim_end_matches(['.', ':'])).find(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if let Some(status) = enhanced {
        return Some(status.to_owned());
    }
    words.iter().map(|w| w.trim_end_matches(':')).find(|w| smtp_code(w)).map(|code| format!("{}.0.0", &code[..1]))
}

/// A three-digit SMTP reply code of a failure (`550`, `452`).
pub(super) fn smtp_code(word: &str) -> bool {
    word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) && matches!(&word[..1], "4" | "5")
}
