//! One reader as an operator finds them and acts for them: by address, on
//! the operator's word, and the confirmation mail asked for again (with the
//! record the per-address cap is counted from).

use sqlx::QueryBuilder;

use super::subscribers::{queue_confirmations, record_consent};
use super::{Consent, MailCap, Result, Store, in_tx, reading};
use crate::clock::Timestamp;
use crate::domain::EmailAddress;

/// A subscriber as stored, found by address.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubscriberRecord {
    pub id: i64,
    pub email: String,
    pub created_at: Timestamp,
    /// When mail to the address bounced for good (5.1.x): nothing is sent to it since.
    #[sqlx(rename = "suppressed_at")]
    pub bounced_at: Option<Timestamp>,
    /// Why it is suppressed: `bounced`, or `complained` (the reader reported our mail as spam).
    pub suppressed_reason: Option<String>,
    /// The name an imported list gave, used in the To header.
    pub name: Option<String>,
}

impl Store {
    /// The subscriber with this address (compared by its key), if any.
    pub async fn subscriber_by_email(&self, email: &EmailAddress) -> Result<Option<SubscriberRecord>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, email, created_at, suppressed_at, \
                 CASE WHEN suppressed_at IS NULL THEN NULL ELSE COALESCE(suppressed_reason, 'bounced') END \
                 AS suppressed_reason, name FROM subscribers WHERE email_key = $1",
            )
            .bind(email.key())
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Confirms one subscription on an operator's word (the reader gave
    /// consent outside Bulletin), creating the subscriber if need be; a
    /// reader who had left is taken back, since the operator acts on the
    /// reader's request. Returns whether anything changed.
    pub async fn confirm_by_operator(
        &self,
        email: &EmailAddress,
        newsletter_id: i64,
        consent: &Consent,
    ) -> Result<bool> {
        in_tx!(self, |tx| {
            let subscriber_id: i64 = sqlx::query_scalar(
                "INSERT INTO subscribers (email, email_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (email_key) DO UPDATE SET email_key = excluded.email_key RETURNING id",
            )
            .bind(email.as_str())
            .bind(email.key())
            .bind(consent.at)
            .fetch_one(&mut *tx)
            .await?;
            let changed: Vec<i64> = sqlx::query_scalar(
                "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at, confirmed_at) \
                 VALUES ($1, $2, 'confirmed', $3, $3) ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE \
                 SET status = 'confirmed', confirmed_at = excluded.confirmed_at, digest_through = NULL \
                 WHERE subscriptions.status <> 'confirmed' RETURNING newsletter_id",
            )
            .bind(subscriber_id)
            .bind(newsletter_id)
            .bind(consent.at)
            .fetch_all(&mut *tx)
            .await?;
            record_consent!(tx, changed.iter().map(|n| (subscriber_id, *n)), "confirm", consent);
            Ok(!changed.is_empty())
        })
    }

    /// Queues one confirmation mail for the subscriber's pending newsletters
    /// if the per-address cap allows it at `now`, in the same statement a
    /// signup uses; returns whether it was queued.
    pub async fn queue_confirmation(&self, subscriber_id: i64, now: Timestamp, cap: MailCap) -> Result<bool> {
        in_tx!(self, |tx| {
            let queued = queue_confirmations!(tx, &[subscriber_id], now, cap);
            Ok(!queued.is_empty())
        })
    }

    /// When confirmation mail to the subscriber was queued after `since`, oldest first:
    /// what the cap counts, so a refusal can say when the next one may go.
    pub async fn confirmation_mails_since(&self, subscriber_id: i64, since: Timestamp) -> Result<Vec<Timestamp>> {
        reading!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT created_at FROM deliveries WHERE subscriber_id = $1 AND kind = 'confirmation' \
                 AND created_at > $2 ORDER BY created_at",
            )
            .bind(subscriber_id)
            .bind(since)
            .fetch_all(pool)
            .await?)
        })
    }
}
