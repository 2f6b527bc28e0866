//! What operators are told when something is wrong, through the real binary
//! (each cause once, and what to check), and the consent record under a
//! flood of identical signups.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bulletin::domain::ConsentSource;
use bulletin::store::{Consent, ConsentEvent};
use common::bin::{SilentServer, bulletin_within, write_config};
use common::db::HeldLock;
use common::{Backend, TestApp, TestDb};

/// Runs `bulletin migrate` with `config` as the config file's text; returns (success, stderr).
fn migrate_with(dir: &Path, config: &str) -> (bool, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .env_remove("BULLETIN_CONFIG")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A cron job runs `bulletin --config /srv/news/config.toml …` from its own
/// directory: the relative SQLite path still means the one next to the config.
#[test]
fn relative_paths_are_read_from_the_config_files_directory() {
    let site = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = site.path().join("config.toml");
    std::fs::write(&config, "[database]\nurl = \"sqlite://data/bulletin.db\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .current_dir(elsewhere.path())
        .env_remove("BULLETIN_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(site.path().join("data/bulletin.db").exists(), "the database sits beside the config");
    assert!(!elsewhere.path().join("data").exists(), "nothing made where the command ran");
}

#[test]
fn a_config_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = migrate_with(dir.path(), "[signup]\nper_ip_per_minit = 5\n");
    assert!(!ok);
    assert_eq!(stderr.matches("unknown field: found `per_ip_per_minit`").count(), 1, "{stderr}");
    let (ok, stderr) = migrate_with(dir.path(), "[database]\nmax_connections = \"many\"\n");
    assert!(!ok);
    assert_eq!(stderr.matches("expected u32").count(), 1, "{stderr}");
}

#[test]
fn a_database_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.db");
    std::fs::write(&file, "these are notes, not a database, and long enough to have a header").unwrap();
    let (ok, stderr) = migrate_with(dir.path(), &format!("[database]\nurl = \"sqlite://{}\"\n", file.display()));
    assert!(!ok);
    assert_eq!(stderr.matches("file is not a database").count(), 1, "{stderr}");
}

#[test]
fn an_unreachable_postgres_says_where_and_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (ok, stderr) =
        migrate_with(dir.path(), &format!("[database]\nurl = \"postgres://postgres@127.0.0.1:{port}/bulletin\"\n"));
    assert!(!ok);
    let said = format!("could not connect to PostgreSQL at 127.0.0.1:{port}: connection refused; check that");
    assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    assert!(!stderr.contains("pool timed out"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "said at once, not after the pool's timeout");
}

/// A host that accepts the connection and never answers (a frozen
/// PostgreSQL, a proxy with nothing behind it): `serve` and `migrate` give up
/// after `database.connect_timeout_seconds` (10 s by default) and say where,
/// and what to check.
#[test]
fn a_silent_postgres_is_given_up_on_in_time() {
    let silent = SilentServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("postgres://postgres@127.0.0.1:{}/x", silent.port), "");
    let said =
        format!("PostgreSQL at 127.0.0.1:{} accepted the connection but did not answer within 10 s", silent.port);
    let env = [("BULLETIN_SERVER__LISTEN", "127.0.0.1:0")];
    std::thread::scope(|scope| {
        let runs = ["serve", "migrate"].map(|command| {
            let (config, env) = (&config, &env);
            let run = scope.spawn(move || {
                let started = Instant::now();
                (bulletin_within(config, &[command], env, "", Duration::from_secs(30)), started.elapsed())
            });
            (command, run)
        });
        for (command, run) in runs {
            let (out, took) = run.join().unwrap();
            let out = out.unwrap_or_else(|| panic!("bulletin {command} was still waiting after 30 s"));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{command}: {stderr}");
            assert_eq!(stderr.matches(&said).count(), 1, "{command}: {stderr}");
            assert!(stderr.contains("database.connect_timeout_seconds"), "{command}: {stderr}");
            assert!(took >= Duration::from_secs(9), "{command} gave up after the deadline, not before: {took:?}");
        }
    });
}

/// Another session holds a lock `migrate` needs (a forgotten `psql`
/// transaction, a stuck job): it waits `database.lock_timeout_seconds` (SQLite:
/// its busy timeout, 10 s), then says what held it up; once the lock is gone
/// the same command succeeds.
async fn a_held_lock_is_waited_for_only_so_long(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url, "");
    let migrate = || {
        let config = config.clone();
        tokio::task::spawn_blocking(move || bulletin_within(&config, &["migrate"], &[], "", Duration::from_secs(30)))
    };
    let out = migrate().await.unwrap().expect("migrate on a free database");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let lock = HeldLock::take(&db.url, "_sqlx_migrations, newsletters").await;
    let out = migrate().await.unwrap().expect("migrate was still waiting for the lock after 30 s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let hint = match backend {
        Backend::Sqlite => "another process held the database's write lock",
        Backend::Postgres => "another session held a lock it needed for longer than database.lock_timeout_seconds",
    };
    assert_eq!(stderr.matches(hint).count(), 1, "{stderr}");

    lock.release().await;
    let out = migrate().await.unwrap().expect("migrate once the lock is gone");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

on_both_backends!(a_held_lock_is_waited_for_only_so_long);

/// 60 signups of one address at once are one consent to record; a later
/// signup for another newsletter, or after an unsubscribe, is recorded again.
async fn repeated_signups_record_one_consent(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let mut signups = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let (http, url) = (app.http.clone(), app.url("/api/subscriptions"));
        signups.spawn(async move {
            let body = serde_json::json!({"email": "flood@example.org", "newsletters": ["morning-briefing"]});
            http.post(url).json(&body).send().await.expect("request").status()
        });
    }
    while let Some(status) = signups.join_next().await {
        assert!(status.unwrap().is_success());
    }
    let morning = app.newsletter("morning-briefing").await.id;
    let weekend = app.newsletter("weekend-reads").await.id;
    let subscriber = app.store.subscribers_page(morning, None, 0, 10).await.unwrap()[0].subscriber_id;
    let signups_recorded =
        |events: &[ConsentEvent]| events.iter().filter(|e| e.action == "signup").map(|e| e.newsletter_id).collect();
    let events = app.store.consent_events(subscriber).await.unwrap();
    let recorded: Vec<i64> = signups_recorded(&events);
    assert_eq!(recorded, vec![morning], "one consent row, not 60: {} rows", recorded.len());

    assert!(app.signup_api("flood@example.org", &["morning-briefing", "weekend-reads"]).await.status().is_success());
    let events = app.store.consent_events(subscriber).await.unwrap();
    assert_eq!(signups_recorded(&events), vec![morning, weekend], "{events:?}");

    let consent = Consent { source: ConsentSource::UnsubscribePage, ip: None, user_agent: None, at: app.clock.now() };
    assert!(app.store.unsubscribe(subscriber, morning, &consent).await.unwrap());
    assert!(app.signup_api("flood@example.org", &["morning-briefing"]).await.status().is_success());
    let events = app.store.consent_events(subscriber).await.unwrap();
    assert_eq!(signups_recorded(&events), vec![morning, weekend, morning], "coming back is a new consent: {events:?}");
    app.stop().await;
}

on_both_backends!(repeated_signups_record_one_consent);
