//! Refusals for the sender's reasons per issue and receiving domain
//! (`sender_refusals`), and what each domain was sent, for `issue status`
//! and `bulletin stats`.
//!
//! A refusal is one row, written when it happens: by the delivery engine
//! for a refusal at SMTP time, and with the `feedback_events` row of a
//! report. The refusals of an issue are counted from their index alone; what
//! a domain was sent is counted only for the few domains shown, in one pass
//! over the issue's ledger.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::{Db, Result, Store, reading, with_pool};
use crate::clock::Timestamp;
use crate::domain::sender_refusal::{most_common, reason_named};
use crate::domain::{BounceReason, DomainRefusals};

/// Records one refusal: issue, delivery, domain, reason, source (`smtp` or `report`), time.
pub(super) const INSERT_REFUSAL: &str = "INSERT INTO sender_refusals \
     (issue_id, delivery_id, domain, reason, source, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// One issue's refusals by domain and reason.
const OF_ISSUE: &str =
    "SELECT domain, reason, COUNT(*) FROM sender_refusals WHERE issue_id = $1 GROUP BY domain, reason";

/// The refusals by domain and reason of newsletter `$1`'s issues (NULL: every
/// newsletter's) queued at or after `$2`: `bulletin stats`'s period.
const OF_PERIOD: &str = "SELECT r.domain, r.reason, COUNT(*) FROM sender_refusals r \
     JOIN issues i ON i.id = r.issue_id WHERE ($1 IS NULL OR i.newsletter_id = $1) AND i.created_at >= $2 \
     GROUP BY r.domain, r.reason";

/// Which issues' ledger the sent counts read.
#[derive(Debug, Clone, Copy)]
enum Issues {
    One(i64),
    Period { newsletter_id: Option<i64>, since: Timestamp },
}

impl Store {
    /// A refusal for the sender's reasons at SMTP time: the delivery failed; the reader is left alone.
    #[tracing::instrument(skip_all, fields(issue = issue_id))]
    pub async fn record_refusal_at_send(
        &self,
        issue_id: i64,
        delivery_id: i64,
        domain: &str,
        reason: BounceReason,
        at: Timestamp,
    ) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query(INSERT_REFUSAL)
                .bind(issue_id)
                .bind(delivery_id)
                .bind(domain)
                .bind(reason.as_str())
                .bind("smtp")
                .bind(at)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The `top` receiving domains with the most refusals for the sender's
    /// reasons in one issue, most first, with what each was sent.
    #[tracing::instrument(skip_all, fields(issue = issue_id))]
    pub async fn refusals_by_domain(&self, issue_id: i64, top: usize) -> Result<Vec<DomainRefusals>> {
        let rows: Vec<(String, String, i64)> =
            reading!(self, |pool| sqlx::query_as(OF_ISSUE).bind(issue_id).fetch_all(pool).await?);
        self.with_sent_counts(top_domains(rows, top), Issues::One(issue_id)).await
    }

    /// Like [`Self::refusals_by_domain`] over the issues of one newsletter
    /// (or all) queued at or after `since`.
    #[tracing::instrument(skip_all)]
    pub async fn refusals_by_domain_since(
        &self,
        newsletter_id: Option<i64>,
        since: Timestamp,
        top: usize,
    ) -> Result<Vec<DomainRefusals>> {
        let rows: Vec<(String, String, i64)> =
            reading!(self, |pool| sqlx::query_as(OF_PERIOD).bind(newsletter_id).bind(since).fetch_all(pool).await?);
        self.with_sent_counts(top_domains(rows, top), Issues::Period { newsletter_id, since }).await
    }

    /// Fills in delivered and attempted for each domain, in one pass over the issues' ledger.
    async fn with_sent_counts(&self, mut domains: Vec<DomainRefusals>, issues: Issues) -> Result<Vec<DomainRefusals>> {
        if domains.is_empty() {
            return Ok(domains);
        }
        // The domain of the subscriber's address key. Stored addresses hold
        // one `@` (quoted local parts are refused at the edge). Taken once a
        // row: matching each wanted domain's suffix instead cost 5 times as
        // much (200 000 rows, SQLite: 0.5 s against 0.1 s).
        let domain_of = match &self.db {
            Db::Sqlite(_) => "substr(s.email_key, instr(s.email_key, '@') + 1)",
            Db::Postgres(_) => "split_part(s.email_key, '@', 2)",
        };
        let counts: Vec<(String, i64, i64)> = reading!(self, |pool| {
            let mut qb = QueryBuilder::new("SELECT ");
            qb.push(domain_of).push(
                ", CAST(SUM(CASE WHEN d.status = 'sent' THEN 1 ELSE 0 END) AS BIGINT), CAST(COUNT(*) AS BIGINT) \
                 FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.attempts > 0 AND ",
            );
            match issues {
                Issues::One(id) => {
                    qb.push("d.issue_id = ").push_bind(id);
                }
                Issues::Period { newsletter_id, since } => {
                    qb.push("d.issue_id IN (SELECT i.id FROM issues i WHERE (")
                        .push_bind(newsletter_id)
                        .push(" IS NULL OR i.newsletter_id = ")
                        .push_bind(newsletter_id)
                        .push(") AND i.created_at >= ")
                        .push_bind(since)
                        .push(")");
                }
            }
            qb.push(" AND ").push(domain_of).push(" IN (");
            let mut wanted = qb.separated(", ");
            for d in &domains {
                wanted.push_bind(d.domain.clone());
            }
            qb.push(") GROUP BY ").push(domain_of);
            qb.build_query_as().fetch_all(pool).await?
        });
        let counts: HashMap<String, (i64, i64)> =
            counts.into_iter().map(|(domain, delivered, attempted)| (domain, (delivered, attempted))).collect();
        for d in &mut domains {
            let (delivered, attempted) = counts.get(&d.domain).copied().unwrap_or_default();
            // A refusal reported for a reader erased since has no ledger row left: attempted all the same.
            (d.delivered, d.attempted) = (delivered, attempted.max(d.refused));
        }
        Ok(domains)
    }
}

/// The `top` domains by refusals (then by name) from rows of (domain, reason, count).
fn top_domains(rows: Vec<(String, String, i64)>, top: usize) -> Vec<DomainRefusals> {
    let mut by_domain: HashMap<String, Vec<(BounceReason, i64)>> = HashMap::new();
    for (domain, reason, n) in rows {
        by_domain.entry(domain).or_default().push((reason_named(&reason), n));
    }
    let mut domains: Vec<DomainRefusals> = by_domain
        .into_iter()
        .map(|(domain, reasons)| DomainRefusals {
            domain,
            refused: reasons.iter().map(|(_, n)| n).sum(),
            delivered: 0,
            attempted: 0,
            reason: most_common(reasons).unwrap_or(BounceReason::Policy),
        })
        .collect();
    domains.sort_by(|a, b| b.refused.cmp(&a.refused).then_with(|| a.domain.cmp(&b.domain)));
    domains.truncate(top);
    domains
}
