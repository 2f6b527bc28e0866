//! Suppression (addresses we must not mail) and erasure.

use std::collections::HashSet;

use sqlx::QueryBuilder;

use super::{Result, Store, in_tx, reading, with_pool};
use crate::clock::Timestamp;
use crate::domain::EmailAddress;

impl Store {
    /// Stops all mail to a subscriber whose mailbox does not exist (5.1.x).
    pub async fn suppress_bounced(&self, subscriber_id: i64, now: Timestamp) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE subscribers SET suppressed_at = $2 WHERE id = $1 AND suppressed_at IS NULL")
                .bind(subscriber_id)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Which of these keyed hashes are on the suppression list.
    pub async fn suppressed_hashes(&self, hashes: &[String]) -> Result<HashSet<String>> {
        if hashes.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<String> = reading!(self, |pool| {
            let mut qb = QueryBuilder::new("SELECT email_hash FROM suppressions WHERE email_hash IN (");
            let mut list = qb.separated(", ");
            for h in hashes {
                list.push_bind(h.as_str());
            }
            qb.push(")");
            qb.build_query_scalar().fetch_all(pool).await?
        });
        Ok(found.into_iter().collect())
    }

    /// Removes every trace of an address but a keyed hash on the suppression
    /// list. Returns whether a subscriber existed.
    pub async fn erase(&self, email: &EmailAddress, suppression_hash: &str, now: Timestamp) -> Result<bool> {
        in_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, 'erased', $2) \
                 ON CONFLICT (email_hash) DO NOTHING",
            )
            .bind(suppression_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // The ledger has no foreign keys to cascade along (see migration 0002).
            sqlx::query(
                "DELETE FROM deliveries WHERE subscriber_id IN (SELECT id FROM subscribers WHERE email_key = $1)",
            )
            .bind(email.key())
            .execute(&mut *tx)
            .await?;
            let deleted = sqlx::query("DELETE FROM subscribers WHERE email_key = $1")
                .bind(email.key())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Ok(deleted > 0)
        })
    }

    /// Lifts suppression after a new opt-in.
    pub async fn lift_suppression(&self, subscriber_id: i64, hashes: &[String]) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE subscribers SET suppressed_at = NULL WHERE id = $1")
                .bind(subscriber_id)
                .execute(pool)
                .await?;
            for hash in hashes {
                sqlx::query("DELETE FROM suppressions WHERE email_hash = $1").bind(hash).execute(pool).await?;
            }
            Ok(())
        })
    }
}
