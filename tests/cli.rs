//! The `bulletin` binary as operators use it: serve, migrate, list.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::bin::bulletin;
use common::{Backend, TestApp, TestDb};

fn write_config(dir: &Path, database_url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[database]\nurl = \"{database_url}\"\n[mail]\ntransport = \"file\"\nfile_dir = \"{}\"\n{extra}",
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

async fn lists_subscribers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup_api("confirmed@example.org", &["morning-briefing"]).await;
    let link = app.confirmation_link("confirmed@example.org", 1).await;
    app.http.post(&link).send().await.unwrap();
    app.signup_api("pending@example.org", &["morning-briefing"]).await;

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), app.database_url(), "");
    let csv =
        stdout(&bulletin(&config, &["subscribers", "list", "--newsletter", "morning-briefing", "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    // The contract's four columns, then the name (none for a web signup).
    assert_eq!(lines[0], "email,status,created_at,confirmed_at,name");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with("confirmed@example.org,confirmed,20") && lines[1].ends_with("Z,"), "{csv}");
    assert!(lines[2].starts_with("pending@example.org,pending,20") && lines[2].ends_with(",,"), "{csv}");

    let confirmed = stdout(&bulletin(
        &config,
        &["subscribers", "list", "--newsletter", "morning-briefing", "--status", "confirmed", "--format", "json"],
    ));
    let json: serde_json::Value = serde_json::from_str(&confirmed).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["email"], "confirmed@example.org");
    assert_eq!(json[0]["status"], "confirmed");

    let table = stdout(&bulletin(&config, &["subscribers", "list", "--newsletter", "morning-briefing"]));
    assert!(table.contains("pending@example.org") && table.contains("2 subscriber(s)"), "{table}");

    let newsletters = stdout(&bulletin(&config, &["newsletters", "list"]));
    let row = newsletters.lines().find(|l| l.starts_with("morning-briefing")).expect("listed");
    assert!(row.contains("Morning Briefing"), "{newsletters}");
    let columns: Vec<&str> = row.split_whitespace().rev().take(4).collect();
    assert_eq!(columns, ["active", "0", "1", "1"], "state, unsubscribed, pending, confirmed: {newsletters}");

    let unknown = bulletin(&config, &["subscribers", "list", "--newsletter", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no newsletter \"nope\""));
    app.stop().await;
}

async fn migrate_and_bad_config(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url, "");
    let out = bulletin(&config, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created = String::from_utf8_lossy(&out.stderr).to_string();
    let folder = if db.url.starts_with("sqlite") { "sqlite" } else { "postgres" };
    let shipped = std::fs::read_dir(format!("{}/migrations/{folder}", env!("CARGO_MANIFEST_DIR"))).unwrap().count();
    assert!(
        created.contains(&format!("applied {shipped} migration(s): subscriptions")),
        "a new database says what it made: {created}"
    );
    assert!(created.contains("Newsletters: morning-briefing, explaining-ukraine, weekend-reads."), "{created}");
    let again = bulletin(&config, &["migrate"]);
    assert!(again.status.success(), "migrating twice is fine");
    assert!(String::from_utf8_lossy(&again.stderr).contains("was already up to date"), "{again:?}");

    let bad = write_config(dir.path(), &db.url, "[signup]\nper_ip_per_minit = 5\n");
    let out = bulletin(&bad, &["migrate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("per_ip_per_minit"), "names the key");

    let missing = bulletin(&dir.path().join("nope.toml"), &["migrate"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
}

/// `bulletin serve` as a user runs it: it serves, writes mail as .eml files,
/// and stops cleanly on SIGTERM.
async fn serve_writes_mail_and_stops_on_sigterm(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extra = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n[signup]\nmin_submit_seconds = 0\n"
    );
    let config = write_config(dir.path(), &db.url, &extra);
    let mut child = common::bin::KillOnDrop::start(&config, "serve", &[]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .post(format!("{base}/subscribe"))
        .form(&[("email", "file@example.org"), ("newsletter", "weekend-reads")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let outbox = dir.path().join("outbox");
    let deadline = Instant::now() + Duration::from_secs(10);
    let eml = loop {
        // Only a finished `.eml`: the transport writes under a hidden `.…partial` name first.
        let found = std::fs::read_dir(&outbox)
            .ok()
            .and_then(|mut d| d.find_map(|e| e.ok().filter(|e| e.path().extension().is_some_and(|x| x == "eml"))));
        if let Some(entry) = found {
            break std::fs::read_to_string(entry.path()).unwrap();
        }
        assert!(Instant::now() < deadline, "no .eml written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(eml.contains("To: file@example.org") && eml.contains(&format!("{base}/confirm/")), "{eml}");

    // An issue queued for serve to send: its log says when it starts and when it is done.
    let link = eml.split_whitespace().find(|w| w.starts_with(&format!("{base}/confirm/"))).unwrap();
    assert_eq!(http.post(link).send().await.unwrap().status(), 200);
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Hello\n").unwrap();
    let send = ["issue", "send", "--newsletter", "weekend-reads", "--subject", "Hi", "--yes", "--detach"];
    let queued = bulletin(&config, &[&send[..], &[issue.to_str().unwrap()]].concat());
    assert!(queued.status.success(), "{}", String::from_utf8_lossy(&queued.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stdout(&bulletin(&config, &["issue", "status", "1"])).contains("Status: done") {
        assert!(Instant::now() < deadline, "serve did not send the issue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stop by PID with SIGTERM; it must exit promptly and cleanly.
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve did not stop within 10 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("route=\"/subscribe\"") && log.contains("status=200"), "one line per request: {log}");
    assert!(log.contains("sending issue issue=1"), "{log}");
    assert!(log.contains("issue sent: nothing left to deliver issue=1"), "{log}");
    assert!(!log.contains("file@example.org"), "addresses are masked in logs: {log}");
    assert!(log.contains("f***@example.org"), "{log}");
    assert!(!log.contains("/confirm/") || log.contains("/confirm/{token}"), "no token URLs in logs");
}

#[test]
fn every_command_explains_itself() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["newsletters", "list", "--help"],
        vec!["subscribers", "list", "--help"],
        vec!["subscribers", "import", "--help"],
        vec!["subscribers", "export", "--help"],
        vec!["subscribers", "erase", "--help"],
        vec!["subscribers", "show", "--help"],
        vec!["subscribers", "add", "--help"],
        vec!["subscribers", "unsubscribe", "--help"],
        vec!["subscribers", "resend-confirmation", "--help"],
        vec!["suppressions", "list", "--help"],
        vec!["suppressions", "remove", "--help"],
        vec!["worker", "--help"],
        vec!["issue", "send", "--help"],
        vec!["issue", "list", "--help"],
        vec!["issue", "status", "--help"],
        vec!["issue", "resume", "--help"],
        vec!["issue", "pause", "--help"],
        vec!["issue", "retry", "--help"],
        vec!["issue", "preview", "--help"],
        vec!["newsletters", "snippet", "--help"],
        vec!["digest", "preview", "--help"],
        vec!["digest", "run", "--help"],
        vec!["digest", "list", "--help"],
        vec!["items", "add", "--help"],
        vec!["items", "list", "--help"],
        vec!["stats", "--help"],
        vec!["bounces", "ingest", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bulletin")).args(&args).env("COLUMNS", "200").output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(help.contains("Usage"), "{args:?}");
        // Every argument and option says what it is for.
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let entry = line.trim_start();
            // `[env: …]` and `[default: …]` lines continue the entry above them.
            let is_entry = entry.starts_with('-') || entry.starts_with('<') || entry.starts_with("[<");
            if !(line.starts_with("  ") && is_entry) {
                continue;
            }
            let described = entry.contains("  ")
                || lines.get(i + 1).is_some_and(|next| next.len() - next.trim_start().len() > line.len() - entry.len());
            assert!(described, "{args:?}: `{entry}` has no description:\n{help}");
        }
    }
}

/// A newsletter taken out of the configuration is archived: listed as such,
/// its issues still listed, no signups.
async fn a_removed_newsletter_is_archived(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let all = write_config(dir.path(), &db.url, "");
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Last one\n").unwrap();
    let send = ["issue", "send", "--newsletter", "weekend-reads", "--subject", "Farewell", "--yes", "--detach"];
    let sent = bulletin(&all, &[&send[..], &["--allow-empty", issue.to_str().unwrap()]].concat());
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));

    let fewer = write_config(
        dir.path(),
        &db.url,
        "[[newsletters]]\nslug = \"morning-briefing\"\nname = \"Morning Briefing\"\n",
    );
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&bulletin(&fewer, &["newsletters", "list", "--format", "json"]))).unwrap();
    let state = |slug: &str| listed.as_array().unwrap().iter().find(|n| n["slug"] == slug).map(|n| n["state"].clone());
    assert_eq!(state("morning-briefing"), Some("active".into()));
    assert_eq!(state("weekend-reads"), Some("archived".into()), "{listed}");
    let issues = stdout(&bulletin(&fewer, &["issue", "list", "--newsletter", "weekend-reads"]));
    assert!(issues.contains("Farewell") && issues.contains("weekend-reads"), "its history is kept: {issues}");
    let status = stdout(&bulletin(&fewer, &["issue", "status", "1"]));
    assert!(status.contains("Newsletter: Weekend Reads (weekend-reads, archived)"), "{status}");
    let refused = bulletin(&fewer, &[&send[..], &["--allow-empty", issue.to_str().unwrap()]].concat());
    assert!(!refused.status.success(), "no new issue for an archived newsletter");
}

on_both_backends!(
    lists_subscribers,
    migrate_and_bad_config,
    serve_writes_mail_and_stops_on_sigterm,
    a_removed_newsletter_is_archived
);

/// Import with bad rows, export, erase, then re-import: the erased address
/// needs a new opt-in.
async fn import_export_erase(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(dir.path(), app.database_url(), &format!("[server]\nsecret = \"{}\"\n", common::TEST_SECRET));
    let csv = dir.path().join("readers.csv");
    std::fs::write(
        &csv,
        "name,Email\nAda,ada@example.org\nBad,not-an-address\nBob,BOB@Example.org\nAda again,ada@example.org\n,\nCy,cy@example\n",
    )
    .unwrap();
    let out = bulletin(
        &config,
        &["subscribers", "import", "--newsletter", "weekend-reads", "--confirmed", csv.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("line 3: skipped") && stderr.contains("not-an-address"), "{stderr}");
    assert!(stderr.contains("line 7: skipped"), "{stderr}");
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(summary.contains("2 confirmed"), "{summary}");
    assert!(app.mail.mails_to("ada@example.org").is_empty(), "--confirmed sends nothing");

    // Export is the CSV a spreadsheet opens.
    let export = stdout(&bulletin(&config, &["subscribers", "export", "--newsletter", "weekend-reads"]));
    let lines: Vec<&str> = export.lines().collect();
    assert!(lines[0].starts_with("email,status,created_at,confirmed_at,"), "the list's columns come first: {export}");
    assert_eq!(lines.len(), 3, "{export}");
    assert!(lines[1].starts_with("ada@example.org,confirmed,") && lines[2].starts_with("BOB@example.org,confirmed,"));

    // An issue leaves a ledger row per reader.
    let issue = app.queue_issue("weekend-reads", "Before the erasure", "Hello.").await;
    app.wait_issue(issue, "done").await;
    assert_eq!(app.delivery_counts(issue).await.get("sent"), Some(&2));

    // Erase: gone from every list, consent record and ledger rows included.
    let out = bulletin(&config, &["subscribers", "erase", "ada@example.org", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let export = stdout(&bulletin(&config, &["subscribers", "export", "--newsletter", "weekend-reads"]));
    assert!(!export.contains("ada@"), "{export}");
    assert_eq!(app.delivery_counts(issue).await.get("sent"), Some(&1), "the erased reader's ledger row is gone");

    // Re-importing the erased address as confirmed is refused: it gets a new
    // opt-in instead (a mail, so without a terminal --yes is needed).
    let out = bulletin(
        &config,
        &["subscribers", "import", "--newsletter", "weekend-reads", "--confirmed", "--yes", csv.to_str().unwrap()],
    );
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(summary.contains("1 address(es) had been erased before"), "{summary}");
    assert_eq!(
        app.status_of("ada@example.org", "weekend-reads").await,
        Some(bulletin::domain::SubscriptionStatus::Pending)
    );
    let link = app.confirmation_link("ada@example.org", 2).await; // after the issue
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);
    assert_eq!(
        app.status_of("ada@example.org", "weekend-reads").await,
        Some(bulletin::domain::SubscriptionStatus::Confirmed)
    );

    // Reading from standard input, with a header that lacks `email`: a clear error, nothing stored.
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
        .args(["--config", config.to_str().unwrap(), "subscribers", "import", "--newsletter", "weekend-reads", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"address\nx@example.org\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `email` column"));
    app.stop().await;
}

/// `bulletin issue send` as an editor runs it, without a terminal: it
/// refuses without --yes, sends with it, and refuses the same file twice.
async fn issue_send_from_the_cli(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |s| s.sending.concurrency = 2).await else { return };
    app.import_confirmed("morning-briefing", &["ed1@example.org".to_owned(), "ed2@example.org".to_owned()]).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[server]\nsecret = \"{}\"\npublic_url = \"{}\"\n[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://{}\"\n",
        common::TEST_SECRET,
        app.base,
        app.mail.addr
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n{extra}", app.database_url())).unwrap();
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Hello\n\nNews.\n").unwrap();
    let send = |extra: &[&str]| {
        let mut args = vec!["issue", "send", "--newsletter", "morning-briefing", "--subject", "CLI issue"];
        args.extend_from_slice(extra);
        args.push(issue.to_str().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(&config)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, err) = send(&["--dry-run"]);
    assert!(ok && err.contains("Recipients: 2"), "{err}");
    // A dry run sends nothing, not even the test copy it is asked for.
    let (ok, err) = send(&["--dry-run", "--test-to", "editor@example.org"]);
    assert!(ok && err.contains("no mail sent"), "{err}");
    let (ok, err) = send(&[]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, err) = send(&["--test-to", "editor@example.org"]);
    assert!(ok, "{err}");
    assert_eq!(
        app.mail.wait_for("editor@example.org", 1).await[0].header("Subject").as_deref(),
        Some("[TEST] CLI issue")
    );
    assert!(app.mail.mails_to("ed1@example.org").is_empty(), "dry run and test copy send nothing to readers");
    // The test copy's links say what they are, on GET and on POST alike, and change nothing.
    let copy = &app.mail.mails_to("editor@example.org")[0];
    let unsubscribe = copy.link_to(&format!("{}/unsubscribe/", app.base)).expect("unsubscribe link");
    let preferences = copy.link_to(&format!("{}/preferences/", app.base)).expect("preferences link");
    let one_click = app.one_click_unsubscribe(copy).await;
    for page in [
        app.http.get(&unsubscribe).send().await.unwrap(),
        app.http.post(&unsubscribe).send().await.unwrap(),
        one_click,
        app.http.get(&preferences).send().await.unwrap(),
    ] {
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("This link comes from a test copy") && html.contains("Nothing has changed."), "{html}");
    }

    let (ok, err) = send(&["--yes"]);
    assert!(ok && err.contains("2 sent"), "{err}");
    assert_eq!(app.mail.mails_to("ed1@example.org").len(), 1);
    let (ok, err) = send(&["--yes"]);
    assert!(!ok && err.contains("already sent") && err.contains("--force"), "{err}");
    assert_eq!(app.mail.mails_to("ed1@example.org").len(), 1);
    let (ok, err) = send(&["--dry-run"]);
    assert!(ok && err.contains("Warning:") && err.contains("already sent"), "a dry run says so too: {err}");
    // The test copy asked for with the dry run above never came: only the real one did.
    assert_eq!(app.mail.mails_to("editor@example.org").len(), 1);

    // An issue to nobody (a newsletter nobody confirmed, or the wrong database) is refused.
    let from_stdin = |extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bulletin"))
            .arg("--config")
            .arg(&config)
            .args(["issue", "send", "--newsletter", "weekend-reads", "--subject", "Quiet week", "--yes", "--detach"])
            .args(extra)
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"# Nothing much\n").unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, err) = from_stdin(&[]);
    assert!(!ok && err.contains("no confirmed subscriber") && err.contains("--allow-empty"), "{err}");
    let (ok, err) = from_stdin(&["--allow-empty"]);
    assert!(ok && err.contains("Queued issue #2 for 0 subscriber(s)"), "{err}");
    // Scheduled for later: queued now, sent when due, by the running server.
    let later = chrono::DateTime::from_timestamp(app.clock.now() + 3600, 0).unwrap().to_rfc3339();
    std::fs::write(&issue, "# Tomorrow\n\nNews.\n").unwrap();
    let (ok, err) = send(&["--yes", "--at", &later]);
    assert!(ok && err.contains("It goes out at"), "{err}");
    let status = stdout(&bulletin(&config, &["issue", "status", "3"]));
    assert!(status.contains("Next message due: "), "{status}");
    let (ok, err) = send(&["--yes", "--at", "2001-01-01T00:00:00Z"]);
    assert!(!ok && err.contains("in the past"), "{err}");
    // Another newsletter's issue goes out meanwhile: the engine ran, the scheduled one stayed.
    app.import_confirmed("explaining-ukraine", &["now@example.org".to_owned()]).await;
    let now_id = app.queue_issue("explaining-ukraine", "Now", "# Now\n").await;
    app.wait_issue(now_id, "done").await;
    assert_eq!(app.mail.mails_to("ed1@example.org").len(), 1, "not before its time");
    app.clock.advance(3601);
    assert_eq!(app.mail.wait_for("ed1@example.org", 2).await.len(), 2, "sent once due");

    let list = stdout(&bulletin(&config, &["issue", "list"]));
    assert!(list.contains("CLI issue") && list.contains("done"), "{list}");
    assert!(list.lines().next().unwrap().contains("took"), "{list}");
    let status = stdout(&bulletin(&config, &["issue", "status", "1"]));
    assert!(status.contains("sent") && status.contains('2'), "{status}");
    assert!(status.contains("Newsletter: Morning Briefing (morning-briefing)"), "{status}");
    assert!(status.contains("Queued: 20") && status.contains("Done: 20") && status.contains("(took "), "{status}");
    app.stop().await;
}

/// An address that is also a spreadsheet formula is exported so that a
/// spreadsheet shows it as text, and imports back unchanged.
async fn export_never_runs_in_a_spreadsheet(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), app.database_url(), "");
    let formula = "=cmd|'/Ccalc'!A0@example.org";
    let csv = dir.path().join("readers.csv");
    std::fs::write(&csv, format!("email\n{formula}\n+1@example.org\nplain@example.org\n")).unwrap();
    let import = ["subscribers", "import", "--newsletter", "weekend-reads", "--confirmed", csv.to_str().unwrap()];
    assert!(bulletin(&config, &import).status.success());

    let listed = ["subscribers", "list", "--newsletter", "weekend-reads", "--format", "csv"];
    for args in [&["subscribers", "export", "--newsletter", "weekend-reads"][..], &listed[..]] {
        let export = stdout(&bulletin(&config, args));
        let cells: Vec<&str> = export.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
        assert_eq!(cells.len(), 3, "{export}");
        assert!(cells.contains(&"'=cmd|'/Ccalc'!A0@example.org"), "{export}");
        assert!(cells.contains(&"'+1@example.org") && cells.contains(&"plain@example.org"), "{export}");
        assert!(cells.iter().all(|c| !c.starts_with(['=', '+', '-', '@', '\t', '\r'])), "{export}");
    }

    // The export imports back as the same addresses.
    let exported = dir.path().join("export.csv");
    std::fs::write(&exported, stdout(&bulletin(&config, &["subscribers", "export", "--newsletter", "weekend-reads"])))
        .unwrap();
    let import =
        ["subscribers", "import", "--newsletter", "morning-briefing", "--confirmed", exported.to_str().unwrap()];
    assert!(bulletin(&config, &import).status.success());
    let mut moved: Vec<String> = app.subscribers("morning-briefing").await.into_iter().map(|(e, _)| e).collect();
    moved.sort();
    assert_eq!(moved, ["+1@example.org", formula, "plain@example.org"]);
    app.stop().await;
}

on_both_backends!(import_export_erase, issue_send_from_the_cli, export_never_runs_in_a_spreadsheet);
