//! Sends what the outbox holds: for now the double opt-in mail.
//!
//! A worker claims due rows with a lease, builds each mail at send time
//! (the confirmation token is generated here, so its plain form only ever
//! exists in the mail), sends it and records the result right after the
//! reply. Transient failures retry with jittered exponential backoff up to
//! `mail.max_attempts`; permanent ones fail at once.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::domain::{ConfirmationToken, EmailAddress};
use crate::mail::{ConfirmationMail, MailError, Mailer};
use crate::signup::{Catalog, Links};
use crate::store::{ClaimedMail, MailOutcome, Store, StoreError};

/// How long a claim lives: a worker that dies mid-send frees its rows after this.
const LEASE_SECS: i64 = 60;
const BATCH: i64 = 32;
/// How often an idle worker looks for due rows (another instance may have queued some).
const POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_secs: u64,
}

impl RetryPolicy {
    /// Full-jitter exponential backoff: up to base·2^(attempt-1), capped at an hour.
    pub fn delay_secs(&self, attempt: i64) -> i64 {
        let exp = (attempt - 1).clamp(0, 16) as u32;
        let ceiling = self.base_secs.saturating_mul(1 << exp).clamp(1, 3600);
        rand::rng().random_range(ceiling / 2..=ceiling) as i64
    }
}

#[derive(Clone)]
pub struct ConfirmationSender {
    pub store: Store,
    pub mailer: Mailer,
    pub links: Links,
    pub catalog: Arc<Catalog>,
    pub clock: Clock,
    pub confirm_ttl_hours: u32,
    pub retry: RetryPolicy,
}

impl ConfirmationSender {
    /// Runs until `shutdown` turns true, waking on `ready` or every second.
    pub async fn run(self, ready: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let worked = match self.send_due().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: claiming failed");
                    false
                }
            };
            if worked {
                continue;
            }
            tokio::select! {
                _ = ready.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::debug!("outbox worker stopped");
    }

    /// Claims and sends one batch of due mail; returns how many rows it handled.
    pub async fn send_due(&self) -> Result<usize, StoreError> {
        let claimed = self
            .store
            .claim_outbox(self.clock.now(), LEASE_SECS, BATCH)
            .await?;
        for item in &claimed {
            let outcome = self.attempt(item).await;
            if let MailOutcome::Retry { error, .. } | MailOutcome::Failed { error } = &outcome {
                tracing::warn!(outbox_id = item.id, attempt = item.attempts, %error, "confirmation mail not sent");
            }
            self.store
                .finish_outbox(item.id, &outcome, self.clock.now())
                .await?;
        }
        Ok(claimed.len())
    }

    async fn attempt(&self, item: &ClaimedMail) -> MailOutcome {
        match self.deliver(item).await {
            Ok(outcome) => outcome,
            Err(DeliverError::Mail(MailError::Permanent(error))) => MailOutcome::Failed { error },
            Err(e) if item.attempts >= i64::from(self.retry.max_attempts) => MailOutcome::Failed {
                error: e.to_string(),
            },
            Err(e) => MailOutcome::Retry {
                at: self.clock.now() + self.retry.delay_secs(item.attempts),
                error: e.to_string(),
            },
        }
    }

    async fn deliver(&self, item: &ClaimedMail) -> Result<MailOutcome, DeliverError> {
        // Read at send time: an unsubscribe or erasure since the signup wins.
        let Some(stored) = self.store.subscriber_email(item.subscriber_id).await? else {
            return Ok(MailOutcome::Skipped);
        };
        let pending: Vec<i64> = self
            .store
            .subscriptions_of(item.subscriber_id)
            .await?
            .into_iter()
            .filter(|s| s.status == crate::domain::SubscriptionStatus::Pending)
            .map(|s| s.newsletter_id)
            .collect();
        let names = self.catalog.names(&pending);
        if names.is_empty() {
            return Ok(MailOutcome::Skipped);
        }
        let to = EmailAddress::parse(&stored)
            .map_err(|e| DeliverError::Mail(MailError::Permanent(e.to_string())))?;
        let token = ConfirmationToken::generate();
        let now = self.clock.now();
        let expires = now + i64::from(self.confirm_ttl_hours) * 3600;
        self.store
            .insert_confirmation_token(&token.hash(), item.subscriber_id, now, expires)
            .await?;
        let confirm_url = self.links.confirm_url(&token);
        let message = ConfirmationMail {
            to: &to,
            newsletters: &names,
            confirm_url: &confirm_url,
            ttl_hours: self.confirm_ttl_hours,
        }
        .build(&self.mailer)?;
        self.mailer.send(message).await?;
        tracing::info!(email = %to.masked(), "confirmation mail sent");
        Ok(MailOutcome::Sent)
    }
}

#[derive(Debug, thiserror::Error)]
enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
}
