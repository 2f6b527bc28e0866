//! The state of one reader's subscription to one newsletter.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    /// Signed up, waiting for the reader to confirm by mail.
    Pending,
    /// Confirmed by double opt-in, import with consent, or the preferences page.
    Confirmed,
    /// Left, by link, one-click header or preferences.
    Unsubscribed,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Unsubscribed => "unsubscribed",
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown subscription status {0:?} (expected pending, confirmed or unsubscribed)")]
pub struct UnknownStatus(String);

impl FromStr for SubscriptionStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "confirmed" => Ok(Self::Confirmed),
            "unsubscribed" => Ok(Self::Unsubscribed),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// Where a consent or its withdrawal came from, kept in the consent record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentSource {
    /// The HTML form (`POST /subscribe`).
    Form,
    /// The JSON API (`POST /api/subscriptions`).
    Api,
    /// The confirmation link.
    ConfirmLink,
    /// The unsubscribe page's button.
    UnsubscribePage,
    /// The RFC 8058 one-click POST from a mail client.
    OneClick,
    /// The preferences page.
    Preferences,
    /// `bulletin subscribers import`.
    Import,
}

impl ConsentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Form => "form",
            Self::Api => "api",
            Self::ConfirmLink => "confirm-link",
            Self::UnsubscribePage => "unsubscribe-page",
            Self::OneClick => "one-click",
            Self::Preferences => "preferences",
            Self::Import => "import",
        }
    }
}
