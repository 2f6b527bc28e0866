//! The dates other newsletter systems write in their exports.
//!
//! A consent date is evidence, so a date is read only when its meaning is
//! plain: ISO 8601 / RFC 3339 with or without an offset, Mailchimp's
//! `2019-03-04 12:34:56`, listmonk's Go-style `2019-03-04 12:34:56.123 +0000
//! UTC`, or a bare day. A time without an offset is UTC, as these exports
//! write it. Anything else (`03/04/2019`: March or April?) is refused.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::clock::Timestamp;

/// The forms accepted, for the message that refuses a date.
pub const ACCEPTED: &str = "2019-03-04, 2019-03-04 12:34:56 or 2019-03-04T12:34:56Z";

/// Reads one date cell into Unix seconds; `None` when its meaning is not plain.
pub fn parse(cell: &str) -> Option<Timestamp> {
    let text = cell.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    // Space-separated with an offset; Go's `Time.String()` adds a zone name after it.
    let mut words = text.split_whitespace();
    if let (Some(day), Some(time), Some(offset)) = (words.next(), words.next(), words.next()) {
        let zoned = format!("{day} {time} {offset}");
        if let Ok(t) = DateTime::parse_from_str(&zoned, "%Y-%m-%d %H:%M:%S%.f %z") {
            return Some(t.timestamp());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::parse;

    const MARCH_4_2019_NOON: i64 = 1_551_700_800;

    #[test]
    fn the_dates_exports_write() {
        for (cell, expected) in [
            ("2019-03-04 12:00:00", MARCH_4_2019_NOON),       // Mailchimp OPTIN_TIME
            ("2019-03-04T12:00:00.000Z", MARCH_4_2019_NOON),  // Ghost, Substack
            ("2019-03-04T14:00:00+02:00", MARCH_4_2019_NOON), // RFC 3339 with an offset
            ("2019-03-04 12:00:00.446546 +0000 +0000", MARCH_4_2019_NOON), // listmonk (Go)
            ("2019-03-04 13:00:00 +0100 CET", MARCH_4_2019_NOON),
            ("2019-03-04T12:00:00", MARCH_4_2019_NOON),
            (" 2019-03-04 12:00 ", MARCH_4_2019_NOON),
            ("2019-03-04", MARCH_4_2019_NOON - 12 * 3600),
        ] {
            assert_eq!(parse(cell), Some(expected), "{cell:?}");
        }
    }

    #[test]
    fn ambiguous_or_broken_dates_are_refused() {
        for cell in ["03/04/2019", "4 March 2019", "2019-13-01", "2019-02-30", "yesterday", "1551700800", ""] {
            assert_eq!(parse(cell), None, "{cell:?}");
        }
    }
}
