//! Suppression (addresses we must not mail) and erasure, plus bulk import.

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;

use super::subscribers::{queue_confirmations, record_consent};
use super::{Consent, MailCap, Result, Store, in_tx, reading, with_pool};
use crate::clock::Timestamp;
use crate::domain::EmailAddress;

/// One row of an import batch.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub email: EmailAddress,
    /// On the suppression list (erased earlier): needs a new opt-in whatever `--confirmed` says.
    pub suppressed: bool,
}

/// An entry of the suppression list: a keyed hash of an address, never the address.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Suppression {
    pub email_hash: String,
    /// `erased`; the schema also allows `bounced`, though a bounce is kept on its subscriber instead.
    pub reason: String,
    pub created_at: Timestamp,
}

/// What one import batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub confirmed: u64,
    pub pending: u64,
    pub unchanged: u64,
    pub mails_queued: u64,
}

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

    /// Subscribers whose mail bounced for good, with when: (address, time), oldest first.
    pub async fn bounced_subscribers(&self) -> Result<Vec<(String, Timestamp)>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT email, suppressed_at FROM subscribers WHERE suppressed_at IS NOT NULL ORDER BY suppressed_at, id",
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
                "UPDATE subscribers SET suppressed_at = NULL WHERE email_key = $1 AND suppressed_at IS NOT NULL",
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

    /// Imports one batch into a newsletter with a handful of set-based
    /// statements. `confirmed` rows become confirmed (consent source
    /// "import") unless suppressed; the rest become pending and get the
    /// double opt-in mail under the per-address cap. Never overrides an unsubscribe.
    pub async fn import_batch(
        &self,
        newsletter_id: i64,
        rows: &[ImportRow],
        confirmed: bool,
        consent: &Consent,
        cap: MailCap,
    ) -> Result<ImportOutcome> {
        if rows.is_empty() {
            return Ok(ImportOutcome::default());
        }
        let now = consent.at;
        in_tx!(self, |tx| {
            let mut qb = QueryBuilder::new("INSERT INTO subscribers (email, email_key, created_at) ");
            qb.push_values(rows, |mut b, row| {
                b.push_bind(row.email.as_str()).push_bind(row.email.key()).push_bind(now);
            });
            qb.push(" ON CONFLICT (email_key) DO UPDATE SET email_key = excluded.email_key RETURNING id, email_key");
            let ids: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            let ids: HashMap<String, i64> = ids.into_iter().map(|(id, key)| (key, id)).collect();
            let id_of = |row: &ImportRow| ids.get(&row.email.key()).copied();
            let (direct, opt_in): (Vec<i64>, Vec<i64>) = {
                let mut direct = vec![];
                let mut opt_in = vec![];
                for row in rows {
                    let Some(id) = id_of(row) else { continue };
                    if confirmed && !row.suppressed { direct.push(id) } else { opt_in.push(id) }
                }
                (direct, opt_in)
            };

            let mut outcome = ImportOutcome::default();
            if !direct.is_empty() {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at, confirmed_at) ",
                );
                qb.push_values(&direct, |mut b, id| {
                    b.push_bind(*id).push_bind(newsletter_id).push_bind("confirmed").push_bind(now).push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET status = 'confirmed', \
                     confirmed_at = excluded.confirmed_at, digest_through = NULL WHERE subscriptions.status = 'pending' \
                     RETURNING subscriber_id",
                );
                let changed: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
                record_consent!(tx, changed.iter().map(|id| (*id, newsletter_id)), "confirm", consent);
                outcome.confirmed = changed.len() as u64;
            }
            if !opt_in.is_empty() {
                let mut qb =
                    QueryBuilder::new("INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at) ");
                qb.push_values(&opt_in, |mut b, id| {
                    b.push_bind(*id).push_bind(newsletter_id).push_bind("pending").push_bind(now);
                });
                qb.push(" ON CONFLICT (subscriber_id, newsletter_id) DO NOTHING RETURNING subscriber_id");
                let pending: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
                outcome.pending = pending.len() as u64;
                if !pending.is_empty() {
                    record_consent!(tx, pending.iter().map(|id| (*id, newsletter_id)), "signup", consent);
                    outcome.mails_queued = queue_confirmations!(tx, &pending, now, cap).len() as u64;
                }
            }
            outcome.unchanged = rows.len() as u64 - outcome.confirmed - outcome.pending;
            Ok(outcome)
        })
    }
}
