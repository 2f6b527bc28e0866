//! Bounces in plain text: what qmail ("Hi. This is the qmail-send
//! program"), Exim ("Mail delivery failed", `X-Failed-Recipients`), older
//! Gmail, Yahoo, Exchange and a Postfix without a delivery-status part send
//! instead of an RFC 3464 report.
//!
//! One reader for all of them, driven by the tables below: a message is a
//! bounce only when its headers say so (an `X-Failed-Recipients` field, or a
//! mail daemon's sender or a null return path together with a bounce's
//! subject or opening words), so a reader's reply that quotes an address is
//! never taken for one. The recipients are the `X-Failed-Recipients` ones,
//! else the lines of the notice that hold nothing but an address (`<addr>:`
//! in qmail and Postfix, an indented address in Exim and Gmail, `addr on
//! date` in Exchange); the status and diagnostic are the lines after each.

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use super::message::{
    ParseError, Parsed, ReportFormat, Whole, is_one_of, original_headers, per_recipient_id, pick_return_path,
    short_digest, smtp_code, status_of,
};
use super::{Report, ReportKind, ReportSource};
use crate::domain::{Bounce, EmailAddress, SmtpStage};

/// Local parts of the senders of bounces.
const DAEMONS: [&str; 6] = ["mailer-daemon", "postmaster", "mail-daemon", "mailer_daemon", "mdaemon", "mail.delivery"];

/// Subjects of bounces (compared in lower case, anywhere in the subject).
const SUBJECTS: [&str; 18] = [
    "undelivered mail",
    "undeliverable",
    "delivery status notification",
    "mail delivery failed",
    "failure notice",
    "delivery failure",
    "returned mail",
    "delivery has failed",
    "mail delivery failure",
    "could not send message",
    "nondeliverable",
    "non-delivery",
    "delivery notification",
    "mail system error",
    "permanent delivery failure",
    "message not delivered",
    "could not be delivered",
    "error sending your mail",
];

/// Words of a bounce's notice (lower case).
const OPENINGS: [&str; 12] = [
    "this is the qmail-send program",
    "this message was created automatically by mail delivery software",
    "could not be delivered to one or more",
    "delivery to the following recipient",
    "the following recipient(s)",
    "i'm sorry to have to inform you",
    "delivery has failed to these recipients",
    "the following address(es) failed",
    "message could not be delivered",
    "there was an error delivering your mail",
    "trouble delivering your message",
    // An SMTP transcript (InterScan, DragonFly): what the remote said to our RCPT TO.
    "rcpt to",
];

/// Words of a notice that says the server is still trying (a delay warning):
/// any other bounce is the server giving up, final even when it says no status.
const STILL_TRYING: [&str; 7] = [
    "temporary",
    "temporarily",
    "delayed",
    "will be retried",
    "still trying",
    "not yet been delivered",
    "attempts will continue",
];

/// Lines that start the quoted original message: the notice ends there.
const ORIGINAL_MARKERS: [&str; 13] = [
    // Lotus Notes, m-FILTER.
    "------- returned message",
    "-------original message",
    "--- below this line is a copy of the message",
    "- this is a copy of the message",
    "----- original message",
    "original message follows",
    "--- the header of the original message",
    "----- unsent message follows",
    "- this is a copy of your message",
    "----- message header follows",
    "--- original message",
    "message headers follow",
    "original message headers",
];

const ORIGINAL_PARTS: [&str; 4] = ["message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"];

/// Reads `message` as a plain-text bounce; `NotAReport` when it is none.
pub(super) fn read(whole: &Whole<'_, '_>) -> Result<Parsed, ParseError> {
    let message = whole.message;
    let failed: Vec<String> = message
        .header_values("X-Failed-Recipients")
        .filter_map(|v| v.as_text())
        .flat_map(|v| v.split(',').map(|a| a.trim().to_owned()).collect::<Vec<_>>())
        .filter(|a| !a.is_empty())
        .collect();
    let text = notice_text(message);
    let (notice, quoted) = split_original(&text);
    if failed.is_empty() && !looks_like_bounce(message, notice) {
        return Err(ParseError::NotAReport);
    }
    let attached = message.parts.iter().find(|p| is_one_of(p, &ORIGINAL_PARTS));
    let (mut message_id, original_return_path) = attached.map_or((None, None), original_headers);
    if message_id.is_none() {
        message_id = quoted.and_then(quoted_message_id);
    }
    let return_path = pick_return_path(whole.delivered_to().into_iter().chain(original_return_path));
    let own = own_addresses(message);
    let mut found = recipients(notice, &own);
    if !failed.is_empty() {
        // The header names them in full; the notice may not (Exim writes a local part alone).
        let named: Vec<(String, String)> = failed
            .iter()
            .map(|address| {
                let near = found
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(address))
                    .map(|(_, d)| d.clone())
                    .or_else(|| (failed.len() == 1).then(|| found.first().map(|(_, d)| d.clone())).flatten())
                    .unwrap_or_else(|| notice_diagnostic(notice));
                (address.clone(), near)
            })
            .collect();
        found = named;
    }
    if found.is_empty() {
        return Err(ParseError::MissingPart("plain-text bounce", "recipient address"));
    }
    // One recipient: the command refused may be named anywhere in the notice
    // (Sendmail's transcript comes before the address).
    let alone = found.len() == 1;
    let lower = notice.to_ascii_lowercase();
    let permanent = lower.contains("permanent") || !STILL_TRYING.iter().any(|w| lower.contains(w));
    // As a DSN's: its own id with a digest of the notice, then the recipient.
    let report_id = format!("{}:{}", whole.report_id(), short_digest(notice.as_bytes()));
    let mut parsed = Parsed { format: ReportFormat::Plain, reports: vec![], ignored: 0 };
    for (n, (address, diagnostic)) in found.into_iter().enumerate() {
        let recipient = EmailAddress::parse(&address).ok();
        let id = per_recipient_id(&report_id, recipient.as_ref(), n);
        let status = status_of(&diagnostic);
        // Permanent by its status, else by the notice's word; the cause then
        // decides, by the same table as a DSN's and an SMTP reply's.
        let permanent = match status.as_deref().and_then(|s| s.chars().next()) {
            Some('5') => true,
            Some('4') => false,
            _ => permanent,
        };
        let detail = format!("{} {}", status.unwrap_or_default(), diagnostic).trim().to_owned();
        let stage = SmtpStage::named_in(&detail).or_else(|| alone.then(|| SmtpStage::named_in(notice)).flatten());
        let bounce = Bounce::at(stage, &detail, permanent);
        parsed.reports.push(Report {
            kind: ReportKind::of_cause(bounce.cause),
            reason: Some(bounce.reason),
            source: ReportSource::Dsn,
            recipient,
            return_path: return_path.clone(),
            message_id: message_id.clone(),
            detail,
            report_id: Some(id),
        });
    }
    Ok(parsed)
}

/// Whether the headers and opening words are a bounce's: a daemon's sender
/// or a null return path, with a bounce's subject or notice. A reply
/// (`Re:`) never is.
fn looks_like_bounce(message: &Message<'_>, notice: &str) -> bool {
    let subject = message.subject().unwrap_or_default().trim().to_ascii_lowercase();
    if subject.starts_with("re:") || subject.starts_with("aw:") {
        return false;
    }
    let is_daemon = |address: &str| {
        let local = address.trim().trim_matches(['<', '>']);
        let local = local.rsplit_once('@').map_or(local, |(l, _)| l).to_ascii_lowercase();
        DAEMONS.iter().any(|d| local == *d)
    };
    // By its address, or its name when the address is empty (DragonFly's `MAILER-DAEMON <>`),
    // or the daemon's return path.
    let from_daemon = message.from().and_then(|f| f.first()).is_some_and(|from| match from.address() {
        Some(address) if !address.trim().is_empty() => is_daemon(address),
        _ => from.name().is_some_and(is_daemon),
    }) || message.return_path().as_text().is_some_and(is_daemon);
    let null_sender = message.return_path().as_text().is_some_and(|p| p.trim().trim_matches(['<', '>']).is_empty())
        || message.header_raw("Return-Path").is_some_and(|p| p.trim() == "<>");
    let bounce_subject = SUBJECTS.iter().any(|s| subject.contains(s));
    let lower = notice.to_ascii_lowercase();
    let bounce_words = OPENINGS.iter().any(|o| lower.contains(o));
    (from_daemon || null_sender) && (bounce_subject || bounce_words)
}

/// The bounce's own text: its first text/plain part (the message's body
/// for a single-part one), else its first HTML part as text (AOL's and
/// some Exchange notices come in HTML alone), with line ends made `\n`
/// (CR alone too).
fn notice_text(message: &Message<'_>) -> String {
    let part = message.parts.iter().find(|p| {
        matches!(p.body, PartType::Text(_)) && p.content_type().is_none_or(|ct| ct.subtype() != Some("html"))
    });
    let text = match part.and_then(MessagePart::text_contents) {
        Some(text) => text.to_owned(),
        None => message
            .parts
            .iter()
            .find_map(|p| match &p.body {
                PartType::Html(html) => Some(html_text(html)),
                _ => None,
            })
            .unwrap_or_default(),
    };
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// An HTML notice as plain lines: links as their words (a `mailto:` link
/// as its address), no decoration, lines wide enough that none is broken.
fn html_text(html: &str) -> String {
    html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
        .string_from_read(html.as_bytes(), 10_000)
        .unwrap_or_default()
}

/// The notice, and the quoted original after it when the text holds one.
fn split_original(text: &str) -> (&str, Option<&str>) {
    let lower = text.to_ascii_lowercase();
    let at = ORIGINAL_MARKERS.iter().filter_map(|m| lower.find(m)).min();
    match at {
        Some(at) if text.is_char_boundary(at) => (&text[..at], Some(&text[at..])),
        _ => (text, None),
    }
}

/// The `Message-ID:` of the original quoted as text.
fn quoted_message_id(quoted: &str) -> Option<String> {
    quoted.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        (name.trim().eq_ignore_ascii_case("message-id") && value.starts_with('<') && value.ends_with('>'))
            .then(|| value.to_owned())
    })
}

/// The addresses the bounce itself came from and went to: never a failed recipient.
pub(super) fn own_addresses(message: &Message<'_>) -> Vec<String> {
    [message.from(), message.to()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter().filter_map(|a| a.address().map(str::to_ascii_lowercase)).collect::<Vec<_>>())
        .collect()
}

/// The failed recipients the notice names, each with the lines after it.
/// A remote's reply quoting an address names a recipient only when nothing
/// else in the notice does: the address it quotes may be the one an alias
/// forwarded to, not the one we sent to.
pub(super) fn recipients(notice: &str, own: &[String]) -> Vec<(String, String)> {
    let found = recipients_named(notice, own, false);
    if found.is_empty() { recipients_named(notice, own, true) } else { found }
}

/// [`recipients`], with a reply quoting an address (`replies_name`) taken for a recipient or not.
fn recipients_named(notice: &str, own: &[String], replies_name: bool) -> Vec<(String, String)> {
    let lines: Vec<&str> = notice.lines().collect();
    let mut found: Vec<(String, String)> = vec![];
    let named = |line: &str| recipient_line(line).or_else(|| recipient_in_sentence(line, replies_name));
    let mut i = 0;
    while i < lines.len() {
        let Some((address, rest)) = named(lines[i]) else {
            // A reply quoting one already named (X3's "technical details"):
            // its words are about that one, and often the only SMTP ones.
            if let Some((address, rest)) = recipient_in_sentence(lines[i], true)
                && let Some((_, earlier)) = found.iter_mut().find(|(a, _)| a.eq_ignore_ascii_case(&address))
            {
                *earlier = format!("{earlier} {rest}").trim().to_owned();
            }
            i += 1;
            continue;
        };
        let at = i;
        // Sendmail's "554 <a>... reason" is a whole failure on one line: the next is another's.
        let one_line = lines[at].split_whitespace().next().is_some_and(smtp_code);
        let mut diagnostic = vec![rest];
        let mut next = at + 1;
        while let Some(line) = lines.get(next).filter(|_| next <= at + if one_line { 0 } else { 8 }) {
            let another = named(line).is_some_and(|(a, _)| !a.eq_ignore_ascii_case(&address));
            // Blank lines between the address and its words are skipped; one after them ends them.
            let said = diagnostic.len() > 1 && diagnostic.iter().any(|d| !d.trim().is_empty());
            if line.trim().is_empty() && said || another {
                break;
            }
            diagnostic.push(line.trim().to_owned());
            next += 1;
        }
        i = next;
        if own.contains(&address.to_ascii_lowercase()) {
            continue;
        }
        let mut diagnostic = diagnostic.into_iter().filter(|d| !d.is_empty()).collect::<Vec<_>>().join(" ");
        // Nothing after the address: Lotus Notes writes the reason on the line above it.
        if diagnostic.is_empty() && at > 0 && named(lines[at - 1]).is_none() {
            diagnostic = lines[at - 1].trim().to_owned();
        }
        // Named again further on (Exchange's "diagnostic information"): the words there are about it too.
        match found.iter_mut().find(|(a, _)| a.eq_ignore_ascii_case(&address)) {
            Some((_, earlier)) => {
                if !diagnostic.is_empty() {
                    *earlier = format!("{earlier} {diagnostic}").trim().to_owned();
                }
            }
            None => found.push((address, diagnostic)),
        }
    }
    found
}

/// A line that names a recipient, and its words without the address: the
/// address first (`<a@b>:` then maybe more, `a@b` or `"a@b":` alone,
/// indented or not, `a@b on 1/1/2010`, Sendmail's `<a@b>... User unknown`,
/// maybe after an SMTP code), or last after a label (`Unknown user: a@b`).
fn recipient_line(line: &str) -> Option<(String, String)> {
    // Without a transcript's direction mark (`<<< 550 …`) or a list's bullet (`* a@b`).
    let trimmed = line.trim();
    let trimmed = match trimmed.split_once(char::is_whitespace) {
        Some((mark, rest)) if ["<<<", ">>>", "*", "-"].contains(&mark) => rest.trim_start(),
        _ => trimmed,
    };
    let (code, trimmed) = match trimmed.split_once(' ') {
        Some((code, rest)) if smtp_code(code) => (format!("{code} "), rest.trim_start()),
        _ => (String::new(), trimmed),
    };
    if let Some((label, last)) = trimmed.rsplit_once(": ")
        && !label.contains('@')
        // Words, not a quoted header's name (`Message-ID:`, `From:`); au's `Recipient:` is one.
        && (label.trim().contains(' ') || label.trim().eq_ignore_ascii_case("recipient"))
        && let Ok(address) = EmailAddress::parse(bare_address(last))
    {
        return Some((address.as_str().to_owned(), format!("{code}{label}")));
    }
    let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
    let (first, rest) = trimmed.split_at(end);
    let address = EmailAddress::parse(bare_address(first)).ok()?;
    let rest_lower = rest.trim().to_ascii_lowercase();
    let fits = rest_lower.is_empty()
        || first.ends_with(':')
        || first.ends_with("...")
        || first.starts_with('<') && first.ends_with('>') && rest_lower.starts_with(':')
        || rest_lower.starts_with("on ")
        || rest_lower.starts_with('(');
    fits.then(|| (address.as_str().to_owned(), format!("{code}{}", rest.trim())))
}

/// `<a@b>:`, `"a@b":`, `<a@b>...`, Outlook's `a@b<mailto:a@b>` without what surrounds the address.
fn bare_address(word: &str) -> &str {
    let word = word.split_once("<mailto:").map_or(word, |(address, _)| address);
    word.trim_end_matches(['.', ':', ',', ';']).trim_matches(['<', '>', '"'])
}

/// A recipient named in angle brackets inside a sentence, and the line's
/// other words: after `to`, `recipient` or `RCPT TO:` ("There was an error
/// delivering your mail to <a@b>", "rejected recipient <a@b>"), or, with
/// `replies`, quoted by the remote's reply (`553 5.3.0 <a@b>... No such user`).
fn recipient_in_sentence(line: &str, replies: bool) -> Option<(String, String)> {
    let mut from = 0;
    while let Some(open) = line[from..].find('<').map(|at| from + at) {
        let close = open + line[open..].find('>')?;
        from = close + 1;
        let Ok(address) = EmailAddress::parse(&line[open + 1..close]) else { continue };
        let before = line[..open].trim_end().to_ascii_lowercase();
        let after = line[close + 1..].trim_start();
        let led = before.ends_with("rcpt to:")
            || before.rsplit(char::is_whitespace).next().is_some_and(|word| ["to", "recipient"].contains(&word));
        let quoted_by_reply =
            replies && (after.starts_with("...") || after.starts_with(':')) && status_of(&before).is_some();
        if led || quoted_by_reply {
            let rest = format!("{} {}", line[..open].trim(), after);
            return Some((address.as_str().to_owned(), rest.trim().to_owned()));
        }
    }
    None
}

/// The notice's own SMTP words when no recipient line carries any.
fn notice_diagnostic(notice: &str) -> String {
    notice
        .lines()
        .map(str::trim)
        .find(|l| status_of(l).is_some())
        .map(|l| l.split_whitespace().filter(|w| !w.contains('@')).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::message::parse;
    use super::*;

    fn corpus_fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces").join(name))
            .unwrap()
    }

    /// Each recipient address and kind of a plain-text bounce.
    fn read_fixture(name: &str) -> Parsed {
        let parsed = parse(&corpus_fixture(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.format, ReportFormat::Plain, "{name}");
        parsed
    }

    /// (address, kind, status) of each report.
    fn summary(parsed: &Parsed) -> Vec<(String, ReportKind, String)> {
        parsed
            .reports
            .iter()
            .map(|r| {
                let address = r.recipient.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_default();
                let status = r.detail.split_whitespace().next().unwrap_or_default().to_owned();
                (address, r.kind, status)
            })
            .collect()
    }

    #[test]
    fn qmail_names_the_recipient_in_angle_brackets() {
        let parsed = read_fixture("lhost-qmail-16.eml");
        assert_eq!(
            summary(&parsed),
            [("userunknown@libsisimai.net".to_owned(), ReportKind::HardBounce, "5.1.1".to_owned())]
        );
        let report = &parsed.reports[0];
        assert_eq!(report.message_id.as_deref(), Some("<20240624090001.44587.qmail@nq.example.jp>"));
        assert!(report.report_id.as_deref().is_some_and(|id| id.ends_with("#userunknown@libsisimai.net")));
    }

    #[test]
    fn exim_names_it_in_x_failed_recipients() {
        let parsed = read_fixture("lhost-exim-05.eml");
        assert_eq!(
            summary(&parsed),
            [("kijitora@neko.example.co.jp".to_owned(), ReportKind::HardBounce, "5.1.1".to_owned())]
        );
        assert_eq!(parsed.reports[0].message_id.as_deref(), Some("<19990429233445.000000@mx4.example.org>"));
    }

    #[test]
    fn exchange_names_each_recipient_on_its_line() {
        let parsed = read_fixture("lhost-exchange2003-02.eml");
        let found: Vec<String> = summary(&parsed).into_iter().map(|(a, _, _)| a).collect();
        assert_eq!(found, ["kijitora@example.co.jp", "mikeneko@example.co.jp"]);
        assert_eq!(parsed.reports[0].message_id.as_deref(), Some("<000000000000000.0000000@example.jp>"));
        assert_ne!(parsed.reports[0].report_id, parsed.reports[1].report_id, "each recipient its own report");
    }

    #[test]
    fn yahoo_names_it_before_the_remote_reply() {
        let parsed = read_fixture("lhost-yahoo-05.eml");
        let [(address, kind, _)] = summary(&parsed).try_into().unwrap_or_else(|s| panic!("{s:?}"));
        // "550 5.2.1 … User Unknown": gone-words under a mailbox-state status, soft (bounce_cause.rs).
        assert_eq!((address.as_str(), kind), ("kijitora@example.co.jp", ReportKind::SoftBounce));
    }

    #[test]
    fn sendmail_names_them_in_its_transcript() {
        let found: Vec<(String, ReportKind, String)> = summary(&read_fixture("lhost-v5sendmail-04.eml"));
        let hard = |a: &str| (a.to_owned(), ReportKind::HardBounce, "5.0.0".to_owned());
        // sisimai names the first only; the transcript says both failed.
        assert_eq!(found, [hard("kijitora@example.ed.jp"), hard("mikeneko@example.ac.jp")]);
    }

    #[test]
    fn a_label_or_quotes_may_surround_the_address() {
        let [(address, ..)] = summary(&read_fixture("lhost-imailserver-01.eml")).try_into().unwrap();
        assert_eq!(address, "kijitora@example.com");
        let [(address, kind, status)] = summary(&read_fixture("lhost-gmx-02.eml")).try_into().unwrap();
        assert_eq!(
            (address.as_str(), kind, status.as_str()),
            ("shironeko@example.jp", ReportKind::HardBounce, "5.1.1")
        );
    }

    #[test]
    fn a_reason_above_the_address_or_on_its_own_line() {
        // Lotus Notes writes the reason on the line above the address.
        let [(address, kind, _)] = summary(&read_fixture("lhost-notes-03.eml")).try_into().unwrap();
        assert_eq!((address.as_str(), kind), ("kijitora@example.com", ReportKind::HardBounce));
        // Sendmail's "554 <a>... reason" is all of that recipient's: the
        // "Host unknown" line after it is about another.
        let found: Vec<(String, ReportKind)> =
            summary(&read_fixture("lhost-v5sendmail-07.eml")).into_iter().map(|(a, k, _)| (a, k)).collect();
        let expected = [
            ("kijitora@example.org", ReportKind::SoftBounce),
            ("mikeneko@example.org", ReportKind::HardBounce),
            ("hachiware@example.edu", ReportKind::HardBounce),
        ];
        assert_eq!(found, expected.map(|(a, k)| (a.to_owned(), k)));
        // m-FILTER: blank lines between the address and its words, and "SMTP
        // command: DATA" for a refusal Postfix's words place at RCPT.
        let [(_, kind, status)] = summary(&read_fixture("lhost-mfilter-02.eml")).try_into().unwrap();
        assert_eq!((kind, status.as_str()), (ReportKind::HardBounce, "5.1.1"));
        let [(_, kind, _)] = summary(&read_fixture("lhost-mfilter-03.eml")).try_into().unwrap();
        assert_eq!(kind, ReportKind::SoftBounce, "550 No such user, after DATA");
    }

    #[test]
    fn lines_ended_by_cr_alone_are_read_too() {
        let raw =
            String::from_utf8(corpus_fixture("lhost-qmail-16.eml")).unwrap().replace("\r\n", "\n").replace('\n', "\r");
        let parsed = parse(raw.as_bytes(), None).unwrap();
        assert_eq!(summary(&parsed), summary(&read_fixture("lhost-qmail-16.eml")));
    }

    #[test]
    fn a_reply_quoting_an_address_is_no_bounce() {
        let reply = "From: Ada <ada@example.org>\r\nTo: news@example.com\r\nSubject: Re: Undelivered Mail Returned to Sender\r\n\r\n\
            Hi, this could not be delivered to one or more of you?\r\n\r\n<bo@example.org>:\r\n550 5.1.1 user unknown\r\n";
        assert_eq!(parse(reply.as_bytes(), None), Err(ParseError::NotAReport));
        let note = reply.replace("Subject: Re: ", "Subject: ");
        assert_eq!(parse(note.as_bytes(), None), Err(ParseError::NotAReport), "not from a mail daemon");
        let daemon_chat = reply
            .replace("Ada <ada@example.org>", "MAILER-DAEMON@example.org")
            .replace("Re: Undelivered Mail Returned to Sender", "Hello")
            .replace("could not be delivered to one or more", "just saying");
        assert_eq!(parse(daemon_chat.as_bytes(), None), Err(ParseError::NotAReport), "no bounce's subject or words");
        let bounce = reply.replace("Ada <ada@example.org>", "MAILER-DAEMON@example.org").replace("Re: ", "");
        assert_eq!(
            summary(&parse(bounce.as_bytes(), None).unwrap()),
            [("bo@example.org".to_owned(), ReportKind::HardBounce, "5.1.1".to_owned())]
        );
    }

    #[test]
    fn a_sentence_or_a_transcript_may_name_the_recipient() {
        let hard = |a: &str, status: &str| vec![(a.to_owned(), ReportKind::HardBounce, status.to_owned())];
        // DragonFly: "There was an error delivering your mail to <a@b>", from `MAILER-DAEMON <>`.
        assert_eq!(summary(&read_fixture("lhost-dragonfly-24.eml")), hard("userunknown@libsisimai.net", "5.1.1"));
        assert_eq!(summary(&read_fixture("lhost-dragonfly-10.eml")), hard("hasmoved@libsisimai.net", "5.1.6"));
        // InterScan: the RCPT TO of its transcript, and the reply after it.
        assert_eq!(summary(&read_fixture("lhost-trendmicro-01.eml")), hard("kijitora@example.co.jp", "5.1.1"));
        // "rejected recipient <a@b> … [550 5.1.1 User unknown]".
        assert_eq!(summary(&read_fixture("lhost-x6-02.eml")), hard("kijitora@libsisimai.org", "5.1.1"));
        // au's `Recipient: <a@b>` and a transcript's `<<< 550 <a@b>: User unknown`.
        assert_eq!(
            summary(&read_fixture("lhost-ezweb-07.eml")),
            hard("this-local-part-does-not-exist@ezweb.ne.jp", "5.0.0")
        );
        // Zoho: the address, then the remote's `ERROR_CODE :5.1.1 <a@b>... User Unknown`.
        assert_eq!(summary(&read_fixture("lhost-zoho-01.eml")), hard("kijitora@example.co.jp", "5.1.1"));
    }

    #[test]
    fn a_recipient_named_twice_keeps_the_words_of_both_places() {
        // X3 lists it with a bullet, then gives the remote's reply under "Technical details".
        assert_eq!(
            summary(&read_fixture("lhost-x3-03.eml")),
            [("kijitora@example.co.jp".to_owned(), ReportKind::HardBounce, "5.3.0".to_owned())]
        );
        // Office 365's text alone (no delivery-status part): `a@b<mailto:a@b>`, then the diagnostic.
        let parsed = read_fixture("lhost-office365-01.eml");
        assert_eq!(
            summary(&parsed),
            [("kijitora@example.com".to_owned(), ReportKind::HardBounce, "5.1.10".to_owned())]
        );
        assert!(parsed.reports[0].detail.contains("RecipientNotFound"), "{}", parsed.reports[0].detail);
    }

    #[test]
    fn an_address_a_reply_quotes_is_a_recipient_only_when_none_is_named() {
        // As Amazon WorkMail writes it: the reply quotes the address an alias forwarded to.
        let bounce = "From: MAILER-DAEMON@mail.example.net\r\nSubject: Delivery Status Notification (Failure)\r\n\r\n\
            An error occurred while trying to deliver the mail to the following recipients:\r\n\
            reader@example.org\r\n\r\nTechnical report:\r\n\r\n\
            Diagnostic-Code: smtp; 550 5.2.1 <forwarded@example.net>... User Unknown\r\n";
        let found: Vec<String> =
            summary(&parse(bounce.as_bytes(), None).unwrap()).into_iter().map(|(a, ..)| a).collect();
        assert_eq!(found, ["reader@example.org"]);
        let unnamed = bounce.replace("reader@example.org\r\n", "");
        let found: Vec<String> =
            summary(&parse(unnamed.as_bytes(), None).unwrap()).into_iter().map(|(a, ..)| a).collect();
        assert_eq!(found, ["forwarded@example.net"]);
    }

    #[test]
    fn a_report_whose_parts_are_lost_is_read_by_its_words() {
        // Its boundary parameter matches none of its parts: no delivery-status part to read.
        assert_eq!(
            summary(&read_fixture("rhost-google-02.eml")),
            [("neko-nyaan@example.org".to_owned(), ReportKind::HardBounce, "5.1.1".to_owned())]
        );
    }

    #[test]
    fn a_bounce_passing_on_another_mtas_report_is_that_report() {
        let parsed = parse(&corpus_fixture("lhost-x5-01.eml"), None).unwrap();
        assert_eq!(parsed.format, ReportFormat::Dsn);
        assert_eq!(
            summary(&parsed),
            [("kijitora@neko.example.org".to_owned(), ReportKind::HardBounce, "5.1.1".to_owned())]
        );
        // A daemon's mail with our own newsletter attached, and no recipient named, stays unread.
        let no_report = "From: MAILER-DAEMON@mx.example.org\r\nSubject: Undeliverable: Hello\r\n\
            Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
            Your message could not be delivered.\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
            From: news@example.com\r\nSubject: Hello\r\n\r\nBody\r\n--b--\r\n";
        assert!(matches!(parse(no_report.as_bytes(), None), Err(ParseError::MissingPart(..))));
    }

    #[test]
    fn a_notice_in_html_alone_is_read_as_its_text() {
        let bounce = "From: Postmaster <Postmaster@mail.example.net>\r\nSubject: Undeliverable: Hello\r\n\
            Content-Type: text/html; charset=UTF-8\r\n\r\n\
            <html><head><style>p { color: red }</style></head><body>\
            <p>We were unable to deliver your message to the following address</p>\
            <p><a href=\"mailto:bo@example.org\">bo@example.org</a></p>\
            <p>because: 550 5.1.1 User unknown</p></body></html>\r\n";
        assert_eq!(
            summary(&parse(bounce.as_bytes(), None).unwrap()),
            [("bo@example.org".to_owned(), ReportKind::HardBounce, "5.1.1".to_owned())]
        );
    }

    #[test]
    fn statuses_come_from_the_words_near_the_recipient() {
        assert_eq!(status_of("Sorry, no mailbox here by that name. (#5.1.1)").as_deref(), Some("5.1.1"));
        assert_eq!(status_of("host mx said: 452 mailbox full").as_deref(), Some("4.0.0"));
        assert_eq!(status_of("550-5.1.1 The email account does not exist").as_deref(), Some("5.1.1"));
        assert_eq!(status_of("retry timeout exceeded"), None);
        assert_eq!(status_of("Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1").as_deref(), Some("5.1.1"));
    }

    /// How many of the shared corpus's files parse as a report, and how many of
    /// sisimai's hard-bounce recipients come out with the right address:
    /// `BULLETIN_BOUNCE_CORPUS=/work/shared/corpus/bounces cargo test --lib corpus_figures -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the bounce corpus (BULLETIN_BOUNCE_CORPUS)"]
    fn corpus_figures() {
        let dir = std::path::PathBuf::from(std::env::var("BULLETIN_BOUNCE_CORPUS").expect("BULLETIN_BOUNCE_CORPUS"));
        let mut files = 0;
        let mut reports = 0;
        let mut standard = 0;
        let mut parsed_files = std::collections::HashMap::new();
        for entry in std::fs::read_dir(dir.join("maildir")).unwrap() {
            let path = entry.unwrap().path();
            let raw = std::fs::read(&path).unwrap();
            files += 1;
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Ok(parsed) = parse(&raw, None) {
                reports += 1;
                standard += usize::from(parsed.format != ReportFormat::Plain);
                parsed_files.insert(name, parsed);
            }
        }
        let csv = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
        let (mut hard, mut found, mut found_standard, mut missed) = (0, 0, 0, vec![]);
        for row in csv.lines().skip(1) {
            let cols: Vec<&str> = row.split(',').collect();
            if cols.get(3) != Some(&"hard") {
                continue;
            }
            hard += 1;
            let wanted = cols[2].to_ascii_lowercase();
            let hit = parsed_files.get(cols[0]).is_some_and(|p| {
                p.reports
                    .iter()
                    .any(|r| r.recipient.as_ref().is_some_and(|a| a.as_str().to_ascii_lowercase() == wanted))
            });
            if hit {
                found += 1;
                found_standard += usize::from(parsed_files[cols[0]].format != ReportFormat::Plain);
            } else {
                missed.push(cols[0].to_owned())
            }
        }
        println!("{reports} of {files} files parse as a report ({standard} as RFC 3464/5965, as before plain.rs)");
        println!("{found} of {hard} hard-bounce recipients found ({found_standard} from RFC 3464 reports)");
        println!("missed: {}", missed.join(" "));
        // Addresses read from a plain-text bounce that sisimai does not name for that file.
        let mut extra = vec![];
        for (file, parsed) in parsed_files.iter().filter(|(_, p)| p.format == ReportFormat::Plain) {
            for report in &parsed.reports {
                let address = report.recipient.as_ref().map_or(String::new(), |a| a.as_str().to_ascii_lowercase());
                let named = csv.lines().any(|row| {
                    row.starts_with(&format!("{file},")) && row.to_ascii_lowercase().contains(&format!(",{address},"))
                });
                if !named {
                    extra.push(format!("{file}:{address}"));
                }
            }
        }
        // How the plain-text reports' kinds (from the status alone) compare with sisimai's class.
        let mut agree = std::collections::BTreeMap::<(String, &str), usize>::new();
        for row in csv.lines().skip(1) {
            let cols: Vec<&str> = row.split(',').collect();
            let Some(parsed) = parsed_files.get(cols[0]).filter(|p| p.format == ReportFormat::Plain) else { continue };
            let wanted = cols[2].to_ascii_lowercase();
            if let Some(r) = parsed
                .reports
                .iter()
                .find(|r| r.recipient.as_ref().is_some_and(|a| a.as_str().to_ascii_lowercase() == wanted))
            {
                *agree.entry((cols[3].to_owned(), r.kind.as_str())).or_default() += 1;
            }
        }
        println!("plain-text (sisimai class, kind): {agree:?}");
        println!("{} plain-text reports name a recipient sisimai does not: {}", extra.len(), extra.join(" "));
        assert!(!parsed_files.contains_key("rfc3834-01.eml"), "a vacation reply is no bounce");
    }
}
