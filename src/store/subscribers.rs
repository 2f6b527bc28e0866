//! Subscribers, their per-newsletter subscriptions and the consent record.

use sqlx::QueryBuilder;

use super::{Result, Store, in_tx, reading};
use crate::clock::Timestamp;
use crate::domain::{ConsentSource, EmailAddress, SubscriptionStatus};

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
    pub status: SubscriptionStatus,
    pub created_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
}

/// Appends consent events for (subscriber, newsletter) `pairs` to the open
/// transaction, in one statement.
macro_rules! record_consent_impl {
    ($tx:expr, $pairs:expr, $action:expr, $consent:expr) => {
        let pairs: Vec<(i64, i64)> = $pairs.into_iter().collect();
        if !pairs.is_empty() {
            let mut qb = QueryBuilder::new(
                "INSERT INTO consent_events (subscriber_id, newsletter_id, action, source, ip, user_agent, created_at) ",
            );
            qb.push_values(pairs.iter(), |mut b, (subscriber_id, newsletter_id)| {
                b.push_bind(*subscriber_id)
                    .push_bind(*newsletter_id)
                    .push_bind($action)
                    .push_bind($consent.source.as_str())
                    .push_bind($consent.ip.as_deref())
                    .push_bind($consent.user_agent.as_deref())
                    .push_bind($consent.at);
            });
            qb.build().execute(&mut *$tx).await?;
        }
    };
}
pub(super) use record_consent_impl as record_consent;

impl Store {
    /// Records a signup for `newsletters` and queues one confirmation mail
    /// for everything pending, unless the per-address cap holds.
    ///
    /// Confirmed subscriptions stay confirmed; unsubscribed ones go back to
    /// pending, since coming back needs a fresh opt-in. The subscriber row is
    /// written first, which serializes concurrent signups of one address (a
    /// row lock on PostgreSQL, the write lock on SQLite), so the cap check
    /// cannot be raced.
    pub async fn record_signup(
        &self,
        email: &EmailAddress,
        newsletters: &[i64],
        consent: &Consent,
        cap: MailCap,
    ) -> Result<SignupOutcome> {
        let now = consent.at;
        in_tx!(self, |tx| {
            let subscriber_id: i64 = sqlx::query_scalar(
                "INSERT INTO subscribers (email, email_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (email_key) DO UPDATE SET email_key = excluded.email_key RETURNING id",
            )
            .bind(email.as_str())
            .bind(email.key())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;

            let mut qb =
                QueryBuilder::new("INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at) ");
            qb.push_values(newsletters, |mut b, id| {
                b.push_bind(subscriber_id).push_bind(*id).push_bind("pending").push_bind(now);
            });
            qb.push(
                " ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET status = \
                 CASE WHEN subscriptions.status = 'unsubscribed' THEN 'pending' ELSE subscriptions.status END \
                 RETURNING newsletter_id, status",
            );
            let states: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            let pending: Vec<i64> =
                states.into_iter().filter(|(_, status)| status == "pending").map(|(id, _)| id).collect();

            let mut mail_queued = false;
            if !pending.is_empty() {
                record_consent!(tx, pending.iter().map(|n| (subscriber_id, *n)), "signup", consent);
                let (sent_today, last): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT COUNT(*), MAX(created_at) FROM deliveries \
                     WHERE subscriber_id = $1 AND kind = 'confirmation' AND created_at > $2",
                )
                .bind(subscriber_id)
                .bind(now - 86_400)
                .fetch_one(&mut *tx)
                .await?;
                let spaced = last.is_none_or(|last| last <= now - cap.min_interval_secs);
                if sent_today < cap.per_day && spaced {
                    sqlx::query(
                        "INSERT INTO deliveries (kind, subscriber_id, status, next_attempt_at, created_at) \
                         VALUES ('confirmation', $1, 'queued', $2, $2)",
                    )
                    .bind(subscriber_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    mail_queued = true;
                }
            }
            Ok(SignupOutcome { subscriber_id, pending, mail_queued })
        })
    }

    /// Marks one subscription unsubscribed; returns whether anything changed.
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
    pub async fn subscriber_email(&self, subscriber_id: i64) -> Result<Option<String>> {
        reading!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT email FROM subscribers WHERE id = $1")
                .bind(subscriber_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Every subscription the subscriber has, in any state.
    pub async fn subscriptions_of(&self, subscriber_id: i64) -> Result<Vec<SubscriptionState>> {
        let rows: Vec<(i64, String)> = reading!(self, |pool| {
            sqlx::query_as("SELECT newsletter_id, status FROM subscriptions WHERE subscriber_id = $1")
                .bind(subscriber_id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(newsletter_id, status)| {
                Some(SubscriptionState { newsletter_id, status: status.parse().ok()? })
            })
            .collect())
    }

    /// Makes the subscriber's confirmed set exactly `wanted`: the rest is
    /// unsubscribed, the missing ones confirmed (the preferences link was
    /// mailed to the address, which is the proof of ownership opt-in needs).
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
                     SET status = 'confirmed', confirmed_at = excluded.confirmed_at \
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
        let rows: Vec<(i64, String, String, i64, Option<i64>)> = reading!(self, |pool| {
            sqlx::query_as(
                "SELECT s.id, s.email, sub.status, sub.created_at, sub.confirmed_at \
                 FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
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
            .filter_map(|(subscriber_id, email, status, created_at, confirmed_at)| {
                Some(SubscriberRow { subscriber_id, email, status: status.parse().ok()?, created_at, confirmed_at })
            })
            .collect())
    }

    /// The consent record of one subscriber: (newsletter, action, source, ip, user agent, time).
    pub async fn consent_events(
        &self,
        subscriber_id: i64,
    ) -> Result<Vec<(i64, String, String, Option<String>, Option<String>, Timestamp)>> {
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
