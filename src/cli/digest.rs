//! `bulletin digest …`: look at, send and list a newsletter's digests.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::issue::{TEST_COPY, confirm, deliver_in_foreground};
use super::newsletter_by_slug;
use crate::app::{self, Services};
use crate::clock::{Clock, format_timestamp};
use crate::config::Settings;
use crate::digest::{Gathered, Trigger, Upcoming};
use crate::domain::Newsletter;
use crate::mail::RenderedIssue;
use crate::store::{DigestOutcome, DigestRunRow, DigestRunStatus};

#[derive(Debug, Subcommand)]
pub enum DigestCommand {
    /// Show what the next digest would hold; fetches the feeds first, sends and marks nothing.
    Preview {
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long, value_name = "SLUG")]
        newsletter: String,
        /// Also write the digest as its readers would see it (HTML) to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Send the current period's digest now, once; fetches the feeds first.
    ///
    /// Exits 1 without sending when the period's digest already went (or was skipped).
    Run {
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long, value_name = "SLUG")]
        newsletter: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Only queue it; `bulletin serve` or `bulletin worker` sends it.
        #[arg(long)]
        detach: bool,
    },
    /// Past runs, newest first: period, stories, recipients, the issue each became, or why it was skipped.
    List {
        /// Only this newsletter's (its slug); all newsletters without it.
        #[arg(long, value_name = "SLUG")]
        newsletter: Option<String>,
        /// How many runs to show.
        #[arg(long, default_value_t = 30)]
        limit: i64,
    },
}

pub async fn run(settings: &Settings, command: DigestCommand) -> anyhow::Result<()> {
    let services = app::services(settings, Clock::system()).await?;
    match command {
        DigestCommand::Preview { newsletter, html } => {
            let newsletter = newsletter_by_slug(&services, &newsletter)?;
            services.digests.plan(&newsletter)?;
            report_gathered(&services.digests.gather(&newsletter).await);
            preview(&services, &newsletter, html).await
        }
        DigestCommand::Run { newsletter, yes, detach } => {
            let newsletter = newsletter_by_slug(&services, &newsletter)?;
            services.digests.plan(&newsletter)?;
            report_gathered(&services.digests.gather(&newsletter).await);
            let preview = services.digests.preview(&newsletter, Upcoming::Current).await?;
            if let Some(run) = &preview.already {
                bail!("{}", already(run));
            }
            eprintln!("Digest:     {} ({} stories)", preview.subject, preview.stories.len());
            eprintln!("Recipients: {} confirmed subscriber(s)", preview.recipients);
            if !yes && !preview.stories.is_empty() {
                confirm(&format!("Send to {} subscriber(s)?", preview.recipients), "send", "not sent")?;
            }
            let run = match services.digests.run(&newsletter, Trigger::Editor).await? {
                DigestOutcome::AlreadyRan(run) => bail!("{}", already(&run)),
                DigestOutcome::Made(run) => run,
            };
            let Some(id) = run.issue_id else {
                eprintln!(
                    "Nothing new since the last digest: nothing sent (skip_if_empty); recorded as skipped for {}.",
                    run.period_label
                );
                return Ok(());
            };
            eprintln!("Queued digest issue #{id}: {} stories for {} subscriber(s).", run.items, run.recipients);
            if detach {
                eprintln!(
                    "`bulletin serve` or `bulletin worker` will send it; watch with `bulletin issue status {id}`."
                );
                return Ok(());
            }
            deliver_in_foreground(services, id).await
        }
        DigestCommand::List { newsletter, limit } => {
            let filter = match newsletter {
                Some(slug) => Some(newsletter_by_slug(&services, &slug)?.id),
                None => None,
            };
            list(&services, filter, limit).await
        }
    }
}

/// What a period's earlier run did, for a second `digest run`.
fn already(run: &DigestRunRow) -> String {
    match (run.status, run.issue_id) {
        (DigestRunStatus::Issued, Some(issue)) => format!(
            "the digest for {} already went out as issue #{issue} at {} ({} stories); nothing sent. `bulletin issue status {issue}` shows its delivery",
            run.period_label,
            format_timestamp(run.created_at),
            run.items
        ),
        _ => format!(
            "the digest for {} was already skipped at {} ({}); nothing sent. The next period starts a new digest",
            run.period_label,
            format_timestamp(run.created_at),
            run.reason.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

fn report_gathered(g: &Gathered) {
    if g.feeds == 0 {
        return;
    }
    eprintln!("Feeds:      {} of {} fetched, new stories: {}", g.feeds - g.failed.len(), g.feeds, g.new_stories);
    for (url, reason) in &g.failed {
        eprintln!("            not fetched: {url}: {reason}");
    }
}

async fn preview(services: &Services, newsletter: &Newsletter, html: Option<PathBuf>) -> anyhow::Result<()> {
    let p = services.digests.preview(newsletter, Upcoming::Next).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Newsletter: {} ({})", newsletter.name, newsletter.slug)?;
    match p.due_at {
        Some(at) => writeln!(out, "Period:     {} (sent by the schedule at {})", p.period.label, format_timestamp(at))?,
        None => writeln!(out, "Period:     {} (from {})", p.period.label, format_timestamp(p.period.start))?,
    }
    writeln!(out, "Subject:    {}", p.subject)?;
    writeln!(out, "Recipients: {} confirmed subscriber(s)", p.recipients)?;
    writeln!(out, "Stories:    {}", p.stories.len())?;
    for s in &p.stories {
        writeln!(out, "  {}  {}  <{}>", format_timestamp(s.published_at), s.title, s.url)?;
    }
    if let Some(run) = &p.already {
        writeln!(out, "Already done for this period: {}.", already(run).split("; ").next().unwrap_or_default())?;
    } else if p.stories.is_empty() {
        writeln!(out, "Nothing new so far: without new stories nothing is sent (skip_if_empty).")?;
    } else if p.due_at.is_some() {
        writeln!(out, "Stories that arrive before then are added (newest first, up to max_items).")?;
    }
    if let Some(path) = html {
        let stories = p
            .stories
            .iter()
            .map(|s| crate::mail::DigestStory {
                title: s.title.clone(),
                url: s.url.clone(),
                summary: s.summary.clone(),
            })
            .collect();
        let content = crate::mail::DigestContent { date: p.period.label.clone(), stories };
        let issue = RenderedIssue::digest(
            &newsletter.name,
            newsletter.slug.as_str(),
            &p.subject,
            content,
            services.composer.mailer(),
        );
        let links = services.signup.links();
        let (_, page) =
            issue.render(&links.unsubscribe_url(TEST_COPY, newsletter.id), &links.preferences_url(TEST_COPY))?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "HTML written to {}.", path.display())?;
    }
    Ok(())
}

async fn list(services: &Services, newsletter: Option<i64>, limit: i64) -> anyhow::Result<()> {
    let runs = services.store.digest_runs(newsletter, limit).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20}  {:<20}  {:<20}  {:<28}  {:<7}  {:>7}  {:>10}  {:<6}  reason",
        "period", "slot (UTC)", "newsletter", "rhythm and zone", "status", "stories", "recipients", "issue"
    )?;
    for run in runs {
        let slug = services.signup.catalog().by_id(run.newsletter_id).map(|n| n.slug.to_string());
        let status = match run.status {
            DigestRunStatus::Issued => "issued",
            DigestRunStatus::Skipped => "skipped",
        };
        writeln!(
            out,
            "{:<20}  {:<20}  {:<20}  {:<28}  {:<7}  {:>7}  {:>10}  {:<6}  {}",
            run.period_label,
            format_timestamp(run.period_start),
            slug.unwrap_or_default(),
            run.stream,
            status,
            run.items,
            run.recipients,
            run.issue_id.map(|i| format!("#{i}")).unwrap_or_default(),
            run.reason.unwrap_or_default()
        )?;
    }
    Ok(())
}
