//! Making a period's digest: which period, which stories, once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::{Clock, Timestamp, format_timestamp};
use crate::config::NewsletterSettings;
use crate::domain::Newsletter;
use crate::signup::Catalog;
use crate::store::{DigestOutcome, DigestRequest, DigestRunRow, ItemRow, Store, StoreError};

use super::feed::FeedFetcher;
use super::{DigestPlan, Period, SCHEDULE_STREAM, Story};

/// Who asked for a run: a scheduled run after downtime is skipped, an editor's never is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Editor,
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(
        "newsletter \"{0}\" is not a digest: add a [newsletters.digest] table to its entry in the configuration (README, \"Digests\")"
    )]
    NotADigest(String),
    #[error(
        "newsletter \"{0}\" sends each reader's digest at their own rhythm: `bulletin serve` or `bulletin worker` sends them when due (`bulletin digest list` shows the runs)"
    )]
    ByRhythm(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the next digest of a newsletter would hold, without making it.
#[derive(Debug, Clone)]
pub struct Preview {
    pub subject: String,
    pub period: Period,
    pub stories: Vec<ItemRow>,
    pub recipients: i64,
    /// The period's run, if it already has one.
    pub already: Option<DigestRunRow>,
    /// When the schedule sends it, if that is still to come.
    pub due_at: Option<Timestamp>,
}

/// Which digest [`Digests::preview`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upcoming {
    Current,
    Next,
}

/// Every newsletter's digest plan, and what runs them: shared by the scheduler and the CLI.
#[derive(Clone)]
pub struct Digests {
    pub(super) store: Store,
    pub(super) plans: Arc<HashMap<i64, (Newsletter, DigestPlan)>>,
    pub(super) fetcher: FeedFetcher,
    pub(super) clock: Clock,
}

impl Digests {
    /// The plans of the configured newsletters that have a `[newsletters.digest]` table.
    /// The settings were checked at load, so a plan that does not parse is left out.
    pub fn new(
        store: Store,
        catalog: &Catalog,
        settings: &[NewsletterSettings],
        fetcher: FeedFetcher,
        clock: Clock,
    ) -> Self {
        let plans = catalog
            .all()
            .iter()
            .filter_map(|n| {
                let configured = settings.iter().find(|s| s.slug == n.slug.as_str())?;
                let plan = DigestPlan::from_settings(configured.digest.as_ref()?).ok()?;
                Some((n.id, (n.clone(), plan)))
            })
            .collect();
        Self { store, plans: Arc::new(plans), fetcher, clock }
    }

    pub fn plan(&self, newsletter: &Newsletter) -> Result<&DigestPlan, DigestError> {
        self.plans
            .get(&newsletter.id)
            .map(|(_, plan)| plan)
            .ok_or_else(|| DigestError::NotADigest(newsletter.slug.to_string()))
    }

    /// Stores stories from the CLI or the API; returns how many were new. A
    /// newsletter that is not a digest is refused: no run would ever send them.
    pub async fn add_stories(
        &self,
        newsletter: &Newsletter,
        stories: &[Story],
        source: &str,
    ) -> Result<u64, DigestError> {
        self.plan(newsletter)?;
        Ok(self.store.add_items(newsletter.id, stories, source, self.clock.now()).await?)
    }

    /// The request for the period `now` falls in.
    fn request<'a>(
        newsletter: &Newsletter,
        plan: &DigestPlan,
        period: &'a Period,
        subject: &'a str,
        skip: Option<&'a str>,
        now: Timestamp,
    ) -> DigestRequest<'a> {
        // Stories up to two periods old: a story that reached its feed or the
        // CLI after the last run still goes in the next one; a feed's archive does not.
        let length = (period.start - period.previous).max(60);
        DigestRequest {
            newsletter_id: newsletter.id,
            stream: SCHEDULE_STREAM,
            period_start: period.start,
            period_label: &period.label,
            subject,
            max_items: plan.max_items,
            oldest: period.previous - length,
            skip,
            skip_if_empty: plan.skip_if_empty,
            now,
        }
    }

    /// What a digest would hold, changing nothing. `Upcoming::Current`: the
    /// period `now` falls in, as `digest run` would send it now. `Upcoming::Next`:
    /// the next digest readers will get, which for a schedule whose current
    /// period is done (or too late to send) is the next slot's, with the
    /// stories that have arrived so far.
    pub async fn preview(&self, newsletter: &Newsletter, which: Upcoming) -> Result<Preview, DigestError> {
        let plan = self.plan(newsletter)?;
        if !plan.rhythms.is_empty() {
            return Err(DigestError::ByRhythm(newsletter.slug.to_string()));
        }
        let now = self.clock.now();
        let mut period = plan.schedule.period_at(now);
        let mut already = self.store.digest_run(newsletter.id, SCHEDULE_STREAM, period.start).await?;
        let mut due_at = None;
        let passed = already.is_some() || now - period.start > plan.max_lateness;
        if which == Upcoming::Next
            && plan.schedule.is_automatic()
            && passed
            && let Some(next) = plan.schedule.next_slot(now)
        {
            period = plan.schedule.period_at(next);
            already = None;
            due_at = Some(next);
        }
        let subject = plan.subject_for(&newsletter.name, &period);
        let req = Self::request(newsletter, plan, &period, &subject, None, now);
        let stories = self.store.digest_candidates(&req).await?;
        let recipients = self.store.audience_size(newsletter.id).await?;
        Ok(Preview { subject, period, stories, recipients, already, due_at })
    }

    /// Makes the digest of the period `now` falls in, once. A scheduled run
    /// more than `max_lateness_minutes` after its slot is recorded as skipped.
    pub async fn run(&self, newsletter: &Newsletter, trigger: Trigger) -> Result<DigestOutcome, DigestError> {
        let plan = self.plan(newsletter)?;
        if !plan.rhythms.is_empty() {
            return Err(DigestError::ByRhythm(newsletter.slug.to_string()));
        }
        let now = self.clock.now();
        let period = plan.schedule.period_at(now);
        let subject = plan.subject_for(&newsletter.name, &period);
        let late = (trigger == Trigger::Schedule && now - period.start > plan.max_lateness).then(|| {
            format!(
                "late: due at {}, not run until {} (more than max_lateness_minutes = {})",
                format_timestamp(period.start),
                format_timestamp(now),
                plan.max_lateness / 60
            )
        });
        let req = Self::request(newsletter, plan, &period, &subject, late.as_deref(), now);
        let outcome = self.store.make_digest_run(&req).await?;
        if let DigestOutcome::Made(run) = &outcome {
            match run.issue_id {
                Some(issue) => tracing::info!(
                    newsletter = %newsletter.slug, period = %run.period_label, issue, stories = run.items,
                    recipients = run.recipients, "digest queued"
                ),
                None => tracing::info!(
                    newsletter = %newsletter.slug, period = %run.period_label,
                    reason = run.reason.as_deref().unwrap_or_default(), "digest skipped"
                ),
            }
        }
        Ok(outcome)
    }
}
