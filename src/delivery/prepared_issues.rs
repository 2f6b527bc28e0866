//! The issues this process has rendered and MIME-encoded, kept while they
//! are being sent so each copy only splices in its reader's links.
//!
//! Bounded: an issue leaves when the engine sees it finished, and beyond
//! [`CAPACITY`] issues the one used longest ago makes room (another
//! instance may have finished it, or it was paused). Every digest group
//! makes an issue, so a long-running `serve` with rhythms would otherwise
//! keep every issue it ever sent. An issue that leaves too early is only
//! prepared again from the database: it does not change once queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::mail::PreparedIssue;

/// Most issues kept at once: far more than are ever sending side by side.
pub const CAPACITY: usize = 64;

struct Entry {
    newsletter_id: i64,
    prepared: Arc<PreparedIssue>,
    /// When it was last used, on this cache's own counter.
    used: u64,
}

/// Prepared issues with their newsletter id, by issue id; shared by the
/// engine's senders.
#[derive(Clone)]
pub struct PreparedIssues {
    inner: Arc<Mutex<Inner>>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<i64, Entry>,
    clock: u64,
}

impl Default for PreparedIssues {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl PreparedIssues {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { inner: Arc::default(), capacity: capacity.max(1) }
    }

    /// The issue's newsletter id and prepared message, if kept.
    pub fn get(&self, issue: i64) -> Option<(i64, Arc<PreparedIssue>)> {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(&issue)?;
        entry.used = now;
        Some((entry.newsletter_id, entry.prepared.clone()))
    }

    /// Keeps a prepared issue, making room first by dropping the one used longest ago.
    pub fn insert(&self, issue: i64, newsletter_id: i64, prepared: Arc<PreparedIssue>) {
        let mut inner = self.inner.lock().expect("cache lock");
        inner.clock += 1;
        let used = inner.clock;
        if !inner.entries.contains_key(&issue) && inner.entries.len() >= self.capacity {
            let oldest = inner.entries.iter().min_by_key(|(_, e)| e.used).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(issue, Entry { newsletter_id, prepared, used });
    }

    /// Drops a finished issue.
    pub fn forget(&self, issue: i64) {
        self.inner.lock().expect("cache lock").entries.remove(&issue);
    }

    /// How many issues are kept.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.inner.lock().expect("cache lock").entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use secrecy::SecretString;
    use tokio::sync::{Notify, watch};

    use super::*;
    use crate::clock::Clock;
    use crate::config::{MailSettings, Settings, TransportKind};
    use crate::delivery::Draft;
    use crate::domain::IssueStatus;
    use crate::mail::{Mailer, RenderedIssue};
    use crate::store::MailCap;

    fn prepared(subject: &str) -> Arc<PreparedIssue> {
        let mailer = Mailer::from_settings(&MailSettings::default()).expect("default mail settings");
        Arc::new(PreparedIssue::new(RenderedIssue::new("News", "news", subject, "# Hello\n", &mailer)))
    }

    #[test]
    fn a_finished_issue_leaves() {
        let cache = PreparedIssues::default();
        cache.insert(1, 7, prepared("One"));
        cache.insert(2, 7, prepared("Two"));
        assert_eq!(cache.get(1).map(|(newsletter, _)| newsletter), Some(7));
        cache.forget(1);
        assert!(cache.get(1).is_none());
        assert_eq!(cache.kept(), 1);
        cache.forget(2);
        assert_eq!(cache.kept(), 0);
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_keeps_what_is_in_use() {
        let cache = PreparedIssues::default();
        let one = prepared("One");
        for issue in 0..(CAPACITY as i64 * 3) {
            cache.insert(issue, 1, one.clone());
            // Issue 0 is still being sent: used between every other insert.
            assert!(cache.get(0).is_some(), "the issue in use stays (after issue {issue})");
            assert!(cache.kept() <= CAPACITY, "{} issues kept", cache.kept());
        }
        assert_eq!(cache.kept(), CAPACITY);
        assert!(cache.get(CAPACITY as i64 * 3 - 1).is_some(), "the newest stays");
        assert!(cache.get(1).is_none(), "the one used longest ago left");
    }

    /// The running engine lets go of each issue it finished: a real SQLite
    /// database and the file transport, three issues one after the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_engine_lets_go_of_the_issues_it_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.database.url = SecretString::from(format!("sqlite://{}", dir.path().join("bulletin.db").display()));
        settings.mail.transport = TransportKind::File;
        settings.mail.file_dir = dir.path().join("outbox");
        let clock = Clock::system();
        let services = crate::app::services(&settings, clock.clone()).await.unwrap();
        let newsletter = services.signup.catalog().all()[0].clone();
        let readers: &[u8] = b"email\nada@example.org\nbob@example.org\n";
        let cap = MailCap { min_interval_secs: 900, per_day: 3 };
        let keys = services.signup.links().keys().clone();
        crate::signup::roster::import_csv(&services.store, &keys, &clock, &newsletter, readers, true, cap)
            .await
            .unwrap();
        let (store, composer) = (services.store.clone(), services.composer.clone());
        let (stop, stopped) = watch::channel(false);
        let engine = tokio::spawn(services.engine.run(std::sync::Arc::new(Notify::new()), stopped));
        for subject in ["One", "Two", "Three"] {
            let draft = Draft::new(newsletter.clone(), subject, "# Hello\n".to_owned()).unwrap();
            let (id, queued) = draft.queue(&store, clock.now()).await.unwrap();
            assert_eq!(queued, 2);
            let deadline = Instant::now() + Duration::from_secs(20);
            while store.issue(id).await.unwrap().map(|i| i.status) != Some(IssueStatus::Done) {
                assert!(Instant::now() < deadline, "issue {id} was not sent");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Done is stored just before the engine lets go of it.
            while composer.prepared_issues() > 0 {
                assert!(Instant::now() < deadline, "issue {id} is done and still kept");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let _ = stop.send(true);
        engine.await.unwrap();
        store.close().await;
    }
}
