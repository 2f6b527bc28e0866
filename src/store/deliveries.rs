//! The delivery ledger: one row per message to one subscriber.
//!
//! A worker claims due rows with a lease (`claim_token`, `lease_until`),
//! marks each one `sending` just before handing it to SMTP — checking there,
//! at the last moment, that the reader is still subscribed and not
//! suppressed — and settles it right after the reply. A row found `sending`
//! with an expired lease belonged to a worker that died mid-message: it
//! becomes `ambiguous`, never silently re-sent. A claimed row whose lease
//! expired before it was marked is simply claimed again. A result is stored
//! only on a row still held under the claim it was sent under.
//!
//! Claims visit only rows that may go out now: confirmation mail and the
//! rows of issues that are sending, through `deliveries_due_by_issue`; a
//! paused or finished issue's rows are never walked.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::{Db, Result, Store, reading, relaxed, with_pool};
use crate::clock::Timestamp;
use crate::domain::LinkRef;

/// A claimed row with what is needed to build its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub kind: DeliveryKind,
    pub issue_id: Option<i64>,
    pub subscriber_id: i64,
    /// Names the reader in the links of this message.
    pub link_ref: LinkRef,
    pub email: String,
    /// The reader's name, when an imported list gave one.
    pub name: Option<String>,
    /// Attempts before this one.
    pub attempts: i64,
    /// For a confirmation mail: the newsletters the reader has pending, as claimed.
    pub pending: Vec<i64>,
    /// The random part of its Message-ID, the same on every attempt (see `domain::delivery_tag`).
    pub message_nonce: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Confirmation,
    Issue,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown delivery kind {0:?} (expected confirmation or issue)")]
pub struct UnknownKind(String);

/// For `#[sqlx(try_from = "String")]`: the `kind` column read straight into the enum.
impl TryFrom<String> for DeliveryKind {
    type Error = UnknownKind;
    fn try_from(kind: String) -> std::result::Result<Self, Self::Error> {
        match kind.as_str() {
            "confirmation" => Ok(Self::Confirmation),
            "issue" => Ok(Self::Issue),
            _ => Err(UnknownKind(kind)),
        }
    }
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
    /// The ledger status this result is stored as.
    pub fn status(&self) -> &'static str {
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

/// One claim statement: rows of one status (`$5`) that `$filter` picks, due
/// by `$1`, in due order, up to `$4` of them, leased to `$3` until `$2`; a
/// row claimed for the first time gets its Message-ID nonce from `$random`.
///
/// One status at a time: with `status = $5` the claim walks its index range
/// in order and stops at the limit; `status IN (…)` would sort every due row.
macro_rules! claim_sql {
    ($filter:literal, $lock:literal, $random:literal) => {
        concat!(
            "UPDATE deliveries SET claim_token = $3, lease_until = $2, message_nonce = COALESCE(message_nonce, ",
            $random,
            ") WHERE id IN (\
             SELECT d.id FROM deliveries d WHERE ",
            $filter,
            " AND d.status = $5 AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until <= $1) \
             ORDER BY d.next_attempt_at, d.id LIMIT $4",
            $lock,
            ") RETURNING id, kind, issue_id, subscriber_id, attempts, message_nonce"
        )
    };
}

// Confirmation mail walks `deliveries_due_confirmations`; an issue's rows walk
// its own range of `deliveries_due_by_issue` (`$6`), only while it is sending.
// A paused issue's rows are never visited, however many there are.
const CONFIRMATIONS: &str = claim_sql!("d.issue_id IS NULL", "", "random()");
const OF_ISSUE: &str = claim_sql!(
    "d.issue_id = $6 AND EXISTS (SELECT 1 FROM issues i WHERE i.id = $6 AND i.status = 'sending')",
    "",
    "random()"
);
// PostgreSQL: row locks let several instances claim side by side without waiting or overlapping.
// Its random() has 52 bits; a v4 UUID's last 16 hex digits give 62 (gen_random_uuid is built in since 13).
const CONFIRMATIONS_POSTGRES: &str = claim_sql!(
    "d.issue_id IS NULL",
    " FOR UPDATE SKIP LOCKED",
    "('x' || right(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint"
);
const OF_ISSUE_POSTGRES: &str = claim_sql!(
    "d.issue_id = $6 AND EXISTS (SELECT 1 FROM issues i WHERE i.id = $6 AND i.status = 'sending')",
    " FOR UPDATE SKIP LOCKED",
    "('x' || right(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint"
);

/// What a claim statement returns.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: i64,
    #[sqlx(try_from = "String")]
    kind: DeliveryKind,
    issue_id: Option<i64>,
    subscriber_id: i64,
    attempts: i64,
    message_nonce: i64,
}

impl Store {
    /// Claims up to `limit` due rows for `lease_secs` under `token`, returning
    /// them in id order: confirmation mail first (a reader is waiting for
    /// it), then the rows of issues that are sending, oldest issue first.
    #[tracing::instrument(level = "debug", skip_all, fields(limit = limit))]
    pub async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_secs: i64,
        token: &str,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let sending: Vec<i64> = reading!(self, |pool| {
            sqlx::query_scalar("SELECT id FROM issues WHERE status = 'sending' ORDER BY id").fetch_all(pool).await?
        });
        // The claim returns its rows (there is no index on the token to find them by afterwards).
        let mut rows: Vec<ClaimedRow> = vec![];
        'claiming: for issue in std::iter::once(None).chain(sending.into_iter().map(Some)) {
            for status in ["retry", "queued"] {
                let room = limit - rows.len() as i64;
                if room <= 0 {
                    break 'claiming;
                }
                let sql = match (&self.db, issue) {
                    (Db::Sqlite(_), None) => CONFIRMATIONS,
                    (Db::Sqlite(_), Some(_)) => OF_ISSUE,
                    (Db::Postgres(_), None) => CONFIRMATIONS_POSTGRES,
                    (Db::Postgres(_), Some(_)) => OF_ISSUE_POSTGRES,
                };
                let claimed: Vec<ClaimedRow> = with_pool!(self, |pool| {
                    let query =
                        sqlx::query_as(sql).bind(now).bind(now + lease_secs).bind(token).bind(room).bind(status);
                    match issue {
                        Some(issue) => query.bind(issue).fetch_all(pool).await?,
                        None => query.fetch_all(pool).await?,
                    }
                });
                rows.extend(claimed);
            }
        }
        if rows.is_empty() {
            return Ok(vec![]);
        }
        rows.sort_unstable_by_key(|row| row.id);
        let emails: Vec<(i64, String, Option<String>, i64)> = reading!(self, |pool| {
            let mut qb = QueryBuilder::new("SELECT id, email, name, link_salt FROM subscribers WHERE id IN (");
            let mut list = qb.separated(", ");
            for row in &rows {
                list.push_bind(row.subscriber_id);
            }
            qb.push(")");
            qb.build_query_as().fetch_all(pool).await?
        });
        let emails: HashMap<i64, (String, Option<String>, LinkRef)> = emails
            .into_iter()
            .map(|(id, email, name, salt)| (id, (email, name, LinkRef { subscriber_id: id, salt })))
            .collect();
        let asking: Vec<i64> =
            rows.iter().filter(|row| row.kind == DeliveryKind::Confirmation).map(|row| row.subscriber_id).collect();
        let mut pending: HashMap<i64, Vec<i64>> = HashMap::new();
        if !asking.is_empty() {
            let found: Vec<(i64, i64)> = reading!(self, |pool| {
                let mut qb = QueryBuilder::new(
                    "SELECT subscriber_id, newsletter_id FROM subscriptions WHERE status = 'pending' \
                     AND subscriber_id IN (",
                );
                let mut list = qb.separated(", ");
                for id in &asking {
                    list.push_bind(*id);
                }
                qb.push(") ORDER BY newsletter_id");
                qb.build_query_as().fetch_all(pool).await?
            });
            for (subscriber_id, newsletter_id) in found {
                pending.entry(subscriber_id).or_default().push(newsletter_id);
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let (email, name, link_ref) = emails.get(&row.subscriber_id)?.clone();
                Some(ClaimedDelivery {
                    id: row.id,
                    kind: row.kind,
                    issue_id: row.issue_id,
                    subscriber_id: row.subscriber_id,
                    link_ref,
                    email,
                    name,
                    attempts: row.attempts,
                    message_nonce: row.message_nonce,
                    pending: match row.kind {
                        DeliveryKind::Issue => vec![],
                        DeliveryKind::Confirmation => pending.get(&row.subscriber_id).cloned().unwrap_or_default(),
                    },
                })
            })
            .collect())
    }

    /// Marks claimed rows `sending` if their readers still want them, just
    /// before SMTP: one statement per kind for the whole batch, all rows held
    /// under the claim `token`.
    ///
    /// An issue goes out only while the issue is sending and the reader is
    /// confirmed and not suppressed; a confirmation mail answers a request
    /// just made, so it goes out whatever an old bounce said.
    pub async fn hand_over(
        &self,
        token: &str,
        rows: &[(i64, DeliveryKind)],
        lease_until: Timestamp,
    ) -> Result<Vec<(i64, Handover)>> {
        // The claimed rows are picked first (a materialized CTE is an
        // optimization fence on both backends), then joined: left to itself,
        // PostgreSQL may walk the whole audience per call when its statistics
        // are stale, as they are right after a big import.
        // The rows are picked by id alone: with the status test in the CTE,
        // SQLite may walk a status index through every queued row instead.
        const PICK_ISSUES: &str =
            "WITH picked AS MATERIALIZED (SELECT id, issue_id, subscriber_id FROM deliveries WHERE id IN (";
        const PICK_CONFIRMATIONS: &str = "WITH picked AS MATERIALIZED (SELECT id FROM deliveries WHERE id IN (";
        const MARK: &str =
            ")) UPDATE deliveries SET status = 'sending', attempts = deliveries.attempts + 1, lease_until = ";
        // The subscription is read by a subquery on its primary key: as a
        // join, PostgreSQL with fresh-import statistics walked the
        // newsletter's whole audience per row (10 000 sent at 1 000 msg/s).
        const JOIN_ISSUES: &str = " FROM picked \
             JOIN issues ON issues.id = picked.issue_id \
             JOIN subscribers ON subscribers.id = picked.subscriber_id \
             WHERE deliveries.id = picked.id AND issues.status = 'sending' \
             AND (SELECT s.status FROM subscriptions s WHERE s.subscriber_id = picked.subscriber_id \
                  AND s.newsletter_id = issues.newsletter_id) = 'confirmed' \
             AND subscribers.suppressed_at IS NULL";
        const JOIN_CONFIRMATIONS: &str = " FROM picked WHERE deliveries.id = picked.id";
        const HELD: &str = " AND deliveries.status IN ('queued', 'retry') AND deliveries.claim_token = ";
        let mut go: Vec<i64> = vec![];
        for (kind, pick, join) in [
            (DeliveryKind::Issue, PICK_ISSUES, JOIN_ISSUES),
            (DeliveryKind::Confirmation, PICK_CONFIRMATIONS, JOIN_CONFIRMATIONS),
        ] {
            let ids: Vec<i64> = rows.iter().filter(|(_, k)| *k == kind).map(|(id, _)| *id).collect();
            if ids.is_empty() {
                continue;
            }
            let marked: Vec<i64> = relaxed!(self, |conn| {
                let mut qb = QueryBuilder::new(pick);
                let mut list = qb.separated(", ");
                for id in &ids {
                    list.push_bind(*id);
                }
                qb.push(MARK).push_bind(lease_until).push(join).push(HELD).push_bind(token);
                qb.push(" RETURNING deliveries.id");
                qb.build_query_scalar().fetch_all(conn).await?
            });
            go.extend(marked);
        }
        let mut out = Vec::with_capacity(rows.len());
        for (id, _) in rows {
            let handover = if go.contains(id) { Handover::Go } else { self.not_handed_over(*id, token).await? };
            out.push((*id, handover));
        }
        Ok(out)
    }

    /// Settles a claimed row that could not be handed over: skipped while its
    /// issue still sends (the reader left), released if the issue was paused.
    async fn not_handed_over(&self, id: i64, token: &str) -> Result<Handover> {
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

    /// Records how attempts ended, right after their replies, in one
    /// statement: `(id, claim token, settlement)` each. Only rows still held
    /// under their claim token are written; returns their ids. A row whose
    /// lease ran out meanwhile was recovered as `ambiguous` or claimed by
    /// another worker, and a late result must not overwrite that.
    pub async fn settle(&self, settled: &[(i64, &str, &Settlement)], now: Timestamp) -> Result<Vec<i64>> {
        if settled.is_empty() {
            return Ok(vec![]);
        }
        relaxed!(self, |conn| {
            let mut qb = QueryBuilder::new("WITH v (id, token, status, reply, next_at, sent_at) AS (");
            qb.push_values(settled, |mut b, (id, token, settlement)| {
                let next = match settlement {
                    Settlement::Retry { at, .. } => *at,
                    _ => now,
                };
                let sent_at = matches!(settlement, Settlement::Sent { .. }).then_some(now);
                b.push_bind(*id)
                    .push_bind(*token)
                    .push_bind(settlement.status())
                    .push_bind(truncate(settlement.reply()))
                    .push_bind(next)
                    .push_bind(sent_at);
            });
            qb.push(
                ") UPDATE deliveries SET status = v.status, last_reply = v.reply, next_attempt_at = v.next_at, \
                 sent_at = v.sent_at, claim_token = NULL, lease_until = NULL FROM v \
                 WHERE deliveries.id = v.id AND deliveries.claim_token = v.token RETURNING deliveries.id",
            );
            Ok(qb.build_query_scalar().fetch_all(conn).await?)
        })
    }

    /// Extends the leases of rows `sending` under their claim tokens
    /// `(id, claim token)`: a message still in hand is not taken for one
    /// whose worker died, however long its server takes to answer.
    pub async fn renew_leases(&self, held: &[(i64, &str)], lease_until: Timestamp) -> Result<u64> {
        if held.is_empty() {
            return Ok(0);
        }
        relaxed!(self, |conn| {
            let mut qb = QueryBuilder::new("WITH v (id, token) AS (");
            qb.push_values(held, |mut b, (id, token)| {
                b.push_bind(*id).push_bind(*token);
            });
            qb.push(") UPDATE deliveries SET lease_until = ").push_bind(lease_until).push(
                " FROM v WHERE deliveries.id = v.id AND deliveries.claim_token = v.token \
                 AND deliveries.status = 'sending'",
            );
            Ok(qb.build().execute(conn).await?.rows_affected())
        })
    }

    /// Rows left `sending` by a worker that died: they may have been
    /// delivered, so they become `ambiguous` instead of being sent again.
    #[tracing::instrument(level = "debug", skip_all)]
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

    /// Counts ledger rows by status: one issue's, or (`None`) every row.
    pub async fn delivery_counts(&self, issue_id: Option<i64>) -> Result<Vec<(String, i64)>> {
        reading!(self, |pool| {
            // Two statements, so the per-issue count walks only that issue's index range.
            let rows =
                match issue_id {
                    Some(id) => sqlx::query_as(
                        "SELECT status, COUNT(*) FROM deliveries WHERE issue_id = $1 GROUP BY status ORDER BY status",
                    )
                    .bind(id)
                    .fetch_all(pool)
                    .await?,
                    None => {
                        sqlx::query_as("SELECT status, COUNT(*) FROM deliveries GROUP BY status ORDER BY status")
                            .fetch_all(pool)
                            .await?
                    }
                };
            Ok(rows)
        })
    }
}

/// SMTP replies can be long; the ledger keeps enough to diagnose.
fn truncate(s: &str) -> String {
    s.chars().take(500).collect()
}
