//! How often a reader of a digest newsletter hears from it, and where they are.

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rhythm {
    /// A mail per story as it arrives (a burst grouped into one).
    Immediate,
    /// Every story of the day, at the newsletter's `send_hour` in the reader's zone.
    Daily,
    /// Every story of the week, on `weekly_day` at `send_hour`.
    Weekly,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rhythm: choose immediate, daily or weekly")]
pub struct RhythmError(pub String);

impl Rhythm {
    pub const ALL: [Rhythm; 3] = [Rhythm::Immediate, Rhythm::Daily, Rhythm::Weekly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "immediate",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }

    /// What a reader is offered on forms and the preferences page.
    pub fn label(self) -> &'static str {
        match self {
            Self::Immediate => "Every story, as it is published",
            Self::Daily => "A daily digest",
            Self::Weekly => "A weekly digest",
        }
    }
}

impl fmt::Display for Rhythm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rhythm {
    type Err = RhythmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "immediate" => Ok(Self::Immediate),
            "daily" => Ok(Self::Daily),
            "weekly" => Ok(Self::Weekly),
            other => Err(RhythmError(other.to_owned())),
        }
    }
}

/// A time zone: an IANA name, checked against the tz database and held by
/// its canonical name, so `Europe/Kiev` and `Europe/Kyiv` are one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Zone(Tz);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a time zone: use an IANA name such as Europe/Kyiv or America/New_York")]
pub struct ZoneError(pub String);

impl Zone {
    /// The zone `name` names, by its canonical name (`Europe/Kiev` is `Europe/Kyiv`).
    pub fn parse(name: &str) -> Result<Self, ZoneError> {
        let tz = Tz::from_str(name.trim()).map_err(|_| ZoneError(name.to_owned()))?;
        // The table's names are all chrono-tz's (its tests say so).
        let canonical = super::zone_aliases::canonical(tz.name()).and_then(|c| Tz::from_str(c).ok());
        Ok(Self(canonical.unwrap_or(tz)))
    }

    pub fn tz(self) -> Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhythms_and_zones_parse_or_say_why() {
        assert_eq!("daily".parse::<Rhythm>(), Ok(Rhythm::Daily));
        assert!("hourly".parse::<Rhythm>().unwrap_err().to_string().contains("immediate, daily or weekly"));
        assert_eq!(Zone::parse("Europe/Kyiv").unwrap().name(), "Europe/Kyiv");
        assert!(Zone::parse("Mars/Olympus").unwrap_err().to_string().contains("IANA"));
    }

    #[test]
    fn zones_are_held_by_their_canonical_names() {
        for (given, held) in [
            ("Europe/Kiev", "Europe/Kyiv"),
            (" Asia/Calcutta ", "Asia/Kolkata"),
            ("US/Eastern", "America/New_York"),
            ("Etc/UTC", "UTC"),
            ("UTC", "UTC"),
            ("Europe/Amsterdam", "Europe/Amsterdam"),
        ] {
            assert_eq!(Zone::parse(given).unwrap().name(), held, "{given}");
        }
        assert_eq!(Zone::parse("Europe/Kiev"), Zone::parse("Europe/Kyiv"));
    }
}
