//! Importing a list into one newsletter, one batch per transaction.
//!
//! The rules an import keeps live in these statements: it never resubscribes
//! a reader who unsubscribed here; it confirms only what is new or pending;
//! and an unsubscribe in the source list ends a subscription here unless the
//! reader consented again after it. A subscriber's name is filled in, never
//! overwritten. Every change gets a consent event with the row's own source
//! and time, so the record says when and where the reader really acted.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::subscribers::{ConsentRecord, queue_confirmations, record_consent};
use super::{MailCap, Result, Store, in_tx};
use crate::clock::Timestamp;
use crate::domain::EmailAddress;

/// What the source list says should become of one address here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportWish {
    /// The reader consented elsewhere (`--confirmed`): confirmed, if new or pending.
    Confirm,
    /// The reader has to opt in: pending with a confirmation mail, if new.
    OptIn,
    /// Unsubscribed (or cleaned) in the source list: recorded as unsubscribed.
    Leave,
}

/// One row of an import batch; the addresses of a batch are distinct.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub email: EmailAddress,
    /// Kept when the subscriber has no name yet.
    pub name: Option<String>,
    pub wish: ImportWish,
    /// The consent record's source: `import`, `import:mailchimp`, …
    pub source: String,
    /// When the reader consented or, for [`ImportWish::Leave`], withdrew, as the source list says.
    pub at: Timestamp,
}

/// What one import batch did (or, rehearsed, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Subscriptions created, by the state they were created in.
    pub new_confirmed: u64,
    pub new_pending: u64,
    pub new_unsubscribed: u64,
    /// Subscriptions already here that changed: pending ones confirmed,
    /// and ones ended because the source list says the reader left.
    pub confirmed: u64,
    pub unsubscribed: u64,
    pub mails_queued: u64,
}

impl ImportOutcome {
    /// Subscriptions the import created.
    pub fn new_total(&self) -> u64 {
        self.new_confirmed + self.new_pending + self.new_unsubscribed
    }

    pub fn add(&mut self, other: &Self) {
        self.new_confirmed += other.new_confirmed;
        self.new_pending += other.new_pending;
        self.new_unsubscribed += other.new_unsubscribed;
        self.confirmed += other.confirmed;
        self.unsubscribed += other.unsubscribed;
        self.mails_queued += other.mails_queued;
    }
}

/// Pushes ` IN ($…, $…)` for `ids` onto a query.
fn push_ids<DB: sqlx::Database>(qb: &mut QueryBuilder<DB>, ids: &[i64])
where
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    qb.push(" IN (");
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    qb.push(")");
}

/// Creates subscriptions in `status` for those of `ids` that have none in
/// the newsletter, on the open transaction; evaluates to the ids created.
macro_rules! create_subscriptions {
    ($tx:expr, $ids:expr, $newsletter_id:expr, $status:expr, $now:expr) => {{
        let (ids, status, now): (&[i64], &str, Timestamp) = ($ids, $status, $now);
        let mut qb = QueryBuilder::new(
            "INSERT INTO subscriptions \
             (subscriber_id, newsletter_id, status, created_at, confirmed_at, unsubscribed_at) ",
        );
        qb.push_values(ids, |mut b, id| {
            b.push_bind(*id)
                .push_bind($newsletter_id)
                .push_bind(status)
                .push_bind(now)
                .push_bind((status == "confirmed").then_some(now))
                .push_bind((status == "unsubscribed").then_some(now));
        });
        qb.push(" ON CONFLICT (subscriber_id, newsletter_id) DO NOTHING RETURNING subscriber_id");
        let created: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *$tx).await?;
        created
    }};
}

impl Store {
    /// Imports one batch into a newsletter with a handful of set-based
    /// statements (see the module's rules), and queues the double opt-in
    /// mail for new pending subscriptions under the per-address cap. With
    /// `commit` false it is a rehearsal: everything is done and rolled back,
    /// so the outcome is exactly what the import would do, and nothing changes.
    pub async fn import_batch(
        &self,
        newsletter_id: i64,
        rows: &[ImportRow],
        now: Timestamp,
        cap: MailCap,
        commit: bool,
    ) -> Result<ImportOutcome> {
        if rows.is_empty() {
            return Ok(ImportOutcome::default());
        }
        let keys: Vec<String> = rows.iter().map(|row| row.email.key()).collect();
        // Written in key order, as signups are: concurrent writers lock rows in one order.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|a, b| keys[*a].cmp(&keys[*b]));
        in_tx!(self, commit: commit, |tx| {
            let mut qb = QueryBuilder::new("INSERT INTO subscribers (email, email_key, created_at, name) ");
            qb.push_values(&order, |mut b, i| {
                b.push_bind(rows[*i].email.as_str()).push_bind(&keys[*i]).push_bind(now).push_bind(rows[*i].name.as_deref());
            });
            qb.push(
                " ON CONFLICT (email_key) DO UPDATE SET name = COALESCE(subscribers.name, excluded.name) \
                 RETURNING email_key, id",
            );
            let by_key: HashMap<String, i64> = qb.build_query_as().fetch_all(&mut *tx).await?.into_iter().collect();
            let row_of: HashMap<i64, &ImportRow> =
                keys.iter().zip(rows).filter_map(|(key, row)| Some((*by_key.get(key)?, row))).collect();
            let wishing = |wish: ImportWish| -> Vec<i64> {
                let mut ids: Vec<i64> = row_of.iter().filter(|(_, row)| row.wish == wish).map(|(id, _)| *id).collect();
                ids.sort_unstable();
                ids
            };
            let (confirm, leave, opt_in) =
                (wishing(ImportWish::Confirm), wishing(ImportWish::Leave), wishing(ImportWish::OptIn));
            let mut outcome = ImportOutcome::default();
            let mut events: Vec<(i64, &'static str)> = vec![];

            if !confirm.is_empty() {
                let mut qb = QueryBuilder::new("UPDATE subscriptions SET status = 'confirmed', confirmed_at = ");
                qb.push_bind(now).push(", digest_through = NULL WHERE status = 'pending' AND newsletter_id = ");
                qb.push_bind(newsletter_id).push(" AND subscriber_id");
                push_ids(&mut qb, &confirm);
                qb.push(" RETURNING subscriber_id");
                let confirmed: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
                let created = create_subscriptions!(tx, &confirm, newsletter_id, "confirmed", now);
                outcome.confirmed = confirmed.len() as u64;
                outcome.new_confirmed = created.len() as u64;
                events.extend(confirmed.into_iter().chain(created).map(|id| (id, "confirm")));
            }

            if !leave.is_empty() {
                // When the reader last consented: an imported consent keeps the
                // source's time, a signup or confirmation here is recent.
                let mut qb = QueryBuilder::new(
                    "SELECT sub.subscriber_id, COALESCE((SELECT MAX(e.created_at) FROM consent_events e \
                     WHERE e.subscriber_id = sub.subscriber_id AND e.newsletter_id = sub.newsletter_id \
                     AND e.action IN ('signup', 'confirm')), sub.confirmed_at, sub.created_at) \
                     FROM subscriptions sub WHERE sub.status <> 'unsubscribed' AND sub.newsletter_id = ",
                );
                qb.push_bind(newsletter_id).push(" AND sub.subscriber_id");
                push_ids(&mut qb, &leave);
                let current: Vec<(i64, Timestamp)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                // A reader who consented again after leaving the old list keeps the subscription.
                let ending: Vec<i64> =
                    current.into_iter().filter(|(id, since)| *since <= row_of[id].at).map(|(id, _)| id).collect();
                if !ending.is_empty() {
                    let mut qb =
                        QueryBuilder::new("UPDATE subscriptions SET status = 'unsubscribed', unsubscribed_at = ");
                    qb.push_bind(now).push(" WHERE status <> 'unsubscribed' AND newsletter_id = ");
                    qb.push_bind(newsletter_id).push(" AND subscriber_id");
                    push_ids(&mut qb, &ending);
                    qb.push(" RETURNING subscriber_id");
                    let ended: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
                    outcome.unsubscribed = ended.len() as u64;
                    events.extend(ended.into_iter().map(|id| (id, "unsubscribe")));
                }
                let created = create_subscriptions!(tx, &leave, newsletter_id, "unsubscribed", now);
                outcome.new_unsubscribed = created.len() as u64;
                events.extend(created.into_iter().map(|id| (id, "unsubscribe")));
            }

            if !opt_in.is_empty() {
                let created = create_subscriptions!(tx, &opt_in, newsletter_id, "pending", now);
                outcome.new_pending = created.len() as u64;
                outcome.mails_queued = queue_confirmations!(tx, &created, now, cap).len() as u64;
                events.extend(created.into_iter().map(|id| (id, "signup")));
            }

            record_consent!(
                @events tx,
                events.iter().map(|(id, action)| ConsentRecord {
                    subscriber_id: *id,
                    newsletter_id,
                    action,
                    source: &row_of[id].source,
                    ip: None,
                    user_agent: None,
                    at: row_of[id].at,
                })
            );
            Ok(outcome)
        })
    }
}
