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
use super::error::PageError;
use crate::domain::{ConsentSource, EmailAddress, SubscriptionStatus};
use crate::signup::{ConfirmPreview, Confirmation, Preference, SignupError, Visitor, stamp};

pub const INVALID_EMAIL: &str = "Please enter a correct email address";
const CHOOSE_ONE: &str = "Please choose at least one newsletter";

/// Renders a template, turning a render failure into a logged 500.
fn render(template: &impl Template) -> Response {
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

struct NewsletterForm {
    slug: String,
    name: String,
    description: String,
    state: FieldState,
}

#[derive(Default)]
struct SeveralForm {
    email: FieldState,
    picked: Vec<String>,
    choice_error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    newsletters: Vec<NewsletterForm>,
    several: SeveralForm,
    stamp: String,
}

/// Which form on the page a submission came from, and what to show on it.
struct FormFeedback<'a> {
    form: &'a str,
    value: &'a str,
    picked: &'a [String],
    email_error: Option<&'static str>,
    choice_error: Option<&'static str>,
}

fn index_page(state: &AppState, feedback: Option<FormFeedback<'_>>) -> IndexPage {
    let signup = &state.signup;
    let stamp = stamp::issue(signup.links().keys(), signup.clock().now());
    let mut page = IndexPage {
        newsletters: signup
            .catalog()
            .all()
            .iter()
            .map(|n| NewsletterForm {
                slug: n.slug.to_string(),
                name: n.name.clone(),
                description: n.description.clone(),
                state: FieldState::default(),
            })
            .collect(),
        several: SeveralForm::default(),
        stamp,
    };
    if let Some(f) = feedback {
        let field = FieldState { value: f.value.to_owned(), error: f.email_error };
        match page.newsletters.iter_mut().find(|n| n.slug == f.form) {
            Some(n) if f.choice_error.is_none() => n.state = field,
            _ => page.several = SeveralForm { email: field, picked: f.picked.to_vec(), choice_error: f.choice_error },
        }
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
}

/// The one answer to every accepted-looking signup, whatever happened behind it.
fn thank_you() -> Response {
    MessagePage::new("Thank you for signing up")
        .line("Thank you for signing up. We've sent you a confirmation email.")
        .line("Please open it and confirm to start receiving your newsletters.")
        .into_response()
}

pub async fn subscribe(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    form: Result<axum_extra::extract::Form<SubscribeForm>, axum_extra::extract::FormRejection>,
) -> Result<Response, PageError> {
    let axum_extra::extract::Form(form) = form.map_err(|e| PageError::rejected(e.status(), e.body_text()))?;
    let now = state.signup.clock().now();
    let looks_human = form.website.is_empty()
        && form.ts.as_deref().is_none_or(|ts| {
            stamp::is_human(state.signup.links().keys(), ts, now, state.form_min_secs, state.form_max_age_secs)
        });
    if !looks_human {
        tracing::info!("signup dropped by the bot trap");
        return Ok(thank_you());
    }
    let feedback = |email_error, choice_error| FormFeedback {
        form: &form.form,
        value: &form.email,
        picked: &form.newsletter,
        email_error,
        choice_error,
    };
    let newsletters = match state.signup.resolve(&form.newsletter) {
        Ok(ids) => ids,
        Err(SignupError::NoNewsletter) => {
            let page = index_page(&state, Some(feedback(None, Some(CHOOSE_ONE))));
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let Ok(email) = EmailAddress::parse(&form.email) else {
        let page = index_page(&state, Some(feedback(Some(INVALID_EMAIL), None)));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    };
    state.signup.subscribe(&email, &newsletters, ConsentSource::Form, &visitor(ip, &headers)).await?;
    Ok(thank_you())
}

pub fn visitor(ip: std::net::IpAddr, headers: &HeaderMap) -> Visitor {
    Visitor {
        ip: Some(ip),
        user_agent: headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

/// The token in an emailed link's path. A path that cannot even be read
/// (broken UTF-8) is just another link that is not valid.
pub struct LinkToken(String);

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
        ConfirmPreview::AlreadyConfirmed => already_confirmed(None),
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

pub async fn unsubscribe_page(
    State(state): State<AppState>,
    LinkToken(token): LinkToken,
) -> Result<Response, PageError> {
    Ok(match state.signup.unsubscribe_target(&token).await? {
        Some((newsletter, true)) => MessagePage::new(format!("Unsubscribe from {}", newsletter.name))
            .line(format!("Press the button to stop receiving {}.", newsletter.name))
            .button("Unsubscribe")
            .into_response(),
        Some((newsletter, false)) => MessagePage::new("Not subscribed")
            .line(format!("You are not subscribed to {}.", newsletter.name))
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
    let one_click = body.windows(9).any(|w| w == b"One-Click");
    let source = if one_click { ConsentSource::OneClick } else { ConsentSource::UnsubscribePage };
    Ok(match state.signup.unsubscribe(&token, source, &visitor(ip, &headers)).await? {
        Some(newsletter) => MessagePage::new("Unsubscribed")
            .line(format!("You have been unsubscribed from {}. You will not receive it any more.", newsletter.name))
            .into_response(),
        None => PageError::not_found().into_response(),
    })
}

struct PreferenceRow {
    slug: String,
    name: String,
    description: String,
    confirmed: bool,
    state: &'static str,
    unsubscribe_url: String,
}

#[derive(Template)]
#[template(path = "preferences.html")]
struct PreferencesPage {
    rows: Vec<PreferenceRow>,
    saved: bool,
}

fn preferences_view(preferences: Vec<Preference>, saved: bool) -> Response {
    let rows = preferences
        .into_iter()
        .map(|p| PreferenceRow {
            slug: p.newsletter.slug.to_string(),
            name: p.newsletter.name,
            description: p.newsletter.description,
            confirmed: p.status == Some(SubscriptionStatus::Confirmed),
            state: match p.status {
                Some(SubscriptionStatus::Confirmed) => "Subscribed",
                Some(SubscriptionStatus::Pending) => "Waiting for your confirmation",
                Some(SubscriptionStatus::Unsubscribed) => "Unsubscribed",
                None => "Not subscribed",
            },
            unsubscribe_url: p.unsubscribe_url,
        })
        .collect();
    render(&PreferencesPage { rows, saved })
}

pub async fn preferences_page(
    State(state): State<AppState>,
    LinkToken(token): LinkToken,
) -> Result<Response, PageError> {
    Ok(match state.signup.preferences(&token).await? {
        Some(preferences) => preferences_view(preferences, false),
        None => PageError::not_found().into_response(),
    })
}

#[derive(Debug, Deserialize)]
pub struct PreferencesForm {
    #[serde(default)]
    newsletter: Vec<String>,
}

pub async fn update_preferences(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    LinkToken(token): LinkToken,
    form: Result<axum_extra::extract::Form<PreferencesForm>, axum_extra::extract::FormRejection>,
) -> Result<Response, PageError> {
    let form = match form {
        Ok(axum_extra::extract::Form(form)) => form,
        // A bad link is the clearer answer, whatever the body.
        Err(_) if state.signup.preferences(&token).await?.is_none() => {
            return Err(PageError::not_found());
        }
        Err(e) => return Err(PageError::rejected(e.status(), e.body_text())),
    };
    Ok(match state.signup.update_preferences(&token, &form.newsletter, &visitor(ip, &headers)).await? {
        Some(preferences) => preferences_view(preferences, true),
        None => PageError::not_found().into_response(),
    })
}

pub async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address.")
}
