//! The mail server misbehaving as real ones do: down when an issue starts,
//! dropping idle connections, restarting between two messages, refusing
//! one recipient, asking to slow down.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bin::{issue_status, ledger, write_config};
use common::postfix::PostfixSink;
use common::smtp::ClosedPort;
use common::{Backend, MailSink, TestApp, TestDb};

/// An issue started while nothing listens on the SMTP port waits for the
/// server, spends no attempt and fails nothing; `issue status` says it is
/// waiting; once a server listens there, everyone gets exactly one copy.
async fn outage_holds_the_issue_until_the_server_returns(backend: Backend) {
    let port = ClosedPort::reserve();
    let addr = port.addr;
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = format!("smtp://{addr}").into();
        s.sending.concurrency = 4;
        s.sending.max_attempts = 2; // spent within about two seconds if refusals counted
    })
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), app.database_url(), &format!("smtp_url = \"smtp://{addr}\""));
    let emails: Vec<String> = (0..40).map(|i| format!("outage{i}@example.org")).collect();
    app.import_confirmed("weekend-reads", &emails).await;
    let id = app.queue_issue("weekend-reads", "Despite the outage", "Body.").await;

    // Positive signal first: status reports the wait, through two tries of the server at least.
    let started = Instant::now();
    let mut waiting_seen = None;
    while started.elapsed() < Duration::from_secs(4) || waiting_seen.is_none() {
        let rows = ledger(app.database_url(), id).await;
        assert_eq!(rows.len(), 40);
        assert!(
            rows.iter().all(|(status, attempts)| status == "queued" && *attempts == 0),
            "the outage must not touch the rows: {rows:?}"
        );
        let status = issue_status(&config, id);
        if status.contains("waiting for the mail server since") {
            waiting_seen.get_or_insert(status.clone());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "status never showed the wait: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = waiting_seen.unwrap();
    assert!(status.contains("Status: sending"), "{status}");
    assert!(status.contains(&addr.to_string()), "says which server: {status}");

    let sink = MailSink::start_on(port);
    app.wait_issue(id, "done").await;
    for email in &emails {
        assert_eq!(sink.mails_to(email).len(), 1, "{email}");
    }
    let rows = ledger(app.database_url(), id).await;
    assert!(rows.iter().all(|(status, attempts)| status == "sent" && *attempts == 1), "{rows:?}");
    assert!(!issue_status(&config, id).contains("waiting"), "the wait is over");
    app.stop().await;
}

/// `issue send` in the foreground during an outage: its progress lines say
/// it waits for the mail server, and it finishes by itself once one listens.
async fn foreground_send_shows_the_wait(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let port = ClosedPort::reserve();
    let addr = port.addr;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url, &format!("smtp_url = \"smtp://{addr}\""));
    let settings = bulletin::config::Settings::load(&config).unwrap();
    let services = bulletin::app::services(&settings, bulletin::clock::Clock::system()).await.unwrap();
    let newsletter = services.signup.catalog().all()[0].clone();
    let emails: Vec<String> = (0..10).map(|i| format!("fg{i}@example.org")).collect();
    let (keys, clock) = (services.signup.links().keys(), bulletin::clock::Clock::system());
    common::import_confirmed(&services.store, keys, &clock, &newsletter, &emails).await;
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "Sent despite the outage.").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(&config)
        .args(["issue", "send", "--newsletter", newsletter.slug.as_str(), "--subject", "Outage", "--yes"])
        .arg(&issue)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut output = vec![];
    while !output.iter().any(|l: &String| l.contains("waiting for the mail server since")) {
        assert!(Instant::now() < deadline, "no progress line shows the wait: {output:#?}");
        if let Ok(line) = seen.recv_timeout(Duration::from_millis(100)) {
            output.push(line);
        }
    }
    let sink = MailSink::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "issue send did not finish after the server came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    output.extend(seen.try_iter());
    eprintln!("{}", output.join("\n"));
    assert!(status.success(), "{output:#?}");
    assert!(output.iter().any(|l| l.contains("10 sent, 0 failed")), "{output:#?}");
    for email in &emails {
        assert_eq!(sink.mails_to(email).len(), 1, "{email}");
    }
    services.store.close().await;
}

/// `bulletin worker` says at start when the mail server cannot be reached, and what to check.
async fn worker_warns_at_start_when_the_server_is_unreachable(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let closed = ClosedPort::reserve();
    let config = write_config(dir.path(), &db.url, &format!("smtp_url = \"smtp://{}\"", closed.addr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .arg("--config")
        .arg(&config)
        .arg("worker")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let warning = seen.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let warning = warning.expect("a warning at start");
    assert!(warning.contains("cannot be reached") && warning.contains("check mail.smtp_url"), "{warning}");
}

/// A server that drops connections idle for 2 s: the next message after a
/// quiet spell goes out at once over a new connection, with no failed attempt.
async fn idle_connection_dropped_by_the_server_costs_no_retry(backend: Backend) {
    let Some(sink) = PostfixSink::start(&["-t", "2"]) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = sink.url().into();
        s.sending.concurrency = 1; // one connection, so the second message surely meets the stale one
        s.sending.retry_base_seconds = 30; // a retry would take 15 s or more
    })
    .await
    else {
        return;
    };
    app.signup_form("first@example.org", &["weekend-reads"]).await;
    wait_for_file(&sink, "first@example.org", Duration::from_secs(10)).await;
    // smtp-sink -t 2 closes a connection that sends nothing for 2 s: wait until it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.open_connections() > 0 {
        assert!(Instant::now() < deadline, "smtp-sink kept the idle connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    app.signup_form("second@example.org", &["weekend-reads"]).await;
    wait_for_file(&sink, "second@example.org", Duration::from_secs(5)).await;
    eprintln!("second confirmation arrived {:?} after the signup", asked.elapsed());
    wait_for_ledger(app.database_url(), 0, 2).await;
    let rows = ledger(app.database_url(), 0).await;
    assert_eq!(rows, vec![("sent".to_owned(), 1), ("sent".to_owned(), 1)], "no failed attempt");
    app.stop().await;
}

/// With `mail.smtp_idle_seconds` = 1 a connection left unused is closed
/// with QUIT by Bulletin, not kept until the server drops it; the next
/// message opens a new one.
async fn idle_connection_is_closed_after_the_limit(backend: Backend) {
    let Some(sink) = PostfixSink::start(&[]) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = sink.url().into();
        s.mail.smtp_idle_seconds = 1;
        s.sending.concurrency = 1;
    })
    .await
    else {
        return;
    };
    app.signup_form("idle@example.org", &["weekend-reads"]).await;
    wait_for_file(&sink, "idle@example.org", Duration::from_secs(10)).await;
    let sent = Instant::now();
    while sink.quits() == 0 {
        assert!(sent.elapsed() < Duration::from_secs(5), "the idle connection was not closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("idle connection closed {:?} after the message", sent.elapsed());
    assert!(sent.elapsed() >= Duration::from_millis(500), "not long before the limit");
    app.signup_form("after-idle@example.org", &["weekend-reads"]).await;
    wait_for_file(&sink, "after-idle@example.org", Duration::from_secs(5)).await;
    app.stop().await;
}

/// The server restarts between two messages: the kept connection is dead,
/// and the second message goes over a new one at once, with no failed attempt.
async fn server_restart_between_messages_costs_no_retry(backend: Backend) {
    let Some(mut sink) = PostfixSink::start(&[]) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = sink.url().into();
        s.sending.concurrency = 1;
        s.sending.retry_base_seconds = 30;
    })
    .await
    else {
        return;
    };
    app.signup_form("before@example.org", &["weekend-reads"]).await;
    wait_for_ledger(app.database_url(), 0, 1).await;
    sink.restart(&[]);
    let asked = Instant::now();
    app.signup_form("after@example.org", &["weekend-reads"]).await;
    wait_for_file(&sink, "after@example.org", Duration::from_secs(5)).await;
    eprintln!("confirmation after the restart arrived {:?} after the signup", asked.elapsed());
    wait_for_ledger(app.database_url(), 0, 2).await;
    let rows = ledger(app.database_url(), 0).await;
    assert_eq!(rows, vec![("sent".to_owned(), 1), ("sent".to_owned(), 1)], "no failed attempt");
    app.stop().await;
}

/// The server goes away in the middle of an issue: the kept connections
/// die and no new one opens. The messages in hand go back untouched (only a
/// message cut off after its body may be ambiguous), nothing fails, and the
/// rest goes out exactly once when the server is back.
async fn server_lost_mid_issue_loses_no_attempt(backend: Backend) {
    let Some(mut sink) = PostfixSink::start(&[]) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = sink.url().into();
        s.sending.concurrency = 4;
        s.sending.rate_per_second = 100;
        s.sending.max_attempts = 2;
    })
    .await
    else {
        return;
    };
    let emails: Vec<String> = (0..200).map(|i| format!("mid{i}@example.org")).collect();
    app.import_confirmed("weekend-reads", &emails).await;
    let id = app.queue_issue("weekend-reads", "Mid-issue", "Body.").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.count() < 40 {
        assert!(Instant::now() < deadline, "sending did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sink.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.store.mail_server_wait(app.clock.now()).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the engine never started waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every row the outage caught in hand has had its put-back stored by now or shortly: wait for none 'sending'.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = ledger(app.database_url(), id).await;
        if !rows.iter().any(|(status, _)| status == "sending") {
            break rows;
        }
        assert!(Instant::now() < deadline, "rows left sending: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (status, attempts) in &rows {
        match status.as_str() {
            "sent" | "ambiguous" => assert_eq!(*attempts, 1, "{rows:?}"),
            "queued" => assert_eq!(*attempts, 0, "an attempt was spent on the outage: {rows:?}"),
            other => panic!("{other} during the outage: {rows:?}"),
        }
    }
    sink.restart(&[]);
    app.wait_issue(id, "done").await;
    let rows = ledger(app.database_url(), id).await;
    let ambiguous = rows.iter().filter(|(status, _)| status == "ambiguous").count();
    assert!(ambiguous <= 4, "at most one cut-off message per connection: {rows:?}");
    assert_eq!(rows.iter().filter(|(status, _)| status == "sent").count() + ambiguous, 200, "{rows:?}");
    let maybe: Vec<String> = app.store.issue_failures(id, 10).await.unwrap().into_iter().map(|f| f.0).collect();
    for email in &emails {
        let copies = sink.complete_mails_to(email, "Subject: Mid-issue");
        if maybe.contains(email) {
            assert!(copies <= 1, "{email} is ambiguous and got {copies} copies");
        } else {
            assert_eq!(copies, 1, "{email}");
        }
    }
    app.stop().await;
}

/// A refused recipient (5xx or 4xx at RCPT) ends only that transaction:
/// the connection is kept with RSET and carries the rest of the issue.
async fn refused_recipient_keeps_the_connection(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.sending.concurrency = 1;
        s.sending.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    let emails: Vec<String> = (0..6).map(|i| format!("keep{i}@example.org")).collect();
    app.mail.reply_to_rcpt("keep1@example.org", 550, "5.1.1 No such user");
    app.mail.reply_to_rcpt("keep3@example.org", 451, "4.3.0 Try again later");
    app.import_confirmed("weekend-reads", &emails).await;
    let before = app.mail.connections();
    let id = app.queue_issue("weekend-reads", "One refused", "Body.").await;
    app.wait_issue(id, "done").await;
    let counts = app.delivery_counts(id).await;
    assert_eq!((counts.get("sent"), counts.get("bounced"), counts.get("failed")), (Some(&4), Some(&1), Some(&1)));
    for email in ["keep0@example.org", "keep2@example.org", "keep4@example.org", "keep5@example.org"] {
        assert_eq!(app.mail.mails_to(email).len(), 1, "{email}");
    }
    assert!(app.mail.connections() - before <= 1, "one connection for the whole issue, kept after each refusal");
    app.stop().await;
}

/// A server answering every recipient "421 4.7.0 Try later": the engine
/// halves its pace instead of knocking at the configured rate, and climbs
/// back once the server accepts mail again.
async fn slow_down_replies_halve_the_pace(backend: Backend) {
    let throttling = ["-r", "RCPT", "-b", "421 4.7.0 Try later"];
    let Some(mut sink) = PostfixSink::start(&throttling) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = sink.url().into();
        s.sending.rate_per_second = 20;
        s.sending.concurrency = 4;
        s.sending.max_attempts = 100;
    })
    .await
    else {
        return;
    };
    let emails: Vec<String> = (0..60).map(|i| format!("slow{i}@example.org")).collect();
    app.import_confirmed("weekend-reads", &emails).await;
    let id = app.queue_issue("weekend-reads", "Slowly", "Body.").await;
    // A measuring window: at 20/s the 60 rows and their quick retries take some 80 attempts
    // in 4 s; halving at each second's refusals (10, 5, 2.5, 1.25/s) takes about 20.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let attempts: i64 = ledger(app.database_url(), id).await.iter().map(|(_, n)| n).sum();
    eprintln!("attempts in the first 4 s of refusals: {attempts}");
    assert!(attempts >= 4, "the server was tried: {attempts}");
    assert!(attempts <= 40, "the pace was not cut: {attempts} attempts in 4 s at 20/s");
    sink.restart(&[]);
    app.wait_issue(id, "done").await;
    let rows = ledger(app.database_url(), id).await;
    assert!(rows.iter().all(|(status, _)| status == "sent"), "{rows:?}");
    app.stop().await;
}

async fn wait_for_file(sink: &PostfixSink, to: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while sink.mails_to(to) == 0 {
        assert!(Instant::now() < deadline, "no mail to {to} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` rows of `ledger(db_url, issue)` are settled.
async fn wait_for_ledger(db_url: &str, issue: i64, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = ledger(db_url, issue).await;
        if rows.iter().filter(|(status, _)| !matches!(status.as_str(), "queued" | "retry" | "sending")).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "rows not settled: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends!(
    outage_holds_the_issue_until_the_server_returns,
    foreground_send_shows_the_wait,
    worker_warns_at_start_when_the_server_is_unreachable,
    idle_connection_dropped_by_the_server_costs_no_retry,
    server_restart_between_messages_costs_no_retry,
    server_lost_mid_issue_loses_no_attempt,
    idle_connection_is_closed_after_the_limit,
    refused_recipient_keeps_the_connection,
    slow_down_replies_halve_the_pace,
);

/// Every way of failing to open a connection (refused, unknown host,
/// greeting or EHLO refused) reads as the server being unreachable, which
/// the engine waits out, never as a failure of the message in hand.
#[tokio::test]
async fn failing_to_open_a_connection_is_unreachable() {
    use bulletin::mail::{Outbound, SendFailure, SmtpTarget};
    let closed = ClosedPort::reserve();
    let mut urls = vec![format!("smtp://{}", closed.addr), "smtp://no-such-host.invalid:25".to_owned()];
    let greeting_refused = PostfixSink::start(&["-f", "CONNECT"]);
    let ehlo_refused = PostfixSink::start(&["-f", "EHLO,HELO"]);
    urls.extend(greeting_refused.iter().chain(&ehlo_refused).map(PostfixSink::url));
    for url in urls {
        let outbound = Outbound::Smtp(SmtpTarget::parse(&url).unwrap());
        let checked = tokio::time::timeout(Duration::from_secs(40), outbound.check()).await.expect("bounded");
        assert!(matches!(checked, Err(SendFailure::Unreachable(_))), "{url}: {checked:?}");
    }
}
