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

/// Rows of one `IN (…)` list at most, well under SQLite's limit on bound values.
const CHUNK: usize = 500;

/// One recorded bounce of a subscriber suppressed as `bounced`: what the
/// remote said when it suppressed (or would have suppressed) the address.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BounceRecord {
    pub subscriber_id: i64,
    pub email: String,
    pub suppressed_at: Timestamp,
    /// Where it came from: a report's source (`dsn`, `ses`, …), or `smtp` for
    /// the reply at sending time.
    pub source: String,
    /// The remote's status and words, without addresses.
    pub detail: String,
    pub at: Timestamp,
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

    /// Every hard bounce recorded about a subscriber suppressed as `bounced`
    /// (not those who complained): the reports (`feedback_events`) and the
    /// replies at sending time (a `bounced` delivery no report explains),
    /// by suppression time, subscriber, then record time. A suppression from
    /// the soft-bounce limit, or from an import, has none.
    pub async fn bounce_records(&self) -> Result<Vec<BounceRecord>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT s.id AS subscriber_id, s.email, s.suppressed_at, f.source, f.detail, f.created_at AS at \
                 FROM subscribers s JOIN feedback_events f ON f.subscriber_id = s.id AND f.kind = 'hard_bounce' \
                 WHERE s.suppressed_at IS NOT NULL AND COALESCE(s.suppressed_reason, 'bounced') = 'bounced' \
                 UNION ALL \
                 SELECT s.id, s.email, s.suppressed_at, 'smtp', COALESCE(d.last_reply, ''), d.next_attempt_at \
                 FROM subscribers s JOIN deliveries d ON d.subscriber_id = s.id AND d.status = 'bounced' \
                 WHERE s.suppressed_at IS NOT NULL AND COALESCE(s.suppressed_reason, 'bounced') = 'bounced' \
                 AND NOT EXISTS (SELECT 1 FROM feedback_events f WHERE f.delivery_id = d.id) \
                 ORDER BY 3, 1, 6",
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
        let (removed, cleared) = self.remove_suppressions(std::slice::from_ref(email), hashes).await?;
        Ok((removed, cleared > 0))
    }

    /// [`Store::remove_suppression`] for many addresses at once, in one
    /// transaction: `hashes` are all their keyed hashes. Returns how many
    /// hashes went and how many subscribers' bounces were cleared.
    pub async fn remove_suppressions(&self, emails: &[EmailAddress], hashes: &[String]) -> Result<(u64, u64)> {
        in_tx!(self, |tx| {
            let mut removed = 0;
            for chunk in hashes.chunks(CHUNK) {
                let mut qb = QueryBuilder::new("DELETE FROM suppressions WHERE email_hash IN (");
                let mut list = qb.separated(", ");
                for h in chunk {
                    list.push_bind(h.as_str());
                }
                qb.push(")");
                removed += qb.build().execute(&mut *tx).await?.rows_affected();
            }
            let mut cleared = 0;
            for chunk in emails.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "UPDATE subscribers SET suppressed_at = NULL, suppressed_reason = NULL \
                     WHERE suppressed_at IS NOT NULL AND email_key IN (",
                );
                let mut list = qb.separated(", ");
                for email in chunk {
                    list.push_bind(email.key());
                }
                qb.push(")");
                cleared += qb.build().execute(&mut *tx).await?.rows_affected();
            }
            Ok((removed, cleared))
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
