//! Refusals for the sender's reasons ([`BounceCause::Sender`]) counted per
//! receiving domain, and when a domain's share of them means more than a few
//! strict mailboxes: a provider refusing a noticeable part of what it is
//! sent, for reasons that are ours, is usually blocking the sender.
//!
//! One rule and one wording for the three places that tell the operator:
//! the delivery engine's log line while an issue sends, `issue status`, and
//! `bulletin stats`.

use super::{Bounce, BounceCause, BounceReason};

/// `bounces.sender_refusal_warning_share` and `bounces.sender_refusal_warning_min`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefusalWarning {
    /// The share of a domain's attempted messages refused for the sender's reasons (0.05 = 5 %).
    pub share: f64,
    /// ...and at least this many refusals there, so that 1 of 2 is no warning.
    pub min: u32,
}

impl RefusalWarning {
    /// Whether `refused` of `attempted` at one domain pass the threshold.
    pub fn passed(&self, refused: i64, attempted: i64) -> bool {
        // A division, not `refused >= share * attempted`: 0.05 * 200 is a hair above 10.
        refused >= i64::from(self.min) && attempted > 0 && refused as f64 / attempted as f64 >= self.share
    }
}

/// The receiving domain of an address as stored (its domain is normalized
/// already: lowercased, punycode); `None` for something with no `@`.
pub fn recipient_domain(address: &str) -> Option<String> {
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Why a refusal known to be the sender's problem was made, read by the one
/// rule table; a refusal whose words and status name no reason of the
/// sender's kind (a provider's verdict with no words) is counted as `policy`.
pub fn sender_reason(text: &str) -> BounceReason {
    match Bounce::of(text, true) {
        Bounce { cause: BounceCause::Sender, reason } => reason,
        _ => BounceReason::Policy,
    }
}

/// Whether a refusal is the sender's problem, and why. `permanent`: the
/// reply said 5 rather than 4 (a 4.x.x blocklist refusal that used up every
/// attempt is the sender's problem too).
pub fn sender_refusal(text: &str, permanent: bool) -> Option<BounceReason> {
    let bounce = Bounce::of(text, permanent);
    (bounce.cause == BounceCause::Sender).then_some(bounce.reason)
}

/// One receiving domain's refusals for the sender's reasons, and what it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRefusals {
    pub domain: String,
    /// Refused for the sender's reasons, at SMTP time or in a later report.
    pub refused: i64,
    /// Accepted by the receiving server (a later report may still refuse some).
    pub delivered: i64,
    /// Handed to the receiving server at least once.
    pub attempted: i64,
    /// The most common reason among the refusals (the first by name on a tie).
    pub reason: BounceReason,
}

impl DomainRefusals {
    /// Refused / attempted, from 0 to 1; 0 when nothing was attempted.
    pub fn share(&self) -> f64 {
        if self.attempted == 0 { 0.0 } else { (self.refused as f64 / self.attempted as f64).min(1.0) }
    }

    /// The warning when this domain passed `warning`, else `None`.
    pub fn warning(&self, warning: &RefusalWarning) -> Option<String> {
        warning
            .passed(self.refused, self.attempted)
            .then(|| warning_line(&self.domain, self.refused, self.attempted, self.reason))
    }
}

/// "gmail.com refused 37 of 300 (12 %) for the sender's reasons (blocked): …"
/// with what it probably means and what to check. Names a domain, never an address.
pub fn warning_line(domain: &str, refused: i64, attempted: i64, reason: BounceReason) -> String {
    let percent = if attempted > 0 { refused as f64 * 100.0 / attempted as f64 } else { 100.0 };
    format!(
        "{domain} refused {refused} of {attempted} ({percent:.0} %) for the sender's reasons ({}): the sender is \
         probably being blocked there, not the readers; {}",
        reason.as_str(),
        what_to_check(reason)
    )
}

/// What to look at first for this reason.
fn what_to_check(reason: BounceReason) -> &'static str {
    match reason {
        BounceReason::Blocked => {
            "check whether the sending IP or domain is on a blocklist (Spamhaus, Spamcop), then the provider's \
             postmaster page (Gmail Postmaster Tools, Microsoft SNDS, Yahoo Sender Hub)"
        }
        BounceReason::AuthFailure | BounceReason::SenderRejected => {
            "check that SPF, DKIM and DMARC pass for mail.from's domain and that the sending IP has reverse DNS, \
             then the provider's postmaster page"
        }
        _ => {
            "check the provider's postmaster page (Gmail Postmaster Tools, Microsoft SNDS, Yahoo Sender Hub), \
             the blocklists, SPF, DKIM, DMARC and the content"
        }
    }
}

/// Every reason a refusal for the sender's reasons is counted under, to read a stored name back.
const SENDER_REASONS: [BounceReason; 7] = [
    BounceReason::Blocked,
    BounceReason::AuthFailure,
    BounceReason::SenderRejected,
    BounceReason::Policy,
    BounceReason::Filtered,
    BounceReason::TooLarge,
    BounceReason::RelayingDenied,
];

/// A stored reason's name read back; an unknown name (a reason renamed since) counts as `policy`.
pub fn reason_named(name: &str) -> BounceReason {
    SENDER_REASONS.into_iter().find(|r| r.as_str() == name).unwrap_or(BounceReason::Policy)
}

/// The most common reason in `counts` (reason, refusals); the first by name on a tie.
pub fn most_common(counts: impl IntoIterator<Item = (BounceReason, i64)>) -> Option<BounceReason> {
    let mut counts: Vec<(BounceReason, i64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.as_str().cmp(b.0.as_str())));
    counts.first().map(|(reason, _)| *reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_two_is_no_warning() {
        let warning = RefusalWarning { share: 0.05, min: 10 };
        assert!(!warning.passed(1, 2), "too few to mean anything");
        assert!(!warning.passed(10, 201), "under 5 %");
        assert!(warning.passed(10, 200));
        assert!(warning.passed(37, 300));
        assert!(!warning.passed(10, 0));
    }

    #[test]
    fn reasons_and_domains() {
        let spamhaus = "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org";
        assert_eq!(sender_refusal(spamhaus, true), Some(BounceReason::Blocked));
        assert_eq!(sender_refusal("550 5.1.1 user unknown", true), None);
        assert_eq!(sender_refusal("451 4.7.1 Client host blocked", false), Some(BounceReason::Blocked));
        assert_eq!(sender_reason("5.7.1 smtp; 554 5.7.1 Email rejected per DMARC policy"), BounceReason::AuthFailure);
        assert_eq!(sender_reason("rejected"), BounceReason::Policy);
        assert_eq!(recipient_domain("Ada@Mail.Example.org").as_deref(), Some("mail.example.org"));
        assert_eq!(recipient_domain("nobody"), None);
        for reason in SENDER_REASONS {
            assert_eq!(reason.cause(), BounceCause::Sender);
            assert_eq!(reason_named(reason.as_str()), reason);
        }
    }

    #[test]
    fn the_line_names_the_domain_share_and_reason() {
        let line = warning_line("gmail.com", 37, 300, BounceReason::Blocked);
        assert!(line.starts_with("gmail.com refused 37 of 300 (12 %) for the sender's reasons (blocked): "), "{line}");
        assert!(line.contains("blocklist") && line.contains("postmaster"), "{line}");
        assert!(!line.contains('@'));
        let reasons = [(BounceReason::Policy, 2), (BounceReason::Blocked, 5), (BounceReason::AuthFailure, 5)];
        assert_eq!(most_common(reasons), Some(BounceReason::AuthFailure));
    }
}
