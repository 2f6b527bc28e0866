//! `/healthz` asks the database, and a database outage makes requests fail
//! fast with a clear 503 instead of hanging.

mod common;

use std::time::{Duration, Instant};

use bulletin::store::{ACQUIRE_TIMEOUT, HEALTH_BUDGET};
use common::{Backend, TestApp};
use secrecy::ExposeSecret;
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

/// Writes zeros to `path` until its file system is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

/// Signs up fresh addresses until one is refused (at most 200); returns its status.
async fn signup_until_refused(app: &TestApp) -> u16 {
    for n in 0..200 {
        let status =
            app.signup_api(&format!("w{n}-{}@example.org", "x".repeat(40)), &["morning-briefing"]).await.status();
        if !status.is_success() {
            return status.as_u16();
        }
    }
    panic!("every signup succeeded: writes never failed");
}

/// When the health check last wrote its probe, read straight from the database.
async fn probe_written_at(url: &str) -> Option<String> {
    const SQL: &str = "SELECT value FROM settings WHERE name = 'health_write_probe'";
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(SQL).fetch_optional(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(SQL).fetch_optional(&mut conn).await.unwrap()
    }
}

/// A database that answers reads but refuses writes is not healthy: SQLite
/// on a full disk (a 2 MB tmpfs), PostgreSQL made read-only (as a standby
/// is). `/healthz` says so with the reason, and is 200 again once writes work.
async fn healthz_fails_while_writes_fail(backend: Backend) {
    let tmpfs = match backend {
        Backend::Sqlite => match common::tmpfs::Tmpfs::mount("2m") {
            Some(tmpfs) => Some(tmpfs),
            None => return,
        },
        Backend::Postgres => None,
    };
    let on_tmpfs = tmpfs.as_ref().map(|t| format!("sqlite://{}", t.path().join("bulletin.db").display()));
    // On SQLite the app runs on the tmpfs; `app.store` (the harness's own file) is not used here.
    let configure = |s: &mut bulletin::config::Settings| {
        if let Some(url) = on_tmpfs {
            s.database.url = secrecy::SecretString::from(url);
        }
    };
    let Some(app) = TestApp::spawn_with(backend, configure).await else {
        return;
    };
    assert_eq!(healthz(&app).await, (200, r#"{"status":"ok"}"#.to_owned()));
    // The check wrote its probe; asked again at once, it does not write again.
    let url = app.settings.database.url.expose_secret().to_owned();
    let written = probe_written_at(&url).await.expect("the health check wrote its probe");
    assert_eq!(healthz(&app).await.0, 200);
    assert_eq!(probe_written_at(&url).await, Some(written), "a second check at once wrote again");
    assert!(app.signup_api("before@example.org", &["morning-briefing"]).await.status().is_success());

    let admin_url =
        std::env::var("BULLETIN_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = app.database_url().rsplit('/').next().unwrap().to_owned();
    let pg_admin = |sql: String| {
        let admin_url = admin_url.clone();
        async move {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
            admin.close().await.unwrap();
        }
    };
    // Sessions opened before the change keep their setting: end them all.
    let end_sessions = || {
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
    };

    let filler = tmpfs.as_ref().map(|t| t.path().join("filler"));
    let reason = match &filler {
        Some(filler) => {
            fill(filler);
            let refused = signup_until_refused(&app).await;
            assert!((500..600).contains(&refused), "a signup on the full disk: {refused}");
            "disk_full"
        }
        None => {
            pg_admin(format!("ALTER DATABASE {name} SET default_transaction_read_only = on")).await;
            pg_admin(end_sessions()).await;
            assert_eq!(signup_until_refused(&app).await, 503, "a signup on the read-only database");
            "read_only"
        }
    };
    let body = wait_health(&app, 503).await;
    assert_unavailable_without_internals(&body);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["reason"], reason, "{body}");

    // Writes work again: healthz follows, and so do signups.
    match &filler {
        Some(filler) => std::fs::remove_file(filler).unwrap(),
        None => {
            pg_admin(format!("ALTER DATABASE {name} RESET default_transaction_read_only")).await;
            pg_admin(end_sessions()).await;
        }
    }
    wait_health(&app, 200).await;
    assert!(app.signup_api("after@example.org", &["morning-briefing"]).await.status().is_success());
    app.stop().await;
    drop(tmpfs);
}

on_both_backends!(healthz_follows_the_database, healthz_fails_while_writes_fail);
