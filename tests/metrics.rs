//! Prometheus metrics: an operator points a scraper at `server.metrics_listen`
//! and sees what readers and the delivery engine did, moved by exactly what
//! happened; without the setting nothing is served, anywhere.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::bin::write_config;
use common::{Backend, TestApp, TestDb};

const NEWSLETTER: &str = "morning-briefing";

/// One scrape of `GET /metrics` at `addr`, checked for its content type.
async fn scrape(http: &reqwest::Client, addr: SocketAddr) -> String {
    let response = http.get(format!("http://{addr}/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

/// The value of one series (`name{labels}` exactly as exposed); 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap_or_else(|_| panic!("{series}: {v:?} is not a number")))
}

/// The series that differ between two scrapes, with their change, for a failure message.
fn changes(before: &str, after: &str) -> String {
    after
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, _) = l.rsplit_once(' ')?;
            let delta = value(after, series) - value(before, series);
            (delta != 0.0).then(|| format!("{series} {delta:+}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn signups(outcome: &str, via: &str) -> String {
    format!("bulletin_signups_total{{outcome=\"{outcome}\",via=\"{via}\"}}")
}

fn deliveries(kind: &str, result: &str) -> String {
    format!("bulletin_deliveries_total{{kind=\"{kind}\",result=\"{result}\"}}")
}

fn requests(route: &str, method: &str, status: &str) -> String {
    format!("bulletin_http_request_duration_seconds_count{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}")
}

fn queue(kind: &str) -> String {
    format!("bulletin_queue_depth{{kind=\"{kind}\"}}")
}

/// Scrapes until the queue of `kind` shows `depth` (a mail can be in the
/// sink a moment before its row is settled), up to 10 s.
async fn wait_for_queue(http: &reqwest::Client, addr: SocketAddr, kind: &str, depth: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(http, addr).await;
        if value(&text, &queue(kind)) == depth {
            return;
        }
        assert!(Instant::now() < deadline, "the {kind} queue never came to {depth}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A signup through the JSON API from `ip` (behind the trusted proxy).
async fn signup_api(app: &TestApp, email: &str, ip: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/subscriptions"))
        .header("x-forwarded-for", ip)
        .json(&serde_json::json!({"email": email, "newsletters": [NEWSLETTER]}))
        .send()
        .await
        .unwrap()
}

/// Readers sign up (accepted, invalid, rate-limited, bot, time-trapped; by
/// form and by API), one confirms, an issue goes out to four with one
/// bounce, a reader leaves by one-click: every counter moves by exactly that,
/// the queue shows a scheduled issue and empties, and the latency histogram
/// names route templates, never a token or an address.
async fn counts_what_readers_and_the_engine_do(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.signup.per_ip_per_minute = 1;
    })
    .await
    else {
        return;
    };
    let metrics = app.metrics_addr().expect("metrics_listen set: served");
    let public: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    assert_ne!(metrics, public);
    let before = scrape(&app.http, metrics).await;
    assert_eq!(app.http.get(app.url("/metrics")).send().await.unwrap().status(), 404, "never on the public address");
    assert!(before.contains("# HELP bulletin_signups_total "), "{before}");
    let pace = value(&before, "bulletin_send_rate_limit_per_second");
    assert_eq!(pace, f64::from(app.settings.sending.rate_per_second), "{before}");
    let pool = if backend == Backend::Sqlite { "read" } else { "main" };
    let max = value(&before, &format!("bulletin_db_pool_max_connections{{pool=\"{pool}\"}}"));
    assert_eq!(max, f64::from(app.settings.database.max_connections), "{before}");

    let form = |email: &'static str| [("email", email), ("newsletter", NEWSLETTER), ("form", "several")];
    let reader = "reader@example.org";
    assert_eq!(app.post_form("/subscribe", &form(reader), Some("192.0.2.1")).await.status(), 200);
    assert_eq!(app.post_form("/subscribe", &form("not an address"), Some("192.0.2.2")).await.status(), 422);
    assert_eq!(app.post_form("/subscribe", &form("again@example.org"), Some("192.0.2.1")).await.status(), 429);
    let honeypot = [&form("bot@example.org")[..], &[("website", "http://spam.example")]].concat();
    assert_eq!(app.post_form("/subscribe", &honeypot, Some("192.0.2.3")).await.status(), 200);
    let trapped = [&form("hasty@example.org")[..], &[("ts", "1.not-a-stamp")]].concat();
    assert_eq!(app.post_form("/subscribe", &trapped, Some("192.0.2.4")).await.status(), 200);
    assert_eq!(signup_api(&app, "api@example.org", "192.0.2.5").await.status(), 202);
    assert_eq!(signup_api(&app, "not an address", "192.0.2.6").await.status(), 422);

    let link = app.confirmation_link(reader, 1).await;
    app.mail.wait_for("api@example.org", 1).await;
    wait_for_queue(&app.http, metrics, "confirmation", 0.0).await;
    assert_eq!(app.http.get(&link).send().await.unwrap().status(), 200);
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);

    let others = ["ada@example.org".to_owned(), "bo@example.org".to_owned(), "cy@example.org".to_owned()];
    app.import_confirmed(NEWSLETTER, &others).await;
    app.mail.reply_to_rcpt("cy@example.org", 550, "5.1.1 no such user");
    let newsletter = app.newsletter(NEWSLETTER).await;
    let draft = bulletin::delivery::Draft::new(newsletter, "First light", "Hello.".to_owned()).unwrap();
    let now = app.clock.now();
    let (issue, _) = draft.queue_at(&app.store, now, now + 3600).await.unwrap();
    let scheduled = scrape(&app.http, metrics).await;
    assert_eq!(value(&scheduled, &queue("issue")), 4.0, "{scheduled}");
    assert_eq!(value(&scheduled, &queue("confirmation")), 0.0, "{scheduled}");
    assert_eq!(value(&scheduled, &queue("digest")), 0.0, "{scheduled}");

    app.clock.advance(3601);
    app.wait_issue(issue, "done").await;
    let mail = app.mail.wait_for("ada@example.org", 1).await;
    assert_eq!(app.one_click_unsubscribe(&mail[0]).await.status(), 200);

    let after = scrape(&app.http, metrics).await;
    assert!(after.contains("# TYPE bulletin_http_request_duration_seconds histogram"), "{after}");
    let moved = |series: &str| value(&after, series) - value(&before, series);
    let expected = [
        (signups("accepted", "form"), 1.0),
        (signups("invalid", "form"), 1.0),
        (signups("rate_limited", "form"), 1.0),
        (signups("bot", "form"), 1.0),
        (signups("time_trap", "form"), 1.0),
        (signups("accepted", "api"), 1.0),
        (signups("invalid", "api"), 1.0),
        (signups("rate_limited", "api"), 0.0),
        (format!("bulletin_confirmations_total{{newsletter=\"{NEWSLETTER}\"}}"), 1.0),
        (format!("bulletin_unsubscribes_total{{newsletter=\"{NEWSLETTER}\",way=\"one-click\"}}"), 1.0),
        (deliveries("confirmation", "sent"), 2.0),
        (deliveries("issue", "sent"), 3.0),
        (deliveries("issue", "bounced"), 1.0),
        (deliveries("issue", "failed"), 0.0),
        ("bulletin_smtp_replies_total{class=\"2xx\"}".to_owned(), 5.0),
        ("bulletin_smtp_replies_total{class=\"5xx\"}".to_owned(), 1.0),
        ("bulletin_smtp_replies_total{class=\"4xx\"}".to_owned(), 0.0),
        (requests("/confirm/{token}", "GET", "2xx"), 1.0),
        (requests("/confirm/{token}", "POST", "2xx"), 1.0),
        (requests("/subscribe", "POST", "4xx"), 2.0),
        (requests("/api/subscriptions", "POST", "2xx"), 1.0),
        (requests("/unsubscribe/{token}", "POST", "2xx"), 1.0),
        (requests("unmatched", "GET", "4xx"), 1.0),
    ];
    for (series, by) in expected {
        assert_eq!(moved(&series), by, "{series}; what moved:\n{}", changes(&before, &after));
    }
    for kind in ["confirmation", "issue", "digest"] {
        assert_eq!(value(&after, &queue(kind)), 0.0, "{after}");
    }
    let token = link.rsplit('/').next().unwrap();
    assert!(!after.contains(token), "no token in the metrics");
    assert!(!after.contains('@'), "no address in the metrics: {after}");
    app.stop().await;
}

on_both_backends!(counts_what_readers_and_the_engine_do);

/// Without `server.metrics_listen` there is no metrics endpoint: `/metrics`
/// on the public listener is a 404 like any unknown path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default() {
    common::bounded(async {
        let app = TestApp::spawn(Backend::Sqlite).await.expect("SQLite is always there");
        assert_eq!(app.settings.server.metrics_listen, None);
        assert_eq!(app.metrics_addr(), None, "nothing listens for metrics");
        let response = app.http.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 404);
        assert!(!response.text().await.unwrap().contains("bulletin_"));
        app.stop().await;
    })
    .await;
}

/// `bulletin worker` (no web server) serves its metrics too, and says where;
/// an address already in use is refused with the setting's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_metrics() {
    common::bounded(async {
        let db = TestDb::create(Backend::Sqlite).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &db.url, "");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut worker = common::bin::KillOnDrop::start(
            &config,
            "worker",
            &[("BULLETIN_SERVER__METRICS_LISTEN", &addr.to_string())],
        );
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("http://{addr}/metrics")).send().await.is_err() {
            assert!(Instant::now() < deadline, "the worker's metrics did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = scrape(&http, addr).await;
        assert!(text.contains("bulletin_queue_depth{kind=\"confirmation\"} 0"), "{text}");
        assert!(text.contains("bulletin_db_pool_connections{pool=\"write\",state=\"idle\"}"), "{text}");
        let elsewhere = http.get(format!("http://{addr}/healthz")).send().await.unwrap();
        assert_eq!(elsewhere.status(), 404, "only /metrics is served there");

        let second = Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(&config)
            .arg("worker")
            .env("BULLETIN_SERVER__METRICS_LISTEN", addr.to_string())
            .env("RUST_LOG", "error")
            .output()
            .expect("run a second worker");
        assert!(!second.status.success());
        let said = String::from_utf8_lossy(&second.stderr);
        assert!(said.contains(&format!("could not listen on {addr} (server.metrics_listen)")), "{said}");

        Command::new("kill").arg("-TERM").arg(worker.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = worker.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                worker.kill().unwrap();
                panic!("the worker did not stop within 10 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "{status}");
        let mut log = String::new();
        std::io::Read::read_to_string(&mut worker.stderr.take().unwrap(), &mut log).unwrap();
        assert!(log.contains(&format!("Metrics on http://{addr}/metrics")), "{log}");
    })
    .await;
}
