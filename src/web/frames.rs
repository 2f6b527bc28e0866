//! Framed boxes on other sites: how tall they are, and how every answer to
//! one stays a box.
//!
//! A box page carries an inline script (allowed by its hash in the page's
//! Content-Security-Policy) that posts the box's height to the page framing
//! it; the `--iframe` snippet carries the listener that applies it, after
//! checking that the message comes from our origin and from its own frame.
//! Without script on the site, the frame keeps [`FRAME_HEIGHT`].
//!
//! A box's form posts to `/subscribe?box=SLUGS&theme=THEME`: the address
//! says it is a box before its body is read, so a refusal that comes before
//! the handler (the per-IP limit, a body too large, too slow, or with no room
//! left) is answered with the box, framable by the allowed sites, with the
//! typed address kept wherever the body was read.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::embed::{self, Sent, Theme};
use super::error::PageError;

/// The frame's height where the site runs no script: the tallest state of a
/// seed newsletter's box 320 px wide (393 px: the thank-you in Explaining
/// Ukraine's box, as tests/frames.rs measures it), and a line more for a
/// longer description.
pub const FRAME_HEIGHT: u32 = 420;

/// [`FRAME_HEIGHT`] for a box that offers rhythms: its select and the line
/// on when digests arrive make the tallest state 533 px (the same thank-you,
/// as tests/frames.rs measures it), and the same line more.
pub const RHYTHM_FRAME_HEIGHT: u32 = 560;

/// The box page's inline script that posts its height to the framing page.
pub const SIZING: &str = include_str!("frame_sizing.js");

/// The CSP source that allows [`SIZING`] and no other inline script.
pub fn sizing_source() -> String {
    let digest = Sha256::digest(SIZING.as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The `message` listener a site pastes after the iframe: it sizes its own
/// frame (`event.source`) from messages of our origin (`event.origin`) only.
pub fn listener(origin: &str) -> String {
    format!(
        "<script>\n(function (frame) {{\n  addEventListener(\"message\", function (event) {{\n    \
         var data = event.data;\n    \
         if (event.origin !== \"{origin}\" || event.source !== frame.contentWindow) return;\n    \
         if (!data || data.bulletin !== \"frame-height\" || data.frame !== frame.name) return;\n    \
         if (data.height > 0) frame.style.height = Math.ceil(data.height) + \"px\";\n  }});\n\
         }})(document.currentScript.previousElementSibling);\n</script>"
    )
}

/// A form posted from a framed box, as its address says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedBox {
    /// The box's own newsletters, comma-separated.
    pub slugs: String,
    pub theme: Theme,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BoxQuery {
    #[serde(rename = "box")]
    slugs: String,
    theme: String,
}

impl FramedBox {
    /// The query a box's form posts with.
    pub fn query(slugs: &str, theme: Theme) -> String {
        format!("box={slugs}&theme={}", theme.as_str())
    }

    /// The box a request to `/subscribe` came from, if it came from one.
    pub fn of(uri: &Uri) -> Option<Self> {
        if uri.path() != "/subscribe" {
            return None;
        }
        let Query(q) = Query::<BoxQuery>::try_from_uri(uri).ok()?;
        (!q.slugs.trim().is_empty()).then(|| Self { slugs: q.slugs, theme: Theme::parse(&q.theme) })
    }
}

/// What the reader had typed into a box, from a body the handler never got.
#[derive(Debug, Clone, Default)]
pub struct Typed {
    pub email: String,
    pub picked: Vec<String>,
    pub rhythm: String,
    pub zone: String,
}

impl Typed {
    pub fn from_form(body: &[u8]) -> Self {
        let mut typed = Self::default();
        for (name, value) in url::form_urlencoded::parse(body) {
            match &*name {
                "email" => typed.email = value.into_owned(),
                "newsletter" => typed.picked.push(value.into_owned()),
                "rhythm" => typed.rhythm = value.into_owned(),
                "timezone" => typed.zone = value.into_owned(),
                _ => {}
            }
        }
        typed
    }

    /// Reads the request's body (already in memory: the per-IP limit runs
    /// after the body reader) into the refusal, if the request is a box's.
    pub async fn keep(req: Request, refusal: &mut Response) {
        if FramedBox::of(req.uri()).is_none() {
            return;
        }
        let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap_or_default();
        refusal.extensions_mut().insert(Self::from_form(&body));
    }

    /// Reads a body refused for its size through (within `timeout` and
    /// [`SCAN_LIMIT`] bytes), holding only its `email` field: the box keeps
    /// the address without the server keeping the body.
    pub async fn scan(mut body: Body, timeout: Duration) -> Self {
        use http_body_util::BodyExt as _;
        let mut scanner = EmailScanner::default();
        let read = async {
            let mut seen = 0;
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                seen += data.len();
                if scanner.feed(&data) || seen > SCAN_LIMIT {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, read).await;
        Self { email: scanner.email(), ..Self::default() }
    }
}

/// How much of a too-large box form is read looking for the address.
const SCAN_LIMIT: usize = 256 * 1024;
/// An address is at most 254 characters; each may take 3 bytes encoded, several if not ASCII.
const EMAIL_LIMIT: usize = 1024;

/// Finds the first `email=` field of a urlencoded body fed in pieces.
#[derive(Default)]
struct EmailScanner {
    key: Vec<u8>,
    in_value: bool,
    capturing: bool,
    value: Vec<u8>,
    done: bool,
}

impl EmailScanner {
    /// Feeds the next bytes; `true` once the field has been read whole.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.done {
                break;
            }
            match b {
                b'&' => {
                    self.done = self.capturing;
                    self.key.clear();
                    self.in_value = false;
                    self.capturing = false;
                }
                b'=' if !self.in_value => {
                    self.in_value = true;
                    self.capturing = self.key == b"email";
                }
                // One byte past "email" is enough to tell a key is not it.
                _ if !self.in_value && self.key.len() <= 5 => self.key.push(b),
                _ if !self.in_value => {}
                _ if self.capturing => {
                    if self.value.len() < EMAIL_LIMIT {
                        self.value.push(b);
                    } else {
                        self.value.clear();
                        self.capturing = false;
                        self.done = true;
                    }
                }
                _ => {}
            }
        }
        self.done
    }

    fn email(&self) -> String {
        let pair = [b"email=".as_slice(), &self.value].concat();
        url::form_urlencoded::parse(&pair).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    }
}

/// Turns a refusal of a box's form (an error page, which no site may frame)
/// into the box itself with the message in place.
pub async fn answer_in_box(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(framed) = FramedBox::of(req.uri()) else {
        return next.run(req).await;
    };
    let response = next.run(req).await;
    let Some(error) = response.extensions().get::<PageError>().cloned() else {
        return response;
    };
    let typed = response.extensions().get::<Typed>().cloned().unwrap_or_default();
    let sent = Sent {
        boxed: &framed.slugs,
        picked: &typed.picked,
        rhythm: &typed.rhythm,
        email: &typed.email,
        zone: &typed.zone,
        error: None,
        choice_error: None,
        again: false,
    };
    embed::box_refused(&state, framed.theme, &sent, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(pieces: &[&[u8]]) -> String {
        let mut scanner = EmailScanner::default();
        for piece in pieces {
            scanner.feed(piece);
        }
        scanner.email()
    }

    #[test]
    fn the_address_is_found_across_pieces_and_after_large_fields() {
        let big = "x".repeat(40_000);
        let body = format!("newsletter=a&website={big}&emailx=no&email=reader%40example.org&ts=1");
        assert_eq!(scanned(&[body.as_bytes()]), "reader@example.org");
        let (a, b) = body.as_bytes().split_at(body.len() - 20);
        assert_eq!(scanned(&[a, b]), "reader@example.org");
        for at in 1..body.len().min(40_060) {
            if at % 997 != 0 && at < 40_020 {
                continue;
            }
            let (a, b) = body.as_bytes().split_at(at);
            assert_eq!(scanned(&[a, b]), "reader@example.org", "split at {at}");
        }
        assert_eq!(scanned(&[b"email=last%2Bone%40example.org"]), "last+one@example.org");
        assert_eq!(scanned(&[b"website=a&ts=1"]), "");
        let huge = format!("email={}&ts=1", "a".repeat(5000));
        assert_eq!(scanned(&[huge.as_bytes()]), "", "no address is that long");
    }

    #[test]
    fn only_subscribe_with_a_box_is_a_box() {
        let uri: Uri = "/subscribe?box=morning-briefing&theme=dark".parse().unwrap();
        assert_eq!(FramedBox::of(&uri), Some(FramedBox { slugs: "morning-briefing".into(), theme: Theme::Dark }));
        for other in
            ["/subscribe", "/subscribe?theme=dark", "/confirm/x?box=morning-briefing", "/subscribe?box=&theme=dark"]
        {
            assert_eq!(FramedBox::of(&other.parse().unwrap()), None, "{other}");
        }
    }
}
