//! `bulletin items …`: stories for a newsletter's digests, added by hand and listed.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;

use super::newsletter_by_slug;
use super::output::{self, Format};
use crate::app;
use crate::clock::{Clock, parse_timestamp};
use crate::config::Settings;
use crate::digest::{Story, StoryError};

#[derive(Debug, Subcommand)]
pub enum ItemsCommand {
    /// Add a story to a digest newsletter's next digest (once per URL: adding it again changes nothing).
    Add {
        /// The newsletter's slug.
        #[arg(long)]
        newsletter: String,
        /// The story's headline, as readers see it.
        #[arg(long)]
        title: String,
        /// An absolute http:// or https:// link.
        #[arg(long)]
        url: String,
        /// Plain text shown under the title.
        #[arg(long)]
        summary: Option<String>,
        /// When it was published, RFC 3339 (2026-11-28T07:00:00+02:00); default: now.
        #[arg(long, value_name = "RFC3339")]
        published_at: Option<String>,
    },
    /// List a newsletter's stories, newest first, with the digest that carried each.
    List {
        /// The newsletter's slug.
        #[arg(long)]
        newsletter: String,
        /// Only stories no digest has carried yet.
        #[arg(long)]
        pending: bool,
        /// At most this many stories.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// How to print: a table for people, CSV or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub async fn run(settings: &Settings, command: ItemsCommand) -> anyhow::Result<()> {
    match command {
        ItemsCommand::Add { newsletter, title, url, summary, published_at } => {
            let published_at = published_at
                .map(|text| {
                    parse_timestamp(&text).map_err(|e| {
                        anyhow::anyhow!("--published-at {text:?}: expected RFC 3339 such as 2026-11-28T07:00:00Z ({e})")
                    })
                })
                .transpose()?;
            let story = match Story::new(&title, &url, summary.as_deref(), published_at) {
                Ok(story) => story,
                Err(e) => {
                    let given = match e {
                        StoryError::EmptyTitle | StoryError::LongTitle => &title,
                        StoryError::Url | StoryError::LongUrl => &url,
                        StoryError::LongSummary => summary.as_deref().unwrap_or_default(),
                    };
                    bail!("--{} {:?}: {e}", e.field(), shorten(given));
                }
            };
            let services = app::services(settings, Clock::system()).await?;
            let found = newsletter_by_slug(&services, &newsletter)?;
            let added = services.digests.add_stories(&found, std::slice::from_ref(&story), "cli").await?;
            let mut out = std::io::stdout().lock();
            if added > 0 {
                writeln!(out, "Added to {}: {}", found.slug, story.title)?;
            } else {
                writeln!(out, "Already stored in {}: {} (nothing changed)", found.slug, story.url)?;
            }
            Ok(())
        }
        ItemsCommand::List { newsletter, pending, limit, format } => {
            let services = app::services(settings, Clock::system()).await?;
            let found = newsletter_by_slug(&services, &newsletter)?;
            let rows = services.store.items(found.id, pending, i64::from(limit)).await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            output::items(&mut out, format, &rows)?;
            out.flush()?;
            if rows.len() == limit as usize {
                eprintln!("Showing the newest {limit}; --limit shows more.");
            }
            Ok(())
        }
    }
}

/// A value as quoted back in an error: long ones cut, so the message stays one readable line.
fn shorten(text: &str) -> String {
    const SHOWN: usize = 80;
    if text.chars().count() <= SHOWN {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(SHOWN).collect::<String>())
    }
}
