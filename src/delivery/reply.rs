//! What an SMTP reply means for a delivery.

use crate::mail::SendFailure;

/// The engine's reading of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Sent(String),
    /// 4xx, or the connection failed before the message was handed over
    /// (the engine itself waits for a server it cannot reach at all, and
    /// does not count that attempt).
    TryAgain(String),
    /// 421 or 4.7.x: the server asks us to slow down. Tried again later, and
    /// the engine halves its pace.
    SlowDown(String),
    /// 5.1.x: the mailbox does not exist. Suppress the address.
    NoSuchMailbox(String),
    /// 5.7.x: refused by policy or reputation. Not the reader's fault: no
    /// suppression, but enough of these pause the issue.
    Policy(String),
    /// Any other permanent refusal.
    Refused(String),
    /// The connection died after the message was handed over.
    Ambiguous(String),
}

/// The class of the reply an attempt got, for the metrics: `2xx`, `4xx`,
/// `5xx`, or `none` when the connection failed before any reply.
pub fn reply_class(result: &Result<String, SendFailure>) -> &'static str {
    match result {
        Ok(_) => "2xx",
        // Anything but a transient refusal is judged permanent, as [`judge`] does.
        Err(SendFailure::Rejected { code, .. }) => match code / 100 {
            2 => "2xx",
            4 => "4xx",
            _ => "5xx",
        },
        Err(SendFailure::Unreachable(_) | SendFailure::Connection(_) | SendFailure::AfterData(_)) => "none",
    }
}

pub fn judge(result: Result<String, SendFailure>) -> Verdict {
    match result {
        Ok(reply) => Verdict::Sent(reply),
        Err(SendFailure::Unreachable(e) | SendFailure::Connection(e)) => Verdict::TryAgain(e),
        Err(SendFailure::AfterData(e)) => {
            Verdict::Ambiguous(format!("connection lost after the message was sent: {e}"))
        }
        Err(SendFailure::Rejected { code, reply }) => match (code / 100, enhanced_class(&reply)) {
            (4, Some((7, _))) => Verdict::SlowDown(reply),
            (4, _) if code == 421 => Verdict::SlowDown(reply),
            (4, _) => Verdict::TryAgain(reply),
            (5, Some((1, _))) => Verdict::NoSuchMailbox(reply),
            (5, Some((7, _))) => Verdict::Policy(reply),
            _ => Verdict::Refused(reply),
        },
    }
}

/// The subject and detail of an RFC 3463 enhanced status code (`5.1.1` → (1, 1)) in a reply.
fn enhanced_class(reply: &str) -> Option<(u16, u16)> {
    reply.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')').find_map(|word| {
        let mut parts = word.split('.');
        let class: u16 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        (parts.next().is_none() && (class == 4 || class == 5) && subject < 10).then_some((subject, detail))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(code: u16, reply: &str) -> Verdict {
        judge(Err(SendFailure::Rejected { code, reply: reply.into() }))
    }

    #[test]
    fn replies() {
        assert!(matches!(rejected(451, "451 4.3.0 Try later"), Verdict::TryAgain(_)));
        assert!(matches!(rejected(451, "451 4.7.1 Try later"), Verdict::SlowDown(_)));
        assert!(matches!(rejected(421, "421 4.4.2 closing"), Verdict::SlowDown(_)));
        assert!(matches!(rejected(450, "450 Mailbox busy"), Verdict::TryAgain(_)));
        assert!(matches!(rejected(550, "permanent error (550): 5.1.1 No such user"), Verdict::NoSuchMailbox(_)));
        assert!(matches!(rejected(554, "554 5.7.1 Spam rejected"), Verdict::Policy(_)));
        assert!(matches!(rejected(552, "552 Mailbox full"), Verdict::Refused(_)));
        assert!(matches!(judge(Err(SendFailure::AfterData("eof".into()))), Verdict::Ambiguous(_)));
        assert!(matches!(judge(Err(SendFailure::Connection("reset".into()))), Verdict::TryAgain(_)));
        assert!(matches!(judge(Err(SendFailure::Unreachable("refused".into()))), Verdict::TryAgain(_)));
        assert_eq!(enhanced_class("server says 1.2.3.4 is 5.1.10"), Some((1, 10)));
    }

    #[test]
    fn reply_classes() {
        let class = |code| reply_class(&Err(SendFailure::Rejected { code, reply: String::new() }));
        assert_eq!(reply_class(&Ok("250 2.0.0 Ok".into())), "2xx");
        assert_eq!((class(451), class(421), class(550)), ("4xx", "4xx", "5xx"));
        assert_eq!(reply_class(&Err(SendFailure::AfterData("eof".into()))), "none");
    }
}
