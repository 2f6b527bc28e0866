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
    // The remote says in words the user is unknown. sisimai reads some of these as
    // "filtered" or "rejected" from what it knows of the host (NTT docomo answers
    // "Unknown user" when the reader's own filter refuses the sender): either way the
    // reader cannot get our mail, and nothing in the bounce says it will change.
    ("lhost-amazonses-02.eml", "550 Unknown user"),
    ("lhost-messagingserver-06.eml", "550 5.2.1 User Unknown"),
    ("lhost-office365-04.eml", "550 5.1.351 unknown recipient; 550 User unknown"),
    ("lhost-postfix-03.eml", "550 Unknown user"),
    ("lhost-postfix-35.eml", "550 User unknown"),
    ("lhost-sendmail-40.eml", "550 Unknown user"),
    ("rfc3464-01.eml", "550 5.1.1 User Unknown"),
    ("rfc3464-42.eml", "The email account that you tried to reach does not exist"),
    ("rfc3464-57.eml", "550 User unknown"),
    ("rhost-nttdocomo-02.eml", "550 Unknown user"),
    ("rhost-nttdocomo-03.eml", "550 Unknown user"),
    // sisimai's "suspend": a disabled or inactive account. Gmail disables an account
    // after two years unused and deletes it later; a newsletter should stop there.
    ("lhost-powermta-01.eml", "5.2.1 mailbox disabled … User Unknown"),
    ("lhost-sendmail-35.eml", "525 5.7.13 Disabled recipient address"),
    ("rhost-google-07.eml", "550 5.2.1 The email account that you tried to reach is inactive"),
];

/// Bounces sisimai rates hard that Bulletin leaves soft (they count toward
/// `bounces.soft_bounce_limit`), on purpose: the words may describe a passing DNS fault.
const SOFT_THOUGH_SISIMAI_SAYS_HARD: &[(&str, &str)] = &[
    ("lhost-outlook-03.eml", "554 the domain is not reachable"),
    ("rhost-aol-06.eml", "Malformed or unexpected name server reply"),
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
        expected.entry(fields[0].to_owned()).or_default().push((fields[2].to_lowercase(), fields[3].to_owned()));
    }
    let mut files: Vec<_> = expected.keys().cloned().collect();
    files.sort();
    let (mut parsed_soft, mut parsed_hard, mut soft_gone, mut hard_gone) = (0, 0, vec![], vec![]);
    let mut hard_missed = vec![];
    for file in &files {
        let raw = std::fs::read(dir.join(file)).unwrap();
        let parsed = parse(&raw, None).unwrap_or_else(|e| panic!("{file} parses: {e}"));
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
