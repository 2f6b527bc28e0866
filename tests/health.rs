//! `/healthz` asks the database, and a database outage makes requests fail
//! fast with a clear 503 instead of hanging.

mod common;

use std::time::{Duration, Instant};

use bulletin::store::{ACQUIRE_TIMEOUT, HEALTH_BUDGET};
use common::{Backend, TestApp};
use sqlx::Connection;

/// `/healthz` answers within the health budget (plus slack for a loaded
/// machine); returns its status and body.
async fn healthz(app: &TestApp) -> (u16, String) {
    let started = Instant::now();
    let r = app.http.get(app.url("/healthz")).send().await.expect("healthz answers");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert!(started.elapsed() < HEALTH_BUDGET + Duration::from_secs(2), "healthz took {:?}", started.elapsed());
    (status, body)
}

/// Polls `/healthz` until it answers `status` (at most 10 s).
async fn wait_health(app: &TestApp, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = healthz(app).await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "healthz still {got} ({body}), expected {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_unavailable_without_internals(body: &str) {
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(json["status"], "unavailable", "{body}");
    for internal in ["sqlx", "sqlite", "postgres", "locked", "bulletin_test", "pool"] {
        assert!(!body.to_lowercase().contains(internal), "{internal} leaked: {body}");
    }
}

/// A signup during the outage is answered 503 "try again" within `bound`.
async fn signup_is_refused_within(app: &TestApp, bound: Duration) {
    let started = Instant::now();
    let r = app.signup_form("outage@example.org", &["morning-briefing"]).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 503, "signup during the outage");
    assert!(r.headers().contains_key("retry-after"));
    let page = r.text().await.unwrap();
    assert!(page.contains("try again shortly"), "{page}");
    assert!(took < bound, "signup took {took:?}");

    let started = Instant::now();
    let r = app.signup_api("outage@example.org", &["morning-briefing"]).await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("\"unavailable\""), "{body}");
    assert!(started.elapsed() < bound, "API signup took {:?}", started.elapsed());
}

async fn healthz_follows_the_database(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, body) = healthz(&app).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    match backend {
        Backend::Sqlite => {
            // Another process holds the write lock: the writer cannot write.
            let path = app.database_url().trim_start_matches("sqlite://").to_owned();
            let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{path}")).await.unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut other).await.unwrap();
            let body = wait_health(&app, 503).await;
            assert_unavailable_without_internals(&body);
            // The writer waits out its busy timeout (10 s), then gives up with a 503.
            signup_is_refused_within(&app, ACQUIRE_TIMEOUT + Duration::from_secs(12)).await;
            sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
            other.close().await.unwrap();
        }
        Backend::Postgres => {
            // The database stops accepting connections and every session is killed.
            let admin_url = std::env::var("BULLETIN_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = app.database_url().rsplit('/').next().unwrap().to_owned();
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
            run(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).execute(&mut admin).await.unwrap();
            run(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .execute(&mut admin)
            .await
            .unwrap();
            let body = wait_health(&app, 503).await;
            assert_unavailable_without_internals(&body);
            signup_is_refused_within(&app, ACQUIRE_TIMEOUT + Duration::from_secs(3)).await;
            run(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).execute(&mut admin).await.unwrap();
            admin.close().await.unwrap();
        }
    }

    // Back when the database is.
    wait_health(&app, 200).await;
    let r = app.signup_form("after@example.org", &["morning-briefing"]).await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

on_both_backends!(healthz_follows_the_database);
