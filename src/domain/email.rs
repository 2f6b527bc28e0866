//! `EmailAddress`: a subscriber's address, parsed once at the edge.
//!
//! Invariants of a parsed address: trimmed, ASCII only, at most 254 octets
//! with a local part of at most 64, accepted by both `validator` and
//! `lettre::Address` (so whatever signup accepts can be sent to), a domain
//! that mail can reach (no IP literal, no special-use name, IDNA2008 labels;
//! see `mail_domain`) stored lowercased in punycode.
//! The local part keeps its case for sending; identity compares the
//! lowercased whole address (`key`).

use std::fmt;
use std::str::FromStr;

use validator::ValidateEmail;

/// Why an input is not an address we accept. The message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the address is empty")]
    Empty,
    #[error("the address is longer than 254 characters")]
    TooLong,
    #[error("the part before @ is longer than 64 characters")]
    LocalTooLong,
    #[error("the address contains a character that is not allowed")]
    ForbiddenCharacter,
    #[error("the address has no domain after @")]
    MissingDomain,
    #[error("quoted addresses are not accepted")]
    Quoted,
    #[error("IP addresses are not accepted as a domain")]
    IpLiteral,
    #[error("the domain is not a valid internet domain")]
    InvalidDomain,
    #[error("the domain is reserved and cannot receive mail")]
    ReservedDomain,
    #[error("the address is not valid")]
    Invalid,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    address: String,
}

impl EmailAddress {
    pub const MAX_LEN: usize = 254;
    pub const MAX_LOCAL_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(EmailError::Empty);
        }
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(EmailError::ForbiddenCharacter);
        }
        let (local, domain) = input.rsplit_once('@').ok_or(EmailError::MissingDomain)?;
        if local.starts_with('"') || local.ends_with('"') {
            return Err(EmailError::Quoted);
        }
        if local.is_empty() {
            return Err(EmailError::Invalid);
        }
        // Most receiving systems (and lettre without SMTPUTF8) cannot deliver to
        // a non-ASCII mailbox name; refusing it here beats failing at send time.
        if !local.is_ascii() {
            return Err(EmailError::ForbiddenCharacter);
        }
        if local.len() > Self::MAX_LOCAL_LEN {
            return Err(EmailError::LocalTooLong);
        }
        if domain.is_empty() {
            return Err(EmailError::MissingDomain);
        }
        if domain.starts_with('[') || domain.parse::<std::net::IpAddr>().is_ok() {
            return Err(EmailError::IpLiteral);
        }
        let domain = super::mail_domain::normalize(domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > Self::MAX_LEN {
            return Err(EmailError::TooLong);
        }
        if !address.validate_email() || lettre::Address::from_str(&address).is_err() {
            return Err(EmailError::Invalid);
        }
        Ok(Self { address })
    }

    /// The address as it is sent to: original local part, normalized domain.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The identity of the address: two addresses with the same key are one subscriber.
    pub fn key(&self) -> String {
        self.address.to_lowercase()
    }

    /// A form fit for logs: `r***@example.org`.
    pub fn masked(&self) -> String {
        mask(&self.address)
    }

    pub fn to_lettre(&self) -> lettre::Address {
        lettre::Address::from_str(&self.address).expect("checked by parse")
    }
}

/// Masks any stored address for logs, keeping the first character and the domain.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

impl fmt::Debug for EmailAddress {
    /// Masked, so an address that slips into a log line does not leak.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_normalizes() {
        let cases = [
            ("reader@example.org", "reader@example.org"),
            ("  Reader@Example.ORG \n", "Reader@example.org"),
            ("first.last+tag@news.example.co.uk", "first.last+tag@news.example.co.uk"),
            ("kim@bücher.de", "kim@xn--bcher-kva.de"),
            ("o'brien@example.ie", "o'brien@example.ie"),
            // What deliverable mail uses in the local part (RFC 5321 atext).
            ("a/b%c!d@example.org", "a/b%c!d@example.org"),
            // example.com/.net/.org are registered domains; only the TLD .example is special (RFC 6761 §6.5).
            ("x@example.com", "x@example.com"),
            ("x@mail.example.net", "x@mail.example.net"),
            // A name that merely contains a special-use word is an ordinary domain.
            ("x@test.de", "x@test.de"),
            ("x@onion.example.org", "x@onion.example.org"),
            ("x@localhost.org", "x@localhost.org"),
            ("x@arpa.example.org", "x@arpa.example.org"),
            // IDN domains in any case and script (UTS 46 maps them; the labels are IDNA2008's).
            ("kim@BÜCHER.de", "kim@xn--bcher-kva.de"),
            ("kim@xn--bcher-kva.de", "kim@xn--bcher-kva.de"),
            ("ivan@пример.рф", "ivan@xn--e1afmkfd.xn--p1ai"),
            ("ivan@ПРИМЕР.РФ", "ivan@xn--e1afmkfd.xn--p1ai"),
            ("nikos@παράδειγμα.ελ", "nikos@xn--hxajbheg2az3al.xn--qxam"),
            ("ken@例え.jp", "ken@xn--r8jz45g.jp"),
            ("li@中国.中国", "li@xn--fiqs8s.xn--fiqs8s"),
            ("a@straße.de", "a@xn--strae-oqa.de"),
            // RFC 5892 appendix A: contextual code points where their rule holds.
            ("a@col·legi.cat", "a@xn--collegi-xma.cat"),
            ("a@κ͵α.gr", "a@xn--wva4jza.gr"),
            ("a@カタ・カナ.jp", "a@xn--lcka3d1b7p.jp"),
        ];
        for (input, stored) in cases {
            let parsed = EmailAddress::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.as_str(), stored, "{input}");
        }
    }

    #[test]
    fn rejects() {
        let long_local = format!("{}@example.org", "a".repeat(65));
        let long_total = format!("a@{}.example.org", vec!["b".repeat(60); 4].join("."));
        let cases: Vec<&str> = vec![
            "",
            "   ",
            "plainaddress",
            "a@b",
            "a@localhost",
            "a@[127.0.0.1]",
            "a@127.0.0.1",
            "\"quoted\"@example.org",
            ".lead@example.org",
            "trail.@example.org",
            "two..dots@example.org",
            "a@under_score.example.org",
            "a@-dash.example.org",
            "a@example..org",
            "a b@example.org",
            "a@example.org\r\nBcc: victim@example.org",
            "a\0@example.org",
            "jürgen@example.de",
            "@example.org",
            "a@",
            &long_local,
            &long_total,
            // Special-use names (RFC 6761 §6.2–6.5, RFC 6762, RFC 7686, RFC 9476; .arpa: RFC 3172, RFC 8375).
            "a@foo.invalid",
            "a@foo.test",
            "a@Foo.TEST",
            "a@host.localhost",
            "a@printer.local",
            "a@duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
            "a@bücher.example",
            "a@x.alt",
            "a@1.0.0.127.in-addr.arpa",
            "a@b.a.9.8.ip6.arpa",
            "a@router.home.arpa",
            // Top-level labels no TLD has: all digits, tld-2, not starting with a letter (RFC 3696 §2).
            "a@example.123",
            "a@example.com-2",
            "a@x.c-1",
            "a@example.2com",
            // IDNA2008 (RFC 5891, RFC 5892) refuses what UTS 46 lets through: symbols,
            "a@domain.com©",
            "a@xn--com-1ea",
            "a@☃.net",
            "a@xn--n3h.net",
            "a@i♥ny.com",
            "a@⅓.com",
            // punctuation outside its context (RFC 5892 A.3), DISALLOWED exceptions (§2.6),
            "a@a·b.cat",
            "a@\u{0627}\u{0640}\u{0628}.com",
            // an enclosing mark, a combining mark of the symbol blocks (§2.4), old Hangul jamo (§2.9),
            "a@a\u{20E3}.com",
            "a@a\u{1D165}.com",
            "a@\u{1100}.kr",
            // and a label that begins with a combining mark (RFC 5891 §4.2.3.2; UTS 46 refuses it too).
            "a@\u{0301}abc.com",
            "a@xn--abc-jdc.com",
        ];
        for input in cases {
            assert!(EmailAddress::parse(input).is_err(), "accepted {input:?}");
        }
    }

    #[test]
    fn reasons_name_the_refusal() {
        assert_eq!(EmailAddress::parse("a@foo.test"), Err(EmailError::ReservedDomain));
        assert_eq!(EmailAddress::parse("a@localhost"), Err(EmailError::ReservedDomain));
        assert_eq!(EmailAddress::parse("a@domain.com©"), Err(EmailError::InvalidDomain));
        assert_eq!(EmailAddress::parse("a@example.com-2"), Err(EmailError::InvalidDomain));
        assert_eq!(EmailError::ReservedDomain.to_string(), "the domain is reserved and cannot receive mail");
    }

    #[test]
    fn key_is_case_insensitive() {
        let a = EmailAddress::parse("Reader@EXAMPLE.org").unwrap();
        let b = EmailAddress::parse("reader@example.org").unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.masked(), "R***@example.org");
        assert!(!format!("{a:?}").contains("Reader@"));
    }

    proptest! {
        /// Whatever signup accepts, lettre can address a message to.
        #[test]
        fn accepted_addresses_are_sendable(input in "[a-zA-Z0-9._%+'\\-]{1,70}@[a-zA-Z0-9._\\-]{1,40}(\\.[a-z]{2,6})?") {
            if let Ok(address) = EmailAddress::parse(&input) {
                let mailbox = lettre::message::Mailbox::new(None, address.to_lettre());
                let message = lettre::Message::builder()
                    .from("Bulletin <newsletters@example.com>".parse().unwrap())
                    .to(mailbox)
                    .subject("check")
                    .body(String::from("body"));
                prop_assert!(message.is_ok());
                prop_assert!(address.as_str().len() <= EmailAddress::MAX_LEN);
            }
        }

        #[test]
        fn never_panics(input in "\\PC{0,300}") {
            let _ = EmailAddress::parse(&input);
        }
    }
}
