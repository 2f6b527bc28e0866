//! What an SMTP reply means for a delivery.
//!
//! A permanent refusal is read by the same rule table as a bounce that comes
//! back later ([`Bounce`]), with the command it answered, so the reply and a
//! DSN saying the same thing at the same stage do the same to the reader.

use crate::domain::bounce_cause::enhanced_status;
use crate::domain::{Bounce, BounceCause};
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
    /// The address is gone ([`BounceCause::Gone`]: user unknown, 5.1.1…).
    /// Suppress the address.
    NoSuchMailbox(String),
    /// Refused for the sender's reasons ([`BounceCause::Sender`]: policy,
    /// reputation, blocklists, 5.7.x). Not the reader's fault: no
    /// suppression, but enough of these pause the issue.
    Policy(String),
    /// Any other permanent refusal ([`BounceCause::Soft`]: mailbox full,
    /// nothing recognisable): this delivery fails, the reader stays.
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
        Err(SendFailure::Rejected { code, reply, stage }) => match (code / 100, enhanced_status(&reply)) {
            (4, Some((7, _))) => Verdict::SlowDown(reply),
            (4, _) if code == 421 => Verdict::SlowDown(reply),
            (4, _) => Verdict::TryAgain(reply),
            _ => match Bounce::at(stage, &reply, true).cause {
                BounceCause::Gone => Verdict::NoSuchMailbox(reply),
                BounceCause::Sender => Verdict::Policy(reply),
                BounceCause::Soft => Verdict::Refused(reply),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SmtpStage;

    /// A refusal of RCPT TO, the command most refusals answer.
    fn rejected(code: u16, reply: &str) -> Verdict {
        rejected_at(SmtpStage::Rcpt, code, reply)
    }

    fn rejected_at(stage: SmtpStage, code: u16, reply: &str) -> Verdict {
        judge(Err(SendFailure::Rejected { code, reply: reply.into(), stage: Some(stage) }))
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
    }

    #[test]
    fn the_command_refused_tells_whose_address_is_gone() {
        let unknown = "550 5.1.1 <x@example.org>: user unknown";
        assert!(matches!(rejected_at(SmtpStage::Rcpt, 550, unknown), Verdict::NoSuchMailbox(_)));
        // The server took the recipient before it said so: a filter, the reader stays.
        assert!(matches!(rejected_at(SmtpStage::Data, 550, unknown), Verdict::Refused(_)));
        // Before RCPT the address it means is ours.
        assert!(matches!(rejected_at(SmtpStage::BeforeRcpt, 550, unknown), Verdict::Policy(_)));
        let unstaged = SendFailure::Rejected { code: 550, reply: unknown.into(), stage: None };
        assert!(matches!(judge(Err(unstaged)), Verdict::NoSuchMailbox(_)));
    }

    /// The verdict's cause, for comparing with the reports' path.
    fn cause_of(verdict: &Verdict) -> BounceCause {
        match verdict {
            Verdict::NoSuchMailbox(_) => BounceCause::Gone,
            Verdict::Policy(_) => BounceCause::Sender,
            Verdict::Refused(_) => BounceCause::Soft,
            other => panic!("not a permanent refusal: {other:?}"),
        }
    }

    fn kind_cause(raw: &str) -> BounceCause {
        let parsed = crate::feedback::parse(raw.as_bytes(), None).unwrap();
        match parsed.reports[0].kind {
            crate::feedback::ReportKind::HardBounce => BounceCause::Gone,
            crate::feedback::ReportKind::SoftBounce => BounceCause::Soft,
            crate::feedback::ReportKind::SenderRefused => BounceCause::Sender,
            other => panic!("{other:?}"),
        }
    }

    /// The same refusal in a DSN, as Postfix writes one days after its 250:
    /// the command refused named only in the words for people.
    fn dsn_cause(reply: &str, stage: SmtpStage) -> BounceCause {
        let status = enhanced_status(reply).map_or("5.0.0".to_owned(), |(s, d)| format!("5.{s}.{d}"));
        let command = match stage {
            SmtpStage::BeforeRcpt => "MAIL FROM",
            SmtpStage::Rcpt => "RCPT TO",
            SmtpStage::Data => "end of DATA",
        };
        kind_cause(&format!(
            "From: MAILER-DAEMON@mx.example.com\r\nMessage-Id: <dsn.1@mx.example.com>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
             --B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n\r\n\
             <reader@example.org>: host mail.example.org[192.0.2.1] said: {reply}\r\n    (in reply to {command}\r\n    command)\r\n\r\n\
             --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n\
             Final-Recipient: rfc822; reader@example.org\r\nAction: failed\r\nStatus: {status}\r\n\
             Diagnostic-Code: smtp; {reply}\r\n\r\n--B--\r\n"
        ))
    }

    /// The same refusal in Exim's plain-text bounce, the command in its own words.
    fn exim_cause(reply: &str, stage: SmtpStage) -> BounceCause {
        let command = match stage {
            SmtpStage::BeforeRcpt => "MAIL FROM:<news@example.com>",
            SmtpStage::Rcpt => "RCPT TO:<reader@example.org>",
            SmtpStage::Data => "end of data",
        };
        kind_cause(&format!(
            "From: Mail Delivery System <Mailer-Daemon@mx.example.com>\r\nTo: news@example.com\r\n\
             Subject: Mail delivery failed: returning message to sender\r\nX-Failed-Recipients: reader@example.org\r\n\
             Message-Id: <exim.1@mx.example.com>\r\n\r\n\
             This message was created automatically by mail delivery software.\r\n\r\n\
             A message that you sent could not be delivered to one or more of its\r\n\
             recipients. This is a permanent error. The following address(es) failed:\r\n\r\n\
             \x20 reader@example.org\r\n    host mail.example.org [192.0.2.1]\r\n\
             \x20   SMTP error from remote mail server after {command}:\r\n    {reply}\r\n"
        ))
    }

    /// A refusal at SMTP time and the same refusal at the same command in a
    /// later DSN or plain-text bounce do the same to the reader.
    #[test]
    fn both_paths_read_a_refusal_alike() {
        use BounceCause::{Gone, Sender, Soft};
        use SmtpStage::{BeforeRcpt, Data, Rcpt};
        let table = [
            (Rcpt, 550, "550 5.1.1 <reader@example.org>: Recipient address rejected: User unknown", Gone),
            (Rcpt, 550, "550 5.1.1 mailbox full", Soft),
            (Rcpt, 552, "552 5.2.2 Quota exceeded", Soft),
            (Rcpt, 552, "552 Mailbox full", Soft),
            (Rcpt, 550, "550 5.7.606 Access denied, banned sending IP [192.0.2.1]", Sender),
            (Rcpt, 554, "554 5.7.1 Email rejected per DMARC policy", Sender),
            (Rcpt, 554, "554 5.7.1 Message refused", Sender),
            // Gone-words under a policy status: the evidence disagrees, the reversible reading wins.
            (Rcpt, 550, "550 5.7.1 user unknown", Soft),
            (Rcpt, 550, "550 5.0.0 user unknown", Gone),
            (Rcpt, 550, "550 5.0.0 Requested action not taken", Soft),
            (Rcpt, 550, "550 Connection frequency limited", Soft),
            (Rcpt, 550, "550 No such user here", Gone),
            (
                Rcpt,
                554,
                "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
                Sender,
            ),
            (Rcpt, 550, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", Gone),
            (Rcpt, 553, "553 5.3.0 Relay access denied", Sender),
            // After DATA the address had been taken: gone-words are a filter's disguise.
            (Data, 550, "550 Unknown user reader@example.org", Soft),
            (Data, 550, "550 5.1.1 <reader@example.org>... User unknown", Soft),
            (Data, 554, "554 5.7.1 Message rejected as spam", Sender),
            (Data, 552, "552 5.2.2 Quota exceeded", Soft),
            // au's "<address>: User unknown" with the address left empty: its filter's, at any stage.
            (Data, 550, "550 : User unknown", Soft),
            (Rcpt, 550, "550 : User unknown", Soft),
            // Before RCPT the unknown address is ours.
            (BeforeRcpt, 553, "553 5.1.0 news.example.com does not exist", Sender),
            (BeforeRcpt, 550, "550 5.1.1 user unknown", Sender),
            (BeforeRcpt, 554, "554 5.7.1 Client host [192.0.2.1] blocked", Sender),
        ];
        for (stage, code, reply, cause) in table {
            assert_eq!(cause_of(&rejected_at(stage, code, reply)), cause, "SMTP time at {stage:?}: {reply}");
            assert_eq!(dsn_cause(reply, stage), cause, "in a DSN at {stage:?}: {reply}");
            assert_eq!(exim_cause(reply, stage), cause, "in Exim's bounce at {stage:?}: {reply}");
        }
    }

    #[test]
    fn reply_classes() {
        let class = |code| reply_class(&Err(SendFailure::Rejected { code, reply: String::new(), stage: None }));
        assert_eq!(reply_class(&Ok("250 2.0.0 Ok".into())), "2xx");
        assert_eq!((class(451), class(421), class(550)), ("4xx", "4xx", "5xx"));
        assert_eq!(reply_class(&Err(SendFailure::AfterData("eof".into()))), "none");
    }
}
