//! Fetching feeds from a real HTTP server on 127.0.0.1: stories come out
//! as plain text with absolute links, unchanged feeds answer 304 to the
//! validators of the last fetch, and every way a feed can fail (an error
//! status, a web page, broken XML, too big, too slow, a redirect loop, no
//! server) is one helpful line that leaves the address to the caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bulletin::digest::feed::*;
use hyper::body::Frame;
use url::Url;

const RSS_ETAG: &str = "\"rss-v1\"";
const ATOM_LAST_MODIFIED: &str = "Wed, 04 Mar 2026 09:00:00 GMT";

const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>Town Crier</title>
  <link>http://example.org/</link>
  <description>Local news</description>
  <item>
    <title>Rates &lt;b&gt;rise&lt;/b&gt; at B&amp;amp;Q</title>
    <link>/stories/rates</link>
    <guid isPermaLink="false">story-1</guid>
    <description><![CDATA[<p>The <b>council</b> voted &amp; agreed.<script>alert(1)</script></p>]]></description>
    <pubDate>Tue, 03 Mar 2026 07:30:00 GMT</pubDate>
  </item>
  <item>
    <title>Market day</title>
    <link>stories/market</link>
    <content:encoded><![CDATA[<style>p { color: red }</style><p>Stalls <i>open</i> at nine.</p>]]></content:encoded>
  </item>
  <item>
    <description>Neither a title nor a link: not a story.</description>
  </item>
</channel>
</rss>"#;

fn atom() -> String {
    let long = "Lorem ipsum dolor sit amet. ".repeat(40);
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Atom Town</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2026-03-04T09:00:00Z</updated>
  <entry>
    <title type="html">Fish &amp;amp; &lt;i&gt;chips&lt;/i&gt;</title>
    <id>tag:example.org,2026:fish</id>
    <link rel="edit" href="/edit/fish"/>
    <link rel="alternate" href="fish-and-chips"/>
    <published>2026-03-04T07:00:00+01:00</published>
    <updated>2026-03-04T08:00:00Z</updated>
    <content type="html">&lt;p&gt;{long}&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>Only updated</title>
    <id>tag:example.org,2026:updated</id>
    <link href="https://elsewhere.example/2"/>
    <updated>2026-03-04T08:30:00Z</updated>
    <summary>Short &amp; plain</summary>
  </entry>
</feed>"#
    )
}

/// Every request the server saw: path and headers.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// An HTTP server on 127.0.0.1:0 serving feeds and faults; stopped on drop.
struct FeedServer {
    base: Url,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl FeedServer {
    async fn start() -> Self {
        let seen = Seen::default();
        let app = Router::new()
            .route("/feeds/rss.xml", get(rss))
            .route("/feeds/atom.xml", get(atom_feed))
            .route("/moved", get(|| async { Redirect::permanent("/feeds/rss.xml") }))
            .route("/error", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
            .route("/page", get(page))
            .route("/broken.xml", get(broken))
            .route("/big.xml", get(big))
            .route("/big-chunked.xml", get(big_chunked))
            .route("/slow.xml", get(slow))
            .route("/stalls.xml", get(stalls))
            .route("/cut.xml", get(cut))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }))
            .route("/to-ftp", get(|| async { Redirect::temporary("ftp://example.org/feed.xml") }))
            .layer(middleware::from_fn_with_state(seen.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("feed server runs") });
        Self { base, seen, task }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    /// The headers of each request for `path`, in order.
    fn requests(&self, path: &str) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, h)| h.clone()).collect()
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(seen): State<Seen>, request: Request, next: Next) -> Response {
    seen.lock().unwrap().push((request.uri().path().to_owned(), request.headers().clone()));
    next.run(request).await
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers.get(name).is_some_and(|v| v == value)
}

async fn rss(headers: HeaderMap) -> Response {
    if header_is(&headers, header::IF_NONE_MATCH, RSS_ETAG) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, RSS_ETAG)]).into_response();
    }
    ([(header::CONTENT_TYPE, "application/rss+xml"), (header::ETAG, RSS_ETAG)], RSS).into_response()
}

async fn atom_feed(headers: HeaderMap) -> Response {
    if header_is(&headers, header::IF_MODIFIED_SINCE, ATOM_LAST_MODIFIED) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::CONTENT_TYPE, "application/atom+xml"), (header::LAST_MODIFIED, ATOM_LAST_MODIFIED)], atom())
        .into_response()
}

async fn page() -> Response {
    let html = "<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>Town Crier</title>\n\
                <link rel=alternate type=application/rss+xml href=/feeds/rss.xml></head>\n\
                <body><p>Welcome<br>to the town</body></html>";
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn broken() -> Response {
    let xml = "<?xml version=\"1.0\"?>\n<rss version=\"2.0\"><channel><title>Broken</title>\n\
               <item><title>Half an item</item></channel></rss>";
    ([(header::CONTENT_TYPE, "application/rss+xml")], xml).into_response()
}

/// 64 KiB of feed, for a 16 KiB limit.
fn big_feed() -> String {
    let item = "<item><title>Filler</title><link>https://example.org/filler</link></item>\n";
    format!("<rss version=\"2.0\"><channel><title>Big</title>{}</channel></rss>", item.repeat(1000))
}

async fn big() -> Response {
    ([(header::CONTENT_TYPE, "application/rss+xml")], big_feed()).into_response()
}

/// The same feed without a Content-Length: only counting while reading stops it.
async fn big_chunked() -> Response {
    let body = Dribble {
        chunks: Bytes::from(big_feed()).chunks(1024).map(Bytes::copy_from_slice).collect(),
        cut: false,
        pause: None,
    };
    ([(header::CONTENT_TYPE, "application/rss+xml")], Body::new(body)).into_response()
}

/// Answers only after the client's 1 s timeout.
async fn slow() -> Response {
    tokio::time::sleep(Duration::from_secs(20)).await;
    ([(header::CONTENT_TYPE, "application/rss+xml")], RSS).into_response()
}

/// Answers at once, sends the first half of the feed, then stalls past the timeout.
async fn stalls() -> Response {
    let (first, second) = RSS.split_at(RSS.len() / 2);
    let body = Dribble {
        chunks: vec![Bytes::from_static(first.as_bytes()), Bytes::from_static(second.as_bytes())],
        cut: false,
        pause: Some((Duration::from_secs(20), None)),
    };
    ([(header::CONTENT_TYPE, "application/rss+xml")], Body::new(body)).into_response()
}

/// Sends the first half of the feed, then fails: the server drops the
/// connection mid-body (after a pause, so the half is on the wire first).
async fn cut() -> Response {
    let body = Dribble {
        chunks: vec![Bytes::from_static(&RSS.as_bytes()[..RSS.len() / 2])],
        cut: true,
        pause: Some((Duration::from_millis(200), None)),
    };
    ([(header::CONTENT_TYPE, "application/rss+xml")], Body::new(body)).into_response()
}

/// A response body of unknown length sent chunk by chunk, optionally
/// pausing after each chunk, optionally failing after the last.
struct Dribble {
    chunks: Vec<Bytes>,
    cut: bool,
    pause: Option<(Duration, Option<Pin<Box<tokio::time::Sleep>>>)>,
}

impl hyper::body::Body for Dribble {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some((pause, sleep)) = &mut this.pause {
            if let Some(sleep) = sleep {
                ready!(sleep.as_mut().poll(cx));
            }
            *sleep = Some(Box::pin(tokio::time::sleep(*pause)));
        }
        if this.chunks.is_empty() {
            return Poll::Ready(this.cut.then(|| Err(std::io::Error::other("the test cuts the body"))));
        }
        Poll::Ready(Some(Ok(Frame::data(this.chunks.remove(0)))))
    }
}

/// Runs a test body with a bound, so a hung fetch fails instead of hanging.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), test).await.expect("the test finished within 30 s")
}

fn fetcher(limits: FetchLimits) -> FeedFetcher {
    FeedFetcher::new(limits).expect("the HTTP client starts")
}

fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
}

fn stories_of(fetched: Result<Fetched, FeedError>) -> (Vec<FeedStory>, Validators) {
    match fetched {
        Ok(Fetched::Feed { stories, validators }) => (stories, validators),
        other => panic!("expected a feed, got {other:?}"),
    }
}

/// The error's message, checked to be one line that neither repeats the
/// address nor a cause ("X: X").
fn message(result: Result<Fetched, FeedError>) -> (FeedError, String) {
    let error = result.expect_err("the fetch fails");
    let message = error.to_string();
    assert!(!message.is_empty() && !message.contains('\n'), "not one line: {message:?}");
    assert!(!message.contains("127.0.0.1") && !message.contains("http://"), "repeats the address: {message}");
    let parts: Vec<&str> = message.split(": ").collect();
    assert!(parts.windows(2).all(|pair| pair[0] != pair[1]), "repeats itself: {message}");
    (error, message)
}

fn assert_plain(text: &str) {
    for markup in ['<', '>'] {
        assert!(!text.contains(markup), "markup left in {text:?}");
    }
    assert!(!text.contains("&amp;") && !text.contains("alert(1)") && !text.contains("color"), "{text:?}");
}

#[tokio::test]
async fn rss_stories_are_plain_text_with_absolute_links_and_a_304_when_unchanged() {
    bounded(async {
        let server = FeedServer::start().await;
        let fetcher = fetcher(FetchLimits::default());
        let url = server.url("/feeds/rss.xml");

        let (stories, validators) = stories_of(fetcher.fetch(&url, &Validators::default()).await);
        assert_eq!(validators, Validators { etag: Some(RSS_ETAG.into()), last_modified: None });
        assert_eq!(stories.len(), 2, "the item without title and link is dropped: {stories:?}");
        assert_eq!(
            stories[0],
            FeedStory {
                guid: Some("story-1".into()),
                title: "Rates rise at B&Q".into(),
                url: server.url("/stories/rates").to_string(),
                summary: Some("The council voted & agreed.".into()),
                published_at: Some(unix("2026-03-03T07:30:00Z")),
            }
        );
        assert_eq!(
            stories[1],
            FeedStory {
                guid: None,
                title: "Market day".into(),
                url: server.url("/feeds/stories/market").to_string(),
                summary: Some("Stalls open at nine.".into()),
                published_at: None,
            }
        );
        for story in &stories {
            assert_plain(&story.title);
            assert_plain(story.summary.as_deref().unwrap());
        }

        let first = &server.requests("/feeds/rss.xml")[0];
        let agent = first.get(header::USER_AGENT).unwrap().to_str().unwrap();
        assert!(agent.starts_with(concat!("Bulletin/", env!("CARGO_PKG_VERSION"), " (")), "{agent}");
        assert!(first.get(header::IF_NONE_MATCH).is_none());

        assert_eq!(fetcher.fetch(&url, &validators).await.unwrap(), Fetched::NotModified);
        let second = &server.requests("/feeds/rss.xml")[1];
        assert_eq!(second.get(header::IF_NONE_MATCH).unwrap(), RSS_ETAG);
    })
    .await;
}

#[tokio::test]
async fn atom_stories_and_if_modified_since() {
    bounded(async {
        let server = FeedServer::start().await;
        let fetcher = fetcher(FetchLimits::default());
        let url = server.url("/feeds/atom.xml");

        let (stories, validators) = stories_of(fetcher.fetch(&url, &Validators::default()).await);
        assert_eq!(validators, Validators { etag: None, last_modified: Some(ATOM_LAST_MODIFIED.into()) });
        assert_eq!(stories.len(), 2, "{stories:?}");

        let fish = &stories[0];
        assert_eq!(fish.guid.as_deref(), Some("tag:example.org,2026:fish"));
        assert_eq!(fish.title, "Fish & chips");
        assert_eq!(fish.url, server.url("/feeds/fish-and-chips").as_str(), "the alternate link, not the edit link");
        assert_eq!(fish.published_at, Some(unix("2026-03-04T06:00:00Z")), "published wins over updated");
        let summary = fish.summary.as_deref().unwrap();
        assert!(summary.starts_with("Lorem ipsum dolor sit amet. Lorem"), "from the content: {summary}");
        assert!(summary.ends_with('…') && summary.chars().count() <= 500, "capped: {summary}");
        assert_plain(summary);

        let updated = &stories[1];
        assert_eq!(updated.url, "https://elsewhere.example/2");
        assert_eq!(updated.summary.as_deref(), Some("Short & plain"));
        assert_eq!(updated.published_at, Some(unix("2026-03-04T08:30:00Z")), "updated when not published");

        assert_eq!(fetcher.fetch(&url, &validators).await.unwrap(), Fetched::NotModified);
        let second = &server.requests("/feeds/atom.xml")[1];
        assert_eq!(second.get(header::IF_MODIFIED_SINCE).unwrap(), ATOM_LAST_MODIFIED);
    })
    .await;
}

#[tokio::test]
async fn links_resolve_against_the_address_a_redirect_ends_at() {
    bounded(async {
        let server = FeedServer::start().await;
        let (stories, _) =
            stories_of(fetcher(FetchLimits::default()).fetch(&server.url("/moved"), &Validators::default()).await);
        assert_eq!(stories[1].url, server.url("/feeds/stories/market").as_str());
    })
    .await;
}

#[tokio::test]
async fn an_error_status_is_an_error() {
    bounded(async {
        let server = FeedServer::start().await;
        let (error, text) =
            message(fetcher(FetchLimits::default()).fetch(&server.url("/error"), &Validators::default()).await);
        assert!(matches!(error, FeedError::Status(status) if status == 500), "{error:?}");
        assert_eq!(text, "answered HTTP 500 Internal Server Error");
    })
    .await;
}

#[tokio::test]
async fn a_web_page_is_not_a_feed_and_says_where_to_look() {
    bounded(async {
        let server = FeedServer::start().await;
        let (error, text) =
            message(fetcher(FetchLimits::default()).fetch(&server.url("/page"), &Validators::default()).await);
        assert!(matches!(error, FeedError::NotAFeed { web_page: true, .. }), "{error:?}");
        assert!(text.starts_with("is not an RSS or Atom feed ("), "{text}");
        assert!(text.ends_with("it is a web page: use the address of the feed it links to"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn broken_xml_is_not_a_feed_with_the_reason() {
    bounded(async {
        let server = FeedServer::start().await;
        let (error, text) =
            message(fetcher(FetchLimits::default()).fetch(&server.url("/broken.xml"), &Validators::default()).await);
        assert!(matches!(error, FeedError::NotAFeed { web_page: false, .. }), "{error:?}");
        assert!(text.starts_with("is not an RSS or Atom feed (") && text.ends_with(')'), "{text}");
        assert!(text.len() > "is not an RSS or Atom feed ()".len() + 10, "a reason is given: {text}");
    })
    .await;
}

#[tokio::test]
async fn a_feed_over_the_size_limit_is_refused_with_or_without_a_length() {
    bounded(async {
        let server = FeedServer::start().await;
        let fetcher = fetcher(FetchLimits { max_bytes: 16 * 1024, ..FetchLimits::default() });
        for path in ["/big.xml", "/big-chunked.xml"] {
            let (error, text) = message(fetcher.fetch(&server.url(path), &Validators::default()).await);
            assert!(matches!(error, FeedError::TooLarge(16384)), "{path}: {error:?}");
            assert_eq!(text, "is larger than 16 KiB", "{path}");
        }
        let served = fetcher.fetch(&server.url("/feeds/rss.xml"), &Validators::default()).await;
        assert!(matches!(served, Ok(Fetched::Feed { .. })), "a feed under the limit is read: {served:?}");
    })
    .await;
}

#[tokio::test]
async fn the_timeout_covers_the_answer_and_the_body() {
    bounded(async {
        let server = FeedServer::start().await;
        let fetcher = fetcher(FetchLimits { timeout: Duration::from_secs(1), ..FetchLimits::default() });
        for path in ["/slow.xml", "/stalls.xml"] {
            let started = Instant::now();
            let (error, text) = message(fetcher.fetch(&server.url(path), &Validators::default()).await);
            let took = started.elapsed();
            assert!(matches!(error, FeedError::TimedOut(_)), "{path}: {error:?}");
            assert_eq!(text, "timed out after 1 s", "{path}");
            assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "{path} gave up after {took:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_connection_dropped_mid_body_is_an_interrupted_fetch() {
    bounded(async {
        let server = FeedServer::start().await;
        let (error, text) =
            message(fetcher(FetchLimits::default()).fetch(&server.url("/cut.xml"), &Validators::default()).await);
        assert!(matches!(error, FeedError::Interrupted(_)), "{error:?}");
        assert!(text.starts_with("broke off its answer: "), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_redirect_loop_is_followed_a_bounded_number_of_times() {
    bounded(async {
        let server = FeedServer::start().await;
        let fetcher = fetcher(FetchLimits { max_redirects: 3, ..FetchLimits::default() });
        let (error, text) = message(fetcher.fetch(&server.url("/loop"), &Validators::default()).await);
        assert!(matches!(error, FeedError::TooManyRedirects(3)), "{error:?}");
        assert_eq!(text, "redirected more than 3 times");
        assert_eq!(server.requests("/loop").len(), 4, "the first request and three redirects");

        let (error, text) = message(fetcher.fetch(&server.url("/to-ftp"), &Validators::default()).await);
        assert!(matches!(error, FeedError::RedirectedToUnsupportedScheme(ref s) if s == "ftp"), "{error:?}");
        assert_eq!(text, "redirected to an address that is not http or https (ftp)");
    })
    .await;
}

#[tokio::test]
async fn no_server_and_no_http_are_errors_that_say_so() {
    bounded(async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = Url::parse(&format!("http://{closed}/feed.xml")).unwrap();
        let fetcher = fetcher(FetchLimits::default());
        let (error, text) = message(fetcher.fetch(&url, &Validators::default()).await);
        assert!(matches!(error, FeedError::Connect(_)), "{error:?}");
        assert!(text.starts_with("could not connect: ") && text.to_lowercase().contains("refused"), "{text}");

        let (error, text) =
            message(fetcher.fetch(&Url::parse("ftp://example.org/feed.xml").unwrap(), &Validators::default()).await);
        assert!(matches!(error, FeedError::UnsupportedScheme(ref s) if s == "ftp"), "{error:?}");
        assert_eq!(text, "is not an http or https address");
    })
    .await;
}
