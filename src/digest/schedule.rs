//! When a digest is due: cron slots evaluated in the newsletter's zone.
//!
//! A period is named by the slot it starts at (its scheduled instant), not
//! by the moment a run happened to start, so every scheduler and every
//! restart agrees on which period "now" belongs to.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::clock::Timestamp;
use crate::domain::Zone;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule: {0:?} is not a cron expression like \"0 7 * * *\" ({1})")]
    Cron(String, String),
    #[error("timezone: {0:?} is not an IANA time zone name like \"Europe/Kyiv\" or \"UTC\"")]
    Zone(String),
}

/// A newsletter's schedule. Without a cron expression the periods are the
/// local calendar days (runs come from `bulletin digest run`, e.g. from cron).
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    automatic: bool,
    zone: Zone,
}

/// One period of a schedule: from its slot until the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// The slot this period starts at: the key of its digest run.
    pub start: Timestamp,
    /// The slot before, to bound how old a story may be.
    pub previous: Timestamp,
    /// The slot's date as readers in the zone say it: "28 November 2026".
    pub label: String,
}

impl Schedule {
    pub fn parse(cron: Option<&str>, zone: &str) -> Result<Self, ScheduleError> {
        let zone = Zone::parse(zone).map_err(|_| ScheduleError::Zone(zone.to_owned()))?;
        let (cron, automatic) = match cron {
            Some(expr) => {
                (Cron::from_str(expr.trim()).map_err(|e| ScheduleError::Cron(expr.to_owned(), e.to_string()))?, true)
            }
            None => (Cron::from_str("0 0 * * *").expect("a valid expression"), false),
        };
        Ok(Self { cron, automatic, zone })
    }

    /// Whether `serve` and `worker` run this schedule themselves.
    pub fn is_automatic(&self) -> bool {
        self.automatic
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The period `now` falls in: from the latest slot at or before `now`.
    pub fn period_at(&self, now: Timestamp) -> Period {
        let at = self.local(now);
        let start = self.cron.find_previous_occurrence(&at, true).unwrap_or(at);
        let previous = self.cron.find_previous_occurrence(&start, false).unwrap_or(start);
        Period { start: start.timestamp(), previous: previous.timestamp(), label: date_label(&start) }
    }

    /// The first slot after `now`, for a scheduler to sleep until.
    pub fn next_slot(&self, now: Timestamp) -> Option<Timestamp> {
        self.cron.find_next_occurrence(&self.local(now), false).ok().map(|t| t.timestamp())
    }

    fn local(&self, ts: Timestamp) -> DateTime<Tz> {
        local(self.zone, ts)
    }
}

/// The date of `at` as readers in `zone` say it: "28 November 2026".
pub fn date_in(zone: Zone, at: Timestamp) -> String {
    date_label(&local(zone, at))
}

fn date_label(at: &DateTime<Tz>) -> String {
    at.format("%-d %B %Y").to_string()
}

fn local(zone: Zone, ts: Timestamp) -> DateTime<Tz> {
    zone.tz().from_utc_datetime(&DateTime::<Utc>::from_timestamp(ts, 0).unwrap_or_default().naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn periods_are_named_by_their_slot_in_the_zone() {
        let kyiv = Schedule::parse(Some("0 7 * * *"), "Europe/Kyiv").unwrap();
        // 07:00 in Kyiv on 28 November is 05:00 UTC.
        let p = kyiv.period_at(ts("2026-11-28T05:00:00Z"));
        assert_eq!(p.start, ts("2026-11-28T05:00:00Z"));
        assert_eq!(p.previous, ts("2026-11-27T05:00:00Z"));
        assert_eq!(p.label, "28 November 2026");
        // A second before the slot still belongs to yesterday's period.
        assert_eq!(kyiv.period_at(ts("2026-11-28T04:59:59Z")).start, ts("2026-11-27T05:00:00Z"));
        assert_eq!(kyiv.next_slot(ts("2026-11-28T05:00:00Z")), Some(ts("2026-11-29T05:00:00Z")));
    }

    #[test]
    fn daylight_saving_moves_the_utc_instant_not_the_local_hour() {
        // Kyiv leaves summer time on 25 October 2026: 07:00 is 04:00 UTC before, 05:00 after.
        let kyiv = Schedule::parse(Some("0 7 * * *"), "Europe/Kyiv").unwrap();
        assert_eq!(kyiv.period_at(ts("2026-10-24T12:00:00Z")).start, ts("2026-10-24T04:00:00Z"));
        assert_eq!(kyiv.period_at(ts("2026-10-25T12:00:00Z")).start, ts("2026-10-25T05:00:00Z"));
    }

    /// Kyiv springs forward at 03:00 on 28 March 2027 (03:00–04:00 does not
    /// exist) and falls back at 04:00 on 31 October (03:00–04:00 happens twice):
    /// a 03:30 digest still comes once a day, never skipped, never doubled.
    #[test]
    fn an_hour_that_is_skipped_or_repeated_still_gives_one_slot_a_day() {
        let kyiv = Schedule::parse(Some("30 3 * * *"), "Europe/Kyiv").unwrap();
        let slots = |from: &str, days: i64| {
            let mut at = ts(from);
            let mut out = vec![];
            for _ in 0..days {
                at = kyiv.next_slot(at).unwrap();
                out.push(chrono::DateTime::from_timestamp(at, 0).unwrap().to_rfc3339());
            }
            out
        };
        let spring = slots("2027-03-26T12:00:00Z", 3);
        assert_eq!(spring[0], "2027-03-27T01:30:00+00:00");
        assert!(spring[1].starts_with("2027-03-28T"), "{spring:?}");
        assert_eq!(spring[2], "2027-03-29T00:30:00+00:00");
        let autumn = slots("2027-10-29T12:00:00Z", 3);
        assert_eq!(autumn[0], "2027-10-30T00:30:00+00:00");
        assert!(autumn[1].starts_with("2027-10-31T"), "{autumn:?}");
        assert_eq!(autumn[2], "2027-11-01T01:30:00+00:00");
    }

    #[test]
    fn without_a_schedule_periods_are_local_days() {
        let ny = Schedule::parse(None, "America/New_York").unwrap();
        assert!(!ny.is_automatic());
        let p = ny.period_at(ts("2026-11-28T03:00:00Z"));
        assert_eq!(p.start, ts("2026-11-27T05:00:00Z"));
        assert_eq!(p.label, "27 November 2026");
    }

    #[test]
    fn bad_input_is_named() {
        let e = Schedule::parse(Some("7 o'clock"), "UTC").unwrap_err().to_string();
        assert!(e.starts_with("schedule: \"7 o'clock\""), "{e}");
        let e = Schedule::parse(Some("0 7 * * *"), "Europe/Kiev2").unwrap_err().to_string();
        assert!(e.starts_with("timezone: \"Europe/Kiev2\""), "{e}");
    }

    #[test]
    fn a_zone_alias_is_its_canonical_zone() {
        assert_eq!(Schedule::parse(None, "Europe/Kiev").unwrap().zone().name(), "Europe/Kyiv");
    }

    #[test]
    fn dates_are_the_zones_own() {
        // 22:02 UTC on 7 December: 17:02 in New York, already 00:02 on the 8th in Kyiv.
        let at = ts("2026-12-07T22:02:00Z");
        assert_eq!(date_in(Zone::parse("America/New_York").unwrap(), at), "7 December 2026");
        assert_eq!(date_in(Zone::parse("Europe/Kyiv").unwrap(), at), "8 December 2026");
    }
}
