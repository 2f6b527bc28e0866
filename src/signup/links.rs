//! The links Bulletin puts in mail. Built from `public_url`, never from a
//! request's Host header, so a forged Host cannot redirect a reader.

use crate::domain::{ConfirmationToken, LinkClaim, LinkKeys, LinkPurpose};

#[derive(Clone)]
pub struct Links {
    public_url: String,
    keys: LinkKeys,
}

impl Links {
    pub fn new(public_url: &str, keys: LinkKeys) -> Self {
        Self { public_url: public_url.trim_end_matches('/').to_owned(), keys }
    }

    pub fn keys(&self) -> &LinkKeys {
        &self.keys
    }

    pub fn confirm_url(&self, token: &ConfirmationToken) -> String {
        format!("{}/confirm/{}", self.public_url, token.as_str())
    }

    pub fn unsubscribe_url(&self, subscriber_id: i64, newsletter_id: i64) -> String {
        let token = self.keys.sign(LinkClaim { purpose: LinkPurpose::Unsubscribe, subscriber_id, newsletter_id });
        format!("{}/unsubscribe/{token}", self.public_url)
    }

    pub fn preferences_url(&self, subscriber_id: i64) -> String {
        let token = self.keys.sign(LinkClaim { purpose: LinkPurpose::Preferences, subscriber_id, newsletter_id: 0 });
        format!("{}/preferences/{token}", self.public_url)
    }
}
