//! Confirmation mail asked for again by an operator, and the record the
//! per-address cap is counted from.

use sqlx::QueryBuilder;

use super::subscribers::queue_confirmations;
use super::{MailCap, Result, Store, in_tx, reading};
use crate::clock::Timestamp;

impl Store {
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
