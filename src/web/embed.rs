//! Signup boxes on other sites' pages: the small page a site frames
//! (`/embed/{slug}`, `/embed?newsletters=a,b`), the one script that makes a
//! pasted form answer in place (`/embed.js`), and the snippets
//! `bulletin newsletters snippet` prints.
//!
//! Every page of ours forbids framing (`frame-ancestors 'none'`) but the
//! boxes and their answers, which only `server.allowed_origins` may frame:
//! a button on our pages that changes state must not be clickjacked.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::PageError;
use super::frames::{self, FramedBox};
use super::pages::{RhythmField, render};
use crate::domain::{Newsletter, NewsletterSlug};
use crate::signup::RhythmOffer;

/// What a box says once the signup went through, in place of the form.
pub const THANKS: &str = "Thank you for signing up for this newsletter. We've sent you a confirmation email.";
/// True for every accepted-looking signup, also when the per-address cap held
/// the mail back (a confirmation went out minutes ago), and says nothing of
/// whether the address is subscribed.
pub const NO_RESEND: &str =
    "If it hasn't come within a few minutes, look in your spam folder: signing up again won't send another right away.";
/// What a reader whose form came back faster than a person types is asked to do.
pub const PRESS_AGAIN: &str = "Please press Subscribe once more to finish signing up.";

/// The script, served as written: small enough that minifying buys little (README, "Signup boxes").
const SCRIPT: &str = include_str!("embed.js");

/// Our pages' Content-Security-Policy with `frame_ancestors`: our own scripts
/// and inline styles only, forms and requests to us only.
pub fn content_security_policy(frame_ancestors: &str) -> String {
    policy("'self'", frame_ancestors)
}

fn policy(script_src: &str, frame_ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
    )
}

/// The policy of the boxes: framed by us and the configured sites only, and
/// of inline scripts only the one that tells the framing page the box's height.
pub fn box_policy(allowed_origins: &[HeaderValue]) -> HeaderValue {
    let mut ancestors = String::from("'self'");
    for origin in allowed_origins.iter().filter_map(|o| o.to_str().ok()) {
        ancestors.push(' ');
        ancestors.push_str(origin);
    }
    let scripts = format!("'self' {}", frames::sizing_source());
    HeaderValue::try_from(policy(&scripts, &ancestors)).expect("origins are checked at load")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    #[default]
    Light,
    Dark,
}

impl Theme {
    /// Anything but `dark` is the light theme: a typo still shows a box.
    pub fn parse(raw: &str) -> Self {
        if raw.eq_ignore_ascii_case("dark") { Self::Dark } else { Self::Light }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }
}

/// A checkbox of a box that offers several newsletters.
pub struct Choice {
    pub slug: String,
    pub name: String,
    pub checked: bool,
}

/// One signup form as `macros.html`'s `signup_box` draws it.
pub struct SignupBox {
    /// The `data-bulletin` value: the slugs the box is for, comma-separated.
    pub slugs: String,
    /// Prefix of the element ids, unique on a page of ours that has several
    /// boxes. `None` in a pasted snippet: a site may paste it twice, so it
    /// carries no ids and `embed.js` gives each copy its own.
    pub id: Option<String>,
    pub action: String,
    /// Who the box subscribes to, for screen readers: "Morning Briefing".
    pub subject: String,
    /// Checkboxes when the box offers several newsletters.
    pub choices: Vec<Choice>,
    pub hidden: Vec<(&'static str, String)>,
    /// A `<select>` of rhythms when the box's newsletters offer them.
    pub(super) rhythm: Option<RhythmField>,
    pub email: String,
    pub zone: String,
    pub error: Option<&'static str>,
    pub choice_error: Option<&'static str>,
    /// Asking the reader to press once more: the button takes the focus.
    pub again: bool,
}

impl SignupBox {
    /// A box for `newsletters` posting to `public_url`: one newsletter as a
    /// hidden field, several as checkboxes.
    pub fn new(public_url: &str, newsletters: &[(String, String)]) -> Self {
        let slugs: Vec<&str> = newsletters.iter().map(|(slug, _)| slug.as_str()).collect();
        let (subject, choices, hidden) = match newsletters {
            [(slug, name)] => (name.clone(), vec![], vec![("newsletter", slug.clone())]),
            _ => (
                "the newsletters you choose".to_owned(),
                newsletters
                    .iter()
                    .map(|(slug, name)| Choice { slug: slug.clone(), name: name.clone(), checked: false })
                    .collect(),
                vec![],
            ),
        };
        Self {
            slugs: slugs.join(","),
            id: Some(format!("bulletin-{}", slugs.join("-"))),
            action: format!("{public_url}/subscribe"),
            subject,
            choices,
            hidden,
            rhythm: None,
            email: String::new(),
            zone: String::new(),
            error: None,
            choice_error: None,
            again: false,
        }
    }

    /// Ticks the boxes of `picked` (a refused or repeated submission).
    pub fn pick(&mut self, picked: &[String]) {
        for choice in &mut self.choices {
            choice.checked = picked.contains(&choice.slug);
        }
    }
}

/// The page a site frames, and every answer to a form posted from it.
#[derive(Template)]
#[template(path = "embed.html")]
struct EmbedPage {
    theme: &'static str,
    /// The sites that may frame the box, space-separated: the only ones told its height.
    parents: String,
    /// The inline script that tells them ([`frames::SIZING`]).
    sizing: &'static str,
    heading: String,
    description: String,
    script: String,
    signup: SignupBox,
    thanked: bool,
    thanks: String,
    /// Said above the form: press once more, or why the form was refused.
    notice: Option<String>,
    /// A refusal: the title starts with "Error: ".
    failed: bool,
}

impl EmbedPage {
    fn new(state: &AppState, theme: Theme, signup: SignupBox) -> Self {
        let parents: Vec<&str> = state.allowed_origins.iter().filter_map(|o| o.to_str().ok()).collect();
        Self {
            theme: theme.as_str(),
            parents: parents.join(" "),
            sizing: frames::SIZING,
            heading: String::new(),
            description: String::new(),
            script: format!("{}/embed.js", state.signup.links().public_url()),
            signup,
            thanked: false,
            thanks: format!("{THANKS} {NO_RESEND}"),
            notice: None,
            failed: false,
        }
    }
}

/// The full page asking to press once more, for a form posted from our own page.
#[derive(Template)]
#[template(path = "again.html")]
struct AgainPage {
    signup: SignupBox,
    press_again: &'static str,
}

/// The box page for `newsletters`; `None` when it names none.
fn embed_page(state: &AppState, newsletters: &[&Newsletter], theme: Theme) -> Option<EmbedPage> {
    if newsletters.is_empty() {
        return None;
    }
    let pairs: Vec<(String, String)> = newsletters.iter().map(|n| (n.slug.to_string(), n.name.clone())).collect();
    let public_url = state.signup.links().public_url();
    let mut signup = SignupBox::new(public_url, &pairs);
    signup.action = format!("{}?{}", signup.action, FramedBox::query(&signup.slugs, theme));
    signup.hidden.push(("embed", theme.as_str().to_owned()));
    signup.hidden.push(("form", signup.slugs.clone()));
    signup.hidden.push(("ts", super::pages::fresh_stamp(state)));
    signup.rhythm = box_rhythm(state, newsletters);
    let (heading, description) = match newsletters {
        [one] => (one.name.clone(), one.description.clone()),
        _ => ("Our newsletters".to_owned(), String::new()),
    };
    Some(EmbedPage { heading, description, ..EmbedPage::new(state, theme, signup) })
}

/// The rhythm choice of a box for `newsletters`, as our own page offers it.
fn box_rhythm(state: &AppState, newsletters: &[&Newsletter]) -> Option<RhythmField> {
    let offers = state.signup.offers();
    match newsletters {
        [one] => offers.of(one.id).map(RhythmField::single),
        _ => RhythmField::several(&newsletters.iter().filter_map(|n| Some((*n, offers.of(n.id)?))).collect::<Vec<_>>()),
    }
}

/// The newsletters of a comma-separated slug list; `None` if one is not ours.
fn named<'c>(state: &'c AppState, slugs: &str) -> Option<Vec<&'c Newsletter>> {
    let catalog = state.signup.catalog();
    slugs.split(',').map(|slug| catalog.by_slug(&NewsletterSlug::parse(slug.trim()).ok()?)).collect()
}

/// Renders a box page with the framing policy that lets the allowed sites show it.
fn framed(state: &AppState, status: StatusCode, page: &EmbedPage) -> Response {
    let mut response = (status, render(page)).into_response();
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, state.box_policy.clone());
    response
}

/// What a box's form sent, to draw the box again.
pub struct Sent<'a> {
    /// The box's own newsletters (its `form` field).
    pub boxed: &'a str,
    pub picked: &'a [String],
    pub rhythm: &'a str,
    pub email: &'a str,
    pub zone: &'a str,
    pub error: Option<&'static str>,
    pub choice_error: Option<&'static str>,
    pub again: bool,
}

/// The box again as sent; `None` when it names a newsletter that is not ours (any more).
fn sent_box(state: &AppState, theme: Theme, sent: &Sent<'_>) -> Option<EmbedPage> {
    let mut page = named(state, sent.boxed).and_then(|found| embed_page(state, &found, theme))?;
    let signup = &mut page.signup;
    signup.pick(sent.picked);
    if let Some(rhythm) = signup.rhythm.as_mut() {
        rhythm.pick(sent.rhythm);
    }
    signup.email = sent.email.to_owned();
    signup.zone = sent.zone.to_owned();
    signup.error = sent.error;
    signup.choice_error = sent.choice_error;
    signup.again = sent.again;
    page.failed = sent.error.is_some() || sent.choice_error.is_some();
    page.notice = sent.again.then(|| PRESS_AGAIN.to_owned());
    Some(page)
}

/// The answer to a form posted from a box: the box again with what was
/// sent and what was wrong (422), or asking to press once more (200).
pub fn box_again(state: &AppState, theme: Theme, sent: &Sent<'_>) -> Response {
    let Some(page) = sent_box(state, theme, sent) else {
        return not_ours();
    };
    framed(state, if page.failed { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK }, &page)
}

/// A refused box form (rate limited, too large, too slow, the server busy or
/// failing, the form unreadable) answered with the box, as sent, with the
/// refusal's message above it and its status and Retry-After: a site can
/// frame a box, never an error page.
pub fn box_refused(state: &AppState, theme: Theme, sent: &Sent<'_>, error: PageError) -> Response {
    let Some(mut page) = sent_box(state, theme, sent) else {
        return error.into_response();
    };
    page.notice = Some(error.message.clone());
    page.failed = true;
    let mut response = framed(state, error.status, &page);
    if let Some(secs) = error.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The thank-you in place of a box.
pub fn box_thanks(state: &AppState, theme: Theme) -> Response {
    let page = EmbedPage { thanked: true, ..EmbedPage::new(state, theme, SignupBox::new("", &[])) };
    framed(state, StatusCode::OK, &page)
}

/// Our own page asking to press once more: the newsletters as chosen, the
/// rest of the form as sent (`hidden`, the `zone` in the box's own field, so
/// the script keeps it), and a fresh stamp.
pub fn page_again(
    state: &AppState,
    chosen: &[String],
    hidden: Vec<(&'static str, String)>,
    email: &str,
    zone: &str,
) -> Response {
    let found = named(state, &chosen.join(",")).unwrap_or_default();
    let mut signup = SignupBox::new("", &[]);
    signup.action = "/subscribe".to_owned();
    signup.subject = match found.as_slice() {
        [one] => one.name.clone(),
        _ => "the newsletters you chose".to_owned(),
    };
    signup.hidden = found.iter().map(|n| ("newsletter", n.slug.to_string())).collect();
    signup.hidden.extend(hidden);
    signup.hidden.push(("ts", super::pages::fresh_stamp(state)));
    signup.email = email.to_owned();
    signup.zone = zone.to_owned();
    signup.again = true;
    render(&AgainPage { signup, press_again: PRESS_AGAIN })
}

fn not_ours() -> Response {
    PageError::new(StatusCode::NOT_FOUND, "Newsletter not found", "There is no such newsletter.").into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EmbedQuery {
    theme: String,
    newsletters: String,
}

/// A query string that does not parse is no query: the light box.
type EmbedParams = Result<Query<EmbedQuery>, axum::extract::rejection::QueryRejection>;

fn query(raw: EmbedParams) -> EmbedQuery {
    raw.map(|Query(q)| q).unwrap_or_default()
}

/// `GET /embed/{slug}`: one newsletter's box.
pub async fn embed_one(
    State(state): State<AppState>,
    slug: Result<Path<String>, axum::extract::rejection::PathRejection>,
    raw: EmbedParams,
) -> Response {
    // A path that is not even UTF-8 names no newsletter either.
    let Ok(Path(slug)) = slug else {
        return not_ours();
    };
    show(&state, &slug, &query(raw).theme)
}

/// `GET /embed?newsletters=a,b`: a box for several; none named: all of them.
pub async fn embed_several(State(state): State<AppState>, raw: EmbedParams) -> Response {
    let q = query(raw);
    let slugs = if q.newsletters.trim().is_empty() {
        state.signup.catalog().all().iter().map(|n| n.slug.to_string()).collect::<Vec<_>>().join(",")
    } else {
        q.newsletters
    };
    show(&state, &slugs, &q.theme)
}

fn show(state: &AppState, slugs: &str, theme: &str) -> Response {
    match named(state, slugs).and_then(|found| embed_page(state, &found, Theme::parse(theme))) {
        Some(page) => framed(state, StatusCode::OK, &page),
        None => not_ours(),
    }
}

/// `GET /embed.js`: cached for an hour, so a site's readers fetch it once.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        SCRIPT,
    )
        .into_response()
}

/// Which snippet `bulletin newsletters snippet` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnippetKind {
    Iframe,
    Script,
}

#[derive(Template)]
#[template(path = "snippet.html")]
struct Snippet<'a> {
    iframe: bool,
    public_url: &'a str,
    slug: &'a str,
    signup: SignupBox,
    /// The frame's height where the site runs no script.
    height: u32,
    /// The script that sizes the frame from the box's messages.
    listener: String,
}

/// The HTML a site pastes for one newsletter's box, with its rhythm choice
/// when it offers rhythms.
pub fn snippet(
    public_url: &str,
    slug: &NewsletterSlug,
    name: &str,
    offer: Option<&RhythmOffer>,
    kind: SnippetKind,
) -> Result<String, askama::Error> {
    let public_url = public_url.trim_end_matches('/');
    let signup = SignupBox {
        id: None,
        rhythm: offer.map(RhythmField::single),
        ..SignupBox::new(public_url, &[(slug.to_string(), name.to_owned())])
    };
    // `public_url` was checked at load: http(s) with a host, so its origin is a plain ASCII string.
    let origin = url::Url::parse(public_url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    Snippet {
        iframe: kind == SnippetKind::Iframe,
        public_url,
        slug: slug.as_str(),
        signup,
        height: if offer.is_some() { frames::RHYTHM_FRAME_HEIGHT } else { frames::FRAME_HEIGHT },
        listener: frames::listener(&origin),
    }
    .render()
}
