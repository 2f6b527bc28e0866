//! The pace of sending: the configured rate, halved when the server says
//! slow down (421, 4.7.x) and won back step by step (AIMD).
//!
//! Multiplicative decrease: a slow-down reply halves the rate, starting
//! from the configured one or, when sending is unlimited, from the rate
//! observed over the last second; never below one message a second, and at
//! most once a second, since the refusals of messages already in flight are
//! one signal, not one per sender. Additive increase: each further second
//! with a success and no slow-down reply adds a thirty-second of the rate
//! before the first cut, so one halving is won back in about sixteen
//! seconds; on reaching it, the configured pace (or no limit) applies again.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

/// The slowest the engine goes when told to slow down, in messages per second.
const FLOOR: f64 = 1.0;
/// At most one cut per this long; also the length of an increase step and of an observation window.
const STEP: Duration = Duration::from_secs(1);
/// An increase adds the pre-cut rate divided by this.
const STEPS_TO_RECOVER: f64 = 32.0;

/// Shared by every sender of one engine.
pub struct Throttle {
    state: Mutex<State>,
    /// The pace for the metrics, in messages a second; 0: no limit.
    pace: Gauge<f64, AtomicU64>,
}

impl Throttle {
    /// `rate_per_second` 0 means no limit until the server asks for one;
    /// `pace` is kept at the pace in force.
    pub fn new(rate_per_second: u32, pace: Gauge<f64, AtomicU64>) -> Self {
        let configured = (rate_per_second > 0).then_some(f64::from(rate_per_second));
        pace.set(configured.unwrap_or(0.0));
        Self { state: Mutex::new(State::new(configured, Instant::now())), pace }
    }

    /// Waits for this message's turn.
    pub async fn wait(&self) {
        let now = Instant::now();
        let at = self.state.lock().expect("throttle lock").slot(now);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }

    /// A message was accepted.
    pub fn sent(&self) {
        let mut state = self.state.lock().expect("throttle lock");
        state.sent(Instant::now());
        self.pace.set(state.rate.unwrap_or(0.0));
    }

    /// The server asked to slow down; returns the new rate when this halved it.
    pub fn slow_down(&self) -> Option<f64> {
        let mut state = self.state.lock().expect("throttle lock");
        let halved = state.slow_down(Instant::now());
        self.pace.set(state.rate.unwrap_or(0.0));
        halved
    }
}

#[derive(Debug)]
struct State {
    configured: Option<f64>,
    /// The pace now, in messages per second; `None`: no limit.
    rate: Option<f64>,
    /// While slowed down: the rate before the first cut, which increases climb back to.
    ceiling: Option<f64>,
    next_slot: Instant,
    last_change: Option<Instant>,
    /// Successes since `window_start`, to know the rate when there is no limit.
    window_start: Instant,
    window_sent: u32,
    observed: f64,
}

impl State {
    fn new(configured: Option<f64>, now: Instant) -> Self {
        Self {
            configured,
            rate: configured,
            ceiling: None,
            next_slot: now,
            last_change: None,
            window_start: now,
            window_sent: 0,
            observed: 0.0,
        }
    }

    /// Reserves the next turn: `now` without a limit, else one interval after the last.
    fn slot(&mut self, now: Instant) -> Instant {
        let Some(rate) = self.rate else { return now };
        let at = self.next_slot.max(now);
        self.next_slot = at + Duration::from_secs_f64(1.0 / rate);
        at
    }

    fn sent(&mut self, now: Instant) {
        self.window_sent += 1;
        let span = now.duration_since(self.window_start);
        if span >= STEP {
            self.observed = f64::from(self.window_sent) / span.as_secs_f64();
            self.window_start = now;
            self.window_sent = 0;
        }
        let (Some(rate), Some(ceiling)) = (self.rate, self.ceiling) else { return };
        if self.last_change.is_some_and(|at| now.duration_since(at) < STEP) {
            return;
        }
        let raised = rate + (ceiling / STEPS_TO_RECOVER).max(FLOOR);
        if raised >= ceiling {
            self.rate = self.configured;
            self.ceiling = None;
        } else {
            self.rate = Some(raised);
        }
        self.last_change = Some(now);
    }

    fn slow_down(&mut self, now: Instant) -> Option<f64> {
        if self.ceiling.is_some() && self.last_change.is_some_and(|at| now.duration_since(at) < STEP) {
            return None;
        }
        let current = self.rate.unwrap_or_else(|| self.observed_rate(now));
        self.ceiling.get_or_insert(current.max(2.0 * FLOOR));
        let halved = (current / 2.0).max(FLOOR);
        self.rate = Some(halved);
        self.last_change = Some(now);
        // The turns already given out stand; the next one waits at the new pace.
        self.next_slot = self.next_slot.max(now);
        Some(halved)
    }

    /// Messages per second lately: the current window when it is long enough to say, else the last one.
    fn observed_rate(&self, now: Instant) -> f64 {
        let span = now.duration_since(self.window_start).as_secs_f64();
        if span >= 0.25 { self.observed.max(f64::from(self.window_sent) / span) } else { self.observed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Sends `n` messages evenly over `[from, to)` milliseconds, each in its turn.
    fn send_evenly(s: &mut State, t0: Instant, from: u64, to: u64, n: u64) {
        for i in 0..n {
            let now = at(t0, from + (to - from) * i / n);
            s.slot(now);
            s.sent(now);
        }
    }

    #[test]
    fn unlimited_halves_from_the_observed_rate_once_per_second_down_to_one() {
        let t0 = Instant::now();
        let mut s = State::new(None, t0);
        send_evenly(&mut s, t0, 0, 1000, 200);
        s.sent(at(t0, 1000));
        assert_eq!(s.slot(at(t0, 1000)), at(t0, 1000), "no limit before the server asks");
        let first = s.slow_down(at(t0, 1000)).expect("cut");
        assert!((95.0..=105.0).contains(&first), "half of ~200/s, got {first}");
        assert_eq!(s.slow_down(at(t0, 1100)), None, "refusals in flight are one signal");
        assert_eq!(s.slow_down(at(t0, 1900)), None);
        let second = s.slow_down(at(t0, 2000)).expect("second cut a second later");
        assert!((second - first / 2.0).abs() < 1e-9);
        let mut t = 3000;
        let mut rate = second;
        while let Some(r) = s.slow_down(at(t0, t)) {
            assert!(r >= FLOOR && r <= rate);
            if r == rate {
                break;
            }
            rate = r;
            t += 1000;
        }
        assert_eq!(rate, FLOOR, "never below one message a second");
    }

    #[test]
    fn slowed_pace_spaces_messages_and_recovers_step_by_step() {
        let t0 = Instant::now();
        let mut s = State::new(Some(10.0), t0);
        assert_eq!(s.slow_down(t0), Some(5.0));
        let first = s.slot(at(t0, 0));
        let second = s.slot(at(t0, 0));
        assert_eq!(second - first, Duration::from_millis(200), "5 per second");
        // No increase within a second of the cut, then one step per second of successes.
        s.sent(at(t0, 500));
        assert_eq!(s.rate, Some(5.0));
        s.sent(at(t0, 1000));
        assert_eq!(s.rate, Some(6.0), "+max(1, 10/32) per second");
        s.sent(at(t0, 1500));
        assert_eq!(s.rate, Some(6.0));
        for second in 2..=5 {
            s.sent(at(t0, second * 1000));
        }
        assert_eq!(s.rate, Some(10.0), "back to the configured rate");
        assert_eq!(s.ceiling, None);
        s.sent(at(t0, 6000));
        assert_eq!(s.rate, Some(10.0), "never above it");
    }

    #[test]
    fn unlimited_recovers_to_no_limit() {
        let t0 = Instant::now();
        let mut s = State::new(None, t0);
        send_evenly(&mut s, t0, 0, 1000, 64);
        s.sent(at(t0, 1000));
        let cut = s.slow_down(at(t0, 1000)).expect("cut");
        assert!((31.0..=34.0).contains(&cut), "{cut}");
        let mut t = 2000;
        while s.rate.is_some() {
            s.sent(at(t0, t));
            t += 1000;
            assert!(t < 40_000, "recovers within about 16 s, rate {:?}", s.rate);
        }
        assert!(t >= 10_000, "slowly: took {t} ms");
        assert_eq!(s.slot(at(t0, t)), at(t0, t));
    }
}
