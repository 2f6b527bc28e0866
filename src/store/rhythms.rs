//! Digest runs for readers' own rhythms: one run per (newsletter, rhythm,
//! zone, period), each reader's mail built from the stories that arrived
//! since their own `digest_through`, which moves in the same transaction
//! that queues the mail. A reader who changes rhythm carries their position
//! along: the next mail, whichever rhythm sends it, starts where the last
//! one stopped.

use sqlx::QueryBuilder;

use super::digests::{DigestOutcome, claim_period, digest_issue, mark_issued, run_row};
use super::items::{ItemRow, item_columns};
use super::{Db, Result, Store, in_tx, reading, with_pool};
use crate::clock::Timestamp;

/// The readers one run mails: a newsletter's confirmed readers of one rhythm in one zone.
/// `''` in the database means "the newsletter's default"; `*_is_default` says whether
/// this slot's rhythm or zone is that default, so those readers belong here too.
#[derive(Debug, Clone, Copy)]
pub struct RhythmSlot<'a> {
    pub newsletter_id: i64,
    pub rhythm: &'a str,
    pub rhythm_is_default: bool,
    pub zone: &'a str,
    pub zone_is_default: bool,
}

impl RhythmSlot<'_> {
    fn rhythm_alt(&self) -> &str {
        if self.rhythm_is_default { "" } else { self.rhythm }
    }

    fn zone_alt(&self) -> &str {
        if self.zone_is_default { "" } else { self.zone }
    }
}

#[derive(Debug, Clone)]
pub struct RhythmRequest<'a> {
    pub slot: RhythmSlot<'a>,
    /// The run's key besides the newsletter: e.g. `daily:Europe/Kyiv`.
    pub stream: &'a str,
    pub period_start: Timestamp,
    pub period_label: &'a str,
    /// How far back a reader's first mail may reach: it starts at their
    /// confirmation, but not before this.
    pub floor: Timestamp,
    /// Stories that arrived up to here go out; later ones wait for the next run.
    pub cutoff: Timestamp,
    /// Recorded as skipped for this reason, nobody's position moved (a late run).
    pub skip: Option<&'a str>,
    pub skip_if_empty: bool,
    pub now: Timestamp,
}

/// The readers of a slot: binds newsletter ($1), rhythm ($2, $3), zone ($4, $5).
/// Plain `IN` lists, so each run seeks its own range of `subscriptions_by_rhythm`.
macro_rules! slot_readers {
    () => {
        "sub.newsletter_id = $1 AND sub.status = 'confirmed' AND sub.rhythm IN ($2, $3) AND sub.timezone IN ($4, $5)"
    };
}

/// Readers grouped by position (-1: never had a digest), with the earliest
/// confirmation in the group: binds slot ($1–$5).
/// Binds a slot's five parameters ($1–$5 of [`slot_readers!`]) to `$query`.
macro_rules! bind_slot {
    ($query:expr, $slot:expr) => {
        $query
            .bind($slot.newsletter_id)
            .bind($slot.rhythm)
            .bind($slot.rhythm_alt())
            .bind($slot.zone)
            .bind($slot.zone_alt())
    };
}

const GROUPS: &str = concat!(
    "SELECT COALESCE(sub.digest_through, -1) AS position, MIN(COALESCE(sub.confirmed_at, 0)) AS confirmed, \
     COUNT(*) AS readers FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
     WHERE ",
    slot_readers!(),
    " AND s.suppressed_at IS NULL GROUP BY 1 ORDER BY 3 DESC, 1"
);

const ARRIVED: &str = concat!(
    "SELECT ",
    item_columns!(),
    ", NULL AS run_id, NULL AS issue_id FROM items i \
     WHERE i.newsletter_id = $1 AND i.added_at > $2 AND i.added_at <= $3 \
     ORDER BY i.published_at DESC, i.id DESC"
);

/// PostgreSQL: move the group's position and queue its mail in one statement,
/// so a reader whose rhythm changes meanwhile is either in (and moved) or out.
/// Binds slot ($1–$5), position ($6), cutoff ($7), issue ($8), now ($9).
const QUEUE_GROUP_PG: &str = concat!(
    "WITH moved AS (UPDATE subscriptions sub SET digest_through = $7 FROM subscribers s \
     WHERE s.id = sub.subscriber_id AND s.suppressed_at IS NULL AND ",
    slot_readers!(),
    " AND COALESCE(sub.digest_through, -1) = $6 RETURNING sub.subscriber_id) \
     INSERT INTO deliveries (kind, issue_id, subscriber_id, status, next_attempt_at, created_at) \
     SELECT 'issue', $8, subscriber_id, 'queued', $9, $9 FROM moved"
);

/// SQLite (one writer: two statements in one transaction are as good).
/// Binds slot ($1–$5), position ($6), issue ($7), now ($8).
const QUEUE_GROUP_SQLITE: &str = concat!(
    "INSERT INTO deliveries (kind, issue_id, subscriber_id, status, next_attempt_at, created_at) \
     SELECT 'issue', $7, sub.subscriber_id, 'queued', $8, $8 \
     FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
     WHERE s.suppressed_at IS NULL AND ",
    slot_readers!(),
    " AND COALESCE(sub.digest_through, -1) = $6"
);

/// Moves a group's position: binds slot ($1–$5), position ($6), cutoff ($7).
const MOVE_GROUP: &str = concat!(
    "UPDATE subscriptions AS sub SET digest_through = $7 WHERE ",
    slot_readers!(),
    " AND COALESCE(sub.digest_through, -1) = $6 \
     AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = sub.subscriber_id AND s.suppressed_at IS NULL)"
);

impl Store {
    /// Makes one rhythm run, once: claims the period, then for each group of
    /// readers who had their last digest at the same point, an issue with the
    /// stories since then, their ledger rows and their new position.
    /// `subject` names an issue from the stories it lists.
    pub async fn make_rhythm_run(
        &self,
        req: &RhythmRequest<'_>,
        subject: &(dyn Fn(&[ItemRow]) -> String + Sync),
    ) -> Result<DigestOutcome> {
        let postgres = matches!(self.db, Db::Postgres(_));
        let slot = req.slot;
        in_tx!(self, |tx| {
            let reason = req.skip.unwrap_or("nothing new");
            let run_id =
                claim_period!(tx, slot.newsletter_id, req.stream, req.period_start, req.period_label, reason, req.now);
            let groups: Vec<(i64, i64, i64)> = if req.skip.is_some() {
                vec![]
            } else {
                bind_slot!(sqlx::query_as(GROUPS), slot).fetch_all(&mut *tx).await?
            };
            let (mut first_issue, mut recipients, mut stories_sent) = (None, 0i64, std::collections::HashSet::new());
            for (position, confirmed, _) in groups {
                // A reader's first mail starts at their confirmation (the earliest in
                // the group), and reaches back no further than the floor.
                let since = if position < 0 { confirmed.max(req.floor) } else { position };
                let stories: Vec<ItemRow> = sqlx::query_as(ARRIVED)
                    .bind(slot.newsletter_id)
                    .bind(since)
                    .bind(req.cutoff)
                    .fetch_all(&mut *tx)
                    .await?;
                let issue_id: Option<i64> = if stories.is_empty() && req.skip_if_empty {
                    None
                } else {
                    let content_key = format!("digest-run-{run_id}-{position}");
                    let title = subject(&stories);
                    Some(digest_issue!(tx, slot.newsletter_id, title, &stories, content_key, req.now, run_id))
                };
                // Without an issue the group still moves on: nothing arrived for it to miss.
                let queued = match issue_id {
                    Some(issue) if postgres => bind_slot!(sqlx::query(QUEUE_GROUP_PG), slot)
                        .bind(position)
                        .bind(req.cutoff)
                        .bind(issue)
                        .bind(req.now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                    Some(issue) => bind_slot!(sqlx::query(QUEUE_GROUP_SQLITE), slot)
                        .bind(position)
                        .bind(issue)
                        .bind(req.now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                    None => 0,
                };
                if issue_id.is_none() || !postgres {
                    bind_slot!(sqlx::query(MOVE_GROUP), slot).bind(position).bind(req.cutoff).execute(&mut *tx).await?;
                }
                if let Some(id) = issue_id {
                    recipients += queued as i64;
                    first_issue.get_or_insert(id);
                    stories_sent.extend(stories.iter().map(|s| s.id));
                }
            }
            if let Some(issue) = first_issue {
                mark_issued!(tx, run_id, stories_sent.len() as i64, recipients, issue);
            }
            Ok(DigestOutcome::Made(run_row!(tx, slot.newsletter_id, req.stream, req.period_start)))
        })
    }

    /// The (rhythm, zone) pairs a newsletter's confirmed readers have, `''`
    /// for the defaults. One index probe per pair (a loose index scan), so
    /// listing them costs the number of pairs, not the number of readers
    /// (a `DISTINCT` read all 1 000 000 index entries: 2 s on PostgreSQL).
    pub async fn rhythm_slots(&self, newsletter_id: i64) -> Result<Vec<(String, String)>> {
        const FIRST: &str = "SELECT rhythm, timezone FROM subscriptions WHERE newsletter_id = $1 \
             AND status = 'confirmed' ORDER BY rhythm, timezone LIMIT 1";
        const NEXT: &str = "SELECT rhythm, timezone FROM subscriptions WHERE newsletter_id = $1 \
             AND status = 'confirmed' AND (rhythm, timezone) > ($2, $3) ORDER BY rhythm, timezone LIMIT 1";
        let mut pairs: Vec<(String, String)> = vec![];
        loop {
            let next: Option<(String, String)> = reading!(self, |pool| {
                match pairs.last() {
                    None => sqlx::query_as(FIRST).bind(newsletter_id).fetch_optional(pool).await?,
                    Some((rhythm, zone)) => {
                        sqlx::query_as(NEXT).bind(newsletter_id).bind(rhythm).bind(zone).fetch_optional(pool).await?
                    }
                }
            });
            match next {
                Some(pair) => pairs.push(pair),
                None => return Ok(pairs),
            }
        }
    }

    /// When the oldest story that some reader of the slot has not had yet
    /// arrived, if any (a reader who never had a digest: since their
    /// confirmation, but not before `floor`).
    pub async fn first_waiting_story(&self, slot: RhythmSlot<'_>, floor: Timestamp) -> Result<Option<Timestamp>> {
        reading!(self, |pool| {
            Ok(bind_slot!(
                sqlx::query_scalar(concat!(
                    "SELECT MIN(i.added_at) FROM items i WHERE i.newsletter_id = $1 AND i.added_at > \
                     (SELECT MIN(COALESCE(sub.digest_through, \
                       CASE WHEN sub.confirmed_at > $6 THEN sub.confirmed_at ELSE $6 END)) FROM subscriptions sub WHERE ",
                    slot_readers!(),
                    ")"
                )),
                slot
            )
            .bind(floor)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Sets readers whose rhythm is not in `offered` to the default (`''`); returns how many.
    pub async fn reset_rhythms_not_offered(&self, newsletter_id: i64, offered: &[&str]) -> Result<u64> {
        with_pool!(self, |pool| {
            let mut qb = QueryBuilder::new("UPDATE subscriptions SET rhythm = '' WHERE newsletter_id = ");
            qb.push_bind(newsletter_id).push(" AND rhythm <> '' AND rhythm NOT IN (");
            let mut list = qb.separated(", ");
            for rhythm in offered {
                list.push_bind(*rhythm);
            }
            qb.push(")");
            Ok(qb.build().execute(pool).await?.rows_affected())
        })
    }

    /// Sets a reader's rhythm and zone for one newsletter (`None`: the newsletter's default).
    /// Their position stays: the next mail, by the new rhythm, starts where the last one stopped.
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id, newsletter_id = newsletter_id))]
    pub async fn set_rhythm(
        &self,
        subscriber_id: i64,
        newsletter_id: i64,
        rhythm: Option<&str>,
        zone: Option<&str>,
    ) -> Result<bool> {
        with_pool!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE subscriptions SET rhythm = $3, timezone = $4 WHERE subscriber_id = $1 AND newsletter_id = $2",
            )
            .bind(subscriber_id)
            .bind(newsletter_id)
            .bind(rhythm.unwrap_or(""))
            .bind(zone.unwrap_or(""))
            .execute(pool)
            .await?
            .rows_affected()
                == 1)
        })
    }
}
