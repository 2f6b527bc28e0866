//! Suppression (addresses we must not mail) and erasure.

use std::collections::HashSet;

use sqlx::QueryBuilder;

use super::{Result, Store, in_tx, reading, with_pool};
use crate::clock::Timestamp;
use crate::domain::EmailAddress;

/// An entry of the suppression list: a keyed hash of an address, never the address.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Suppression {
    pub email_hash: String,
    /// `erased`; the schema also allows `bounced`, though a bounce is kept on its subscriber instead.
    pub reason: String,
    pub created_at: Timestamp,
}

impl Store {
    /// Stops all mail to a subscriber whose mailbox does not exist (5.1.x).
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id))]
    pub async fn suppress_bounced(&self, subscriber_id: i64, now: Timestamp) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE subscribers SET suppressed_at = $2, suppressed_reason = 'bounced' \
                 WHERE id = $1 AND suppressed_at IS NULL",
            )
            .bind(subscriber_id)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Which of these keyed hashes are on the suppression list.
    pub async fn suppressed_hashes(&self, hashes: &[String]) -> Result<HashSet<String>> {
        Ok(self.suppressions_of(hashes).await?.into_iter().map(|s| s.email_hash).collect())
    }

    /// The suppression list's entries for these keyed hashes.
    pub async fn suppressions_of(&self, hashes: &[String]) -> Result<Vec<Suppression>> {
        if hashes.is_empty() {
            return Ok(vec![]);
        }
        reading!(self, |pool| {
            let mut qb =
                QueryBuilder::new("SELECT email_hash, reason, created_at FROM suppressions WHERE email_hash IN (");
            let mut list = qb.separated(", ");
            for h in hashes {
                list.push_bind(h.as_str());
            }
            qb.push(") ORDER BY created_at");
            Ok(qb.build_query_as().fetch_all(pool).await?)
        })
    }

    /// The whole suppression list, oldest first.
    pub async fn suppressions(&self) -> Result<Vec<Suppression>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT email_hash, reason, created_at FROM suppressions ORDER BY created_at, email_hash",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Subscribers whose mail bounced for good or who complained, with when
    /// and why: (address, time, `bounced` or `complained`), oldest first.
    pub async fn suppressed_subscribers(&self) -> Result<Vec<(String, Timestamp, String)>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT email, suppressed_at, COALESCE(suppressed_reason, 'bounced') FROM subscribers \
                 WHERE suppressed_at IS NOT NULL ORDER BY suppressed_at, id",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// One page of every subscriber's (id, address), by id after `after`.
    pub async fn addresses_page(&self, after: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as("SELECT id, email FROM subscribers WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        })
    }

    /// Takes an address off the suppression list: its keyed hashes go, and a
    /// bounce recorded on its subscriber is forgotten. Returns how many
    /// hashes went and whether a bounce was cleared.
    pub async fn remove_suppression(&self, email: &EmailAddress, hashes: &[String]) -> Result<(u64, bool)> {
        in_tx!(self, |tx| {
            let mut removed = 0;
            if !hashes.is_empty() {
                let mut qb = QueryBuilder::new("DELETE FROM suppressions WHERE email_hash IN (");
                let mut list = qb.separated(", ");
                for h in hashes {
                    list.push_bind(h.as_str());
                }
                qb.push(")");
                removed = qb.build().execute(&mut *tx).await?.rows_affected();
            }
            let cleared = sqlx::query(
                "UPDATE subscribers SET suppressed_at = NULL, suppressed_reason = NULL \
                 WHERE email_key = $1 AND suppressed_at IS NOT NULL",
            )
            .bind(email.key())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok((removed, cleared > 0))
        })
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
            // Reports about the address stay counted against their issues, but name nobody.
            sqlx::query(
                "UPDATE feedback_events SET subscriber_id = NULL \
                 WHERE subscriber_id IN (SELECT id FROM subscribers WHERE email_key = $1)",
            )
            .bind(email.key())
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
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id))]
    pub async fn lift_suppression(&self, subscriber_id: i64, hashes: &[String]) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE subscribers SET suppressed_at = NULL, suppressed_reason = NULL WHERE id = $1")
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
