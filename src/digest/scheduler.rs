//! The schedules, run by `serve` and `worker`: feeds fetched every few
//! minutes and just before a run, each newsletter's period made once when
//! its slot comes. Several instances may run this at once: the run's unique
//! key in the database, not this loop, decides who makes a period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::rhythms::RhythmStream;
use super::run::{Digests, Trigger};
use super::{DigestPlan, SCHEDULE_STREAM};
use crate::clock::Timestamp;
use crate::domain::{Newsletter, Rhythm};
use crate::store::DigestOutcome;

/// The longest the loop sleeps, so a clock that jumps is noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// After a database error, the next try comes this much later.
const RETRY: i64 = 30;
/// How often the (rhythm, zone) pairs readers chose are listed again: a
/// new zone's first digest waits at most this long, and a million readers
/// are not scanned every minute.
const STREAMS_EVERY: i64 = 300;

impl Digests {
    /// Runs until `stop`; wakes the delivery engine through `mail_queued` when a digest is queued.
    pub async fn schedule(self, mail_queued: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        if self.plans.is_empty() {
            return;
        }
        let mut state = Ticks::default();
        let mut moved = None;
        loop {
            let wake = tokio::select! {
                wake = self.tick(&mut state, &mail_queued) => wake,
                _ = stop.wait_for(|s| *s) => return,
            };
            let sleep = Duration::from_secs((wake - self.clock.now()).clamp(1, MAX_SLEEP.as_secs() as i64) as u64);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.clock.moved(&mut moved) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One look at every schedule; returns when to look again.
    async fn tick(&self, state: &mut Ticks, mail_queued: &Notify) -> Timestamp {
        let Ticks { fetched, retry_at, streams } = state;
        let now = self.clock.now();
        retry_at.retain(|_, at| *at > now);
        let mut wake = now + MAX_SLEEP.as_secs() as i64;
        for (newsletter, plan) in self.plans.values() {
            if !plan.rhythms.is_empty() {
                if !plan.feeds.is_empty()
                    && fetched.get(&newsletter.id).is_none_or(|at| at + plan.fetch_interval <= now)
                {
                    self.gather(newsletter).await;
                    fetched.insert(newsletter.id, now);
                }
                wake = wake.min(self.tick_rhythms(newsletter, plan, now, streams, mail_queued).await);
                if !plan.feeds.is_empty() {
                    wake = wake.min(fetched.get(&newsletter.id).map_or(now, |at| at + plan.fetch_interval));
                }
                continue;
            }
            let period = plan.schedule.period_at(now);
            let due = plan.schedule.is_automatic() && retry_at.get(&newsletter.id).is_none_or(|at| *at <= now);
            let pending = due
                && match self.store.digest_run(newsletter.id, SCHEDULE_STREAM, period.start).await {
                    Ok(run) => run.is_none(),
                    Err(e) => {
                        tracing::warn!(newsletter = %newsletter.slug, "could not check the digest schedule: {e}");
                        retry_at.insert(newsletter.id, now + RETRY);
                        false
                    }
                };
            let last = fetched.get(&newsletter.id).copied();
            let fetch_due = last.is_none_or(|at| at + plan.fetch_interval <= now);
            // Fetch ahead of a run that will be sent, not of one skipped as late.
            let ahead = pending && now - period.start <= plan.max_lateness && last.is_none_or(|at| at < period.start);
            if !plan.feeds.is_empty() && (fetch_due || ahead) {
                self.gather(newsletter).await;
                fetched.insert(newsletter.id, now);
            }
            if pending {
                match self.run(newsletter, Trigger::Schedule).await {
                    Ok(DigestOutcome::Made(run)) if run.issue_id.is_some() => mail_queued.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(newsletter = %newsletter.slug, "digest not made, tried again shortly: {e}");
                        retry_at.insert(newsletter.id, now + RETRY);
                    }
                }
            }
            if let Some(next) = plan.schedule.next_slot(now).filter(|_| plan.schedule.is_automatic()) {
                wake = wake.min(next);
            }
            if !plan.feeds.is_empty() {
                wake = wake.min(fetched.get(&newsletter.id).map_or(now, |at| at + plan.fetch_interval));
            }
            if let Some(at) = retry_at.get(&newsletter.id) {
                wake = wake.min(*at);
            }
        }
        wake
    }

    /// Runs every rhythm stream of a newsletter that is due; returns when one is next due.
    async fn tick_rhythms(
        &self,
        newsletter: &Newsletter,
        plan: &DigestPlan,
        now: Timestamp,
        streams: &mut HashMap<i64, (Timestamp, Vec<RhythmStream>)>,
        mail_queued: &Notify,
    ) -> Timestamp {
        let mut wake = now + MAX_SLEEP.as_secs() as i64;
        let listed = streams.get(&newsletter.id).is_some_and(|(at, _)| now - at < STREAMS_EVERY && *at <= now);
        if !listed {
            match self.rhythm_streams(newsletter, plan).await {
                Ok(found) => {
                    streams.insert(newsletter.id, (now, found));
                }
                Err(e) => {
                    tracing::warn!(newsletter = %newsletter.slug, "could not list readers' rhythms: {e}");
                    return now + RETRY;
                }
            }
        }
        let Some((_, list)) = streams.get(&newsletter.id) else { return wake };
        for stream in list {
            match self.run_stream(newsletter, plan, stream).await {
                Ok(Some(DigestOutcome::Made(run))) if run.issue_id.is_some() => mail_queued.notify_one(),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(newsletter = %newsletter.slug, stream = %stream.key(), "digest not made, tried again shortly: {e}");
                    wake = wake.min(now + RETRY);
                }
            }
            if stream.rhythm != Rhythm::Immediate
                && let Some(next) = stream.next_slot(plan, now)
            {
                wake = wake.min(next);
            }
        }
        wake
    }
}

/// What the loop remembers between looks.
#[derive(Default)]
struct Ticks {
    /// When each newsletter's feeds were last fetched.
    fetched: HashMap<i64, Timestamp>,
    /// A newsletter whose last try failed is left alone until then.
    retry_at: HashMap<i64, Timestamp>,
    /// Each rhythm newsletter's streams and when they were listed.
    streams: HashMap<i64, (Timestamp, Vec<RhythmStream>)>,
}
