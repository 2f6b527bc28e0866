//! The reader's HTML pages: the signup forms, and the pages behind every
//! emailed link. GET and HEAD only ever show; a button POSTs to change.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::client::ClientIp;
use super::embed::{self, Sent, Theme};
use super::error::PageError;
use crate::domain::{ConsentSource, EmailAddress, LinkPurpose, Newsletter, Rhythm, RhythmError, Zone, ZoneError};
use crate::metrics::SignupOutcome;
use crate::signup::{ConfirmPreview, Confirmation, RhythmChoice, RhythmOffer, SignupError, Visitor, stamp};

pub const INVALID_EMAIL: &str = "Please enter a correct email address";
const CHOOSE_ONE: &str = "Please choose at least one newsletter";

/// Renders a template, turning a render failure into a logged 500.
pub(super) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError::internal(&e).into_response(),
    }
}

/// A simple page: a title, some lines, maybe a list, a button or a link.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    title: String,
    lines: Vec<String>,
    items: Vec<String>,
    button: Option<&'static str>,
    link: Option<(String, String)>,
}

impl MessagePage {
    pub fn new(title: impl Into<String>) -> Self {
        Self { title: title.into(), lines: vec![], items: vec![], button: None, link: None }
    }
    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }
    pub fn items(mut self, items: Vec<String>) -> Self {
        self.items = items;
        self
    }
    pub fn button(mut self, label: &'static str) -> Self {
        self.button = Some(label);
        self
    }
    pub fn link(mut self, href: impl Into<String>, text: impl Into<String>) -> Self {
        self.link = Some((href.into(), text.into()));
        self
    }
}

impl IntoResponse for MessagePage {
    fn into_response(self) -> Response {
        render(&self)
    }
}

#[derive(Default)]
struct FieldState {
    value: String,
    error: Option<&'static str>,
}

/// One radio button of a rhythm choice.
pub(super) struct RhythmOption {
    /// What the form sends: a rhythm, or "" for each newsletter's default.
    pub value: &'static str,
    /// What the button's id ends with.
    pub key: &'static str,
    pub label: &'static str,
}

impl RhythmOption {
    pub fn of(rhythm: Rhythm) -> Self {
        Self { value: rhythm.as_str(), key: rhythm.as_str(), label: rhythm.label() }
    }
}

/// The rhythm choice of a signup form whose newsletters offer rhythms:
/// radio buttons on our page, a labelled `<select>` in a box.
pub(super) struct RhythmField {
    pub legend: String,
    pub options: Vec<RhythmOption>,
    pub picked: String,
    /// When digests arrive, if the form's newsletters agree on it.
    pub timing: Option<String>,
}

impl RhythmField {
    pub fn single(offer: &RhythmOffer) -> Self {
        Self {
            legend: "How often would you like to hear from us?".to_owned(),
            options: offer.rhythms.iter().copied().map(RhythmOption::of).collect(),
            picked: offer.default_rhythm().as_str().to_owned(),
            timing: offer.timing(),
        }
    }

    /// One choice for the form that takes several newsletters, naming those
    /// it applies to: their rhythms when they all offer the same, else every
    /// rhythm any offers, after "each newsletter's usual".
    pub fn several(offers: &[(&Newsletter, &RhythmOffer)]) -> Option<Self> {
        let (_, first) = *offers.first()?;
        let names: Vec<&str> = offers.iter().map(|(n, _)| n.name.as_str()).collect();
        let legend = match names.split_last() {
            Some((last, [])) => format!("How often would you like {last}?"),
            Some((last, rest)) => format!("How often would you like {} and {last}?", rest.join(", ")),
            None => return None,
        };
        let same = |(_, o): &(&Newsletter, &RhythmOffer)| {
            o.rhythms == first.rhythms && o.send_hour == first.send_hour && o.weekly_day == first.weekly_day
        };
        if offers.iter().all(same) {
            return Some(Self { legend, ..Self::single(first) });
        }
        let mut options = vec![RhythmOption { value: "", key: "usual", label: "Each newsletter's usual rhythm" }];
        options
            .extend(Rhythm::ALL.into_iter().filter(|r| offers.iter().any(|(_, o)| o.offers(*r))).map(RhythmOption::of));
        Some(Self { legend, options, picked: String::new(), timing: None })
    }

    /// Picks what a refused or repeated form sent, if it is on offer here.
    pub fn pick(&mut self, sent: &str) {
        if self.options.iter().any(|o| o.value == sent) {
            self.picked = sent.to_owned();
        }
    }
}

/// The rhythm and zone parts of one signup form, with what was sent and what was wrong.
#[derive(Default)]
struct RhythmFields {
    rhythm: Option<RhythmField>,
    rhythm_error: Option<String>,
    /// Filled by the page's script from the browser; shown only when it was wrong.
    zone: String,
    zone_error: Option<String>,
}

struct NewsletterForm {
    slug: String,
    name: String,
    description: String,
    state: FieldState,
    pace: RhythmFields,
}

#[derive(Default)]
struct SeveralForm {
    email: FieldState,
    picked: Vec<String>,
    choice_error: Option<&'static str>,
    pace: RhythmFields,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    /// "Error: …" after a refused form, so a screen reader hears it first.
    title: String,
    newsletters: Vec<NewsletterForm>,
    several: SeveralForm,
    stamp: String,
}

/// Which form on the page a submission came from, and what to show on it.
#[derive(Default)]
struct FormFeedback {
    email_error: Option<&'static str>,
    choice_error: Option<&'static str>,
    rhythm_error: Option<String>,
    zone_error: Option<String>,
}

/// A signed "served now" for a form's time-trap.
pub(super) fn fresh_stamp(state: &AppState) -> String {
    stamp::issue(state.signup.links().keys(), state.signup.clock().now())
}

fn index_page(state: &AppState, sent: Option<(&SubscribeForm, FormFeedback)>) -> IndexPage {
    let signup = &state.signup;
    let stamp = fresh_stamp(state);
    let offers = signup.offers();
    let catalog = signup.catalog().all();
    let mut page = IndexPage {
        title: "Newsletters".to_owned(),
        newsletters: catalog
            .iter()
            .map(|n| NewsletterForm {
                slug: n.slug.to_string(),
                name: n.name.clone(),
                description: n.description.clone(),
                state: FieldState::default(),
                pace: RhythmFields { rhythm: offers.of(n.id).map(RhythmField::single), ..RhythmFields::default() },
            })
            .collect(),
        several: SeveralForm {
            pace: RhythmFields {
                rhythm: RhythmField::several(
                    &catalog.iter().filter_map(|n| Some((n, offers.of(n.id)?))).collect::<Vec<_>>(),
                ),
                ..RhythmFields::default()
            },
            ..SeveralForm::default()
        },
        stamp,
    };
    if let Some((form, f)) = sent {
        let first_error = f.choice_error.or(f.email_error).map(str::to_owned);
        if let Some(error) = first_error.or_else(|| f.rhythm_error.clone()).or_else(|| f.zone_error.clone()) {
            page.title = format!("Error: {error} - Newsletters");
        }
        let field = FieldState { value: form.email.clone(), error: f.email_error };
        let (state, pace) = match page.newsletters.iter_mut().find(|n| n.slug == form.form) {
            Some(n) if f.choice_error.is_none() => (&mut n.state, &mut n.pace),
            _ => {
                page.several.picked = form.newsletter.clone();
                page.several.choice_error = f.choice_error;
                (&mut page.several.email, &mut page.several.pace)
            }
        };
        *state = field;
        if let Some(rhythm) = pace.rhythm.as_mut() {
            rhythm.pick(&form.rhythm);
        }
        pace.rhythm_error = f.rhythm_error;
        pace.zone = form.timezone.clone();
        pace.zone_error = f.zone_error;
    }
    page
}

pub async fn index(State(state): State<AppState>) -> Response {
    render(&index_page(&state, None))
}

#[derive(Debug, Deserialize)]
pub struct SubscribeForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    newsletter: Vec<String>,
    /// The honeypot: people never see it, bots fill it in.
    #[serde(default)]
    website: String,
    /// The signed time the form was served.
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    form: String,
    /// For the newsletters that offer rhythms; empty: each one's default.
    #[serde(default)]
    rhythm: String,
    /// The browser's IANA zone, filled in by the page's script; empty: the newsletter's.
    #[serde(default)]
    timezone: String,
    /// Set by a framed box (its theme): the answer is drawn as a box too.
    #[serde(default)]
    embed: Option<String>,
}

impl SubscribeForm {
    fn theme(&self) -> Option<Theme> {
        self.embed.as_deref().map(Theme::parse)
    }

    /// The box again, as sent, with what was wrong.
    fn in_box(&self, state: &AppState, theme: Theme, feedback: &FormFeedback, again: bool) -> Response {
        // A box offers only the rhythms on offer when it was drawn and fills the zone
        // itself: a refused one is a stale box, not the reader's doing.
        let stale = feedback.rhythm_error.as_ref().or(feedback.zone_error.as_ref()).map(|_| SOMETHING_WRONG);
        let sent =
            Sent { error: feedback.email_error.or(stale), choice_error: feedback.choice_error, again, ..self.sent() };
        embed::box_again(state, theme, &sent)
    }

    /// What the reader sent, to draw the box again with.
    fn sent(&self) -> Sent<'_> {
        Sent {
            boxed: &self.form,
            picked: &self.newsletter,
            email: &self.email,
            rhythm: &self.rhythm,
            zone: &self.timezone,
            error: None,
            choice_error: None,
            again: false,
        }
    }

    /// The box again, as sent, with why the server refused it (busy, failing).
    fn refused_in_box(&self, state: &AppState, theme: Theme, error: PageError) -> Response {
        let sent = self.sent();
        embed::box_refused(state, theme, &sent, error)
    }

    /// Asks to press Subscribe once more, keeping everything that was sent.
    fn press_again(&self, state: &AppState) -> Response {
        match self.theme() {
            Some(theme) => self.in_box(state, theme, &FormFeedback::default(), true),
            None => {
                // The zone is not among these: the box has its own zone field, and a
                // second `timezone` would make the next press unreadable.
                let kept = [("form", &self.form), ("rhythm", &self.rhythm)];
                let hidden = kept.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k, v.clone())).collect();
                embed::page_again(state, &self.newsletter, hidden, &self.email, &self.timezone)
            }
        }
    }
}

const SOMETHING_WRONG: &str = "Something went wrong with this form. Please reload the page and try again.";

/// The one answer to every accepted-looking signup, whatever happened behind it.
fn thank_you() -> Response {
    MessagePage::new("Thank you for signing up")
        .line("Thank you for signing up. We've sent you a confirmation email.")
        .line(super::embed::NO_RESEND)
        .line("Please open it and confirm to start receiving your newsletters.")
        .into_response()
}

/// A submitted rhythm; blank is "the newsletter's default".
pub(super) fn parse_rhythm(raw: Option<&str>) -> Result<Option<Rhythm>, RhythmError> {
    raw.map(str::trim).filter(|r| !r.is_empty()).map(str::parse).transpose()
}

/// A submitted IANA zone; blank is "the newsletter's zone".
pub(super) fn parse_zone(raw: Option<&str>) -> Result<Option<Zone>, ZoneError> {
    raw.map(str::trim).filter(|z| !z.is_empty()).map(Zone::parse).transpose()
}

/// The time-trap and the honeypot come first. A filled honeypot is a bot:
/// it gets the thank-you and nothing happens. A stamp that says "too fast"
/// or "too old" may be a person whose browser filled in the address, or a
/// tab left open overnight: they are asked to press once more on a fresh
/// form, never dropped in silence.
pub async fn subscribe(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    form: Result<axum_extra::extract::Form<SubscribeForm>, axum_extra::extract::FormRejection>,
) -> Result<Response, PageError> {
    let answer = subscribe_form(&state, ip, &headers, form).await;
    let outcome = match &answer {
        Ok((outcome, _)) => *outcome,
        Err(e) => SignupOutcome::of_error(e.status),
    };
    state.metrics.signup(ConsentSource::Form, outcome);
    answer.map(|(_, response)| response)
}

/// The answer to a signup form, and what it was for the metrics (a bot's
/// thank-you looks like anyone's).
async fn subscribe_form(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    form: Result<axum_extra::extract::Form<SubscribeForm>, axum_extra::extract::FormRejection>,
) -> Result<(SignupOutcome, Response), PageError> {
    let axum_extra::extract::Form(form) = form.map_err(|e| PageError::rejected(e.status(), e.body_text()))?;
    match (answer_form(state, ip, headers, &form).await, form.theme()) {
        (Err(e), Some(theme)) => Ok((SignupOutcome::of_error(e.status), form.refused_in_box(state, theme, e))),
        (answer, _) => answer,
    }
}

/// The answer to a signup form that could be read.
async fn answer_form(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    form: &SubscribeForm,
) -> Result<(SignupOutcome, Response), PageError> {
    let theme = form.theme();
    let thanks = || match theme {
        Some(theme) => embed::box_thanks(state, theme),
        None => thank_you(),
    };
    if !form.website.is_empty() {
        tracing::info!("signup dropped by the honeypot");
        return Ok((SignupOutcome::Bot, thanks()));
    }
    let now = state.signup.clock().now();
    let timely = form.ts.as_deref().is_none_or(|ts| {
        stamp::is_human(state.signup.links().keys(), ts, now, state.form_min_secs, state.form_max_age_secs)
    });
    if !timely {
        tracing::info!("signup form sent back too fast or too late; asking to press once more");
        return Ok((SignupOutcome::TimeTrap, form.press_again(state)));
    }
    let again = |feedback: FormFeedback| {
        let page = match theme {
            Some(theme) => form.in_box(state, theme, &feedback, false),
            None => {
                (StatusCode::UNPROCESSABLE_ENTITY, render(&index_page(state, Some((form, feedback))))).into_response()
            }
        };
        Ok((SignupOutcome::Invalid, page))
    };
    let newsletters = match state.signup.resolve(&form.newsletter) {
        Ok(ids) => ids,
        Err(SignupError::NoNewsletter) => {
            return again(FormFeedback { choice_error: Some(CHOOSE_ONE), ..FormFeedback::default() });
        }
        Err(e) => return Err(e.into()),
    };
    let mut feedback = FormFeedback::default();
    let email = EmailAddress::parse(&form.email).map_err(|_| feedback.email_error = Some(INVALID_EMAIL)).ok();
    let rhythm = parse_rhythm(Some(&form.rhythm)).map_err(|e| feedback.rhythm_error = Some(e.to_string())).ok();
    let zone = parse_zone(Some(&form.timezone)).map_err(|e| feedback.zone_error = Some(e.to_string())).ok();
    let requested = match (rhythm, zone) {
        (Some(rhythm), Some(zone)) => match state.signup.requested(&newsletters, RhythmChoice { rhythm, zone }) {
            Ok(requested) => Some(requested),
            Err(e @ SignupError::RhythmNotOffered { .. }) => {
                feedback.rhythm_error = Some(e.to_string());
                None
            }
            Err(e) => return Err(e.into()),
        },
        _ => None,
    };
    let (Some(email), Some(requested)) = (email, requested) else {
        return again(feedback);
    };
    state.signup.subscribe_requested(&email, &requested, ConsentSource::Form, &visitor(ip, headers)).await?;
    Ok((SignupOutcome::Accepted, thanks()))
}

pub fn visitor(ip: std::net::IpAddr, headers: &HeaderMap) -> Visitor {
    Visitor {
        ip: Some(ip),
        user_agent: headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

/// The token in an emailed link's path. A path that cannot even be read
/// (broken UTF-8) is just another link that is not valid.
pub struct LinkToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for LinkToken {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(token) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| PageError::not_found())?;
        Ok(Self(token))
    }
}

const EXPIRED: &str = "This confirmation link has expired. Please sign up again and we will send you a new one.";

pub async fn confirm_page(State(state): State<AppState>, LinkToken(token): LinkToken) -> Result<Response, PageError> {
    Ok(match state.signup.preview_confirmation(&token).await? {
        ConfirmPreview::Ready { newsletters } => MessagePage::new("Confirm your subscription")
            .line("Press the button to confirm your subscription to:")
            .items(newsletters)
            .button("Confirm subscription")
            .into_response(),
        ConfirmPreview::AlreadyConfirmed { preferences_url } => already_confirmed(preferences_url),
        ConfirmPreview::Expired => expired(),
        ConfirmPreview::Invalid => PageError::not_found().into_response(),
    })
}

pub async fn confirm(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    LinkToken(token): LinkToken,
) -> Result<Response, PageError> {
    Ok(match state.signup.confirm(&token, &visitor(ip, &headers)).await? {
        Confirmation::Confirmed { newsletters, preferences_url } => MessagePage::new("Successfully subscribed")
            .line("Successfully subscribed. You will receive:")
            .items(newsletters)
            .link(preferences_url, "Manage your newsletters")
            .into_response(),
        Confirmation::AlreadyConfirmed { preferences_url } => already_confirmed(Some(preferences_url)),
        Confirmation::Expired => expired(),
        Confirmation::Invalid => PageError::not_found().into_response(),
    })
}

fn already_confirmed(preferences_url: Option<String>) -> Response {
    let page = MessagePage::new("Subscription already confirmed")
        .line("You have already confirmed this subscription. There is nothing more to do.");
    match preferences_url {
        Some(url) => page.link(url, "Manage your newsletters"),
        None => page,
    }
    .into_response()
}

fn expired() -> Response {
    let page = MessagePage::new("Link expired").line(EXPIRED).link("/", "Sign up again");
    (StatusCode::GONE, page).into_response()
}

/// The page behind a test copy's links, on GET and POST alike: they name no
/// reader, so they say what they would do and change nothing.
pub(super) fn test_copy(state: &AppState, token: &str, purpose: LinkPurpose) -> Option<Response> {
    state.signup.is_test_copy(token, purpose).then(|| {
        let what = match purpose {
            LinkPurpose::Unsubscribe => "unsubscribes the reader from the newsletter",
            _ => "opens the reader's preferences page",
        };
        MessagePage::new("This is a test copy")
            .line(format!("This link comes from a test copy of an issue. In your readers' copies it {what}."))
            .line("Nothing has changed.")
            .into_response()
    })
}

pub async fn unsubscribe_page(
    State(state): State<AppState>,
    LinkToken(token): LinkToken,
) -> Result<Response, PageError> {
    if let Some(page) = test_copy(&state, &token, LinkPurpose::Unsubscribe) {
        return Ok(page);
    }
    Ok(match state.signup.unsubscribe_target(&token).await? {
        Some((newsletter, true)) => MessagePage::new(format!("Unsubscribe from {}", newsletter.name))
            .line(format!("Press the button to stop receiving {}.", newsletter.name))
            .button("Unsubscribe")
            .into_response(),
        Some((newsletter, false)) => MessagePage::new("Not subscribed")
            .line(format!("You are not subscribed to {}.", newsletter.name))
            .link(state.signup.links().public_url().to_owned() + "/", "See our newsletters")
            .into_response(),
        None => PageError::not_found().into_response(),
    })
}

/// Unsubscribes on any POST: the page's button, or a mail client's RFC 8058
/// one-click request (no cookies, no Origin), answered 200 with no redirect.
pub async fn unsubscribe(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    LinkToken(token): LinkToken,
    body: Bytes,
) -> Result<Response, PageError> {
    if let Some(page) = test_copy(&state, &token, LinkPurpose::Unsubscribe) {
        return Ok(page);
    }
    let one_click = body.windows(9).any(|w| w == b"One-Click");
    let source = if one_click { ConsentSource::OneClick } else { ConsentSource::UnsubscribePage };
    Ok(match state.signup.unsubscribe(&token, source, &visitor(ip, &headers)).await? {
        Some((newsletter, preferences_url)) => MessagePage::new("Unsubscribed")
            .line(format!("You have been unsubscribed from {}. You will not receive it any more.", newsletter.name))
            .line("Changed your mind, or want to leave the others too? Your preferences page has them all.")
            .link(preferences_url, "Manage your newsletters")
            .into_response(),
        None => PageError::not_found().into_response(),
    })
}

pub async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address.")
}
