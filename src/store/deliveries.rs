//! The delivery ledger: one row per message to one subscriber.
//!
//! A worker claims due rows with a lease (`claim_token`, `lease_until`),
//! marks each one `sending` just before handing it to SMTP — checking there,
//! at the last moment, that the reader is still subscribed and not
//! suppressed — and settles it right after the reply. A row found `sending`
//! with an expired lease belonged to a worker that died mid-message: it
//! becomes `ambiguous`, never silently re-sent. A claimed row whose lease
//! expired before it was marked is simply claimed again.

use super::{Db, Result, Store, relaxed, with_pool};
use crate::clock::Timestamp;

/// A claimed row with what is needed to build its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub kind: DeliveryKind,
    pub issue_id: Option<i64>,
    pub subscriber_id: i64,
    pub email: String,
    /// Attempts before this one.
    pub attempts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Confirmation,
    Issue,
}

/// How an attempt ended, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Sent {
        reply: String,
    },
    Retry {
        at: Timestamp,
        reply: String,
    },
    /// Refused for good.
    Failed {
        reply: String,
    },
    /// The mailbox does not exist (5.1.x): the address is suppressed.
    Bounced {
        reply: String,
    },
    /// The connection died after the message was handed over: it may have arrived.
    Ambiguous {
        reply: String,
    },
    Skipped {
        reason: String,
    },
}

impl Settlement {
    fn status(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "sent",
            Self::Retry { .. } => "retry",
            Self::Failed { .. } => "failed",
            Self::Bounced { .. } => "bounced",
            Self::Ambiguous { .. } => "ambiguous",
            Self::Skipped { .. } => "skipped",
        }
    }

    fn reply(&self) -> &str {
        match self {
            Self::Sent { reply }
            | Self::Retry { reply, .. }
            | Self::Failed { reply }
            | Self::Bounced { reply }
            | Self::Ambiguous { reply } => reply,
            Self::Skipped { reason } => reason,
        }
    }
}

/// Whether a claimed row may be handed to SMTP now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    Go,
    /// Unsubscribed, suppressed or erased since it was queued: settled as skipped.
    Skipped,
    /// Its issue was paused: released, to be sent on resume.
    Paused,
    /// Another worker holds it now (our lease ran out): leave it alone.
    Lost,
}

const CLAIM_SQLITE: &str = "UPDATE deliveries SET claim_token = $3, lease_until = $2 WHERE id IN (\
     SELECT d.id FROM deliveries d WHERE d.status IN ('queued', 'retry') AND d.next_attempt_at <= $1 \
     AND (d.lease_until IS NULL OR d.lease_until <= $1) \
     AND (d.issue_id IS NULL OR EXISTS (SELECT 1 FROM issues i WHERE i.id = d.issue_id AND i.status = 'sending')) \
     ORDER BY d.next_attempt_at, d.id LIMIT $4)";
// PostgreSQL: row locks let several instances claim side by side without waiting or overlapping.
const CLAIM_POSTGRES: &str = "UPDATE deliveries SET claim_token = $3, lease_until = $2 WHERE id IN (\
     SELECT d.id FROM deliveries d WHERE d.status IN ('queued', 'retry') AND d.next_attempt_at <= $1 \
     AND (d.lease_until IS NULL OR d.lease_until <= $1) \
     AND (d.issue_id IS NULL OR EXISTS (SELECT 1 FROM issues i WHERE i.id = d.issue_id AND i.status = 'sending')) \
     ORDER BY d.next_attempt_at, d.id LIMIT $4 FOR UPDATE SKIP LOCKED)";

impl Store {
    /// Claims up to `limit` due rows for `lease_secs` under `token`, returning them in id order.
    pub async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_secs: i64,
        token: &str,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let claimed = match &self.db {
            Db::Sqlite(pool) => sqlx::query(CLAIM_SQLITE)
                .bind(now)
                .bind(now + lease_secs)
                .bind(token)
                .bind(limit)
                .execute(pool)
                .await?
                .rows_affected(),
            Db::Postgres(pool) => sqlx::query(CLAIM_POSTGRES)
                .bind(now)
                .bind(now + lease_secs)
                .bind(token)
                .bind(limit)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        if claimed == 0 {
            return Ok(vec![]);
        }
        let rows: Vec<(i64, String, Option<i64>, i64, String, i64)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT d.id, d.kind, d.issue_id, d.subscriber_id, s.email, d.attempts \
                 FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id \
                 WHERE d.claim_token = $1 AND d.status IN ('queued', 'retry') ORDER BY d.id",
            )
            .bind(token)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, kind, issue_id, subscriber_id, email, attempts)| ClaimedDelivery {
                id,
                kind: if kind == "issue" { DeliveryKind::Issue } else { DeliveryKind::Confirmation },
                issue_id,
                subscriber_id,
                email,
                attempts,
            })
            .collect())
    }

    /// Marks a claimed row `sending` if the reader still wants it, just before SMTP.
    ///
    /// An issue goes out only while the issue is sending and the reader is
    /// confirmed and not suppressed; a confirmation mail answers a request
    /// just made, so it goes out whatever an old bounce said.
    pub async fn hand_over(
        &self,
        id: i64,
        kind: DeliveryKind,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<Handover> {
        // Plain joins rather than EXISTS … OR …: PostgreSQL would otherwise
        // hash the whole audience on every call.
        const ISSUE: &str = "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, lease_until = $3 \
             FROM issues, subscriptions, subscribers \
             WHERE deliveries.id = $1 AND deliveries.claim_token = $2 AND deliveries.status IN ('queued', 'retry') \
             AND issues.id = deliveries.issue_id AND issues.status = 'sending' \
             AND subscriptions.subscriber_id = deliveries.subscriber_id \
             AND subscriptions.newsletter_id = issues.newsletter_id AND subscriptions.status = 'confirmed' \
             AND subscribers.id = deliveries.subscriber_id AND subscribers.suppressed_at IS NULL";
        const CONFIRMATION: &str = "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, lease_until = $3 \
             WHERE id = $1 AND claim_token = $2 AND status IN ('queued', 'retry')";
        let sql = match kind {
            DeliveryKind::Issue => ISSUE,
            DeliveryKind::Confirmation => CONFIRMATION,
        };
        let marked = relaxed!(self, |conn| {
            sqlx::query(sql).bind(id).bind(token).bind(lease_until).execute(conn).await?.rows_affected()
        });
        if marked == 1 {
            return Ok(Handover::Go);
        }
        // Not marked. While its issue is still sending, the reader no longer
        // wants it: settle it as skipped. Otherwise (issue paused) just let it go.
        let skipped = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE deliveries SET status = 'skipped', \
                 last_reply = 'not sent: unsubscribed or suppressed before sending', \
                 claim_token = NULL, lease_until = NULL \
                 WHERE id = $1 AND claim_token = $2 AND status IN ('queued', 'retry') \
                 AND (issue_id IS NULL OR EXISTS (SELECT 1 FROM issues i \
                      WHERE i.id = deliveries.issue_id AND i.status = 'sending'))",
            )
            .bind(id)
            .bind(token)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if skipped == 1 {
            return Ok(Handover::Skipped);
        }
        let released = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE deliveries SET claim_token = NULL, lease_until = NULL \
                 WHERE id = $1 AND claim_token = $2 AND status IN ('queued', 'retry')",
            )
            .bind(id)
            .bind(token)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(if released == 1 { Handover::Paused } else { Handover::Lost })
    }

    /// Releases claimed rows that were never handed over (on shutdown).
    pub async fn release_claim(&self, token: &str) -> Result<u64> {
        with_pool!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE deliveries SET claim_token = NULL, lease_until = NULL \
                 WHERE claim_token = $1 AND status IN ('queued', 'retry')",
            )
            .bind(token)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Records how an attempt ended, right after the reply.
    pub async fn settle(&self, id: i64, settlement: &Settlement, now: Timestamp) -> Result<()> {
        let next = match settlement {
            Settlement::Retry { at, .. } => *at,
            _ => now,
        };
        let sent_at = matches!(settlement, Settlement::Sent { .. }).then_some(now);
        relaxed!(self, |conn| {
            sqlx::query(
                "UPDATE deliveries SET status = $2, last_reply = $3, next_attempt_at = $4, sent_at = $5, \
                 claim_token = NULL, lease_until = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(settlement.status())
            .bind(truncate(settlement.reply()))
            .bind(next)
            .bind(sent_at)
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    /// Rows left `sending` by a worker that died: they may have been
    /// delivered, so they become `ambiguous` instead of being sent again.
    pub async fn recover_expired(&self, now: Timestamp) -> Result<u64> {
        with_pool!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE deliveries SET status = 'ambiguous', \
                 last_reply = 'worker stopped while sending: the message may have been delivered', \
                 claim_token = NULL, lease_until = NULL WHERE status = 'sending' AND lease_until <= $1",
            )
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Counts ledger rows by status (all kinds), for status pages and tests.
    pub async fn delivery_counts(&self, issue_id: Option<i64>) -> Result<Vec<(String, i64)>> {
        with_pool!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT status, COUNT(*) FROM deliveries WHERE ($1 IS NULL OR issue_id = $1) \
                 GROUP BY status ORDER BY status",
            )
            .bind(issue_id)
            .fetch_all(pool)
            .await?)
        })
    }
}

/// SMTP replies can be long; the ledger keeps enough to diagnose.
fn truncate(s: &str) -> String {
    s.chars().take(500).collect()
}
