//! Fetching one RSS, Atom or JSON feed and reading its stories.
//!
//! A feed is someone else's server and someone else's text. The fetch is
//! bounded in time (the whole request, body included), in size (counted
//! while reading, whatever `Content-Length` says) and in redirects; a feed
//! that has not changed answers 304 to the validators of the last fetch.
//! Every title and summary leaves here as one line of plain text, so no
//! feed's markup reaches a digest. Plain text is not HTML: a story may still
//! hold `<` as a character, and templates escape it like any other text.

use std::fmt;
use std::time::Duration;

use feed_rs::model::{Entry, Link};
use html2text::render::TrivialDecorator;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use url::Url;

use super::story::one_line;

const USER_AGENT: &str = concat!("Bulletin/", env!("CARGO_PKG_VERSION"), " (feed fetcher for newsletter digests)");

/// Feeds first, but a server that only knows generic XML still answers.
const ACCEPT: &str = "application/rss+xml, application/atom+xml, application/feed+json, \
                      application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8";

/// A summary is a teaser in a digest, not the article.
const SUMMARY_CHARS: usize = 500;

/// Long enough for any honest headline; a feed cannot fill a digest with one.
const TITLE_CHARS: usize = 300;

/// A parser's complaint can quote the document; a log line needs only its gist.
const REASON_CHARS: usize = 200;

/// html2text wraps at a width; this one is wide enough that it never has to,
/// and the line breaks it does make become spaces anyway.
const RENDER_WIDTH: usize = 100_000;

/// Conditional-GET validators remembered from the last successful fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// One story as a feed gives it, already turned into plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedStory {
    /// The entry's own id (RSS `<guid>`, Atom `<id>`, JSON Feed `id`);
    /// `None` when the feed gave none, so callers deduplicate by `url`.
    pub guid: Option<String>,
    /// One line, trimmed, never empty: the link stands in for a missing title.
    pub title: String,
    /// Absolute http(s) address of the story, resolved against the feed's.
    pub url: String,
    /// The entry's summary, else its content, as plain text of at most
    /// 500 characters (cut ones end in "…").
    pub summary: Option<String>,
    /// Unix seconds: when published, else when last updated.
    pub published_at: Option<i64>,
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The feed answered 304: nothing new since the validators were taken.
    NotModified,
    /// The feed's stories, in the feed's order, and the validators to send next time.
    Feed { stories: Vec<FeedStory>, validators: Validators },
}

/// How far a fetch may go before it is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The whole request: connecting, waiting and reading the body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// The largest body read; a larger feed is an error, not a truncated feed.
    pub max_bytes: usize,
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_bytes: 5 * 1024 * 1024,
            max_redirects: 5,
        }
    }
}

/// Why a feed could not be read. Each message is one line that completes
/// "the feed at <url> …": it never repeats the address, the caller shows it.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("is not an http or https address")]
    UnsupportedScheme(String),
    #[error("redirected to an address that is not http or https ({0})")]
    RedirectedToUnsupportedScheme(String),
    #[error("redirected more than {0} times")]
    TooManyRedirects(usize),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("could not connect within {} s", .0.as_secs_f32())]
    ConnectTimedOut(Duration),
    #[error("timed out after {} s", .0.as_secs_f32())]
    TimedOut(Duration),
    /// Connected, then the server closed or garbled its answer.
    #[error("broke off its answer: {0}")]
    Interrupted(String),
    #[error("could not be requested: {0}")]
    Request(String),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("is larger than {}", Size(*.0))]
    TooLarge(usize),
    #[error(
        "is not an RSS or Atom feed ({reason}){}",
        if *.web_page { "; it is a web page: use the address of the feed it links to" } else { "" }
    )]
    NotAFeed { reason: String, web_page: bool },
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
}

/// Fetches feeds with one shared HTTP client; clones share its connections.
#[derive(Debug, Clone)]
pub struct FeedFetcher {
    client: reqwest::Client,
    limits: FetchLimits,
}

impl FeedFetcher {
    /// The client all fetches share; fails only if TLS cannot be set up.
    pub fn new(limits: FetchLimits) -> Result<Self, FeedError> {
        let max_redirects = limits.max_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if !is_http(attempt.url()) {
                let scheme = attempt.url().scheme().to_owned();
                attempt.error(RedirectRefused::Scheme(scheme))
            } else if attempt.previous().len() > max_redirects {
                attempt.error(RedirectRefused::TooMany)
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(HeaderMap::from_iter([(header::ACCEPT, HeaderValue::from_static(ACCEPT))]))
            .timeout(limits.timeout)
            .connect_timeout(limits.connect_timeout)
            .redirect(redirects)
            .referer(false)
            .build()
            .map_err(|e| FeedError::Client(innermost(e)))?;
        Ok(Self { client, limits })
    }

    /// Fetches `url` once, conditionally on `validators`, and reads its stories.
    #[tracing::instrument(skip_all, fields(%url))]
    pub async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, FeedError> {
        if !is_http(url) {
            return Err(FeedError::UnsupportedScheme(url.scheme().to_owned()));
        }
        let mut request = self.client.get(url.clone());
        // A validator that is not a valid header value was not one a server sent.
        if let Some(etag) = validators.etag.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(since) = validators.last_modified.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            request = request.header(header::IF_MODIFIED_SINCE, since);
        }
        let mut response = request.send().await.map_err(|e| self.http_error(e))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(FeedError::Status(status));
        }
        let max_bytes = self.limits.max_bytes;
        if response.content_length().is_some_and(|length| length > max_bytes as u64) {
            return Err(FeedError::TooLarge(max_bytes));
        }
        let text_header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let validators =
            Validators { etag: text_header(header::ETAG), last_modified: text_header(header::LAST_MODIFIED) };
        let web_page = text_header(header::CONTENT_TYPE).is_some_and(|t| t.trim_start().starts_with("text/html"));
        // After redirects: relative links are relative to where the feed was served.
        let base = response.url().clone();

        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.http_error(e))? {
            if body.len() + chunk.len() > max_bytes {
                return Err(FeedError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        // Parsing and HTML rendering of a few MiB is CPU work: keep it off the runtime's threads.
        let stories = tokio::task::spawn_blocking(move || read_feed(&body, &base, web_page))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        Ok(Fetched::Feed { stories, validators })
    }

    fn http_error(&self, error: reqwest::Error) -> FeedError {
        if error.is_timeout() {
            if error.is_connect() {
                FeedError::ConnectTimedOut(self.limits.connect_timeout)
            } else {
                FeedError::TimedOut(self.limits.timeout)
            }
        } else if error.is_redirect() {
            match find_source::<RedirectRefused>(&error) {
                Some(RedirectRefused::Scheme(scheme)) => FeedError::RedirectedToUnsupportedScheme(scheme.clone()),
                _ => FeedError::TooManyRedirects(self.limits.max_redirects),
            }
        } else if error.is_connect() {
            FeedError::Connect(innermost(error))
        } else if error.is_builder() {
            FeedError::Request(innermost(error))
        } else {
            FeedError::Interrupted(innermost(error))
        }
    }
}

/// Why the redirect policy stopped following, found again in reqwest's error.
#[derive(Debug)]
enum RedirectRefused {
    Scheme(String),
    TooMany,
}

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheme(scheme) => write!(f, "redirect to a {scheme} address"),
            Self::TooMany => f.write_str("too many redirects"),
        }
    }
}

impl std::error::Error for RedirectRefused {}

fn is_http(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

fn find_source<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref::<T>())
}

/// The deepest cause: reqwest's and hyper's outer layers only say
/// "error sending request for url (…)" and "client error (Connect)".
fn innermost(error: reqwest::Error) -> String {
    let error = error.without_url();
    let root = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source()).last();
    root.map(ToString::to_string).unwrap_or_default()
}

fn read_feed(body: &[u8], base: &Url, web_page: bool) -> Result<Vec<FeedStory>, FeedError> {
    let parser = feed_rs::parser::Builder::new()
        .base_uri(Some(base.as_str()))
        // No made-up ids: an entry without one gets `guid: None`.
        .id_generator(|_, _, _| String::new())
        .build();
    let feed = parser
        .parse(body)
        .map_err(|e| FeedError::NotAFeed { reason: shorten(one_line(&e.to_string()), REASON_CHARS), web_page })?;
    Ok(feed.entries.into_iter().filter_map(|entry| story(entry, base)).collect())
}

fn story(entry: Entry, base: &Url) -> Option<FeedStory> {
    let guid = Some(entry.id.trim()).filter(|id| !id.is_empty()).map(str::to_owned);
    // RSS 2.0: a <guid> is a permalink unless it says otherwise, and some items have no <link>.
    let url = story_link(&entry.links, base).or_else(|| guid.as_deref().and_then(absolute_http))?;
    let title = entry
        .title
        .map(|title| plain_text(&title.content))
        .filter(|title| !title.is_empty())
        .map_or_else(|| url.to_string(), |title| shorten(title, TITLE_CHARS));
    let summary = [entry.summary.map(|s| s.content), entry.content.and_then(|c| c.body)]
        .into_iter()
        .flatten()
        .map(|text| plain_text(&text))
        .find(|text| !text.is_empty())
        .map(|text| shorten(text, SUMMARY_CHARS));
    let published_at = entry.published.or(entry.updated).map(|at| at.timestamp());
    Some(FeedStory { guid, title, url: url.into(), summary, published_at })
}

/// The entry's page: its first plain or `alternate` link (not `self`,
/// `enclosure` or `edit`) that is an http(s) address.
fn story_link(links: &[Link], base: &Url) -> Option<Url> {
    links
        .iter()
        .filter(|link| link.rel.as_deref().is_none_or(|rel| rel.eq_ignore_ascii_case("alternate")))
        .find_map(|link| base.join(link.href.trim()).ok().filter(is_http))
}

fn absolute_http(text: &str) -> Option<Url> {
    Url::parse(text).ok().filter(is_http)
}

/// Plain text from a feed's HTML-or-text field (used for titles too).
///
/// RSS does not say whether a field is HTML, so every field is read as
/// HTML: tags go, entities are decoded, `<script>` and `<style>` vanish
/// with their content, and the text becomes one line as every story's
/// does ([`one_line`]).
pub fn plain_text(html: &str) -> String {
    let rendered = html2text::config::with_decorator(TrivialDecorator::new())
        .raw_mode(true)
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), RENDER_WIDTH)
        // html2text fails on a too-narrow width (overflow is allowed here) or a failing reader (a slice never fails).
        .unwrap_or_default();
    one_line(&rendered)
}

/// `text` cut to `max_chars` characters with "…" at the end, at a word
/// boundary when one is near.
fn shorten(text: String, max_chars: usize) -> String {
    let Some((cut, _)) = text.char_indices().nth(max_chars - 1) else { return text };
    if text[cut..].chars().nth(1).is_none() {
        return text;
    }
    let head = &text[..cut];
    let head = match head.rfind(' ') {
        Some(space) if head[..space].chars().count() >= max_chars * 4 / 5 => &head[..space],
        _ => head,
    };
    format!("{}…", head.trim_end())
}

/// A byte count as people read it: "5 MiB", "64 KiB", "100 bytes".
struct Size(usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: usize = 1024;
        const MIB: usize = 1024 * KIB;
        match self.0 {
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= MIB => write!(f, "{:.1} MiB", n as f64 / MIB as f64),
            n if n >= KIB && n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn plain_text_decodes_entities() {
        assert_eq!(plain_text("AT&amp;T &lt;3 caf&eacute; &#8217;quoted&#x2019; &nbsp;x"), "AT&T <3 café ’quoted’ x");
    }

    #[test]
    fn plain_text_drops_tags_and_keeps_their_words() {
        let html = r#"<p>Hello <b>bold</b> and <a href="https://example.org/">a link</a>.</p><p>Second<br>line</p>"#;
        assert_eq!(plain_text(html), "Hello bold and a link. Second line");
    }

    #[test]
    fn plain_text_drops_script_and_style_with_their_content() {
        let html = "<style>p { color: red }</style>Safe<script>alert(1)</script> text<script src=x></script>";
        assert_eq!(plain_text(html), "Safe text");
    }

    #[test]
    fn plain_text_is_one_line_without_control_characters() {
        assert_eq!(plain_text("  first\r\n\tsecond \u{1b}[31m red \u{7}\n\n"), "first second [31m red");
    }

    #[test]
    fn plain_text_keeps_text_that_only_looks_like_markup_characters() {
        assert_eq!(plain_text("1 < 2 && 3 > 2"), "1 < 2 && 3 > 2");
        assert_eq!(plain_text(""), "");
    }

    #[test]
    fn plain_text_keeps_only_the_words_of_lists_images_and_tables() {
        let html =
            "<ul><li>one</li><li>two</li></ul><img src=x alt=Picture><table><tr><td>a</td><td>b</td></tr></table>";
        assert_eq!(plain_text(html), "one two Picture a b");
    }

    proptest! {
        /// A headline's text (letters of the scripts newsrooms publish in,
        /// digits, spaces, common punctuation) comes out as itself, whitespace
        /// collapsed. Not every script: html2text measures text by display
        /// width, and drops a space beside zero-width letters of scripts such
        /// as Kawi (CI found "\u{11F02} \u{116D0}") and beside combining marks,
        /// as it drops U+2028: so the letters of those scripts' main blocks.
        #[test]
        fn plain_text_passes_plain_text_through(
            text in "[a-zA-Z0-9À-ÖØ-öø-žΑ-ΩΆ-ώА-яЁёІіЇїЄєҐґء-يא-ת一-鿿ぁ-ゖァ-ヺ가-힣 .,;:!?'\"()-]{0,200}"
        ) {
            let expected = text.split_whitespace().collect::<Vec<_>>().join(" ");
            prop_assert_eq!(plain_text(&text), expected);
        }

        /// Whatever the input, the output is one trimmed line.
        #[test]
        fn plain_text_is_always_one_trimmed_line(html in "\\PC{0,300}|(<[a-z]{1,6}>|</[a-z]{1,6}>|&[a-z]{2,5};|[ \\n\\ta-z])*") {
            let text = plain_text(&html);
            prop_assert!(!text.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')), "{:?}", text);
            prop_assert!(!text.starts_with(' ') && !text.ends_with(' ') && !text.contains("  "), "{:?}", text);
        }
    }

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text_at_a_word() {
        assert_eq!(shorten("short".into(), 500), "short");
        let exact = "x".repeat(500);
        assert_eq!(shorten(exact.clone(), 500), exact);

        let long = "word ".repeat(200);
        let cut = shorten(long, 500);
        assert!(cut.chars().count() <= 500, "{}", cut.chars().count());
        assert!(cut.ends_with("word…"), "{cut}");
    }

    #[test]
    fn shorten_cuts_on_a_char_boundary() {
        let cut = shorten("é".repeat(600), 500);
        assert_eq!(cut.chars().count(), 500);
        assert!(cut.ends_with("é…"));
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(Size(5 * 1024 * 1024).to_string(), "5 MiB");
        assert_eq!(Size(16 * 1024).to_string(), "16 KiB");
        assert_eq!(Size(1500).to_string(), "1500 bytes");
    }

    fn stories(xml: &str) -> Vec<FeedStory> {
        read_feed(xml.as_bytes(), &Url::parse("https://example.org/blog/feed.xml").unwrap(), false).unwrap()
    }

    #[test]
    fn entries_without_a_link_are_dropped_and_a_missing_title_is_the_link() {
        let found = stories(
            r#"<rss version="2.0"><channel><title>t</title>
            <item><description>no title, no link</description></item>
            <item><description>no link</description><title>Lost</title></item>
            <item><link>posts/untitled</link></item>
            </channel></rss>"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].title, "https://example.org/blog/posts/untitled");
        assert_eq!(found[0].url, "https://example.org/blog/posts/untitled");
        assert_eq!(found[0].guid, None);
    }

    #[test]
    fn a_permalink_guid_is_the_link_of_an_item_without_one() {
        let found = stories(
            r#"<rss version="2.0"><channel><title>t</title>
            <item><title>By guid</title><guid>https://example.org/p/1</guid></item>
            <item><title>Opaque guid</title><guid isPermaLink="false">urn:x:2</guid></item>
            </channel></rss>"#,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].url, "https://example.org/p/1");
        assert_eq!(found[0].guid.as_deref(), Some("https://example.org/p/1"));
    }

    #[test]
    fn links_that_are_not_http_are_not_stories() {
        let found = stories(
            r#"<rss version="2.0"><channel><title>t</title>
            <item><title>Script</title><link>javascript:alert(1)</link></item>
            <item><title>Mail</title><link>mailto:editor@example.org</link></item>
            </channel></rss>"#,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn json_feed_items_are_stories_too() {
        let json = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "J",
            "items": [{"id": "1", "url": "https://example.org/j/1", "title": "Tea &amp; cake",
                       "content_html": "<p>Hot <em>tea</em></p>", "date_published": "2026-03-01T10:00:00Z"}]}"#;
        let found = stories(json);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].title, "Tea & cake");
        assert_eq!(found[0].summary.as_deref(), Some("Hot tea"));
        assert_eq!(found[0].guid.as_deref(), Some("1"));
        assert_eq!(found[0].published_at, Some(1_772_359_200));
    }
}
