//! Subscribers, their per-newsletter subscriptions and the consent record.

use sqlx::QueryBuilder;

use super::{Result, Store, in_tx, reading};
use crate::clock::Timestamp;
use crate::domain::{ConsentSource, EmailAddress, LinkRef, LinkSubject, Rhythm, SubscriptionStatus, Zone};

/// Who gave (or withdrew) consent, and from where: kept in `consent_events`.
#[derive(Debug, Clone)]
pub struct Consent {
    pub source: ConsentSource,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub at: Timestamp,
}

/// The per-address cap on confirmation mail, counted in the database so it
/// holds across IPs, processes and restarts.
#[derive(Debug, Clone, Copy)]
pub struct MailCap {
    pub min_interval_secs: i64,
    pub per_day: i64,
}

/// One reader's signup as a form or the API takes it.
#[derive(Debug, Clone)]
pub struct SignupRequest {
    pub email: EmailAddress,
    pub newsletters: Vec<RequestedSubscription>,
    pub consent: Consent,
}

/// A newsletter of a signup, with the rhythm and zone that a subscription
/// the signup creates starts with (`None`: the newsletter's default). A
/// subscription that already exists keeps its own: anyone can sign up any
/// address, and only the preferences link may change how its reader hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedSubscription {
    pub newsletter_id: i64,
    pub rhythm: Option<Rhythm>,
    pub zone: Option<Zone>,
}

impl RequestedSubscription {
    /// A newsletter at its default rhythm and zone.
    pub fn plain(newsletter_id: i64) -> Self {
        Self { newsletter_id, rhythm: None, zone: None }
    }
}

/// The `subscriptions.rhythm` and `.timezone` columns: `''` is the newsletter's default.
pub(super) fn rhythm_column(rhythm: Option<Rhythm>) -> &'static str {
    rhythm.map_or("", Rhythm::as_str)
}

pub(super) fn zone_column(zone: Option<Zone>) -> &'static str {
    zone.map_or("", Zone::name)
}

/// Reads the columns back; `''` (and anything no longer valid) is the default.
fn read_choice(rhythm: &str, zone: &str) -> (Option<Rhythm>, Option<Zone>) {
    let rhythm = Some(rhythm).filter(|r| !r.is_empty()).and_then(|r| r.parse().ok());
    let zone = Some(zone).filter(|z| !z.is_empty()).and_then(|z| Zone::parse(z).ok());
    (rhythm, zone)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupOutcome {
    pub subscriber_id: i64,
    /// Newsletters now waiting for confirmation.
    pub pending: Vec<i64>,
    /// Whether a confirmation mail was queued (false when nothing is pending or the cap holds).
    pub mail_queued: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub newsletter_id: i64,
    pub status: SubscriptionStatus,
    /// The reader's own rhythm and zone; `None`: the newsletter's default.
    pub rhythm: Option<Rhythm>,
    pub zone: Option<Zone>,
    pub created_at: Timestamp,
    /// The last confirmation and the last unsubscribe; a reader who came back keeps the older one.
    pub confirmed_at: Option<Timestamp>,
    pub unsubscribed_at: Option<Timestamp>,
}

/// A row of [`Store::subscriptions_of`] as the database has it.
#[derive(sqlx::FromRow)]
struct SubscriptionListing {
    newsletter_id: i64,
    status: String,
    rhythm: String,
    timezone: String,
    created_at: Timestamp,
    confirmed_at: Option<Timestamp>,
    unsubscribed_at: Option<Timestamp>,
}

/// One entry of the consent record: a consent given or withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentEvent {
    pub newsletter_id: i64,
    /// `signup`, `confirm` or `unsubscribe`.
    pub action: String,
    /// Where it came from, as [`ConsentSource::as_str`] names it.
    pub source: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
}

/// What a preferences change did, per newsletter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreferenceChange {
    pub subscribed: Vec<i64>,
    pub unsubscribed: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRow {
    pub subscriber_id: i64,
    pub email: String,
    /// The name an imported list gave.
    pub name: Option<String>,
    pub status: SubscriptionStatus,
    pub created_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
    pub unsubscribed_at: Option<Timestamp>,
    /// When mail to the address bounced for good: the address is suppressed.
    pub bounced_at: Option<Timestamp>,
    /// The reader's own rhythm and zone; `None`: the newsletter's default.
    pub rhythm: Option<Rhythm>,
    pub zone: Option<Zone>,
}

/// A row of [`Store::subscribers_page`] as the database has it.
#[derive(sqlx::FromRow)]
struct SubscriberListing {
    id: i64,
    email: String,
    name: Option<String>,
    status: String,
    created_at: Timestamp,
    confirmed_at: Option<Timestamp>,
    unsubscribed_at: Option<Timestamp>,
    suppressed_at: Option<Timestamp>,
    rhythm: String,
    timezone: String,
}

/// One row of the consent record, as [`record_consent!`] writes it.
pub(super) struct ConsentRecord<'a> {
    pub subscriber_id: i64,
    pub newsletter_id: i64,
    pub action: &'static str,
    pub source: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub at: Timestamp,
}

/// Appends consent events to the open transaction, in one statement: for
/// (subscriber, newsletter) `pairs` under one consent, (`@each`) for
/// (subscriber, newsletter, consent) triples, or (`@events`) for
/// [`ConsentRecord`]s, each with its own source and time (an import).
macro_rules! record_consent_impl {
    ($tx:expr, $pairs:expr, $action:expr, $consent:expr) => {
        let consent: &$crate::store::Consent = &$consent;
        $crate::store::subscribers::record_consent!(
            @each $tx, $pairs.into_iter().map(|(s, n)| (s, n, consent)), $action
        );
    };
    (@each $tx:expr, $events:expr, $action:expr) => {
        $crate::store::subscribers::record_consent!(
            @events $tx,
            $events.into_iter().map(|(subscriber_id, newsletter_id, consent): (i64, i64, &$crate::store::Consent)| {
                $crate::store::subscribers::ConsentRecord {
                    subscriber_id,
                    newsletter_id,
                    action: $action,
                    source: consent.source.as_str(),
                    ip: consent.ip.as_deref(),
                    user_agent: consent.user_agent.as_deref(),
                    at: consent.at,
                }
            })
        );
    };
    (@events $tx:expr, $events:expr) => {
        let events: Vec<$crate::store::subscribers::ConsentRecord> = $events.into_iter().collect();
        if !events.is_empty() {
            let mut qb = QueryBuilder::new(
                "INSERT INTO consent_events (subscriber_id, newsletter_id, action, source, ip, user_agent, created_at) ",
            );
            qb.push_values(events.iter(), |mut b, event| {
                b.push_bind(event.subscriber_id)
                    .push_bind(event.newsletter_id)
                    .push_bind(event.action)
                    .push_bind(event.source)
                    .push_bind(event.ip)
                    .push_bind(event.user_agent)
                    .push_bind(event.at);
            });
            qb.build().execute(&mut *$tx).await?;
        }
    };
}
pub(super) use record_consent_impl as record_consent;
/// Queues one confirmation mail for each of `ids` (subscriber ids) that the
/// per-address cap allows at `now`, in one statement on the open
/// transaction; evaluates to the ids that got one.
macro_rules! queue_confirmations_impl {
    ($tx:expr, $ids:expr, $now:expr, $cap:expr) => {{
        let ids: &[i64] = $ids;
        let (now, cap): (i64, $crate::store::MailCap) = ($now, $cap);
        if ids.is_empty() {
            vec![]
        } else {
            let mut qb = QueryBuilder::new(
                "INSERT INTO deliveries (kind, subscriber_id, status, next_attempt_at, created_at) \
                 SELECT 'confirmation', s.id, 'queued', ",
            );
            qb.push_bind(now).push(", ").push_bind(now);
            qb.push(" FROM subscribers s WHERE s.id IN (");
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            // Scalar subqueries, not NOT EXISTS: PostgreSQL turns that into an
            // anti-join over every recent confirmation instead of a lookup per address.
            qb.push(
                ") AND COALESCE((SELECT MAX(d.created_at) FROM deliveries d WHERE d.subscriber_id = s.id \
                     AND d.kind = 'confirmation'), ",
            );
            qb.push_bind(i64::MIN).push(") <= ").push_bind(now - cap.min_interval_secs);
            qb.push(
                " AND (SELECT COUNT(*) FROM deliveries d WHERE d.subscriber_id = s.id \
                     AND d.kind = 'confirmation' AND d.created_at > ",
            );
            qb.push_bind(now - 86_400);
            qb.push(") < ").push_bind(cap.per_day).push(" RETURNING subscriber_id");
            let queued: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *$tx).await?;
            queued
        }
    }};
}
pub(super) use queue_confirmations_impl as queue_confirmations;

impl Store {
    /// Marks one subscription unsubscribed; returns whether anything changed.
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id, newsletter_id = newsletter_id))]
    pub async fn unsubscribe(&self, subscriber_id: i64, newsletter_id: i64, consent: &Consent) -> Result<bool> {
        in_tx!(self, |tx| {
            let changed: Vec<i64> = sqlx::query_scalar(
                "UPDATE subscriptions SET status = 'unsubscribed', unsubscribed_at = $3 \
                 WHERE subscriber_id = $1 AND newsletter_id = $2 AND status <> 'unsubscribed' \
                 RETURNING newsletter_id",
            )
            .bind(subscriber_id)
            .bind(newsletter_id)
            .bind(consent.at)
            .fetch_all(&mut *tx)
            .await?;
            record_consent!(tx, changed.iter().map(|n| (subscriber_id, *n)), "unsubscribe", consent);
            Ok(!changed.is_empty())
        })
    }

    /// The subscriber's address, or `None` once erased.
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id))]
    pub async fn subscriber_email(&self, subscriber_id: i64) -> Result<Option<String>> {
        reading!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT email FROM subscribers WHERE id = $1")
                .bind(subscriber_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// What names the subscriber in signed links, or `None` once erased.
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id))]
    pub async fn link_ref(&self, subscriber_id: i64) -> Result<Option<LinkRef>> {
        let salt: Option<i64> = reading!(self, |pool| {
            sqlx::query_scalar("SELECT link_salt FROM subscribers WHERE id = $1")
                .bind(subscriber_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(salt.map(|salt| LinkRef { subscriber_id, salt }))
    }

    /// The subscriber a verified link names, if it still exists: the row with
    /// the link's id and salt (a primary-key lookup). A version 1 link names a
    /// row id alone, which an erasure could once free for someone else: it
    /// counts only for subscribers older than the format change.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn linked_subscriber(&self, subject: LinkSubject) -> Result<Option<LinkRef>> {
        let found: Option<(i64, i64)> = reading!(self, |pool| {
            match subject {
                LinkSubject::Sealed(LinkRef { subscriber_id, salt }) => {
                    sqlx::query_as("SELECT id, link_salt FROM subscribers WHERE id = $1 AND link_salt = $2")
                        .bind(subscriber_id)
                        .bind(salt)
                        .fetch_optional(pool)
                        .await?
                }
                LinkSubject::LegacyId(id) => {
                    sqlx::query_as(
                        "SELECT id, link_salt FROM subscribers WHERE id = $1 AND created_at < \
                         (SELECT CAST(value AS BIGINT) FROM settings WHERE name = 'legacy_links_before')",
                    )
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                }
            }
        });
        Ok(found.map(|(subscriber_id, salt)| LinkRef { subscriber_id, salt }))
    }

    /// Every subscription the subscriber has, in any state.
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id))]
    pub async fn subscriptions_of(&self, subscriber_id: i64) -> Result<Vec<SubscriptionState>> {
        let rows: Vec<SubscriptionListing> = reading!(self, |pool| {
            sqlx::query_as(
                "SELECT newsletter_id, status, rhythm, timezone, created_at, confirmed_at, unsubscribed_at \
                 FROM subscriptions WHERE subscriber_id = $1 ORDER BY newsletter_id",
            )
            .bind(subscriber_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let (rhythm, zone) = read_choice(&row.rhythm, &row.timezone);
                Some(SubscriptionState {
                    newsletter_id: row.newsletter_id,
                    status: row.status.parse().ok()?,
                    rhythm,
                    zone,
                    created_at: row.created_at,
                    confirmed_at: row.confirmed_at,
                    unsubscribed_at: row.unsubscribed_at,
                })
            })
            .collect())
    }

    /// Makes the subscriber's confirmed set exactly `wanted`: the rest is
    /// unsubscribed, the missing ones confirmed (the preferences link was
    /// mailed to the address, which is the proof of ownership opt-in needs).
    #[tracing::instrument(level = "debug", skip_all, fields(subscriber_id = subscriber_id))]
    pub async fn set_subscriptions(
        &self,
        subscriber_id: i64,
        wanted: &[i64],
        consent: &Consent,
    ) -> Result<PreferenceChange> {
        in_tx!(self, |tx| {
            let mut qb = QueryBuilder::new("UPDATE subscriptions SET status = 'unsubscribed', unsubscribed_at = ");
            qb.push_bind(consent.at);
            qb.push(" WHERE subscriber_id = ").push_bind(subscriber_id);
            qb.push(" AND status <> 'unsubscribed'");
            if !wanted.is_empty() {
                qb.push(" AND newsletter_id NOT IN (");
                let mut list = qb.separated(", ");
                for id in wanted {
                    list.push_bind(*id);
                }
                qb.push(")");
            }
            qb.push(" RETURNING newsletter_id");
            let unsubscribed: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            record_consent!(tx, unsubscribed.iter().map(|n| (subscriber_id, *n)), "unsubscribe", consent);

            let mut subscribed: Vec<i64> = vec![];
            if !wanted.is_empty() {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at, confirmed_at) ",
                );
                qb.push_values(wanted, |mut b, id| {
                    b.push_bind(subscriber_id)
                        .push_bind(*id)
                        .push_bind("confirmed")
                        .push_bind(consent.at)
                        .push_bind(consent.at);
                });
                qb.push(
                    " ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE \
                     SET status = 'confirmed', confirmed_at = excluded.confirmed_at, digest_through = NULL \
                     WHERE subscriptions.status <> 'confirmed' RETURNING newsletter_id",
                );
                subscribed = qb.build_query_scalar().fetch_all(&mut *tx).await?;
                record_consent!(tx, subscribed.iter().map(|n| (subscriber_id, *n)), "confirm", consent);
            }
            Ok(PreferenceChange { subscribed, unsubscribed })
        })
    }

    /// One page of a newsletter's subscribers, by subscriber id after `after`:
    /// callers walk the list page by page, so memory stays flat.
    pub async fn subscribers_page(
        &self,
        newsletter_id: i64,
        status: Option<SubscriptionStatus>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<SubscriberRow>> {
        let rows: Vec<SubscriberListing> = reading!(self, |pool| {
            sqlx::query_as(
                "SELECT s.id, s.email, s.name, sub.status, sub.created_at, sub.confirmed_at, sub.unsubscribed_at, \
                 s.suppressed_at, sub.rhythm, sub.timezone FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
                 WHERE sub.newsletter_id = $1 AND ($2 IS NULL OR sub.status = $2) AND sub.subscriber_id > $3 \
                 ORDER BY sub.subscriber_id LIMIT $4",
            )
            .bind(newsletter_id)
            .bind(status.map(SubscriptionStatus::as_str))
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let (rhythm, zone) = read_choice(&row.rhythm, &row.timezone);
                Some(SubscriberRow {
                    subscriber_id: row.id,
                    email: row.email,
                    name: row.name,
                    status: row.status.parse().ok()?,
                    created_at: row.created_at,
                    confirmed_at: row.confirmed_at,
                    unsubscribed_at: row.unsubscribed_at,
                    bounced_at: row.suppressed_at,
                    rhythm,
                    zone,
                })
            })
            .collect())
    }

    /// The consent record of one subscriber, oldest first.
    pub async fn consent_events(&self, subscriber_id: i64) -> Result<Vec<ConsentEvent>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT newsletter_id, action, source, ip, user_agent, created_at FROM consent_events \
                 WHERE subscriber_id = $1 ORDER BY id",
            )
            .bind(subscriber_id)
            .fetch_all(pool)
            .await?)
        })
    }
}

impl Store {
    /// Subscriptions per (newsletter, status), for `bulletin newsletters list`.
    pub async fn subscription_counts(&self) -> Result<std::collections::HashMap<(i64, SubscriptionStatus), i64>> {
        let rows: Vec<(i64, String, i64)> = reading!(self, |pool| {
            sqlx::query_as("SELECT newsletter_id, status, COUNT(*) FROM subscriptions GROUP BY newsletter_id, status")
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().filter_map(|(id, status, n)| Some(((id, status.parse().ok()?), n))).collect())
    }
}
