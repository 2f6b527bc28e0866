//! The links Bulletin puts in mail. Built from `public_url`, never from a
//! request's Host header, so a forged Host cannot redirect a reader.

use crate::domain::{ConfirmationToken, LinkKeys, LinkPurpose, LinkRef};

#[derive(Clone)]
pub struct Links {
    public_url: String,
    keys: LinkKeys,
}

impl Links {
    pub fn new(public_url: &str, keys: LinkKeys) -> Self {
        Self { public_url: public_url.trim_end_matches('/').to_owned(), keys }
    }

    /// Where readers reach us, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn keys(&self) -> &LinkKeys {
        &self.keys
    }

    pub fn confirm_url(&self, token: &ConfirmationToken) -> String {
        format!("{}/confirm/{}", self.public_url, token.as_str())
    }

    pub fn unsubscribe_url(&self, subscriber: LinkRef, newsletter_id: i64) -> String {
        let token = self.keys.sign(LinkPurpose::Unsubscribe, subscriber, newsletter_id);
        format!("{}/unsubscribe/{token}", self.public_url)
    }

    pub fn preferences_url(&self, subscriber: LinkRef) -> String {
        let token = self.keys.sign(LinkPurpose::Preferences, subscriber, 0);
        format!("{}/preferences/{token}", self.public_url)
    }
}
