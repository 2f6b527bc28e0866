//! Bounces and complaints that came back: the `feedback_events` record and
//! what each report changes, each report in one transaction. The first
//! statement of each records the event; a report already recorded (same
//! `report_id`) stops there and changes nothing.

use sqlx::QueryBuilder;

use super::refusals::INSERT_REFUSAL;
use super::subscribers::record_consent;
use super::{Consent, Result, Store, in_tx, reading};
use crate::clock::Timestamp;
use crate::domain::sender_refusal::{recipient_domain, sender_reason};

/// A delivery a report named (by VERP or Message-ID), with what the rules need.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedbackDelivery {
    pub id: i64,
    pub subscriber_id: i64,
    pub issue_id: Option<i64>,
    /// The issue's newsletter; `None` for a confirmation mail.
    pub newsletter_id: Option<i64>,
    /// The subscriber's address key, to check against the report's recipient.
    pub email_key: String,
    /// The random part of its Message-ID; `None` for mail sent before there was one.
    pub message_nonce: Option<i64>,
}

/// One report as it is recorded.
#[derive(Debug, Clone)]
pub struct FeedbackEvent<'a> {
    pub subscriber_id: i64,
    pub delivery_id: Option<i64>,
    pub issue_id: Option<i64>,
    /// `hard_bounce`, `soft_bounce`, `sender_refused` or `complaint`.
    pub kind: &'static str,
    /// Where the report came from: `dsn`, `arf`, `ses`, …
    pub source: &'static str,
    /// The remote's status and diagnostic, without addresses.
    pub detail: &'a str,
    /// Names the report itself; the same id twice is one report.
    pub report_id: Option<&'a str>,
    pub at: Timestamp,
}

/// What a complaint changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintOutcome {
    /// Newsletters the reader was unsubscribed from now.
    pub unsubscribed: Vec<i64>,
    /// Whether this complaint paused its issue.
    pub paused: bool,
}

/// Bounces and complaints reported about one issue's mail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackCounts {
    pub hard_bounces: i64,
    pub soft_bounces: i64,
    /// Refused for the sender's reasons (policy, reputation, authentication, content).
    pub sender_refusals: i64,
    pub complaints: i64,
}

/// Records a report; returns nothing when this `report_id` is recorded already.
const INSERT_EVENT: &str = "INSERT INTO feedback_events \
     (subscriber_id, delivery_id, issue_id, kind, source, detail, report_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (report_id) DO NOTHING RETURNING id";

/// Suppresses subscriber `$1` from `$2` (kept if it was suppressed before) for reason `$3`;
/// a complaint outranks a bounce, since it also withdrew consent.
const SUPPRESS: &str = "UPDATE subscribers SET suppressed_at = COALESCE(suppressed_at, $2), \
     suppressed_reason = CASE WHEN suppressed_at IS NULL OR $3 = 'complained' THEN $3 ELSE suppressed_reason END \
     WHERE id = $1";

/// Binds the event's columns, in [`INSERT_EVENT`]'s order.
macro_rules! insert_event {
    ($tx:expr, $event:expr) => {{
        let event: &FeedbackEvent<'_> = $event;
        let id: Option<i64> = sqlx::query_scalar(INSERT_EVENT)
            .bind(event.subscriber_id)
            .bind(event.delivery_id)
            .bind(event.issue_id)
            .bind(event.kind)
            .bind(event.source)
            .bind(event.detail)
            .bind(event.report_id)
            .bind(event.at)
            .fetch_optional(&mut *$tx)
            .await?;
        id.is_some()
    }};
}

impl Store {
    /// The delivery a report's key names, with its subscriber; `None` once erased.
    pub async fn feedback_delivery(&self, delivery_id: i64) -> Result<Option<FeedbackDelivery>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT d.id, d.subscriber_id, d.issue_id, i.newsletter_id, s.email_key, d.message_nonce FROM deliveries d \
                 JOIN subscribers s ON s.id = d.subscriber_id LEFT JOIN issues i ON i.id = d.issue_id WHERE d.id = $1",
            )
            .bind(delivery_id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// A hard bounce: the address is suppressed, and the delivery, if it was
    /// counted as sent, counts as bounced from now. `None`: a duplicate.
    #[tracing::instrument(skip_all)]
    pub async fn record_hard_bounce(&self, event: &FeedbackEvent<'_>) -> Result<Option<()>> {
        in_tx!(self, |tx| {
            if !insert_event!(tx, event) {
                return Ok(None);
            }
            sqlx::query(SUPPRESS).bind(event.subscriber_id).bind(event.at).bind("bounced").execute(&mut *tx).await?;
            if let Some(delivery) = event.delivery_id {
                // A bounced row's next_attempt_at is when it was settled (see `store::stats`).
                sqlx::query(
                    "UPDATE deliveries SET status = 'bounced', last_reply = $2, next_attempt_at = $3 \
                     WHERE id = $1 AND status = 'sent'",
                )
                .bind(delivery)
                .bind(event.detail)
                .bind(event.at)
                .execute(&mut *tx)
                .await?;
            }
            Ok(Some(()))
        })
    }

    /// A refusal for the sender's reasons: recorded against its issue, the
    /// reader and the delivery left as they are. `None`: a duplicate.
    #[tracing::instrument(skip_all)]
    pub async fn record_sender_refusal(&self, event: &FeedbackEvent<'_>) -> Result<Option<()>> {
        in_tx!(self, |tx| {
            if !insert_event!(tx, event) {
                return Ok(None);
            }
            // Counted per issue and receiving domain too (`store::refusals`), as a refusal at SMTP time is.
            if let Some(issue) = event.issue_id {
                let address: Option<String> = sqlx::query_scalar("SELECT email_key FROM subscribers WHERE id = $1")
                    .bind(event.subscriber_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(domain) = address.as_deref().and_then(recipient_domain) {
                    sqlx::query(INSERT_REFUSAL)
                        .bind(issue)
                        .bind(event.delivery_id)
                        .bind(domain)
                        .bind(sender_reason(event.detail).as_str())
                        .bind("report")
                        .bind(event.at)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            Ok(Some(()))
        })
    }

    /// A soft bounce: counted with the reader's others after `since`; at
    /// `limit` the address is suppressed. Returns (count, suppressed now),
    /// `None` for a duplicate.
    #[tracing::instrument(skip_all)]
    pub async fn record_soft_bounce(
        &self,
        event: &FeedbackEvent<'_>,
        limit: i64,
        since: Timestamp,
    ) -> Result<Option<(i64, bool)>> {
        in_tx!(self, |tx| {
            if !insert_event!(tx, event) {
                return Ok(None);
            }
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM feedback_events WHERE subscriber_id = $1 AND kind = 'soft_bounce' \
                 AND created_at > $2",
            )
            .bind(event.subscriber_id)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?;
            let suppress = count >= limit;
            if suppress {
                sqlx::query(SUPPRESS)
                    .bind(event.subscriber_id)
                    .bind(event.at)
                    .bind("bounced")
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(Some((count, suppress)))
        })
    }

    /// A complaint: the reader leaves `newsletter_id` (every newsletter when
    /// `None`) with a consent record under `consent`, and is suppressed; then
    /// `pause_when(complaints, delivered)` of the event's issue says whether it
    /// pauses, and why. `None`: a duplicate.
    #[tracing::instrument(skip_all)]
    pub async fn record_complaint(
        &self,
        event: &FeedbackEvent<'_>,
        newsletter_id: Option<i64>,
        consent: &Consent,
        pause_when: impl Fn(i64, i64) -> Option<String>,
    ) -> Result<Option<ComplaintOutcome>> {
        in_tx!(self, |tx| {
            if !insert_event!(tx, event) {
                return Ok(None);
            }
            let unsubscribed: Vec<i64> = sqlx::query_scalar(
                "UPDATE subscriptions SET status = 'unsubscribed', unsubscribed_at = $3 \
                 WHERE subscriber_id = $1 AND ($2 IS NULL OR newsletter_id = $2) AND status <> 'unsubscribed' \
                 RETURNING newsletter_id",
            )
            .bind(event.subscriber_id)
            .bind(newsletter_id)
            .bind(consent.at)
            .fetch_all(&mut *tx)
            .await?;
            record_consent!(tx, unsubscribed.iter().map(|n| (event.subscriber_id, *n)), "unsubscribe", consent);
            sqlx::query(SUPPRESS).bind(event.subscriber_id).bind(event.at).bind("complained").execute(&mut *tx).await?;
            let mut paused = false;
            if let Some(issue) = event.issue_id {
                let (complaints, delivered): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM feedback_events WHERE issue_id = $1 AND kind = 'complaint'), \
                            (SELECT COUNT(*) FROM deliveries WHERE issue_id = $1 AND status = 'sent')",
                )
                .bind(issue)
                .fetch_one(&mut *tx)
                .await?;
                if let Some(reason) = pause_when(complaints, delivered) {
                    paused = sqlx::query(
                        "UPDATE issues SET status = 'paused', paused_reason = $2 WHERE id = $1 AND status = 'sending'",
                    )
                    .bind(issue)
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                }
            }
            Ok(Some(ComplaintOutcome { unsubscribed, paused }))
        })
    }

    /// Bounces and complaints reported about one issue's mail.
    pub async fn feedback_counts(&self, issue_id: i64) -> Result<FeedbackCounts> {
        let rows: Vec<(String, i64)> = reading!(self, |pool| {
            sqlx::query_as("SELECT kind, COUNT(*) FROM feedback_events WHERE issue_id = $1 GROUP BY kind")
                .bind(issue_id)
                .fetch_all(pool)
                .await?
        });
        let mut counts = FeedbackCounts::default();
        for (kind, n) in rows {
            match kind.as_str() {
                "hard_bounce" => counts.hard_bounces = n,
                "soft_bounce" => counts.soft_bounces = n,
                "sender_refused" => counts.sender_refusals = n,
                "complaint" => counts.complaints = n,
                _ => {}
            }
        }
        Ok(counts)
    }
}
