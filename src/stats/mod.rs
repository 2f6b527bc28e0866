//! How the list is doing: readers joining and leaving per UTC day, the list
//! size at the end of each day, and how each issue's mail went.
//!
//! The counting happens in SQL (`store::stats`); this module names the
//! figures, keeps the newsletters apart and renders the page with charts
//! (`page`, `charts`). Bulletin counts only what the ledger and the
//! subscriptions record: no opens or clicks, which it does not track.

mod charts;
mod page;

use std::fmt;

use crate::clock::Timestamp;
use crate::domain::{DomainRefusals, Newsletter, NewsletterSlug};
use crate::store::{DAY, DailyRow, IssueTally, Store, StoreError};

pub use page::render_page;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not draw the {chart} chart: {reason}")]
    Chart { chart: &'static str, reason: String },
    #[error("could not render the stats page: {0}")]
    Page(#[from] askama::Error),
}

/// A UTC calendar day, stored as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date: expected YYYY-MM-DD (a UTC day)")]
pub struct DayError(String);

impl Day {
    /// Reads `YYYY-MM-DD`, the form `--since` takes.
    pub fn parse(text: &str) -> Result<Self, DayError> {
        let date = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| DayError(text.to_owned()))?;
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp();
        Ok(Self(midnight.div_euclid(DAY)))
    }

    /// The day a stored timestamp falls on.
    pub fn of(at: Timestamp) -> Self {
        Self(at.div_euclid(DAY))
    }

    /// The calendar date, if the day is one chrono can name.
    pub fn date(self) -> Option<chrono::NaiveDate> {
        chrono::DateTime::from_timestamp(self.start(), 0).map(|t| t.date_naive())
    }

    /// The first second of the day.
    pub fn start(self) -> Timestamp {
        self.0 * DAY
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.date() {
            Some(date) => write!(f, "{}", date.format("%Y-%m-%d")),
            None => write!(f, "day {}", self.0),
        }
    }
}

/// One newsletter's figures for one UTC day that saw any activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTally {
    pub day: Day,
    pub joined: i64,
    pub unsubscribed: i64,
    pub bounced: i64,
    /// Confirmed readers at the end of the day.
    pub list_size: i64,
}

/// A newsletter and its days with activity, oldest first.
#[derive(Debug, Clone)]
pub struct NewsletterHistory {
    pub newsletter: Newsletter,
    pub days: Vec<DayTally>,
}

/// One issue and what became of its mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueReport {
    pub id: i64,
    pub newsletter: NewsletterSlug,
    pub subject: String,
    /// When it was queued: the start of its sending.
    pub sent_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub delivered: i64,
    pub bounced: i64,
    pub failed: i64,
    /// Not (yet) settled as one of the above: queued, retrying, skipped or ambiguous.
    pub other: i64,
    /// Readers of the newsletter who unsubscribed in the 7 days after it was queued.
    pub unsubscribed_within_7_days: i64,
    /// Readers who reported it as spam.
    pub complaints: i64,
}

/// Everything `bulletin stats` shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub since: Option<Day>,
    pub newsletters: Vec<NewsletterHistory>,
    pub issues: Vec<IssueReport>,
    /// The receiving domains that refused the period's issues most for the
    /// sender's reasons (at sending or in later reports), most first.
    pub refusals_by_domain: Vec<DomainRefusals>,
}

/// Receiving domains shown with their refusals for the sender's reasons.
pub const TOP_REFUSING_DOMAINS: usize = 10;

/// Gathers the report for `newsletters` (all of them, or the one asked for) from `since` on.
pub async fn gather(store: &Store, newsletters: &[Newsletter], since: Option<Day>) -> Result<Report, StatsError> {
    let only = match newsletters {
        [one] => Some(one.id),
        _ => None,
    };
    let since_day = since.map_or(i64::MIN, |d| d.0);
    let since_at = since.map_or(i64::MIN, Day::start);
    let days = store.daily_activity(only, since_day).await?;
    let tallies = store.issue_tallies(only, since_at).await?;
    let refusals_by_domain = store.refusals_by_domain_since(only, since_at, TOP_REFUSING_DOMAINS).await?;
    let histories = newsletters
        .iter()
        .map(|n| NewsletterHistory {
            newsletter: n.clone(),
            days: days.iter().filter(|row| row.newsletter_id == n.id).map(day_tally).collect(),
        })
        .collect();
    let issues = tallies
        .into_iter()
        .filter_map(|t| {
            let newsletter = newsletters.iter().find(|n| n.id == t.newsletter_id)?.slug.clone();
            Some(issue_report(t, newsletter))
        })
        .collect();
    Ok(Report { since, newsletters: histories, issues, refusals_by_domain })
}

fn day_tally(row: &DailyRow) -> DayTally {
    DayTally {
        day: Day(row.day),
        joined: row.joined,
        unsubscribed: row.unsubscribed,
        bounced: row.bounced,
        list_size: row.list_size,
    }
}

fn issue_report(t: IssueTally, newsletter: NewsletterSlug) -> IssueReport {
    IssueReport {
        id: t.id,
        newsletter,
        subject: t.subject,
        sent_at: t.created_at,
        completed_at: t.completed_at,
        delivered: t.delivered,
        bounced: t.bounced,
        failed: t.failed,
        other: t.other,
        unsubscribed_within_7_days: t.unsubscribed,
        complaints: t.complaints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        let day = Day::parse("2026-03-01").unwrap();
        assert_eq!(day.to_string(), "2026-03-01");
        assert_eq!(Day::of(day.start() + DAY - 1), day);
        assert_eq!(Day::of(day.start() - 1).to_string(), "2026-02-28");
        assert!(Day::parse("2026-02-30").is_err());
        assert!(Day::parse("yesterday").unwrap_err().to_string().contains("YYYY-MM-DD"));
    }
}
