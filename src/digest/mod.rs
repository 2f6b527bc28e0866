//! Scheduled digests: stories arrive from feeds, the CLI or the API; on its
//! schedule a newsletter gathers the stories since its last digest into one
//! issue, sent through the delivery engine once per period.

pub mod feed;
mod gather;
mod run;
pub mod schedule;
mod scheduler;
pub mod story;

use url::Url;

use crate::config::DigestSettings;
pub use gather::Gathered;
pub use run::{DigestError, Digests, Preview, Trigger, Upcoming};
pub use schedule::{Period, Schedule, ScheduleError};
pub use story::{Story, StoryError};

/// The stream of runs a newsletter's own schedule makes (readers' own rhythms will be others).
pub const SCHEDULE_STREAM: &str = "schedule";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("feeds: {0:?} is not an http:// or https:// URL")]
    Feed(String),
    #[error("max_items must be at least 1")]
    MaxItems,
    #[error("fetch_interval_minutes must be at least 1")]
    FetchInterval,
    #[error("subject must not be empty")]
    Subject,
}

/// A newsletter's `[newsletters.digest]`, checked and parsed.
#[derive(Debug, Clone)]
pub struct DigestPlan {
    pub schedule: Schedule,
    pub feeds: Vec<Url>,
    pub max_items: u32,
    pub skip_if_empty: bool,
    /// Seconds after its slot a scheduled run may still start.
    pub max_lateness: i64,
    /// Seconds between feed fetches.
    pub fetch_interval: i64,
    pub subject: String,
}

impl DigestPlan {
    pub fn from_settings(s: &DigestSettings) -> Result<Self, PlanError> {
        let schedule = Schedule::parse(s.schedule.as_deref(), &s.timezone)?;
        let feeds = s
            .feeds
            .iter()
            .map(|f| match Url::parse(f.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(u),
                _ => Err(PlanError::Feed(f.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if s.max_items == 0 {
            return Err(PlanError::MaxItems);
        }
        if s.fetch_interval_minutes == 0 {
            return Err(PlanError::FetchInterval);
        }
        if s.subject.trim().is_empty() {
            return Err(PlanError::Subject);
        }
        Ok(Self {
            schedule,
            feeds,
            max_items: s.max_items,
            skip_if_empty: s.skip_if_empty,
            max_lateness: i64::from(s.max_lateness_minutes) * 60,
            fetch_interval: i64::from(s.fetch_interval_minutes) * 60,
            subject: s.subject.clone(),
        })
    }

    /// The digest's subject for a period: `{newsletter}` and `{date}` filled in.
    pub fn subject_for(&self, newsletter: &str, period: &Period) -> String {
        self.subject.replace("{newsletter}", newsletter).replace("{date}", &period.label)
    }
}

/// What a digest issue lists, from its run and the stories it carried.
pub fn content(run: &crate::store::DigestRunRow, stories: Vec<crate::store::ItemRow>) -> crate::mail::DigestContent {
    crate::mail::DigestContent {
        date: run.period_label.clone(),
        stories: stories
            .into_iter()
            .map(|s| crate::mail::DigestStory { title: s.title, url: s.url, summary: s.summary })
            .collect(),
    }
}
