//! Faults in the SQLite file under a running Bulletin, for real: a full
//! disk (the database lives on a small tmpfs that the test fills with a
//! filler file), and the database file deleted.
//!
//! SQLite only, by nature: PostgreSQL's disk and files are the database
//! server's, not Bulletin's, and its failed transactions end on the server's side.
//!
//! Mounting needs root (the tests run as root here); where it is impossible
//! the full-disk test says why and skips, unless `BULLETIN_TEST_REQUIRE_TMPFS=1`
//! (as `.ci/run` sets) makes that a failure.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulletin::app;
use bulletin::clock::Clock;
use common::MailSink;

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) -> PathBuf {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path.to_owned()
}

/// A running Bulletin over the SQLite file `db`, and its address.
async fn start(db: &Path, mail: &MailSink) -> (app::Running, String) {
    let url = format!("sqlite://{}", db.display());
    let mut settings = common::test_settings(&url, mail);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    settings.server.listen = listener.local_addr().unwrap();
    settings.server.public_url = base.clone();
    let running = app::start(&settings, Clock::adjustable(), listener).await.expect("app starts");
    (running, base)
}

async fn signup(http: &reqwest::Client, base: &str, email: &str) -> reqwest::StatusCode {
    http.post(format!("{base}/api/subscriptions"))
        .json(&serde_json::json!({"email": email, "newsletters": ["morning-briefing"]}))
        .send()
        .await
        .expect("request")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recovers_once_a_full_disk_has_room_again() {
    let Some(tmpfs) = common::tmpfs::Tmpfs::mount("2m") else {
        return;
    };
    common::bounded(async {
        let mail = MailSink::start();
        let (running, base) = start(&tmpfs.path().join("bulletin.db"), &mail).await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();

        assert!(signup(&http, &base, "before@example.org").await.is_success());
        mail.wait_for("before@example.org", 1).await;

        // Fill the disk, then sign up (each with its own mail and rows) until one fails.
        let filler = fill(&tmpfs.path().join("filler"));
        let mut failed = None;
        for n in 0..200 {
            let status = signup(&http, &base, &format!("full{n}-{}@example.org", "x".repeat(40))).await;
            if !status.is_success() {
                failed = Some(status);
                break;
            }
        }
        let failed = failed.expect("a signup fails once the disk is full");
        assert!(failed.is_server_error(), "{failed}");

        // Room again: the very next signups succeed and their mail goes out.
        std::fs::remove_file(&filler).unwrap();
        for n in 0..3 {
            let email = format!("after{n}@example.org");
            let status = signup(&http, &base, &email).await;
            assert!(status.is_success(), "signup {n} after the disk has room again: {status}");
            mail.wait_for(&email, 1).await;
        }

        running.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fails_loudly_once_its_file_is_deleted() {
    common::bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data").join("bulletin.db");
        let mail = MailSink::start();
        let (running, base) = start(&db, &mail).await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        assert!(signup(&http, &base, "before@example.org").await.is_success());

        // The file, then its whole directory: no signup is acknowledged into an unlinked file.
        for name in ["bulletin.db", "bulletin.db-wal", "bulletin.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join("data").join(name));
        }
        for n in 0..3 {
            let status = signup(&http, &base, &format!("gone{n}@example.org")).await;
            assert_eq!(status.as_u16(), 503, "signup {n} with the file deleted: {status}");
        }
        let health = http.get(format!("{base}/healthz")).send().await.unwrap().status();
        assert_eq!(health.as_u16(), 503, "healthz sees the file is gone");
        std::fs::remove_dir_all(dir.path().join("data")).unwrap();
        let status = signup(&http, &base, "nodir@example.org").await;
        assert!(status.is_server_error(), "signup with the directory deleted: {status}");
        assert!(!db.exists(), "no fresh empty database is created in its place");
        running.stop().await;
    })
    .await;
}
