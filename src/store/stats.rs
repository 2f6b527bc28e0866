//! The figures behind `bulletin stats`: per-day and per-issue counts,
//! aggregated in SQL (one row per newsletter and UTC day, one per issue),
//! so a year of history never passes through memory row by row.
//!
//! Days are UTC days: `timestamp / 86400`, the same integer division on both
//! backends. A reader is on the list from `confirmed_at` until
//! `unsubscribed_at` (a re-confirmation moves `confirmed_at` past an older
//! `unsubscribed_at`, so a leave counts only when it follows the join).

use super::{Result, Store, reading};
use crate::clock::Timestamp;

/// Seconds in a UTC day: stored timestamps divided by it are day numbers.
pub const DAY: i64 = 86_400;

/// One newsletter's activity on one UTC day with any.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DailyRow {
    pub newsletter_id: i64,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Readers whose subscription was confirmed that day.
    pub joined: i64,
    /// Confirmed readers who unsubscribed that day.
    pub unsubscribed: i64,
    /// Issue mail refused for good that day (the reader's address is suppressed).
    pub bounced: i64,
    /// Confirmed readers at the end of the day.
    pub list_size: i64,
}

/// One issue and how its mail went.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IssueTally {
    pub id: i64,
    pub newsletter_id: i64,
    pub subject: String,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub delivered: i64,
    pub bounced: i64,
    pub failed: i64,
    /// Everything not settled as delivered, bounced or failed (queued, retrying, skipped, ambiguous).
    pub other: i64,
    /// Readers of the newsletter who unsubscribed within [`UNSUBSCRIBE_WINDOW`] of the issue.
    pub unsubscribed: i64,
    /// Readers who reported the issue as spam (ARF reports, provider webhooks).
    pub complaints: i64,
}

/// How long after an issue an unsubscribe is counted against it.
pub const UNSUBSCRIBE_WINDOW: i64 = 7 * DAY;

/// Joins, leaves and bounces per newsletter (`$1`, NULL for all) and UTC
/// day from day `$2` on; the list size is the running sum of joins minus
/// leaves over the whole history, taken before the days are filtered.
/// A bounced row's `next_attempt_at` is the time it was settled.
const DAILY: &str = "WITH events (newsletter_id, day, joined, left_list, bounced) AS ( \
       SELECT newsletter_id, confirmed_at / 86400, 1, 0, 0 FROM subscriptions WHERE confirmed_at IS NOT NULL \
       UNION ALL \
       SELECT newsletter_id, unsubscribed_at / 86400, 0, 1, 0 FROM subscriptions \
        WHERE confirmed_at IS NOT NULL AND unsubscribed_at >= confirmed_at \
       UNION ALL \
       SELECT i.newsletter_id, d.next_attempt_at / 86400, 0, 0, 1 FROM deliveries d JOIN issues i ON i.id = d.issue_id \
        WHERE d.status = 'bounced' \
     ), days AS ( \
       SELECT newsletter_id, day, SUM(joined) AS joined, SUM(left_list) AS left_list, SUM(bounced) AS bounced \
       FROM events WHERE ($1 IS NULL OR newsletter_id = $1) GROUP BY newsletter_id, day \
     ), sized AS ( \
       SELECT newsletter_id, day, joined, left_list, bounced, \
              SUM(joined - left_list) OVER (PARTITION BY newsletter_id ORDER BY day) AS list_size FROM days \
     ) \
     SELECT newsletter_id, day, CAST(joined AS BIGINT) AS joined, CAST(left_list AS BIGINT) AS unsubscribed, \
            CAST(bounced AS BIGINT) AS bounced, CAST(list_size AS BIGINT) AS list_size \
     FROM sized WHERE day >= $2 ORDER BY newsletter_id, day";

/// Issues of newsletter `$1` (NULL for all) created at or after `$2`, with
/// their ledger counted by status and the newsletter's unsubscribes in the
/// week that followed each, and the spam complaints about each.
const ISSUES: &str = "SELECT i.id, i.newsletter_id, i.subject, i.created_at, i.completed_at, \
       (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = i.id AND d.status = 'sent') AS delivered, \
       (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = i.id AND d.status = 'bounced') AS bounced, \
       (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = i.id AND d.status = 'failed') AS failed, \
       (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = i.id \
         AND d.status NOT IN ('sent', 'bounced', 'failed')) AS other, \
       (SELECT COUNT(*) FROM subscriptions s WHERE s.newsletter_id = i.newsletter_id \
         AND s.unsubscribed_at >= i.created_at AND s.unsubscribed_at < i.created_at + 604800) AS unsubscribed, \
       (SELECT COUNT(*) FROM feedback_events f WHERE f.issue_id = i.id AND f.kind = 'complaint') AS complaints \
     FROM issues i WHERE ($1 IS NULL OR i.newsletter_id = $1) AND i.created_at >= $2 ORDER BY i.created_at, i.id";

impl Store {
    /// Per-day activity and list size of one newsletter (or all) from `since_day` on; see [`DailyRow`].
    #[tracing::instrument(skip_all)]
    pub async fn daily_activity(&self, newsletter_id: Option<i64>, since_day: i64) -> Result<Vec<DailyRow>> {
        reading!(self, |pool| Ok(sqlx::query_as(DAILY).bind(newsletter_id).bind(since_day).fetch_all(pool).await?))
    }

    /// Every issue of one newsletter (or all) created at or after `since`, oldest first; see [`IssueTally`].
    #[tracing::instrument(skip_all)]
    pub async fn issue_tallies(&self, newsletter_id: Option<i64>, since: Timestamp) -> Result<Vec<IssueTally>> {
        reading!(self, |pool| Ok(sqlx::query_as(ISSUES).bind(newsletter_id).bind(since).fetch_all(pool).await?))
    }
}
