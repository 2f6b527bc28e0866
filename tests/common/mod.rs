//! The test harness: a real Bulletin on 127.0.0.1:0 over a fresh database
//! (an SQLite file in a temp dir, or a new PostgreSQL database), sending
//! through a real SMTP server on loopback (mailin-embedded, in process).
#![allow(dead_code)]

pub mod bin;
pub mod boxes;
pub mod browser;
pub mod db;
pub mod feed_server;
pub mod postfix;
pub mod postfix_smtpd;
pub mod smtp;
pub mod tmpfs;
pub mod turns;

use std::time::Duration;

use bulletin::app::{self, Running, StartOptions};
use bulletin::clock::Clock;
use bulletin::config::{Settings, TransportKind};
use bulletin::delivery::Draft;
use bulletin::domain::{LinkKeys, Newsletter, Rhythm, SubscriptionStatus};
use bulletin::signup::{Links, roster};
use bulletin::store::{MailCap, Store};
use secrecy::SecretString;
pub use smtp::MailSink;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$test(backend)` once per backend, each as its own test with a time bound.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    common::bounded(super::$test(common::Backend::Sqlite)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    common::bounded(super::$test(common::Backend::Postgres)).await;
                }
            }
        )*
    };
}

/// Fails a test that runs longer than a minute instead of hanging CI.
pub async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("test timed out after 60 s");
}

/// A fresh database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl TestDb {
    /// `None` when PostgreSQL is not reachable and not required (a laptop without it).
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("bulletin.db").display());
                Some(Self { url, _dir: Some(dir), pg: None })
            }
            Backend::Postgres => {
                let admin_url = std::env::var("BULLETIN_TEST_PG_URL").unwrap_or_else(|_| PG_DEFAULT.into());
                let required = std::env::var("BULLETIN_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                use sqlx::Connection;
                let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
                    Ok(c) => c,
                    Err(e) if !required => {
                        eprintln!("skipping: PostgreSQL not reachable at {admin_url}: {e}");
                        return None;
                    }
                    Err(e) => {
                        panic!("PostgreSQL is required (BULLETIN_TEST_REQUIRE_POSTGRES=1) but {admin_url} failed: {e}")
                    }
                };
                let name = format!("bulletin_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b);
                Some(Self { url: format!("{base}/{name}"), _dir: None, pg: Some((admin_url.clone(), name)) })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.pg.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee, so use a small one of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A running Bulletin with its database, mail server and clock.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub mail: MailSink,
    pub clock: Clock,
    pub settings: Settings,
    pub store: Store,
    running: Option<Running>,
    options: StartOptions,
    db: TestDb,
}

/// Settings for tests: everything as shipped but the database, the mail
/// server, the time-trap (off: tests submit forms at machine speed) and a
/// per-IP limit loose enough for tests that are not about it.
pub fn test_settings(db_url: &str, smtp: &MailSink) -> Settings {
    let mut s = Settings::default();
    s.database.url = SecretString::from(db_url.to_owned());
    s.mail.transport = TransportKind::Smtp;
    s.mail.smtp_url = SecretString::from(format!("smtp://{}", smtp.addr));
    s.signup.min_submit_seconds = 0;
    s.signup.per_ip_per_minute = 1000;
    s.server.secret = SecretString::from(TEST_SECRET);
    s.sending.retry_base_seconds = 1;
    s
}

/// Imports `emails` as confirmed readers of `newsletter`, the way
/// `bulletin subscribers import --confirmed` does.
pub async fn import_confirmed(
    store: &Store,
    keys: &LinkKeys,
    clock: &Clock,
    newsletter: &Newsletter,
    emails: &[String],
) {
    let csv = format!("email\n{}\n", emails.join("\n"));
    let cap = MailCap { min_interval_secs: 900, per_day: 3 };
    let report = roster::import_csv(store, keys, clock, newsletter, csv.as_bytes(), true, cap).await.expect("import");
    assert!(report.bad.is_empty(), "{:?}", report.bad);
}

/// The link secret tests run with, so a test can sign links as mail would carry them.
pub const TEST_SECRET: &str = "test-link-secret";

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<Self> {
        Self::spawn_with_options(backend, configure, StartOptions::default()).await
    }

    /// [`TestApp::spawn_with`] and the start options only tests set (an SNS client).
    pub async fn spawn_with_options(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
        options: StartOptions,
    ) -> Option<Self> {
        let db = TestDb::create(backend).await?;
        let mail = MailSink::start();
        let mut settings = test_settings(&db.url, &mail);
        configure(&mut settings);
        let clock = Clock::adjustable();
        let (running, base) = start(&mut settings, &clock, &options).await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let store = Store::connect(&db.url, 2).await.expect("test store");
        Some(Self { base, http, mail, clock, settings, store, running: Some(running), options, db })
    }

    /// Stops the instance and starts a new one on the same database, mail server and clock.
    pub async fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        let (running, base) = start(&mut self.settings, &self.clock, &self.options).await;
        self.running = Some(running);
        self.base = base;
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        self.store.close().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Where `GET /metrics` is served, when the test set `server.metrics_listen`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_addr)
    }

    /// Submits the HTML signup form as a browser would.
    pub async fn signup_form(&self, email: &str, newsletters: &[&str]) -> reqwest::Response {
        let mut fields = vec![("email", email), ("form", "several")];
        fields.extend(newsletters.iter().map(|n| ("newsletter", *n)));
        self.post_form("/subscribe", &fields, None).await
    }

    pub async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        forwarded_for: Option<&str>,
    ) -> reqwest::Response {
        let body = serde_urlencoded_pairs(fields);
        let mut req =
            self.http.post(self.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(ip) = forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        req.send().await.expect("request")
    }

    pub async fn signup_api(&self, email: &str, newsletters: &[&str]) -> reqwest::Response {
        self.http
            .post(self.url("/api/subscriptions"))
            .json(&serde_json::json!({"email": email, "newsletters": newsletters}))
            .send()
            .await
            .expect("request")
    }

    /// Presses "Unsubscribe" in a mail client: the RFC 8058 one-click POST to the mail's `List-Unsubscribe`.
    pub async fn one_click_unsubscribe(&self, mail: &smtp::ReceivedMail) -> reqwest::Response {
        let link = mail.header("List-Unsubscribe").expect("List-Unsubscribe").trim_matches(['<', '>']).to_owned();
        self.http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .expect("request")
    }

    /// Waits for the next confirmation mail to `to` and returns its link.
    pub async fn confirmation_link(&self, to: &str, nth: usize) -> String {
        let mails = self.mail.wait_for(to, nth).await;
        mails[nth - 1].link_to(&format!("{}/confirm/", self.base)).expect("confirmation link in mail")
    }

    /// Every (email, status) on a newsletter, as `bulletin subscribers list` shows them.
    pub async fn subscribers(&self, slug: &str) -> Vec<(String, SubscriptionStatus)> {
        let newsletter = self
            .store
            .list_newsletters()
            .await
            .expect("newsletters")
            .into_iter()
            .find(|n| n.slug.as_str() == slug)
            .expect("newsletter exists");
        self.store
            .subscribers_page(newsletter.id, None, 0, 10_000)
            .await
            .expect("subscribers")
            .into_iter()
            .map(|r| (r.email, r.status))
            .collect()
    }

    pub async fn status_of(&self, email: &str, slug: &str) -> Option<SubscriptionStatus> {
        self.subscribers(slug).await.into_iter().find(|(e, _)| e == email).map(|(_, s)| s)
    }

    /// The reader's (rhythm, zone) on a newsletter as stored; `None` fields are the newsletter's defaults.
    pub async fn rhythm_of(&self, email: &str, slug: &str) -> Option<(Option<Rhythm>, Option<String>)> {
        let newsletter = self.newsletter(slug).await;
        let rows = self.store.subscribers_page(newsletter.id, None, 0, 1000).await.expect("subscribers");
        rows.into_iter().find(|r| r.email == email).map(|r| (r.rhythm, r.zone.map(|z| z.name().to_owned())))
    }

    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// The links Bulletin puts in mail, signed with the test secret.
    pub fn links(&self) -> Links {
        Links::new(&self.base, self.keys())
    }

    pub fn keys(&self) -> LinkKeys {
        use secrecy::ExposeSecret;
        let previous = self.settings.server.previous_secrets.iter().map(|s| s.expose_secret().as_bytes().to_vec());
        LinkKeys::new(self.settings.server.secret.expose_secret().as_bytes().to_vec(), previous.collect())
    }

    pub async fn newsletter(&self, slug: &str) -> Newsletter {
        self.store.list_newsletters().await.unwrap().into_iter().find(|n| n.slug.as_str() == slug).expect("newsletter")
    }

    /// Imports confirmed subscribers the way `bulletin subscribers import --confirmed` does.
    pub async fn import_confirmed(&self, slug: &str, emails: &[String]) {
        let newsletter = self.newsletter(slug).await;
        import_confirmed(&self.store, &self.keys(), &self.clock, &newsletter, emails).await;
    }

    /// Queues an issue the way `bulletin issue send --detach` does; the running engine sends it.
    pub async fn queue_issue(&self, slug: &str, subject: &str, markdown: &str) -> i64 {
        let draft = Draft::new(self.newsletter(slug).await, subject, markdown.to_owned()).expect("draft");
        draft.queue(&self.store, self.clock.now()).await.expect("queued").0
    }

    /// Waits (up to 30 s) until the issue reaches `status`.
    pub async fn wait_issue(&self, id: i64, status: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let issue = self.store.issue(id).await.unwrap().expect("issue");
            if issue.status.as_str() == status {
                return;
            }
            let counts = self.delivery_counts(id).await;
            assert!(std::time::Instant::now() < deadline, "issue {id} is {}, not {status}: {counts:?}", issue.status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn delivery_counts(&self, issue: i64) -> std::collections::HashMap<String, i64> {
        self.store.delivery_counts(Some(issue)).await.unwrap().into_iter().collect()
    }
}

async fn start(settings: &mut Settings, clock: &Clock, options: &StartOptions) -> (Running, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    settings.server.listen = addr;
    settings.server.public_url = base.clone();
    let running = app::start_with(settings, clock.clone(), listener, options.clone()).await.expect("app starts");
    (running, base)
}

pub fn serde_urlencoded_pairs(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page's HTML with the entities a reader never sees decoded, for text assertions.
pub fn visible(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// The first `href` in a page that contains `needle`.
pub fn href(html: &str, needle: &str) -> String {
    html.split("href=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap_or(0)])
        .find(|h| h.contains(needle))
        .unwrap_or_else(|| panic!("no link with {needle}"))
        .to_owned()
}
