//! Why a mail server refused a message, read from its status code and its
//! words: the one rule table both the SMTP-time judge
//! (`delivery::reply::judge`) and the reports that come back later
//! (`feedback`) use, so a refusal means the same thing whichever way it came.
//!
//! The class digit alone lies often: servers answer `550 5.1.1` for a full
//! mailbox, and a bare `5.0.0` says nothing. So the remote's words are read
//! first, through [`PATTERNS`], and the enhanced status (RFC 3463) decides
//! only when no pattern matches. Suppressing a reader for ever is the one
//! thing that cannot be undone, so what is not recognised as "this address
//! is gone" is at most soft, and so is "user unknown" under a status that
//! says policy (5.7.x) or the mailbox's state (5.2.x): sisimai reads the
//! same "5.2.1 User Unknown" as gone from one host and as a filter from
//! another, and only the soft reading can be taken back.
//!
//! Words also mean what the server had accepted before it said them
//! ([`SmtpStage`]): "user unknown" in reply to MAIL FROM is about our own
//! address, and in reply to DATA comes from a server that took the
//! recipient a moment earlier, so the address exists.

use super::smtp_stage::SmtpStage;

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
    pub const ALL: [Self; 3] = [Self::Gone, Self::Soft, Self::Sender];

    /// The cause named `name` (`gone`, `soft`, `sender`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

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
    pub fn of(text: &str, permanent: bool) -> Self {
        Bounce::of(text, permanent).cause
    }
}

/// Why a server refused, in a few words an operator can count and search by
/// (close to sisimai's reason names); each reason has one [`BounceCause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceReason {
    UserUnknown,
    HostUnknown,
    HasMoved,
    /// An account switched off (Gmail's "inactive" after two years unused).
    Disabled,
    MailboxFull,
    RateLimited,
    /// Greylisting, "try again later", timeouts.
    Temporary,
    /// The message waited in a queue too long.
    Expired,
    /// An account on hold for now.
    Suspended,
    /// The server took the recipient, then refused the message in words that
    /// say the address is gone: a filter in disguise, usually the reader's
    /// own (NTT docomo and au answer "Unknown user" after DATA when the
    /// reader refuses mail from computers or from our domain). Soft, not the
    /// sender's problem: a reader whose filter refuses us for ever is then
    /// suppressed by `bounces.soft_bounce_limit`, and one whose filter changes
    /// is not lost.
    RecipientFilter,
    /// A local delivery program failed: says nothing of the address.
    MailerError,
    /// Blocklists, reputation, the sending IP.
    Blocked,
    /// SPF, DKIM, DMARC, reverse DNS, HELO, TLS.
    AuthFailure,
    /// The envelope sender's address or domain refused.
    SenderRejected,
    Policy,
    /// Spam, virus or content filters.
    Filtered,
    TooLarge,
    RelayingDenied,
    /// Nothing recognisable: decided by the status code alone.
    Undefined,
}

impl BounceReason {
    /// Every reason, in the order above: what an operator may name (`suppressions review --reason`).
    pub const ALL: [Self; 19] = [
        Self::UserUnknown,
        Self::HostUnknown,
        Self::HasMoved,
        Self::Disabled,
        Self::RecipientFilter,
        Self::MailboxFull,
        Self::RateLimited,
        Self::Temporary,
        Self::Expired,
        Self::Suspended,
        Self::MailerError,
        Self::Blocked,
        Self::AuthFailure,
        Self::SenderRejected,
        Self::Policy,
        Self::Filtered,
        Self::TooLarge,
        Self::RelayingDenied,
        Self::Undefined,
    ];

    /// The reason named `name` ([`BounceReason::as_str`]'s words).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserUnknown => "user_unknown",
            Self::HostUnknown => "host_unknown",
            Self::HasMoved => "has_moved",
            Self::Disabled => "disabled",
            Self::MailboxFull => "mailbox_full",
            Self::RateLimited => "rate_limited",
            Self::Temporary => "temporary",
            Self::Expired => "expired",
            Self::Suspended => "suspended",
            Self::RecipientFilter => "recipient_filter",
            Self::MailerError => "mailer_error",
            Self::Blocked => "blocked",
            Self::AuthFailure => "auth_failure",
            Self::SenderRejected => "sender_rejected",
            Self::Policy => "policy",
            Self::Filtered => "filtered",
            Self::TooLarge => "too_large",
            Self::RelayingDenied => "relaying_denied",
            Self::Undefined => "undefined",
        }
    }

    /// What this reason means for the reader.
    pub fn cause(self) -> BounceCause {
        match self {
            Self::UserUnknown | Self::HostUnknown | Self::HasMoved | Self::Disabled => BounceCause::Gone,
            Self::MailboxFull
            | Self::RateLimited
            | Self::Temporary
            | Self::Expired
            | Self::Suspended
            | Self::RecipientFilter
            | Self::MailerError
            | Self::Undefined => BounceCause::Soft,
            Self::Blocked
            | Self::AuthFailure
            | Self::SenderRejected
            | Self::Policy
            | Self::Filtered
            | Self::TooLarge
            | Self::RelayingDenied => BounceCause::Sender,
        }
    }

    /// The reason the first pattern of [`PATTERNS`] the text holds as whole
    /// words names; a folded line's break counts as one space.
    pub fn by_words(text: &str) -> Option<Self> {
        let text = plain_words(text);
        PATTERNS.iter().find(|(pattern, _)| holds_words(&text, pattern)).map(|&(_, reason)| reason)
    }
}

/// A refusal judged: why, and what that means for the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bounce {
    pub cause: BounceCause,
    pub reason: BounceReason,
}

impl Bounce {
    /// Judges a refusal: `text` is the status and the remote's words;
    /// `permanent` whether the status said 5 (rather than 4). The stage is
    /// the one the text names, if any (see [`Self::at`]).
    pub fn of(text: &str, permanent: bool) -> Self {
        Self::at(None, text, permanent)
    }

    /// Judges a refusal made at `stage` of the conversation (when the caller
    /// knows it: the SMTP client, or a report that names it away from the
    /// remote's words), else at the stage `text` names.
    ///
    /// A transient failure is never `Gone`, whatever its words: the server
    /// itself did not claim the address is gone for good. Nor is one made
    /// before RCPT (it is about our address or name: the sender's problem)
    /// or after it (the server had taken the address: [`BounceReason::RecipientFilter`]).
    pub fn at(stage: Option<SmtpStage>, text: &str, permanent: bool) -> Self {
        let reason = BounceReason::by_words(text).unwrap_or_else(|| match enhanced_status(text) {
            Some(status) if permanent => by_status(status),
            _ => BounceReason::Undefined,
        });
        Self::judged(reason, stage, text, permanent)
    }

    /// Judges a refusal by its words alone (and the stage they name), as
    /// [`Self::of`] does; `None` when they say nothing known, for a caller
    /// that then keeps a provider's own verdict.
    pub fn by_words(text: &str, permanent: bool) -> Option<Self> {
        BounceReason::by_words(text).map(|reason| Self::judged(reason, None, text, permanent))
    }

    fn judged(reason: BounceReason, stage: Option<SmtpStage>, text: &str, permanent: bool) -> Self {
        let stage = stage.or_else(|| SmtpStage::named_in(text)).map(|stage| stage.unless_rcpt_words(text));
        let reason = match (stage, reason.cause()) {
            (Some(SmtpStage::BeforeRcpt), BounceCause::Gone) => BounceReason::SenderRejected,
            (Some(SmtpStage::Data), BounceCause::Gone) => BounceReason::RecipientFilter,
            // Words that say gone under a status that says something else: a
            // policy ("550 5.7.1 User Unknown", often a filter's disguise) or
            // the mailbox's state ("5.2.1 mailbox disabled … User Unknown").
            // The evidence disagrees, and suppressing for ever is the one thing
            // that cannot be undone, so the reading that can be wins: soft,
            // and `bounces.soft_bounce_limit` suppresses a reader it stays true of.
            (_, BounceCause::Gone) => match enhanced_status(text) {
                Some((7, _)) => BounceReason::RecipientFilter,
                Some((2, _)) => BounceReason::Suspended,
                _ => reason,
            },
            _ => reason,
        };
        let cause = match reason.cause() {
            BounceCause::Gone if !permanent => BounceCause::Soft,
            cause => cause,
        };
        Self { cause, reason }
    }
}

/// The remote's words and what they mean, checked in this order: a few
/// providers' exact phrases, then the sender's problems, then the soft ones,
/// then the gone ones, so that a reply naming both a blocklist and an unknown
/// user never suppresses anyone. Each pattern matches whole words, case-insensitive.
pub const PATTERNS: &[(&str, BounceReason)] = &[
    // Microsoft's answer for a recipient its directory does not hold.
    ("recipient address rejected: access denied", BounceReason::UserUnknown),
    // A "<address>: User unknown" reply with the address left empty: the
    // server (au/KDDI) answers after DATA, when it has no one recipient in
    // hand, so the refusal is its filter's, not of an unknown address.
    ("550 : user unknown", BounceReason::RecipientFilter),
    ("550: : user unknown", BounceReason::RecipientFilter),
    // Hotmail's and cPanel's sentences for a domain that takes no mail: they go
    // on with "try again" and "may be blacklisted", which must not win.
    ("domain is not reachable", BounceReason::HostUnknown),
    ("the account or domain may not exist", BounceReason::HostUnknown),
    // Reputation, blocklists.
    ("blocklist", BounceReason::Blocked),
    ("blocklisted", BounceReason::Blocked),
    ("blacklist", BounceReason::Blocked),
    ("blacklisted", BounceReason::Blocked),
    ("block list", BounceReason::Blocked),
    ("black list", BounceReason::Blocked),
    ("denylist", BounceReason::Blocked),
    ("spamhaus", BounceReason::Blocked),
    ("spamcop", BounceReason::Blocked),
    ("rbl", BounceReason::Blocked),
    ("dnsbl", BounceReason::Blocked),
    ("reputation", BounceReason::Blocked),
    ("banned", BounceReason::Blocked),
    ("blocked", BounceReason::Blocked),
    ("sending ip", BounceReason::Blocked),
    ("client host", BounceReason::Blocked),
    // Authentication of the sender.
    ("spf", BounceReason::AuthFailure),
    ("dkim", BounceReason::AuthFailure),
    ("dmarc", BounceReason::AuthFailure),
    ("authentication", BounceReason::AuthFailure),
    ("unauthenticated", BounceReason::AuthFailure),
    ("not authenticated", BounceReason::AuthFailure),
    ("reverse dns", BounceReason::AuthFailure),
    ("ptr", BounceReason::AuthFailure),
    ("rdns", BounceReason::AuthFailure),
    ("helo", BounceReason::AuthFailure),
    ("ehlo", BounceReason::AuthFailure),
    ("starttls", BounceReason::AuthFailure),
    ("tls", BounceReason::AuthFailure),
    ("sender address", BounceReason::SenderRejected),
    ("sender rejected", BounceReason::SenderRejected),
    ("domain of sender", BounceReason::SenderRejected),
    ("sender verify failed", BounceReason::SenderRejected),
    ("access denied", BounceReason::SenderRejected),
    // Policy and content.
    ("policy", BounceReason::Policy),
    ("spam", BounceReason::Filtered),
    ("spammy", BounceReason::Filtered),
    ("junk", BounceReason::Filtered),
    ("bulk", BounceReason::Filtered),
    ("phishing", BounceReason::Filtered),
    ("virus", BounceReason::Filtered),
    ("malware", BounceReason::Filtered),
    ("content", BounceReason::Filtered),
    ("filtered", BounceReason::Filtered),
    ("message too large", BounceReason::TooLarge),
    ("message size", BounceReason::TooLarge),
    ("size limit", BounceReason::TooLarge),
    ("too big", BounceReason::TooLarge),
    ("relaying", BounceReason::RelayingDenied),
    ("relay access denied", BounceReason::RelayingDenied),
    ("relay denied", BounceReason::RelayingDenied),
    ("relay not permitted", BounceReason::RelayingDenied),
    ("unable to relay", BounceReason::RelayingDenied),
    // The mailbox or the server will take mail again.
    ("mailbox full", BounceReason::MailboxFull),
    ("mailbox is full", BounceReason::MailboxFull),
    ("mail box full", BounceReason::MailboxFull),
    ("full mailbox", BounceReason::MailboxFull),
    ("quota", BounceReason::MailboxFull),
    ("over quota", BounceReason::MailboxFull),
    ("overquota", BounceReason::MailboxFull),
    ("insufficient storage", BounceReason::MailboxFull),
    ("out of storage", BounceReason::MailboxFull),
    ("disk full", BounceReason::MailboxFull),
    ("too many", BounceReason::RateLimited),
    ("rate limit", BounceReason::RateLimited),
    ("rate limited", BounceReason::RateLimited),
    ("ratelimit", BounceReason::RateLimited),
    ("ratelimited", BounceReason::RateLimited),
    ("frequency limited", BounceReason::RateLimited),
    ("try again later", BounceReason::Temporary),
    ("try later", BounceReason::Temporary),
    ("temporarily", BounceReason::Temporary),
    ("temporary", BounceReason::Temporary),
    ("greylisted", BounceReason::Temporary),
    ("greylisting", BounceReason::Temporary),
    ("graylisted", BounceReason::Temporary),
    ("graylisting", BounceReason::Temporary),
    ("expired", BounceReason::Expired),
    ("timed out", BounceReason::Temporary),
    ("timeout", BounceReason::Temporary),
    // A broken DNS answer (Postfix may give up on it with 5.4.4): a fault of the moment.
    ("malformed or unexpected name server reply", BounceReason::Temporary),
    ("suspended", BounceReason::Suspended),
    // A local delivery program (procmail, a pipe) failed: says nothing of the address.
    ("x-unix", BounceReason::MailerError),
    // The address is gone.
    ("user unknown", BounceReason::UserUnknown),
    ("unknown user", BounceReason::UserUnknown),
    ("user is unknown", BounceReason::UserUnknown),
    ("unknown recipient", BounceReason::UserUnknown),
    ("recipient unknown", BounceReason::UserUnknown),
    ("addressee unknown", BounceReason::UserUnknown),
    ("unknown address", BounceReason::UserUnknown),
    ("unknown local part", BounceReason::UserUnknown),
    ("no such user", BounceReason::UserUnknown),
    ("no such mailbox", BounceReason::UserUnknown),
    ("no such recipient", BounceReason::UserUnknown),
    ("no such address", BounceReason::UserUnknown),
    ("no such domain", BounceReason::HostUnknown),
    ("domain does not exist", BounceReason::HostUnknown),
    ("no mailbox", BounceReason::UserUnknown),
    ("invalid recipient", BounceReason::UserUnknown),
    ("invalid mailbox", BounceReason::UserUnknown),
    ("invalid address", BounceReason::UserUnknown),
    ("invalid user", BounceReason::UserUnknown),
    ("user not found", BounceReason::UserUnknown),
    ("recipient not found", BounceReason::UserUnknown),
    ("mailbox not found", BounceReason::UserUnknown),
    ("address not found", BounceReason::UserUnknown),
    ("does not exist", BounceReason::UserUnknown),
    ("doesn't exist", BounceReason::UserUnknown),
    ("not exist", BounceReason::UserUnknown),
    ("doesn't have a", BounceReason::UserUnknown),
    ("not listed in", BounceReason::UserUnknown),
    ("unrouteable address", BounceReason::UserUnknown),
    // Exchange 2003 and IMail.
    ("recipient name is not recognized", BounceReason::UserUnknown),
    ("invalid final delivery userid", BounceReason::UserUnknown),
    ("host not found", BounceReason::HostUnknown),
    // RFC 7505 null MX, no MX and no address: the domain takes no mail at all.
    ("host does not accept mail", BounceReason::HostUnknown),
    ("indicated no smtp service", BounceReason::HostUnknown),
    ("couldn't find a mail exchanger", BounceReason::HostUnknown),
    ("no mx found", BounceReason::HostUnknown),
    ("invalid domain", BounceReason::HostUnknown),
    ("illegal host", BounceReason::HostUnknown),
    ("host unknown", BounceReason::HostUnknown),
    ("unknown host", BounceReason::HostUnknown),
    ("domain not found", BounceReason::HostUnknown),
    ("name or service not known", BounceReason::HostUnknown),
    ("nxdomain", BounceReason::HostUnknown),
    ("has moved", BounceReason::HasMoved),
    ("no longer", BounceReason::HasMoved),
    ("disabled", BounceReason::Disabled),
    ("inactive", BounceReason::Disabled),
    ("deactivated", BounceReason::Disabled),
];

/// `text` in lower case with each run of white space one space, as [`PATTERNS`] and stage markers are written.
pub(super) fn plain_words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase()
}

/// Whether `pattern` occurs in `text` with no letter or digit right before or after it.
pub(super) fn holds_words(text: &str, pattern: &str) -> bool {
    words_at(text, pattern).is_some()
}

/// Where `pattern` first occurs in `text` as whole words (see [`holds_words`]).
pub(super) fn words_at(text: &str, pattern: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    text.match_indices(pattern).map(|(at, _)| at).find(|&at| {
        let end = at + pattern.len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric()) && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

/// What the enhanced status of a permanent refusal says when the words said nothing.
fn by_status((subject, detail): (u16, u16)) -> BounceReason {
    match (subject, detail) {
        // Bad destination mailbox or syntax.
        (1, 0 | 1 | 3) => BounceReason::UserUnknown,
        // Bad destination system; null MX (RFC 7505).
        (1, 2 | 10) => BounceReason::HostUnknown,
        (1, 6) => BounceReason::HasMoved,
        // Bad sender's mailbox or system address.
        (1, 7 | 8) => BounceReason::SenderRejected,
        // Unable to route, given up on: no MX, no address, for good.
        (4, 4) => BounceReason::HostUnknown,
        (2, 2) => BounceReason::MailboxFull,
        // Message too long for the mailbox or the system.
        (2, 3) | (3, 4) => BounceReason::TooLarge,
        // Media not supported, conversion, security and policy.
        (6, _) => BounceReason::Filtered,
        (7, _) => BounceReason::Policy,
        _ => BounceReason::Undefined,
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
            ("5.7.1 smtp; 550 5.7.1 user unknown", Soft),
            ("5.2.1 smtp; 550 5.2.1 <address>... User Unknown", Soft),
            ("5.0.0 smtp; 550 5.1.1 <address>... User Unknown", Gone),
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
            // Phrases that must win over the softer words after them.
            ("5.5.0 smtp;554 the domain is not reachable. Please check the domain and try again", Gone),
            ("The account or domain may not exist, they may be blacklisted, or missing the proper dns entries.", Gone),
            ("5.4.4 Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)", Gone),
            ("an MX or SRV record indicated no SMTP service", Gone),
            ("The recipient name is not recognized", Gone),
            ("Invalid final delivery userid: reader@example.org", Gone),
            // A bare 5.4.4, given up routing; but a broken DNS answer is of the moment.
            ("5.4.4 smtp; 550 5.4.4 unroutable", Gone),
            (
                "5.4.4 X-Postfix; Name service error for name=example.org type=MX: Malformed or unexpected name server reply",
                Soft,
            ),
            // A folded line reads as one.
            ("5.0.0 smtp; 550 The user\r\n    is unknown", Gone),
        ];
        for (text, cause) in cases {
            assert_eq!(BounceCause::of(text, true), cause, "{text}");
        }
    }

    #[test]
    fn the_command_refused_changes_what_gone_words_mean() {
        let at = |stage, text| Bounce::at(stage, text, true);
        let unknown = "5.0.0 smtp; 550 Unknown user reader@example.org";
        assert_eq!(at(Some(SmtpStage::Rcpt), unknown).reason, BounceReason::UserUnknown);
        assert_eq!(at(None, unknown).cause, Gone);
        let after_data = at(Some(SmtpStage::Data), unknown);
        assert_eq!((after_data.cause, after_data.reason), (Soft, BounceReason::RecipientFilter));
        assert_eq!(at(Some(SmtpStage::BeforeRcpt), unknown).cause, Sender);
        // Only gone-words change: the sender's problems and the soft ones stay.
        assert_eq!(at(Some(SmtpStage::Data), "554 5.7.1 spam").reason, BounceReason::Filtered);
        assert_eq!(at(Some(SmtpStage::Data), "552 5.2.2 mailbox full").reason, BounceReason::MailboxFull);
        // The stage named in the words themselves.
        let postfix = "550 Unknown user (in reply to end of DATA\n    command)";
        assert_eq!(Bounce::of(postfix, true).reason, BounceReason::RecipientFilter);
        let exim = "SMTP error from remote mail server after MAIL FROM:<n@example.com>: 553 5.1.0 does not exist";
        assert_eq!(Bounce::of(exim, true).reason, BounceReason::SenderRejected);
        let qmail = "Connected to 192.0.2.1 but my name was rejected. Remote host said: 501 5.0.0 Invalid domain name";
        assert_eq!(Bounce::of(qmail, true).cause, Sender);
        // au's empty-address reply is its filter's whatever the stage.
        assert_eq!(Bounce::of("5.0.0 smtp; 550 : User unknown", true).reason, BounceReason::RecipientFilter);
        assert_eq!(Bounce::of("550: : User unknown", true).cause, Soft);
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
