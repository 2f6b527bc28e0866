//! Builds the message for a claimed delivery, at send time: the
//! confirmation token is generated here (its plain form exists only in the
//! mail), and issues are rendered and MIME-encoded once and cached, each
//! reader's links spliced in (`mail::PreparedIssue`). Each message names its
//! delivery in its Message-ID and, with `bounces.return_path`, in its VERP
//! envelope sender (see `domain::delivery_tag`), so a bounce or a complaint
//! finds its way back to it.
//!
//! Newsletters are read from the database, not from the configuration this
//! process loaded: a newsletter added after it started is found there, so
//! whichever process claims a row (`serve`, a foreground `issue send` or
//! `digest run`, another instance) builds the same message. Holding the
//! issues of a newsletter taken out of the configuration is decided where
//! the configuration is loaded (`delivery::hold_unconfigured`), not here.

use std::sync::{Arc, Mutex};

use lettre::Message;

use crate::clock::Clock;
use crate::domain::delivery_tag::message_id_key;
use crate::domain::{ConfirmationToken, EmailAddress, Newsletter, ReturnPath};
use crate::mail::{ConfirmationMail, IssueMail, MailError, Mailer, PreparedIssue, RenderedIssue};
use crate::signup::{Catalog, Links};
use crate::store::{ClaimedDelivery, DeliveryKind, NewToken, Store, StoreError};

use super::prepared_issues::PreparedIssues;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("the stored address is no longer valid: {0}")]
    Address(#[from] crate::domain::EmailError),
}

/// A message ready to go, and for a confirmation mail the token its link carries.
pub struct Composed {
    pub message: Message,
    pub token: Option<NewToken>,
    /// An issue a digest run made, for the metrics.
    pub digest: bool,
}

#[derive(Clone)]
pub struct Composer {
    pub store: Store,
    pub mailer: Mailer,
    pub links: Links,
    pub clock: Clock,
    pub confirm_ttl_hours: u32,
    /// `bounces.return_path`: each message's envelope sender is its VERP address; `None`: the From address.
    return_path: Option<ReturnPath>,
    /// The newsletters as stored, configured ones first in configuration
    /// order; read again from the database when a row names one not here.
    newsletters: Arc<Mutex<Vec<Newsletter>>>,
    /// Issues prepared for sending, until they are finished.
    issues: PreparedIssues,
}

impl Composer {
    pub fn new(
        store: Store,
        mailer: Mailer,
        links: Links,
        catalog: Arc<Catalog>,
        clock: Clock,
        confirm_ttl_hours: u32,
    ) -> Self {
        let newsletters = Arc::new(Mutex::new(catalog.all().to_vec()));
        Self {
            store,
            mailer,
            links,
            clock,
            confirm_ttl_hours,
            return_path: None,
            newsletters,
            issues: Default::default(),
        }
    }

    /// Sends with a VERP envelope sender on `return_path` (`bounces.return_path`).
    pub fn with_return_path(mut self, return_path: Option<ReturnPath>) -> Self {
        self.return_path = return_path;
        self
    }

    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }

    /// Lets go of a finished issue's prepared message.
    pub fn forget_issue(&self, issue_id: i64) {
        self.issues.forget(issue_id);
    }

    /// How many prepared issues are kept.
    #[cfg(test)]
    pub(super) fn prepared_issues(&self) -> usize {
        self.issues.kept()
    }

    /// The stored newsletters among `ids`, configured ones first in
    /// configuration order. One not known here (added to the configuration
    /// since this process started) is looked up in the database: every
    /// newsletter has a row there before anything is queued for it.
    async fn newsletters(&self, ids: &[i64]) -> Result<Vec<Newsletter>, ComposeError> {
        let known = |list: &[Newsletter]| list.iter().filter(|n| ids.contains(&n.id)).cloned().collect::<Vec<_>>();
        let found = known(&self.newsletters.lock().expect("newsletters lock"));
        if found.len() == ids.len() {
            return Ok(found);
        }
        let stored = self.store.list_newsletters().await?;
        let mut list = self.newsletters.lock().expect("newsletters lock");
        for newsletter in stored {
            match list.iter_mut().find(|n| n.id == newsletter.id) {
                Some(kept) => *kept = newsletter,
                None => list.push(newsletter),
            }
        }
        Ok(known(&list))
    }

    /// The message for `delivery`, or `None` when there is nothing to send any more.
    pub async fn compose(&self, delivery: &ClaimedDelivery) -> Result<Option<Composed>, ComposeError> {
        let to = EmailAddress::parse(&delivery.email)?;
        // Stable per delivery: a retry carries the same Message-ID and return path.
        let keys = self.links.keys();
        let message_id = self.mailer.stable_message_id(&message_id_key(keys, delivery.id, delivery.message_nonce));
        let return_path = self
            .return_path
            .as_ref()
            .map(|base| base.for_delivery(keys, delivery.id).parse::<lettre::Address>())
            .transpose()
            .map_err(|e| MailError::Setup(format!("bounces.return_path makes no address: {e}")))?;
        let return_path = return_path.as_ref();
        match delivery.kind {
            DeliveryKind::Confirmation => Ok(self.confirmation(delivery, &to, message_id, return_path).await?),
            DeliveryKind::Issue => {
                let Some(issue_id) = delivery.issue_id else { return Ok(None) };
                let Some((newsletter, prepared)) = self.prepared(issue_id).await? else { return Ok(None) };
                let issue = prepared.issue();
                let mail = IssueMail {
                    issue,
                    to: &to,
                    name: delivery.name.as_deref(),
                    unsubscribe_url: &self.links.unsubscribe_url(delivery.link_ref, newsletter),
                    preferences_url: &self.links.preferences_url(delivery.link_ref),
                    message_id,
                    return_path,
                };
                let message = prepared.build(&mail, &self.mailer)?;
                Ok(Some(Composed { message, token: None, digest: issue.digest.is_some() }))
            }
        }
    }

    /// A confirmation mail for what the reader had pending when the row was
    /// claimed; its token is stored with the hand-over, before it leaves.
    async fn confirmation(
        &self,
        delivery: &ClaimedDelivery,
        to: &EmailAddress,
        message_id: String,
        return_path: Option<&lettre::Address>,
    ) -> Result<Option<Composed>, ComposeError> {
        let names: Vec<String> = self.newsletters(&delivery.pending).await?.into_iter().map(|n| n.name).collect();
        if names.is_empty() {
            return Ok(None);
        }
        let token = ConfirmationToken::generate();
        let now = self.clock.now();
        let expires_at = now + i64::from(self.confirm_ttl_hours) * 3600;
        let confirm_url = self.links.confirm_url(&token);
        let message = ConfirmationMail {
            to,
            newsletters: &names,
            confirm_url: &confirm_url,
            ttl_hours: self.confirm_ttl_hours,
            return_path,
        }
        .build(&self.mailer, message_id)?;
        let token = NewToken { hash: token.hash(), subscriber_id: delivery.subscriber_id, created_at: now, expires_at };
        Ok(Some(Composed { message, token: Some(token), digest: false }))
    }

    /// The issue rendered and prepared once per process and kept while it
    /// is sent; issues do not change once queued.
    async fn prepared(&self, issue_id: i64) -> Result<Option<(i64, Arc<PreparedIssue>)>, ComposeError> {
        if let Some(hit) = self.issues.get(issue_id) {
            return Ok(Some(hit));
        }
        let Some(issue) = self.store.issue(issue_id).await? else { return Ok(None) };
        let Some(newsletter) = self.newsletters(&[issue.newsletter_id]).await?.pop() else { return Ok(None) };
        let rendered = match self.store.digest_of_issue(issue_id).await? {
            Some((run, stories)) => RenderedIssue::digest(
                &newsletter.name,
                newsletter.slug.as_str(),
                &issue.subject,
                crate::digest::content(&run, stories),
                &self.mailer,
            ),
            None => RenderedIssue::new(
                &newsletter.name,
                newsletter.slug.as_str(),
                &issue.subject,
                &issue.body_markdown,
                &self.mailer,
            )
            .with_preheader(issue.preheader.as_deref()),
        };
        let prepared = Arc::new(PreparedIssue::new(rendered));
        if let Some(reason) = prepared.not_spliced() {
            tracing::info!(issue_id, reason, "each copy of this issue is rendered in full");
        }
        self.issues.insert(issue_id, newsletter.id, prepared.clone());
        Ok(Some((newsletter.id, prepared)))
    }
}
