//! Real bounces from many mail servers (tests/fixtures/bounces: a part of
//! sisimai's public corpus, BSD 2-clause, see its LICENSE), parsed and
//! classed by cause as `bulletin bounces ingest` does, and held against
//! sisimai's own reading in expected.csv: no address is suppressed for ever
//! for a bounce sisimai rates soft (a full mailbox, a blocklist, a policy)
//! unless it is listed below with why Bulletin disagrees on purpose.

use std::collections::HashMap;
use std::path::Path;

use bulletin::feedback::{ReportKind, parse};

/// Bounces sisimai rates soft that Bulletin reads as a gone address, on purpose.
const GONE_THOUGH_SISIMAI_SAYS_SOFT: &[(&str, &str)] = &[
    // The remote says in words the user is unknown, and nothing says at which command:
    // a refusal of RCPT, as far as anyone can tell. sisimai reads some of these as
    // "filtered" from what it knows of the host (NTT docomo answers "Unknown user" when
    // the reader's own filter refuses the sender) or as its default for an unknown
    // mailer; the same words after DATA are soft here too (see recipient_filter).
    ("lhost-amazonses-02.eml", "550 Unknown user"),
    ("lhost-exchange2003-04.eml", "Recipient Not Found"),
    ("lhost-postfix-07.eml", "550 <address>: User unknown"),
    ("lhost-x2-01.eml", "This user doesn't have a example.co.jp account"),
    ("rfc3464-42.eml", "The email account that you tried to reach does not exist"),
    // The remote's own reply in the fields says 5.1.1 User Unknown; sisimai goes by the
    // words for people ("Not enough disk space"), which name neither address nor status.
    ("rfc3464-01.eml", "550 5.1.1 User Unknown"),
    // sisimai's "suspend", from the notice's "The user(s) account is disabled"; the
    // remote's reply is "550 user unknown (in reply to RCPT TO command)".
    ("lhost-ezweb-02.eml", "550 user unknown (in reply to RCPT TO command)"),
];

/// Bounces sisimai rates hard that Bulletin leaves soft (they count toward
/// `bounces.soft_bounce_limit`), on purpose.
const SOFT_THOUGH_SISIMAI_SAYS_HARD: &[(&str, &str)] = &[
    // After end of data, the domain said not to exist is our sender's, not the reader's.
    ("lhost-exim-37.eml", "after end of data: 553 neko.example.com does not exist"),
    // sisimai names this recipient "userunknown", but its own reply is a full mailbox.
    ("lhost-qmail-25.eml", "552 5.2.2 … Mailbox full"),
    // RFC 7505 gives 5.7.27 to "the *sender* address has a null MX": our domain's
    // problem, not the reader's, whatever the words ("Host does not accept mail").
    ("lhost-sendmail-57.eml", "Status: 5.7.27 … 550 Host does not accept mail"),
    // A broken DNS answer: sisimai itself rates the same words soft in lhost-postfix-17.
    ("rhost-aol-06.eml", "Malformed or unexpected name server reply"),
];

/// Notices sisimai rates hard that are no failure yet: Bulletin acts on none.
const DELAYS_THOUGH_SISIMAI_SAYS_HARD: &[(&str, &str)] = &[
    // A delay warning: the server still tries for 7 days and will say if it gives up.
    ("lhost-opensmtpd-12.eml", "No MX found for domain … only a temporary failure report"),
];

fn listed(list: &[(&'static str, &str)]) -> Vec<&'static str> {
    let mut files: Vec<_> = list.iter().map(|(file, _)| *file).collect();
    files.sort_unstable();
    files
}

#[test]
fn no_soft_bounce_of_the_corpus_suppresses_a_reader_for_ever() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces");
    let csv = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
    // file -> [(recipient, class)]
    let mut expected: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        // Complaints are held against sisimai's reading in tests/complaints.rs.
        if fields[3] == "complaint" {
            continue;
        }
        expected.entry(fields[0].to_owned()).or_default().push((fields[2].to_lowercase(), fields[3].to_owned()));
    }
    let mut files: Vec<_> = expected.keys().cloned().collect();
    files.sort();
    let (mut parsed_soft, mut parsed_hard, mut soft_gone, mut hard_gone) = (0, 0, vec![], vec![]);
    let mut hard_missed = vec![];
    for file in &files {
        let raw = std::fs::read(dir.join(file)).unwrap();
        let parsed = parse(&raw, None).unwrap_or_else(|e| panic!("{file} parses: {e}"));
        if listed(DELAYS_THOUGH_SISIMAI_SAYS_HARD).contains(&file.as_str()) {
            assert!(parsed.reports.is_empty() && parsed.ignored > 0, "{file}: a delay, nothing failed: {parsed:?}");
            continue;
        }
        assert!(!parsed.reports.is_empty(), "{file}: a bounce");
        for report in &parsed.reports {
            let recipient = report.recipient.as_ref().map(|r| r.as_str().to_lowercase()).unwrap_or_default();
            let rows = &expected[file];
            let class = rows.iter().find(|(r, _)| *r == recipient).or(rows.first()).map(|(_, c)| c.as_str());
            let gone = report.kind == ReportKind::HardBounce;
            match class {
                Some("soft") => {
                    parsed_soft += 1;
                    if gone {
                        soft_gone.push(file.as_str());
                    }
                }
                Some("hard") => {
                    parsed_hard += 1;
                    if gone {
                        hard_gone.push(file.as_str());
                    } else {
                        hard_missed.push(file.as_str());
                    }
                }
                other => panic!("{file}: sisimai class {other:?}"),
            }
        }
    }
    println!(
        "sisimai hard: {} of {parsed_hard} suppressed; sisimai soft: {} of {parsed_soft} suppressed",
        hard_gone.len(),
        soft_gone.len()
    );
    assert_eq!(soft_gone, listed(GONE_THOUGH_SISIMAI_SAYS_SOFT), "soft bounces read as gone addresses");
    assert_eq!(hard_missed, listed(SOFT_THOUGH_SISIMAI_SAYS_HARD), "gone addresses not read as gone");
    assert!(parsed_soft >= 50 && parsed_hard >= 10, "the corpus is read: {parsed_soft} soft, {parsed_hard} hard");
}

/// The yardstick over a whole corpus in sisimai's layout (`maildir/`
/// and `expected.csv`), with every recipient a subscriber so that matching by
/// address applies: how many of sisimai's hard bounces Bulletin suppresses at
/// once, how many of its soft ones, and how many complaints it acts on, with
/// the files behind each miss. Run by hand on the shared corpus or a held-out half:
/// `BULLETIN_BOUNCE_CORPUS=../shared/corpus/bounces cargo test --test bounce_corpus -- --ignored --nocapture`
#[test]
#[ignore = "measures a corpus named by BULLETIN_BOUNCE_CORPUS"]
fn figures_over_a_corpus() {
    let dir = std::path::PathBuf::from(std::env::var("BULLETIN_BOUNCE_CORPUS").expect("BULLETIN_BOUNCE_CORPUS"));
    let csv = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
    let mut parsed = HashMap::new();
    let (mut hard, mut soft, mut complaints) = (Tally::default(), Tally::default(), Tally::default());
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (file, recipient, class, reason) = (fields[0], fields[2].to_lowercase(), fields[3], fields[4]);
        let reports = parsed.entry(file.to_owned()).or_insert_with(|| {
            let raw = std::fs::read(dir.join("maildir").join(file)).unwrap();
            parse(&raw, None).map(|p| p.reports).unwrap_or_default()
        });
        let about: Vec<_> = reports
            .iter()
            .filter(|r| r.recipient.as_ref().is_some_and(|a| a.as_str().to_lowercase() == recipient))
            .collect();
        let did = |kind| about.iter().any(|r| r.kind == kind);
        let seen = match about.first() {
            None => "no report".to_owned(),
            Some(r) => format!("{} {}", r.kind.as_str(), r.reason.map_or("-", |r| r.as_str())),
        };
        let row = format!("{file} [{reason} / {seen}]");
        match class {
            "hard" => hard.count(did(ReportKind::HardBounce), row),
            "soft" => soft.count(did(ReportKind::HardBounce), row),
            "complaint" => complaints.count(did(ReportKind::Complaint), row),
            _ => {}
        }
    }
    println!("sisimai hard bounces suppressed at once: {}", hard.figure());
    println!("sisimai soft bounces suppressed at once: {}", soft.figure());
    println!("complaints acted on: {}", complaints.figure());
    println!("\nhard, not suppressed:\n  {}", hard.no.join("\n  "));
    println!("\nsoft, suppressed:\n  {}", soft.yes.join("\n  "));
    println!("\ncomplaints, not acted on:\n  {}", complaints.no.join("\n  "));
}

/// Rows of one sisimai class: those where Bulletin did the thing asked about, and the others.
#[derive(Default)]
struct Tally {
    yes: Vec<String>,
    no: Vec<String>,
}

impl Tally {
    fn count(&mut self, did: bool, row: String) {
        if did { self.yes.push(row) } else { self.no.push(row) }
    }

    fn figure(&self) -> String {
        let all = self.yes.len() + self.no.len();
        format!("{} of {all} ({:.1} %)", self.yes.len(), 100.0 * self.yes.len() as f64 / all.max(1) as f64)
    }
}
