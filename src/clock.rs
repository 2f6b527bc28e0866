//! Time as the application sees it: the system clock, or a clock tests move.
//!
//! Every rule with a time in it (token expiry, the per-address mail cap,
//! retry backoff) reads this clock, so tests can cross a day without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, the unit every stored timestamp uses.
pub type Timestamp = i64;

#[derive(Clone, Default)]
pub struct Clock {
    offset: Option<Arc<AtomicI64>>,
    /// Bumped on every move, so a task sleeping until a time (the digest
    /// scheduler) wakes when a test moves the clock past it.
    moved: Option<Arc<tokio::sync::watch::Sender<u64>>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { offset: None, moved: None }
    }

    /// A clock that runs with the system clock but can be moved ahead.
    pub fn adjustable() -> Self {
        Self { offset: Some(Arc::new(AtomicI64::new(0))), moved: Some(Arc::new(tokio::sync::watch::Sender::new(0))) }
    }

    pub fn now(&self) -> Timestamp {
        let real = chrono::Utc::now().timestamp();
        real + self.offset.as_ref().map_or(0, |o| o.load(Ordering::Relaxed))
    }

    /// Moves an adjustable clock ahead; panics on the system clock.
    pub fn advance(&self, seconds: i64) {
        self.offset.as_ref().expect("only an adjustable clock can be advanced").fetch_add(seconds, Ordering::Relaxed);
        if let Some(moved) = &self.moved {
            moved.send_modify(|n| *n += 1);
        }
    }

    /// Resolves when the clock has been moved since the last call (never for the system clock).
    pub async fn moved(&self, seen: &mut Option<tokio::sync::watch::Receiver<u64>>) {
        let Some(moved) = &self.moved else { return std::future::pending().await };
        let rx = seen.get_or_insert_with(|| moved.subscribe());
        let _ = rx.changed().await;
    }
}

/// Formats a stored timestamp for people and exports (RFC 3339, UTC).
pub fn format_timestamp(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Reads an RFC 3339 time with any offset (`2026-11-28T07:00:00+02:00`), as the CLI and API accept it.
pub fn parse_timestamp(text: &str) -> Result<Timestamp, chrono::ParseError> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_back_in_utc() {
        let ts = parse_timestamp(" 2024-03-05T06:07:08+02:00 ").unwrap();
        assert_eq!(format_timestamp(ts), "2024-03-05T04:07:08Z");
        assert_eq!(parse_timestamp("2024-03-05T04:07:08.9Z"), Ok(ts));
        for bad in ["", "2024-03-05", "2024-03-05 04:07:08", "yesterday", "1709611628"] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?}");
        }
    }
}
