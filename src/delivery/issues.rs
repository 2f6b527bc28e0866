//! Putting an issue on the ledger, once; holding the issues of a newsletter
//! taken out of the configuration.

use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::domain::Newsletter;
use crate::store::{NewIssue, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("this file was already sent to {newsletter} as issue #{issue} on {when}; pass --force to send it again")]
    AlreadySent { newsletter: String, issue: i64, when: String },
    #[error("the subject is empty")]
    EmptySubject,
    #[error("the issue is empty")]
    EmptyBody,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An issue as the editor wrote it, checked but not yet queued.
#[derive(Debug, Clone)]
pub struct Draft {
    pub newsletter: Newsletter,
    pub subject: String,
    pub markdown: String,
    pub content_hash: String,
    /// The hidden preview line mail clients show after the subject.
    pub preheader: Option<String>,
}

impl Draft {
    pub fn new(newsletter: Newsletter, subject: &str, markdown: String) -> Result<Self, QueueError> {
        let subject = subject.split(['\r', '\n']).map(str::trim).collect::<Vec<_>>().join(" ").trim().to_owned();
        if subject.is_empty() {
            return Err(QueueError::EmptySubject);
        }
        if markdown.trim().is_empty() {
            return Err(QueueError::EmptyBody);
        }
        let content_hash = crate::domain::token::hex(&Sha256::digest(markdown.as_bytes()));
        Ok(Self { newsletter, subject, markdown, content_hash, preheader: None })
    }

    /// Refuses a file already sent to this newsletter unless `force`.
    pub async fn check_not_sent(&self, store: &Store, force: bool) -> Result<(), QueueError> {
        if force {
            return Ok(());
        }
        match store.find_issue_by_content(self.newsletter.id, &self.content_hash).await? {
            Some((issue, at)) => Err(QueueError::AlreadySent {
                newsletter: self.newsletter.slug.to_string(),
                issue,
                when: crate::clock::format_timestamp(at),
            }),
            None => Ok(()),
        }
    }

    /// Creates the issue and its ledger (every confirmed reader, once). Returns (issue id, recipients).
    pub async fn queue(&self, store: &Store, now: Timestamp) -> Result<(i64, u64), QueueError> {
        self.queue_at(store, now, now).await
    }

    /// Queues the issue now for its readers as they are now; its messages are
    /// due from `send_at` on (an editor's `--at`).
    pub async fn queue_at(&self, store: &Store, now: Timestamp, send_at: Timestamp) -> Result<(i64, u64), QueueError> {
        Ok(store
            .create_issue(&NewIssue {
                newsletter_id: self.newsletter.id,
                subject: &self.subject,
                body_markdown: &self.markdown,
                content_hash: &self.content_hash,
                created_at: now,
                send_at: send_at.max(now),
                preheader: self.preheader.as_deref(),
            })
            .await?)
    }

    /// Sets the preview line: one line, trimmed; blank is none.
    pub fn with_preheader(mut self, preheader: Option<&str>) -> Self {
        self.preheader =
            preheader.map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|p| !p.is_empty());
        self
    }
}

/// An issue held because its newsletter is no longer configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldIssue {
    pub issue: i64,
    pub newsletter: String,
}

/// Why a held issue waits and what to do, as `issue status` shows it.
fn held_reason(issue: i64, newsletter: &str) -> String {
    format!(
        "newsletter \"{newsletter}\" is no longer in the configuration, so its messages wait (none was skipped): \
         put it back in config.toml and run `bulletin issue resume {issue}`"
    )
}

/// Pauses the issues still sending for newsletters not among `configured`
/// (the configuration this process loaded), with the reason `issue status`
/// shows, and logs one line each. Their rows stay queued: taking a
/// newsletter out of the configuration never drops the mail of an issue
/// already queued, and never sends it behind the operator's back either.
/// With no newsletter configured nothing is held: that is an empty
/// configuration, not a decision about each newsletter.
pub async fn hold_unconfigured(store: &Store, configured: &[Newsletter]) -> Result<Vec<HeldIssue>, StoreError> {
    let ids: Vec<i64> = configured.iter().map(|n| n.id).collect();
    let mut held = vec![];
    for (issue, newsletter) in store.sending_issues_outside(&ids).await? {
        if store.pause_issue(issue, &held_reason(issue, &newsletter)).await? {
            tracing::warn!(
                issue,
                %newsletter,
                "issue held: its newsletter is no longer in the configuration; put it back and run `bulletin issue resume`"
            );
            held.push(HeldIssue { issue, newsletter });
        }
    }
    Ok(held)
}
