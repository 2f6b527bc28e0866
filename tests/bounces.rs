//! Bounces and complaints that come back after the SMTP reply: a real issue
//! goes to a few readers through the SMTP sink, then a DSN or an ARF report
//! about one of them — built from the RFCs' examples around the Message-ID
//! and envelope sender Bulletin really used — is fed to `bulletin bounces
//! ingest` as a Postfix `pipe` transport or a maildir would, and the right
//! reader, and nobody else, is suppressed or unsubscribed. Forged keys,
//! duplicates and garbage change nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bulletin::config::Settings;
use bulletin::domain::{EmailAddress, SubscriptionStatus};
use bulletin::feedback::{Applied, Feedback};
use common::bin::{SilentServer, bulletin, bulletin_within, issue_status, ledger, stdout_of};
use common::db::HeldLock;
use common::postfix::PostfixSink;
use common::postfix_smtpd::{PostfixSmtpd, SmtpdOptions};
use common::smtp::ReceivedMail;
use common::{Backend, TestApp};
use secrecy::ExposeSecret;
use serde_json::Value;

const RETURN_PATH: &str = "bounces@example.com";
const EX_DATAERR: i32 = 65;
const EX_TEMPFAIL: i32 = 75;

fn email(name: &str) -> String {
    format!("{name}@example.org")
}

/// A fixture with its placeholders filled in.
fn fixture(name: &str, fill: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let mut text = std::fs::read_to_string(path).unwrap();
    for (key, value) in fill {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    assert!(!text.contains("{{"), "unfilled placeholder in {name}");
    text
}

/// The header block of a received message, with LF line ends as a mail server stores it.
fn headers_of(mail: &ReceivedMail) -> String {
    let raw = String::from_utf8_lossy(&mail.raw).replace("\r\n", "\n");
    raw.split_once("\n\n").expect("headers, then a body").0.to_owned() + "\n"
}

/// A Postfix DSN about `mail`. `envelope` is what local delivery to a
/// maildir prepends (empty for a `pipe` transport without flags).
fn dsn(mail: &ReceivedMail, id: &str, status: &str, envelope: &str) -> String {
    let diagnostic = match status.chars().next() {
        Some('5') => format!("550 {status} <{}>: Recipient address rejected: User unknown", mail.to[0]),
        _ => format!("452 {status} <{}>: Mailbox full", mail.to[0]),
    };
    dsn_saying(mail, id, status, &diagnostic, envelope)
}

/// A DSN about `mail` whose remote said `diagnostic` (after `smtp; `).
fn dsn_saying(mail: &ReceivedMail, id: &str, status: &str, diagnostic: &str, envelope: &str) -> String {
    let action = "failed";
    fixture(
        "dsn-postfix.eml",
        &[
            ("ENVELOPE", envelope),
            ("VERP", &mail.from),
            ("RECIPIENT", &mail.to[0]),
            ("REPORT_ID", id),
            ("ACTION", action),
            ("STATUS", status),
            ("DIAGNOSTIC", diagnostic),
            ("ORIGINAL_HEADERS", &headers_of(mail)),
        ],
    )
}

/// What Postfix's local delivery puts atop a message it writes to a maildir.
fn maildir_envelope(mail: &ReceivedMail) -> String {
    format!("Return-Path: <>\nX-Original-To: {0}\nDelivered-To: {0}\n", mail.from)
}

/// A feedback loop's ARF report about `mail`, with the whole message attached.
fn arf(mail: &ReceivedMail, id: &str) -> String {
    let original = String::from_utf8_lossy(&mail.raw).replace("\r\n", "\n");
    fixture(
        "arf-abuse.eml",
        &[
            ("ENVELOPE", ""),
            ("SUBJECT", &mail.header("Subject").unwrap_or_default()),
            ("TO", "abuse@example.com"),
            ("REPORT_ID", id),
            ("VERP", &mail.from),
            ("RECIPIENT", &mail.to[0]),
            ("ORIGINAL", &original),
        ],
    )
}

/// Runs `bulletin bounces ingest ARGS` with `stdin`, as Postfix's pipe does.
fn ingest(config: &Path, args: &[&str], stdin: &str) -> Output {
    let args: Vec<&str> = ["bounces", "ingest"].into_iter().chain(args.iter().copied()).collect();
    common::bin::bulletin_with_stdin(config, &args, stdin, "error")
}

/// The config the binary runs with: the app's database and secret, and its `[bounces]`.
fn config_for(app: &TestApp, dir: &Path) -> PathBuf {
    let b = &app.settings.bounces;
    let bounces = format!(
        "[bounces]\nreturn_path = \"{}\"\npause_complaint_rate = {}\npause_min_complaints = {}\n",
        b.return_path, b.pause_complaint_rate, b.pause_min_complaints
    );
    common::bin::write_config(dir, app.database_url(), &bounces)
}

/// An app with VERP on, `readers` confirmed on morning-briefing, and one issue
/// sent to them all: returns the app and each reader's copy.
async fn sent_issue(
    backend: Backend,
    readers: &[&str],
    configure: impl FnOnce(&mut Settings),
) -> Option<(TestApp, i64, Vec<ReceivedMail>)> {
    let app = TestApp::spawn_with(backend, |s| {
        s.bounces.return_path = RETURN_PATH.to_owned();
        configure(s);
    })
    .await?;
    let emails: Vec<String> = readers.iter().map(|r| email(r)).collect();
    app.import_confirmed("morning-briefing", &emails).await;
    let issue = app.queue_issue("morning-briefing", "First light", "Hello, readers.").await;
    app.wait_issue(issue, "done").await;
    let mut mails = vec![];
    for to in &emails {
        mails.push(app.mail.wait_for(to, 1).await.remove(0));
    }
    Some((app, issue, mails))
}

/// Whether the reader `name` (`ada`, or a whole address) is suppressed.
async fn suppressed(app: &TestApp, name: &str) -> bool {
    let address = if name.contains('@') { name.to_owned() } else { email(name) };
    let found = app.store.subscriber_by_email(&EmailAddress::parse(&address).unwrap()).await.unwrap();
    found.expect("subscriber").bounced_at.is_some()
}

/// Rows in `feedback_events`.
async fn events(app: &TestApp) -> i64 {
    count(app, "SELECT COUNT(*) FROM feedback_events").await
}

/// A count read straight from the database, as an operator's SQL would.
async fn count(app: &TestApp, sql: &'static str) -> i64 {
    common::db::count(app.database_url(), sql).await
}

fn suppression_list(config: &Path) -> Value {
    serde_json::from_str(&stdout_of(&bulletin(config, &["suppressions", "list", "--format", "json"]))).unwrap()
}

/// A hard bounce through a pipe transport: that reader is suppressed and
/// their delivery counts as bounced; the same DSN again, and garbage,
/// change nothing.
async fn a_dsn_on_stdin_suppresses_that_reader_only(backend: Backend) {
    let Some((app, issue, mails)) = sent_issue(backend, &["ada", "bo", "cy"], |_| {}).await else { return };
    for mail in &mails {
        assert!(mail.from.starts_with("bounces+") && mail.from.ends_with("@example.com"), "{}", mail.from);
    }
    assert_ne!(mails[0].from, mails[1].from, "a return path per delivery");
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    let bounce = dsn(&mails[1], "20261128100005.4F3A21C0042", "5.1.1", "");

    let out = ingest(&config, &["--recipient", &mails[1].from, "-"], &bounce);
    assert_eq!(
        stdout_of(&out).trim(),
        "1 message: 1 hard bounce suppressed, 0 soft bounces counted, 0 complaints unsubscribed; 0 unmatched, 0 unreadable"
    );
    assert!(suppressed(&app, "bo").await);
    assert!(!suppressed(&app, "ada").await && !suppressed(&app, "cy").await, "nobody else");
    let failures = app.store.issue_failures(issue, 10).await.unwrap();
    let [(address, status, reply)] = failures.as_slice() else { panic!("{failures:?}") };
    assert_eq!(
        (address.as_str(), status.as_str()),
        (email("bo").as_str(), "bounced"),
        "the ledger counts it as bounced"
    );
    let reply = reply.clone().unwrap_or_default();
    assert!(reply.starts_with("5.1.1 smtp; 550 5.1.1") && !reply.contains('@'), "no address kept: {reply}");
    let status = issue_status(&config, issue);
    assert!(status.contains("Bounces reported after sending: 1 hard, 0 soft"), "{status}");
    let list = suppression_list(&config);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!((&list[0]["address"], &list[0]["reason"]), (&Value::from(email("bo")), &Value::from("bounced")));
    assert_eq!(app.store.audience_size(app.newsletter("morning-briefing").await.id).await.unwrap(), 2);

    // Postfix delivering it again (a retry after a timeout): nothing more happens.
    let again = ingest(&config, &["--recipient", &mails[1].from, "--format", "json", "-"], &bounce);
    let summary: Value = serde_json::from_str(&stdout_of(&again)).unwrap();
    assert_eq!((&summary["already_applied"], &summary["hard_bounces_suppressed"]), (&1.into(), &0.into()));
    assert_eq!(events(&app).await, 1);

    // Not a report: refused for good (EX_DATAERR), one line, nothing changed.
    for garbage in ["", "Subject: hello\n\nJust a note, not a bounce.\n", "\u{0}\u{1}binary junk"] {
        let out = ingest(&config, &["-"], garbage);
        assert_eq!(out.status.code(), Some(EX_DATAERR), "{garbage:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: standard input: not a "), "{stderr}");
    }
    assert_eq!(events(&app).await, 1);
    assert!(!suppressed(&app, "ada").await);

    // Erasing bo keeps the issue's count but nothing that names bo.
    stdout_of(&bulletin(&config, &["subscribers", "erase", &email("bo"), "--yes"]));
    assert_eq!(events(&app).await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM feedback_events WHERE subscriber_id IS NOT NULL").await, 0);
    assert!(issue_status(&config, issue).contains("Bounces reported after sending: 1 hard, 0 soft"));
    app.stop().await;
}

/// A maildir as Postfix's local delivery writes it, with a DSN and a file
/// that is no report in `new/`: each file is moved where it belongs.
async fn a_maildir_is_read_and_sorted(backend: Backend) {
    let Some((app, _issue, mails)) = sent_issue(backend, &["ada", "bo", "cy"], |_| {}).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let bounce = dsn(&mails[2], "20261128100007.5B1C", "5.1.1", &maildir_envelope(&mails[2]));
    std::fs::write(maildir.join("new/1764324005.V801I1a2bM1.mx"), bounce).unwrap();
    std::fs::write(maildir.join("cur/1764324009.V801I1a2cM2.mx:2,S"), "From: a friend\n\nHello!\n").unwrap();

    let out = bulletin(&config, &["bounces", "ingest", "--maildir", maildir.to_str().unwrap()]);
    assert_eq!(
        stdout_of(&out).trim(),
        "2 messages: 1 hard bounce suppressed, 0 soft bounces counted, 0 complaints unsubscribed; 0 unmatched, 1 unreadable"
    );
    assert!(suppressed(&app, "cy").await);
    assert!(!suppressed(&app, "ada").await && !suppressed(&app, "bo").await, "nobody else");
    let names = |sub: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(maildir.join(sub))
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!((names("new"), names("cur")), (vec![], vec![]), "every file moved");
    assert_eq!(names(".Processed/cur"), ["1764324005.V801I1a2bM1.mx:2,"]);
    assert_eq!(names(".Unparsed/cur"), ["1764324009.V801I1a2cM2.mx:2,S"]);
    assert!(maildir.join(".Processed/maildirfolder").exists(), "a Maildir++ folder mail clients show");

    // Run again (cron): nothing left to do.
    let out = bulletin(&config, &["bounces", "ingest", "--maildir", maildir.to_str().unwrap()]);
    assert!(stdout_of(&out).starts_with("0 messages:"));
    assert_eq!(events(&app).await, 1);
    app.stop().await;
}

/// A VERP address with a wrong MAC, another delivery's id, or a reader who
/// is not the report's recipient matches nothing; nor does a forged
/// Message-ID, and neither falls back to the address.
async fn a_forged_verp_changes_nothing(backend: Backend) {
    let Some((app, issue, mails)) = sent_issue(backend, &["ada", "bo"], |_| {}).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    let bo = &mails[1];
    let (local, domain) = bo.from.rsplit_once('@').unwrap();
    let (base, mac) = local.rsplit_once('-').unwrap();
    let flipped: String = mac.chars().rev().collect();
    let ada_id = mails[0].from.split(['+', '-']).nth(1).unwrap();
    let forgeries = [
        format!("{base}-{flipped}@{domain}"),
        format!("bounces+{ada_id}-{mac}@{domain}"),
        format!("bounces+{}-{mac}@{domain}", ada_id.parse::<i64>().unwrap() + 100),
        format!("bounces+garbled@{domain}"),
        // ada's genuine return path, on a DSN about bo: not ada's report.
        mails[0].from.clone(),
    ];
    for (n, forged) in forgeries.iter().enumerate() {
        let mut bounce = dsn(bo, &format!("forged-{n}"), "5.1.1", "");
        bounce = bounce.replace(&bo.from, forged);
        let out = ingest(&config, &["--recipient", forged, "-"], &bounce);
        assert!(stdout_of(&out).contains("; 1 unmatched"), "{forged}: {}", String::from_utf8_lossy(&out.stdout));
    }
    // A Message-ID of ours whose MAC does not verify, with no return path at all.
    let message_id = bo.header("Message-ID").unwrap();
    let (key, id_domain) = message_id.trim_matches(['<', '>']).split_once('@').unwrap();
    let (id, id_mac) = key.split_once('.').unwrap();
    let forged_id = format!("<{id}.{}@{id_domain}>", id_mac.chars().rev().collect::<String>());
    let bounce = dsn(bo, "forged-id", "5.1.1", "").replace(&message_id, &forged_id).replace(&bo.from, "");
    assert!(stdout_of(&ingest(&config, &["-"], &bounce)).contains("; 1 unmatched"));
    assert!(!suppressed(&app, "ada").await && !suppressed(&app, "bo").await);
    assert_eq!(events(&app).await, 0);
    let rows: Vec<String> = ledger(app.database_url(), issue).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(rows, ["sent", "sent"]);
    app.stop().await;
}

/// Some MTAs reuse one Message-ID for different reports (SendGrid's
/// lhost-sendgrid-01/02 in sisimai's corpus): each is applied, and only a
/// report delivered twice counts once.
async fn reports_sharing_a_message_id_are_each_applied(backend: Backend) {
    let Some((app, _, mails)) = sent_issue(backend, &["ada", "bo"], |_| {}).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    for mail in &mails {
        let bounce = dsn(mail, "20261207.SHARED", "5.1.1", "");
        let out = ingest(&config, &["--recipient", &mail.from, "-"], &bounce);
        assert!(stdout_of(&out).contains("1 hard bounce suppressed"), "{}", String::from_utf8_lossy(&out.stdout));
        let again = ingest(&config, &["--recipient", &mail.from, "--format", "json", "-"], &bounce);
        let summary: Value = serde_json::from_str(&stdout_of(&again)).unwrap();
        assert_eq!(summary["already_applied"], 1, "the same report twice counts once");
    }
    assert!(suppressed(&app, "ada").await && suppressed(&app, "bo").await);
    assert_eq!(events(&app).await, 2);
    app.stop().await;
}

/// Another system's Message-ID that happens to have our shape
/// (`<digits>.<16 hex>@`, as SendGrid's do) is not a forgery of ours: on a
/// domain that is not `mail.from`'s it is nobody's tag, and the report is
/// matched by its recipient as any report without a tag of ours.
async fn a_foreign_id_shaped_like_ours_is_no_forgery(backend: Backend) {
    let Some((app, _, mails)) = sent_issue(backend, &["ada", "bo"], |_| {}).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    let bo = &mails[1];
    let ours = bo.header("Message-ID").unwrap();
    let foreign = "<1373048289.4959893235684211@mf36.sendgrid.net>";
    let bounce = dsn(bo, "foreign-id", "5.1.1", "").replace(&ours, foreign).replace(&bo.from, "");
    assert!(bounce.contains(foreign) && !bounce.contains(&ours));
    let out = ingest(&config, &["-"], &bounce);
    assert!(stdout_of(&out).contains("1 hard bounce suppressed"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(suppressed(&app, "bo").await && !suppressed(&app, "ada").await);
    app.stop().await;
}

/// Two databases under one `server.secret` (staging beside production, a
/// restored backup) number their deliveries alike: their Message-IDs still
/// differ, and a bounce of one's mail matches nothing in the other, by VERP
/// (the same address in both) or by Message-ID.
async fn message_ids_never_repeat_across_databases(backend: Backend) {
    let Some((staging, _, staging_mails)) = sent_issue(backend, &["ada", "bo"], |_| {}).await else { return };
    let Some((production, issue, production_mails)) = sent_issue(backend, &["ada", "bo"], |_| {}).await else {
        return;
    };
    assert_eq!(staging.settings.server.secret.expose_secret(), production.settings.server.secret.expose_secret());
    let ids =
        |mails: &[ReceivedMail]| -> Vec<String> { mails.iter().map(|m| m.header("Message-ID").unwrap()).collect() };
    let (staging_ids, production_ids) = (ids(&staging_mails), ids(&production_mails));
    for id in &staging_ids {
        assert!(!production_ids.contains(id), "{id} went out from both databases");
    }
    assert_eq!(staging_mails[0].from, production_mails[0].from, "the same delivery id and secret: the same VERP");

    // Staging's bounce for ada reaches production's pipe: production's ada is not touched.
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&production, dir.path());
    let bounce = dsn(&staging_mails[0], "20261207231500.5A1B2C3D4E", "5.1.1", "");
    let out = ingest(&config, &["--recipient", &staging_mails[0].from, "-"], &bounce);
    assert!(stdout_of(&out).contains("; 1 unmatched"), "{}", String::from_utf8_lossy(&out.stdout));
    // By Message-ID alone (no return path), the same.
    let by_id = bounce.replace(&staging_mails[0].from, "");
    assert!(stdout_of(&ingest(&config, &["-"], &by_id)).contains("; 1 unmatched"));
    assert!(!suppressed(&production, "ada").await);
    assert_eq!(events(&production).await, 0);

    // Production's own bounce still matches, through either.
    let own = dsn(&production_mails[0], "20261207231501.5A1B2C3D4F", "5.1.1", "");
    let out = ingest(&config, &["--recipient", &production_mails[0].from, "-"], &own);
    assert!(stdout_of(&out).contains("1 hard bounce suppressed"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(suppressed(&production, "ada").await && !suppressed(&production, "bo").await);
    let rows: Vec<String> = ledger(production.database_url(), issue).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(rows, ["bounced", "sent"]);
    staging.stop().await;
    production.stop().await;
}

/// Soft bounces (a full mailbox) count; `soft_bounce_limit` of them within
/// `soft_bounce_days` suppress. Without `return_path` the envelope sender is
/// the From address, and the reports match by the Message-ID.
async fn soft_bounces_suppress_at_the_limit(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.import_confirmed("morning-briefing", &[email("ada"), email("bo")]).await;
    let issue = app.queue_issue("morning-briefing", "First light", "Hello.").await;
    app.wait_issue(issue, "done").await;
    let mail = app.mail.wait_for(&email("bo"), 1).await.remove(0);
    assert_eq!(format!("Bulletin <{}>", mail.from), app.settings.mail.from, "the From address, no VERP");
    let feedback = Feedback::new(app.store.clone(), app.keys(), app.clock.clone(), app.settings.bounces.clone());
    let (limit, days) = (app.settings.bounces.soft_bounce_limit, app.settings.bounces.soft_bounce_days);
    assert_eq!((limit, days), (3, 30), "as shipped");
    let soft = |n: u32| {
        let parsed = bulletin::feedback::parse(dsn(&mail, &format!("soft-{n}"), "4.2.2", "").as_bytes(), None).unwrap();
        assert_eq!(parsed.reports.len(), 1);
        parsed.reports[0].clone()
    };
    const DAY: i64 = 86_400;
    assert_eq!(feedback.apply(&soft(1)).await.unwrap(), Applied::SoftBounceCounted { count: 1 });
    app.clock.advance(DAY);
    assert_eq!(feedback.apply(&soft(2)).await.unwrap(), Applied::SoftBounceCounted { count: 2 });
    // 30.5 days after the first: it no longer counts.
    app.clock.advance(29 * DAY + DAY / 2);
    assert_eq!(feedback.apply(&soft(3)).await.unwrap(), Applied::SoftBounceCounted { count: 2 });
    assert!(!suppressed(&app, "bo").await, "two within the window");
    assert_eq!(feedback.apply(&soft(3)).await.unwrap(), Applied::Duplicate);
    assert_eq!(feedback.apply(&soft(4)).await.unwrap(), Applied::Suppressed);
    assert!(suppressed(&app, "bo").await && !suppressed(&app, "ada").await);
    let rows: Vec<String> = ledger(app.database_url(), issue).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(rows, ["sent", "sent"], "a soft bounce leaves the message counted as delivered");
    let dir = tempfile::tempdir().unwrap();
    let status = issue_status(&config_for(&app, dir.path()), issue);
    assert!(status.contains("Bounces reported after sending: 0 hard, 4 soft"), "{status}");
    app.stop().await;
}

/// "Report spam" in one reader's mail client: they leave that newsletter
/// (not the other), are suppressed, the consent record says why, and the
/// suppression list, `issue status` and `stats` show it.
async fn a_complaint_unsubscribes_from_that_newsletter(backend: Backend) {
    let Some((app, issue, mails)) = sent_issue(backend, &["ada", "bo", "cy"], |_| {}).await else { return };
    app.import_confirmed("weekend-reads", &[email("ada")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());

    let out = ingest(&config, &["-"], &arf(&mails[0], "complaint-1"));
    assert_eq!(
        stdout_of(&out).trim(),
        "1 message: 0 hard bounces suppressed, 0 soft bounces counted, 1 complaint unsubscribed; 0 unmatched, 0 unreadable"
    );
    assert_eq!(app.status_of(&email("ada"), "morning-briefing").await, Some(SubscriptionStatus::Unsubscribed));
    assert_eq!(app.status_of(&email("ada"), "weekend-reads").await, Some(SubscriptionStatus::Confirmed));
    assert_eq!(app.status_of(&email("bo"), "morning-briefing").await, Some(SubscriptionStatus::Confirmed));
    assert!(suppressed(&app, "ada").await && !suppressed(&app, "bo").await);
    let ada = app.store.subscriber_by_email(&EmailAddress::parse(&email("ada")).unwrap()).await.unwrap().unwrap();
    let last = app.store.consent_events(ada.id).await.unwrap().pop().unwrap();
    let morning = app.newsletter("morning-briefing").await.id;
    assert_eq!((last.action.as_str(), last.source.as_str(), last.newsletter_id), ("unsubscribe", "complaint", morning));

    let list = suppression_list(&config);
    assert_eq!((&list[0]["address"], &list[0]["reason"]), (&Value::from(email("ada")), &Value::from("complained")));
    let shown = stdout_of(&bulletin(&config, &["subscribers", "show", &email("ada")]));
    assert!(shown.contains("suppression        reported our mail as spam on "), "{shown}");
    assert!(shown.contains("unsubscribe") && shown.contains("complaint"), "the consent record: {shown}");
    // Signing the complainer up again by hand says why nothing will be sent, and not that mail bounced.
    let added =
        stdout_of(&bulletin(&config, &["subscribers", "add", &email("ada"), "--newsletter", "explaining-ukraine"]));
    assert!(added.contains(&format!("Note: {} reported our mail as spam on ", email("ada"))), "{added}");
    assert!(!added.contains("bounced"), "{added}");
    let status = issue_status(&config, issue);
    assert!(status.contains("Spam complaints: 1 (33.33 % of 3 delivered)"), "{status}");
    let stats: Value = serde_json::from_str(&stdout_of(&bulletin(&config, &["stats", "--format", "json"]))).unwrap();
    assert_eq!(stats["issues"][0]["complaints"], 1, "{stats:#}");
    let csv = stdout_of(&bulletin(&config, &["stats", "--format", "csv"]));
    assert!(csv.lines().any(|l| l.ends_with(",unsubscribed in 7 days,complaints")), "{csv}");
    app.stop().await;
}

/// With `pause_complaint_rate = 0.5` and `pause_min_complaints = 2`, an
/// issue still sending pauses at its second complaint of four delivered,
/// not at its first; `issue resume` continues it.
async fn complaints_pause_an_issue_at_the_threshold(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.bounces.return_path = RETURN_PATH.to_owned();
        s.bounces.pause_complaint_rate = 0.5;
        s.bounces.pause_min_complaints = 2;
        // The fifth reader's server says "try later", for long enough to keep the issue sending.
        s.sending.retry_base_seconds = 600;
    })
    .await
    else {
        return;
    };
    let names = ["ada", "bo", "cy", "dee", "eve"];
    app.mail.reply_to_rcpt(&email("eve"), 451, "4.3.0 try again later");
    app.import_confirmed("morning-briefing", &names.iter().map(|n| email(n)).collect::<Vec<_>>()).await;
    let issue = app.queue_issue("morning-briefing", "First light", "Hello.").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.delivery_counts(issue).await.get("sent") != Some(&4)
        || !app.delivery_counts(issue).await.contains_key("retry")
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", app.delivery_counts(issue).await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    let mail = |n: &str| app.mail.mails_to(&email(n)).remove(0);

    let first = stdout_of(&ingest(&config, &["-"], &arf(&mail("ada"), "c-1")));
    assert!(!first.contains("paused"), "{first}");
    assert_eq!(app.store.issue(issue).await.unwrap().unwrap().status.as_str(), "sending", "1 of 4 is below 50 %");

    let second = stdout_of(&ingest(&config, &["-"], &arf(&mail("bo"), "c-2")));
    assert!(second.contains(&format!("issue #{issue} paused for its complaint rate")), "{second}");
    let paused = app.store.issue(issue).await.unwrap().unwrap();
    assert_eq!(paused.status.as_str(), "paused");
    let reason = paused.paused_reason.unwrap();
    assert!(reason.contains("2 spam complaint(s) on 4 delivered"), "{reason}");
    assert!(issue_status(&config, issue).contains(&format!("Paused: {reason}")));

    let resumed = bulletin(&config, &["issue", "resume", &issue.to_string(), "--detach"]);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(app.store.issue(issue).await.unwrap().unwrap().status.as_str(), "sending");
    // A third complaint still counts, and pauses it again: the rate is still past the threshold.
    let third = stdout_of(&ingest(&config, &["-"], &arf(&mail("cy"), "c-3")));
    assert!(third.contains("paused"), "{third}");
    app.stop().await;
}

/// A hard bounce for a delivery that a database which cannot be reached
/// might know: a test of the outage never gets as far as looking it up.
fn outage_bounce() -> String {
    fixture(
        "dsn-postfix.eml",
        &[
            ("ENVELOPE", ""),
            ("VERP", "bounces+1-0123456789abcdef@example.com"),
            ("RECIPIENT", "ada@example.org"),
            ("REPORT_ID", "outage"),
            ("ACTION", "failed"),
            ("STATUS", "5.1.1"),
            ("DIAGNOSTIC", "550 5.1.1 User unknown"),
            ("ORIGINAL_HEADERS", "Subject: First light\n"),
        ],
    )
}

/// The database cannot be reached: "try again later" (EX_TEMPFAIL), so
/// Postfix keeps the message, and a maildir's files stay where they are.
#[test]
fn an_unreachable_database_means_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), "postgres://postgres@127.0.0.1:1/bulletin", "");
    let bounce = outage_bounce();
    let out = ingest(&config, &["-"], &bounce);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_TEMPFAIL), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1") && stderr.contains("try again later"), "{stderr}");

    let maildir = dir.path().join("Maildir");
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    std::fs::write(maildir.join("new/1764324005.V801I1a2bM1.mx"), &bounce).unwrap();
    let out = bulletin(&config, &["bounces", "ingest", "--maildir", maildir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(EX_TEMPFAIL), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(maildir.join("new/1764324005.V801I1a2bM1.mx").exists(), "the file waits for the next run");
}

/// A database host that accepts the connection and never answers: "try
/// again later" once `database.connect_timeout_seconds` has passed, not a
/// pipe process that hangs until Postfix kills it (and counts it a failure).
#[test]
fn a_silent_database_means_try_again_later() {
    let silent = SilentServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), &format!("postgres://postgres@127.0.0.1:{}/x", silent.port), "");
    let out = bulletin_within(&config, &["bounces", "ingest", "-"], &[], &outage_bounce(), Duration::from_secs(30))
        .expect("bounces ingest was still waiting after 30 s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_TEMPFAIL), "{stderr}");
    let said =
        format!("PostgreSQL at 127.0.0.1:{} accepted the connection but did not answer within 10 s", silent.port);
    assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    assert!(stderr.trim_end().ends_with("try again later"), "{stderr}");
}

/// Another session holds the ledger locked (a forgotten `psql` transaction,
/// a stuck job) for longer than Bulletin waits: "try again later", and once
/// the lock is gone the same message goes through.
async fn a_held_lock_means_try_again_later(backend: Backend) {
    let Some((app, _issue, mails)) = sent_issue(backend, &["ada"], |_| {}).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    let bounce = dsn(&mails[0], "20261128100005.4F3A21C0042", "5.1.1", "");
    let recipient = mails[0].from.clone();

    let lock = HeldLock::take(app.database_url(), "deliveries").await;
    let (c, b, r) = (config.clone(), bounce.clone(), recipient.clone());
    let out = tokio::task::spawn_blocking(move || {
        bulletin_within(&c, &["bounces", "ingest", "--recipient", &r, "-"], &[], &b, Duration::from_secs(30))
    })
    .await
    .unwrap()
    .expect("bounces ingest was still waiting for the lock after 30 s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EX_TEMPFAIL), "{stderr}");
    assert!(stderr.contains("held") && stderr.trim_end().ends_with("try again later"), "{stderr}");
    lock.release().await;
    assert!(!suppressed(&app, "ada").await, "nothing was changed");

    let out = ingest(&config, &["--recipient", &recipient, "-"], &bounce);
    assert!(stdout_of(&out).starts_with("1 message: 1 hard bounce suppressed"));
    assert!(suppressed(&app, "ada").await);
    app.stop().await;
}

on_both_backends!(a_held_lock_means_try_again_later);

/// Lets the `pipe` transport's unprivileged user (`nobody`) read the config
/// and write the SQLite database (its file, WAL and shared memory), as a
/// deployment gives the bounce user access to Bulletin's database.
fn open_to_the_pipe_user(app: &TestApp, config_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    mode(config_dir, 0o755);
    if let Some(file) = app.database_url().strip_prefix("sqlite://") {
        let dir = Path::new(file).parent().unwrap();
        mode(dir, 0o777);
        for entry in std::fs::read_dir(dir).unwrap() {
            mode(&entry.unwrap().path(), 0o666);
        }
    }
}

/// The `[bounces]` and database settings the pipe's command runs with.
fn write_pipe_config(path: &Path, app: &TestApp) {
    let text = format!(
        "[server]\nsecret = \"{}\"\n[database]\nurl = \"{}\"\n[bounces]\nreturn_path = \"{}\"\n",
        common::TEST_SECRET,
        app.database_url(),
        app.settings.bounces.return_path
    );
    std::fs::write(path, text).unwrap();
}

/// How the Postfix tests' next hop refuses a reader whose address is gone.
const GONE_REPLY: &str = "550 5.1.1 Recipient address rejected: User unknown";

/// The port a Postfix smtp-sink listens on.
fn port_of(sink: &PostfixSink) -> &str {
    sink.addr().rsplit(':').next().unwrap()
}

/// Waits (up to 20 s) until `name` is suppressed.
async fn wait_suppressed(app: &TestApp, name: &str, postfix: &PostfixSmtpd) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !suppressed(app, name).await {
        assert!(std::time::Instant::now() < deadline, "{name} never suppressed; Postfix's log:\n{}", postfix.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A real Postfix relay takes the issue, then bounces one recipient (the
/// next hop, Postfix's smtp-sink, refuses it as an unknown user) with a DSN to
/// the VERP return path, which its `transport_maps` hand to the README's
/// `pipe` service running `bulletin bounces ingest --recipient ${recipient} -`.
async fn postfix_pipes_its_own_dsn_to_ingest(backend: Backend) {
    // The next hop refuses the reader as a gone address (smtp-sink's own
    // default, "500 5.3.0 Error: command failed", names no cause: a soft bounce).
    let Some(next_hop) = PostfixSink::start(&["-f", "rcpt", "-B", GONE_REPLY]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let transport =
        format!("example.net smtp:[127.0.0.1]:{}\nbounces@example.com bulletin-bounces:\n", port_of(&next_hop));
    std::fs::write(dir.path().join("transport"), transport).unwrap();
    let options = SmtpdOptions {
        main_cf: vec![
            "recipient_delimiter = +".into(),
            format!("transport_maps = texthash:{}/transport", dir.path().display()),
        ],
        master_cf: vec![format!(
            "bulletin-bounces unix - n n - 10 pipe\n  flags=q user=nobody argv={} --config {} bounces ingest --recipient ${{recipient}} -",
            env!("CARGO_BIN_EXE_bulletin"),
            config.display()
        )],
        ..Default::default()
    };
    let Some(postfix) = PostfixSmtpd::start(options) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = format!("smtp://{}", postfix.addr()).into();
        s.bounces.return_path = RETURN_PATH.to_owned();
    })
    .await
    else {
        return;
    };
    write_pipe_config(&config, &app);
    open_to_the_pipe_user(&app, dir.path());
    app.import_confirmed("morning-briefing", &[email("ada"), "gone@example.net".to_owned()]).await;
    let issue = app.queue_issue("morning-briefing", "First light", "Hello.").await;
    app.wait_issue(issue, "done").await;
    wait_suppressed(&app, "gone@example.net", &postfix).await;
    postfix.wait_for_log("status=sent (delivered via bulletin-bounces service").await;
    let counts = app.delivery_counts(issue).await;
    assert_eq!((counts.get("sent"), counts.get("bounced")), (Some(&1), Some(&1)), "the relay took both: {counts:?}");
    assert!(!suppressed(&app, "ada").await, "nobody else");
    assert_eq!(events(&app).await, 1);
    let elsewhere = tempfile::tempdir().unwrap();
    let status = issue_status(&config_for(&app, elsewhere.path()), issue);
    assert!(status.contains("Bounces reported after sending: 1 hard, 0 soft"), "{status}");
    app.stop().await;
}

/// The same DSN delivered by Postfix's virtual agent to a bounce Maildir
/// (its `X-Original-To` and `Delivered-To` name the VERP address), read by
/// `bounces ingest --maildir` as cron would.
async fn postfix_delivers_its_own_dsn_to_a_maildir(backend: Backend) {
    // The next hop refuses the reader as a gone address (smtp-sink's own
    // default, "500 5.3.0 Error: command failed", names no cause: a soft bounce).
    let Some(next_hop) = PostfixSink::start(&["-f", "rcpt", "-B", GONE_REPLY]) else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("transport"), format!("example.net smtp:[127.0.0.1]:{}\n", port_of(&next_hop)))
        .unwrap();
    std::fs::write(
        dir.path().join("vmailbox"),
        "/^bounces(\\+.*)?@example\\.org$/ example.org/bounces/\n/@example\\.org$/ example.org/all/\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let options = SmtpdOptions {
        main_cf: vec![
            format!("transport_maps = texthash:{}/transport", dir.path().display()),
            format!("virtual_mailbox_maps = regexp:{}/vmailbox", dir.path().display()),
        ],
        ..Default::default()
    };
    let Some(postfix) = PostfixSmtpd::start(options) else { return };
    let Some(app) = TestApp::spawn_with(backend, |s| {
        s.mail.smtp_url = format!("smtp://{}", postfix.addr()).into();
        s.bounces.return_path = "bounces@example.org".to_owned();
    })
    .await
    else {
        return;
    };
    app.import_confirmed("morning-briefing", &[email("ada"), "gone@example.net".to_owned()]).await;
    let issue = app.queue_issue("morning-briefing", "First light", "Hello.").await;
    app.wait_issue(issue, "done").await;
    let maildir = postfix.mailbox("example.org/bounces");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(maildir.join("new")).map_or(0, |d| d.count()) == 0 {
        assert!(std::time::Instant::now() < deadline, "no DSN in {}:\n{}", maildir.display(), postfix.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let config = config_for(&app, dir.path());
    let out = bulletin(&config, &["bounces", "ingest", "--maildir", maildir.to_str().unwrap()]);
    assert_eq!(
        stdout_of(&out).trim(),
        "1 message: 1 hard bounce suppressed, 0 soft bounces counted, 0 complaints unsubscribed; 0 unmatched, 0 unreadable"
    );
    assert!(suppressed(&app, "gone@example.net").await && !suppressed(&app, "ada").await);
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(maildir.join(".Processed/cur")).unwrap().count(), 1);
    app.stop().await;
}

/// A plain-text bounce (qmail's, Exim's) about `mail`, quoting its headers.
fn plain_bounce(form: &str, mail: &ReceivedMail) -> String {
    fixture(
        &format!("bounce-{form}.eml"),
        &[("VERP", &mail.from), ("RECIPIENT", &mail.to[0]), ("ORIGINAL_HEADERS", &headers_of(mail))],
    )
}

/// Bounces that are no RFC 3464 report — qmail's "failure notice", Exim's
/// "Mail delivery failed" — are read too: matched by the Message-ID they
/// quote, the hard one suppresses its reader, the soft one is counted, and
/// nobody else is touched.
async fn plain_text_bounces_act_on_their_reader_only(backend: Backend) {
    let Some((app, issue, mails)) = sent_issue(backend, &["ada", "bo", "cy"], |_| {}).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());

    let out = ingest(&config, &["-"], &plain_bounce("qmail", &mails[1]));
    assert_eq!(
        stdout_of(&out).trim(),
        "1 message: 1 hard bounce suppressed, 0 soft bounces counted, 0 complaints unsubscribed; 0 unmatched, 0 unreadable"
    );
    assert!(suppressed(&app, "bo").await);
    assert!(!suppressed(&app, "ada").await && !suppressed(&app, "cy").await, "nobody else");
    let failures = app.store.issue_failures(issue, 10).await.unwrap();
    let [(address, status, reply)] = failures.as_slice() else { panic!("{failures:?}") };
    assert_eq!((address.as_str(), status.as_str()), (email("bo").as_str(), "bounced"));
    let reply = reply.clone().unwrap_or_default();
    assert!(reply.starts_with("5.1.1 ") && !reply.contains('@'), "no address kept: {reply}");

    let out = ingest(&config, &["-"], &plain_bounce("exim", &mails[2]));
    assert_eq!(
        stdout_of(&out).trim(),
        "1 message: 0 hard bounces suppressed, 1 soft bounce counted, 0 complaints unsubscribed; 0 unmatched, 0 unreadable"
    );
    assert!(!suppressed(&app, "cy").await && !suppressed(&app, "ada").await);
    assert!(issue_status(&config, issue).contains("Bounces reported after sending: 1 hard, 1 soft"));
    assert_eq!(events(&app).await, 2);

    // A reader's reply quoting an address is no bounce: refused, nothing changed.
    let reply = format!(
        "From: {}\nTo: news@example.com\nSubject: Re: First light\n\nDid this reach <{}>:\n550 5.1.1 user unknown?\n",
        email("ada"),
        email("cy")
    );
    let out = ingest(&config, &["-"], &reply);
    assert_eq!(out.status.code(), Some(EX_DATAERR), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(events(&app).await, 2);
    assert!(!suppressed(&app, "cy").await && !suppressed(&app, "ada").await);
    app.stop().await;
}

on_both_backends!(
    a_dsn_on_stdin_suppresses_that_reader_only,
    a_maildir_is_read_and_sorted,
    a_forged_verp_changes_nothing,
    message_ids_never_repeat_across_databases,
    a_foreign_id_shaped_like_ours_is_no_forgery,
    reports_sharing_a_message_id_are_each_applied,
    soft_bounces_suppress_at_the_limit,
    a_complaint_unsubscribes_from_that_newsletter,
    complaints_pause_an_issue_at_the_threshold,
    postfix_pipes_its_own_dsn_to_ingest,
    postfix_delivers_its_own_dsn_to_a_maildir,
    plain_text_bounces_act_on_their_reader_only,
);

/// A permanent refusal is read by its cause, not its class digit: the
/// sender's IP on a blocklist suppresses nobody and is counted against the
/// issue, a full mailbox is a soft bounce, the words "user unknown" under a
/// bare 5.0.0 mean the address is gone, and under a 5.7.1 (a policy: the
/// evidence disagrees) only a soft bounce.
async fn a_bounce_is_read_by_its_cause(backend: Backend) {
    let Some((app, issue, mails)) = sent_issue(backend, &["ada", "bo", "cy", "di"], |_| {}).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&app, dir.path());
    let said = [
        ("5.7.606", "550 5.7.606 Access denied, banned sending IP [192.0.2.1]"),
        ("5.2.2", "552 5.2.2 Quota exceeded"),
        ("5.0.0", "550 user unknown"),
        ("5.7.1", "550 5.7.1 user unknown"),
    ];
    let mut summaries = vec![];
    for (n, (mail, (status, diagnostic))) in mails.iter().zip(said).enumerate() {
        let bounce = dsn_saying(mail, &format!("20261128100005.CAUSE{n}"), status, diagnostic, "");
        let out = ingest(&config, &["--recipient", &mail.from, "-"], &bounce);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        summaries.push(stdout_of(&out).trim().to_owned());
    }
    assert_eq!(events(&app).await, 4, "each report recorded");
    assert_eq!(
        summaries[0],
        "1 message: 0 hard bounces suppressed, 0 soft bounces counted, \
         1 refused for the sender's reasons (no reader suppressed; see `bulletin issue status`), \
         0 complaints unsubscribed; 0 unmatched, 0 unreadable"
    );
    assert!(
        summaries[1].starts_with("1 message: 0 hard bounces suppressed, 1 soft bounce counted"),
        "{}",
        summaries[1]
    );
    assert!(summaries[2].starts_with("1 message: 1 hard bounce suppressed"), "{}", summaries[2]);
    assert!(
        summaries[3].starts_with("1 message: 0 hard bounces suppressed, 1 soft bounce counted"),
        "{}",
        summaries[3]
    );
    assert!(suppressed(&app, "cy").await, "a gone address is suppressed");
    assert!(!suppressed(&app, "di").await, "user unknown under a policy status is soft");
    assert!(!suppressed(&app, "ada").await, "the sender's problem is not the reader's");
    assert!(!suppressed(&app, "bo").await, "a full mailbox is soft");
    let status = issue_status(&config, issue);
    assert!(status.contains("Bounces reported after sending: 1 hard, 2 soft"), "{status}");
    assert!(status.contains("Refused for the sender's reasons after sending: 1 (not the readers' fault"), "{status}");
    app.stop().await;
}

on_both_backends!(a_bounce_is_read_by_its_cause);
