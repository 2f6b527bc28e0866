//! States kept in status columns: a reader's subscription to one newsletter,
//! an issue on its way out. Stored as the lowercase names below.

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

/// Where an issue stands; its ledger rows are claimed only while it is `Sending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueStatus {
    /// Queued: its rows go out as they fall due.
    Sending,
    /// Held by an editor or after repeated policy refusals; `issue resume` continues it.
    Paused,
    /// Nothing left to send (`issue retry` can requeue what failed).
    Done,
}

impl IssueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Paused => "paused",
            Self::Done => "done",
        }
    }
}

impl fmt::Display for IssueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown issue status {0:?} (expected sending, paused or done)")]
pub struct UnknownIssueStatus(String);

impl FromStr for IssueStatus {
    type Err = UnknownIssueStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sending" => Ok(Self::Sending),
            "paused" => Ok(Self::Paused),
            "done" => Ok(Self::Done),
            other => Err(UnknownIssueStatus(other.to_owned())),
        }
    }
}

/// For `#[sqlx(try_from = "String")]`: the store reads the column straight into the enum.
impl TryFrom<String> for IssueStatus {
    type Error = UnknownIssueStatus;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
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
    /// An operator acting for one reader: `bulletin subscribers add` or `unsubscribe`.
    Operator,
    /// The reader reported our mail as spam (an ARF report, a provider's complaint webhook).
    Complaint,
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
            Self::Operator => "operator",
            Self::Complaint => "complaint",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_status_round_trips_through_its_stored_name() {
        for status in [IssueStatus::Sending, IssueStatus::Paused, IssueStatus::Done] {
            assert_eq!(status.as_str().parse::<IssueStatus>().unwrap(), status);
            assert_eq!(IssueStatus::try_from(status.to_string()).unwrap(), status);
        }
        assert!("cancelled".parse::<IssueStatus>().is_err());
        assert_eq!(format!("{:<8}|", IssueStatus::Done), "done    |", "pads in `issue list`");
    }
}
