//! Waiting for the mail server.
//!
//! When no connection can be opened (refused, DNS, TLS, greeting, EHLO,
//! AUTH), every message would fail the same way: that is the server's
//! state, not theirs. Sending stops for the whole engine, the rows in hand
//! go back as they were (no attempt spent), and the server is tried again
//! after a pause that doubles from 1 s to 60 s, jittered so several
//! instances do not knock in step. The first connection that opens ends
//! the wait.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::clock::Timestamp;
use crate::store::MailServerWait;

const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// Whether the engine is waiting for the mail server; shared by its tasks.
#[derive(Default)]
pub struct Outage {
    waiting: Mutex<Option<Waiting>>,
}

struct Waiting {
    record: MailServerWait,
    pause: Duration,
    next_try: Instant,
}

impl Outage {
    pub fn is_waiting(&self) -> bool {
        self.waiting.lock().expect("outage lock").is_some()
    }

    /// No connection could be opened. Returns true when this starts a wait.
    pub fn unreachable(&self, now: Timestamp, detail: &str) -> bool {
        let mut waiting = self.waiting.lock().expect("outage lock");
        if waiting.is_some() {
            return false;
        }
        *waiting = Some(Waiting {
            record: MailServerWait { since: now, checked_at: now, detail: detail.to_owned() },
            pause: FIRST_PAUSE,
            next_try: Instant::now() + jittered(FIRST_PAUSE),
        });
        true
    }

    /// The wait under way, and when to try the server next.
    pub fn current(&self) -> Option<(MailServerWait, Instant)> {
        self.waiting.lock().expect("outage lock").as_ref().map(|w| (w.record.clone(), w.next_try))
    }

    /// Another try failed: wait twice as long (up to a minute) before the next.
    pub fn failed_again(&self, now: Timestamp, detail: &str) {
        if let Some(w) = self.waiting.lock().expect("outage lock").as_mut() {
            w.pause = (w.pause * 2).min(LONGEST_PAUSE);
            w.next_try = Instant::now() + jittered(w.pause);
            w.record.checked_at = now;
            w.record.detail = detail.to_owned();
        }
    }

    /// The server answered: sending resumes. Returns the wait that ended.
    pub fn ended(&self) -> Option<MailServerWait> {
        self.waiting.lock().expect("outage lock").take().map(|w| w.record)
    }
}

/// Between three quarters and five quarters of `pause`.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(rand::rng().random_range(0.75..=1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_minute_and_one_answer_ends_the_wait() {
        let outage = Outage::default();
        assert!(!outage.is_waiting());
        assert!(outage.unreachable(100, "refused"));
        assert!(!outage.unreachable(101, "refused again"), "one wait at a time");
        let (record, first) = outage.current().unwrap();
        assert_eq!((record.since, record.detail.as_str()), (100, "refused"));
        assert!(first <= Instant::now() + FIRST_PAUSE.mul_f64(1.25));
        for _ in 0..10 {
            outage.failed_again(130, "timed out");
        }
        let (record, next) = outage.current().unwrap();
        assert_eq!((record.since, record.checked_at, record.detail.as_str()), (100, 130, "timed out"));
        assert!(next <= Instant::now() + LONGEST_PAUSE.mul_f64(1.25));
        assert!(next >= Instant::now() + LONGEST_PAUSE.mul_f64(0.7));
        assert_eq!(outage.ended().map(|w| w.since), Some(100));
        assert!(!outage.is_waiting());
    }
}
