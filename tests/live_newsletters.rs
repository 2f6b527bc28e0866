//! The configuration changes under a running `bulletin serve`: a newsletter
//! added to `config.toml` gets its mail sent by whichever process claims it,
//! and the issues of a newsletter taken out are held, never skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::bin::{KillOnDrop, bulletin, issue_status, ledger};
use common::{Backend, MailSink, TestDb};

/// A fresh database, a mail sink, and the operator's config.toml for them
/// with a server on a free port.
struct Site {
    db: TestDb,
    mail: MailSink,
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
}

impl Site {
    async fn new(backend: Backend, newsletters: &str) -> Option<Self> {
        let db = TestDb::create(backend).await?;
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("config.toml");
        let site = Self { db, mail: MailSink::start(), dir, port, config };
        site.configure(newsletters);
        Some(site)
    }

    /// Writes config.toml anew with Weekend Reads and `newsletters`.
    fn configure(&self, newsletters: &str) {
        let text = format!(
            "[server]\nsecret = \"{}\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             [database]\nurl = \"{}\"\n[mail]\ntransport = \"smtp\"\nsmtp_url = \"smtp://{}\"\n\
             [sending]\nrate_per_second = 100\nconcurrency = 2\n\
             [[newsletters]]\nslug = \"weekend-reads\"\nname = \"Weekend Reads\"\n{newsletters}",
            common::TEST_SECRET,
            self.db.url,
            self.mail.addr,
            port = self.port,
        );
        std::fs::write(&self.config, text).unwrap();
    }
}

const LATE_NEWS: &str = "[[newsletters]]\nslug = \"late-news\"\nname = \"Late News\"\n";
const LATE_DIGEST: &str = "[[newsletters]]\nslug = \"late-digest\"\nname = \"Late Digest\"\n[newsletters.digest]\ntimezone = \"Europe/Kyiv\"\n";

fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts `serve` and waits until it answers.
async fn serve(config: &Path, port: u16) -> KillOnDrop {
    let child = KillOnDrop::start(config, "serve", &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

/// Stops `serve` with SIGTERM as an operator does and returns its log.
async fn stop(mut child: KillOnDrop) -> String {
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    log
}

/// Imports `readers` confirmed readers of `slug` (reader0@…, reader1@…).
fn import(dir: &Path, config: &Path, slug: &str, readers: usize) -> Vec<String> {
    let emails: Vec<String> = (0..readers).map(|i| format!("reader{i}@{slug}.example.org")).collect();
    let csv = dir.join(format!("{slug}.csv"));
    std::fs::write(&csv, format!("email\n{}\n", emails.join("\n"))).unwrap();
    succeeded(&bulletin(
        config,
        &["subscribers", "import", "--newsletter", slug, "--confirmed", csv.to_str().unwrap()],
    ));
    emails
}

/// Waits until `issue status ID` says the issue is no longer sending; returns what it says.
async fn settled_status(config: &Path, id: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = issue_status(config, id);
        if !status.contains("Status: sending") {
            return status;
        }
        assert!(Instant::now() < deadline, "issue #{id} still sending: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all(rows: &[(String, i64)], status: &str) -> bool {
    rows.iter().all(|(s, _)| s == status)
}

/// A newsletter added to config.toml while `serve` runs: readers imported,
/// an issue queued with --detach; `serve` delivers every copy, none
/// skipped, and takes its readers' unsubscribes.
async fn a_newsletter_added_while_serving_is_sent(backend: Backend) {
    let Some(site) = Site::new(backend, "").await else { return };
    let (db, mail, dir, port, config) = (&site.db, &site.mail, &site.dir, site.port, site.config.clone());
    let server = serve(&config, port).await;

    site.configure(LATE_NEWS);
    let readers = import(dir.path(), &config, "late-news", 30);
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Hello\n\nNews.\n").unwrap();
    let send = ["issue", "send", "--newsletter", "late-news", "--subject", "Late", "--yes", "--detach"];
    succeeded(&bulletin(&config, &[&send[..], &[issue.to_str().unwrap()]].concat()));
    let status = settled_status(&config, 1).await;
    let rows = ledger(&db.url, 1).await;
    assert!(rows.len() == 30 && all(&rows, "sent"), "every copy delivered: {rows:?}\n{status}");
    assert!(status.contains("Status: done") && !status.contains("skipped"), "{status}");
    let got = mail.wait_for(&readers[0], 1).await;
    assert!(got[0].header("Subject").as_deref() == Some("Late"), "{:?}", got[0].header("Subject"));
    // Its readers can leave it at the running server, which started without it.
    let link = got[0].header("List-Unsubscribe").expect("List-Unsubscribe").trim_matches(['<', '>']).to_owned();
    let left = reqwest::Client::new()
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 200, "{}", left.text().await.unwrap());
    let listed = bulletin(&config, &["subscribers", "export", "--newsletter", "late-news"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains(&format!("{},unsubscribed", readers[0])), "{listed}");
    stop(server).await;
}

/// A digest newsletter added while `serve` runs, sent with `digest run` in
/// the foreground while `serve` claims rows of it too (with two connections
/// the foreground holds 128 rows at most): every copy is delivered.
async fn a_digest_added_while_serving_is_sent_in_the_foreground(backend: Backend) {
    let Some(site) = Site::new(backend, "").await else { return };
    let (db, mail, dir, port, config) = (&site.db, &site.mail, &site.dir, site.port, site.config.clone());
    let server = serve(&config, port).await;

    site.configure(LATE_DIGEST);
    let digest_readers = import(dir.path(), &config, "late-digest", 300);
    succeeded(&bulletin(
        &config,
        &["items", "add", "--newsletter", "late-digest", "--title", "Trains", "--url", "https://news.test/t"],
    ));
    let run = bulletin(&config, &["digest", "run", "--newsletter", "late-digest", "--yes"]);
    let said = succeeded(&run);
    let rows = ledger(&db.url, 1).await;
    assert!(rows.len() == 300 && all(&rows, "sent"), "every copy delivered: {said}\n{rows:?}");
    assert_eq!(mail.wait_for(&digest_readers[299], 1).await.len(), 1);
    let log = stop(server).await;
    assert!(log.contains("sending issue issue=1"), "serve took its share of the digest: {log}");
}

/// A newsletter taken out of config.toml while its issue waits: `serve`
/// restarted with the new configuration holds the issue (paused, every row
/// still queued), `issue status` says why and what to do, and it goes out
/// once the newsletter is back and the issue resumed.
async fn a_newsletter_removed_while_queued_is_held(backend: Backend) {
    let Some(site) = Site::new(backend, LATE_NEWS).await else { return };
    let (db, mail, dir, port, config) = (&site.db, &site.mail, &site.dir, site.port, site.config.clone());
    let readers = import(dir.path(), &config, "late-news", 20);
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Held\n\nNews.\n").unwrap();
    let send = ["issue", "send", "--newsletter", "late-news", "--subject", "Held", "--yes", "--detach"];
    succeeded(&bulletin(&config, &[&send[..], &[issue.to_str().unwrap()]].concat()));

    site.configure("");
    let server = serve(&config, port).await;
    // The engine runs: another newsletter's issue goes out meanwhile.
    let others = import(dir.path(), &config, "weekend-reads", 2);
    let send = ["issue", "send", "--newsletter", "weekend-reads", "--subject", "Other", "--yes", "--detach"];
    succeeded(&bulletin(&config, &[&send[..], &[issue.to_str().unwrap()]].concat()));
    assert!(settled_status(&config, 2).await.contains("Status: done"));
    assert_eq!(mail.wait_for(&others[1], 1).await.len(), 1);

    let status = settled_status(&config, 1).await;
    let rows = ledger(&db.url, 1).await;
    assert!(rows.len() == 20 && all(&rows, "queued"), "held, not skipped or failed: {rows:?}\n{status}");
    assert!(status.contains("Status: paused"), "{status}");
    assert!(
        status.contains("\"late-news\" is no longer in the configuration")
            && status.contains("put it back in config.toml and run `bulletin issue resume 1`"),
        "says why and what to do: {status}"
    );
    assert!(mail.mails_to(&readers[0]).is_empty());
    let refused = bulletin(&config, &["issue", "resume", "1", "--detach"]);
    assert!(!refused.status.success(), "not resumed while the newsletter is out of the configuration");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("put it back in config.toml"), "{said}");
    assert!(all(&ledger(&db.url, 1).await, "queued"));

    // Back in the configuration: resumed, the running server sends it.
    site.configure(LATE_NEWS);
    succeeded(&bulletin(&config, &["issue", "resume", "1", "--detach"]));
    let status = settled_status(&config, 1).await;
    let rows = ledger(&db.url, 1).await;
    assert!(rows.len() == 20 && all(&rows, "sent"), "{rows:?}\n{status}");
    assert_eq!(mail.wait_for(&readers[19], 1).await.len(), 1);
    let log = stop(server).await;
    assert!(log.contains("issue held") && log.contains("issue=1"), "one log line says so: {log}");
}

/// The issue's (status, paused reason), read straight from the database
/// (any `bulletin` command would store its own configuration first).
async fn issue_row(db_url: &str, id: i64) -> (String, Option<String>) {
    use sqlx::Connection;
    const SQL: &str = "SELECT status, paused_reason FROM issues WHERE id = $1";
    if db_url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(db_url).await.unwrap();
        sqlx::query_as(SQL).bind(id).fetch_one(&mut conn).await.unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
        sqlx::query_as(SQL).bind(id).fetch_one(&mut conn).await.unwrap()
    }
}

/// A running `serve` follows its config.toml: SIGHUP (`systemctl reload`)
/// reads it again without stopping it, and a newsletter taken out of the
/// file has its scheduled issue held within seconds, with no command run.
async fn serve_follows_its_configuration_file(backend: Backend) {
    let Some(site) = Site::new(backend, LATE_NEWS).await else { return };
    let (db, dir, port, config) = (&site.db, &site.dir, site.port, site.config.clone());
    import(dir.path(), &config, "late-news", 5);
    let server = serve(&config, port).await;
    let later = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 3600, 0).unwrap().to_rfc3339();
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Tomorrow\n").unwrap();
    let send = ["issue", "send", "--newsletter", "late-news", "--subject", "Tomorrow", "--yes", "--at", &later];
    succeeded(&bulletin(&config, &[&send[..], &[issue.to_str().unwrap()]].concat()));

    Command::new("kill").arg("-HUP").arg(server.id().to_string()).status().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_ok(), "SIGHUP does not stop serve");
    assert_eq!(issue_row(&db.url, 1).await.0, "sending", "nothing changed in the file");

    site.configure("");
    let deadline = Instant::now() + Duration::from_secs(15);
    let (status, reason) = loop {
        let row = issue_row(&db.url, 1).await;
        if row.0 != "sending" {
            break row;
        }
        assert!(Instant::now() < deadline, "serve did not notice that late-news was taken out of config.toml");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, "paused");
    let reason = reason.unwrap_or_default();
    assert!(reason.contains("\"late-news\" is no longer in the configuration"), "{reason}");
    assert!(all(&ledger(&db.url, 1).await, "queued"));
    let log = stop(server).await;
    // Once for the SIGHUP (the file unchanged), once for the edit.
    assert_eq!(log.matches("configuration read again").count(), 2, "{log}");
    assert!(log.contains("issue held"), "{log}");
}

on_both_backends!(
    serve_follows_its_configuration_file,
    a_newsletter_added_while_serving_is_sent,
    a_digest_added_while_serving_is_sent_in_the_foreground,
    a_newsletter_removed_while_queued_is_held
);
