//! Issues: what an editor sends, and their progress through the ledger.

use super::{Result, Store, in_tx, reading, with_pool};
use crate::clock::Timestamp;
use crate::domain::IssueStatus;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IssueRow {
    pub id: i64,
    pub newsletter_id: i64,
    pub subject: String,
    pub body_markdown: String,
    #[sqlx(try_from = "String")]
    pub status: IssueStatus,
    pub paused_reason: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// The hidden preview line after the subject; `None`: the mail client picks the first text.
    pub preheader: Option<String>,
}

/// An issue to create, with its ledger.
#[derive(Debug, Clone, Copy)]
pub struct NewIssue<'a> {
    pub newsletter_id: i64,
    pub subject: &'a str,
    pub body_markdown: &'a str,
    /// Refuses the same file twice (see `Draft::check_not_sent`).
    pub content_hash: &'a str,
    pub created_at: Timestamp,
    /// When its messages fall due: `created_at`, or later for a scheduled issue.
    pub send_at: Timestamp,
    pub preheader: Option<&'a str>,
}

/// A new issue, sending: binds newsletter, subject, body, content hash, now; returns its id.
pub(super) const INSERT_ISSUE: &str = "INSERT INTO issues (newsletter_id, subject, body_markdown, content_hash, status, created_at, preheader) \
     VALUES ($1, $2, $3, $4, 'sending', $5, $6) RETURNING id";

/// An issue's ledger, one row per confirmed, unsuppressed reader: binds issue, now, newsletter.
pub(super) const QUEUE_AUDIENCE: &str = "INSERT INTO deliveries (kind, issue_id, subscriber_id, status, next_attempt_at, created_at) \
     SELECT 'issue', $1, sub.subscriber_id, 'queued', $4, $2 \
     FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
     WHERE sub.newsletter_id = $3 AND sub.status = 'confirmed' AND s.suppressed_at IS NULL";

impl Store {
    /// Confirmed, unsuppressed subscribers of a newsletter: the audience of an issue.
    pub async fn audience_size(&self, newsletter_id: i64) -> Result<i64> {
        reading!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
                 WHERE sub.newsletter_id = $1 AND sub.status = 'confirmed' AND s.suppressed_at IS NULL",
            )
            .bind(newsletter_id)
            .fetch_one(pool)
            .await?)
        })
    }

    /// An earlier issue of the same content to the same newsletter, if any: (id, created_at).
    pub async fn find_issue_by_content(&self, newsletter_id: i64, content_hash: &str) -> Result<Option<(i64, i64)>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, created_at FROM issues WHERE newsletter_id = $1 AND content_hash = $2 ORDER BY id LIMIT 1",
            )
            .bind(newsletter_id)
            .bind(content_hash)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Creates an issue and its whole ledger in one transaction, with one
    /// `INSERT … SELECT`: no list of subscribers ever passes through memory.
    /// The issue is new, so no row can exist yet: `deliveries_once` only
    /// guards, it is not asked to resolve conflicts (which costs ~20%).
    pub async fn create_issue(&self, issue: &NewIssue<'_>) -> Result<(i64, u64)> {
        in_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(INSERT_ISSUE)
                .bind(issue.newsletter_id)
                .bind(issue.subject)
                .bind(issue.body_markdown)
                .bind(issue.content_hash)
                .bind(issue.created_at)
                .bind(issue.preheader)
                .fetch_one(&mut *tx)
                .await?;
            let queued = sqlx::query(QUEUE_AUDIENCE)
                .bind(id)
                .bind(issue.created_at)
                .bind(issue.newsletter_id)
                .bind(issue.send_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Ok((id, queued))
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(issue = id))]
    pub async fn issue(&self, id: i64) -> Result<Option<IssueRow>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, newsletter_id, subject, body_markdown, status, paused_reason, created_at, completed_at, preheader \
                 FROM issues WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?)
        })
    }

    pub async fn issues(&self, newsletter_id: Option<i64>) -> Result<Vec<IssueRow>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, newsletter_id, subject, body_markdown, status, paused_reason, created_at, completed_at, preheader \
                 FROM issues WHERE ($1 IS NULL OR newsletter_id = $1) ORDER BY id DESC",
            )
            .bind(newsletter_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Pauses a sending issue; returns whether it was sending.
    pub async fn pause_issue(&self, id: i64, reason: &str) -> Result<bool> {
        with_pool!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE issues SET status = 'paused', paused_reason = $2 WHERE id = $1 AND status = 'sending'",
            )
            .bind(id)
            .bind(reason)
            .execute(pool)
            .await?
            .rows_affected()
                == 1)
        })
    }

    /// Resumes a paused issue; returns whether it was paused. Policy failures start counting afresh.
    pub async fn resume_issue(&self, id: i64) -> Result<bool> {
        with_pool!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE issues SET status = 'sending', paused_reason = NULL, policy_failures = 0 \
                 WHERE id = $1 AND status = 'paused'",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected()
                == 1)
        })
    }

    /// Requeues an issue's `failed` and/or `ambiguous` rows as new (attempts
    /// reset), for after the cause was fixed, and sets a done issue sending
    /// again so they are claimed. Returns `None` when there is no such issue,
    /// else how many rows were requeued and the issue's status now.
    pub async fn requeue_deliveries(
        &self,
        id: i64,
        failed: bool,
        ambiguous: bool,
        now: Timestamp,
    ) -> Result<Option<(u64, IssueStatus)>> {
        in_tx!(self, |tx| {
            let found: Option<IssueRow> = sqlx::query_as(
                "SELECT id, newsletter_id, subject, body_markdown, status, paused_reason, created_at, completed_at, preheader \
                 FROM issues WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match found {
                None => Ok(None),
                Some(issue) => {
                    // A status not asked for is bound as NULL, which matches nothing.
                    let requeued = sqlx::query(
                        "UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = $2, \
                         claim_token = NULL, lease_until = NULL WHERE issue_id = $1 AND status IN ($3, $4)",
                    )
                    .bind(id)
                    .bind(now)
                    .bind(failed.then_some("failed"))
                    .bind(ambiguous.then_some("ambiguous"))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    // Reopened whenever rows wait, requeued now or before: on PostgreSQL a
                    // completion that read the ledger just before this commit can still mark
                    // the issue done, and running `issue retry` again must undo that.
                    let reopened = sqlx::query(
                        "UPDATE issues SET status = 'sending', completed_at = NULL WHERE id = $1 AND status = 'done' \
                         AND EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = $1 AND d.status IN ('queued', 'retry'))",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    let status = if reopened == 1 { IssueStatus::Sending } else { issue.status };
                    Ok(Some((requeued, status)))
                }
            }
        })
    }

    /// Counts a policy refusal (5.7.x) against an issue, pausing it at `limit`.
    /// Returns whether this refusal paused it.
    pub async fn record_policy_failure(&self, id: i64, limit: i64, reply: &str) -> Result<bool> {
        let failures: Option<i64> = with_pool!(self, |pool| {
            let failures: Option<i64> = sqlx::query_scalar(
                "UPDATE issues SET policy_failures = policy_failures + 1 WHERE id = $1 RETURNING policy_failures",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            failures
        });
        if failures.is_some_and(|f| f >= limit) {
            return self.pause_issue(id, &format!("paused after {limit} policy refusal(s); last reply: {reply}")).await;
        }
        Ok(false)
    }

    /// When the next message of an issue is due: later than now for an issue
    /// scheduled with `--at`, or waiting for a retry.
    pub async fn next_due(&self, issue: i64) -> Result<Option<Timestamp>> {
        reading!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE issue_id = $1 AND status IN ('queued', 'retry')",
            )
            .bind(issue)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Marks sending issues with nothing left to send as done; returns each
    /// one's (id, created_at), for the log line that says it is sent.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn complete_issues(&self, now: Timestamp) -> Result<Vec<(i64, Timestamp)>> {
        with_pool!(self, |pool| {
            Ok(sqlx::query_as(
                "UPDATE issues SET status = 'done', completed_at = $1 WHERE status = 'sending' \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = issues.id \
                                 AND d.status IN ('queued', 'retry', 'sending')) \
                 RETURNING id, created_at",
            )
            .bind(now)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Failed, bounced and ambiguous deliveries of an issue with their replies: (email, status, reply).
    pub async fn issue_failures(&self, id: i64, limit: i64) -> Result<Vec<(String, String, Option<String>)>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT s.email, d.status, d.last_reply FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id \
                 WHERE d.issue_id = $1 AND d.status IN ('failed', 'bounced', 'ambiguous', 'retry') ORDER BY d.id LIMIT $2",
            )
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }
}
