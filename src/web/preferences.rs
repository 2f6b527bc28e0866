//! The preferences page behind the signed link in every mail: which
//! newsletters the reader gets and, on those that offer rhythms, how often
//! and in which zone. GET only shows; the form POSTs, and a field that is
//! wrong is shown next to itself with nothing changed.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::client::ClientIp;
use super::error::PageError;
use super::pages::{LinkToken, RhythmOption, parse_rhythm, parse_zone, render, test_copy, visitor};
use crate::domain::{LinkPurpose, SubscriptionStatus};
use crate::signup::{Preferences, RhythmUpdate, SignupError};

/// A confirmed rhythm newsletter's part of a row: what the reader has, and the fields to change it.
struct RhythmRow {
    description: String,
    /// Whether both rhythm and zone are the newsletter's defaults.
    usual: bool,
    options: Vec<RhythmOption>,
    picked: String,
    rhythm_error: Option<String>,
    zone: String,
    newsletter_zone: &'static str,
    zone_error: Option<String>,
}

struct PreferenceRow {
    slug: String,
    name: String,
    description: String,
    confirmed: bool,
    state: &'static str,
    unsubscribe_url: String,
    rhythm: Option<RhythmRow>,
}

#[derive(Template)]
#[template(path = "preferences.html")]
struct PreferencesPage {
    address: String,
    rows: Vec<PreferenceRow>,
    saved: bool,
    refused: bool,
}

/// What a refused POST sent and what was wrong with it, by newsletter slug.
#[derive(Default)]
struct Refusal {
    rhythm: HashMap<String, (String, Option<String>)>,
    zone: HashMap<String, (String, Option<String>)>,
}

impl Refusal {
    fn is_empty(&self) -> bool {
        self.rhythm.values().chain(self.zone.values()).all(|(_, error)| error.is_none())
    }
}

fn preferences_view(preferences: Preferences, saved: bool, refusal: Option<Refusal>) -> Response {
    let refused = refusal.is_some();
    let mut refusal = refusal.unwrap_or_default();
    let rows = preferences
        .newsletters
        .into_iter()
        .map(|p| {
            let slug = p.newsletter.slug.to_string();
            let confirmed = p.status == Some(SubscriptionStatus::Confirmed);
            let rhythm = p.rhythm.filter(|_| confirmed).map(|r| {
                let (picked, rhythm_error) =
                    refusal.rhythm.remove(&slug).unwrap_or_else(|| (r.rhythm.as_str().to_owned(), None));
                let (zone, zone_error) = refusal.zone.remove(&slug).unwrap_or_else(|| (r.zone.name().to_owned(), None));
                RhythmRow {
                    description: r.describe(),
                    usual: !r.own_rhythm && !r.own_zone,
                    options: r.offer.rhythms.iter().copied().map(RhythmOption::of).collect(),
                    picked,
                    rhythm_error,
                    zone,
                    newsletter_zone: r.offer.zone.name(),
                    zone_error,
                }
            });
            PreferenceRow {
                slug,
                name: p.newsletter.name,
                description: p.newsletter.description,
                confirmed,
                state: match p.status {
                    Some(SubscriptionStatus::Confirmed) => "Subscribed",
                    Some(SubscriptionStatus::Pending) => "Waiting for your confirmation",
                    Some(SubscriptionStatus::Unsubscribed) => "Unsubscribed",
                    None => "Not subscribed",
                },
                unsubscribe_url: p.unsubscribe_url,
                rhythm,
            }
        })
        .collect();
    let page = render(&PreferencesPage { address: preferences.address, rows, saved, refused });
    if refused { (StatusCode::UNPROCESSABLE_ENTITY, page).into_response() } else { page }
}

pub async fn preferences_page(
    State(state): State<AppState>,
    LinkToken(token): LinkToken,
) -> Result<Response, PageError> {
    if let Some(page) = test_copy(&state, &token, LinkPurpose::Preferences) {
        return Ok(page);
    }
    Ok(match state.signup.preferences(&token).await? {
        Some(preferences) => preferences_view(preferences, false, None),
        None => PageError::not_found().into_response(),
    })
}

/// The form as sent: `newsletter` (one per ticked box), and per rhythm
/// newsletter `rhythm-{slug}` and `timezone-{slug}`.
type PreferencesForm = Vec<(String, String)>;

pub async fn update_preferences(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    LinkToken(token): LinkToken,
    form: Result<axum_extra::extract::Form<PreferencesForm>, axum_extra::extract::FormRejection>,
) -> Result<Response, PageError> {
    if let Some(page) = test_copy(&state, &token, LinkPurpose::Preferences) {
        return Ok(page);
    }
    let fields = match form {
        Ok(axum_extra::extract::Form(fields)) => fields,
        // A bad link is the clearer answer, whatever the body.
        Err(_) if state.signup.preferences(&token).await?.is_none() => {
            return Err(PageError::not_found());
        }
        Err(e) => return Err(PageError::rejected(e.status(), e.body_text())),
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let wanted: Vec<String> = fields.iter().filter(|(k, _)| k == "newsletter").map(|(_, v)| v.clone()).collect();

    let mut updates = vec![];
    let mut refusal = Refusal::default();
    for newsletter in state.signup.catalog().all() {
        if state.signup.offers().of(newsletter.id).is_none() {
            continue;
        }
        let slug = newsletter.slug.to_string();
        let (rhythm_sent, zone_sent) = (field(&format!("rhythm-{slug}")), field(&format!("timezone-{slug}")));
        if rhythm_sent.is_none() && zone_sent.is_none() {
            continue;
        }
        let rhythm = parse_rhythm(rhythm_sent);
        let zone = zone_sent.map(|z| parse_zone(Some(z))).transpose();
        let rhythm_error = rhythm.as_ref().err().map(ToString::to_string);
        let zone_error = zone.as_ref().err().map(ToString::to_string);
        if let Some(sent) = rhythm_sent {
            refusal.rhythm.insert(slug.clone(), (sent.to_owned(), rhythm_error));
        }
        if let Some(sent) = zone_sent {
            refusal.zone.insert(slug.clone(), (sent.to_owned(), zone_error));
        }
        if let (Ok(rhythm), Ok(zone)) = (rhythm, zone) {
            updates.push(RhythmUpdate { newsletter_id: newsletter.id, rhythm, zone });
        }
    }
    if !refusal.is_empty() {
        return Ok(match state.signup.preferences(&token).await? {
            Some(preferences) => preferences_view(preferences, false, Some(refusal)),
            None => PageError::not_found().into_response(),
        });
    }
    match state.signup.update_preferences(&token, &wanted, &updates, &visitor(ip, &headers)).await {
        Ok(Some(preferences)) => Ok(preferences_view(preferences, true, None)),
        Ok(None) => Err(PageError::not_found()),
        Err(e) => {
            let SignupError::RhythmNotOffered { slug, .. } = &e else {
                return Err(e.into());
            };
            refusal.rhythm.entry(slug.clone()).or_default().1 = Some(e.to_string());
            Ok(match state.signup.preferences(&token).await? {
                Some(preferences) => preferences_view(preferences, false, Some(refusal)),
                None => PageError::not_found().into_response(),
            })
        }
    }
}
