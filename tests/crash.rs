//! Real processes under faults: a `bulletin worker` killed with SIGKILL
//! mid-issue, two workers on one database, and an SMTP server that hangs up
//! after the end of data.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulletin::app;
use bulletin::clock::Clock;
use bulletin::delivery::Draft;
use bulletin::signup::roster;
use bulletin::store::{MailCap, Store};
use common::{Backend, MailSink, TestApp, TestDb};

/// A `bulletin worker` child process, killed if the test ends without stopping it.
struct Worker(Child);

impl Worker {
    fn start(config: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(config)
            .arg("worker")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker");
        Self(child)
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "worker exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "worker did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, db: &str, smtp: &str, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[server]\nsecret = \"{}\"\n[database]\nurl = \"{db}\"\n[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://{smtp}\"\n\
         [sending]\nconcurrency = 4\nlease_seconds = 5\nretry_base_seconds = 1\n{extra}",
        common::TEST_SECRET
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Fills a newsletter with `n` confirmed readers and queues an issue for them.
async fn queue_issue(db: &TestDb, sink: &MailSink, n: usize) -> (Store, i64, Vec<String>) {
    let settings = common::test_settings(&db.url, sink);
    let services = app::services(&settings, Clock::system()).await.expect("services");
    let emails: Vec<String> = (0..n).map(|i| format!("r{i}@example.org")).collect();
    let newsletter = services.signup.catalog().all()[0].clone();
    let csv = format!("email\n{}\n", emails.join("\n"));
    let cap = MailCap { min_interval_secs: 900, per_day: 3 };
    let keys = services.signup.links().keys().clone();
    roster::import_csv(&services.store, &keys, &Clock::system(), &newsletter, csv.as_bytes(), true, cap).await.unwrap();
    let draft = Draft::new(newsletter, "Crash test", "Body.".into()).unwrap();
    let (id, queued) = draft.queue(&services.store, Clock::system().now()).await.unwrap();
    assert_eq!(queued, n as u64);
    (services.store, id, emails)
}

async fn wait_done(store: &Store, id: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let issue = store.issue(id).await.unwrap().unwrap();
        if issue.status == bulletin::domain::IssueStatus::Done {
            return;
        }
        let counts = store.delivery_counts(Some(id)).await.unwrap();
        assert!(Instant::now() < deadline, "issue not done: {} {counts:?}", issue.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn copies(sink: &MailSink, emails: &[String]) -> HashMap<String, usize> {
    emails.iter().map(|e| (e.clone(), sink.mails_to(e).len())).collect()
}

async fn ambiguous_emails(store: &Store, id: i64) -> Vec<String> {
    store.issue_failures(id, 10_000).await.unwrap().into_iter().filter(|f| f.1 == "ambiguous").map(|f| f.0).collect()
}

/// SIGKILL mid-issue, then a restart: everyone outside the ambiguous set
/// gets exactly one copy, and nobody gets two.
async fn worker_killed_mid_issue(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let sink = MailSink::start();
    let (store, id, emails) = queue_issue(&db, &sink, 300).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url, &sink.addr.to_string(), "rate_per_second = 150\n");

    let mut first = Worker::start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.count() < 100 {
        assert!(Instant::now() < deadline, "worker sent only {}", sink.count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.0.kill().unwrap(); // SIGKILL: no chance to clean up
    first.0.wait().unwrap();
    let at_kill = sink.count();
    assert!(at_kill < 300, "killed before the end");

    let second = Worker::start(&config);
    wait_done(&store, id, Duration::from_secs(40)).await;
    second.stop();

    let ambiguous = ambiguous_emails(&store, id).await;
    assert!(ambiguous.len() <= 4, "at most one message per connection was in flight: {ambiguous:?}");
    for (email, n) in copies(&sink, &emails) {
        if ambiguous.contains(&email) {
            assert!(n <= 1, "{email} is ambiguous but got {n} copies: ambiguous rows are never re-sent");
        } else {
            assert_eq!(n, 1, "{email}");
        }
    }
    let counts: HashMap<String, i64> = store.delivery_counts(Some(id)).await.unwrap().into_iter().collect();
    eprintln!("killed after {at_kill} messages; ledger after restart: {counts:?}");
    assert_eq!(counts.get("sent").copied().unwrap_or(0) + ambiguous.len() as i64, 300, "{counts:?}");
}

/// Two workers on one database share the work without sending anything twice.
async fn two_workers_send_each_message_once(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let sink = MailSink::start();
    let (store, id, emails) = queue_issue(&db, &sink, 400).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url, &sink.addr.to_string(), "");
    let a = Worker::start(&config);
    let b = Worker::start(&config);
    wait_done(&store, id, Duration::from_secs(40)).await;
    a.stop();
    b.stop();
    for (email, n) in copies(&sink, &emails) {
        assert_eq!(n, 1, "{email}");
    }
}

/// A connection that dies after the end of data leaves `ambiguous` rows,
/// which are reported and never re-sent blindly.
async fn hang_up_after_data_is_ambiguous(backend: Backend) {
    // Postfix's smtp-sink, hanging up after the end of data without replying.
    let Some(sink) = common::postfix::PostfixSink::start(&["-q", "."]) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = sink.url().into();
    })
    .await
    else {
        return;
    };
    let emails: Vec<String> = (0..3).map(|i| format!("amb{i}@example.org")).collect();
    app.import_confirmed("weekend-reads", &emails).await;
    let id = app.queue_issue("weekend-reads", "Maybe delivered", "Body.").await;
    app.wait_issue(id, "done").await;
    let counts = app.delivery_counts(id).await;
    assert_eq!(counts.get("ambiguous"), Some(&3), "{counts:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.delivery_counts(id).await, counts, "ambiguous rows stay as they are");
    let reported = app.store.issue_failures(id, 10).await.unwrap();
    assert!(reported.iter().all(
        |(_, status, reply)| status == "ambiguous" && reply.as_deref().unwrap_or("").contains("after the message")
    ));
    app.stop().await;
}

on_both_backends!(worker_killed_mid_issue, two_workers_send_each_message_once, hang_up_after_data_is_ambiguous);
