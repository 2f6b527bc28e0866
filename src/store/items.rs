//! Stories for digests, and what each newsletter's feeds last answered.

use sqlx::QueryBuilder;

use super::{Result, Store, reading, with_pool};
use crate::clock::Timestamp;
use crate::digest::{SCHEDULE_STREAM, Story};

/// A stored story, with the digest of the newsletter's schedule that carried it, if any.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ItemRow {
    pub id: i64,
    pub newsletter_id: i64,
    pub title: String,
    pub url: String,
    pub summary: Option<String>,
    /// The feed's URL, `cli` or `api`.
    pub source: String,
    pub published_at: Timestamp,
    pub added_at: Timestamp,
    pub run_id: Option<i64>,
    pub issue_id: Option<i64>,
}

/// What a feed last answered, kept for conditional GET and for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedState {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub fetched_at: Option<Timestamp>,
    pub ok_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// How a fetch went, as [`Store::record_feed_fetch`] keeps it.
#[derive(Debug, Clone, Copy)]
pub enum FeedFetch<'a> {
    /// New content, with the validators to send next time.
    Changed { etag: Option<&'a str>, last_modified: Option<&'a str> },
    /// 304: nothing new.
    Unchanged,
    /// The reason it failed, logged and shown; the next fetch tries again.
    Failed(&'a str),
}

/// Rows per INSERT when storing a feed's stories.
const BATCH: usize = 100;

/// The columns of an [`ItemRow`] from `items i`, for `concat!` into a query.
macro_rules! item_columns {
    () => {
        "i.id, i.newsletter_id, i.title, i.url, i.summary, i.source, i.published_at, i.added_at"
    };
}
pub(super) use item_columns;

impl Store {
    /// Stores stories not stored before for this newsletter (by GUID, else
    /// link) and returns how many were new. A publication time in the future
    /// or missing becomes `now`: a story cannot wait in a feed's clock skew.
    pub async fn add_items(&self, newsletter_id: i64, stories: &[Story], source: &str, now: Timestamp) -> Result<u64> {
        let mut added = 0;
        for chunk in stories.chunks(BATCH) {
            added += with_pool!(self, |pool| {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO items (newsletter_id, dedup_key, title, url, summary, source, published_at, added_at) ",
                );
                qb.push_values(chunk, |mut b, s| {
                    b.push_bind(newsletter_id)
                        .push_bind(s.dedup_key())
                        .push_bind(&s.title)
                        .push_bind(s.url.as_str())
                        .push_bind(&s.summary)
                        .push_bind(source)
                        .push_bind(s.published_at.map_or(now, |p| p.min(now)))
                        .push_bind(now);
                });
                qb.push(" ON CONFLICT (newsletter_id, dedup_key) DO NOTHING");
                qb.build().execute(pool).await?.rows_affected()
            });
        }
        Ok(added)
    }

    /// A newsletter's stories, newest first; `pending_only`: those no digest carried yet.
    pub async fn items(&self, newsletter_id: i64, pending_only: bool, limit: i64) -> Result<Vec<ItemRow>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(concat!(
                "SELECT ",
                item_columns!(),
                ", di.run_id, r.issue_id FROM items i \
                 LEFT JOIN digest_items di ON di.item_id = i.id AND di.stream = $2 \
                 LEFT JOIN digest_runs r ON r.id = di.run_id \
                 WHERE i.newsletter_id = $1 AND (NOT $3 OR di.run_id IS NULL) \
                 ORDER BY i.published_at DESC, i.id DESC LIMIT $4"
            ))
            .bind(newsletter_id)
            .bind(SCHEDULE_STREAM)
            .bind(pending_only)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// What `url` answered for this newsletter last time (nothing before its first fetch).
    pub async fn feed_state(&self, newsletter_id: i64, url: &str) -> Result<Option<FeedState>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT url, etag, last_modified, fetched_at, ok_at, last_error FROM feeds \
                 WHERE newsletter_id = $1 AND url = $2",
            )
            .bind(newsletter_id)
            .bind(url)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Records a fetch: new validators on a change, the reason on a failure.
    pub async fn record_feed_fetch(
        &self,
        newsletter_id: i64,
        url: &str,
        fetch: FeedFetch<'_>,
        now: Timestamp,
    ) -> Result<()> {
        let (ok, validators, error) = match fetch {
            FeedFetch::Changed { etag, last_modified } => (true, Some((etag, last_modified)), None),
            FeedFetch::Unchanged => (true, None, None),
            FeedFetch::Failed(reason) => (false, None, Some(reason)),
        };
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO feeds (newsletter_id, url, etag, last_modified, fetched_at, ok_at, last_error) \
                 VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN $5 END, $7) \
                 ON CONFLICT (newsletter_id, url) DO UPDATE SET fetched_at = excluded.fetched_at, \
                 last_error = excluded.last_error, \
                 ok_at = COALESCE(excluded.ok_at, feeds.ok_at), \
                 etag = CASE WHEN $8 THEN excluded.etag ELSE feeds.etag END, \
                 last_modified = CASE WHEN $8 THEN excluded.last_modified ELSE feeds.last_modified END",
            )
            .bind(newsletter_id)
            .bind(url)
            .bind(validators.and_then(|v| v.0))
            .bind(validators.and_then(|v| v.1))
            .bind(now)
            .bind(ok)
            .bind(error)
            .bind(validators.is_some())
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
