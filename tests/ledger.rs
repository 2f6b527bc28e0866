//! The delivery ledger under faults: sends that outlast their lease, results
//! the database refuses to store, a huge paused issue next to live mail.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use bulletin::app;
use bulletin::clock::Clock;
use bulletin::delivery::{Draft, Ledger, LedgerError};
use bulletin::domain::{IssueStatus, NewsletterSlug};
use bulletin::signup::roster;
use bulletin::store::{DeliveryKind, Handover, MailCap, Settlement, Store};
use common::{Backend, TestApp, TestDb};

/// Runs `sql` (one or more statements) on the test database through a
/// connection of its own, beside the application's pools.
async fn execute(url: &str, sql: &'static str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite connection");
        sqlx::raw_sql(sql).execute(&mut conn).await.expect("test SQL");
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres connection");
        sqlx::raw_sql(sql).execute(&mut conn).await.expect("test SQL");
        conn.close().await.unwrap();
    }
}

/// One number read straight from the test database.
async fn scalar(url: &str, sql: &'static str) -> Option<i64> {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite connection");
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect("test SQL")
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres connection");
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect("test SQL")
    }
}

/// Installs a trigger that makes the database refuse to store a bounce or a failure.
async fn refuse_bounces(url: &str) {
    if url.starts_with("sqlite:") {
        execute(
            url,
            "CREATE TRIGGER refuse_bounces BEFORE UPDATE OF status ON deliveries \
             WHEN NEW.status IN ('bounced', 'failed') \
             BEGIN SELECT RAISE(ABORT, 'injected: results refused'); END;",
        )
        .await;
    } else {
        execute(
            url,
            "CREATE FUNCTION refuse_bounces() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'injected: results refused'; END $$; \
             CREATE TRIGGER refuse_bounces BEFORE UPDATE ON deliveries FOR EACH ROW \
             WHEN (NEW.status IN ('bounced', 'failed')) EXECUTE FUNCTION refuse_bounces();",
        )
        .await;
    }
}

/// A store with `n` confirmed readers of weekend-reads and an issue queued
/// for them, no engine running: the test plays the worker.
async fn ledger_with_issue(db: &TestDb, n: usize, clock: &Clock) -> (Store, i64) {
    let sink = common::MailSink::start();
    let settings = common::test_settings(&db.url, &sink);
    let services = app::services(&settings, clock.clone()).await.expect("services");
    let slug = NewsletterSlug::parse("weekend-reads").unwrap();
    let newsletter = services.signup.catalog().by_slug(&slug).unwrap().clone();
    let csv = format!("email\n{}\n", (0..n).map(|i| format!("l{i}@example.org")).collect::<Vec<_>>().join("\n"));
    let cap = MailCap { min_interval_secs: 900, per_day: 3 };
    let keys = services.signup.links().keys().clone();
    roster::import_csv(&services.store, &keys, clock, &newsletter, csv.as_bytes(), true, cap).await.unwrap();
    let draft = Draft::new(newsletter, "Ledger test", "Body.".into()).unwrap();
    let (id, queued) = draft.queue(&services.store, clock.now()).await.unwrap();
    assert_eq!(queued, n as u64);
    (services.store, id)
}

/// Claims up to `limit` due rows under `token` and marks them `sending`, as a worker does.
async fn claim_and_hand_over(store: &Store, clock: &Clock, token: &str, limit: i64) -> Vec<i64> {
    let claimed = store.claim_deliveries(clock.now(), LEASE, token, limit).await.unwrap();
    let rows: Vec<(i64, DeliveryKind)> = claimed.iter().map(|d| (d.id, d.kind)).collect();
    let handed = store.hand_over(token, &rows, clock.now() + LEASE).await.unwrap();
    assert!(handed.iter().all(|(_, h)| *h == Handover::Go), "{handed:?}");
    rows.into_iter().map(|(id, _)| id).collect()
}

const LEASE: i64 = 5;

/// A result that comes after its lease ran out and recovery marked the row
/// `ambiguous` changes nothing, not even on an issue already done; a row
/// still held is settled as usual.
async fn late_result_changes_nothing(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let clock = Clock::adjustable();
    let (store, issue) = ledger_with_issue(&db, 3, &clock).await;
    let late = claim_and_hand_over(&store, &clock, "late", 2).await;
    assert_eq!(late.len(), 2);
    clock.advance(LEASE + 1);
    assert_eq!(store.recover_expired(clock.now()).await.unwrap(), 2);
    let held = claim_and_hand_over(&store, &clock, "held", 10).await;
    assert_eq!(held.len(), 1);

    let (ledger, writer) = Ledger::start(store.clone(), clock.clone(), LEASE);
    let sent = Settlement::Sent { reply: "250 2.0.0 Ok".into() };
    let retry = Settlement::Retry { at: clock.now(), reply: "451 4.3.0 Try later".into() };
    assert!(matches!(ledger.settle_now(late[0], "late".into(), sent.clone()).await, Err(LedgerError::ClaimLost)));
    ledger.settle(late[1], "late".into(), retry.clone()).await.unwrap();
    ledger.settle_now(held[0], "held".into(), sent.clone()).await.expect("a held row is settled");
    drop(ledger);
    writer.await.unwrap();
    let counts: HashMap<String, i64> = store.delivery_counts(Some(issue)).await.unwrap().into_iter().collect();
    assert_eq!(counts, HashMap::from([("ambiguous".into(), 2), ("sent".into(), 1)]));

    // Once the issue is done, a late `retry` would never be claimed again: it must not be written either.
    store.complete_issues(clock.now()).await.unwrap();
    assert_eq!(store.issue(issue).await.unwrap().unwrap().status, IssueStatus::Done);
    assert!(store.settle(&[(late[1], "late", &retry)], clock.now()).await.unwrap().is_empty());
    let counts: HashMap<String, i64> = store.delivery_counts(Some(issue)).await.unwrap().into_iter().collect();
    assert_eq!(counts, HashMap::from([("ambiguous".into(), 2), ("sent".into(), 1)]));
}

/// A waiting sender learns that its result was refused, with the database's
/// reason as the error's source.
async fn refused_write_is_reported(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let clock = Clock::adjustable();
    let (store, issue) = ledger_with_issue(&db, 1, &clock).await;
    refuse_bounces(&db.url).await;
    let rows = claim_and_hand_over(&store, &clock, "claim", 10).await;
    let (ledger, _writer) = Ledger::start(store.clone(), clock.clone(), LEASE);
    let bounce = Settlement::Bounced { reply: "550 5.1.1 No such user".into() };
    let err = ledger.settle_now(rows[0], "claim".into(), bounce).await.expect_err("the write was refused");
    assert!(matches!(err, LedgerError::Store(_)), "{err:?}");
    let mut chain = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    assert!(chain.iter().any(|e| e.contains("injected: results refused")), "{chain:?}");
    let counts: HashMap<String, i64> = store.delivery_counts(Some(issue)).await.unwrap().into_iter().collect();
    assert_eq!(counts, HashMap::from([("sending".into(), 1)]), "the row stays as it was");
}

/// A message whose end-of-data reply comes after the lease has run out is
/// still the worker's: it is not recovered as `ambiguous` while in hand,
/// and its result is stored as sent.
async fn send_longer_than_the_lease_is_sent(backend: Backend) {
    // Postfix's smtp-sink answering the end of data only after 9 seconds.
    let Some(sink) = common::postfix::PostfixSink::start(&["-W", ".:9"]) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = sink.url().into();
        s.sending.lease_seconds = LEASE as u64;
        s.sending.concurrency = 1;
    })
    .await
    else {
        return;
    };
    app.import_confirmed("weekend-reads", &["slow@example.org".to_owned()]).await;
    let id = app.queue_issue("weekend-reads", "Slow server", "Body.").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.delivery_counts(id).await.get("sending") != Some(&1) {
        assert!(Instant::now() < deadline, "never handed over: {:?}", app.delivery_counts(id).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let handed_over = Instant::now();
    // Watched all along: the row goes from `sending` to `sent`, never through `ambiguous`.
    let counts = loop {
        let counts = app.delivery_counts(id).await;
        assert!(!counts.contains_key("ambiguous"), "recovered while in hand: {counts:?}");
        if !counts.contains_key("sending") {
            break counts;
        }
        assert!(handed_over.elapsed() < Duration::from_secs(20), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(handed_over.elapsed() > Duration::from_secs(LEASE as u64 + 2), "the send outlasted the lease");
    assert_eq!(counts, HashMap::from([("sent".into(), 1)]));
    app.wait_issue(id, "done").await;
    app.stop().await;
}

/// A result the database refuses to store has no consequences: a bounce not
/// recorded suppresses nobody, a policy refusal not recorded pauses nothing.
async fn refused_result_is_not_acted_on(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sending.concurrency = 1;
        s.sending.pause_after_policy_failures = 1;
    })
    .await
    else {
        return;
    };
    refuse_bounces(app.database_url()).await;
    app.mail.reply_to_rcpt("gone@example.org", 550, "5.1.1 No such user");
    app.import_confirmed("morning-briefing", &["gone@example.org".to_owned()]).await;
    app.mail.reply_to_rcpt("strict@example.org", 554, "5.7.1 Rejected by policy");
    app.import_confirmed("explaining-ukraine", &["strict@example.org".to_owned()]).await;
    app.import_confirmed("weekend-reads", &["next@example.org".to_owned()]).await;
    let bounced = app.queue_issue("morning-briefing", "To nobody", "Body.").await;
    let refused = app.queue_issue("explaining-ukraine", "Refused", "Body.").await;
    app.queue_issue("weekend-reads", "After them", "Body.").await;
    // One sender, rows in id order: once the last issue arrived, the others' results were dealt with.
    app.mail.wait_for("next@example.org", 1).await;
    let counts = app.delivery_counts(bounced).await;
    assert!(!counts.contains_key("bounced"), "{counts:?}");
    let suppressed = scalar(
        app.database_url(),
        "SELECT COUNT(*) FROM subscribers WHERE email = 'gone@example.org' AND suppressed_at IS NOT NULL",
    )
    .await;
    assert_eq!(suppressed, Some(0), "no suppression without a stored bounce");
    let counts = app.delivery_counts(refused).await;
    assert!(!counts.contains_key("failed"), "{counts:?}");
    let issue = app.store.issue(refused).await.unwrap().unwrap();
    assert_eq!(issue.status, IssueStatus::Sending, "no pause without a stored refusal: {issue:?}");
    app.stop().await;
}

/// SQL that bulk-inserts `$n` confirmed readers of weekend-reads and a
/// paused issue with a queued row for each, due before anything else.
macro_rules! paused_issue_sql {
    ($n:literal) => {
        concat!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ",
            $n,
            ") INSERT INTO subscribers (email, email_key, created_at) \
             SELECT 'paused' || i || '@example.org', 'paused' || i || '@example.org', 0 FROM n; \
             INSERT INTO issues (newsletter_id, subject, body_markdown, content_hash, status, paused_reason, created_at) \
             SELECT id, 'Paused', 'Body.', 'paused', 'paused', 'paused by the test', 0 FROM newsletters \
             WHERE slug = 'weekend-reads'; \
             INSERT INTO deliveries (kind, issue_id, subscriber_id, status, next_attempt_at, created_at) \
             SELECT 'issue', (SELECT MAX(id) FROM issues), id, 'queued', 0, 0 FROM subscribers \
             WHERE email LIKE 'paused%';"
        )
    };
}

/// A big paused issue does not hold up confirmation mail, and claims never
/// visit its rows: claiming next to 100 000 of them stays as cheap as on an
/// empty ledger (walking them took ~180 ms per claim on SQLite, ~50 ms on PostgreSQL).
async fn paused_issue_does_not_delay_confirmations(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    execute(app.database_url(), paused_issue_sql!(100000)).await;
    let started = Instant::now();
    app.signup_api("fresh@example.org", &["morning-briefing"]).await;
    app.mail.wait_for("fresh@example.org", 1).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "confirmation took {took:?}");
    let mut claims = vec![];
    for i in 0..11 {
        let started = Instant::now();
        let claimed = app.store.claim_deliveries(app.clock.now(), 60, &format!("probe{i}"), 1000).await.unwrap();
        claims.push(started.elapsed());
        assert!(claimed.is_empty(), "a paused issue's rows are not claimed: {} claimed", claimed.len());
    }
    claims.sort();
    assert!(claims[5] < Duration::from_millis(20), "median claim took {:?}: paused rows are walked", claims[5]);
    app.stop().await;
}

/// Runs the `bulletin` binary; (success, stdout, stderr).
fn bulletin(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BULLETIN_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run bulletin");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `bulletin issue retry` requeues a done issue's failed and ambiguous
/// messages with fresh attempts, and the running engine sends them.
async fn retry_requeues_failed_and_ambiguous(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = format!(
        "[database]\nurl = \"{}\"\n[server]\nsecret = \"{}\"\n[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://{}\"\n",
        app.database_url(),
        common::TEST_SECRET,
        app.mail.addr
    );
    std::fs::write(&config, text).unwrap();
    app.mail.reply_to_rcpt("refused@example.org", 552, "Mailbox full");
    let readers = ["ok@example.org", "refused@example.org", "maybe@example.org"].map(String::from);
    app.import_confirmed("weekend-reads", &readers).await;
    let id = app.queue_issue("weekend-reads", "Retry me", "Body.").await;
    app.wait_issue(id, "done").await;
    // The connection to maybe@ died after the end of data, as far as the ledger knows.
    execute(
        app.database_url(),
        "UPDATE deliveries SET status = 'ambiguous' WHERE subscriber_id = \
         (SELECT id FROM subscribers WHERE email = 'maybe@example.org')",
    )
    .await;
    let counts = app.delivery_counts(id).await;
    assert_eq!(counts, HashMap::from([("sent".into(), 1), ("failed".into(), 1), ("ambiguous".into(), 1)]));
    let id_arg = id.to_string();

    let (ok, _, err) = bulletin(&config, &["issue", "retry", &id_arg]);
    assert!(!ok && err.contains("1 failed and 1 ambiguous") && err.contains("--failed, --ambiguous"), "{err}");
    let (ok, _, err) = bulletin(&config, &["issue", "retry", "999", "--failed"]);
    assert!(!ok && err.contains("no issue #999"), "{err}");

    app.mail.clear_reply("refused@example.org");
    let (ok, out, err) = bulletin(&config, &["issue", "retry", &id_arg, "--failed"]);
    assert!(ok && out.contains("Requeued 1 message(s)"), "{out}{err}");
    app.mail.wait_for("refused@example.org", 1).await;
    app.wait_issue(id, "done").await;
    let attempts = scalar(
        app.database_url(),
        "SELECT attempts FROM deliveries WHERE subscriber_id = (SELECT id FROM subscribers WHERE email = 'refused@example.org')",
    )
    .await;
    assert_eq!(attempts, Some(1), "attempts start afresh");

    let (ok, out, err) = bulletin(&config, &["issue", "retry", &id_arg, "--ambiguous", "--failed"]);
    assert!(ok && out.contains("Requeued 1 message(s)"), "{out}{err}");
    app.mail.wait_for("maybe@example.org", 2).await;
    app.wait_issue(id, "done").await;
    assert_eq!(app.delivery_counts(id).await, HashMap::from([("sent".into(), 3)]));
    assert_eq!(app.mail.mails_to("ok@example.org").len(), 1, "sent messages are left alone");

    // A done issue with rows waiting (a completion that raced a requeue) is reopened by another retry.
    execute(
        app.database_url(),
        "UPDATE deliveries SET status = 'queued' WHERE subscriber_id = \
         (SELECT id FROM subscribers WHERE email = 'refused@example.org')",
    )
    .await;
    let (ok, out, err) = bulletin(&config, &["issue", "retry", &id_arg, "--failed"]);
    assert!(ok && out.contains("Requeued 0 message(s)") && err.contains("sends what waits"), "{out}{err}");
    app.mail.wait_for("refused@example.org", 2).await;
    app.wait_issue(id, "done").await;
    app.stop().await;
}

/// By hand: how long a claim takes next to a paused issue of 200 000 rows
/// (`cargo test --test ledger claim_latency -- --ignored --nocapture`).
async fn claim_latency_next_to_a_paused_issue(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let sink = common::MailSink::start();
    let settings = common::test_settings(&db.url, &sink);
    let services = app::services(&settings, Clock::system()).await.unwrap();
    execute(&db.url, paused_issue_sql!(200000)).await;
    let store = services.store;
    let now = Clock::system().now();
    let mut took = vec![];
    for i in 0..21 {
        let started = Instant::now();
        let claimed = store.claim_deliveries(now, 60, &format!("probe{i}"), 512).await.unwrap();
        took.push(started.elapsed());
        assert!(claimed.is_empty());
    }
    took.sort();
    eprintln!("{backend:?}: claim next to a paused issue of 200 000 rows: median {:?}, max {:?}", took[10], took[20]);
}

mod measure {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, run by hand"]
    async fn claim_latency_sqlite() {
        claim_latency_next_to_a_paused_issue(Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, run by hand"]
    async fn claim_latency_postgres() {
        claim_latency_next_to_a_paused_issue(Backend::Postgres).await;
    }
}

on_both_backends!(
    late_result_changes_nothing,
    refused_write_is_reported,
    send_longer_than_the_lease_is_sent,
    refused_result_is_not_acted_on,
    paused_issue_does_not_delay_confirmations,
    retry_requeues_failed_and_ambiguous
);
