//! Readers' own rhythms: daily and weekly digests at `send_hour` in each
//! reader's zone, and immediate mail a few minutes after stories arrive.
//! Which stories a reader gets is their position (`digest_through`), not
//! the run: see `store::rhythms`.

use super::run::Digests;
use super::schedule::date_in;
use super::{DigestPlan, Schedule};
use crate::clock::{Timestamp, format_timestamp};
use crate::domain::{Newsletter, Rhythm, Zone};
use crate::store::{DigestOutcome, ItemRow, RhythmRequest, RhythmSlot, StoreError};

/// Stories that arrived in the last few seconds wait for the next run: a
/// story stored by a transaction still open when the run reads must not
/// fall behind a reader's position.
const SETTLE: i64 = 5;

/// One rhythm in one zone of one newsletter: what a run is made for.
#[derive(Debug, Clone)]
pub struct RhythmStream {
    pub rhythm: Rhythm,
    pub zone: Zone,
    pub rhythm_is_default: bool,
    pub zone_is_default: bool,
}

impl RhythmStream {
    /// The run key besides the newsletter and period: `daily:Europe/Kyiv`.
    /// Immediate readers are run per zone too: each run then reads one range
    /// of the rhythm index instead of every immediate reader's row.
    pub fn key(&self) -> String {
        format!("{}:{}", self.rhythm, self.zone.name())
    }

    fn slot(&self, newsletter_id: i64) -> RhythmSlot<'static> {
        RhythmSlot {
            newsletter_id,
            rhythm: self.rhythm.as_str(),
            rhythm_is_default: self.rhythm_is_default,
            zone: self.zone.name(),
            zone_is_default: self.zone_is_default,
        }
    }

    /// When a daily or weekly stream is next due.
    pub fn next_slot(&self, plan: &DigestPlan, now: Timestamp) -> Option<Timestamp> {
        self.schedule(plan)?.next_slot(now)
    }

    /// The schedule of a daily or weekly stream: `send_hour` in its zone.
    fn schedule(&self, plan: &DigestPlan) -> Option<Schedule> {
        let zone = self.zone.name();
        let expr = match self.rhythm {
            Rhythm::Immediate => return None,
            Rhythm::Daily => format!("0 {} * * *", plan.send_hour),
            Rhythm::Weekly => format!("0 {} * * {}", plan.send_hour, plan.weekly_day.num_days_from_sunday()),
        };
        Schedule::parse(Some(&expr), zone).ok()
    }
}

impl Digests {
    /// Readers whose rhythm a newsletter no longer offers (the operator took
    /// it out of `rhythms`) go to its default rhythm, keeping their position:
    /// no stream would serve them, and they would silently get nothing.
    pub async fn settle_rhythms(&self) -> Result<(), StoreError> {
        for (newsletter, plan) in self.plans.values() {
            if plan.rhythms.is_empty() {
                continue;
            }
            let offered: Vec<&str> = plan.rhythms.iter().map(|r| r.as_str()).collect();
            let moved = self.store.reset_rhythms_not_offered(newsletter.id, &offered).await?;
            if moved > 0 {
                tracing::warn!(
                    newsletter = %newsletter.slug, readers = moved,
                    "readers had a rhythm no longer offered; they now get the default ({})", offered[0]
                );
            }
        }
        Ok(())
    }

    /// The streams a newsletter's readers make: each (rhythm, zone) they chose,
    /// defaults resolved, and one immediate stream for every zone.
    pub async fn rhythm_streams(
        &self,
        newsletter: &Newsletter,
        plan: &DigestPlan,
    ) -> Result<Vec<RhythmStream>, StoreError> {
        let Some(default_rhythm) = plan.default_rhythm() else { return Ok(vec![]) };
        let default_zone = plan.schedule.zone();
        let mut streams: Vec<RhythmStream> = vec![];
        for (rhythm, zone) in self.store.rhythm_slots(newsletter.id).await? {
            let rhythm = if rhythm.is_empty() { default_rhythm } else { rhythm.parse().unwrap_or(default_rhythm) };
            let zone = if zone.is_empty() { default_zone } else { Zone::parse(&zone).unwrap_or(default_zone) };
            if !plan.offers(rhythm) {
                continue;
            }
            // Readers who chose the default zone by name and those who never chose share a stream.
            let stream = RhythmStream {
                rhythm,
                zone,
                rhythm_is_default: rhythm == default_rhythm,
                zone_is_default: zone == default_zone,
            };
            if !streams.iter().any(|s| s.key() == stream.key()) {
                streams.push(stream);
            }
        }
        streams.sort_by_key(RhythmStream::key);
        Ok(streams)
    }

    /// Makes the stream's run if one is due now; `Ok(None)` when nothing is due.
    pub async fn run_stream(
        &self,
        newsletter: &Newsletter,
        plan: &DigestPlan,
        stream: &RhythmStream,
    ) -> Result<Option<DigestOutcome>, StoreError> {
        let now = self.clock.now();
        let key = stream.key();
        let slot = stream.slot(newsletter.id);
        let (period_start, label, floor, skip) = match stream.schedule(plan) {
            Some(schedule) => {
                let period = schedule.period_at(now);
                if self.store.digest_run(newsletter.id, &key, period.start).await?.is_some() {
                    return Ok(None);
                }
                let late = (now - period.start > plan.max_lateness).then(|| {
                    format!(
                        "late: due at {}, not run until {}; its stories go in the next digest",
                        format_timestamp(period.start),
                        format_timestamp(now)
                    )
                });
                (period.start, period.label, period.previous, late)
            }
            None => {
                // Immediate: once the first waiting story is `grouping` old, in windows of
                // that length; a first mail reaches back a day at most.
                let window = now.div_euclid(plan.grouping) * plan.grouping;
                let floor = now - 86_400;
                match self.store.first_waiting_story(slot, floor).await? {
                    Some(first) if now >= first + plan.grouping => {}
                    _ => return Ok(None),
                }
                // Dated as the reader's day, not the newsletter's.
                let label = date_in(stream.zone, now);
                (window, label, floor, None)
            }
        };
        let name = newsletter.name.clone();
        let date_subject = plan.subject.replace("{newsletter}", &name).replace("{date}", &label);
        let immediate = stream.rhythm == Rhythm::Immediate;
        let subject = move |stories: &[ItemRow]| match stories {
            [one] if immediate => one.title.clone(),
            many if immediate => format!("{name}: {} new stories", many.len()),
            _ => date_subject.clone(),
        };
        let req = RhythmRequest {
            slot,
            stream: &key,
            period_start,
            period_label: &label,
            floor,
            cutoff: now - SETTLE,
            skip: skip.as_deref(),
            skip_if_empty: plan.skip_if_empty || immediate,
            now,
        };
        let outcome = self.store.make_rhythm_run(&req, &subject).await?;
        if let DigestOutcome::Made(run) = &outcome {
            tracing::info!(
                newsletter = %newsletter.slug, stream = %key, period = %run.period_label, stories = run.items,
                recipients = run.recipients, skipped = run.reason.as_deref().unwrap_or_default(), "rhythm run"
            );
        }
        Ok(Some(outcome))
    }
}
