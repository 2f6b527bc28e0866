//! Slow and idle clients: every connection is bounded in time, the number of
//! connections is capped, and the server keeps serving everyone else.

mod common;

use std::time::{Duration, Instant};

use bulletin::config::Settings;
use bulletin::web::OPEN_BODY_BUDGET;
use common::bin::read_response;
use common::{Backend, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A Bulletin whose connection limits are set by `configure` (timeouts of a
/// second or so, so the tests are quick).
async fn spawn(configure: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, configure).await.expect("SQLite is always available")
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect")
}

/// Waits (at most `within`) for the server to close the connection; returns
/// how long that took and what arrived before.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let remaining = within.checked_sub(started.elapsed()).unwrap_or_default();
        match tokio::time::timeout(remaining, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return (started.elapsed(), String::from_utf8_lossy(&data).to_string()),
            Ok(Ok(n)) => data.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("still open after {within:?}; got {:?}", String::from_utf8_lossy(&data)),
        }
    }
}

async fn assert_serves(app: &TestApp) {
    let r = app.http.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bulletin\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_cut_off_after_the_header_timeout() {
    common::bounded(async {
        let app = spawn(|s| {
            s.server.header_read_timeout_seconds = 1;
            s.server.keepalive_idle_seconds = 30;
        })
        .await;
        let mut slow = connect(&app).await;
        slow.write_all(b"POST /subscribe HTTP/1.1\r\nHost: bulletin\r\nContent-Ty").await.unwrap();
        assert_serves(&app).await;
        let (after, _) = closed_within(&mut slow, Duration::from_secs(5)).await;
        assert!(after >= Duration::from_millis(800), "closed after {after:?}, before the timeout");

        // A connection that sends nothing at all is cut off the same way.
        let mut silent = connect(&app).await;
        let (after, _) = closed_within(&mut silent, Duration::from_secs(5)).await;
        assert!(after >= Duration::from_millis(800), "closed after {after:?}");
        assert_serves(&app).await;
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_at_once() {
    common::bounded(async {
        let app = spawn(|_| {}).await;
        for (path, content_type) in
            [("/subscribe", "application/x-www-form-urlencoded"), ("/api/subscriptions", "application/json")]
        {
            let mut client = connect(&app).await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: bulletin\r\nContent-Type: {content_type}\r\nContent-Length: 100000000\r\n\r\n"
            );
            client.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let (status, body) =
                tokio::time::timeout(Duration::from_secs(2), read_response(&mut client)).await.expect("answered at once");
            assert_eq!(status, 413, "{path}: {body}");
            assert!(started.elapsed() < Duration::from_secs(2));
            if path.starts_with("/api/") {
                assert!(body.contains("payload_too_large"), "{body}");
            } else {
                assert!(body.contains("too large"), "{body}");
            }
        }
        assert_serves(&app).await;
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    common::bounded(async {
        let app = spawn(|s| s.server.body_read_timeout_seconds = 1).await;
        let mut client = connect(&app).await;
        client
            .write_all(
                b"POST /subscribe HTTP/1.1\r\nHost: bulletin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a%40",
            )
            .await
            .unwrap();
        let (after, answer) = closed_within(&mut client, Duration::from_secs(5)).await;
        assert!(after >= Duration::from_millis(800), "answered after {after:?}, before the timeout");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert_serves(&app).await;
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    common::bounded(async {
        let app = spawn(|s| {
            s.server.keepalive_idle_seconds = 1;
            s.server.header_read_timeout_seconds = 20;
        })
        .await;
        let mut client = connect(&app).await;
        // Kept alive between requests...
        for _ in 0..2 {
            client.write_all(HEALTHZ).await.unwrap();
            assert_eq!(read_response(&mut client).await.0, 200);
        }
        // ...until it idles past the limit.
        let (after, rest) = closed_within(&mut client, Duration::from_secs(5)).await;
        assert!(rest.is_empty(), "{rest}");
        assert!(after >= Duration::from_millis(800), "closed after {after:?}, before the idle timeout");
        assert_serves(&app).await;
        app.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_new_ones_wait_until_one_goes() {
    common::bounded(async {
        let app = spawn(|s| {
            s.server.max_connections = 2;
            s.server.keepalive_idle_seconds = 30;
            s.server.header_read_timeout_seconds = 30;
        })
        .await;
        // Two kept-alive connections take both slots (each answered, so both were accepted).
        let mut first = connect(&app).await;
        let mut second = connect(&app).await;
        for client in [&mut first, &mut second] {
            client.write_all(HEALTHZ).await.unwrap();
            assert_eq!(read_response(client).await.0, 200);
        }
        // A third waits in the backlog: no answer while both are held...
        let mut third = connect(&app).await;
        third.write_all(HEALTHZ).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(500), read_response(&mut third)).await;
        assert!(waiting.is_err(), "answered beyond max_connections");
        // ...and is served as soon as one goes.
        drop(first);
        let answered = tokio::time::timeout(Duration::from_secs(5), read_response(&mut third)).await;
        assert_eq!(answered.expect("served once a slot was free").0, 200);

        // Many more at once, each closing after its answer: all served in turn, nothing falls over.
        drop(second);
        drop(third);
        let clients = (0..20).map(|_| {
            let addr = app.base.trim_start_matches("http://").to_owned();
            tokio::spawn(async move {
                let mut client = TcpStream::connect(addr).await.expect("connect");
                client
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: bulletin\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                read_response(&mut client).await.0
            })
        });
        for client in clients.collect::<Vec<_>>() {
            let status = tokio::time::timeout(Duration::from_secs(10), client).await.expect("served").unwrap();
            assert_eq!(status, 200);
        }
        assert_serves(&app).await;
        app.stop().await;
    })
    .await;
}

/// The largest body of a form or an API signup.
const FORM_LIMIT: usize = 16 * 1024;

/// Against `bulletin serve`: bodies that anyone may send hold at most
/// `OPEN_BODY_BUDGET` bytes all together. Connections that each announce the
/// largest body and send a few bytes of it fill it; then a signup is
/// answered 503 "busy" with a Retry-After instead of holding more; once they
/// go, signups work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_are_bounded() {
    common::bounded(async {
        let db = common::TestDb::create(Backend::Sqlite).await.unwrap();
        let serve = common::bin::Serve::start(&db.url, "[signup]\nper_ip_per_minute = 0\n").await;
        let addr = serve.base.trim_start_matches("http://").to_owned();
        let head = format!(
            "POST /api/subscriptions HTTP/1.1\r\nHost: bulletin\r\nContent-Type: application/json\r\n\
             Content-Length: {FORM_LIMIT}\r\n\r\n{{\"email\": "
        );
        let mut holders = vec![];
        for _ in 0..OPEN_BODY_BUDGET / FORM_LIMIT + 10 {
            let mut holder = TcpStream::connect(&addr).await.unwrap();
            holder.write_all(head.as_bytes()).await.unwrap();
            holders.push(holder);
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let signup = |email: &str| {
            http.post(format!("{}/api/subscriptions", serve.base))
                .json(&serde_json::json!({"email": email, "newsletters": ["morning-briefing"]}))
                .send()
        };
        // Once the server has taken in every holder's head, a new body finds no room.
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in 0.. {
            let r = signup(&format!("during{n}@example.org")).await.unwrap();
            if r.status() == 503 {
                assert!(r.headers().contains_key("retry-after"));
                let body = r.text().await.unwrap();
                assert!(body.contains("\"busy\""), "{body}");
                break;
            }
            assert!(Instant::now() < deadline, "a signup still got room: {} {}", r.status(), r.text().await.unwrap());
        }
        assert!(serve.log().contains("fill the open budget"), "{}", serve.log());

        drop(holders);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = signup("after@example.org").await.unwrap().status();
            if status.is_success() {
                break;
            }
            assert!(Instant::now() < deadline, "no room again after the holders left: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}
