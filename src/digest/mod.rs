//! Scheduled digests: stories arrive from feeds, the CLI or the API; on its
//! schedule a newsletter gathers the stories since its last digest into one
//! issue, sent through the delivery engine once per period.

pub mod feed;
mod gather;
mod rhythms;
mod run;
pub mod schedule;
mod scheduler;
pub mod story;

use url::Url;

use crate::config::DigestSettings;
use crate::domain::Rhythm;
pub use gather::Gathered;
pub use rhythms::RhythmStream;
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
    #[error("rhythms: {0}")]
    Rhythm(#[from] crate::domain::RhythmError),
    #[error("rhythms: {0:?} is listed twice")]
    RhythmTwice(String),
    #[error(
        "schedule: leave it out when rhythms are set (daily and weekly digests go out at send_hour in each reader's zone)"
    )]
    ScheduleWithRhythms,
    #[error("send_hour must be 0 to 23, got {0}")]
    SendHour(u32),
    #[error("weekly_day: {0:?} is not one of mon, tue, wed, thu, fri, sat, sun")]
    WeeklyDay(String),
    #[error("immediate_grouping_minutes must be at least 1")]
    Grouping,
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
    /// What readers may choose, the default first; empty for a newsletter on one `schedule`.
    pub rhythms: Vec<Rhythm>,
    pub send_hour: u32,
    pub weekly_day: chrono::Weekday,
    /// Seconds within which stories go to immediate readers in one mail.
    pub grouping: i64,
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
        let mut rhythms = Vec::new();
        for r in &s.rhythms {
            let rhythm: Rhythm = r.parse()?;
            if rhythms.contains(&rhythm) {
                return Err(PlanError::RhythmTwice(r.clone()));
            }
            rhythms.push(rhythm);
        }
        if !rhythms.is_empty() && s.schedule.is_some() {
            return Err(PlanError::ScheduleWithRhythms);
        }
        if s.send_hour > 23 {
            return Err(PlanError::SendHour(s.send_hour));
        }
        let weekly_day = match s.weekly_day.trim().to_ascii_lowercase().as_str() {
            "mon" => chrono::Weekday::Mon,
            "tue" => chrono::Weekday::Tue,
            "wed" => chrono::Weekday::Wed,
            "thu" => chrono::Weekday::Thu,
            "fri" => chrono::Weekday::Fri,
            "sat" => chrono::Weekday::Sat,
            "sun" => chrono::Weekday::Sun,
            _ => return Err(PlanError::WeeklyDay(s.weekly_day.clone())),
        };
        if s.immediate_grouping_minutes == 0 {
            return Err(PlanError::Grouping);
        }
        Ok(Self {
            schedule,
            feeds,
            max_items: s.max_items,
            skip_if_empty: s.skip_if_empty,
            max_lateness: i64::from(s.max_lateness_minutes) * 60,
            fetch_interval: i64::from(s.fetch_interval_minutes) * 60,
            subject: s.subject.clone(),
            rhythms,
            send_hour: s.send_hour,
            weekly_day,
            grouping: i64::from(s.immediate_grouping_minutes) * 60,
        })
    }

    /// The rhythm of a reader who never chose one.
    pub fn default_rhythm(&self) -> Option<Rhythm> {
        self.rhythms.first().copied()
    }

    /// Whether readers may pick `rhythm` here.
    pub fn offers(&self, rhythm: Rhythm) -> bool {
        self.rhythms.contains(&rhythm)
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
