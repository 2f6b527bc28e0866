//! An operator's backups and moves: `bulletin backup FILE` copies the SQLite
//! database while `serve` takes signups, and the copy restores into a
//! working site; `bulletin migrate --to postgres://…` moves everything to
//! PostgreSQL so that links mailed before the move keep working and no id is
//! ever handed out twice. Everything runs through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulletin::app::{self, Running};
use bulletin::clock::Clock;
use bulletin::config::{DigestSettings, Settings};
use bulletin::digest::{Story, Trigger};
use bulletin::domain::{EmailAddress, SubscriptionStatus};
use bulletin::feedback::{Applied, Report, ReportKind, ReportSource};
use bulletin::store::{DigestOutcome, FeedFetch, Store};
use common::bin::bulletin;
use common::{Backend, MailSink, TestApp, TestDb};
use secrecy::SecretString;
use sqlx::Connection as _;

/// A config for the binary on `db` with no `server.secret`: the link secret
/// is the one generated into the database, as on a site that never set one.
fn config(dir: &Path, db: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[database]\nurl = \"{db}\"\n[mail]\ntransport = \"file\"\nfile_dir = \"{}\"\n",
        dir.join("outbox").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Test settings with the link secret kept in the database.
fn secret_in_database(settings: &mut Settings) {
    settings.server.secret = SecretString::from("");
}

/// A running Bulletin on an existing database (a restored backup, the new
/// PostgreSQL), with its own mail server.
struct Site {
    base: String,
    http: reqwest::Client,
    mail: MailSink,
    store: Store,
    running: Running,
}

impl Site {
    async fn start(db_url: &str, configure: impl FnOnce(&mut Settings)) -> Self {
        let mail = MailSink::start();
        let mut settings = common::test_settings(db_url, &mail);
        secret_in_database(&mut settings);
        configure(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        settings.server.listen = addr;
        settings.server.public_url = format!("http://{addr}");
        let running = app::start(&settings, Clock::system(), listener).await.expect("starts on the copy");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let store = Store::connect(db_url, 2).await.unwrap();
        Self { base: settings.server.public_url.clone(), http, mail, store, running }
    }

    /// A link from a mail sent by the old site, pointed at this one.
    fn moved(&self, link: &str, old_base: &str) -> String {
        link.replacen(old_base, &self.base, 1)
    }

    async fn status_of(&self, email: &str, slug: &str) -> Option<SubscriptionStatus> {
        let newsletter =
            self.store.list_newsletters().await.unwrap().into_iter().find(|n| n.slug.as_str() == slug).unwrap();
        let rows = self.store.subscribers_page(newsletter.id, None, 0, 10_000).await.unwrap();
        rows.into_iter().find(|r| r.email == email).map(|r| r.status)
    }

    async fn stop(self) {
        self.running.stop().await;
        self.store.close().await;
    }
}

/// The one-click unsubscribe URL of the newest mail to `to`.
async fn unsubscribe_link(mail: &MailSink, to: &str, nth: usize) -> String {
    let mails = mail.wait_for(to, nth).await;
    mails[nth - 1].header("List-Unsubscribe").expect("List-Unsubscribe").trim_matches(['<', '>']).to_owned()
}

async fn one_click(http: &reqwest::Client, link: &str) -> reqwest::StatusCode {
    http.post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap()
        .status()
}

/// A table's rows with every value as text (as both databases print it),
/// sorted, for comparing a copy with its source.
type Rows = Vec<Vec<Option<String>>>;

async fn columns_of(sqlite_url: &str, table: &str) -> Vec<String> {
    let mut conn = sqlx::SqliteConnection::connect(sqlite_url).await.unwrap();
    let columns = sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    columns
}

async fn dump(url: &str, table: &str, columns: &[String], filter: &str) -> Rows {
    use sqlx::Row;
    let list: Vec<String> = columns.iter().map(|c| format!("CAST({c} AS TEXT)")).collect();
    let sql = sqlx::AssertSqlSafe(format!("SELECT {} FROM {table} {filter}", list.join(", ")));
    let mut rows: Rows = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        rows.iter().map(|r| (0..columns.len()).map(|i| r.get(i)).collect()).collect()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
        rows.iter().map(|r| (0..columns.len()).map(|i| r.get(i)).collect()).collect()
    };
    rows.sort();
    rows
}

async fn scalar(url: &str, sql: &'static str) -> i64 {
    common::db::count(url, sql).await
}

/// Every table the SQLite migrations made, but the migrations' own.
async fn tables(sqlite_url: &str) -> Vec<String> {
    let mut conn = sqlx::SqliteConnection::connect(sqlite_url).await.unwrap();
    let names = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    names
}

/// Signups of new readers through the form, one after another, until `stop`;
/// returns how many succeeded and the slowest.
fn keep_signing_up(app: &TestApp, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, Duration)> {
    let client = sign_up_until(app, stop, 1, "late").pop().expect("one client");
    tokio::spawn(async move {
        let latencies = client.await.unwrap();
        (latencies.len(), latencies.iter().max().copied().unwrap_or_default())
    })
}

fn readers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@example.org")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_into_a_working_site() {
    common::bounded(backup_while_serving()).await;
}

async fn backup_while_serving() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, secret_in_database).await else { return };
    app.import_confirmed("morning-briefing", &readers("reader", 40)).await;
    assert_eq!(app.signup_form("pending@example.org", &["morning-briefing"]).await.status(), 200);
    let issue = app.queue_issue("morning-briefing", "Before the backup", "Hello.").await;
    app.wait_issue(issue, "done").await;
    let old_link = unsubscribe_link(&app.mail, "reader7@example.org", 1).await;

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), app.database_url());
    let file = dir.path().join("backups").join("bulletin-1.db");
    std::fs::create_dir(file.parent().unwrap()).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let signups = keep_signing_up(&app, stop.clone());
    // Some signups are in before the backup starts, so it runs among them.
    while scalar(app.database_url(), "SELECT COUNT(*) FROM subscribers WHERE email LIKE 'late%'").await < 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let args = ["backup".to_owned(), file.display().to_string()];
    let backup = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || bulletin(&config, &[&args[0], &args[1]])).await.unwrap()
    };
    let during = scalar(app.database_url(), "SELECT COUNT(*) FROM subscribers WHERE email LIKE 'late%'").await;
    // And some after it: signing up went on.
    while scalar(app.database_url(), "SELECT COUNT(*) FROM subscribers WHERE email LIKE 'late%'").await < during + 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (signed_up, slowest) = signups.await.unwrap();
    assert!(backup.status.success(), "backup failed: {}", text(&backup.stderr));
    assert!(text(&backup.stderr).contains("Backed up"), "{}", text(&backup.stderr));
    eprintln!("{signed_up} signups during the test, the slowest took {slowest:?}");
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["bulletin-1.db"], "nothing but the backup is left behind");

    // The backup is the live database as it was at one instant: every row
    // of the consent record and the ledger up to its newest, unchanged.
    let copy = format!("sqlite://{}", file.display());
    let live = app.database_url();
    for table in ["subscribers", "consent_events", "deliveries"] {
        let columns = columns_of(live, table).await;
        let newest = dump(&copy, table, &["MAX(id)".to_owned()], "").await[0][0].clone().unwrap();
        let in_copy = dump(&copy, table, &columns, "").await;
        let in_live = dump(live, table, &columns, &format!("WHERE id <= {newest}")).await;
        if table == "deliveries" {
            // Confirmation mail to late signups may have gone out since: compare the issue's rows whole.
            let issue_rows =
                |rows: &Rows| -> Rows { rows.iter().filter(|r| r[1].as_deref() == Some("issue")).cloned().collect() };
            assert_eq!(issue_rows(&in_copy), issue_rows(&in_live));
            assert_eq!(issue_rows(&in_copy).len(), 40);
            let ids = |rows: &Rows| -> Vec<Option<String>> { rows.iter().map(|r| r[0].clone()).collect() };
            assert_eq!(ids(&in_copy), ids(&in_live), "deliveries");
        } else {
            assert_eq!(in_copy, in_live, "{table}");
        }
    }
    let in_copy = scalar(&copy, "SELECT COUNT(*) FROM subscribers").await;
    assert!(in_copy > 41, "the backup has the readers from before it and some late signups ({in_copy})");

    // A second backup under the same name is refused, and the first is untouched.
    let before = std::fs::read(&file).unwrap();
    let again = bulletin(&config, &["backup", &file.display().to_string()]);
    assert_eq!(again.status.code(), Some(1));
    let said = text(&again.stderr);
    assert!(said.contains("already exists") && said.contains("never overwrites"), "{said}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "the existing file is untouched");

    // Restored into a fresh place, the site works, and a link mailed before the backup still does.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored = restored_dir.path().join("bulletin.db");
    std::fs::copy(&file, &restored).unwrap();
    let site = Site::start(&format!("sqlite://{}", restored.display()), |_| {}).await;
    assert_eq!(one_click(&site.http, &site.moved(&old_link, &app.base)).await, 200);
    assert_eq!(site.status_of("reader7@example.org", "morning-briefing").await, Some(SubscriptionStatus::Unsubscribed));
    assert_eq!(site.status_of("reader8@example.org", "morning-briefing").await, Some(SubscriptionStatus::Confirmed));
    assert_eq!(app.status_of("reader7@example.org", "morning-briefing").await, Some(SubscriptionStatus::Confirmed));
    site.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_backup_of_postgres_says_how_to_use_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "postgres://bulletin:s3cret@db.internal:5433/news");
    let file = dir.path().join("news.dump");
    let out = bulletin(&config, &["backup", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "the job was not done");
    let said = text(&out.stderr);
    let expected = format!(
        "pg_dump --format=custom --file={} --host=db.internal --port=5433 --username=bulletin news",
        file.display()
    );
    assert!(said.contains(&expected), "{said}");
    assert!(!said.contains("s3cret"), "the password stays out: {said}");
    assert!(!file.exists());
}

#[tokio::test]
async fn a_backup_needs_a_database_and_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.db");
    let config = config(dir.path(), &format!("sqlite://{}", missing.display()));
    let out = bulletin(&config, &["backup", &dir.path().join("b.db").display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("there is no SQLite database"), "{}", text(&out.stderr));
    assert!(!missing.exists(), "no empty database is made to back up");
    assert!(!dir.path().join("b.db").exists());
}

/// Data in every table: confirmed, pending and erased readers, a bounce, a complaint, an
/// issue, a digest with its stories and a feed, and the link secret.
async fn a_site_with_history(app: &TestApp, dir: &Path) {
    app.mail.reply_to_rcpt("bounces@example.org", 550, "5.1.1 no such user");
    let mut confirmed = readers("reader", 6);
    confirmed.push("bounces@example.org".into());
    app.import_confirmed("morning-briefing", &confirmed).await;
    app.import_confirmed("weekend-reads", &readers("reader", 2)).await;
    assert_eq!(app.signup_form("pending@example.org", &["morning-briefing"]).await.status(), 200);
    assert_eq!(app.signup_form("joined@example.org", &["weekend-reads"]).await.status(), 200);
    let link = app.confirmation_link("joined@example.org", 1).await;
    assert_eq!(app.http.post(&link).send().await.unwrap().status(), 200);

    let issue = app.queue_issue("morning-briefing", "Before the move", "Hello.").await;
    app.wait_issue(issue, "done").await;

    let services = app::services(&app.settings, app.clock.clone()).await.unwrap();
    let newsletter = app.newsletter("morning-briefing").await;
    let story = Story::new("Trains run on time", "https://news.test/trains", Some("A first."), None).unwrap();
    app.store.add_items(newsletter.id, &[story], "cli", app.clock.now()).await.unwrap();
    let fetch = FeedFetch::Changed { etag: Some("\"v1\""), last_modified: None };
    app.store.record_feed_fetch(newsletter.id, "https://news.test/rss", fetch, app.clock.now()).await.unwrap();
    let DigestOutcome::Made(run) = services.digests.run(&newsletter, Trigger::Editor).await.unwrap() else {
        panic!("the digest was made before")
    };
    app.wait_issue(run.issue_id.expect("the digest became an issue"), "done").await;
    // A reader reports the mail as spam: a feedback event, a complaint suppression.
    let complaint = Report {
        kind: ReportKind::Complaint,
        source: ReportSource::Generic,
        recipient: Some(EmailAddress::parse("reader5@example.org").unwrap()),
        return_path: None,
        message_id: None,
        detail: "marked as spam".into(),
        reason: None,
        report_id: Some("history-complaint".into()),
    };
    let applied = services.feedback.apply(&complaint).await.unwrap();
    assert!(matches!(applied, Applied::Unsubscribed { .. }), "{applied:?}");
    services.store.close().await;

    // The newest reader is erased: their id must never come back.
    assert_eq!(app.signup_form("zed@example.org", &["morning-briefing"]).await.status(), 200);
    app.mail.wait_for("zed@example.org", 1).await;
    let config = config(dir, app.database_url());
    let erase = bulletin(&config, &["subscribers", "erase", "zed@example.org", "--yes"]);
    assert!(erase.status.success(), "{}", text(&erase.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_postgres_keeps_everything_and_links_work() {
    common::bounded(move_to_postgres()).await;
}

async fn move_to_postgres() {
    let Some(target) = TestDb::create(Backend::Postgres).await else { return };
    let digest = |s: &mut Settings| {
        secret_in_database(s);
        s.newsletters[0].digest = Some(DigestSettings::default());
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, digest).await else { return };
    let dir = tempfile::tempdir().unwrap();
    a_site_with_history(&app, dir.path()).await;
    let old_link = unsubscribe_link(&app.mail, "reader3@example.org", 1).await;
    let pending_link = app.confirmation_link("pending@example.org", 1).await;
    let source = app.database_url().to_owned();
    let erased_id = scalar(&source, "SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'").await;
    assert!(erased_id > scalar(&source, "SELECT MAX(id) FROM subscribers").await, "the newest reader was erased");

    let config = config(dir.path(), &source);
    let moved = bulletin(&config, &["migrate", "--to", &target.url]);
    assert!(moved.status.success(), "migrate --to failed: {}", text(&moved.stderr));

    // Every table arrives whole, and the per-table counts say so.
    let printed = text(&moved.stdout);
    let tables = tables(&source).await;
    let filled = [
        "newsletters",
        "subscribers",
        "subscriptions",
        "confirmation_tokens",
        "consent_events",
        "issues",
        "deliveries",
        "suppressions",
        "settings",
        "digest_runs",
        "items",
        "digest_items",
        "issue_items",
        "feeds",
        "feedback_events",
    ];
    assert!(filled.iter().all(|t| tables.contains(&t.to_string())), "{tables:?}");
    for table in &tables {
        let columns = columns_of(&source, table).await;
        let (from, to) = (dump(&source, table, &columns, "").await, dump(&target.url, table, &columns, "").await);
        assert_eq!(from, to, "{table}");
        let line = printed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table.as_str()))
            .unwrap_or_else(|| panic!("{printed}"));
        assert_eq!(line.split_whitespace().nth(1), Some(from.len().to_string().as_str()), "{printed}");
        if filled.contains(&table.as_str()) {
            assert!(!from.is_empty(), "the test puts rows in {table}");
        }
    }
    assert!(
        dump(&target.url, "settings", &["name".into()], "").await.contains(&vec![Some("link_secret".into())]),
        "the link secret moved"
    );

    // The site runs on PostgreSQL: links mailed before the move still work.
    let site = Site::start(&target.url, digest).await;
    assert_eq!(one_click(&site.http, &site.moved(&old_link, &app.base)).await, 200);
    assert_eq!(site.status_of("reader3@example.org", "morning-briefing").await, Some(SubscriptionStatus::Unsubscribed));
    assert_eq!(site.http.post(site.moved(&pending_link, &app.base)).send().await.unwrap().status(), 200);
    assert_eq!(site.status_of("pending@example.org", "morning-briefing").await, Some(SubscriptionStatus::Confirmed));

    // A new reader gets an id above every one handed out before, the erased one's included.
    let max_delivery = scalar(&source, "SELECT MAX(id) FROM deliveries").await;
    let response = site
        .http
        .post(format!("{}/subscribe", site.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=newcomer%40example.org&form=several&newsletter=morning-briefing")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    site.mail.wait_for("newcomer@example.org", 1).await;
    let newcomer = scalar(&target.url, "SELECT id FROM subscribers WHERE email = 'newcomer@example.org'").await;
    assert!(newcomer > erased_id, "new id {newcomer}, erased {erased_id}");
    let newest_delivery = scalar(&target.url, "SELECT MAX(id) FROM deliveries").await;
    assert!(newest_delivery > max_delivery, "Message-IDs never repeat");
    site.stop().await;

    // A second move into the now busy database is refused and changes nothing.
    let mut before = vec![];
    for table in &tables {
        before.push(dump(&target.url, table, &columns_of(&source, table).await, "").await);
    }
    let again = bulletin(&config, &["migrate", "--to", &target.url]);
    assert_eq!(again.status.code(), Some(1));
    let said = text(&again.stderr);
    assert!(said.contains("already holds") && said.contains("subscribers"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    for (table, rows) in tables.iter().zip(before) {
        assert_eq!(dump(&target.url, table, &columns_of(&source, table).await, "").await, rows, "{table}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_refuses_a_table_it_does_not_know() {
    common::bounded(unknown_table()).await;
}

async fn unknown_table() {
    let Some(target) = TestDb::create(Backend::Postgres).await else { return };
    let Some(source) = TestDb::create(Backend::Sqlite).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &source.url);
    let add = bulletin(&config, &["subscribers", "add", "ada@example.org", "--newsletter", "morning-briefing"]);
    assert!(add.status.success(), "{}", text(&add.stderr));
    // What a later migration might add, unknown to this copier.
    let mut conn = sqlx::SqliteConnection::connect(&source.url).await.unwrap();
    sqlx::query("CREATE TABLE reader_notes (subscriber_id INTEGER, note TEXT)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let out = bulletin(&config, &["migrate", "--to", &target.url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("\"reader_notes\""), "{}", text(&out.stderr));
    assert_eq!(scalar(&target.url, "SELECT COUNT(*) FROM subscribers").await, 0);
    assert_eq!(scalar(&target.url, "SELECT COUNT(*) FROM newsletters").await, 0);

    let to_sqlite = bulletin(&config, &["migrate", "--to", &source.url]);
    assert_eq!(to_sqlite.status.code(), Some(1));
    assert!(text(&to_sqlite.stderr).contains("--to takes a PostgreSQL URL"), "{}", text(&to_sqlite.stderr));
}

/// Signups from `clients` readers at once until `stop`; each one's latency.
fn sign_up_until(
    app: &TestApp,
    stop: Arc<AtomicBool>,
    clients: usize,
    tag: &str,
) -> Vec<tokio::task::JoinHandle<Vec<Duration>>> {
    (0..clients)
        .map(|client| {
            let (http, url, stop, tag) = (app.http.clone(), app.url("/subscribe"), stop.clone(), tag.to_owned());
            tokio::spawn(async move {
                let mut latencies = vec![];
                while !stop.load(Ordering::Relaxed) {
                    let email = format!("{tag}-{client}-{}@example.org", latencies.len());
                    let body = common::serde_urlencoded_pairs(&[
                        ("email", &email),
                        ("form", "several"),
                        ("newsletter", "morning-briefing"),
                    ]);
                    let started = Instant::now();
                    let response = http
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200, "a signup during the backup failed");
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect()
}

async fn gathered(clients: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> String {
    let mut all = vec![];
    for client in clients {
        all.extend(client.await.unwrap());
    }
    all.sort();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    format!(
        "{} signups, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3
    )
}

/// How long a backup of a site with 100 000 readers takes, and what it does
/// to signups meanwhile (figures in docs/deploy.md, "Backups"). By hand:
/// `cargo test --release --test backup backup_timing -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints its figures"]
async fn backup_timing() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |s| {
        secret_in_database(s);
        s.signup.per_ip_per_minute = 0;
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let pool = common::db::Pool::connect(app.database_url()).await;
    pool.run(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO subscribers (email, email_key, created_at)
             SELECT 'bulk' || i || '@example.org', 'bulk' || i || '@example.org', 1700000000 + i FROM n;
         INSERT INTO subscriptions (subscriber_id, newsletter_id, status, created_at, confirmed_at)
             SELECT s.id, n.id, 'confirmed', s.created_at, s.created_at + 60
             FROM subscribers s, newsletters n WHERE n.slug = 'morning-briefing';
         INSERT INTO consent_events (subscriber_id, newsletter_id, action, source, ip, user_agent, created_at)
             SELECT subscriber_id, newsletter_id, a.action, 'form', '203.0.113.9',
                    'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', created_at
             FROM subscriptions, (SELECT 'signup' AS action UNION ALL SELECT 'confirm') a;
         INSERT INTO issues (newsletter_id, subject, body_markdown, content_hash, status, created_at, completed_at)
             SELECT id, 'Bulk', 'Hello, readers.', 'h', 'done', 1700200000, 1700200600 FROM newsletters
             WHERE slug = 'morning-briefing';
         INSERT INTO deliveries (kind, issue_id, subscriber_id, status, attempts, next_attempt_at, last_reply, created_at, sent_at)
             SELECT 'issue', i.id, s.subscriber_id, 'sent', 1, 1700200000, '250 2.0.0 Ok: queued as 4F2D81C0A7', 1700200000, 1700200300
             FROM subscriptions s, issues i;",
    )
    .await;
    pool.close().await;
    let db_file = app.database_url().trim_start_matches("sqlite://").to_owned();
    eprintln!(
        "made 100 000 readers, 200 000 consent events and 100 000 ledger rows in {:.1} s; database {:.1} MB",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&db_file).unwrap().len() as f64 / 1e6
    );

    let clients = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let before = sign_up_until(&app, stop.clone(), clients, "before");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    eprintln!("no backup, {clients} clients for 5 s: {}", gathered(before).await);

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), app.database_url());
    let file = dir.path().join("bulletin-backup.db");
    let stop = Arc::new(AtomicBool::new(false));
    let during = sign_up_until(&app, stop.clone(), clients, "during");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let args = ["backup".to_owned(), file.display().to_string()];
    let out = tokio::task::spawn_blocking(move || bulletin(&config, &[&args[0], &args[1]])).await.unwrap();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(out.status.success(), "{}", text(&out.stderr));
    eprintln!("bulletin backup: {:.2} s wall ({})", took.as_secs_f64(), text(&out.stderr).trim());
    eprintln!("during the backup (and 0.5 s either side), {clients} clients: {}", gathered(during).await);
    app.stop().await;
}
