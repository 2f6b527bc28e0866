//! A news site's feeds on loopback for digest tests: an RSS feed that
//! answers 304 to its own ETag, an Atom feed, and feeds that fail.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One story on the test site.
#[derive(Debug, Clone)]
pub struct Entry {
    pub guid: String,
    pub title: String,
    pub link: String,
    pub summary: String,
    /// Unix seconds.
    pub published: i64,
}

#[derive(Default)]
struct Site {
    rss: Mutex<Vec<Entry>>,
    atom: Mutex<Vec<Entry>>,
    rss_requests: AtomicUsize,
    rss_not_modified: AtomicUsize,
}

pub struct FeedServer {
    pub addr: SocketAddr,
    site: Arc<Site>,
    task: tokio::task::JoinHandle<()>,
}

impl FeedServer {
    pub async fn start() -> Self {
        let site = Arc::new(Site::default());
        let app = Router::new()
            .route("/rss.xml", get(rss))
            .route("/atom.xml", get(atom))
            .route("/500", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }))
            .route(
                "/page.html",
                get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html><body>Hello</body></html>") }),
            )
            .route(
                "/broken.xml",
                get(|| async { ([(header::CONTENT_TYPE, "application/rss+xml")], "<rss><channel><item><title>Half") }),
            )
            .with_state(site.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, site, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn publish_rss(&self, entry: Entry) {
        self.site.rss.lock().unwrap().push(entry);
    }

    pub fn publish_atom(&self, entry: Entry) {
        self.site.atom.lock().unwrap().push(entry);
    }

    /// (requests, of which answered 304) for the RSS feed.
    pub fn rss_requests(&self) -> (usize, usize) {
        (self.site.rss_requests.load(Ordering::SeqCst), self.site.rss_not_modified.load(Ordering::SeqCst))
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rfc2822(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).unwrap().to_rfc2822()
}

fn rfc3339(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0).unwrap().to_rfc3339()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The ETag is the number of entries: it changes when a story is published.
async fn rss(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    site.rss_requests.fetch_add(1, Ordering::SeqCst);
    let entries = site.rss.lock().unwrap().clone();
    let etag = format!("\"v{}\"", entries.len());
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        site.rss_not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let items: String = entries
        .iter()
        .map(|e| {
            format!(
                "<item><guid isPermaLink=\"false\">{}</guid><title>{}</title><link>{}</link><description>{}</description><pubDate>{}</pubDate></item>",
                xml(&e.guid),
                xml(&e.title),
                xml(&e.link),
                xml(&e.summary),
                rfc2822(e.published)
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Test News</title><link>http://news.test/</link><description>t</description>{items}</channel></rss>"
    );
    ([(header::CONTENT_TYPE, "application/rss+xml".to_owned()), (header::ETAG, etag)], body).into_response()
}

async fn atom(State(site): State<Arc<Site>>) -> Response {
    let entries = site.atom.lock().unwrap().clone();
    let items: String = entries
        .iter()
        .map(|e| {
            format!(
                "<entry><id>{}</id><title type=\"html\">{}</title><link href=\"{}\"/><updated>{}</updated><summary type=\"html\">{}</summary></entry>",
                xml(&e.guid),
                xml(&e.title),
                xml(&e.link),
                rfc3339(e.published),
                xml(&e.summary)
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><title>Test Atom</title><id>urn:test</id><updated>2026-11-28T00:00:00Z</updated>{items}</feed>"
    );
    ([(header::CONTENT_TYPE, "application/atom+xml")], body).into_response()
}
