//! The rhythms and zones a reader may choose on a digest newsletter that
//! offers them (`[newsletters.digest] rhythms`), and how a choice reads
//! back to the reader. Newsletters without `rhythms` offer nothing here, and
//! a signup's rhythm and zone pass them by.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Weekday;

use super::Catalog;
use crate::digest::{DigestPlan, Digests};
use crate::domain::{Rhythm, Zone};

/// What one newsletter lets its readers choose, from its digest plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RhythmOffer {
    /// What readers may pick, the default first; never empty.
    pub rhythms: Vec<Rhythm>,
    /// The newsletter's zone: where a reader who names none gets their digests.
    pub zone: Zone,
    pub send_hour: u32,
    pub weekly_day: Weekday,
}

impl RhythmOffer {
    /// The offer of a digest plan; `None` for a plan on one `schedule`.
    pub fn from_plan(plan: &DigestPlan) -> Option<Self> {
        Some(Self {
            rhythms: plan.rhythms.clone(),
            zone: plan.schedule.zone(),
            send_hour: plan.send_hour,
            weekly_day: plan.weekly_day,
        })
        .filter(|offer| !offer.rhythms.is_empty())
    }

    pub fn default_rhythm(&self) -> Rhythm {
        self.rhythms[0]
    }

    pub fn offers(&self, rhythm: Rhythm) -> bool {
        self.rhythms.contains(&rhythm)
    }

    /// How a reader of this rhythm in this zone hears from the newsletter,
    /// in their words: "A daily digest at 07:00, Europe/Kyiv time".
    pub fn describe(&self, rhythm: Rhythm, zone: Zone) -> String {
        let hour = self.send_hour;
        match rhythm {
            Rhythm::Immediate => Rhythm::Immediate.label().to_owned(),
            Rhythm::Daily => format!("A daily digest at {hour:02}:00, {} time", zone.name()),
            Rhythm::Weekly => {
                format!("A weekly digest on {} at {hour:02}:00, {} time", plural_day(self.weekly_day), zone.name())
            }
        }
    }

    /// When digests arrive, for a signup form that does not know the reader's zone yet.
    pub fn timing(&self) -> Option<String> {
        let hour = self.send_hour;
        match (self.offers(Rhythm::Daily), self.offers(Rhythm::Weekly)) {
            (false, false) => None,
            (true, false) => Some(format!("Daily digests arrive at {hour:02}:00 in your time zone.")),
            (false, true) => Some(format!(
                "Weekly digests arrive on {} at {hour:02}:00 in your time zone.",
                plural_day(self.weekly_day)
            )),
            (true, true) => Some(format!(
                "Digests arrive at {hour:02}:00 in your time zone, weekly ones on {}.",
                plural_day(self.weekly_day)
            )),
        }
    }
}

fn plural_day(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Mondays",
        Weekday::Tue => "Tuesdays",
        Weekday::Wed => "Wednesdays",
        Weekday::Thu => "Thursdays",
        Weekday::Fri => "Fridays",
        Weekday::Sat => "Saturdays",
        Weekday::Sun => "Sundays",
    }
}

/// Every newsletter's offer, by newsletter id.
#[derive(Debug, Clone, Default)]
pub struct RhythmOffers(Arc<HashMap<i64, RhythmOffer>>);

impl RhythmOffers {
    /// The offers of the catalog's newsletters whose digest plan lists `rhythms`.
    pub fn new(catalog: &Catalog, digests: &Digests) -> Self {
        let offers =
            catalog.all().iter().filter_map(|n| Some((n.id, RhythmOffer::from_plan(digests.plan(n).ok()?)?))).collect();
        Self(Arc::new(offers))
    }

    pub fn of(&self, newsletter_id: i64) -> Option<&RhythmOffer> {
        self.0.get(&newsletter_id)
    }
}

/// A reader's rhythm and zone as a signup submits them, parsed; `None`
/// leaves the newsletter's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RhythmChoice {
    pub rhythm: Option<Rhythm>,
    pub zone: Option<Zone>,
}

/// A rhythm newsletter's line on the preferences page, as the reader set it
/// (`None` fields in the store resolved to the newsletter's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderRhythm {
    pub offer: RhythmOffer,
    pub rhythm: Rhythm,
    /// Whether the reader chose the rhythm, rather than having the newsletter's default.
    pub own_rhythm: bool,
    pub zone: Zone,
    pub own_zone: bool,
}

impl ReaderRhythm {
    pub fn resolve(offer: &RhythmOffer, rhythm: Option<Rhythm>, zone: Option<Zone>) -> Self {
        Self {
            offer: offer.clone(),
            rhythm: rhythm.unwrap_or(offer.default_rhythm()),
            own_rhythm: rhythm.is_some(),
            zone: zone.unwrap_or(offer.zone),
            own_zone: zone.is_some(),
        }
    }

    pub fn describe(&self) -> String {
        self.offer.describe(self.rhythm, self.zone)
    }
}

/// A change the preferences page asks for on one newsletter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RhythmUpdate {
    pub newsletter_id: i64,
    /// `None`: keep the reader's rhythm.
    pub rhythm: Option<Rhythm>,
    /// `None`: keep the reader's zone; `Some(None)`: the newsletter's zone (the field was emptied).
    pub zone: Option<Option<Zone>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_read_back_in_the_readers_words() {
        let offer = RhythmOffer {
            rhythms: vec![Rhythm::Daily, Rhythm::Immediate, Rhythm::Weekly],
            zone: Zone::parse("Europe/Kyiv").unwrap(),
            send_hour: 7,
            weekly_day: Weekday::Mon,
        };
        let kyiv = ReaderRhythm::resolve(&offer, None, None);
        assert_eq!(kyiv.describe(), "A daily digest at 07:00, Europe/Kyiv time");
        assert!(!kyiv.own_rhythm && !kyiv.own_zone);
        let ny = ReaderRhythm::resolve(&offer, Some(Rhythm::Weekly), Zone::parse("America/New_York").ok());
        assert_eq!(ny.describe(), "A weekly digest on Mondays at 07:00, America/New_York time");
        assert_eq!(offer.describe(Rhythm::Immediate, offer.zone), "Every story, as it is published");
        assert_eq!(
            offer.timing().as_deref(),
            Some("Digests arrive at 07:00 in your time zone, weekly ones on Mondays.")
        );
    }
}
