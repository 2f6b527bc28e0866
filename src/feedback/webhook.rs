//! Provider webhooks in: a body from Amazon SES (through SNS), Postmark or
//! the generic JSON form becomes [`Report`]s, and each goes through
//! [`Feedback::apply`]. An SNS message is applied only once its signature
//! verifies ([`super::sns`]); a body that does not parse changes nothing.
//!
//! Who may post is the web layer's business (`web::webhooks`); this is what
//! a post does, whoever made it.

use serde::Serialize;

use super::sns::{SnsError, SnsKind, SnsVerifier};
use super::{Applied, Feedback, FeedbackError, Report, generic, postmark, ses};
use crate::domain::EmailAddress;

/// Longest `detail` kept: a diagnostic line, not the bounce's whole text.
const DETAIL_CHARS: usize = 300;

/// The providers Bulletin reads, by the name in `/webhooks/{provider}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Ses,
    Postmark,
    Generic,
}

impl Provider {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ses" => Some(Self::Ses),
            "postmark" => Some(Self::Postmark),
            "generic" => Some(Self::Generic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ses => "ses",
            Self::Postmark => "postmark",
            Self::Generic => "generic",
        }
    }
}

/// What a provider's body holds: reports to apply, and how many events were
/// about something else (a delivery, an open).
#[derive(Debug, Default)]
pub struct Parsed {
    pub reports: Vec<Report>,
    pub ignored: usize,
}

/// What a post did, as its answer says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub reports: usize,
    pub suppressed: usize,
    pub soft_bounces_counted: usize,
    /// Refused for the sender's reasons (blocklist, policy, DMARC, content): no reader suppressed.
    pub sender_refusals: usize,
    pub unsubscribed: usize,
    pub duplicates: usize,
    pub unmatched: usize,
    /// Events that are not bounces or complaints (deliveries, opens, ...).
    pub ignored: usize,
}

impl Summary {
    fn count(&mut self, applied: &Applied) {
        match applied {
            Applied::Suppressed => self.suppressed += 1,
            Applied::SoftBounceCounted { .. } => self.soft_bounces_counted += 1,
            Applied::SenderRefused => self.sender_refusals += 1,
            Applied::Unsubscribed { .. } => self.unsubscribed += 1,
            Applied::Duplicate => self.duplicates += 1,
            Applied::Unmatched => self.unmatched += 1,
        }
    }
}

/// The outcome of one post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Received {
    /// Reports were read and applied (maybe none: an ignored event).
    Applied(Summary),
    /// An SNS subscription was confirmed with Amazon.
    SubscriptionConfirmed,
    /// SNS says a subscription ended; nothing to do.
    UnsubscribeConfirmed,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The body is not what the provider sends: nothing was applied.
    #[error("{0}")]
    Malformed(String),
    /// An SNS message that is not provably from Amazon, or from another topic.
    #[error("{0}")]
    Refused(SnsError),
    /// Amazon could not be reached to check or confirm: worth a retry.
    #[error("{0}")]
    Unavailable(SnsError),
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
}

impl From<SnsError> for WebhookError {
    fn from(e: SnsError) -> Self {
        match e {
            SnsError::Malformed(m) => Self::Malformed(m),
            SnsError::Unavailable(_) => Self::Unavailable(e),
            _ => Self::Refused(e),
        }
    }
}

/// Reads provider posts and applies what they report.
#[derive(Clone)]
pub struct WebhookReceiver {
    feedback: Feedback,
    sns: SnsVerifier,
}

impl WebhookReceiver {
    pub fn new(feedback: Feedback, sns: SnsVerifier) -> Self {
        Self { feedback, sns }
    }

    /// Reads `body` as `provider` sends it and applies every report in it,
    /// in order. All of it is parsed (and verified) before the first is applied.
    #[tracing::instrument(skip_all, fields(provider = provider.name()))]
    pub async fn receive(&self, provider: Provider, body: &[u8]) -> Result<Received, WebhookError> {
        let parsed = match provider {
            Provider::Ses => {
                let message = self.sns.verify(body).await?;
                match message.kind()? {
                    SnsKind::Notification => {
                        ses::parse(&message.message, &message.message_id).map_err(WebhookError::Malformed)?
                    }
                    SnsKind::SubscriptionConfirmation => {
                        self.sns.confirm(&message).await?;
                        tracing::info!(topic = %message.topic_arn, "SNS subscription confirmed");
                        return Ok(Received::SubscriptionConfirmed);
                    }
                    SnsKind::UnsubscribeConfirmation => {
                        tracing::info!(topic = %message.topic_arn, "SNS says the subscription ended");
                        return Ok(Received::UnsubscribeConfirmed);
                    }
                }
            }
            Provider::Postmark => postmark::parse(body).map_err(WebhookError::Malformed)?,
            Provider::Generic => generic::parse(body).map_err(WebhookError::Malformed)?,
        };
        let mut summary = Summary { reports: parsed.reports.len(), ignored: parsed.ignored, ..Summary::default() };
        for report in &parsed.reports {
            let applied = self.feedback.apply(report).await?;
            summary.count(&applied);
        }
        tracing::info!(
            reports = summary.reports,
            suppressed = summary.suppressed,
            soft_bounces_counted = summary.soft_bounces_counted,
            sender_refusals = summary.sender_refusals,
            unsubscribed = summary.unsubscribed,
            duplicates = summary.duplicates,
            unmatched = summary.unmatched,
            ignored = summary.ignored,
            "webhook applied"
        );
        Ok(Received::Applied(summary))
    }
}

/// A provider's address, or `None` when it is not one Bulletin could have sent to
/// (the report may still match by return path or Message-ID).
pub(super) fn recipient(address: &str) -> Option<EmailAddress> {
    let address = address.trim();
    // "Jane <jane@example.com>": the address inside the angle brackets.
    let address = match (address.rfind('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => &address[open + 1..close],
        _ => address,
    };
    EmailAddress::parse(address).ok()
}

/// A Message-ID with its angle brackets, whether the provider kept them or not.
pub(super) fn message_id(text: &str) -> Option<String> {
    let id = text.trim().trim_start_matches('<').trim_end_matches('>').trim();
    let valid = id.contains('@') && !id.contains(|c: char| c.is_whitespace() || c == '<' || c == '>');
    valid.then(|| format!("<{id}>"))
}

/// A provider's diagnostic as one short line with no address in it: every
/// address (with its angle brackets) becomes `<address>`.
pub(super) fn detail(text: &str) -> String {
    let is_address_char = |c: char| c.is_alphanumeric() || "._%+-=!#$&'*/?^`{|}~".contains(c);
    let chars: Vec<char> = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < chars.len() {
        if chars[i] != '@' {
            i += 1;
            continue;
        }
        // Widen from the '@' to the whole address, then to enclosing brackets.
        let mut start = i;
        while start > copied && is_address_char(chars[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < chars.len() && is_address_char(chars[end]) {
            end += 1;
        }
        while end > i + 1 && chars[end - 1] == '.' {
            end -= 1;
        }
        if start > copied && chars[start - 1] == '<' && chars.get(end) == Some(&'>') {
            start -= 1;
            end += 1;
        }
        out.extend(&chars[copied..start]);
        out.push_str("<address>");
        (copied, i) = (end, end);
    }
    out.extend(&chars[copied..]);
    finish(&out)
}

fn finish(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > DETAIL_CHARS {
        let cut: String = one_line.chars().take(DETAIL_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_lose_their_addresses() {
        for (text, expected) in [
            ("smtp; 550 5.1.1 <jane@example.com>... User unknown", "smtp; 550 5.1.1 <address>... User unknown"),
            ("The account john.doe+x@example.com. does not exist", "The account <address>. does not exist"),
            ("a@b.example c@d.example", "<address> <address>"),
            ("550 5.7.1 rejected\r\n  by policy", "550 5.7.1 rejected by policy"),
            ("no address here", "no address here"),
            ("stray @ sign", "stray <address> sign"),
        ] {
            assert_eq!(detail(text), expected, "{text}");
        }
        assert_eq!(detail(&"x".repeat(1000)).chars().count(), DETAIL_CHARS);
    }

    #[test]
    fn message_ids_get_their_brackets() {
        assert_eq!(message_id("abc@host").as_deref(), Some("<abc@host>"));
        assert_eq!(message_id(" <abc@host> ").as_deref(), Some("<abc@host>"));
        assert_eq!(message_id("<>"), None);
        assert_eq!(message_id("no at sign"), None);
        assert_eq!(message_id("a b@host"), None);
    }

    #[test]
    fn recipients_are_read_with_or_without_a_name() {
        assert_eq!(recipient("Jane Doe <jane@example.com>").unwrap().as_str(), "jane@example.com");
        assert_eq!(recipient(" jane@example.com ").unwrap().as_str(), "jane@example.com");
        assert!(recipient("not an address").is_none());
    }

    #[test]
    fn provider_names() {
        for p in [Provider::Ses, Provider::Postmark, Provider::Generic] {
            assert_eq!(Provider::from_name(p.name()), Some(p));
        }
        assert_eq!(Provider::from_name("sendgrid"), None);
        assert_eq!(Provider::from_name("SES"), None);
    }
}
