//! The reader's rules: subscribe, confirm, unsubscribe, preferences.
//!
//! Used by the web handlers and the CLI alike. Every token from a URL is
//! checked here; nothing below this layer sees raw input.

mod batch;
mod catalog;
mod links;
mod offers;
mod reader;
pub mod roster;
pub mod stamp;
pub mod suppression;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::Notify;

pub use batch::Backlog;
pub use catalog::Catalog;
pub use links::Links;
pub use offers::{ReaderRhythm, RhythmChoice, RhythmOffer, RhythmOffers, RhythmUpdate};
pub use reader::{Added, CapHeld, ConsentEntry, Reader, ReaderSubscription, Resent};

use crate::clock::Clock;
use crate::domain::{
    ConsentSource, EmailAddress, LinkPurpose, LinkRef, Newsletter, NewsletterSlug, Rhythm, SubscriptionStatus,
    TokenHash,
};
use crate::metrics::Metrics;
use crate::store::{
    ConfirmOutcome, Consent, MailCap, RequestedSubscription, SignupOutcome, SignupRequest, Store, StoreError,
    TokenState,
};

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error("choose at least one newsletter")]
    NoNewsletter,
    #[error("there is no newsletter called {0:?}")]
    UnknownNewsletter(String),
    #[error("{name} does not offer {}: choose {}", .rhythm.as_str(), offered(.offers))]
    RhythmNotOffered { slug: String, name: String, rhythm: Rhythm, offers: Vec<Rhythm> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn offered(rhythms: &[Rhythm]) -> String {
    let names: Vec<&str> = rhythms.iter().map(|r| r.as_str()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The visitor behind a request, for the consent record.
#[derive(Debug, Clone, Default)]
pub struct Visitor {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// What a confirmation link shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmPreview {
    Ready {
        newsletters: Vec<String>,
    },
    /// With the reader's preferences page, unless the reader was erased since.
    AlreadyConfirmed {
        preferences_url: Option<String>,
    },
    Expired,
    Invalid,
}

/// What pressing "Confirm subscription" did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    Confirmed { newsletters: Vec<String>, preferences_url: String },
    AlreadyConfirmed { preferences_url: String },
    Expired,
    Invalid,
}

/// What a preferences link shows: whose it is, and each newsletter.
#[derive(Debug, Clone)]
pub struct Preferences {
    /// The reader's address as stored, shown so they know which one they manage.
    pub address: String,
    pub newsletters: Vec<Preference>,
}

/// One row of the preferences page.
#[derive(Debug, Clone)]
pub struct Preference {
    pub newsletter: Newsletter,
    pub status: Option<SubscriptionStatus>,
    pub unsubscribe_url: String,
    /// How the reader hears, on a newsletter that offers rhythms and that they have a subscription to.
    pub rhythm: Option<ReaderRhythm>,
}

/// The subscriber behind a verified link.
struct LinkedReader {
    subscriber_id: i64,
    link_ref: LinkRef,
    newsletter_id: i64,
}

#[derive(Clone)]
pub struct Signup {
    store: Store,
    catalog: Arc<Catalog>,
    links: Links,
    clock: Clock,
    /// The per-address cap on confirmation mail, from `[signup]`.
    cap: MailCap,
    offers: RhythmOffers,
    signups: batch::Batcher,
    mail_queued: Arc<Notify>,
    /// Counts confirmations and unsubscribes; a fresh, unserved set until [`Self::counted`].
    metrics: Metrics,
}

impl Signup {
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        links: Links,
        clock: Clock,
        cap: MailCap,
        offers: RhythmOffers,
        mail_queued: Arc<Notify>,
    ) -> Self {
        let signups = batch::Batcher::start(store.clone(), clock.clone(), cap);
        Self { store, catalog, links, clock, cap, offers, signups, mail_queued, metrics: Metrics::new() }
    }

    /// Counts what readers do in `metrics`: the running instance's, which it serves.
    pub fn counted(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// The signups waiting to be stored, which the delivery engine yields to.
    pub fn backlog(&self) -> Backlog {
        self.signups.backlog()
    }

    /// What each newsletter lets its readers choose.
    pub fn offers(&self) -> &RhythmOffers {
        &self.offers
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn cap(&self) -> MailCap {
        self.cap
    }

    /// Resolves submitted slugs against the catalog, rejecting unknown ones.
    pub fn resolve(&self, slugs: &[String]) -> Result<Vec<i64>, SignupError> {
        let mut ids = vec![];
        for raw in slugs {
            let newsletter = NewsletterSlug::parse(raw.trim())
                .ok()
                .and_then(|slug| self.catalog.by_slug(&slug))
                .ok_or_else(|| SignupError::UnknownNewsletter(raw.chars().take(64).collect()))?;
            if !ids.contains(&newsletter.id) {
                ids.push(newsletter.id);
            }
        }
        if ids.is_empty() {
            return Err(SignupError::NoNewsletter);
        }
        Ok(ids)
    }

    /// The subscriptions a signup of `newsletters` asks for: `choice` goes
    /// to the newsletters that offer rhythms (each must offer the rhythm),
    /// the others keep their one way of sending. Checked before anything is
    /// looked up, so the answer says nothing about the address.
    pub fn requested(
        &self,
        newsletters: &[i64],
        choice: RhythmChoice,
    ) -> Result<Vec<RequestedSubscription>, SignupError> {
        newsletters
            .iter()
            .map(|&id| {
                let Some(offer) = self.offers.of(id) else {
                    return Ok(RequestedSubscription::plain(id));
                };
                match choice.rhythm {
                    Some(rhythm) if !offer.offers(rhythm) => Err(self.not_offered(id, rhythm, offer)),
                    rhythm => Ok(RequestedSubscription { newsletter_id: id, rhythm, zone: choice.zone }),
                }
            })
            .collect()
    }

    fn not_offered(&self, newsletter_id: i64, rhythm: Rhythm, offer: &RhythmOffer) -> SignupError {
        let newsletter = self.catalog.by_id(newsletter_id);
        SignupError::RhythmNotOffered {
            slug: newsletter.map(|n| n.slug.to_string()).unwrap_or_default(),
            name: newsletter.map(|n| n.name.clone()).unwrap_or_default(),
            rhythm,
            offers: offer.rhythms.clone(),
        }
    }

    /// Records a signup at each newsletter's default rhythm and zone; see [`Self::subscribe_requested`].
    pub async fn subscribe(
        &self,
        email: &EmailAddress,
        newsletters: &[i64],
        source: ConsentSource,
        visitor: &Visitor,
    ) -> Result<(), SignupError> {
        let requested: Vec<_> = newsletters.iter().map(|&id| RequestedSubscription::plain(id)).collect();
        self.subscribe_requested(email, &requested, source, visitor).await.map(|_| ())
    }

    /// Records a signup and, within the per-address cap, queues the
    /// confirmation mail. What it did is for the operator's CLI: a web
    /// answer must not depend on it, which keeps the responses identical
    /// whatever the address's previous state.
    pub async fn subscribe_requested(
        &self,
        email: &EmailAddress,
        requested: &[RequestedSubscription],
        source: ConsentSource,
        visitor: &Visitor,
    ) -> Result<SignupOutcome, SignupError> {
        let consent = self.consent(source, visitor);
        let signup = SignupRequest { email: email.clone(), newsletters: requested.to_vec(), consent };
        let outcome = self.signups.record(signup).await?;
        tracing::info!(
            email = %email.masked(),
            pending = outcome.pending.len(),
            mail_queued = outcome.mail_queued,
            "signup recorded"
        );
        if outcome.mail_queued {
            self.mail_queued.notify_one();
        }
        Ok(outcome)
    }

    pub async fn preview_confirmation(&self, token: &str) -> Result<ConfirmPreview, SignupError> {
        let Some(hash) = TokenHash::from_presented(token) else {
            return Ok(ConfirmPreview::Invalid);
        };
        Ok(match self.store.token_state(&hash, self.clock.now()).await? {
            TokenState::Valid { pending, .. } => ConfirmPreview::Ready { newsletters: self.catalog.names(&pending) },
            TokenState::Used { subscriber_id } => ConfirmPreview::AlreadyConfirmed {
                preferences_url: self.store.link_ref(subscriber_id).await?.map(|r| self.links.preferences_url(r)),
            },
            TokenState::Expired => ConfirmPreview::Expired,
            TokenState::Unknown => ConfirmPreview::Invalid,
        })
    }

    pub async fn confirm(&self, token: &str, visitor: &Visitor) -> Result<Confirmation, SignupError> {
        let Some(hash) = TokenHash::from_presented(token) else {
            return Ok(Confirmation::Invalid);
        };
        let consent = self.consent(ConsentSource::ConfirmLink, visitor);
        Ok(match self.store.confirm(&hash, &consent).await? {
            ConfirmOutcome::Confirmed { subscriber_id, newsletters } => {
                for newsletter in newsletters.iter().filter_map(|id| self.catalog.by_id(*id)) {
                    self.metrics.confirmed(&newsletter.slug);
                }
                // A new opt-in lifts an earlier erasure or bounce.
                if let Some(email) = self.store.subscriber_email(subscriber_id).await? {
                    let hashes = self.links.keys().suppression_hashes(&email.to_lowercase());
                    self.store.lift_suppression(subscriber_id, &hashes).await?;
                }
                let Some(link_ref) = self.store.link_ref(subscriber_id).await? else {
                    return Ok(Confirmation::Invalid);
                };
                Confirmation::Confirmed {
                    newsletters: self.catalog.names(&newsletters),
                    preferences_url: self.links.preferences_url(link_ref),
                }
            }
            ConfirmOutcome::AlreadyConfirmed { subscriber_id } => match self.store.link_ref(subscriber_id).await? {
                Some(link_ref) => {
                    Confirmation::AlreadyConfirmed { preferences_url: self.links.preferences_url(link_ref) }
                }
                None => Confirmation::Invalid,
            },
            ConfirmOutcome::Expired => Confirmation::Expired,
            ConfirmOutcome::Unknown => Confirmation::Invalid,
        })
    }

    /// The newsletter an unsubscribe link is for, and whether the reader is
    /// still on it; `None` for a link that is not ours or whose subscriber was erased.
    pub async fn unsubscribe_target(&self, token: &str) -> Result<Option<(Newsletter, bool)>, SignupError> {
        let Some(reader) = self.reader(token, LinkPurpose::Unsubscribe).await? else {
            return Ok(None);
        };
        let Some(newsletter) = self.linked_newsletter(reader.newsletter_id).await? else {
            return Ok(None);
        };
        let states = self.store.subscriptions_of(reader.subscriber_id).await?;
        let Some(state) = states.iter().find(|s| s.newsletter_id == reader.newsletter_id) else {
            return Ok(None);
        };
        Ok(Some((newsletter, state.status != SubscriptionStatus::Unsubscribed)))
    }

    /// The newsletter an unsubscribe link names: from the catalog, or as
    /// stored when it was added to the configuration after this process
    /// started, or taken out of it. A reader can always leave what they get.
    async fn linked_newsletter(&self, id: i64) -> Result<Option<Newsletter>, SignupError> {
        match self.catalog.by_id(id) {
            Some(newsletter) => Ok(Some(newsletter.clone())),
            None => Ok(self.store.newsletter(id).await?),
        }
    }

    /// Leaves the newsletter the link names. Idempotent: a second POST is a
    /// success too. Answers the newsletter and the reader's preferences page,
    /// where they can take it back.
    pub async fn unsubscribe(
        &self,
        token: &str,
        source: ConsentSource,
        visitor: &Visitor,
    ) -> Result<Option<(Newsletter, String)>, SignupError> {
        let Some(reader) = self.reader(token, LinkPurpose::Unsubscribe).await? else {
            return Ok(None);
        };
        let Some(newsletter) = self.linked_newsletter(reader.newsletter_id).await? else {
            return Ok(None);
        };
        let consent = self.consent(source, visitor);
        let changed = self.store.unsubscribe(reader.subscriber_id, reader.newsletter_id, &consent).await?;
        if changed {
            tracing::info!(newsletter = %newsletter.slug, "unsubscribed");
            self.metrics.unsubscribed(&newsletter.slug, source);
        }
        Ok(Some((newsletter, self.links.preferences_url(reader.link_ref))))
    }

    /// The address a preferences link manages and every newsletter with the
    /// reader's state on it; `None` for a bad link.
    pub async fn preferences(&self, token: &str) -> Result<Option<Preferences>, SignupError> {
        let Some(reader) = self.reader(token, LinkPurpose::Preferences).await? else {
            return Ok(None);
        };
        let Some(address) = self.store.subscriber_email(reader.subscriber_id).await? else {
            return Ok(None);
        };
        let states = self.store.subscriptions_of(reader.subscriber_id).await?;
        Ok(Some(Preferences {
            address,
            newsletters: self
                .catalog
                .all()
                .iter()
                .map(|n| {
                    let state = states.iter().find(|s| s.newsletter_id == n.id);
                    Preference {
                        newsletter: n.clone(),
                        status: state.map(|s| s.status),
                        unsubscribe_url: self.links.unsubscribe_url(reader.link_ref, n.id),
                        rhythm: state
                            .zip(self.offers.of(n.id))
                            .map(|(s, offer)| ReaderRhythm::resolve(offer, s.rhythm, s.zone)),
                    }
                })
                .collect(),
        }))
    }

    /// Makes the reader's confirmed newsletters exactly `wanted`, and sets
    /// the rhythm and zone of those among them that `rhythms` names. Every
    /// rhythm is checked first: one a newsletter does not offer changes nothing.
    pub async fn update_preferences(
        &self,
        token: &str,
        wanted: &[String],
        rhythms: &[RhythmUpdate],
        visitor: &Visitor,
    ) -> Result<Option<Preferences>, SignupError> {
        let Some(reader) = self.reader(token, LinkPurpose::Preferences).await? else {
            return Ok(None);
        };
        let wanted = match self.resolve(wanted) {
            Ok(ids) => ids,
            Err(SignupError::NoNewsletter) => vec![],
            Err(e) => return Err(e),
        };
        let states = self.store.subscriptions_of(reader.subscriber_id).await?;
        let mut changes = vec![];
        for update in rhythms.iter().filter(|u| wanted.contains(&u.newsletter_id)) {
            let Some(offer) = self.offers.of(update.newsletter_id) else {
                continue;
            };
            if let Some(rhythm) = update.rhythm.filter(|r| !offer.offers(*r)) {
                return Err(self.not_offered(update.newsletter_id, rhythm, offer));
            }
            let state = states.iter().find(|s| s.newsletter_id == update.newsletter_id);
            let (stored_rhythm, stored_zone) = state.map_or((None, None), |s| (s.rhythm, s.zone));
            let now = ReaderRhythm::resolve(offer, stored_rhythm, stored_zone);
            // What the reader already has stays as stored, so a default stays a default.
            let rhythm = match update.rhythm {
                Some(r) if r != now.rhythm => Some(r),
                _ => stored_rhythm,
            };
            let zone = match update.zone {
                None => stored_zone,
                Some(None) => None,
                Some(Some(z)) if z == now.zone => stored_zone,
                Some(Some(z)) => Some(z),
            };
            if state.is_none() || (rhythm, zone) != (stored_rhythm, stored_zone) {
                changes.push((update.newsletter_id, rhythm, zone));
            }
        }
        let consent = self.consent(ConsentSource::Preferences, visitor);
        let changed = self.store.set_subscriptions(reader.subscriber_id, &wanted, &consent).await?;
        for newsletter in changed.unsubscribed.iter().filter_map(|id| self.catalog.by_id(*id)) {
            self.metrics.unsubscribed(&newsletter.slug, ConsentSource::Preferences);
        }
        for (newsletter_id, rhythm, zone) in changes {
            self.store
                .set_rhythm(reader.subscriber_id, newsletter_id, rhythm.map(Rhythm::as_str), zone.map(|z| z.name()))
                .await?;
            tracing::info!(newsletter_id, rhythm = ?rhythm, zone = zone.map(|z| z.name()), "rhythm changed");
        }
        self.preferences(token).await
    }

    /// Whether `token` is one of ours for `purpose`, from a test copy
    /// (`issue send --test-to`, a preview): it names no reader.
    pub fn is_test_copy(&self, token: &str, purpose: LinkPurpose) -> bool {
        self.links
            .keys()
            .verify(token, purpose)
            .is_some_and(|claim| claim.subscriber == crate::domain::LinkSubject::Sealed(LinkRef::TEST_COPY))
    }

    /// The reader a signed link names, if the link is ours, for `purpose`,
    /// and its subscriber still exists: an erased reader's links die with
    /// the row, and never reach whoever is stored after them.
    async fn reader(&self, token: &str, purpose: LinkPurpose) -> Result<Option<LinkedReader>, SignupError> {
        let Some(claim) = self.links.keys().verify(token, purpose) else {
            return Ok(None);
        };
        Ok(self.store.linked_subscriber(claim.subscriber).await?.map(|link_ref| LinkedReader {
            subscriber_id: link_ref.subscriber_id,
            link_ref,
            newsletter_id: claim.newsletter_id,
        }))
    }

    fn consent(&self, source: ConsentSource, visitor: &Visitor) -> Consent {
        Consent {
            source,
            ip: visitor.ip.map(|ip| ip.to_string()),
            user_agent: visitor.user_agent.as_ref().map(|ua| ua.chars().take(512).collect()),
            at: self.clock.now(),
        }
    }
}
