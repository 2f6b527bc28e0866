//! Where in the SMTP conversation a server refused, read from what MTAs
//! write about it: what the server had taken before tells what its words can
//! mean (see [`crate::domain::Bounce::at`]).

use super::bounce_cause::{holds_words, plain_words, words_at};

/// The command a refusal answered, as far as it matters to its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpStage {
    /// The greeting, EHLO/HELO or MAIL FROM: the server has not heard of the
    /// reader yet, so what it refuses is us.
    BeforeRcpt,
    Rcpt,
    /// DATA or the end of the data: the server had taken the recipient.
    Data,
}

/// How MTAs name the command a reply answered: Postfix's "(in reply to … command)",
/// Exim's "SMTP error from remote mail server after …", Sendmail's
/// transcript (`>>> DATA`), qmail's "Connected to … but …".
const STAGE_MARKERS: &[(&str, SmtpStage)] = &[
    ("refused to talk to me", SmtpStage::BeforeRcpt),
    ("in reply to ehlo command", SmtpStage::BeforeRcpt),
    ("in reply to helo command", SmtpStage::BeforeRcpt),
    ("in reply to mail from command", SmtpStage::BeforeRcpt),
    ("in reply to rcpt to command", SmtpStage::Rcpt),
    ("in reply to data command", SmtpStage::Data),
    ("in reply to end of data command", SmtpStage::Data),
    ("server after initial connection", SmtpStage::BeforeRcpt),
    ("server after ehlo", SmtpStage::BeforeRcpt),
    ("server after helo", SmtpStage::BeforeRcpt),
    ("server after mail from", SmtpStage::BeforeRcpt),
    ("server after pipelined mail from", SmtpStage::BeforeRcpt),
    ("server after rcpt to", SmtpStage::Rcpt),
    ("server after pipelined rcpt to", SmtpStage::Rcpt),
    ("server after data", SmtpStage::Data),
    ("server after pipelined data", SmtpStage::Data),
    ("server after end of data", SmtpStage::Data),
    (">>> ehlo", SmtpStage::BeforeRcpt),
    (">>> helo", SmtpStage::BeforeRcpt),
    (">>> mail from", SmtpStage::BeforeRcpt),
    (">>> rcpt to", SmtpStage::Rcpt),
    (">>> data", SmtpStage::Data),
    ("but greeting failed", SmtpStage::BeforeRcpt),
    ("but my name was rejected", SmtpStage::BeforeRcpt),
    ("but sender was rejected", SmtpStage::BeforeRcpt),
    // m-FILTER's "-------SMTP command" section.
    ("smtp command data", SmtpStage::Data),
];

/// Words that put a refusal at RCPT whatever command a report shows last:
/// a reply to DATA asking for a recipient first (the client sent RCPT and
/// DATA together, PIPELINING, and the refusal it reports came at RCPT), and
/// Postfix's "Recipient address rejected", said only at RCPT.
const RCPT_WORDS: [&str; 6] = [
    "need rcpt",
    "rcpt first",
    "no valid recipients",
    "rcpt commands were rejected",
    "must precede data",
    "recipient address rejected",
];

impl SmtpStage {
    /// The stage `text` (a diagnostic, a bounce's notice or transcript) names
    /// first; `None` when it names none.
    pub fn named_in(text: &str) -> Option<Self> {
        let text = plain_words(text);
        let first = STAGE_MARKERS
            .iter()
            .filter_map(|&(marker, stage)| words_at(&text, marker).map(|at| (at, stage)))
            .min_by_key(|&(at, _)| at)
            .map(|(_, stage)| stage);
        first.map(|stage| stage.unless_rcpt_words(&text))
    }

    /// `Rcpt` for a refusal shown at DATA whose words belong to RCPT (see [`RCPT_WORDS`]).
    pub(super) fn unless_rcpt_words(self, text: &str) -> Self {
        let text = plain_words(text);
        match self {
            Self::Data if RCPT_WORDS.iter().any(|words| holds_words(&text, words)) => Self::Rcpt,
            stage => stage,
        }
    }

    /// The stage a notice about several recipients names for `address`: in
    /// the paragraphs that mention it (Postfix writes one per recipient).
    pub fn named_about(notice: &str, address: &str) -> Option<Self> {
        let address = address.to_ascii_lowercase();
        let notice = notice.replace("\r\n", "\n");
        let about: Vec<&str> = notice.split("\n\n").filter(|p| p.to_ascii_lowercase().contains(&address)).collect();
        Self::named_in(&about.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Bounce, BounceCause::Gone};

    #[test]
    fn stages_are_read_from_what_mtas_write() {
        let cases = [
            ("host mx said: 550 x (in reply to RCPT TO command)", Some(SmtpStage::Rcpt)),
            ("host mx said: 550 x (in reply to end of DATA command)", Some(SmtpStage::Data)),
            ("host mx refused to talk to me: 554 go away", Some(SmtpStage::BeforeRcpt)),
            ("SMTP error from remote mail server after end of data:\n 550 x", Some(SmtpStage::Data)),
            ("SMTP error from remote mail server after RCPT TO:<a@example.org>: 550 x", Some(SmtpStage::Rcpt)),
            ("... while talking to mx.example.org.:\n>>> DATA\n<<< 550 Unknown user", Some(SmtpStage::Data)),
            ("Connected to 192.0.2.1 but sender was rejected.", Some(SmtpStage::BeforeRcpt)),
            ("550 5.1.1 user unknown", None),
            ("the database after data loss", None),
            // Pipelined: the transcript shows DATA last, the 503 says the recipient was refused.
            (">>> DATA\n<<< 550 5.2.1 inactive\n<<< 503 5.5.1 RCPT first", Some(SmtpStage::Rcpt)),
            (">>> DATA\n<<< 550 unknown user\n<<< 503 Valid RCPT command must precede DATA", Some(SmtpStage::Rcpt)),
        ];
        for (text, stage) in cases {
            assert_eq!(SmtpStage::named_in(text), stage, "{text}");
        }
        // Postfix's RCPT-time words, shown by a pipelining client as a reply to DATA.
        let mfilter = "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown";
        assert_eq!(Bounce::at(Some(SmtpStage::Data), mfilter, true).cause, Gone);
        let notice = "<a@example.org>: host mx said: 550 Unknown user (in reply to end of DATA command)\n\n\
                      <b@example.org>: host mx said: 550 Unknown user (in reply to RCPT TO command)\n";
        assert_eq!(SmtpStage::named_about(notice, "A@example.org"), Some(SmtpStage::Data));
        assert_eq!(SmtpStage::named_about(notice, "b@example.org"), Some(SmtpStage::Rcpt));
        assert_eq!(SmtpStage::named_about(notice, "c@example.org"), None);
    }
}
