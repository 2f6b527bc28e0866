//! `bulletin subscribers import` with hostile files, through the real binary:
//! a 20 MB field is quoted cut, and 200 000 bad rows are reported as they are
//! found (not gathered until the end) while every good row lands.

//! `bulletin subscribers import` through the real binary: lists as other
//! systems export them (Mailchimp's headers, semicolons, CRLF line ends),
//! every row read accounted for in one bucket, names and consent dates kept,
//! readers who left the old list not made subscribers again, a question
//! before confirmation mail goes out; and hostile files: a 20 MB field is
//! quoted cut, and 200 000 bad rows are reported as they are found (not
//! gathered until the end) while every good row lands.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestApp, TestDb};

fn write_config(dir: &Path, database_url: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[server]\nsecret = \"{}\"\n[database]\nurl = \"{database_url}\"\n[mail]\ntransport = \"file\"\nfile_dir = \"{}\"\n",
        common::TEST_SECRET,
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `bulletin subscribers import --newsletter morning-briefing ARGS…`, ready to run.
fn import_command(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bulletin"));
    command
        .arg("--config")
        .arg(config)
        .args(["subscribers", "import", "--newsletter", "morning-briefing"])
        .args(args)
        .env_remove("BULLETIN_CONFIG")
        .env("RUST_LOG", "warn");
    command
}

fn import(config: &Path, file: &str) -> Command {
    import_command(config, &["--confirmed", file])
}

/// Runs an import without a terminal (standard input empty).
fn run(config: &Path, args: &[&str]) -> (Output, String, String) {
    let out = import_command(config, args).stdin(Stdio::null()).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    (out, stdout, stderr)
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The summary's buckets: [rows read, new, already there, duplicates, bad],
/// checked to add up to the rows read.
fn buckets(summary: &str) -> [u64; 5] {
    let number = |line: &str| line.split_whitespace().find_map(|w| w.parse::<u64>().ok());
    let find = |marker: &str| {
        summary.lines().find(|l| l.contains(marker)).and_then(number).unwrap_or_else(|| panic!("{marker}: {summary}"))
    };
    let counts =
        [find("Read "), find(" new: "), find(" already there"), find(" in the file (the first"), find(" skipped")];
    assert_eq!(counts[0], counts[1..].iter().sum::<u64>(), "every row in exactly one bucket: {summary}");
    counts
}

/// Every row of `sql` with each column as text (NULL as `None`).
async fn rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::{Connection, Row};
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let found = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        found.iter().map(|r| (0..r.len()).map(|i| r.try_get(i).unwrap()).collect()).collect()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let found = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        found.iter().map(|r| (0..r.len()).map(|i| r.try_get(i).unwrap()).collect()).collect()
    }
}

/// (email, status, name) of every subscription to morning-briefing, by address.
async fn subscriptions(url: &str) -> Vec<(String, String, Option<String>)> {
    rows(
        url,
        "SELECT s.email, sub.status, s.name FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
         JOIN newsletters n ON n.id = sub.newsletter_id WHERE n.slug = 'morning-briefing' ORDER BY s.email",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].clone()))
    .collect()
}

/// (action, source, time) of the consent record of `email`, oldest entry first.
async fn consent(url: &str, email: &str) -> Vec<(String, String, i64)> {
    let sql = format!(
        "SELECT e.action, e.source, CAST(e.created_at AS TEXT) FROM consent_events e \
         JOIN subscribers s ON s.id = e.subscriber_id WHERE s.email = '{email}' ORDER BY e.id"
    );
    rows(url, &sql)
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].as_deref().unwrap().parse().unwrap()))
        .collect()
}

/// The largest resident size the process reached, in KiB (VmHWM), while it runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn a_huge_bad_field_is_quoted_cut(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);
    let csv = dir.path().join("huge.csv");
    let huge = "x".repeat(20 * 1024 * 1024);
    std::fs::write(&csv, format!("email\nfirst@example.org\n{huge}\nlast@example.org\n")).unwrap();
    let out = import(&config, csv.to_str().unwrap()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", &stderr[..stderr.len().min(2000)]);
    assert!(stderr.len() < 1000, "the 20 MB field is not echoed whole: {} bytes on stderr", stderr.len());
    let expected = format!("line 3: skipped: \"{}…\": ", "x".repeat(60));
    assert!(stderr.contains(&expected), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(buckets(&stdout), [3, 2, 0, 0, 1]);
    assert!(stdout.contains("2 confirmed") && stdout.contains("1 bad row skipped"), "{stdout}");
}

async fn bad_rows_are_reported_as_found(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);

    // Through a pipe: the first bad row is reported while the input is still open.
    let mut child =
        import(&config, "-").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "email\nnot-an-address").unwrap();
    stdin.flush().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (seen, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = seen.send(std::mem::take(&mut line));
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).expect("a bad row is reported before the input ends");
    assert!(first.starts_with("line 2: skipped: \"not-an-address\""), "{first}");

    // 200 000 bad rows (each with a 200-character value) among 2 000 good ones.
    let started = Instant::now();
    let value = "y".repeat(200);
    let mut rss = 0;
    for i in 0..200_000 {
        writeln!(stdin, "bad-{i}-{value}").unwrap();
        if i % 100 == 0 {
            writeln!(stdin, "reader{}@example.org", i / 100).unwrap();
        }
        if i % 20_000 == 0 {
            rss = rss.max(peak_rss_kib(child.id()).unwrap_or(0));
        }
    }
    rss = rss.max(peak_rss_kib(child.id()).unwrap_or(0));
    drop(stdin);
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    let reported: Vec<String> = lines.try_iter().collect();
    eprintln!(
        "200 000 bad rows: {:.1} s, peak RSS {} MiB (before the end of input)",
        started.elapsed().as_secs_f64(),
        rss / 1024
    );
    assert!(status.success(), "{stdout} {:?}", reported.last());
    assert_eq!(reported.iter().filter(|l| l.contains(": skipped: ")).count(), 200_000, "each bad row, as it was found");
    assert!(stdout.contains("2000 confirmed") && stdout.contains("200001 bad rows skipped"), "{stdout}");
    assert!(rss < 60 * 1024, "bad rows are not kept: peak RSS {} MiB", rss / 1024);
    let store = bulletin::store::Store::connect(&db.url, 1).await.unwrap();
    assert_eq!(store.subscription_counts().await.unwrap().values().sum::<i64>(), 2000, "every good row landed");
    store.close().await;
}

/// A Mailchimp export, as Mailchimp zips it (subscribed and unsubscribed
/// members, quoted headers, CRLF): names, consent dates and the source come
/// along; whoever unsubscribed there is recorded as unsubscribed here, and
/// importing the subscribed list again makes nobody a subscriber again.
async fn a_mailchimp_export_moves_with_its_readers(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);
    // A reader of ours who was erased, and is on the Mailchimp list too.
    for args in [
        &["subscribers", "add", "erased@example.org", "--newsletter", "weekend-reads", "--confirmed"][..],
        &["subscribers", "erase", "erased@example.org", "--yes"][..],
    ] {
        let out =
            Command::new(env!("CARGO_BIN_EXE_bulletin")).arg("--config").arg(&config).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let (out, summary, stderr) = run(&config, &["--confirmed", &fixture("mailchimp_subscribed.csv")]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(buckets(&summary), [3, 3, 0, 0, 0]);
    assert!(summary.contains("Read 3 rows (a Mailchimp export, fields separated by ',')"), "{summary}");
    assert!(
        summary.contains(
            "Columns used: address: Email Address; name: First Name + Last Name; consent date: CONFIRM_TIME or OPTIN_TIME."
        ),
        "{summary}"
    );
    assert!(summary.contains("Ignored: Address, Phone Number, MEMBER_RATING, OPTIN_IP,"), "{summary}");
    assert!(summary.contains("3 new: 3 confirmed, 0 pending (0 confirmation mails queued)"), "{summary}");
    let name = |n: &str| Some(n.to_owned());
    assert_eq!(
        subscriptions(&db.url).await,
        [
            ("ada@example.org".to_owned(), "confirmed".to_owned(), name("Ada Lovelace")),
            ("grace@example.org".to_owned(), "confirmed".to_owned(), name("Grace Hopper")),
            ("linus@example.org".to_owned(), "confirmed".to_owned(), None),
        ]
    );
    // CONFIRM_TIME (2019-03-04 12:00 UTC), else OPTIN_TIME (2020-06-01 08:00 UTC), else the import's own time.
    assert_eq!(
        consent(&db.url, "ada@example.org").await,
        [("confirm".into(), "import:mailchimp".into(), 1_551_700_800)]
    );
    assert_eq!(
        consent(&db.url, "grace@example.org").await,
        [("confirm".into(), "import:mailchimp".into(), 1_590_998_400)]
    );
    let linus = consent(&db.url, "linus@example.org").await;
    assert!(linus.len() == 1 && linus[0].2 > 1_700_000_000, "{linus:?}");

    // The unsubscribed export: Grace left after she consented (so she is
    // unsubscribed now), Olga is recorded as unsubscribed, and the address
    // erased here stays out: nothing of it is stored again.
    let (out, summary, stderr) = run(&config, &["--confirmed", &fixture("mailchimp_unsubscribed.csv")]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(buckets(&summary), [3, 1, 2, 0, 0]);
    assert!(summary.contains("1 unsubscribed as in the list"), "{summary}");
    assert!(
        summary.contains("2 already there (1 now unsubscribed as in the list, 1 erased here earlier and left out)"),
        "{summary}"
    );
    assert!(summary.contains("left on: UNSUB_TIME"), "{summary}");
    let statuses: Vec<(String, String)> = subscriptions(&db.url).await.into_iter().map(|(e, s, _)| (e, s)).collect();
    let status = |email: &str| statuses.iter().find(|(e, _)| e == email).map(|(_, s)| s.as_str());
    assert_eq!((status("grace@example.org"), status("olga@example.org")), (Some("unsubscribed"), Some("unsubscribed")));
    assert_eq!(status("erased@example.org"), None);
    assert!(rows(&db.url, "SELECT id FROM subscribers WHERE email_key = 'erased@example.org'").await.is_empty());
    assert_eq!(
        consent(&db.url, "grace@example.org").await[1],
        ("unsubscribe".into(), "import:mailchimp".into(), 1_643_796_000),
        "UNSUB_TIME, 2022-02-02 10:00 UTC"
    );
    assert_eq!(
        consent(&db.url, "olga@example.org").await,
        [("unsubscribe".into(), "import:mailchimp".into(), 1_620_191_105)]
    );

    // Importing the subscribed list again changes nobody.
    let (out, summary, stderr) = run(&config, &["--confirmed", &fixture("mailchimp_subscribed.csv")]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(buckets(&summary), [3, 0, 3, 0, 0]);
    assert!(summary.contains("3 already there\n"), "{summary}");
    assert_eq!(subscriptions(&db.url).await[1].1, "unsubscribed", "Grace stays unsubscribed");
}

/// A semicolon-separated file with CRLF line ends, a byte-order mark,
/// duplicates, bad rows and an address already there: a dry run changes
/// nothing, and every row read is reported in exactly one bucket, each
/// skipped row once, on its own line number.
async fn every_row_is_accounted_for(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);
    let earlier = dir.path().join("earlier.csv");
    std::fs::write(&earlier, "email\nfay@example.org\n").unwrap();
    assert!(run(&config, &["--confirmed", earlier.to_str().unwrap()]).0.status.success());

    let file = fixture("readers_semicolons_crlf.csv");
    let skipped = [
        "line 4: skipped: the row has 1 field(s), but the address belongs in field 2 (`email`): is the delimiter right?",
        "line 5: skipped: \"not-an-address\": ",
        "line 6: skipped: the address of line 2 again",
        "line 7: skipped: the date \"03/04/2019\" in `signup_date` is not one Bulletin reads",
        "line 8: skipped: the row is empty",
        "line 10: skipped: the address of line 3 again",
    ];
    let check_skipped = |stderr: &str| {
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), skipped.len(), "{stderr}");
        for (line, expected) in lines.iter().zip(skipped) {
            assert!(line.starts_with(expected), "{line:?} is not {expected:?}");
        }
    };
    let (out, summary, stderr) = run(&config, &["--confirmed", "--dry-run", &file]);
    assert!(out.status.success(), "{stderr}");
    check_skipped(&stderr);
    assert!(summary.contains("Dry run: nothing was changed or sent."), "{summary}");
    assert_eq!(buckets(&summary), [9, 2, 1, 2, 4]);
    assert_eq!(subscriptions(&db.url).await.len(), 1, "the dry run changed nothing");

    let (out, summary, stderr) = run(&config, &["--confirmed", &file]);
    assert!(out.status.success(), "{stderr}");
    check_skipped(&stderr);
    assert_eq!(buckets(&summary), [9, 2, 1, 2, 4]);
    assert!(summary.contains("fields separated by ';'"), "{summary}");
    assert!(summary.contains("consent date: signup_date; source: source."), "{summary}");
    let found = subscriptions(&db.url).await;
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0], ("ada@example.org".to_owned(), "confirmed".to_owned(), Some("Ada".to_owned())));
    assert_eq!(consent(&db.url, "ada@example.org").await, [("confirm".into(), "import:website".into(), 1_551_657_600)]);
    assert_eq!(consent(&db.url, "bob@example.org").await[0].1, "import", "no source column value, no exporter");
    assert_eq!(found[2].2.as_deref(), Some("Fay"), "a name the subscriber lacked is filled in");

    // A file whose every row is bad imports nothing, and says so by its exit code.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "email\nnot-an-address\n\"\"\n").unwrap();
    let (out, _, stderr) = run(&config, &["--confirmed", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing was imported: every row was bad"), "{stderr}");

    // A header in another language needs --column; a wrong --delimiter is pointed out.
    let french = dir.path().join("french.csv");
    std::fs::write(&french, "Nom\tCourriel\nZoé\tzoe@example.org\n").unwrap();
    let (out, _, stderr) = run(&config, &["--confirmed", french.to_str().unwrap()]);
    assert!(!out.status.success() && stderr.contains("no `email` column (found: Nom, Courriel)"), "{stderr}");
    assert!(stderr.contains("--column"), "{stderr}");
    let (out, summary, stderr) = run(&config, &["--confirmed", "--column", "courriel", french.to_str().unwrap()]);
    assert!(out.status.success(), "{stderr}");
    assert!(summary.contains("fields separated by tabs") && summary.contains("Ignored: Nom."), "{summary}");
    let (out, _, stderr) = run(&config, &["--confirmed", "--delimiter", ",", &file]);
    assert!(!out.status.success() && stderr.contains("try --delimiter ';'"), "{stderr}");
}

/// An import that would queue confirmation mail asks first on a terminal,
/// and without one refuses unless --yes; either way it says how many.
async fn confirmation_mail_is_asked_for(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);
    let file = dir.path().join("new.csv");
    std::fs::write(&file, "email,name\nn1@example.org,Nora\nn2@example.org,\nn3@example.org,\n").unwrap();
    let file = file.to_str().unwrap();
    let queued = || async { common::bin::ledger(&db.url, 0).await.len() };

    let (out, _, stderr) = run(&config, &[file]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("would send 3 confirmation emails") && stderr.contains("--yes"), "{stderr}");
    assert!(subscriptions(&db.url).await.is_empty() && queued().await == 0, "nothing imported");
    let mut child = import_command(&config, &["-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(file).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("would send 3"));

    // On a terminal (`script` gives the command one): the question, and "n" changes nothing.
    let on_terminal = |answer: &str| {
        let command = format!(
            "{} --config {} subscribers import --newsletter morning-briefing {file}",
            env!("CARGO_BIN_EXE_bulletin"),
            config.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("BULLETIN_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, screen) = on_terminal("n\n");
    assert!(!ok && screen.contains("This will send 3 confirmation emails. Continue? [y/N]"), "{screen}");
    assert!(subscriptions(&db.url).await.is_empty() && queued().await == 0, "nothing imported");
    let (ok, screen) = on_terminal("y\n");
    assert!(ok && screen.contains("3 new: 0 confirmed, 3 pending (3 confirmation mails queued)"), "{screen}");
    assert_eq!(queued().await, 3);

    // Nothing more to send: no question, and --yes is not needed.
    let (out, summary, stderr) = run(&config, &[file]);
    assert!(out.status.success(), "{stderr}");
    assert!(summary.contains("3 already there") && summary.contains("(0 confirmation mails queued)"), "{summary}");
    assert_eq!(queued().await, 3);
}

/// A name from the list is in the To header of each issue to that reader;
/// a reader without one gets the mail exactly as before.
async fn names_reach_the_readers_mail(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), app.database_url());
    let file = dir.path().join("named.csv");
    std::fs::write(&file, "Email Address,First Name,Last Name\nada@example.org,Ada,Lovelace\nbob@example.org,,\n")
        .unwrap();
    let (out, _, stderr) = run(&config, &["--confirmed", file.to_str().unwrap()]);
    assert!(out.status.success(), "{stderr}");
    let issue = app.queue_issue("morning-briefing", "Named", "Hello, readers.").await;
    app.wait_issue(issue, "done").await;
    let ada = app.mail.wait_for("ada@example.org", 1).await.remove(0);
    let bob = app.mail.wait_for("bob@example.org", 1).await.remove(0);
    assert_eq!(ada.header("To").as_deref(), Some("\"Ada Lovelace\" <ada@example.org>"));
    assert_eq!(bob.header("To").as_deref(), Some("bob@example.org"));
    assert!(!ada.text().contains("Ada"), "the shipped templates do not print the name");

    // A later list with another name keeps the one already there.
    std::fs::write(&file, "email,name\nada@example.org,Augusta King\n").unwrap();
    assert!(run(&config, &["--confirmed", file.to_str().unwrap()]).0.status.success());
    assert_eq!(subscriptions(app.database_url()).await[0].2.as_deref(), Some("Ada Lovelace"));
    app.stop().await;
}

/// The name a list gave is shown where the operator looks for a reader
/// (`subscribers show`, `list`, `export`: after the contract's columns),
/// and an export imported elsewhere keeps it.
async fn names_are_shown_listed_and_exported(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db.url);
    let file = dir.path().join("named.csv");
    std::fs::write(&file, "email,name\nada@example.org,Ada Lovelace\nbob@example.org,\n").unwrap();
    let (out, _, stderr) = run(&config, &["--confirmed", file.to_str().unwrap()]);
    assert!(out.status.success(), "{stderr}");
    let stdout = |args: &[&str]| {
        let out = common::bin::bulletin(&config, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let table = stdout(&["subscribers", "show", "ada@example.org"]);
    assert!(table.lines().any(|l| l.split_whitespace().eq(["name", "Ada", "Lovelace"])), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&["subscribers", "show", "ada@example.org", "--format", "json"])).unwrap();
    assert_eq!(json["name"], "Ada Lovelace");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&["subscribers", "show", "bob@example.org", "--format", "json"])).unwrap();
    assert_eq!(json["name"], serde_json::Value::Null);

    let list = ["subscribers", "list", "--newsletter", "morning-briefing", "--format"];
    let csv = stdout(&[&list[..], &["csv"]].concat());
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(reader.headers().unwrap(), vec!["email", "status", "created_at", "confirmed_at", "name"]);
    let rows: Vec<(String, String)> =
        reader.records().map(|r| r.unwrap()).map(|r| (r[0].to_owned(), r[4].to_owned())).collect();
    assert_eq!(rows, [("ada@example.org".into(), "Ada Lovelace".into()), ("bob@example.org".into(), String::new())]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&[&list[..], &["json"]].concat())).unwrap();
    assert_eq!((&json[0]["name"], &json[1]["name"]), (&"Ada Lovelace".into(), &serde_json::Value::Null));

    let export = stdout(&["subscribers", "export", "--newsletter", "morning-briefing"]);
    let mut reader = csv::Reader::from_reader(export.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header[..4], ["email", "status", "created_at", "confirmed_at"], "the contract's columns first");
    assert_eq!(header.last().map(String::as_str), Some("name"));
    let ada = reader.records().map(|r| r.unwrap()).find(|r| &r[0] == "ada@example.org").unwrap();
    assert_eq!(ada.iter().next_back(), Some("Ada Lovelace"));

    // The export, imported into another database, brings the name along.
    let Some(other) = TestDb::create(backend).await else { return };
    let other_dir = tempfile::tempdir().unwrap();
    let other_config = write_config(other_dir.path(), &other.url);
    let exported = other_dir.path().join("export.csv");
    std::fs::write(&exported, &export).unwrap();
    let (out, _, stderr) = run(&other_config, &["--confirmed", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(subscriptions(&other.url).await[0].2.as_deref(), Some("Ada Lovelace"));
}

on_both_backends!(
    a_huge_bad_field_is_quoted_cut,
    bad_rows_are_reported_as_found,
    a_mailchimp_export_moves_with_its_readers,
    every_row_is_accounted_for,
    confirmation_mail_is_asked_for,
    names_reach_the_readers_mail,
    names_are_shown_listed_and_exported,
);
