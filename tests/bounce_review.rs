//! What an operator sees of bounces and how they lift a suppression: `bounces
//! ingest --format json` names each recipient it acted on with its class,
//! reason, status and what was done; `suppressions review` finds the readers
//! the old rule (any 5.x.x suppressed) shut out for the sender's problems or
//! a full mailbox, and `--lift` gives them their mail back, while an address
//! that is really gone stays suppressed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use bulletin::domain::EmailAddress;
use bulletin::store::FeedbackEvent;
use common::bin::{bulletin, stdout_of};
use common::{Backend, TestApp};
use serde_json::{Value, json};

/// clap's usage error: the command line itself is wrong.
const USAGE: i32 = 2;

fn email(name: &str) -> String {
    format!("{name}@example.org")
}

/// An app with `readers` confirmed on morning-briefing, and a config file for the binary.
async fn app_with(backend: Backend, readers: &[&str], dir: &Path) -> Option<(TestApp, PathBuf)> {
    let app = TestApp::spawn(backend).await?;
    let emails: Vec<String> = readers.iter().map(|r| email(r)).collect();
    app.import_confirmed("morning-briefing", &emails).await;
    let config = common::bin::write_config(dir, app.database_url(), "");
    Some((app, config))
}

/// Runs `bulletin bounces ingest ARGS` with `stdin`, as Postfix's pipe does.
fn ingest(config: &Path, args: &[&str], stdin: &str) -> Output {
    let args: Vec<&str> = ["bounces", "ingest"].into_iter().chain(args.iter().copied()).collect();
    common::bin::bulletin_with_stdin(config, &args, stdin, "error")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout_of(out)).unwrap()
}

/// A DSN from a relay about several readers at once, as a list server's
/// relay sends one: no VERP address, no Message-ID of ours, so each
/// recipient is matched by address.
fn multi_recipient_dsn() -> String {
    let recipient = |name: &str, action: &str, status: &str, diagnostic: &str| {
        format!(
            "Final-Recipient: rfc822; {0}\nOriginal-Recipient: rfc822;{0}\nAction: {action}\nStatus: {status}\n\
             Remote-MTA: dns; mail.example.org\nDiagnostic-Code: smtp; {diagnostic}\n\n",
            email(name)
        )
    };
    let per_recipient = [
        recipient(
            "ada",
            "failed",
            "5.1.1",
            &format!("550 5.1.1 <{}>: Recipient address rejected: User unknown", email("ada")),
        ),
        recipient("bo", "failed", "5.2.2", "552 5.2.2 Quota exceeded"),
        recipient("cy", "failed", "5.7.1", "554 5.7.1 Email rejected per DMARC policy"),
        recipient("dee", "delayed", "4.4.7", "450 4.4.7 Greylisted, try again later"),
        recipient("zed", "failed", "5.1.1", "550 5.1.1 no such user"),
    ]
    .concat();
    format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@relay.example.com (Mail Delivery System)\nTo: news@example.com\n\
         Subject: Undelivered Mail Returned to Sender\nMessage-Id: <20261201093000.MULTI@relay.example.com>\n\
         Date: Tue, 01 Dec 2026 09:30:00 +0000\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B/relay\"\n\n\
         --B/relay\nContent-Type: text/plain\n\nYour message could not be delivered to some recipients.\n\n\
         --B/relay\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.com\n\n\
         {per_recipient}--B/relay--\n"
    )
}

/// Whether the reader `name` is suppressed.
async fn suppressed(app: &TestApp, name: &str) -> bool {
    let found = app.store.subscriber_by_email(&EmailAddress::parse(&email(name)).unwrap()).await.unwrap();
    found.expect("subscriber").bounced_at.is_some()
}

/// Each recipient of a DSN naming several is listed with its class, reason,
/// status and what was done, beside the summary counts scripts already read;
/// the same DSN again says "duplicate" for each, and `--verbose` prints a
/// line per recipient before the summary.
async fn ingest_lists_each_recipient_acted_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((app, config)) = app_with(backend, &["ada", "bo", "cy", "dee"], dir.path()).await else { return };
    let file = dir.path().join("multi.eml");
    std::fs::write(&file, multi_recipient_dsn()).unwrap();

    let summary = json_of(&ingest(&config, &["--format", "json", file.to_str().unwrap()], ""));
    let counts =
        ["messages", "hard_bounces_suppressed", "soft_bounces_counted", "sender_refusals", "ignored", "unmatched"];
    for (key, n) in counts.into_iter().zip([1, 1, 1, 1, 1, 1]) {
        assert_eq!(summary[key], json!(n), "{key} in {summary:#}");
    }
    let path = file.display().to_string();
    assert_eq!(
        summary["recipients"],
        json!([
            {"file": path, "recipient": email("ada"), "class": "hard_bounce", "reason": "user_unknown", "status": "5.1.1", "action": "suppressed"},
            {"file": path, "recipient": email("bo"), "class": "soft_bounce", "reason": "mailbox_full", "status": "5.2.2", "action": "counted", "count": 1},
            {"file": path, "recipient": email("cy"), "class": "sender_refused", "reason": "auth_failure", "status": "5.7.1", "action": "sender_refused"},
            {"file": path, "recipient": email("zed"), "class": "hard_bounce", "reason": "user_unknown", "status": "5.1.1", "action": "unmatched"},
        ]),
        "{summary:#}"
    );
    assert!(suppressed(&app, "ada").await);
    assert!(!suppressed(&app, "bo").await && !suppressed(&app, "cy").await && !suppressed(&app, "dee").await);

    // Again through standard input: the file is null, each recipient a duplicate.
    let again = json_of(&ingest(&config, &["--format", "json", "-"], &multi_recipient_dsn()));
    assert_eq!(again["already_applied"], json!(3), "{again:#}");
    let actions: Vec<(&Value, &str)> =
        again["recipients"].as_array().unwrap().iter().map(|r| (&r["file"], r["action"].as_str().unwrap())).collect();
    let null = Value::Null;
    assert_eq!(actions, [(&null, "duplicate"), (&null, "duplicate"), (&null, "duplicate"), (&null, "unmatched")]);

    let text = stdout_of(&ingest(&config, &["--verbose", "-"], &multi_recipient_dsn()));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], format!("standard input: {} hard_bounce user_unknown 5.1.1: already applied", email("ada")));
    assert!(lines[3].starts_with(&format!("standard input: {} hard_bounce", email("zed"))), "{text}");
    assert!(lines[4].starts_with("1 message: 0 hard bounces suppressed"), "{text}");
    // Without --verbose the summary stays one line, however many recipients.
    assert_eq!(stdout_of(&ingest(&config, &["-"], &multi_recipient_dsn())).lines().count(), 1);
    app.stop().await;
}

/// A hard bounce recorded as the code before classes by cause recorded
/// every 5.x.x in a DSN: the event, and the reader suppressed.
async fn old_hard_bounce(app: &TestApp, name: &str, detail: &str) {
    let reader = app.store.subscriber_by_email(&EmailAddress::parse(&email(name)).unwrap()).await.unwrap().unwrap();
    let report_id = format!("old-report-{name}");
    let event = FeedbackEvent {
        subscriber_id: reader.id,
        delivery_id: None,
        issue_id: None,
        kind: "hard_bounce",
        source: "dsn",
        detail,
        report_id: Some(&report_id),
        at: app.clock.now(),
    };
    app.store.record_hard_bounce(&event).await.unwrap().expect("recorded");
}

/// The addresses `suppressions review ARGS --format json` lists, with the reason each reads as now.
fn reviewed(config: &Path, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["suppressions", "review", "--format", "json"];
    all.extend(args);
    let list = json_of(&bulletin(config, &all));
    let mut found: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap().to_owned(), r["reason"].as_str().unwrap().to_owned()))
        .collect();
    found.sort();
    found
}

/// Readers the old rule suppressed for a DMARC refusal, a full mailbox (in a
/// DSN, and in an SMTP reply at sending time) are listed by `suppressions
/// review` with what their bounce reads as now, and lifted by `--lift`; a
/// reader whose address really is unknown is neither listed nor lifted, and
/// a reason the review does not know is refused, changing nothing.
async fn old_suppressions_are_reviewed_and_lifted(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((app, config)) = app_with(backend, &["ada", "bo", "cy", "dee", "eve"], dir.path()).await else { return };
    old_hard_bounce(&app, "ada", "5.7.1 smtp; 554 5.7.1 rejected per DMARC policy").await;
    old_hard_bounce(&app, "bo", "5.2.2 Quota exceeded").await;
    old_hard_bounce(&app, "cy", "5.1.1 smtp; 550 5.1.1 <address>: Recipient address rejected: User unknown").await;
    // At sending time the old rule suppressed on any 5.1.x reply, whatever it said.
    let pool = common::db::Pool::connect(app.database_url()).await;
    pool.run(&format!(
        "INSERT INTO deliveries (kind, subscriber_id, status, next_attempt_at, last_reply, created_at) \
         SELECT 'confirmation', id, 'bounced', 1, '550 5.1.1 <address>: mailbox full', 1 FROM subscribers \
         WHERE email = '{}'",
        email("dee")
    ))
    .await;
    pool.close().await;
    let dee = app.store.subscriber_by_email(&EmailAddress::parse(&email("dee")).unwrap()).await.unwrap().unwrap();
    app.store.suppress_bounced(dee.id, app.clock.now()).await.unwrap();
    for name in ["ada", "bo", "cy", "dee"] {
        assert!(suppressed(&app, name).await, "{name} suppressed by the old rule");
    }

    let listed = reviewed(&config, &[]);
    let expected = [("ada", "auth_failure"), ("bo", "mailbox_full"), ("dee", "mailbox_full")];
    assert_eq!(listed, expected.map(|(n, r)| (email(n), r.to_owned())), "cy's address is gone: not listed");
    let table = stdout_of(&bulletin(&config, &["suppressions", "review"]));
    assert!(table.contains("5.7.1 smtp; 554 5.7.1 rejected per DMARC policy"), "the recorded bounce: {table}");
    assert!(table.contains("3 bounce suppression(s) no longer read as gone"), "{table}");
    assert!(table.contains("--lift"), "says how to lift them: {table}");
    assert_eq!(reviewed(&config, &["--reason", "sender"]), [(email("ada"), "auth_failure".to_owned())]);
    assert_eq!(reviewed(&config, &["--reason", "auth_failure"]), [(email("ada"), "auth_failure".to_owned())]);
    assert_eq!(reviewed(&config, &["--reason", "blocked"]), []);

    // A name the review does not know, or one that reads as gone: a usage error that says why, nothing lifted.
    for (reason, says) in [("dmarc", "is no bounce reason or cause"), ("user_unknown", "reads as gone")] {
        let out = bulletin(&config, &["suppressions", "review", "--reason", reason, "--lift"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(USAGE), "{reason}: {stderr}");
        assert!(stderr.contains(says), "{reason}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(
        String::from_utf8_lossy(&bulletin(&config, &["suppressions", "review", "--reason", "dmarc"]).stderr)
            .contains("auth_failure")
    );
    assert_eq!(reviewed(&config, &[]).len(), 3, "nothing changed");

    let out = stdout_of(&bulletin(&config, &["suppressions", "review", "--reason", "sender", "--lift"]));
    assert!(out.contains("Lifted 1 suppression(s)"), "{out}");
    assert!(!suppressed(&app, "ada").await, "a DMARC refusal was never the reader's fault");
    assert!(suppressed(&app, "bo").await && suppressed(&app, "dee").await, "only the reason asked for");

    let out = stdout_of(&bulletin(&config, &["suppressions", "review", "--lift"]));
    assert!(out.contains("Lifted 2 suppression(s)"), "{out}");
    assert!(!suppressed(&app, "bo").await && !suppressed(&app, "dee").await);
    assert!(suppressed(&app, "cy").await, "an unknown user stays suppressed");
    assert!(!suppressed(&app, "eve").await);
    assert_eq!(reviewed(&config, &[]), []);
    let list = json_of(&bulletin(&config, &["suppressions", "list", "--format", "json"]));
    assert_eq!(list, json!([{"address": email("cy"), "reason": "bounced", "since": list[0]["since"]}]));
    app.stop().await;
}

on_both_backends!(ingest_lists_each_recipient_acted_on, old_suppressions_are_reviewed_and_lifted);
