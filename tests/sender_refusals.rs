//! Refusals for the sender's reasons, counted per issue and receiving domain:
//! an issue goes out with `bulletin issue send` through a real SMTP server
//! where one domain's recipients are refused at RCPT for a blocklisted
//! sending IP and the others accepted; later a DSN says another domain
//! refused one message for DMARC. Both are counted for their domain in
//! `issue status` and `bulletin stats`, the blocked domain is warned about
//! (once in the log, in `issue status`), and no reader is suppressed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::bin::{bulletin, issue_status, stdout_of, write_config};
use common::smtp::ReceivedMail;
use common::{Backend, MailSink, TestDb};
use serde_json::Value;

const SPAMHAUS: &str = "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org";
const BLOCKED: usize = 6;
const ACCEPTED: usize = 14;

fn blocked(n: usize) -> String {
    format!("reader{n}@example.net")
}

fn accepted(n: usize) -> String {
    format!("reader{n}@example.org")
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

/// A Postfix DSN about `mail` whose remote said `diagnostic` with `status`.
fn dsn(mail: &ReceivedMail, id: &str, status: &str, diagnostic: &str) -> String {
    let raw = String::from_utf8_lossy(&mail.raw).replace("\r\n", "\n");
    let headers = raw.split_once("\n\n").expect("headers, then a body").0.to_owned() + "\n";
    fixture(
        "dsn-postfix.eml",
        &[
            ("ENVELOPE", ""),
            ("VERP", &mail.from),
            ("RECIPIENT", &mail.to[0]),
            ("REPORT_ID", id),
            ("ACTION", "failed"),
            ("STATUS", status),
            ("DIAGNOSTIC", diagnostic),
            ("ORIGINAL_HEADERS", &headers),
        ],
    )
}

/// Runs the binary with `RUST_LOG=warn` (the log an operator sees) and `stdin`.
fn run_logged(config: &Path, args: &[&str], stdin: &str) -> Output {
    common::bin::bulletin_with_stdin(config, args, stdin, "warn")
}

/// A database with `BLOCKED` readers at example.net and `ACCEPTED` at
/// example.org confirmed on morning-briefing, and a config whose warning
/// needs 3 refusals; the sink refuses example.net's readers at RCPT.
fn setup(db: &TestDb, sink: &MailSink, dir: &Path) -> PathBuf {
    let config = write_config(
        dir,
        &db.url,
        &format!(
            "smtp_url = \"smtp://{}\"\n[sending]\nconcurrency = 2\npause_after_policy_failures = 1000\n\
             [bounces]\nreturn_path = \"bounces@example.com\"\nsender_refusal_warning_min = 3\n",
            sink.addr
        ),
    );
    let readers: Vec<String> = (0..BLOCKED).map(blocked).chain((0..ACCEPTED).map(accepted)).collect();
    let csv = dir.join("readers.csv");
    std::fs::write(&csv, format!("email\n{}\n", readers.join("\n"))).unwrap();
    stdout_of(&bulletin(
        &config,
        &["subscribers", "import", "--newsletter", "morning-briefing", "--confirmed", csv.to_str().unwrap()],
    ));
    for n in 0..BLOCKED {
        sink.reply_to_rcpt(&blocked(n), 554, SPAMHAUS);
    }
    config
}

/// The row of `domain` in `issue status`'s table of refusals by domain.
fn domain_row<'a>(status: &'a str, domain: &str) -> Option<&'a str> {
    status.lines().find(|line| line.starts_with(&format!("{domain} ")))
}

async fn a_blocking_domain_is_counted_and_warned_about(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let sink = MailSink::start();
    let dir = tempfile::tempdir().unwrap();
    let config = setup(&db, &sink, dir.path());
    let issue = dir.path().join("issue.md");
    std::fs::write(&issue, "# Hello\n\nNews.\n").unwrap();

    let send = run_logged(
        &config,
        &[
            "issue",
            "send",
            "--newsletter",
            "morning-briefing",
            "--subject",
            "Blocked",
            "--yes",
            issue.to_str().unwrap(),
        ],
        "",
    );
    let log = String::from_utf8_lossy(&send.stderr).to_string();
    // The send finished (some messages undelivered: a non-zero exit says so).
    assert!(log.contains(&format!("{ACCEPTED} sent")), "{log}");
    for n in 0..ACCEPTED {
        assert_eq!(sink.mails_to(&accepted(n)).len(), 1, "{log}");
    }
    // A foreground send gathers the engine's warnings by what they say: "N × …".
    assert_eq!(log.matches("example.net refused").count(), 1, "once per issue and domain, not per message: {log}");
    let warned = log.lines().find(|l| l.contains("example.net refused")).unwrap();
    assert!(
        warned.contains("1 × example.net refused 3 of 3 (100 %) for the sender's reasons (blocked): ")
            && warned.contains("blocklist"),
        "{warned}"
    );
    assert!(!log.contains("@example.net"), "no address in the log: {log}");
    assert!(!log.contains("example.org refused"), "{log}");

    let status = issue_status(&config, 1);
    let row = domain_row(&status, "example.net").unwrap_or_else(|| panic!("{status}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["example.net", "6", "0/6", "100.0", "%", "blocked"], "{status}");
    assert!(
        status.contains("Warning: example.net refused 6 of 6 (100 %) for the sender's reasons (blocked)"),
        "{status}"
    );
    assert!(domain_row(&status, "example.org").is_none(), "nothing refused there yet: {status}");
    assert!(status.contains(&format!("  sent       {ACCEPTED}")) && status.contains("  failed     6"), "{status}");

    // Nobody was suppressed: the next issue would go to all 20.
    let suppressed: Value =
        serde_json::from_str(&stdout_of(&bulletin(&config, &["suppressions", "list", "--format", "json"]))).unwrap();
    assert_eq!(suppressed, Value::Array(vec![]), "refusals for the sender's reasons suppress nobody");

    // Later a DSN: example.org refused one delivered message for DMARC.
    let mail = sink.mails_to(&accepted(0)).remove(0);
    let report = dsn(&mail, "20261208031500.6C2D", "5.7.1", "554 5.7.1 Email rejected per DMARC policy");
    let ingest = run_logged(&config, &["bounces", "ingest", "--recipient", &mail.from, "-"], &report);
    stdout_of(&ingest);
    let status = issue_status(&config, 1);
    let row = domain_row(&status, "example.org").unwrap_or_else(|| panic!("{status}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["example.org", "1", "14/14", "7.1", "%", "auth_failure"], "{status}");
    assert!(!status.contains("Warning: example.org"), "1 is under the minimum of 3: {status}");
    let first = status.lines().position(|l| l.starts_with("example.net ")).unwrap();
    let second = status.lines().position(|l| l.starts_with("example.org ")).unwrap();
    assert!(first < second, "most refusals first: {status}");
    assert!(status.contains("Refused for the sender's reasons after sending: 1"), "{status}");
    let suppressed: Value =
        serde_json::from_str(&stdout_of(&bulletin(&config, &["suppressions", "list", "--format", "json"]))).unwrap();
    assert_eq!(suppressed, Value::Array(vec![]));

    // `bulletin stats` has the same figures over its period.
    let stats: Value = serde_json::from_str(&stdout_of(&bulletin(&config, &["stats", "--format", "json"]))).unwrap();
    let domains = stats["sender_refusals_by_domain"].as_array().unwrap_or_else(|| panic!("{stats:#}"));
    assert_eq!(domains.len(), 2, "{stats:#}");
    assert_eq!(
        (&domains[0]["domain"], &domains[0]["refused"], &domains[0]["attempted"], &domains[0]["reason"]),
        (&Value::from("example.net"), &Value::from(6), &Value::from(6), &Value::from("blocked")),
        "{stats:#}"
    );
    assert!(domains[0]["warning"].as_str().is_some_and(|w| w.starts_with("example.net refused 6 of 6")), "{stats:#}");
    assert_eq!((&domains[1]["refused"], &domains[1]["delivered"]), (&Value::from(1), &Value::from(14)));
    assert_eq!(domains[1]["warning"], Value::Null);
    assert_eq!(stats["issues"][0]["failed"], Value::from(6), "the existing keys stay: {stats:#}");
    let table = stdout_of(&bulletin(&config, &["stats"]));
    assert!(table.contains("Refused for the sender's reasons by receiving domain"), "{table}");
    assert!(domain_row(&table, "example.net").is_some_and(|r| r.contains("blocked")), "{table}");
}

on_both_backends!(a_blocking_domain_is_counted_and_warned_about);
