//! Ctrl-C during a foreground `bulletin issue send`, with the real binary and
//! a slow real SMTP server (Postfix `smtp-sink` waiting a second before each
//! DATA reply): the issue pauses, the messages in hand finish, the exit code
//! says so, and only `bulletin issue resume` continues it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bulletin::app;
use bulletin::clock::Clock;
use bulletin::signup::roster;
use bulletin::store::{MailCap, Store};
use common::{Backend, MailSink, TestDb};

/// A child process killed if the test ends without it having exited.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(path: &Path, db: &str, smtp: &str) {
    let text = format!(
        "[server]\nsecret = \"{}\"\n[database]\nurl = \"{db}\"\n[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://{smtp}\"\n\
         [sending]\nconcurrency = 4\nretry_base_seconds = 1\n",
        common::TEST_SECRET
    );
    std::fs::write(path, text).unwrap();
}

fn bulletin(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bulletin"));
    command.arg("--config").arg(config).args(args).env_remove("BULLETIN_CONFIG").env("RUST_LOG", "warn");
    command
}

async fn counts(store: &Store, id: i64) -> std::collections::HashMap<String, i64> {
    store.delivery_counts(Some(id)).await.unwrap().into_iter().collect()
}

async fn ctrl_c_pauses_a_foreground_send(backend: Backend) {
    // Postfix's smtp-sink waiting a second before each DATA reply.
    let Some(sink) = common::postfix::PostfixSink::start(&["-w", "1"]) else { return };
    let Some(db) = TestDb::create(backend).await else { return };
    let fast = MailSink::start();
    let settings = common::test_settings(&db.url, &fast);
    let services = app::services(&settings, Clock::system()).await.expect("services");
    let emails: Vec<String> = (0..60).map(|i| format!("r{i}@example.org")).collect();
    let newsletter = services.signup.catalog().all()[0].clone();
    let csv = format!("email\n{}\n", emails.join("\n"));
    let cap = MailCap { min_interval_secs: 900, per_day: 3 };
    let keys = services.signup.links().keys().clone();
    roster::import_csv(&services.store, &keys, &Clock::system(), &newsletter, csv.as_bytes(), true, cap).await.unwrap();
    let store = services.store.clone();

    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.toml");
    write_config(&slow, &db.url, sink.addr());
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Hello\n\nNews.\n").unwrap();
    let slug = newsletter.slug.to_string();
    let child = bulletin(&slow, &["issue", "send", "--newsletter", &slug, "--subject", "Interrupted", "--yes"])
        .arg(&issue)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start issue send");
    let mut child = Running(child);

    // Once the first messages went out, Ctrl-C (SIGINT to the process, as a terminal sends it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = match store.issues(None).await.unwrap().first() {
            Some(issue) => counts(&store, issue.id).await.get("sent").copied().unwrap_or(0),
            None => 0,
        };
        if sent >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let interrupted_at = Instant::now();
    Command::new("kill").arg("-INT").arg(child.0.id().to_string()).status().unwrap();
    let out: Output = {
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "issue send did not stop within 20 s of Ctrl-C");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let taken = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap());
        taken.wait_with_output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("stopped {:?} after Ctrl-C; {stderr}", interrupted_at.elapsed());
    assert_eq!(out.status.code(), Some(130), "Ctrl-C exits 130: {stderr}");
    let id = store.issues(None).await.unwrap()[0].id;
    assert!(stderr.contains(&format!("Paused issue #{id} after ")), "{stderr}");
    assert!(stderr.contains(&format!("`bulletin issue resume {id}` continues")), "{stderr}");

    let issue = store.issue(id).await.unwrap().unwrap();
    assert_eq!(issue.status.as_str(), "paused", "Ctrl-C pauses the issue");
    let at_stop = counts(&store, id).await;
    assert_eq!(at_stop.get("sending"), None, "the messages in hand finished: {at_stop:?}");
    let sent = at_stop.get("sent").copied().unwrap_or(0);
    assert!((4..60).contains(&sent), "{at_stop:?}");

    // `issue resume` (here through a fast server) finishes it and exits 0.
    let fast_config = dir.path().join("fast.toml");
    write_config(&fast_config, &db.url, &fast.addr.to_string());
    let out = bulletin(&fast_config, &["issue", "resume", &id.to_string()]).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("{} sent", 60)), "{stderr}");
    assert_eq!(store.issue(id).await.unwrap().unwrap().status.as_str(), "done");
    assert_eq!(fast.count() as i64, 60 - sent, "nobody already sent to gets a second copy");
    store.close().await;
}

/// A send that ends with messages not delivered exits 3, not 0, and their
/// warnings come as one counted line instead of one line per message.
async fn undelivered_messages_exit_3(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let sink = MailSink::start();
    let gone: Vec<String> = (0..20).map(|i| format!("gone{i}@example.org")).collect();
    for address in &gone {
        sink.reply_to_rcpt(address, 550, "5.1.1 No such user");
    }
    let settings = common::test_settings(&db.url, &sink);
    let services = app::services(&settings, Clock::system()).await.expect("services");
    let newsletter = services.signup.catalog().all()[0].clone();
    let cap = MailCap { min_interval_secs: 900, per_day: 3 };
    let keys = services.signup.links().keys().clone();
    let csv = format!("email\nhere@example.org\n{}\n", gone.join("\n"));
    roster::import_csv(&services.store, &keys, &Clock::system(), &newsletter, csv.as_bytes(), true, cap).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    write_config(&config, &db.url, &sink.addr.to_string());
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "News.\n").unwrap();
    let slug = newsletter.slug.to_string();
    let out = bulletin(&config, &["issue", "send", "--newsletter", &slug, "--subject", "Some bounce", "--yes"])
        .arg(&issue)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("1 sent, 20 failed"), "{stderr}");
    let warned: Vec<&str> = stderr.lines().filter(|l| l.contains("mailbox does not exist")).collect();
    assert_eq!(warned.len(), 1, "one counted line, not one per message: {stderr}");
    assert!(warned[0].contains("20 × mailbox does not exist") && warned[0].contains("5.1.1"), "{stderr}");
    services.store.close().await;
}

on_both_backends!(ctrl_c_pauses_a_foreground_send, undelivered_messages_exit_3);
