//! The durable outbox of confirmation mail.
//!
//! The request path only inserts a row; a background worker claims rows with
//! a lease, sends them, and records the result. A worker that dies leaves its
//! lease to expire and the row is claimed again: nothing is silently lost.

use super::{Result, Store, with_pool};
use crate::clock::Timestamp;

/// A row a worker holds until `lease_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMail {
    pub id: i64,
    pub subscriber_id: i64,
    /// Attempts including this one.
    pub attempts: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// Try again at the given time.
    Retry {
        at: Timestamp,
        error: String,
    },
    Failed {
        error: String,
    },
    /// Nothing left to send (already confirmed, unsubscribed or erased).
    Skipped,
}

impl Store {
    /// Claims up to `limit` due rows for `lease_secs`.
    pub async fn claim_outbox(
        &self,
        now: Timestamp,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedMail>> {
        // The same statement on both backends but for PostgreSQL's row locks,
        // which let several instances claim side by side without waiting.
        const SQLITE: &str = "UPDATE outbox SET lease_until = $2, attempts = attempts + 1 WHERE id IN (\
             SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at, id LIMIT $3) \
             RETURNING id, subscriber_id, attempts";
        const POSTGRES: &str = "UPDATE outbox SET lease_until = $2, attempts = attempts + 1 WHERE id IN (\
             SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at, id LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
             RETURNING id, subscriber_id, attempts";
        let rows: Vec<(i64, i64, i64)> = match &self.db {
            super::Db::Sqlite(pool) => {
                sqlx::query_as(SQLITE)
                    .bind(now)
                    .bind(now + lease_secs)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            super::Db::Postgres(pool) => {
                sqlx::query_as(POSTGRES)
                    .bind(now)
                    .bind(now + lease_secs)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        };
        let mut claimed: Vec<ClaimedMail> = rows
            .into_iter()
            .map(|(id, subscriber_id, attempts)| ClaimedMail {
                id,
                subscriber_id,
                attempts,
            })
            .collect();
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// Records how an attempt ended and releases the lease.
    pub async fn finish_outbox(
        &self,
        id: i64,
        outcome: &MailOutcome,
        now: Timestamp,
    ) -> Result<()> {
        with_pool!(self, |pool| {
            let query = match outcome {
                MailOutcome::Sent => sqlx::query(
                    "UPDATE outbox SET status = 'sent', sent_at = $2, lease_until = NULL, last_error = NULL \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(now),
                MailOutcome::Retry { at, error } => sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $2, lease_until = NULL, last_error = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(*at)
                .bind(error.as_str()),
                MailOutcome::Failed { error } => sqlx::query(
                    "UPDATE outbox SET status = 'failed', lease_until = NULL, last_error = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(error.as_str()),
                MailOutcome::Skipped => {
                    sqlx::query("UPDATE outbox SET status = 'skipped', lease_until = NULL WHERE id = $1").bind(id)
                }
            };
            query.execute(pool).await?;
            Ok(())
        })
    }

    /// Counts outbox rows by status, for status pages and tests.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        with_pool!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status",
            )
            .fetch_all(pool)
            .await?)
        })
    }
}
