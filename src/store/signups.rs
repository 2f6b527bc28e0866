//! Recording a batch of signups (the writer of `signup::batch`): subscriber
//! rows, subscriptions, the consent record and the confirmation mail, in one
//! transaction.
//!
//! SQLite writes it one step per statement: it has one writer, and a
//! statement there costs no round trip. PostgreSQL gets the same steps in two
//! statements with constant text (arrays in, `UNNEST`), so a batch costs four
//! round trips whatever its size and each statement is prepared once per
//! connection. Two and not one: the first takes the row locks that serialize
//! signups of one address, and only a statement started after them sees what
//! an earlier signup of the address committed (its consent row, its mail),
//! which the consent de-duplication and the per-address cap read.

use std::collections::{HashMap, HashSet};

use sqlx::{PgPool, QueryBuilder};

use super::subscribers::{queue_confirmations, record_consent, rhythm_column, zone_column};
use super::{Consent, Db, MailCap, RequestedSubscription, Result, SignupOutcome, SignupRequest, Store, in_tx};
use crate::clock::Timestamp;

/// PostgreSQL, first statement: the subscriber rows (in the order given,
/// by address key, so concurrent batches lock them without deadlocks) and
/// their subscriptions; one row per subscription, with its status after.
/// Confirmed subscriptions stay confirmed; unsubscribed ones go back to
/// pending; rhythm and zone go into new rows only.
const SIGN_UP: &str = "\
WITH signed AS (
    INSERT INTO subscribers (email, email_key, created_at)
    SELECT a.email, a.email_key, $3 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS a (email, email_key, position)
    ORDER BY a.position
    ON CONFLICT (email_key) DO UPDATE SET email_key = excluded.email_key
    RETURNING email_key, id
), states AS (
    INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at, rhythm, timezone)
    SELECT s.id, w.newsletter_id, 'pending', $3, w.rhythm, w.timezone
    FROM UNNEST($4::text[], $5::bigint[], $6::text[], $7::text[])
        WITH ORDINALITY AS w (email_key, newsletter_id, rhythm, timezone, position)
    JOIN signed s ON s.email_key = w.email_key
    ORDER BY w.position
    ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET status =
        CASE WHEN subscriptions.status = 'unsubscribed' THEN 'pending' ELSE subscriptions.status END
    RETURNING subscriber_id, newsletter_id, status
)
SELECT s.email_key, s.id, st.newsletter_id, st.status FROM signed s LEFT JOIN states st ON st.subscriber_id = s.id";

/// PostgreSQL, second statement, for the pending subscriptions: a consent
/// row each unless it repeats a signup still pending from within the mail
/// interval (starting at $7; nothing but signups recorded for the pair
/// since the last signup after it), then what `queue_confirmations!` does: a
/// confirmation mail per subscriber the cap allows ($8 = i64::MIN, $9 the
/// day's start, $10 the daily cap). Lookups per row (a
/// lateral aggregate, scalar subqueries), never a join over every recent
/// event. Evaluates to the subscribers who got a mail.
const CONSENT_AND_MAIL: &str = "\
WITH pending AS (
    SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[])
        WITH ORDINALITY AS p (subscriber_id, newsletter_id, source, ip, user_agent, at, position)
), consented AS (
    INSERT INTO consent_events (subscriber_id, newsletter_id, action, source, ip, user_agent, created_at)
    SELECT p.subscriber_id, p.newsletter_id, 'signup', p.source, p.ip, p.user_agent, p.at
    FROM pending p
    CROSS JOIN LATERAL (SELECT MAX(e.id) AS id FROM consent_events e WHERE e.subscriber_id = p.subscriber_id
        AND e.newsletter_id = p.newsletter_id AND e.action = 'signup' AND e.created_at > $7) last_signup
    WHERE last_signup.id IS NULL OR EXISTS (SELECT 1 FROM consent_events later
        WHERE later.subscriber_id = p.subscriber_id AND later.newsletter_id = p.newsletter_id
        AND later.id > last_signup.id AND later.action <> 'signup')
    ORDER BY p.position
)
INSERT INTO deliveries (kind, subscriber_id, status, next_attempt_at, created_at)
SELECT 'confirmation', s.id, 'queued', $11, $11 FROM (SELECT DISTINCT subscriber_id AS id FROM pending) s
WHERE COALESCE((SELECT MAX(d.created_at) FROM deliveries d WHERE d.subscriber_id = s.id
        AND d.kind = 'confirmation'), $8) <= $7
    AND (SELECT COUNT(*) FROM deliveries d WHERE d.subscriber_id = s.id
        AND d.kind = 'confirmation' AND d.created_at > $9) < $10
RETURNING subscriber_id";

/// A batch's signups with their address keys, and the order rows are written in.
struct Batch<'a> {
    signups: &'a [SignupRequest],
    keys: Vec<String>,
    /// Positions in `signups`, by address key.
    order: Vec<usize>,
}

impl<'a> Batch<'a> {
    fn new(signups: &'a [SignupRequest]) -> Self {
        let keys: Vec<String> = signups.iter().map(|signup| signup.email.key()).collect();
        let mut order: Vec<usize> = (0..signups.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        Self { signups, keys, order }
    }

    /// Subscriber id of each signup, by position.
    fn ids(&self, by_key: &HashMap<String, i64>) -> Vec<i64> {
        self.keys.iter().map(|key| by_key.get(key).copied().unwrap_or_default()).collect()
    }

    /// Each signup's outcome, by position.
    fn outcomes(ids: &[i64], pending: &HashMap<i64, Vec<i64>>, queued: &HashSet<i64>) -> Vec<SignupOutcome> {
        ids.iter()
            .map(|&subscriber_id| {
                let mut pending = pending.get(&subscriber_id).cloned().unwrap_or_default();
                pending.sort_unstable();
                SignupOutcome { subscriber_id, pending, mail_queued: queued.contains(&subscriber_id) }
            })
            .collect()
    }
}

impl Store {
    /// Records a batch of signups and queues one confirmation mail per
    /// address for everything pending, unless the per-address cap holds,
    /// all in one transaction with a fixed number of statements whatever the
    /// batch size. The addresses must be distinct (see `signup::batch`).
    ///
    /// Confirmed subscriptions stay confirmed; unsubscribed ones go back to
    /// pending, since coming back needs a fresh opt-in. The subscriber rows
    /// are written first and in one order (by address key), which
    /// serializes concurrent signups of one address (a row lock on
    /// PostgreSQL, the write lock on SQLite) without deadlocks, so the cap
    /// check cannot be raced.
    #[tracing::instrument(level = "debug", skip_all, fields(signups = signups.len()))]
    pub async fn record_signups(
        &self,
        signups: &[SignupRequest],
        now: Timestamp,
        cap: MailCap,
    ) -> Result<Vec<SignupOutcome>> {
        if signups.is_empty() {
            return Ok(vec![]);
        }
        let batch = Batch::new(signups);
        match &self.db {
            Db::Postgres(pools) => record_on_postgres(&pools.main, &batch, now, cap).await,
            Db::Sqlite(_) => self.record_step_by_step(&batch, now, cap).await,
        }
    }

    /// One statement per step (SQLite).
    async fn record_step_by_step(&self, batch: &Batch<'_>, now: Timestamp, cap: MailCap) -> Result<Vec<SignupOutcome>> {
        let Batch { signups, keys, order } = batch;
        in_tx!(self, |tx| {
            let mut qb = QueryBuilder::new("INSERT INTO subscribers (email, email_key, created_at) ");
            qb.push_values(order.iter(), |mut b, i| {
                b.push_bind(signups[*i].email.as_str()).push_bind(&keys[*i]).push_bind(now);
            });
            qb.push(" ON CONFLICT (email_key) DO UPDATE SET email_key = excluded.email_key RETURNING email_key, id");
            let by_key: HashMap<String, i64> = qb.build_query_as().fetch_all(&mut *tx).await?.into_iter().collect();
            let ids = batch.ids(&by_key);

            let pairs: Vec<(i64, &RequestedSubscription)> = order
                .iter()
                .flat_map(|&i| {
                    let id = ids[i];
                    signups[i].newsletters.iter().map(move |n| (id, n))
                })
                .collect();
            // Rhythm and zone go into new rows only: the conflict branch leaves them alone.
            let mut qb = QueryBuilder::new(
                "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at, rhythm, timezone) ",
            );
            qb.push_values(&pairs, |mut b, (subscriber_id, requested)| {
                b.push_bind(*subscriber_id)
                    .push_bind(requested.newsletter_id)
                    .push_bind("pending")
                    .push_bind(now)
                    .push_bind(rhythm_column(requested.rhythm))
                    .push_bind(zone_column(requested.zone));
            });
            qb.push(
                " ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET status = \
                 CASE WHEN subscriptions.status = 'unsubscribed' THEN 'pending' ELSE subscriptions.status END \
                 RETURNING subscriber_id, newsletter_id, status",
            );
            let states: Vec<(i64, i64, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            let mut pending: HashMap<i64, Vec<i64>> = HashMap::new();
            for (subscriber_id, newsletter_id, status) in states {
                if status == "pending" {
                    pending.entry(subscriber_id).or_default().push(newsletter_id);
                }
            }

            // A repeat of a signup still pending from within the confirmation
            // mail interval (nothing else recorded since) adds no consent row:
            // a reader pressing the button again, or a script posting one
            // address 60 times, is one signup.
            let recent: HashSet<(i64, i64)> = if pending.is_empty() {
                HashSet::new()
            } else {
                let mut qb = QueryBuilder::new(
                    "SELECT e.subscriber_id, e.newsletter_id FROM consent_events e \
                     WHERE e.action = 'signup' AND NOT EXISTS (SELECT 1 FROM consent_events later \
                     WHERE later.subscriber_id = e.subscriber_id AND later.newsletter_id = e.newsletter_id \
                     AND later.id > e.id AND later.action <> 'signup') AND e.created_at > ",
                );
                qb.push_bind(now - cap.min_interval_secs).push(" AND e.subscriber_id IN (");
                let mut list = qb.separated(", ");
                for id in pending.keys() {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(&mut *tx).await?.into_iter().collect()
            };
            let consent_of: HashMap<i64, &Consent> =
                ids.iter().zip(signups.iter()).map(|(id, s)| (*id, &s.consent)).collect();
            record_consent!(
                @each tx,
                pending.iter().flat_map(|(sid, ns)| {
                    ns.iter().filter(|n| !recent.contains(&(*sid, **n))).map(|n| (*sid, *n, consent_of[sid]))
                }),
                "signup"
            );
            let waiting: Vec<i64> = pending.keys().copied().collect();
            let queued: HashSet<i64> = queue_confirmations!(tx, &waiting, now, cap).into_iter().collect();

            Ok(Batch::outcomes(&ids, &pending, &queued))
        })
    }
}

/// [`Store::record_signups`] on PostgreSQL: [`SIGN_UP`], then [`CONSENT_AND_MAIL`].
async fn record_on_postgres(
    pool: &PgPool,
    batch: &Batch<'_>,
    now: Timestamp,
    cap: MailCap,
) -> Result<Vec<SignupOutcome>> {
    let Batch { signups, keys, order } = batch;
    let emails: Vec<&str> = order.iter().map(|&i| signups[i].email.as_str()).collect();
    let ordered_keys: Vec<&str> = order.iter().map(|&i| keys[i].as_str()).collect();
    let wanted: Vec<(&str, &RequestedSubscription)> =
        order.iter().flat_map(|&i| signups[i].newsletters.iter().map(move |n| (keys[i].as_str(), n))).collect();

    let mut tx = pool.begin().await?;
    let rows: Vec<(String, i64, Option<i64>, Option<String>)> = sqlx::query_as(SIGN_UP)
        .bind(&emails)
        .bind(&ordered_keys)
        .bind(now)
        .bind(wanted.iter().map(|(key, _)| *key).collect::<Vec<_>>())
        .bind(wanted.iter().map(|(_, n)| n.newsletter_id).collect::<Vec<_>>())
        .bind(wanted.iter().map(|(_, n)| rhythm_column(n.rhythm)).collect::<Vec<_>>())
        .bind(wanted.iter().map(|(_, n)| zone_column(n.zone)).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    let mut by_key: HashMap<String, i64> = HashMap::new();
    let mut pending: HashMap<i64, Vec<i64>> = HashMap::new();
    for (key, subscriber_id, newsletter_id, status) in rows {
        if let (Some(newsletter_id), Some("pending")) = (newsletter_id, status.as_deref()) {
            pending.entry(subscriber_id).or_default().push(newsletter_id);
        }
        by_key.insert(key, subscriber_id);
    }
    let ids = batch.ids(&by_key);

    let mut queued = HashSet::new();
    if !pending.is_empty() {
        let consented: Vec<(i64, i64, &Consent)> = order
            .iter()
            .flat_map(|&i| {
                let (id, consent) = (ids[i], &signups[i].consent);
                pending.get(&id).into_iter().flatten().map(move |n| (id, *n, consent))
            })
            .collect();
        let day = 86_400;
        let mailed: Vec<i64> = sqlx::query_scalar(CONSENT_AND_MAIL)
            .bind(consented.iter().map(|(s, _, _)| *s).collect::<Vec<_>>())
            .bind(consented.iter().map(|(_, n, _)| *n).collect::<Vec<_>>())
            .bind(consented.iter().map(|(_, _, c)| c.source.as_str()).collect::<Vec<_>>())
            .bind(consented.iter().map(|(_, _, c)| c.ip.as_deref()).collect::<Vec<_>>())
            .bind(consented.iter().map(|(_, _, c)| c.user_agent.as_deref()).collect::<Vec<_>>())
            .bind(consented.iter().map(|(_, _, c)| c.at).collect::<Vec<_>>())
            .bind(now - cap.min_interval_secs)
            .bind(i64::MIN)
            .bind(now - day)
            .bind(cap.per_day)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        queued.extend(mailed);
    }
    tx.commit().await?;
    Ok(Batch::outcomes(&ids, &pending, &queued))
}
