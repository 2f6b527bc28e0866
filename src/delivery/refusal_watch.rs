//! Watches, while issues send, each receiving domain's share of refusals for
//! the sender's reasons, and says once per issue and domain when it passes
//! `bounces.sender_refusal_warning_share`: a provider refusing that much of
//! our mail for our reasons is usually blocking the sender.
//!
//! Counted in memory from the results this engine sees (a message that got
//! its final answer here), so the watch costs no query per message; the
//! stored counts, reports included, are `issue status`'s.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::sender_refusal::{most_common, warning_line};
use crate::domain::{BounceReason, RefusalWarning};

/// One issue's messages to one domain, as this engine saw them.
#[derive(Debug, Default)]
struct Seen {
    attempted: i64,
    refused: Vec<(BounceReason, i64)>,
    warned: bool,
}

pub struct RefusalWatch {
    warning: RefusalWarning,
    /// Issue → domain → what this engine saw; a finished issue is forgotten.
    seen: Mutex<HashMap<i64, HashMap<String, Seen>>>,
}

impl RefusalWatch {
    pub fn new(warning: RefusalWarning) -> Self {
        Self { warning, seen: Mutex::default() }
    }

    /// Counts one message of `issue` to `domain` that got its final answer:
    /// refused for the sender's reasons (`Some(reason)`) or not. Returns the
    /// warning the first time the domain passes the threshold in this issue.
    pub fn answered(&self, issue: i64, domain: &str, refused: Option<BounceReason>) -> Option<String> {
        let mut seen = self.seen.lock().expect("never poisoned");
        let domains = seen.entry(issue).or_default();
        // Called for every message: the domain is copied only the first time.
        if !domains.contains_key(domain) {
            domains.insert(domain.to_owned(), Seen::default());
        }
        let entry = domains.get_mut(domain).expect("just inserted");
        entry.attempted += 1;
        let reason = refused?;
        match entry.refused.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => entry.refused.push((reason, 1)),
        }
        let count: i64 = entry.refused.iter().map(|(_, n)| n).sum();
        if entry.warned || !self.warning.passed(count, entry.attempted) {
            return None;
        }
        entry.warned = true;
        let reason = most_common(entry.refused.iter().copied()).unwrap_or(reason);
        Some(warning_line(domain, count, entry.attempted, reason))
    }

    /// Forgets a finished issue.
    pub fn forget(&self, issue: i64) {
        self.seen.lock().expect("never poisoned").remove(&issue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_issue_and_domain() {
        let watch = RefusalWatch::new(RefusalWarning { share: 0.05, min: 3 });
        assert_eq!(watch.answered(1, "example.net", None), None);
        assert_eq!(watch.answered(1, "example.net", Some(BounceReason::Blocked)), None);
        assert_eq!(watch.answered(1, "example.net", Some(BounceReason::Blocked)), None, "2 is under the minimum");
        let line = watch.answered(1, "example.net", Some(BounceReason::Blocked)).expect("3 of 4");
        assert!(line.starts_with("example.net refused 3 of 4 (75 %) for the sender's reasons (blocked)"), "{line}");
        assert_eq!(watch.answered(1, "example.net", Some(BounceReason::Blocked)), None, "once");
        for _ in 0..80 {
            watch.answered(1, "example.org", None);
        }
        for n in 1..=3 {
            let warned = watch.answered(1, "example.org", Some(BounceReason::Policy));
            assert!(warned.is_none(), "{n} of {} is under 5 %", 80 + n);
        }
        assert!(watch.answered(2, "example.net", Some(BounceReason::Blocked)).is_none(), "another issue counts anew");
        watch.forget(1);
        assert!(watch.seen.lock().unwrap().keys().all(|issue| *issue == 2));
    }
}
