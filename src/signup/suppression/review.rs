//! `suppressions review`: bounce suppressions read again by today's rule
//! table ([`Bounce`]), to find and lift those that were never the reader's
//! fault.
//!
//! Before bounces were classed by cause, every `5.x.x` in a report
//! suppressed its reader for ever: a full mailbox, the sending IP on a
//! blocklist, a DMARC refusal. The detail each hard bounce was recorded with
//! (`feedback_events.detail`, or a `bounced` delivery's reply at sending
//! time) is read again here. A suppression stands while any of its records
//! still reads as gone; suppressions from the soft-bounce limit, a complaint
//! or an import have no hard-bounce record and are never listed.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::clock::Timestamp;
use crate::domain::{Bounce, BounceCause, BounceReason, EmailAddress, LinkKeys};
use crate::store::{BounceRecord, Store, StoreError};

/// Which suppressions to review: those whose bounce now reads as this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewFilter {
    /// Every bounce suppression that no longer reads as gone (the default).
    NotGone,
    Cause(BounceCause),
    Reason(BounceReason),
}

/// A `--reason` that names nothing the review can list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "{0:?} reads as gone (the address does not exist): such suppressions stand, so the review never lists them; \
         `bulletin suppressions remove EMAIL` lifts one by hand"
    )]
    Gone(String),
    #[error("{0:?} is no bounce reason or cause; use one of: {names}", names = accepted().join(", "))]
    Unknown(String),
}

/// Every name `--reason` takes: the causes that are not gone, then the reasons that are not.
fn accepted() -> Vec<&'static str> {
    let causes = BounceCause::ALL.into_iter().filter(|c| *c != BounceCause::Gone).map(BounceCause::as_str);
    let reasons = BounceReason::ALL.into_iter().filter(|r| r.cause() != BounceCause::Gone).map(BounceReason::as_str);
    causes.chain(reasons).collect()
}

impl FromStr for ReviewFilter {
    type Err = FilterError;

    /// A cause (`soft`, `sender`) or a reason (`blocked`, `mailbox_full`, …), as `bounces ingest --format json` names them.
    fn from_str(given: &str) -> Result<Self, FilterError> {
        let name = given.trim().to_ascii_lowercase().replace('-', "_");
        let filter = match (BounceCause::parse(&name), BounceReason::parse(&name)) {
            (Some(cause), _) => Self::Cause(cause),
            (None, Some(reason)) => Self::Reason(reason),
            (None, None) => return Err(FilterError::Unknown(given.to_owned())),
        };
        match filter {
            Self::Cause(BounceCause::Gone) => Err(FilterError::Gone(name)),
            Self::Reason(r) if r.cause() == BounceCause::Gone => Err(FilterError::Gone(name)),
            filter => Ok(filter),
        }
    }
}

impl ReviewFilter {
    fn admits(self, reading: Reading) -> bool {
        match self {
            Self::NotGone => reading.cause != BounceCause::Gone,
            Self::Cause(cause) => reading.cause == cause,
            Self::Reason(reason) => reading.reason == Some(reason),
        }
    }
}

/// How a recorded bounce reads by today's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reading {
    pub cause: BounceCause,
    /// `None`: a provider's own verdict (SES, Postmark) that came with no words to read.
    pub reason: Option<BounceReason>,
}

impl Reading {
    /// Reads one record as the report or reply that made it would be read now:
    /// a DSN or an SMTP reply by its words, then its status (it was a permanent
    /// refusal, or it would not have suppressed); a provider's verdict stands
    /// unless its words say otherwise (as `feedback::ReportKind::with_words`).
    pub fn of(record: &BounceRecord) -> Self {
        match record.source.as_str() {
            "dsn" | "smtp" => {
                let Bounce { cause, reason } = Bounce::of(&record.detail, true);
                Self { cause, reason: Some(reason) }
            }
            _ => match BounceReason::by_words(&record.detail) {
                Some(reason) => Self { cause: reason.cause(), reason: Some(reason) },
                None => Self { cause: BounceCause::Gone, reason: None },
            },
        }
    }
}

/// A bounce suppression that no longer reads as gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub address: String,
    /// When the address was suppressed.
    pub since: Timestamp,
    /// The latest recorded bounce: the remote's status and words.
    pub detail: String,
    pub reads_as: Reading,
}

/// The bounce suppressions none of whose records reads as gone today, and
/// whose latest record reads as `filter` asks, oldest suppression first.
pub async fn review(store: &Store, filter: ReviewFilter) -> Result<Vec<Reviewed>, StoreError> {
    let mut by_subscriber: BTreeMap<(Timestamp, i64), Vec<BounceRecord>> = BTreeMap::new();
    for record in store.bounce_records().await? {
        by_subscriber.entry((record.suppressed_at, record.subscriber_id)).or_default().push(record);
    }
    Ok(by_subscriber
        .into_values()
        .filter(|records| records.iter().all(|r| Reading::of(r).cause != BounceCause::Gone))
        .filter_map(|mut records| {
            // Records come oldest first.
            let latest = records.pop()?;
            let reads_as = Reading::of(&latest);
            filter.admits(reads_as).then_some(Reviewed {
                address: latest.email,
                since: latest.suppressed_at,
                detail: latest.detail,
                reads_as,
            })
        })
        .collect())
}

/// Lifts these suppressions as `suppressions remove` does each (see
/// [`super::remove`]), in one transaction. Returns how many were lifted: a
/// reader who meanwhile left the list is not counted.
pub async fn lift(store: &Store, keys: &LinkKeys, reviewed: &[Reviewed]) -> Result<u64, StoreError> {
    let emails: Vec<EmailAddress> = reviewed.iter().filter_map(|r| EmailAddress::parse(&r.address).ok()).collect();
    let hashes: Vec<String> = emails.iter().flat_map(|e| keys.suppression_hashes(&e.key())).collect();
    let (_, cleared) = store.remove_suppressions(&emails, &hashes).await?;
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(source: &str, detail: &str) -> BounceRecord {
        BounceRecord {
            subscriber_id: 1,
            email: "reader@example.org".into(),
            suppressed_at: 0,
            source: source.into(),
            detail: detail.into(),
            at: 0,
        }
    }

    #[test]
    fn old_suppressions_read_by_todays_table() {
        let cases = [
            (
                "dsn",
                "5.7.1 smtp; 554 5.7.1 rejected per DMARC policy",
                BounceCause::Sender,
                Some(BounceReason::AuthFailure),
            ),
            ("dsn", "5.2.2 smtp; 552 5.2.2 Quota exceeded", BounceCause::Soft, Some(BounceReason::MailboxFull)),
            ("dsn", "5.1.1 smtp; 550 5.1.1 <address> User unknown", BounceCause::Gone, Some(BounceReason::UserUnknown)),
            ("smtp", "550 5.1.1 mailbox full", BounceCause::Soft, Some(BounceReason::MailboxFull)),
            ("ses", "smtp; 550 5.7.1 blocked using zen.spamhaus.org", BounceCause::Sender, Some(BounceReason::Blocked)),
            ("ses", "Permanent General", BounceCause::Gone, None),
        ];
        for (source, detail, cause, reason) in cases {
            assert_eq!(Reading::of(&record(source, detail)), Reading { cause, reason }, "{source}: {detail}");
        }
    }

    #[test]
    fn a_filter_names_a_cause_or_a_reason_that_is_not_gone() {
        assert_eq!("blocked".parse(), Ok(ReviewFilter::Reason(BounceReason::Blocked)));
        assert_eq!("sender".parse(), Ok(ReviewFilter::Cause(BounceCause::Sender)));
        assert_eq!("soft".parse(), Ok(ReviewFilter::Cause(BounceCause::Soft)));
        assert!(matches!("user_unknown".parse::<ReviewFilter>(), Err(FilterError::Gone(_))));
        assert!(matches!("gone".parse::<ReviewFilter>(), Err(FilterError::Gone(_))));
        let unknown = "dmarc".parse::<ReviewFilter>().unwrap_err().to_string();
        assert!(unknown.contains("auth_failure") && unknown.contains("mailbox_full"), "{unknown}");
        for reason in BounceReason::ALL {
            assert_eq!(BounceReason::parse(reason.as_str()), Some(reason));
        }
    }
}
