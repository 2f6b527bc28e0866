//! One reader, looked after by an operator (an access request, a reader who
//! writes in): everything stored about them, adding them, taking them off,
//! sending the confirmation mail again.
//!
//! The same rules and store functions as the web: an operator's signup is a
//! web signup with consent source `operator`, under the same per-address
//! mail cap. Only the operator's word (`confirmed`) skips the mail, and never
//! for an address erased before: that one needs a new opt-in, as on import.

use std::collections::HashMap;

use super::{ReaderRhythm, Signup, SignupError, Visitor, suppression};
use crate::clock::Timestamp;
use crate::domain::{ConsentSource, EmailAddress, Newsletter, SubscriptionStatus};
use crate::store::{ConsentEvent, RequestedSubscription, SubscriptionState};

/// Everything stored about one reader, for `bulletin subscribers show`.
#[derive(Debug, Clone)]
pub struct Reader {
    pub subscriber_id: i64,
    /// The address as stored (the local part's case as the reader typed it).
    pub address: String,
    /// The name an imported list gave (it goes in the To header of every mail).
    pub name: Option<String>,
    pub created_at: Timestamp,
    /// When mail to the address bounced for good (or its reader complained): nothing is sent to it since.
    pub bounced_at: Option<Timestamp>,
    /// The suppression since `bounced_at` is for a spam complaint, not a bounce.
    pub complained: bool,
    /// Erased before and stored again since: when its keyed hash went on the suppression list.
    pub erased_at: Option<Timestamp>,
    pub subscriptions: Vec<ReaderSubscription>,
    /// The consent record, oldest first.
    pub consent: Vec<ConsentEntry>,
}

impl Reader {
    /// The newsletters waiting for the reader's confirmation, by slug.
    pub fn pending(&self) -> Vec<&str> {
        self.subscriptions
            .iter()
            .filter(|s| s.state.status == SubscriptionStatus::Pending)
            .map(|s| s.newsletter.as_str())
            .collect()
    }
}

/// The reader's subscription to one newsletter.
#[derive(Debug, Clone)]
pub struct ReaderSubscription {
    /// The newsletter's slug (`#ID` for one no longer in the database).
    pub newsletter: String,
    pub state: SubscriptionState,
    /// How the reader hears, on a newsletter that offers rhythms.
    pub rhythm: Option<ReaderRhythm>,
}

/// One consent given or withdrawn, with its newsletter's slug.
#[derive(Debug, Clone)]
pub struct ConsentEntry {
    pub newsletter: String,
    pub event: ConsentEvent,
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Confirmed on the operator's word.
    Confirmed,
    /// The reader was already confirmed: nothing changed.
    AlreadyConfirmed,
    /// Pending, as after a web signup. `held_back`: why no confirmation mail
    /// was queued (the per-address cap), `None` when one was.
    /// `erased_before`: `confirmed` was asked, but the address was erased
    /// before and needs a new opt-in.
    Pending { held_back: Option<CapHeld>, erased_before: bool },
}

/// What `resend_confirmation` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resent {
    /// A confirmation mail is queued for these newsletters (slugs).
    Queued { newsletters: Vec<String> },
    /// The reader has no newsletter waiting for confirmation.
    NothingPending,
    /// The address is suppressed: mail to it bounced for good (it would bounce
    /// again), or its reader reported our mail as spam (`complained`).
    Bounced { at: Timestamp, complained: bool },
    /// The per-address cap holds it back.
    Held(CapHeld),
}

/// Why the per-address cap holds a confirmation mail back, and when the next may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapHeld {
    /// One was queued at `last`, less than the minimum interval ago.
    Interval { last: Timestamp, next: Timestamp },
    /// `count` were queued in the last 24 hours, the most allowed; `next`
    /// is `None` when the cap allows none at all.
    PerDay { count: usize, next: Option<Timestamp> },
}

impl Signup {
    /// Everything stored about the reader with this address, or `None`.
    pub async fn look_up(&self, email: &EmailAddress) -> Result<Option<Reader>, SignupError> {
        let Some(subscriber) = self.store.subscriber_by_email(email).await? else {
            return Ok(None);
        };
        let slugs: HashMap<i64, String> =
            self.store.list_newsletters().await?.into_iter().map(|n| (n.id, n.slug.to_string())).collect();
        let slug = |id: i64| slugs.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
        let subscriptions = self
            .store
            .subscriptions_of(subscriber.id)
            .await?
            .into_iter()
            .map(|state| ReaderSubscription {
                newsletter: slug(state.newsletter_id),
                rhythm: self.offers.of(state.newsletter_id).map(|o| ReaderRhythm::resolve(o, state.rhythm, state.zone)),
                state,
            })
            .collect();
        let consent = self
            .store
            .consent_events(subscriber.id)
            .await?
            .into_iter()
            .map(|event| ConsentEntry { newsletter: slug(event.newsletter_id), event })
            .collect();
        Ok(Some(Reader {
            subscriber_id: subscriber.id,
            address: subscriber.email,
            name: subscriber.name,
            created_at: subscriber.created_at,
            bounced_at: subscriber.bounced_at,
            complained: subscriber.suppressed_reason.as_deref() == Some("complained"),
            erased_at: suppression::erased_at(&self.store, self.links.keys(), email).await?,
            subscriptions,
            consent,
        }))
    }

    /// Adds the reader to `newsletter`: with `confirmed`, on the operator's
    /// word that the reader consented; otherwise as a web signup does
    /// (pending, and the confirmation mail under the per-address cap).
    pub async fn add(
        &self,
        email: &EmailAddress,
        newsletter: &Newsletter,
        confirmed: bool,
    ) -> Result<Added, SignupError> {
        let erased_before = suppression::erased_at(&self.store, self.links.keys(), email).await?.is_some();
        if confirmed && !erased_before {
            let consent = self.consent(ConsentSource::Operator, &Visitor::default());
            let changed = self.store.confirm_by_operator(email, newsletter.id, &consent).await?;
            tracing::info!(email = %email.masked(), newsletter = %newsletter.slug, changed, "confirmed by an operator");
            return Ok(if changed { Added::Confirmed } else { Added::AlreadyConfirmed });
        }
        let requested = [RequestedSubscription::plain(newsletter.id)];
        let outcome = self.subscribe_requested(email, &requested, ConsentSource::Operator, &Visitor::default()).await?;
        if !outcome.pending.contains(&newsletter.id) {
            return Ok(Added::AlreadyConfirmed);
        }
        let held_back = if outcome.mail_queued { None } else { Some(self.cap_held(outcome.subscriber_id).await?) };
        Ok(Added::Pending { held_back, erased_before: confirmed && erased_before })
    }

    /// Takes the reader off `newsletter`, or off every newsletter, as a
    /// withdrawal of consent by the operator. Returns the newsletters left
    /// (none when the reader was not on them).
    pub async fn unsubscribe_reader(&self, reader: &Reader, newsletter: Option<i64>) -> Result<Vec<i64>, SignupError> {
        let consent = self.consent(ConsentSource::Operator, &Visitor::default());
        let left = match newsletter {
            Some(id) => {
                let changed = self.store.unsubscribe(reader.subscriber_id, id, &consent).await?;
                if changed { vec![id] } else { vec![] }
            }
            None => self.store.set_subscriptions(reader.subscriber_id, &[], &consent).await?.unsubscribed,
        };
        tracing::info!(newsletters = ?left, "unsubscribed by an operator");
        Ok(left)
    }

    /// Queues the confirmation mail again for what the reader has pending,
    /// if the per-address cap allows it, as a second signup would.
    pub async fn resend_confirmation(&self, reader: &Reader) -> Result<Resent, SignupError> {
        let pending = reader.pending();
        if pending.is_empty() {
            return Ok(Resent::NothingPending);
        }
        if let Some(at) = reader.bounced_at {
            return Ok(Resent::Bounced { at, complained: reader.complained });
        }
        if !self.store.queue_confirmation(reader.subscriber_id, self.clock.now(), self.cap).await? {
            return Ok(Resent::Held(self.cap_held(reader.subscriber_id).await?));
        }
        self.mail_queued.notify_one();
        Ok(Resent::Queued { newsletters: pending.into_iter().map(str::to_owned).collect() })
    }

    /// Why the per-address cap holds the subscriber's next confirmation mail back.
    async fn cap_held(&self, subscriber_id: i64) -> Result<CapHeld, SignupError> {
        let now = self.clock.now();
        let times = self.store.confirmation_mails_since(subscriber_id, now - 86_400).await?;
        Ok(cap_held(&times, now, self.cap.min_interval_secs, self.cap.per_day))
    }
}

/// Why a cap of one mail per `interval` seconds and `per_day` a day holds
/// the next back at `now`, given when the mails of the last 24 hours were queued.
fn cap_held(times: &[Timestamp], now: Timestamp, interval: i64, per_day: i64) -> CapHeld {
    let last = times.last().copied();
    let after_interval = last.map(|last| last + interval).filter(|next| *next > now);
    let count = times.len();
    if per_day <= 0 {
        return CapHeld::PerDay { count, next: None };
    }
    if count as i64 >= per_day {
        // The oldest mails leave the window one by one; the next may go once enough have.
        let day = times[count - per_day as usize] + 86_400;
        return CapHeld::PerDay { count, next: Some(after_interval.map_or(day, |i| i.max(day))) };
    }
    match (last, after_interval) {
        (Some(last), Some(next)) => CapHeld::Interval { last, next },
        // The cap held a moment ago and no longer does: the next try goes.
        _ => CapHeld::Interval { last: last.unwrap_or(now), next: now },
    }
}

#[cfg(test)]
mod tests {
    use super::{CapHeld, cap_held};

    #[test]
    fn says_which_cap_holds_and_until_when() {
        let (interval, per_day) = (900, 3);
        assert_eq!(cap_held(&[10_000], 10_100, interval, per_day), CapHeld::Interval { last: 10_000, next: 10_900 });
        assert_eq!(
            cap_held(&[1_000, 5_000, 9_000], 20_000, interval, per_day),
            CapHeld::PerDay { count: 3, next: Some(1_000 + 86_400) }
        );
        assert_eq!(
            cap_held(&[1_000, 5_000, 9_000, 19_900], 20_000, interval, per_day),
            CapHeld::PerDay { count: 4, next: Some(5_000 + 86_400) },
            "a lowered cap waits for more of them to leave the window"
        );
        assert_eq!(cap_held(&[], 20_000, interval, 0), CapHeld::PerDay { count: 0, next: None });
    }
}
