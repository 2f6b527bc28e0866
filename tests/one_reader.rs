//! Looking after one reader through the `bulletin` binary, as an operator
//! answering an access request or a reader who wrote in: show, add,
//! unsubscribe, resend the confirmation mail, erase, the suppression list and
//! the export. Each command is checked by what it prints, its exit code and
//! the database after it; a mistyped address or newsletter changes nothing.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::bin::bulletin;
use common::{Backend, TestApp, TestDb};
use serde_json::Value;

/// The exit code of a command whose address matches nothing.
const NO_SUCH_ADDRESS: i32 = 5;

/// A config on `db` with the tests' link secret (so keyed hashes match the
/// running app's), mail to files, and `extra` lines; configs with `extra`
/// of different lengths live side by side.
fn config(dir: &Path, db: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("config-{}.toml", extra.len()));
    let text = format!(
        "[server]\nsecret = \"{}\"\n[database]\nurl = \"{db}\"\n[mail]\ntransport = \"file\"\nfile_dir = \"{}\"\n{extra}",
        common::TEST_SECRET,
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Standard output of a command that must succeed.
fn ok(config: &Path, args: &[&str]) -> String {
    let out = bulletin(config, args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Standard error of a command that must fail with `code`, and print nothing on standard output.
fn fails(config: &Path, args: &[&str], code: i32) -> String {
    let out = bulletin(config, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
    stderr
}

fn show_json(config: &Path, email: &str) -> Value {
    serde_json::from_str(&ok(config, &["subscribers", "show", email, "--format", "json"])).unwrap()
}

/// A fresh database with a config for it, and `reader` confirmed on two newsletters.
async fn with_reader_on_two(backend: Backend, reader: &str) -> Option<(TestDb, tempfile::TempDir, PathBuf)> {
    let db = TestDb::create(backend).await?;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db.url, "");
    for slug in ["morning-briefing", "weekend-reads"] {
        ok(&config, &["subscribers", "add", reader, "--newsletter", slug, "--confirmed"]);
    }
    Some((db, dir, config))
}

/// Rows in every table an operator's command may change: a command that
/// refuses must leave them all as they were.
async fn rows(db_url: &str) -> Vec<i64> {
    use sqlx::Connection;
    const TABLES: [&str; 5] = ["subscribers", "subscriptions", "consent_events", "deliveries", "suppressions"];
    let mut counts = vec![];
    for table in TABLES {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        let count: i64 = if db_url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        };
        counts.push(count);
    }
    counts
}

/// (newsletter, action, source) of each consent entry `show` lists.
fn consent(json: &Value) -> Vec<(String, String, String)> {
    json["consent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["newsletter"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["source"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// The status `show` gives the reader on `slug`.
fn status(json: &Value, slug: &str) -> String {
    let subscriptions = json["subscriptions"].as_array().unwrap();
    let subscription =
        subscriptions.iter().find(|s| s["newsletter"] == slug).unwrap_or_else(|| panic!("{slug}: {json}"));
    subscription["status"].as_str().unwrap().to_owned()
}

fn entry(newsletter: &str, action: &str, source: &str) -> (String, String, String) {
    (newsletter.into(), action.into(), source.into())
}

/// `show` answers an access request: every newsletter with its dates, and
/// the consent record with where each consent came from.
async fn show_tells_what_is_stored(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let signup = app
        .http
        .post(app.url("/api/subscriptions"))
        .header("user-agent", "ReaderMail/2.1")
        .json(&serde_json::json!({"email": "Reader@Example.org", "newsletters": ["morning-briefing", "weekend-reads"]}))
        .send()
        .await
        .unwrap();
    assert!(signup.status().is_success());
    let link = app.confirmation_link("Reader@example.org", 1).await;
    assert!(app.http.post(&link).send().await.unwrap().status().is_success());
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), app.database_url(), "");

    let left = ok(&config, &["subscribers", "unsubscribe", "reader@example.org", "--newsletter", "weekend-reads"]);
    assert!(left.contains("Unsubscribed Reader@example.org from weekend-reads"), "{left}");

    let table = ok(&config, &["subscribers", "show", "READER@example.org"]);
    assert!(table.contains("Reader@example.org"), "{table}");
    let line = |start: &str| table.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {table}"));
    assert!(line("morning-briefing ").contains(" confirmed "), "{table}");
    let times = line("weekend-reads ").split_whitespace().filter(|w| w.starts_with("20") && w.ends_with('Z')).count();
    assert_eq!(times, 3, "created, confirmed and unsubscribed: {table}");
    assert!(line("weekend-reads ").contains(" unsubscribed "), "{table}");
    let signed_up = table.lines().find(|l| l.contains(" signup ")).expect("a signup in the record");
    assert!(signed_up.contains(" api ") && signed_up.contains("127.0.0.1") && signed_up.ends_with("ReaderMail/2.1"));

    let json = show_json(&config, "reader@example.org");
    assert_eq!(json["email"], "Reader@example.org");
    let subscriptions = json["subscriptions"].as_array().unwrap();
    let of = |slug: &str| subscriptions.iter().find(|s| s["newsletter"] == slug).expect(slug).clone();
    assert_eq!(of("morning-briefing")["status"], "confirmed");
    assert!(of("morning-briefing")["confirmed_at"].is_string() && of("morning-briefing")["unsubscribed_at"].is_null());
    assert_eq!(of("weekend-reads")["status"], "unsubscribed");
    assert!(of("weekend-reads")["unsubscribed_at"].is_string());
    assert_eq!(subscriptions.len(), 2, "nothing about newsletters the reader never joined");
    let record = consent(&json);
    assert_eq!(record.len(), 5, "{record:?}");
    for (i, expected) in [
        entry("morning-briefing", "signup", "api"),
        entry("weekend-reads", "signup", "api"),
        entry("morning-briefing", "confirm", "confirm-link"),
        entry("weekend-reads", "confirm", "confirm-link"),
    ]
    .iter()
    .enumerate()
    {
        assert!(record[..4].contains(expected), "entry {i}: {record:?}");
    }
    assert_eq!(record[4], entry("weekend-reads", "unsubscribe", "operator"), "the withdrawal comes last");
    assert_eq!(json["consent"][0]["ip"], "127.0.0.1");
    assert_eq!(json["consent"][0]["user_agent"], "ReaderMail/2.1");
    assert!(json["consent"][4]["ip"].is_null(), "the operator's withdrawal has no visitor");

    let before = rows(app.database_url()).await;
    let unknown = fails(&config, &["subscribers", "show", "nobody@example.org"], NO_SUCH_ADDRESS);
    assert!(unknown.contains("no subscriber has the address nobody@example.org"), "{unknown}");
    let bad = fails(&config, &["subscribers", "show", "reader@"], 1);
    assert!(bad.contains("no domain"), "{bad}");
    assert_eq!(rows(app.database_url()).await, before);
    app.stop().await;
}

/// `add` is a web signup with source `operator`: the running app sends the
/// confirmation mail and its link confirms; `--confirmed` takes the
/// operator's word and sends nothing.
async fn add_signs_up_as_the_web_does(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), app.database_url(), "");

    let added = ok(&config, &["subscribers", "add", "new@example.org", "--newsletter", "morning-briefing"]);
    assert!(added.contains("new@example.org is pending on morning-briefing; a confirmation mail is queued"), "{added}");
    let link = app.confirmation_link("new@example.org", 1).await;
    assert!(app.http.post(&link).send().await.unwrap().status().is_success());
    let json = show_json(&config, "new@example.org");
    assert_eq!(status(&json, "morning-briefing"), "confirmed");
    assert_eq!(
        consent(&json),
        vec![entry("morning-briefing", "signup", "operator"), entry("morning-briefing", "confirm", "confirm-link")]
    );

    let again = ok(&config, &["subscribers", "add", "new@example.org", "--newsletter", "morning-briefing"]);
    assert!(again.contains("already confirmed on morning-briefing; nothing changed"), "{again}");
    let word = ok(&config, &["subscribers", "add", "new@example.org", "--newsletter", "weekend-reads", "--confirmed"]);
    assert!(word.contains("Confirmed new@example.org on weekend-reads (consent source: operator)"), "{word}");
    let json = show_json(&config, "new@example.org");
    assert_eq!(status(&json, "weekend-reads"), "confirmed");
    assert_eq!(consent(&json)[2], entry("weekend-reads", "confirm", "operator"));
    assert_eq!(common::bin::ledger(app.database_url(), 0).await.len(), 1, "--confirmed queues no mail");

    let before = rows(app.database_url()).await;
    let slug = fails(&config, &["subscribers", "add", "other@example.org", "--newsletter", "morning-briefng"], 1);
    assert!(slug.contains("no newsletter \"morning-briefng\""), "{slug}");
    let address = fails(&config, &["subscribers", "add", "other@@example.org", "--newsletter", "weekend-reads"], 1);
    assert!(address.contains("\"other@@example.org\""), "{address}");
    assert_eq!(rows(app.database_url()).await, before, "a typo changes nothing");
    app.stop().await;
}

/// `unsubscribe --all` withdraws every consent at once; a wrong address or
/// a missing choice of newsletter changes nothing.
async fn unsubscribe_withdraws_consent(backend: Backend) {
    let Some((db, _dir, config)) = with_reader_on_two(backend, "reader@example.org").await else { return };
    let before = rows(&db.url).await;
    let unknown = fails(&config, &["subscribers", "unsubscribe", "raeder@example.org", "--all"], NO_SUCH_ADDRESS);
    assert!(unknown.contains("no subscriber has the address raeder@example.org; nothing changed"), "{unknown}");
    let usage = fails(&config, &["subscribers", "unsubscribe", "reader@example.org"], 2);
    assert!(usage.contains("--newsletter") && usage.contains("--all"), "{usage}");
    assert_eq!(rows(&db.url).await, before);

    let left = ok(&config, &["subscribers", "unsubscribe", "reader@example.org", "--all"]);
    assert!(left.contains("Unsubscribed reader@example.org from morning-briefing, weekend-reads"), "{left}");
    let json = show_json(&config, "reader@example.org");
    for subscription in json["subscriptions"].as_array().unwrap() {
        assert_eq!(subscription["status"], "unsubscribed");
        assert!(subscription["unsubscribed_at"].is_string());
    }
    let withdrawn: Vec<_> = consent(&json).into_iter().filter(|e| e.1 == "unsubscribe").collect();
    assert_eq!(
        withdrawn,
        vec![entry("morning-briefing", "unsubscribe", "operator"), entry("weekend-reads", "unsubscribe", "operator")]
    );
    let again = ok(&config, &["subscribers", "unsubscribe", "reader@example.org", "--newsletter", "weekend-reads"]);
    assert!(again.contains("had already left weekend-reads; nothing changed"), "{again}");
}

/// `resend-confirmation` queues the mail again under the per-address cap
/// and, when the cap holds, says which part of it and until when.
async fn resend_respects_the_cap(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let loose = config(dir.path(), &db.url, "[signup]\nconfirm_mail_interval_minutes = 0\nconfirm_mails_per_day = 2\n");
    ok(&loose, &["subscribers", "add", "slow@example.org", "--newsletter", "morning-briefing"]);
    let resent = ok(&loose, &["subscribers", "resend-confirmation", "slow@example.org"]);
    assert!(resent.contains("Confirmation mail queued for slow@example.org (morning-briefing)"), "{resent}");
    assert_eq!(common::bin::ledger(&db.url, 0).await.len(), 2);
    let capped = fails(&loose, &["subscribers", "resend-confirmation", "slow@example.org"], 1);
    assert!(
        capped.contains("not sent: 2 went to it in the last 24 hours, and signup.confirm_mails_per_day allows 2")
            && capped.contains("the next may go from 20"),
        "{capped}"
    );
    assert_eq!(common::bin::ledger(&db.url, 0).await.len(), 2, "refused means not queued");

    let shipped = config(dir.path(), &db.url, "");
    ok(&shipped, &["subscribers", "add", "quick@example.org", "--newsletter", "morning-briefing"]);
    let interval = fails(&shipped, &["subscribers", "resend-confirmation", "quick@example.org"], 1);
    assert!(
        interval.contains("at most one goes every 15 minute(s) (signup.confirm_mail_interval_minutes)"),
        "{interval}"
    );

    ok(&shipped, &["subscribers", "add", "done@example.org", "--newsletter", "weekend-reads", "--confirmed"]);
    let nothing = fails(&shipped, &["subscribers", "resend-confirmation", "done@example.org"], 1);
    assert!(nothing.contains("nothing waiting for confirmation (weekend-reads confirmed)"), "{nothing}");
    fails(&shipped, &["subscribers", "resend-confirmation", "nobody@example.org"], NO_SUCH_ADDRESS);
    assert_eq!(common::bin::ledger(&db.url, 0).await.len(), 3);
}

/// Runs `bulletin ARGS` on a terminal (util-linux `script` makes one) and types `answer`.
fn on_terminal(config: &Path, args: &str, answer: &str) -> (Option<i32>, String) {
    let line = format!("{} --config {} {args}", env!("CARGO_BIN_EXE_bulletin"), config.display());
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("BULLETIN_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the command on a terminal");
    child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `erase` asks on a terminal, needs `--yes` without one, and for an address
/// that matches nothing says so with its own exit code and erases (and
/// suppresses) nothing.
async fn erase_asks_first(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db.url, "");
    ok(&config, &["subscribers", "add", "reader@example.org", "--newsletter", "morning-briefing", "--confirmed"]);
    let before = rows(&db.url).await;

    let piped = fails(&config, &["subscribers", "erase", "reader@example.org"], 1);
    assert!(piped.contains("refusing to erase without --yes: standard input is not a terminal"), "{piped}");
    let (code, screen) = on_terminal(&config, "subscribers erase reader@example.org", "n\n");
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains("Erase r***@example.org and its consent history"), "{screen}");
    assert!(screen.contains("[y/N]") && screen.contains("nothing erased"), "{screen}");
    let typo = fails(&config, &["subscribers", "erase", "raeder@example.org", "--yes"], NO_SUCH_ADDRESS);
    assert!(
        typo.contains(
            "no subscriber has the address raeder@example.org; nothing was erased or added to the suppression list"
        ),
        "{typo}"
    );
    assert_eq!(rows(&db.url).await, before, "nothing erased, nothing suppressed");

    let (code, screen) = on_terminal(&config, "subscribers erase reader@example.org", "y\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("Erased reader@example.org"), "{screen}");
    let gone = fails(&config, &["subscribers", "show", "reader@example.org"], NO_SUCH_ADDRESS);
    assert!(
        gone.contains("it was erased on 20") && gone.contains("its keyed hash is on the suppression list"),
        "{gone}"
    );
    assert_eq!(rows(&db.url).await, vec![0, 0, 0, 0, 1], "only the keyed hash is left");
    fails(&config, &["subscribers", "erase", "reader@example.org", "--yes"], NO_SUCH_ADDRESS);
    assert_eq!(rows(&db.url).await, vec![0, 0, 0, 0, 1]);
}

/// The suppression list holds erased addresses (by keyed hash, named only
/// once stored again) and bounced ones; `remove` lifts either.
async fn suppressions_are_listed_and_lifted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), app.database_url(), "");
    for reader in ["gone@example.org", "bouncy@example.org"] {
        ok(&config, &["subscribers", "add", reader, "--newsletter", "morning-briefing", "--confirmed"]);
    }
    app.mail.reply_to_rcpt("bouncy@example.org", 550, "5.1.1 No such user");
    let issue = app.queue_issue("morning-briefing", "Monday", "Hello").await;
    app.wait_issue(issue, "done").await;
    ok(&config, &["subscribers", "erase", "gone@example.org", "--yes"]);

    let table = ok(&config, &["suppressions", "list"]);
    assert!(table.lines().any(|l| l.starts_with("(erased: only a keyed hash is kept)  erased")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("bouncy@example.org") && l.contains(" bounced ")), "{table}");
    assert!(!table.contains("gone@example.org") && table.contains("2 suppressed address(es)"), "{table}");
    let csv = ok(&config, &["suppressions", "list", "--format", "csv"]);
    assert_eq!(csv.lines().next(), Some("address,reason,since"));
    assert!(csv.lines().any(|l| l.starts_with(",erased,20")), "{csv}");

    let back =
        ok(&config, &["subscribers", "add", "gone@example.org", "--newsletter", "morning-briefing", "--confirmed"]);
    assert!(back.contains("was erased before: it needs a new opt-in, so it was not confirmed"), "{back}");
    assert!(back.contains("pending on morning-briefing"), "{back}");
    let json: Value = serde_json::from_str(&ok(&config, &["suppressions", "list", "--format", "json"])).unwrap();
    let named: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["address"].as_str().unwrap_or(""), s["reason"].as_str().unwrap()))
        .collect();
    assert!(named.contains(&("gone@example.org", "erased")) && named.contains(&("bouncy@example.org", "bounced")));
    let export = ok(&config, &["subscribers", "export", "--newsletter", "morning-briefing"]);
    assert!(export.lines().any(|l| l.starts_with("gone@example.org,pending,") && l.ends_with(",erased,")), "{export}");
    assert!(export.lines().any(|l| l.starts_with("bouncy@example.org,confirmed,") && l.ends_with(",bounced,")));

    let before = rows(app.database_url()).await;
    let typo = fails(&config, &["suppressions", "remove", "gnoe@example.org"], NO_SUCH_ADDRESS);
    assert!(typo.contains("gnoe@example.org is not on the suppression list; nothing changed"), "{typo}");
    assert_eq!(rows(app.database_url()).await, before);

    let lifted = ok(&config, &["suppressions", "remove", "Gone@Example.org"]);
    assert!(lifted.contains("Removed Gone@example.org from the suppression list"), "{lifted}");
    let word = ok(&config, &["subscribers", "add", "gone@example.org", "--newsletter", "weekend-reads", "--confirmed"]);
    assert!(word.contains("Confirmed gone@example.org on weekend-reads"), "now the operator's word counts: {word}");
    let cleared = ok(&config, &["suppressions", "remove", "bouncy@example.org"]);
    assert!(cleared.contains("Cleared the bounce of bouncy@example.org: mail to it goes out again"), "{cleared}");
    assert!(show_json(&config, "bouncy@example.org")["bounced_at"].is_null());
    let table = ok(&config, &["suppressions", "list"]);
    assert!(table.contains("0 suppressed address(es)"), "{table}");
    app.stop().await;
}

/// Without `--newsletter` the export has every newsletter; the list's four
/// columns come first, as scripts expect, then the new ones.
async fn export_has_every_newsletter(backend: Backend) {
    let Some((_db, _dir, config)) = with_reader_on_two(backend, "both@example.org").await else { return };
    ok(&config, &["subscribers", "add", "waiting@example.org", "--newsletter", "weekend-reads"]);
    ok(&config, &["subscribers", "unsubscribe", "both@example.org", "--newsletter", "weekend-reads"]);

    let all = ok(&config, &["subscribers", "export"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines[0], "email,status,created_at,confirmed_at,newsletter,unsubscribed_at,suppression,name");
    assert_eq!(lines.len(), 4, "{all}");
    let cells: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(',').collect()).collect();
    let summary: Vec<(&str, &str, &str)> = cells.iter().map(|c| (c[0], c[1], c[4])).collect();
    assert_eq!(
        summary,
        vec![
            ("both@example.org", "confirmed", "morning-briefing"),
            ("both@example.org", "unsubscribed", "weekend-reads"),
            ("waiting@example.org", "pending", "weekend-reads"),
        ]
    );
    assert!(cells[1][5].starts_with("20") && cells[0][5].is_empty(), "unsubscribed_at: {all}");
    assert!(cells[2][3].is_empty(), "a pending reader has no confirmed_at: {all}");

    let one = ok(&config, &["subscribers", "export", "--newsletter", "weekend-reads"]);
    assert_eq!(one.lines().count(), 3, "{one}");
    assert!(one.lines().skip(1).all(|l| l.contains(",weekend-reads,")), "{one}");
    fails(&config, &["subscribers", "export", "--newsletter", "weekend-read"], 1);
}

on_both_backends!(
    show_tells_what_is_stored,
    add_signs_up_as_the_web_does,
    unsubscribe_withdraws_consent,
    resend_respects_the_cap,
    erase_asks_first,
    suppressions_are_listed_and_lifted,
    export_has_every_newsletter,
);
