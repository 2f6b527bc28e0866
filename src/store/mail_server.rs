//! While the mail server cannot be reached: what the engine records for
//! the CLI, and how it gives claimed rows back untouched.
//!
//! Failing to connect at all is the server's state, not a message's, so a
//! row taken for sending while the server is down goes back as it was: no
//! attempt spent, no status changed. The engine's wait is kept in
//! `settings` under one name, so `issue status` and the progress display of
//! another process can show it. So is the cap of a relay that takes fewer
//! connections than `sending.concurrency` (see `delivery::connections`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;

use super::{Result, Store, reading, with_pool};
use crate::clock::Timestamp;

const WAITING: &str = "mail_server_waiting";
const CAPPED: &str = "relay_connection_cap";

/// A record older than this was left by an engine that stopped while
/// waiting: a waiting engine renews it at least every minute.
const STALE_AFTER_SECS: i64 = 180;

/// The engine is waiting for the mail server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailServerWait {
    /// When sending stopped.
    pub since: Timestamp,
    /// The last time the server was tried.
    pub checked_at: Timestamp,
    /// What the last try said, e.g. "connecting to mail.example.org:25: connection refused".
    pub detail: String,
}

/// The relay refuses connections beyond a number: the engine sends on fewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCap {
    /// Connections the relay was seen to take at once.
    pub accepts: usize,
    /// Connections the engine may hold now: `accepts`, or one more while it tries for more.
    pub connections: usize,
    /// `sending.concurrency`.
    pub concurrency: usize,
    /// When the cap was found.
    pub since: Timestamp,
    /// When it was last confirmed or changed.
    pub checked_at: Timestamp,
    /// The refusal, e.g. "connecting to mail.example.org:25: 421 4.7.0 … too many connections from …".
    pub reply: String,
}

impl RelayCap {
    /// "the relay accepts 2 connections; sending on 2 (sending.concurrency = 8)", for the log and `issue status`.
    pub fn summary(&self) -> String {
        let plural = if self.accepts == 1 { "" } else { "s" };
        format!(
            "the relay accepts {} connection{plural}; sending on {} (sending.concurrency = {})",
            self.accepts, self.connections, self.concurrency
        )
    }
}

impl Store {
    /// Records (or renews) that the engine waits for the mail server.
    pub async fn record_mail_server_wait(&self, wait: &MailServerWait) -> Result<()> {
        self.record(WAITING, wait).await
    }

    /// The mail server answers again.
    pub async fn clear_mail_server_wait(&self) -> Result<()> {
        self.forget(WAITING).await
    }

    /// The engine's wait for the mail server, if one is under way as of `now`.
    pub async fn mail_server_wait(&self, now: Timestamp) -> Result<Option<MailServerWait>> {
        Ok(self.recorded::<MailServerWait>(WAITING).await?.filter(|wait| wait.checked_at >= now - STALE_AFTER_SECS))
    }

    /// Records (or renews) the relay's connection cap.
    pub async fn record_relay_cap(&self, cap: &RelayCap) -> Result<()> {
        self.record(CAPPED, cap).await
    }

    /// The relay takes `sending.concurrency` connections again, or the engine stopped.
    pub async fn clear_relay_cap(&self) -> Result<()> {
        self.forget(CAPPED).await
    }

    /// The relay's connection cap, if one holds as of `now` (a record the
    /// engine has not renewed for a while was left by a stopped engine).
    pub async fn relay_cap(&self, now: Timestamp) -> Result<Option<RelayCap>> {
        Ok(self.recorded::<RelayCap>(CAPPED).await?.filter(|cap| cap.checked_at >= now - STALE_AFTER_SECS))
    }

    /// Keeps `value` in `settings` under `name`, as JSON.
    async fn record(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let value = serde_json::to_string(value).expect("plain fields serialize");
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn forget(&self, name: &str) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM settings WHERE name = $1").bind(name).execute(pool).await?;
            Ok(())
        })
    }

    /// What [`Self::record`] kept under `name`; `None` when nothing or something unreadable is there.
    async fn recorded<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let value: Option<String> = reading!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(pool).await?
        });
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Lets go of claimed rows that were never handed over, as they were.
    pub async fn release_deliveries(&self, token: &str, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        with_pool!(self, |pool| {
            let mut qb = QueryBuilder::new(
                "UPDATE deliveries SET claim_token = NULL, lease_until = NULL \
                 WHERE status IN ('queued', 'retry') AND claim_token = ",
            );
            qb.push_bind(token).push(" AND id IN (");
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            qb.push(")");
            Ok(qb.build().execute(pool).await?.rows_affected())
        })
    }

    /// Gives back a row marked `sending` whose message never left because
    /// no connection could be opened: the attempt is taken back and the row
    /// is due again, as it was before the hand-over.
    pub async fn put_back(&self, id: i64, token: &str) -> Result<bool> {
        with_pool!(self, |pool| {
            let done = sqlx::query(
                "UPDATE deliveries SET status = CASE WHEN attempts <= 1 THEN 'queued' ELSE 'retry' END, \
                 attempts = attempts - 1, claim_token = NULL, lease_until = NULL \
                 WHERE id = $1 AND claim_token = $2 AND status = 'sending'",
            )
            .bind(id)
            .bind(token)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(done == 1)
        })
    }
}
