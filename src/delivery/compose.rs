//! Builds the message for a claimed delivery, at send time: the
//! confirmation token is generated here (its plain form exists only in the
//! mail), and issues are rendered and MIME-encoded once and cached, each
//! reader's links spliced in (`mail::PreparedIssue`). Each message names its
//! delivery in its Message-ID and, with `bounces.return_path`, in its VERP
//! envelope sender (see `domain::delivery_tag`), so a bounce or a complaint
//! finds its way back to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lettre::Message;

use crate::clock::Clock;
use crate::domain::delivery_tag::message_id_key;
use crate::domain::{ConfirmationToken, EmailAddress, ReturnPath};
use crate::mail::{ConfirmationMail, IssueMail, MailError, Mailer, PreparedIssue, RenderedIssue};
use crate::signup::{Catalog, Links};
use crate::store::{ClaimedDelivery, DeliveryKind, NewToken, Store, StoreError};

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

/// Prepared issues with their newsletter id, by issue id.
type IssueCache = HashMap<i64, (i64, Arc<PreparedIssue>)>;

#[derive(Clone)]
pub struct Composer {
    pub store: Store,
    pub mailer: Mailer,
    pub links: Links,
    pub catalog: Arc<Catalog>,
    pub clock: Clock,
    pub confirm_ttl_hours: u32,
    /// `bounces.return_path`: each message's envelope sender is its VERP address; `None`: the From address.
    return_path: Option<ReturnPath>,
    /// Prepared issues with their newsletter id, by issue id.
    issues: Arc<Mutex<IssueCache>>,
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
        Self { store, mailer, links, catalog, clock, confirm_ttl_hours, return_path: None, issues: Arc::default() }
    }

    /// Sends with a VERP envelope sender on `return_path` (`bounces.return_path`).
    pub fn with_return_path(mut self, return_path: Option<ReturnPath>) -> Self {
        self.return_path = return_path;
        self
    }

    pub fn mailer(&self) -> &Mailer {
        &self.mailer
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
            DeliveryKind::Confirmation => Ok(self.confirmation(delivery, &to, message_id, return_path)?),
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
    fn confirmation(
        &self,
        delivery: &ClaimedDelivery,
        to: &EmailAddress,
        message_id: String,
        return_path: Option<&lettre::Address>,
    ) -> Result<Option<Composed>, ComposeError> {
        let names = self.catalog.names(&delivery.pending);
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

    /// The issue rendered and prepared once per process and kept; issues do not change once sent.
    async fn prepared(&self, issue_id: i64) -> Result<Option<(i64, Arc<PreparedIssue>)>, ComposeError> {
        if let Some(hit) = self.issues.lock().expect("cache lock").get(&issue_id) {
            return Ok(Some(hit.clone()));
        }
        let Some(issue) = self.store.issue(issue_id).await? else { return Ok(None) };
        let Some(newsletter) = self.catalog.by_id(issue.newsletter_id) else { return Ok(None) };
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
        self.issues.lock().expect("cache lock").insert(issue_id, (newsletter.id, prepared.clone()));
        Ok(Some((newsletter.id, prepared)))
    }
}
