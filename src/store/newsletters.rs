//! Newsletters are declared in the config and kept in the database by slug.
//!
//! The database row is what every process agrees on: a newsletter added to
//! the configuration after a process started is found here, by whichever
//! process sends its mail. A newsletter taken out of the configuration
//! keeps its row (its issues and readers stay); its unsent issues are held
//! (see `delivery::hold_unconfigured`).

use sqlx::QueryBuilder;

use super::{Result, Store, reading, with_pool};
use crate::clock::Timestamp;
use crate::config::NewsletterSettings;
use crate::domain::{Newsletter, NewsletterSlug};

impl Store {
    /// Inserts or updates the configured newsletters and returns them in config order.
    pub async fn sync_newsletters(&self, configured: &[NewsletterSettings], now: Timestamp) -> Result<Vec<Newsletter>> {
        if configured.is_empty() {
            return Ok(vec![]);
        }
        let rows: Vec<(i64, String, String, String)> = with_pool!(self, |pool| {
            let mut qb = QueryBuilder::new("INSERT INTO newsletters (slug, name, description, created_at) ");
            qb.push_values(configured, |mut b, n| {
                b.push_bind(&n.slug).push_bind(&n.name).push_bind(&n.description).push_bind(now);
            });
            qb.push(
                " ON CONFLICT (slug) DO UPDATE SET name = excluded.name, description = excluded.description \
                 RETURNING id, slug, name, description",
            );
            qb.build_query_as().fetch_all(pool).await?
        });
        let mut newsletters: Vec<Newsletter> = rows.into_iter().filter_map(newsletter_from_row).collect();
        newsletters.sort_by_key(|n| configured.iter().position(|c| c.slug == n.slug.as_str()));
        Ok(newsletters)
    }

    /// Every newsletter in the database, configured now or not, by slug.
    pub async fn list_newsletters(&self) -> Result<Vec<Newsletter>> {
        let rows: Vec<(i64, String, String, String)> = reading!(self, |pool| {
            sqlx::query_as("SELECT id, slug, name, description FROM newsletters ORDER BY slug").fetch_all(pool).await?
        });
        Ok(rows.into_iter().filter_map(newsletter_from_row).collect())
    }

    /// One newsletter by id, configured now or not.
    pub async fn newsletter(&self, id: i64) -> Result<Option<Newsletter>> {
        let row: Option<(i64, String, String, String)> = reading!(self, |pool| {
            sqlx::query_as("SELECT id, slug, name, description FROM newsletters WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(newsletter_from_row))
    }

    /// Issues still sending with messages waiting whose newsletter is not
    /// among `configured` (ids): (issue id, newsletter slug), oldest first.
    pub async fn sending_issues_outside(&self, configured: &[i64]) -> Result<Vec<(i64, String)>> {
        if configured.is_empty() {
            return Ok(vec![]);
        }
        reading!(self, |pool| {
            let mut qb = QueryBuilder::new(
                "SELECT i.id, n.slug FROM issues i JOIN newsletters n ON n.id = i.newsletter_id \
                 WHERE i.status = 'sending' \
                 AND EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND d.status IN ('queued', 'retry')) \
                 AND i.newsletter_id NOT IN (",
            );
            let mut list = qb.separated(", ");
            for id in configured {
                list.push_bind(*id);
            }
            qb.push(") ORDER BY i.id");
            Ok(qb.build_query_as().fetch_all(pool).await?)
        })
    }
}

fn newsletter_from_row((id, slug, name, description): (i64, String, String, String)) -> Option<Newsletter> {
    Some(Newsletter { id, slug: NewsletterSlug::parse(&slug).ok()?, name, description })
}
