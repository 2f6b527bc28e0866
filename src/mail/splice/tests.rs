use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use askama::Template;

use super::*;
use crate::domain::EmailAddress;
use crate::mail::{DigestContent, DigestStory, Layout};

fn mailer() -> Mailer {
    let mut mailer = Mailer::new("Morning Briefing <news@example.org>".parse().unwrap());
    mailer.layout = Layout {
        logo_url: "https://example.org/logo.png?v=1&s=2".to_owned(),
        postal_address: "1 Main St, Springfield & Co.".to_owned(),
    };
    mailer
}

fn date() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

struct TestReader {
    to: EmailAddress,
    name: Option<&'static str>,
    unsubscribe_url: String,
    preferences_url: String,
}

impl TestReader {
    fn new(i: usize, name: Option<&'static str>, unsubscribe_url: &str, preferences_url: &str) -> Self {
        Self {
            to: EmailAddress::parse(&format!("reader{i}@example.net")).unwrap(),
            name,
            unsubscribe_url: unsubscribe_url.to_owned(),
            preferences_url: preferences_url.to_owned(),
        }
    }
}

/// Readers whose links and names differ in every way that shows in a copy.
fn readers() -> Vec<TestReader> {
    let mut readers = vec![
        TestReader::new(
            0,
            None,
            "https://news.example.org/unsubscribe/v1.AAAAAAAAAAE.AAAAAAAAAAI.kq3Jf9xZ0bVq2WJ8-Lx0c4N3Uu7pXm1yqD0",
            "https://news.example.org/preferences/v1.AAAAAAAAAAE.AAAAAAAAAAA.Zr8Qk2LmN5oP7sT9uV1wX3yZ5aB7cD9eF1g",
        ),
        TestReader::new(1, Some("Ada Lovelace"), "https://n.io/u/1", "https://n.io/p/1"),
        TestReader::new(
            2,
            Some("Олена Шевченко"),
            &format!("https://news.example.org/unsubscribe/{}?n=3&ref=mail&x=\"q\"", "z".repeat(180)),
            "https://news.example.org/preferences/tok?a=1&b=2<3>",
        ),
        TestReader::new(3, Some("Dr. \"Bob\" O'Neil, Jr."), "https://n.io/u/=3D=", "https://n.io/p/ trailing "),
        TestReader::new(4, Some("Jürgen Groß"), "https://n.io/u/\t tab", "https://n.io/p/.dot"),
    ];
    // Around the 76 columns where lettre turns a 7bit part into quoted-printable.
    for len in 50..=90 {
        let pad = "x".repeat(len - "https://n.io/u/".len());
        let name = (len % 2 == 0).then_some("Reader Name");
        readers.push(TestReader::new(readers.len(), name, &format!("https://n.io/u/{pad}"), "https://n.io/p/2"));
    }
    readers
}

fn issues(mailer: &Mailer) -> Vec<(&'static str, RenderedIssue)> {
    let ascii = "# Morning\n\nToday in *brief*: three stories, one [link](https://example.org/a?b=1&c=2).\n\n\
                 - one\n- two\n- three\n";
    let german_ukrainian = "# Grüße aus München\n\nDie Straße ist schön, aber heute regnet es. Über 30 Zuschauer \
                            kamen.\n\nУкраїна: «Доброго ранку», — сказала вона.\n";
    let ukrainian = "# Новини\n\nСьогодні в Києві сонячно. Ціни на хліб зросли. Президент виступив із заявою \
                     щодо бюджету на наступний рік.\n";
    let long = format!(
        "{}\n\n[{}](https://example.org/{}?q=1)\n\n    code {} =end   \n\nx{}\n",
        "word ".repeat(200),
        "a long link",
        "p".repeat(150),
        "c".repeat(120),
        "y=".repeat(120)
    );
    let dots = ".\n\n.hidden line\n\n. dot space\n\n..double\n\nend.\n.\n\n    .code\n    .\n";
    let digest = DigestContent {
        date: "28 November 2026".to_owned(),
        stories: vec![
            DigestStory {
                title: "Rates & <bonds>".to_owned(),
                url: "https://example.org/s/1?a=1&b=2".to_owned(),
                summary: Some("Markets \"rallied\" — briefly.".to_owned()),
            },
            DigestStory {
                title: "Кава".to_owned(),
                url: format!("https://example.org/{}", "k".repeat(90)),
                summary: None,
            },
        ],
    };
    let empty_digest = DigestContent { date: "1 December 2026".to_owned(), stories: Vec::new() };
    vec![
        ("ascii", RenderedIssue::new("Morning Briefing", "mb", "Hello", ascii, mailer)),
        (
            "german-ukrainian",
            RenderedIssue::new("Ранкові новини", "rn", "Grüße — новини", german_ukrainian, mailer)
                .with_preheader(Some("Heute: Über & Ünter")),
        ),
        ("ukrainian", RenderedIssue::new("Новини", "nv", "Новини дня", ukrainian, mailer)),
        ("long lines", RenderedIssue::new("News <b>", "lg", "Long", &long, mailer)),
        ("dots", RenderedIssue::new("Dots", "dt", ".dots", dots, mailer)),
        ("digest", RenderedIssue::digest("Daily", "dd", "Digest: Rates & Кава", digest, mailer)),
        ("empty digest", RenderedIssue::digest("Daily", "dd", "Nothing new", empty_digest, mailer)),
    ]
}

fn mail_for<'a>(
    prepared: &'a PreparedIssue,
    reader: &'a TestReader,
    return_path: Option<&'a lettre::Address>,
) -> IssueMail<'a> {
    IssueMail {
        issue: prepared.issue(),
        to: &reader.to,
        name: reader.name,
        unsubscribe_url: &reader.unsubscribe_url,
        preferences_url: &reader.preferences_url,
        message_id: "<key@example.org>".to_owned(),
        return_path,
    }
}

/// The reader's copy through the splice (`None`: built in full), and
/// through `IssueMail::build` with the same boundary and Date.
fn both(prepared: &PreparedIssue, reader: &TestReader, mailer: &Mailer) -> (Option<Message>, Message) {
    let return_path: lettre::Address = "bounce+abc@example.org".parse().unwrap();
    let mail = mail_for(prepared, reader, Some(&return_path));
    let boundary = prepared.splice.as_ref().map(Splice::boundary).ok();
    let reference = mail.build_framed(mailer, boundary.as_deref(), Some(date())).unwrap();
    let spliced = prepared.spliced(&mail, mailer, Some(date())).map(Result::unwrap);
    // The public way in: spliced or built in full, the same message.
    let built = prepared.build_framed(&mail, mailer, Some(date())).unwrap();
    assert_same(&without_boundary(&built), &without_boundary(&reference), "build_framed");
    (spliced, reference)
}

/// The formatted message with its MIME boundary, random when built in full, made one.
fn without_boundary(message: &Message) -> Vec<u8> {
    let formatted = String::from_utf8(message.formatted()).unwrap();
    let at = formatted.find("boundary=\"").unwrap() + "boundary=\"".len();
    let boundary = &formatted[at..at + formatted[at..].find('"').unwrap()];
    formatted.replace(boundary, "BOUNDARY").into_bytes()
}

fn assert_same(spliced: &[u8], reference: &[u8], what: &str) {
    if spliced != reference {
        let at = spliced.iter().zip(reference).position(|(a, b)| a != b).unwrap_or(spliced.len().min(reference.len()));
        let around = |bytes: &[u8]| {
            String::from_utf8_lossy(&bytes[at.saturating_sub(300)..(at + 200).min(bytes.len())]).into_owned()
        };
        panic!(
            "{what}: differs at byte {at}\n--- spliced:\n{}\n--- reference:\n{}",
            around(spliced),
            around(reference)
        );
    }
}

/// The encodings the reference copy's parts have.
fn encodings(message: &Message) -> Vec<String> {
    String::from_utf8(message.formatted())
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("Content-Transfer-Encoding: ").map(str::to_owned))
        .collect()
}

#[test]
fn a_spliced_copy_is_the_built_copy_byte_for_byte() {
    let mailer = mailer();
    let mut seen = BTreeSet::new();
    for (what, issue) in issues(&mailer) {
        let prepared = PreparedIssue::new(issue);
        assert_eq!(prepared.not_spliced(), None, "{what}");
        for reader in readers() {
            let (spliced, reference) = both(&prepared, &reader, &mailer);
            let spliced = spliced.unwrap_or_else(|| panic!("{what}: {} was not spliced", reader.to.as_str()));
            assert_same(&spliced.formatted(), &reference.formatted(), &format!("{what}, {}", reader.to.as_str()));
            assert_eq!(spliced.envelope(), reference.envelope());
            let parts = encodings(&reference);
            assert_eq!(parts.len(), 2, "{what}");
            seen.insert((what, parts));
        }
    }
    let all: BTreeSet<_> = seen.iter().flat_map(|(_, parts)| parts.clone()).collect();
    assert_eq!(all, ["7bit", "base64", "quoted-printable"].map(str::to_owned).into(), "{seen:?}");
    // Readers' links turn the ASCII issue's text part from 7bit to quoted-printable.
    let ascii: BTreeSet<_> = seen.iter().filter(|(what, _)| *what == "ascii").map(|(_, parts)| &parts[0]).collect();
    assert_eq!(ascii.len(), 2, "{seen:?}");
}

#[test]
fn a_link_that_breaks_a_line_is_built_in_full() {
    let mailer = mailer();
    let (_, issue) = issues(&mailer).swap_remove(0);
    let prepared = PreparedIssue::new(issue);
    let reader = TestReader::new(9, None, "https://n.io/u/1\nX-Injected: yes", "https://n.io/p/1");
    let (spliced, _) = both(&prepared, &reader, &mailer);
    assert!(spliced.is_none());
}

/// A site's own templates: a greeting with the reader's name.
#[derive(Template)]
#[template(source = "{% if let Some(name) = name %}Hello {{ name }},{% endif %}\n{{ unsubscribe_url }}\n", ext = "txt")]
struct Greeting<'a> {
    name: Option<&'a str>,
    unsubscribe_url: &'a str,
}

/// A site's own templates: a link passed through a filter.
#[derive(Template)]
#[template(source = "<a href=\"{{ unsubscribe_url|urlencode }}\">Unsubscribe</a>\n", ext = "html")]
struct Encoded<'a> {
    unsubscribe_url: &'a str,
}

#[test]
fn templates_a_splice_cannot_follow_are_built_in_full() {
    let greeting = Splice::new(|reader: &Reader<'_>| {
        let text = Greeting { name: reader.name, unsubscribe_url: reader.unsubscribe_url }.render()?;
        Ok((text, String::new()))
    });
    assert_eq!(greeting.unwrap_err(), "the templates print the reader's name");
    let encoded = Splice::new(|reader: &Reader<'_>| {
        Ok((String::new(), Encoded { unsubscribe_url: reader.unsubscribe_url }.render()?))
    });
    assert_eq!(encoded.unwrap_err(), "the templates change the reader's links");
    let shipped = Splice::new(|reader: &Reader<'_>| {
        Ok((String::new(), format!("<a href=\"{}\">Unsubscribe</a>\n", reader.unsubscribe_url)))
    });
    assert_eq!(shipped.unwrap_err(), "the templates change the reader's links", "an unescaped link is not askama's");

    // An issue whose copies are not spliced is built in full, the same as ever.
    let mailer = mailer();
    for (what, issue) in issues(&mailer) {
        let prepared = PreparedIssue { issue, splice: Err("the templates print the reader's name".to_owned()) };
        for reader in readers().iter().take(5) {
            let (spliced, _) = both(&prepared, reader, &mailer);
            assert!(spliced.is_none(), "{what}");
        }
    }
}

/// How long one copy takes through `IssueMail::build` and through the splice, formatted:
/// `cargo test --release --lib splice::tests::copies_per_second -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand in release mode"]
fn copies_per_second() {
    const COPIES: usize = 20_000;
    let mailer = mailer();
    let readers: Vec<_> = (0..COPIES)
        .map(|i| {
            TestReader::new(
                i,
                (i % 3 == 0).then_some("Reader Name"),
                &format!("https://news.example.org/unsubscribe/v1.{i:012}.AAAAAAAAAAI.kq3Jf9xZ0bVq2WJ8-Lx0c4N3Uu7pXm1"),
                &format!("https://news.example.org/preferences/v1.{i:012}.AAAAAAAAAAA.Zr8Qk2LmN5oP7sT9uV1wX3yZ5aB"),
            )
        })
        .collect();
    // A long issue: README's opening paragraphs, about 8 KB.
    let mut markdown = String::new();
    for paragraph in include_str!("../../../README.md").split("\n\n") {
        if markdown.len() > 8000 {
            break;
        }
        markdown.push_str(paragraph);
        markdown.push_str("\n\n");
    }
    let issues = [
        ("README as an issue (ASCII)", RenderedIssue::new("Morning Briefing", "mb", "Hello", &markdown, &mailer)),
        (
            "German/Ukrainian issue",
            RenderedIssue::new(
                "Ранкові новини",
                "rn",
                "Grüße",
                &"Die Straße ist schön, aber heute regnet es. Über 30 Zuschauer kamen. Доброго ранку.\n\n".repeat(60),
                &mailer,
            ),
        ),
    ];
    for (what, issue) in issues {
        let prepared = PreparedIssue::new(issue);
        assert_eq!(prepared.not_spliced(), None);
        let mut bytes = 0;
        let mut time = |splice: bool| {
            let start = Instant::now();
            for reader in &readers {
                let mail = mail_for(&prepared, reader, None);
                let message = if splice { prepared.build(&mail, &mailer) } else { mail.build(&mailer) };
                bytes += message.unwrap().formatted().len();
            }
            start.elapsed().as_secs_f64() * 1e6 / COPIES as f64
        };
        // Interleaved, twice, so a neighbour's load weighs on both alike.
        let (full, splice, full_again, splice_again) = (time(false), time(true), time(false), time(true));
        println!(
            "{what}: {} bytes a copy; built in full {full:.1} / {full_again:.1} µs, spliced {splice:.1} / {splice_again:.1} µs a copy; {:.1}x",
            bytes / (4 * COPIES),
            (full + full_again) / (splice + splice_again)
        );
    }
}
