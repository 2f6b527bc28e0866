//! Digest runs: one per (newsletter, stream, period), claimed, filled and
//! turned into an issue in one transaction, so a period is sent once or not
//! at all, whoever else tries and whenever the process dies.

use sqlx::QueryBuilder;

use super::issues::QUEUE_AUDIENCE;
use super::items::{ItemRow, item_columns};
use super::{Result, Store, in_tx, reading};
use crate::clock::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestRunStatus {
    /// Became an issue (its delivery is the issue's business).
    Issued,
    /// Nothing was sent for the period; `reason` says why.
    Skipped,
}

impl TryFrom<String> for DigestRunStatus {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.as_str() {
            "issued" => Ok(Self::Issued),
            "skipped" => Ok(Self::Skipped),
            _ => Err(format!("unknown digest run status {s:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DigestRunRow {
    pub id: i64,
    pub newsletter_id: i64,
    pub stream: String,
    pub period_start: Timestamp,
    pub period_label: String,
    #[sqlx(try_from = "String")]
    pub status: DigestRunStatus,
    pub reason: Option<String>,
    pub items: i64,
    pub recipients: i64,
    pub issue_id: Option<i64>,
    pub created_at: Timestamp,
}

/// Which stories a run takes, and what it does when there are none.
#[derive(Debug, Clone)]
pub struct DigestRequest<'a> {
    pub newsletter_id: i64,
    pub stream: &'a str,
    pub period_start: Timestamp,
    pub period_label: &'a str,
    pub subject: &'a str,
    pub max_items: u32,
    /// Stories published after this and stored by `now` are candidates, newest first.
    pub oldest: Timestamp,
    /// Recorded as skipped for this reason without looking at stories (a late run).
    pub skip: Option<&'a str>,
    pub skip_if_empty: bool,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestOutcome {
    /// This call made the period's digest (sent or skipped).
    Made(DigestRunRow),
    /// The period already had its run, made by someone else or earlier.
    AlreadyRan(DigestRunRow),
}

macro_rules! run_columns {
    () => {
        "id, newsletter_id, stream, period_start, period_label, status, reason, items, recipients, issue_id, created_at"
    };
}

/// Claims a period: binds newsletter, stream, period start, label, reason if skipped, now;
/// returns the new run's id, or nothing when the period already has one.
pub(crate) const INSERT_RUN: &str = "INSERT INTO digest_runs (newsletter_id, stream, period_start, period_label, status, reason, created_at) \
     VALUES ($1, $2, $3, $4, 'skipped', $5, $6) \
     ON CONFLICT (newsletter_id, stream, period_start) DO NOTHING RETURNING id";

/// What `issue list` and `issue status` show of a digest: one line per story.
pub(crate) fn listing(stories: &[ItemRow]) -> String {
    if stories.is_empty() {
        return "(no new stories)\n".to_owned();
    }
    stories.iter().map(|s| format!("- {} <{}>\n", s.title, s.url)).collect()
}

/// One period's run: binds newsletter, stream, period start.
pub(crate) const SELECT_RUN: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM digest_runs WHERE newsletter_id = $1 AND stream = $2 AND period_start = $3"
);

/// The steps every digest run takes inside its transaction, for schedule
/// runs (here) and rhythm runs (`rhythms.rs`) alike. Macros, not functions:
/// the transaction is a different type on each backend (see `in_tx!`).
///
/// `claim_period!` claims the period and evaluates to the new run's id, or
/// returns `AlreadyRan` with the run that holds it.
macro_rules! claim_period {
    ($tx:ident, $newsletter:expr, $stream:expr, $period_start:expr, $label:expr, $reason:expr, $now:expr) => {{
        let claimed: Option<i64> = sqlx::query_scalar($crate::store::digests::INSERT_RUN)
            .bind($newsletter)
            .bind($stream)
            .bind($period_start)
            .bind($label)
            .bind($reason)
            .bind($now)
            .fetch_optional(&mut *$tx)
            .await?;
        match claimed {
            Some(id) => id,
            None => {
                let held = $crate::store::digests::run_row!($tx, $newsletter, $stream, $period_start);
                return Ok($crate::store::digests::DigestOutcome::AlreadyRan(held));
            }
        }
    }};
}

/// The run of a period, read inside the transaction.
macro_rules! run_row {
    ($tx:ident, $newsletter:expr, $stream:expr, $period_start:expr) => {{
        let row: $crate::store::digests::DigestRunRow = sqlx::query_as($crate::store::digests::SELECT_RUN)
            .bind($newsletter)
            .bind($stream)
            .bind($period_start)
            .fetch_one(&mut *$tx)
            .await?;
        row
    }};
}

/// Rows per INSERT of a digest's stories: one bind per column and row, and
/// SQLite takes at most 32 766 binds a statement (PostgreSQL 65 535), while
/// `max_items` may be 10 000 and a reader's rhythm mail has no cap at all.
pub(super) const ROWS_PER_INSERT: usize = 1000;

/// A digest issue of run `$run` listing `$stories` in order; evaluates to its id.
macro_rules! digest_issue {
    ($tx:ident, $newsletter:expr, $subject:expr, $stories:expr, $content_key:expr, $now:expr, $run:expr) => {{
        let stories: &[$crate::store::ItemRow] = $stories;
        let issue: i64 = sqlx::query_scalar(
            "INSERT INTO issues (newsletter_id, subject, body_markdown, content_hash, status, created_at, \
             digest_run_id) VALUES ($1, $2, $3, $4, 'sending', $5, $6) RETURNING id",
        )
        .bind($newsletter)
        .bind($subject)
        .bind($crate::store::digests::listing(stories))
        .bind($content_key)
        .bind($now)
        .bind($run)
        .fetch_one(&mut *$tx)
        .await?;
        let numbered: Vec<(usize, &$crate::store::ItemRow)> = stories.iter().enumerate().collect();
        for rows in numbered.chunks($crate::store::digests::ROWS_PER_INSERT) {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO issue_items (issue_id, item_id, position) ");
            qb.push_values(rows, |mut b, (position, s)| {
                b.push_bind(issue).push_bind(s.id).push_bind(*position as i64);
            });
            qb.build().execute(&mut *$tx).await?;
        }
        issue
    }};
}

/// Marks a run as having become issue `$issue`.
macro_rules! mark_issued {
    ($tx:ident, $run:expr, $stories:expr, $recipients:expr, $issue:expr) => {
        sqlx::query(
            "UPDATE digest_runs SET status = 'issued', reason = NULL, items = $2, recipients = $3, issue_id = $4 \
             WHERE id = $1",
        )
        .bind($run)
        .bind($stories)
        .bind($recipients)
        .bind($issue)
        .execute(&mut *$tx)
        .await?
    };
}

pub(super) use {claim_period, digest_issue, mark_issued, run_row};

/// Stories a run would carry: binds newsletter, oldest, now, stream, max items.
const CANDIDATES: &str = concat!(
    "SELECT ",
    item_columns!(),
    ", NULL AS run_id, NULL AS issue_id FROM items i \
     WHERE i.newsletter_id = $1 AND i.published_at > $2 AND i.published_at <= $3 AND i.added_at <= $3 \
     AND NOT EXISTS (SELECT 1 FROM digest_items di WHERE di.item_id = i.id AND di.stream = $4) \
     ORDER BY i.published_at DESC, i.id DESC LIMIT $5"
);

impl Store {
    /// Makes the period's digest run, once: claims the period, takes the
    /// stories, creates the issue with its ledger and records which stories
    /// it carries, all in one transaction.
    pub async fn make_digest_run(&self, req: &DigestRequest<'_>) -> Result<DigestOutcome> {
        in_tx!(self, |tx| {
            let reason = req.skip.unwrap_or("nothing new");
            let run_id =
                claim_period!(tx, req.newsletter_id, req.stream, req.period_start, req.period_label, reason, req.now);
            let stories: Vec<ItemRow> = if req.skip.is_some() {
                vec![]
            } else {
                sqlx::query_as(CANDIDATES)
                    .bind(req.newsletter_id)
                    .bind(req.oldest)
                    .bind(req.now)
                    .bind(req.stream)
                    .bind(i64::from(req.max_items))
                    .fetch_all(&mut *tx)
                    .await?
            };
            if req.skip.is_none() && !(stories.is_empty() && req.skip_if_empty) {
                let content_key = format!("digest-run-{run_id}");
                let issue_id =
                    digest_issue!(tx, req.newsletter_id, req.subject, &stories, content_key, req.now, run_id);
                let recipients = sqlx::query(QUEUE_AUDIENCE)
                    .bind(issue_id)
                    .bind(req.now)
                    .bind(req.newsletter_id)
                    .bind(req.now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let numbered: Vec<(usize, &ItemRow)> = stories.iter().enumerate().collect();
                for rows in numbered.chunks(ROWS_PER_INSERT) {
                    let mut qb = QueryBuilder::new("INSERT INTO digest_items (run_id, item_id, stream, position) ");
                    qb.push_values(rows, |mut b, (position, s)| {
                        b.push_bind(run_id).push_bind(s.id).push_bind(req.stream).push_bind(*position as i64);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                mark_issued!(tx, run_id, stories.len() as i64, recipients as i64, issue_id);
            }
            Ok(DigestOutcome::Made(run_row!(tx, req.newsletter_id, req.stream, req.period_start)))
        })
    }

    /// The stories a run made now would carry (for `digest preview`; changes nothing).
    pub async fn digest_candidates(&self, req: &DigestRequest<'_>) -> Result<Vec<ItemRow>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(CANDIDATES)
                .bind(req.newsletter_id)
                .bind(req.oldest)
                .bind(req.now)
                .bind(req.stream)
                .bind(i64::from(req.max_items))
                .fetch_all(pool)
                .await?)
        })
    }

    /// The run of a period, if it has one.
    pub async fn digest_run(
        &self,
        newsletter_id: i64,
        stream: &str,
        period_start: Timestamp,
    ) -> Result<Option<DigestRunRow>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(SELECT_RUN)
                .bind(newsletter_id)
                .bind(stream)
                .bind(period_start)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Past runs, newest period first.
    pub async fn digest_runs(&self, newsletter_id: Option<i64>, limit: i64) -> Result<Vec<DigestRunRow>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM digest_runs WHERE ($1 IS NULL OR newsletter_id = $1) ORDER BY period_start DESC, id DESC LIMIT $2"
            ))
            .bind(newsletter_id)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The run an issue was made by and the stories it lists in mail order; `None` for an editor's issue.
    #[tracing::instrument(level = "debug", skip_all, fields(issue = issue_id))]
    pub async fn digest_of_issue(&self, issue_id: i64) -> Result<Option<(DigestRunRow, Vec<ItemRow>)>> {
        reading!(self, |pool| {
            let run: Option<DigestRunRow> = sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM digest_runs WHERE id = (SELECT digest_run_id FROM issues WHERE id = $1)"
            ))
            .bind(issue_id)
            .fetch_optional(pool)
            .await?;
            let Some(run) = run else { return Ok(None) };
            let stories = sqlx::query_as(concat!(
                "SELECT ",
                item_columns!(),
                ", NULL AS run_id, NULL AS issue_id FROM issue_items ii JOIN items i ON i.id = ii.item_id \
                 WHERE ii.issue_id = $1 ORDER BY ii.position"
            ))
            .bind(issue_id)
            .fetch_all(pool)
            .await?;
            Ok(Some((run, stories)))
        })
    }
}
