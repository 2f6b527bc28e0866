//! Spam complaints as mailbox providers really send them (tests/fixtures/bounces:
//! a part of sisimai's public corpus, BSD 2-clause, see its LICENSE): an ARF
//! report naming seven readers unsubscribes and suppresses each of the seven,
//! once; Microsoft's JMRP mail and an Amazon SES notification sent by mail are
//! complaints too; and every complaint sisimai reads with a recipient is
//! acted on, except those listed below with why.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use bulletin::domain::{EmailAddress, SubscriptionStatus};
use bulletin::feedback::{ReportKind, parse};
use common::bin::bulletin;
use common::{Backend, TestApp};
use serde_json::Value;

/// Complaints sisimai names a recipient for that Bulletin acts on by no address, on purpose.
/// Each is still read as a complaint, which our VERP return path or Message-ID would match.
const NO_RECIPIENT_THOUGH_SISIMAI_NAMES_ONE: &[(&str, &str)] = &[
    // The report says it redacted addresses (`Redacted-Address: redacted@`) and the
    // reported message's To is the stand-in `redacted@example.net`.
    ("arf-01.eml", "redacted@example.net"),
    // No recipient anywhere: no Original-Rcpt-To, the reported message's To is
    // `<Undisclosed Recipients>` / `"undisclosed"`. sisimai's address is its own placeholder.
    ("arf-11.eml", "undisclosed-recipient-in-headers@libsisimai.org.invalid"),
    ("arf-15.eml", "undisclosed-recipient-in-headers@libsisimai.org.invalid"),
];

/// The seven Original-Rcpt-To of arf-16.eml.
const ARF_16_READERS: [&str; 7] = [
    "kijitora@example.com",
    "sironeko@example.com",
    "mikeneko@example.com",
    "sabatora@example.com",
    "sirokiji@example.org",
    "kuroneko@example.com",
    "sabineko@example.com",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces").join(name)
}

fn complaints_about(file: &str) -> Vec<Option<String>> {
    let parsed = parse(&std::fs::read(fixture(file)).unwrap(), None).unwrap_or_else(|e| panic!("{file}: {e}"));
    parsed
        .reports
        .iter()
        .filter(|r| r.kind == ReportKind::Complaint)
        .map(|r| r.recipient.as_ref().map(|a| a.as_str().to_lowercase()))
        .collect()
}

#[test]
fn every_complaint_sisimai_reads_with_a_recipient_is_acted_on() {
    let csv = std::fs::read_to_string(fixture("expected.csv")).unwrap();
    // file -> recipients sisimai names in a complaint
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields[3] == "complaint" {
            expected.entry(fields[0].to_owned()).or_default().push(fields[2].to_lowercase());
        }
    }
    assert!(expected.len() >= 8, "the complaints are in the fixtures: {expected:?}");
    let mut missed = vec![];
    for (file, recipients) in &expected {
        let found = complaints_about(file);
        assert!(!found.is_empty(), "{file}: read as a complaint");
        for recipient in recipients {
            if !found.contains(&Some(recipient.clone())) {
                missed.push((file.as_str(), recipient.as_str()));
            }
        }
        let named: Vec<_> = found.iter().flatten().collect();
        assert!(named.iter().all(|n| recipients.contains(n)), "{file}: nobody sisimai does not name: {named:?}");
    }
    assert_eq!(missed, NO_RECIPIENT_THOUGH_SISIMAI_NAMES_ONE);
    for (file, _) in NO_RECIPIENT_THOUGH_SISIMAI_NAMES_ONE {
        assert_eq!(complaints_about(file), [None], "{file}: a complaint only a tag of ours could match");
    }
}

#[test]
fn microsofts_and_amazons_own_shapes_are_complaints() {
    // JMRP (sisimai reads these as feedback of an unknown type): Microsoft names the reader.
    for file in ["arf-22.eml", "arf-23.eml"] {
        assert_eq!(complaints_about(file), [Some("kijitora@example.com".to_owned())], "{file}");
    }
    assert_eq!(complaints_about("lhost-amazonses-11.eml"), [Some("complaint@simulator.amazonses.com".to_owned())]);
    // SES's delivery notification for that same address asks for nothing.
    let delivery = parse(&std::fs::read(fixture("lhost-amazonses-13.eml")).unwrap(), None).unwrap();
    assert_eq!((delivery.reports.len(), delivery.ignored), (0, 1));
}

fn stdout_of(out: &Output) -> String {
    assert!(out.status.success(), "failed ({:?}): {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Whether the reader with this address is suppressed.
async fn suppressed(app: &TestApp, address: &str) -> bool {
    let found = app.store.subscriber_by_email(&EmailAddress::parse(address).unwrap()).await.unwrap();
    found.expect("subscriber").bounced_at.is_some()
}

async fn events(app: &TestApp) -> i64 {
    common::db::count(app.database_url(), "SELECT COUNT(*) FROM feedback_events").await
}

/// Addresses on `suppressions list`, with why.
fn suppression_list(config: &Path) -> Vec<(String, String)> {
    let list: Value =
        serde_json::from_str(&stdout_of(&bulletin(config, &["suppressions", "list", "--format", "json"]))).unwrap();
    let mut rows: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap().to_owned(), r["reason"].as_str().unwrap().to_owned()))
        .collect();
    rows.sort();
    rows
}

/// A feedback loop's report naming seven readers (arf-16): each of the seven
/// leaves the newsletter and is suppressed, a reader it does not name is left
/// alone, and the same report ingested again changes nothing.
async fn a_report_naming_seven_readers_unsubscribes_each(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let bystander = "kijitora@example.net";
    let mut readers: Vec<String> = ARF_16_READERS.iter().map(|r| r.to_string()).collect();
    readers.push(bystander.to_owned());
    app.import_confirmed("morning-briefing", &readers).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), "");
    let report = fixture("arf-16.eml");
    let ingest = || bulletin(&config, &["bounces", "ingest", report.to_str().unwrap()]);

    assert_eq!(
        stdout_of(&ingest()).trim(),
        "1 message: 0 hard bounces suppressed, 0 soft bounces counted, 7 complaints unsubscribed; 0 unmatched, 0 unreadable"
    );
    for reader in ARF_16_READERS {
        assert_eq!(app.status_of(reader, "morning-briefing").await, Some(SubscriptionStatus::Unsubscribed), "{reader}");
        assert!(suppressed(&app, reader).await, "{reader}");
    }
    assert_eq!(app.status_of(bystander, "morning-briefing").await, Some(SubscriptionStatus::Confirmed));
    assert!(!suppressed(&app, bystander).await);
    let mut complained: Vec<(String, String)> =
        ARF_16_READERS.iter().map(|r| (r.to_string(), "complained".to_owned())).collect();
    complained.sort();
    assert_eq!(suppression_list(&config), complained);
    assert_eq!(events(&app).await, 7);

    // The same report again: each of the seven is a duplicate, nothing more is recorded.
    assert_eq!(
        stdout_of(&ingest()).trim(),
        "1 message: 0 hard bounces suppressed, 0 soft bounces counted, 0 complaints unsubscribed; 0 unmatched, 0 unreadable, 7 already applied"
    );
    assert_eq!(events(&app).await, 7);
    assert_eq!(suppression_list(&config), complained);
    assert_eq!(app.status_of(bystander, "morning-briefing").await, Some(SubscriptionStatus::Confirmed));
    app.stop().await;
}

/// A maildir holding Microsoft's JMRP mail, SES's complaint sent by mail and
/// SES's delivery notice: the two complainers are unsubscribed and
/// suppressed, the delivery notice needs nothing, and none is refused.
async fn complaints_in_providers_own_shapes_unsubscribe_their_reader(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let (jmrp, ses, bystander) = ("kijitora@example.com", "complaint@simulator.amazonses.com", "sironeko@example.com");
    app.import_confirmed("morning-briefing", &[jmrp.to_owned(), ses.to_owned(), bystander.to_owned()]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::bin::write_config(dir.path(), app.database_url(), "");
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (n, file) in ["arf-22.eml", "lhost-amazonses-11.eml", "lhost-amazonses-13.eml"].iter().enumerate() {
        std::fs::copy(fixture(file), maildir.join("new").join(format!("100{n}.M1P1.test"))).unwrap();
    }

    let out = bulletin(&config, &["bounces", "ingest", "--maildir", maildir.to_str().unwrap()]);
    assert_eq!(
        stdout_of(&out).trim(),
        "3 messages: 0 hard bounces suppressed, 0 soft bounces counted, 2 complaints unsubscribed; \
         0 unmatched, 0 unreadable, 1 needing nothing (delays, relays, other report types)"
    );
    for reader in [jmrp, ses] {
        assert_eq!(app.status_of(reader, "morning-briefing").await, Some(SubscriptionStatus::Unsubscribed), "{reader}");
        assert!(suppressed(&app, reader).await, "{reader}");
    }
    assert_eq!(app.status_of(bystander, "morning-briefing").await, Some(SubscriptionStatus::Confirmed));
    assert!(!suppressed(&app, bystander).await);
    assert_eq!(std::fs::read_dir(maildir.join(".Processed/cur")).unwrap().count(), 3, "all three read");
    app.stop().await;
}

on_both_backends!(
    a_report_naming_seven_readers_unsubscribes_each,
    complaints_in_providers_own_shapes_unsubscribe_their_reader,
);
