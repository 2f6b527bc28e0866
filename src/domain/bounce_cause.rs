//! Why a mail server refused a message, read from its status code and its
//! words: the one rule table both the SMTP-time judge
//! (`delivery::reply::judge`) and the reports that come back later
//! (`feedback`) use, so a refusal means the same thing whichever way it came.
//!
//! The class digit alone lies often: servers answer `550 5.1.1` for a full
//! mailbox and `554 5.7.1` for an unknown user, and a bare `5.0.0` says
//! nothing. So the remote's words are read first, through [`PATTERNS`], and
//! the enhanced status (RFC 3463) decides only when no pattern matches.
//! Suppressing a reader for ever is the one thing that cannot be undone, so
//! what is not recognised as "this address is gone" is at most soft.

/// What a refusal means for the reader it was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceCause {
    /// The address does not exist (any more): unknown user, no such domain,
    /// moved, disabled account. Suppress it.
    Gone,
    /// The mailbox may take mail again: full, rate-limited, expired in the
    /// queue, temporary failures, and permanent refusals nothing recognisable
    /// explains. Counted toward `bounces.soft_bounce_limit`.
    Soft,
    /// The receiver refused *us*: policy, reputation, a blocklist, SPF/DKIM/DMARC,
    /// content filters, relaying. Not the reader's fault: never suppresses.
    Sender,
}

impl BounceCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::Soft => "soft",
            Self::Sender => "sender",
        }
    }

    /// The cause of a refusal: `text` is the status and the remote's words
    /// ("5.1.1 smtp; 550 5.1.1 <…>: User unknown", or an SMTP reply);
    /// `permanent` whether the status said 5 (rather than 4).
    ///
    /// A transient failure is never `Gone`, whatever its words: the server
    /// itself did not claim the address is gone for good.
    pub fn of(text: &str, permanent: bool) -> Self {
        let cause = Self::by_words(text).unwrap_or_else(|| match enhanced_status(text) {
            Some(status) if permanent => by_status(status),
            _ => Self::Soft,
        });
        if !permanent && cause == Self::Gone { Self::Soft } else { cause }
    }

    /// The first pattern of [`PATTERNS`] the text holds as whole words; `None`: the words say nothing known.
    pub fn by_words(text: &str) -> Option<Self> {
        let text = text.to_ascii_lowercase();
        PATTERNS.iter().find(|(pattern, _)| holds_words(&text, pattern)).map(|&(_, cause)| cause)
    }
}

/// The remote's words and what they mean, checked in this order: a few
/// providers' exact phrases, then the sender's problems, then the soft ones,
/// then the gone ones, so that a reply naming both a blocklist and an unknown
/// user never suppresses anyone. Each pattern matches whole words, case-insensitive.
pub const PATTERNS: &[(&str, BounceCause)] = &[
    // Microsoft's answer for a recipient its directory does not hold.
    ("recipient address rejected: access denied", BounceCause::Gone),
    // Reputation, blocklists.
    ("blocklist", BounceCause::Sender),
    ("blocklisted", BounceCause::Sender),
    ("blacklist", BounceCause::Sender),
    ("blacklisted", BounceCause::Sender),
    ("block list", BounceCause::Sender),
    ("black list", BounceCause::Sender),
    ("denylist", BounceCause::Sender),
    ("spamhaus", BounceCause::Sender),
    ("spamcop", BounceCause::Sender),
    ("rbl", BounceCause::Sender),
    ("dnsbl", BounceCause::Sender),
    ("reputation", BounceCause::Sender),
    ("banned", BounceCause::Sender),
    ("blocked", BounceCause::Sender),
    ("sending ip", BounceCause::Sender),
    ("client host", BounceCause::Sender),
    // Authentication of the sender.
    ("spf", BounceCause::Sender),
    ("dkim", BounceCause::Sender),
    ("dmarc", BounceCause::Sender),
    ("authentication", BounceCause::Sender),
    ("unauthenticated", BounceCause::Sender),
    ("not authenticated", BounceCause::Sender),
    ("reverse dns", BounceCause::Sender),
    ("ptr", BounceCause::Sender),
    ("rdns", BounceCause::Sender),
    ("helo", BounceCause::Sender),
    ("ehlo", BounceCause::Sender),
    ("starttls", BounceCause::Sender),
    ("tls", BounceCause::Sender),
    ("sender address", BounceCause::Sender),
    ("sender rejected", BounceCause::Sender),
    ("domain of sender", BounceCause::Sender),
    ("sender verify failed", BounceCause::Sender),
    ("access denied", BounceCause::Sender),
    // Policy and content.
    ("policy", BounceCause::Sender),
    ("spam", BounceCause::Sender),
    ("spammy", BounceCause::Sender),
    ("junk", BounceCause::Sender),
    ("bulk", BounceCause::Sender),
    ("phishing", BounceCause::Sender),
    ("virus", BounceCause::Sender),
    ("malware", BounceCause::Sender),
    ("content", BounceCause::Sender),
    ("filtered", BounceCause::Sender),
    ("message too large", BounceCause::Sender),
    ("message size", BounceCause::Sender),
    ("size limit", BounceCause::Sender),
    ("too big", BounceCause::Sender),
    ("relaying", BounceCause::Sender),
    ("relay access denied", BounceCause::Sender),
    ("relay denied", BounceCause::Sender),
    ("relay not permitted", BounceCause::Sender),
    ("unable to relay", BounceCause::Sender),
    // The mailbox or the server will take mail again.
    ("mailbox full", BounceCause::Soft),
    ("mailbox is full", BounceCause::Soft),
    ("mail box full", BounceCause::Soft),
    ("full mailbox", BounceCause::Soft),
    ("quota", BounceCause::Soft),
    ("over quota", BounceCause::Soft),
    ("overquota", BounceCause::Soft),
    ("insufficient storage", BounceCause::Soft),
    ("out of storage", BounceCause::Soft),
    ("disk full", BounceCause::Soft),
    ("too many", BounceCause::Soft),
    ("rate limit", BounceCause::Soft),
    ("rate limited", BounceCause::Soft),
    ("ratelimit", BounceCause::Soft),
    ("ratelimited", BounceCause::Soft),
    ("frequency limited", BounceCause::Soft),
    ("try again later", BounceCause::Soft),
    ("try later", BounceCause::Soft),
    ("temporarily", BounceCause::Soft),
    ("temporary", BounceCause::Soft),
    ("greylisted", BounceCause::Soft),
    ("greylisting", BounceCause::Soft),
    ("graylisted", BounceCause::Soft),
    ("graylisting", BounceCause::Soft),
    ("expired", BounceCause::Soft),
    ("timed out", BounceCause::Soft),
    ("timeout", BounceCause::Soft),
    ("suspended", BounceCause::Soft),
    // A local delivery program (procmail, a pipe) failed: says nothing of the address.
    ("x-unix", BounceCause::Soft),
    // The address is gone.
    ("user unknown", BounceCause::Gone),
    ("unknown user", BounceCause::Gone),
    ("user is unknown", BounceCause::Gone),
    ("unknown recipient", BounceCause::Gone),
    ("recipient unknown", BounceCause::Gone),
    ("addressee unknown", BounceCause::Gone),
    ("unknown address", BounceCause::Gone),
    ("unknown local part", BounceCause::Gone),
    ("no such user", BounceCause::Gone),
    ("no such mailbox", BounceCause::Gone),
    ("no such recipient", BounceCause::Gone),
    ("no such address", BounceCause::Gone),
    ("no such domain", BounceCause::Gone),
    ("no mailbox", BounceCause::Gone),
    ("invalid recipient", BounceCause::Gone),
    ("invalid mailbox", BounceCause::Gone),
    ("invalid address", BounceCause::Gone),
    ("invalid user", BounceCause::Gone),
    ("user not found", BounceCause::Gone),
    ("recipient not found", BounceCause::Gone),
    ("mailbox not found", BounceCause::Gone),
    ("address not found", BounceCause::Gone),
    ("does not exist", BounceCause::Gone),
    ("doesn't exist", BounceCause::Gone),
    ("not exist", BounceCause::Gone),
    ("doesn't have a", BounceCause::Gone),
    ("not listed in", BounceCause::Gone),
    ("unrouteable address", BounceCause::Gone),
    ("host not found", BounceCause::Gone),
    // RFC 7505 null MX: the domain takes no mail at all.
    ("host does not accept mail", BounceCause::Gone),
    ("invalid domain", BounceCause::Gone),
    ("illegal host", BounceCause::Gone),
    ("host unknown", BounceCause::Gone),
    ("unknown host", BounceCause::Gone),
    ("domain not found", BounceCause::Gone),
    ("name or service not known", BounceCause::Gone),
    ("nxdomain", BounceCause::Gone),
    ("has moved", BounceCause::Gone),
    ("no longer", BounceCause::Gone),
    ("disabled", BounceCause::Gone),
    ("inactive", BounceCause::Gone),
    ("deactivated", BounceCause::Gone),
];

/// Whether `pattern` occurs in `text` with no letter or digit right before or after it.
fn holds_words(text: &str, pattern: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(pattern).any(|(at, _)| {
        let end = at + pattern.len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric()) && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

/// What the enhanced status of a permanent refusal says when the words said nothing.
fn by_status((subject, detail): (u16, u16)) -> BounceCause {
    match (subject, detail) {
        // Bad destination mailbox, system or syntax; moved; null MX (RFC 7505).
        (1, 0..=3 | 6 | 10) => BounceCause::Gone,
        // Bad sender's mailbox or system address.
        (1, 7 | 8) => BounceCause::Sender,
        // Message too long for the mailbox or the system; media not supported; conversion.
        (2, 3) | (3, 4) | (6, _) | (7, _) => BounceCause::Sender,
        _ => BounceCause::Soft,
    }
}

/// The subject and detail of the first RFC 3463 enhanced status code in
/// `text` (`5.1.1` → (1, 1)), as in the DSN's Status field or a reply; a
/// bare `x.0.0` only when nothing more precise follows (a DSN's `Status:
/// 5.0.0` before the remote's own `5.1.0`).
pub fn enhanced_status(text: &str) -> Option<(u16, u16)> {
    let mut all = statuses(text);
    let first = all.next()?;
    if first != (0, 0) {
        return Some(first);
    }
    Some(all.find(|s| *s != (0, 0)).unwrap_or(first))
}

/// Every enhanced status code in `text`, in order.
fn statuses(text: &str) -> impl Iterator<Item = (u16, u16)> + '_ {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, ':' | '(' | ')' | ';' | ',' | '[' | ']' | '<' | '>' | '#' | '-' | '\'')
    })
    .filter_map(|word| {
        let mut parts = word.trim_end_matches('.').split('.');
        let class: u16 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        (parts.next().is_none() && (class == 4 || class == 5) && subject < 10 && detail < 1000)
            .then_some((subject, detail))
    })
}

#[cfg(test)]
mod tests {
    use super::BounceCause::{Gone, Sender, Soft};
    use super::*;

    #[test]
    fn words_win_over_the_class_digit() {
        let cases = [
            ("5.1.1 smtp; 550 5.1.1 <address>: Recipient address rejected: User unknown", Gone),
            ("5.1.1 smtp; 550 5.1.1 mailbox full", Soft),
            ("5.2.2 smtp; 552 5.2.2 Quota exceeded", Soft),
            ("5.7.1 smtp; 550 5.7.1 user unknown", Gone),
            ("5.0.0 smtp; 550 user unknown", Gone),
            ("5.0.0 smtp; 550 Requested action not taken", Soft),
            ("5.7.606 smtp; 550 5.7.606 Access denied, banned sending IP [192.0.2.1]", Sender),
            ("5.7.1 smtp; 554 5.7.1 Email rejected per DMARC policy", Sender),
            ("5.7.1 smtp; 554 5.7.1 rejected", Sender),
            ("5.0.0 smtp; 550 Connection frequency limited", Soft),
            ("5.3.0 smtp; 553 Relay access denied", Sender),
            ("5.1.10 smtp; 556 5.1.10 Recipient address has null MX", Gone),
            ("5.1.8 smtp; 553 5.1.8 Bad sender address", Sender),
            ("5.4.4 smtp; 550 Host not found", Gone),
            ("5.0.0 smtp; 550 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org", Sender),
        ];
        for (text, cause) in cases {
            assert_eq!(BounceCause::of(text, true), cause, "{text}");
        }
    }

    #[test]
    fn a_transient_failure_is_never_gone() {
        assert_eq!(BounceCause::of("4.1.1 smtp; 450 4.1.1 user unknown", false), Soft);
        assert_eq!(BounceCause::of("4.4.7 delivery time expired", false), Soft);
        assert_eq!(BounceCause::of("4.7.1 smtp; 450 4.7.1 Client host blocked", false), Sender);
    }

    #[test]
    fn patterns_are_whole_words() {
        // "rbl" inside a queue id, "ptr" inside a word: not a reason.
        assert_eq!(BounceCause::of("5.1.1 smtp; 550 5.1.1 id=Xrbl7ptrz no such user", true), Gone);
        assert!(PATTERNS.iter().all(|(p, _)| p == &p.to_ascii_lowercase() && !p.is_empty()));
        assert_eq!(enhanced_status("server says 1.2.3.4 is 5.1.10"), Some((1, 10)));
        assert_eq!(enhanced_status("smtp;550 5.2.2."), Some((2, 2)));
    }
}
