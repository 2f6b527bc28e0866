//! Bounces and complaints that come back after the SMTP reply: a DSN days
//! after a 250 (RFC 3464), a reader's "Report spam" through a provider's
//! feedback loop (ARF, RFC 5965, or Microsoft's JMRP), or a provider's
//! notification (SES, Postmark) by webhook or, for SES, by mail.
//!
//! Every source is parsed at its edge into a [`Report`]; [`Feedback::apply`]
//! holds the rules, the same for all of them. A report is matched to the
//! delivery it is about by the signed VERP return path or by the Message-ID
//! Bulletin set (both carry the delivery id under a MAC, so nobody can forge
//! one), and only when neither is there by the recipient's address.
//!
//! - each bounce is classed by its cause, the same rule table as at SMTP time
//!   ([`BounceCause`]): the remote's words first, the status code second;
//! - a hard bounce (the address is gone) suppresses the address at once;
//! - a refusal for the sender's reasons (blocklist, policy, DMARC, content)
//!   suppresses nobody: it is counted against the issue and logged;
//! - soft bounces are counted, and `bounces.soft_bounce_limit` of them within
//!   `bounces.soft_bounce_days` suppress it;
//! - a complaint unsubscribes the reader from that newsletter (recorded as a
//!   withdrawal of consent), suppresses the address, and counts against the
//!   issue, which pauses itself past `bounces.pause_complaint_rate`.
//!
//! Applying the same report twice (a maildir run again, a webhook retried)
//! changes nothing the second time.

pub mod arf;
pub mod dsn;
mod generic;
mod jmrp;
mod message;
mod plain;
mod postmark;
mod ses;
mod ses_mail;
pub mod sns;
pub mod webhook;

use crate::clock::Clock;
use crate::config::BounceSettings;
use crate::domain::delivery_tag::{delivery_of_message_id, delivery_of_return_path};
use crate::domain::{Bounce, BounceCause, BounceReason, ConsentSource, EmailAddress, LinkKeys, ReturnPath, Tagged};
use crate::store::{Consent, DAY, FeedbackEvent, Store, StoreError};

pub use message::{ParseError, Parsed, ReportFormat, parse};

/// What came back, whatever it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// The address is gone: unknown user, no such domain (see [`BounceCause::Gone`]; SES `Permanent`).
    HardBounce,
    /// The mailbox may take mail again: full, rate-limited, expired, any 4.x.x, and
    /// permanent refusals nothing explains ([`BounceCause::Soft`]; SES `Transient`).
    SoftBounce,
    /// Refused for the sender's reasons after a 250: policy, reputation, a
    /// blocklist, SPF/DKIM/DMARC, content ([`BounceCause::Sender`]). Never
    /// suppresses the reader; counted against the issue.
    SenderRefused,
    /// The reader marked the message as spam.
    Complaint,
}

impl ReportKind {
    /// As stored in `feedback_events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardBounce => "hard_bounce",
            Self::SoftBounce => "soft_bounce",
            Self::SenderRefused => "sender_refused",
            Self::Complaint => "complaint",
        }
    }

    /// The kind of bounce a cause makes.
    pub fn of_cause(cause: BounceCause) -> Self {
        match cause {
            BounceCause::Gone => Self::HardBounce,
            BounceCause::Soft => Self::SoftBounce,
            BounceCause::Sender => Self::SenderRefused,
        }
    }

    /// A provider's own verdict (SES `Permanent`, Postmark `HardBounce`) read
    /// again with the remote's words it passed on: a "permanent" quota or
    /// blocklist refusal is not a gone address. With no words that explain
    /// anything the provider's verdict stands.
    pub fn with_words(self, detail: &str) -> Self {
        let permanent = match self {
            Self::HardBounce => true,
            Self::SoftBounce => false,
            Self::SenderRefused | Self::Complaint => return self,
        };
        Bounce::by_words(detail, permanent).map_or(self, |bounce| Self::of_cause(bounce.cause))
    }
}

/// Where a report came from: kept with it, and in the consent record of a complaint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportSource {
    /// A delivery status notification read by `bounces ingest`.
    Dsn,
    /// An abuse report in the Abuse Reporting Format read by `bounces ingest`.
    Arf,
    /// A complaint in the format of Microsoft's Junk Mail Reporting Program read by `bounces ingest`.
    Jmrp,
    /// Amazon SES through SNS.
    Ses,
    Postmark,
    /// Bulletin's documented generic JSON webhook.
    Generic,
}

impl ReportSource {
    /// As stored in `feedback_events.source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dsn => "dsn",
            Self::Arf => "arf",
            Self::Jmrp => "jmrp",
            Self::Ses => "ses",
            Self::Postmark => "postmark",
            Self::Generic => "generic",
        }
    }
}

/// One bounce or complaint about one recipient, parsed from its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    pub source: ReportSource,
    /// The recipient the report is about, when the source names it.
    pub recipient: Option<EmailAddress>,
    /// The original message's envelope sender (VERP), when the source carries it.
    pub return_path: Option<String>,
    /// The original message's Message-ID (with angle brackets), when the source carries it.
    pub message_id: Option<String>,
    /// The remote's status and diagnostic ("5.1.1 user unknown"), for the record; no address in it.
    pub detail: String,
    /// Why, as read from the remote's words and status; `None` for complaints
    /// and for a provider's verdict that came with no words to read.
    pub reason: Option<BounceReason>,
    /// Identifies the report itself (the DSN's or ARF report's own Message-ID, the SNS MessageId),
    /// so the same report applied twice counts once.
    pub report_id: Option<String>,
}

impl Report {
    /// The RFC 3463 status the report gives (`5.1.1`): the first one in its
    /// detail, which opens with the DSN's `Status` field where there is one.
    pub fn status(&self) -> Option<&str> {
        self.detail.split(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '(' | ')' | '[' | ']')).find(|word| {
            let mut parts = word.split('.');
            let class = parts.next().filter(|c| matches!(*c, "2" | "4" | "5"));
            let rest: Vec<&str> = parts.collect();
            class.is_some()
                && rest.len() == 2
                && rest.iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
    }
}

/// What applying a report did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Applied {
    /// The address is suppressed now (a hard bounce, or the soft bounce that reached the limit).
    Suppressed,
    /// Refused for the sender's reasons: recorded against the issue, the reader left alone.
    SenderRefused,
    /// A soft bounce was counted; `count` within the window so far.
    #[serde(rename = "counted")]
    SoftBounceCounted { count: u32 },
    /// The reader was unsubscribed and suppressed; `paused_issue` when the issue paused itself.
    Unsubscribed { paused_issue: Option<i64> },
    /// This report was applied before: nothing changed.
    Duplicate,
    /// No delivery or subscriber matches: nothing changed.
    Unmatched,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The rules for reports, over the store.
#[derive(Clone)]
pub struct Feedback {
    store: Store,
    keys: LinkKeys,
    clock: Clock,
    settings: BounceSettings,
    /// `bounces.return_path` parsed, to tell a garbled VERP address on it from a plain sender.
    return_path: Option<ReturnPath>,
    /// The domain our Message-IDs are on (`mail.from`'s), to tell a garbled
    /// id of ours from another system's id that happens to share its shape.
    message_id_domain: Option<String>,
}

/// Whom a report is about, once matched.
#[derive(Debug, Clone, Copy)]
struct Target {
    subscriber_id: i64,
    delivery_id: Option<i64>,
    issue_id: Option<i64>,
    /// The newsletter a complaint unsubscribes from; `None`: every one (a
    /// confirmation mail, or a report matched by address alone).
    newsletter_id: Option<i64>,
}

impl Feedback {
    pub fn new(store: Store, keys: LinkKeys, clock: Clock, settings: BounceSettings) -> Self {
        let return_path = ReturnPath::parse(&settings.return_path);
        Self { store, keys, clock, settings, return_path, message_id_domain: None }
    }

    /// Reads a Message-ID that does not verify as a forgery only on `domain`
    /// (where Bulletin makes its Message-IDs); elsewhere it is someone else's.
    pub fn with_message_id_domain(mut self, domain: &str) -> Self {
        self.message_id_domain = Some(domain.to_ascii_lowercase());
        self
    }

    /// Whether `message_id` is on our Message-ID domain (always, when it is not known).
    fn on_our_domain(&self, message_id: &str) -> bool {
        let domain = message_id.trim().trim_end_matches('>').rsplit_once('@').map(|(_, d)| d.trim());
        match (&self.message_id_domain, domain) {
            (Some(ours), Some(domain)) => domain.eq_ignore_ascii_case(ours),
            _ => true,
        }
    }

    /// Matches `report` to its delivery (or subscriber) and acts on it.
    #[tracing::instrument(skip_all, fields(kind = report.kind.as_str(), source = report.source.as_str()))]
    pub async fn apply(&self, report: &Report) -> Result<Applied, FeedbackError> {
        let Some(target) = self.target(report).await? else {
            tracing::info!("report matches no delivery or subscriber: nothing changed");
            return Ok(Applied::Unmatched);
        };
        let now = self.clock.now();
        let detail = without_addresses(&report.detail);
        // Kept as a digest: a report's id may name its recipient (SES's does),
        // and the record outlives an erasure.
        let report_key = report.report_id.as_deref().map(|id| {
            use sha2::Digest as _;
            crate::domain::token::hex(&sha2::Sha256::digest(id.as_bytes()))
        });
        let event = FeedbackEvent {
            subscriber_id: target.subscriber_id,
            delivery_id: target.delivery_id,
            issue_id: target.issue_id,
            kind: report.kind.as_str(),
            source: report.source.as_str(),
            detail: &detail,
            report_id: report_key.as_deref(),
            at: now,
        };
        let applied = match report.kind {
            ReportKind::HardBounce => self.store.record_hard_bounce(&event).await?.map(|()| Applied::Suppressed),
            ReportKind::SenderRefused => {
                let recorded = self.store.record_sender_refusal(&event).await?;
                if recorded.is_some() {
                    // Once per report, in words: the operator's problem, not the reader's.
                    tracing::warn!(
                        issue = target.issue_id,
                        detail = %detail,
                        "refused for the sender's reasons after sending (policy, reputation, blocklist, \
                         authentication or content): no reader suppressed; check the sending IP's reputation, SPF, DKIM and DMARC"
                    );
                }
                recorded.map(|()| Applied::SenderRefused)
            }
            ReportKind::SoftBounce => {
                let since = now - i64::from(self.settings.soft_bounce_days) * DAY;
                let limit = i64::from(self.settings.soft_bounce_limit);
                self.store.record_soft_bounce(&event, limit, since).await?.map(|(count, suppressed)| {
                    if suppressed {
                        Applied::Suppressed
                    } else {
                        Applied::SoftBounceCounted { count: u32::try_from(count).unwrap_or(u32::MAX) }
                    }
                })
            }
            ReportKind::Complaint => {
                let consent = Consent { source: ConsentSource::Complaint, ip: None, user_agent: None, at: now };
                let outcome = self
                    .store
                    .record_complaint(&event, target.newsletter_id, &consent, |complaints, delivered| {
                        self.pause_reason(complaints, delivered)
                    })
                    .await?;
                outcome.map(|o| Applied::Unsubscribed { paused_issue: target.issue_id.filter(|_| o.paused) })
            }
        };
        let applied = applied.unwrap_or(Applied::Duplicate);
        tracing::info!(delivery = target.delivery_id, issue = target.issue_id, applied = ?applied, "report applied");
        Ok(applied)
    }

    /// The delivery the report names by VERP, else by Message-ID, and only
    /// when it carries neither, the subscriber with the report's recipient
    /// address. A key that does not verify, a delivery since erased, or one
    /// whose reader is not the report's recipient matches nothing.
    async fn target(&self, report: &Report) -> Result<Option<Target>, StoreError> {
        let by_message_id = match report.message_id.as_deref() {
            None => Tagged::Untagged,
            Some(id) => match delivery_of_message_id(&self.keys, id) {
                // Our shape on another domain (`<digits>.<16 hex>@mf36.sendgrid.net`): not ours at all.
                Tagged::Forged if !self.on_our_domain(id) => Tagged::Untagged,
                tagged => tagged,
            },
        };
        let by_return_path = report
            .return_path
            .as_deref()
            .map_or(Tagged::Untagged, |path| delivery_of_return_path(&self.keys, self.return_path.as_ref(), path));
        let tagged = match by_return_path {
            Tagged::Untagged => by_message_id,
            found => found,
        };
        match tagged {
            Tagged::Forged => Ok(None),
            Tagged::Delivery(id, nonce) => {
                let Some(delivery) = self.store.feedback_delivery(id).await? else { return Ok(None) };
                if report.recipient.as_ref().is_some_and(|r| r.key() != delivery.email_key) {
                    return Ok(None);
                }
                // A VERP address carries no nonce; the report's Message-ID for the same delivery may.
                let nonce = nonce.or(match by_message_id {
                    Tagged::Delivery(named, nonce) if named == id => nonce,
                    _ => None,
                });
                // The same id and secret from another database (staging, a restored backup): not this mail.
                if nonce.is_some() && nonce != delivery.message_nonce {
                    tracing::info!(
                        delivery = id,
                        "report names a delivery of another database that shares the secret: not matched"
                    );
                    return Ok(None);
                }
                Ok(Some(Target {
                    subscriber_id: delivery.subscriber_id,
                    delivery_id: Some(delivery.id),
                    issue_id: delivery.issue_id,
                    newsletter_id: delivery.newsletter_id,
                }))
            }
            Tagged::Untagged => {
                let Some(recipient) = &report.recipient else { return Ok(None) };
                Ok(self.store.subscriber_by_email(recipient).await?.map(|s| Target {
                    subscriber_id: s.id,
                    delivery_id: None,
                    issue_id: None,
                    newsletter_id: None,
                }))
            }
        }
    }

    /// Why an issue with these counts pauses itself, or `None` while it may go on:
    /// complaints / delivered at or past `pause_complaint_rate`, with at least
    /// `pause_min_complaints` complaints.
    fn pause_reason(&self, complaints: i64, delivered: i64) -> Option<String> {
        let rate = self.settings.pause_complaint_rate;
        if rate <= 0.0 || complaints < i64::from(self.settings.pause_min_complaints) {
            return None;
        }
        // A division, not `complaints >= rate * delivered`: 0.003 * 1000 is a hair above 3.
        let observed = if delivered > 0 { complaints as f64 / delivered as f64 } else { f64::INFINITY };
        (observed >= rate).then(|| {
            format!(
                "paused after {complaints} spam complaint(s) on {delivered} delivered ({:.2} %, bounces.pause_complaint_rate is {:.2} %); \
                 check the content and the list's consent before `bulletin issue resume`",
                observed.min(1.0) * 100.0,
                rate * 100.0
            )
        })
    }
}

/// A remote's diagnostic with every address in it replaced, so the record keeps no address.
fn without_addresses(detail: &str) -> String {
    let words: Vec<String> = detail
        .split_whitespace()
        .map(|word| if word.contains('@') { "<address>".to_owned() } else { word.to_owned() })
        .collect();
    let mut text = words.join(" ");
    if text.len() > 500 {
        let mut end = 500;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The webhooks apply reports inside axum handlers, whose futures must be `Send`.
    #[test]
    fn apply_can_run_on_any_worker_thread() {
        fn is_send<T: Send>(_: T) {}
        let _ = |feedback: &Feedback, report: &Report| is_send(feedback.apply(report));
    }

    #[test]
    fn a_status_is_read_from_the_detail() {
        let report = |detail: &str| Report {
            kind: ReportKind::HardBounce,
            source: ReportSource::Dsn,
            recipient: None,
            return_path: None,
            message_id: None,
            detail: detail.to_owned(),
            reason: None,
            report_id: None,
        };
        assert_eq!(report("5.1.1 smtp; 550 5.1.1 <address> User unknown").status(), Some("5.1.1"));
        assert_eq!(report("smtp;552 5.2.2 Quota exceeded").status(), Some("5.2.2"));
        assert_eq!(report("5.7.606 smtp; 550 banned sending IP [192.0.2.1]").status(), Some("5.7.606"));
        assert_eq!(report("550 Requested action not taken from 192.0.2.1").status(), None);
        assert_eq!(report("").status(), None);
    }

    #[test]
    fn details_keep_no_address() {
        assert_eq!(
            without_addresses("smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected"),
            "smtp; 550 5.1.1 <address> Recipient address rejected"
        );
        assert_eq!(without_addresses("  5.2.2   mailbox full "), "5.2.2 mailbox full");
    }
}
