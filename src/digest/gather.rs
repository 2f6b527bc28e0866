//! Bringing in a newsletter's feeds: each fetched on its own, its new
//! stories stored once, its failure logged with its URL and retried at the
//! next fetch, never holding up the other feeds.

use tokio::task::JoinSet;

use super::Story;
use super::feed::{Fetched, Validators};
use super::run::Digests;
use crate::domain::Newsletter;
use crate::store::FeedFetch;

/// What one round of fetches brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    pub feeds: usize,
    pub new_stories: u64,
    /// The feeds that failed, with why.
    pub failed: Vec<(String, String)>,
}

impl Digests {
    /// Fetches every feed of `newsletter` at once and stores what is new.
    pub async fn gather(&self, newsletter: &Newsletter) -> Gathered {
        let Some((_, plan)) = self.plans.get(&newsletter.id) else { return Gathered::default() };
        let mut fetches = JoinSet::new();
        for url in plan.feeds.clone() {
            let this = self.clone();
            let newsletter = newsletter.clone();
            fetches.spawn(async move {
                let outcome = this.gather_one(&newsletter, &url).await;
                (url, outcome)
            });
        }
        let mut gathered = Gathered { feeds: plan.feeds.len(), ..Gathered::default() };
        while let Some(done) = fetches.join_next().await {
            match done {
                Ok((_, Ok(new))) => gathered.new_stories += new,
                Ok((url, Err(reason))) => gathered.failed.push((url.to_string(), reason)),
                Err(e) => tracing::error!("a feed fetch panicked: {e}"),
            }
        }
        gathered.failed.sort();
        gathered
    }

    /// One feed: returns how many stories were new, or why it failed (already logged).
    async fn gather_one(&self, newsletter: &Newsletter, url: &url::Url) -> Result<u64, String> {
        let now = self.clock.now();
        let state = match self.store.feed_state(newsletter.id, url.as_str()).await {
            Ok(state) => state.unwrap_or_default(),
            Err(e) => return Err(self.failed(newsletter, url, &e.to_string()).await),
        };
        let validators = Validators { etag: state.etag, last_modified: state.last_modified };
        let (stories, validators) = match self.fetcher.fetch(url, &validators).await {
            Ok(Fetched::NotModified) => {
                let _ = self.store.record_feed_fetch(newsletter.id, url.as_str(), FeedFetch::Unchanged, now).await;
                return Ok(0);
            }
            Ok(Fetched::Feed { stories, validators }) => (stories, validators),
            Err(e) => return Err(self.failed(newsletter, url, &e.to_string()).await),
        };
        let stories: Vec<Story> = stories
            .into_iter()
            .filter_map(|s| {
                let mut story = Story::new(&s.title, &s.url, s.summary.as_deref(), s.published_at).ok()?;
                story.guid = s.guid;
                Some(story)
            })
            .collect();
        let added = match self.store.add_items(newsletter.id, &stories, url.as_str(), now).await {
            Ok(added) => added,
            Err(e) => return Err(self.failed(newsletter, url, &e.to_string()).await),
        };
        let fetch =
            FeedFetch::Changed { etag: validators.etag.as_deref(), last_modified: validators.last_modified.as_deref() };
        if let Err(e) = self.store.record_feed_fetch(newsletter.id, url.as_str(), fetch, now).await {
            tracing::warn!(newsletter = %newsletter.slug, feed = %url, "could not record the fetch: {e}");
        }
        if added > 0 {
            tracing::info!(newsletter = %newsletter.slug, feed = %url, added, "new stories");
        }
        Ok(added)
    }

    async fn failed(&self, newsletter: &Newsletter, url: &url::Url, reason: &str) -> String {
        tracing::warn!(newsletter = %newsletter.slug, feed = %url, "feed not fetched, tried again at the next fetch: {reason}");
        let _ = self
            .store
            .record_feed_fetch(newsletter.id, url.as_str(), FeedFetch::Failed(reason), self.clock.now())
            .await;
        reason.to_owned()
    }
}
