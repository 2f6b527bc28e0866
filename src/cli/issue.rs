//! `bulletin issue …`: the editor's commands.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};

use super::progress::{Progress, Tally, cap_line, sleep_tick, waiting_line};
use super::warnings::Gathering;
use super::{Unfinished, newsletter_by_slug, shutdown_signal};
use crate::app::{self, Services};
use crate::clock::{Clock, format_timestamp};
use crate::config::Settings;
use crate::delivery::Draft;
use crate::domain::{EmailAddress, IssueStatus, LinkRef};
use crate::mail::{IssueMail, Outbound, RenderedIssue};

#[derive(Debug, Subcommand)]
pub enum IssueCommand {
    /// Send a Markdown file to every confirmed subscriber of a newsletter.
    Send {
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long, value_name = "SLUG")]
        newsletter: String,
        /// The subject line.
        #[arg(long)]
        subject: String,
        /// The issue, in Markdown; `-` reads it from standard input (then --yes is needed).
        file: PathBuf,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Only queue it; `bulletin serve` or `bulletin worker` sends it.
        #[arg(long)]
        detach: bool,
        /// Render and count the recipients, send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Send one copy to this address only.
        #[arg(long, value_name = "EMAIL")]
        test_to: Option<String>,
        /// Send even if this file was already sent to this newsletter.
        #[arg(long)]
        force: bool,
        /// Queue the issue even when the newsletter has no confirmed subscriber.
        #[arg(long)]
        allow_empty: bool,
        /// Send it later, at this time (RFC 3339, e.g. 2026-12-01T07:00:00+02:00):
        /// queued now for the readers of now, sent then by `serve` or `worker`.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// The preview line mail clients show after the subject (hidden in the mail itself).
        #[arg(long, value_name = "TEXT")]
        preheader: Option<String>,
    },
    /// Show an issue as a reader gets it: the text part (and the HTML part
    /// with --html), with a sample reader's links. Sends nothing.
    Preview {
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long)]
        newsletter: String,
        /// The subject line.
        #[arg(long, default_value = "Preview")]
        subject: String,
        /// The issue, in Markdown; `-` reads it from standard input.
        file: PathBuf,
        /// Also write the HTML part to this file, to open in a browser.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Print only the text part, without the headers.
        #[arg(long)]
        text: bool,
        /// The preview line mail clients show after the subject (hidden in the mail itself).
        #[arg(long, value_name = "TEXT")]
        preheader: Option<String>,
    },
    /// List issues, newest first.
    List {
        /// Only this newsletter's (its slug); all newsletters without it.
        #[arg(long, value_name = "SLUG")]
        newsletter: Option<String>,
    },
    /// Show an issue's delivery counts and failures with their SMTP replies.
    Status {
        /// The issue's number, as in `bulletin issue list`.
        id: i64,
    },
    /// Continue a paused or interrupted issue (in the foreground unless --detach).
    Resume {
        /// The issue's number, as in `bulletin issue list`.
        id: i64,
        /// Only mark it sending again; `bulletin serve` or `bulletin worker` sends it.
        #[arg(long)]
        detach: bool,
    },
    /// Pause an issue: nothing more is handed to SMTP until it is resumed.
    Pause {
        /// The issue's number, as in `bulletin issue list`.
        id: i64,
    },
    /// Requeue an issue's failed and/or ambiguous messages, once the cause is fixed.
    ///
    /// The messages go out again with fresh attempts, sent by `bulletin serve`
    /// or `bulletin worker` (or `bulletin issue resume ID` in the foreground).
    Retry {
        /// The issue's number, as in `bulletin issue list`.
        id: i64,
        /// Requeue messages refused for good (bounced addresses stay suppressed).
        #[arg(long)]
        failed: bool,
        /// Requeue messages that may have been delivered: their readers may get a second copy.
        #[arg(long)]
        ambiguous: bool,
    },
}

pub async fn run(settings: &Settings, command: IssueCommand) -> anyhow::Result<()> {
    let services = app::services(settings, Clock::system()).await?;
    match command {
        IssueCommand::Send {
            newsletter,
            subject,
            file,
            yes,
            detach,
            dry_run,
            test_to,
            force,
            allow_empty,
            at,
            preheader,
        } => {
            let now = Clock::system().now();
            let send_at = at.as_deref().map(|at| send_time(at, now)).transpose()?;
            let newsletter = newsletter_by_slug(&services, &newsletter)?;
            let markdown = read_issue(&file)?;
            let draft = Draft::new(newsletter, &subject, markdown)?.with_preheader(preheader.as_deref());
            warn_raw_html(&draft.markdown);
            if let Some(to) = test_to.filter(|_| !dry_run) {
                return send_test(settings, &services, &draft, &to).await;
            }
            let recipients = services.store.audience_size(draft.newsletter.id).await?;
            eprintln!("Newsletter: {} ({})", draft.newsletter.name, draft.newsletter.slug);
            eprintln!("Subject:    {}", draft.subject);
            eprintln!("Recipients: {recipients} confirmed subscriber(s)");
            let empty = recipients == 0 && !allow_empty;
            if dry_run {
                crate::mail::markdown_to_html(&draft.markdown);
                if let Err(e) = draft.check_not_sent(&services.store, force).await {
                    eprintln!("Warning: {e}");
                }
                if empty {
                    eprintln!("Warning: {}", no_recipients(settings, &draft));
                }
                eprintln!("Dry run: rendered, nothing queued, no mail sent.");
                return Ok(());
            }
            if empty {
                bail!("{}", no_recipients(settings, &draft));
            }
            draft.check_not_sent(&services.store, force).await?;
            if !yes {
                confirm(&format!("Send to {recipients} subscriber(s)?"), "send", "not sent")?;
            }
            let started = std::time::Instant::now();
            let (id, queued) = draft.queue_at(&services.store, now, send_at.unwrap_or(now)).await?;
            eprintln!("Queued issue #{id} for {queued} subscriber(s) in {:.2} s.", started.elapsed().as_secs_f64());
            if let Some(at) = send_at {
                eprintln!(
                    "It goes out at {} (`bulletin serve` or `bulletin worker` sends it); `bulletin issue pause {id}` holds it.",
                    format_timestamp(at)
                );
                return Ok(());
            }
            if detach {
                eprintln!(
                    "`bulletin serve` or `bulletin worker` will send it; watch with `bulletin issue status {id}`."
                );
                return Ok(());
            }
            deliver_in_foreground(services, id).await
        }
        IssueCommand::Preview { newsletter, subject, file, html, text, preheader } => {
            let newsletter = newsletter_by_slug(&services, &newsletter)?;
            let draft = Draft::new(newsletter, &subject, read_issue(&file)?)?.with_preheader(preheader.as_deref());
            let mailer = services.composer.mailer();
            let issue = RenderedIssue::new(
                &draft.newsletter.name,
                draft.newsletter.slug.as_str(),
                &draft.subject,
                &draft.markdown,
                mailer,
            )
            .with_preheader(draft.preheader.as_deref());
            let links = services.signup.links();
            let unsubscribe_url = links.unsubscribe_url(TEST_COPY, draft.newsletter.id);
            let (text_part, html_part) = issue.render(&unsubscribe_url, &links.preferences_url(TEST_COPY))?;
            warn_raw_html(&draft.markdown);
            let mut out = std::io::stdout().lock();
            if text {
                writeln!(out, "{text_part}")?;
                return Ok(());
            }
            writeln!(out, "From: {}", mailer.from())?;
            writeln!(out, "To: a sample reader")?;
            writeln!(out, "Subject: {}", issue.subject)?;
            if !issue.preheader.is_empty() {
                writeln!(out, "Preheader: {}", issue.preheader)?;
            }
            writeln!(out, "List-Id: {}", issue.list_id)?;
            writeln!(out, "List-Unsubscribe: <{unsubscribe_url}>")?;
            writeln!(out, "\n{text_part}")?;
            if let Some(path) = html {
                std::fs::write(&path, html_part).with_context(|| format!("could not write {}", path.display()))?;
                eprintln!("HTML part written to {}.", path.display());
            }
            Ok(())
        }
        IssueCommand::List { newsletter } => {
            // Archived newsletters (taken out of the configuration) keep their issues.
            let all = services.store.list_newsletters().await?;
            let filter = match newsletter {
                Some(slug) => match all.iter().find(|n| n.slug.as_str() == slug) {
                    Some(found) => Some(found.id),
                    None => Some(newsletter_by_slug(&services, &slug)?.id),
                },
                None => None,
            };
            let issues = services.store.issues(filter).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>5}  {:<20}  {:<8}  {:<20}  {:>8}  subject",
                "id", "newsletter", "status", "queued", "took"
            )?;
            for issue in issues {
                let slug = all.iter().find(|n| n.id == issue.newsletter_id).map(|n| n.slug.to_string());
                let took = issue.completed_at.map(|done| duration((done - issue.created_at).max(0)));
                writeln!(
                    out,
                    "{:>5}  {:<20}  {:<8}  {:<20}  {:>8}  {}",
                    issue.id,
                    slug.unwrap_or_default(),
                    issue.status,
                    format_timestamp(issue.created_at),
                    took.as_deref().unwrap_or("-"),
                    issue.subject
                )?;
            }
            Ok(())
        }
        IssueCommand::Status { id } => {
            let Some(issue) = services.store.issue(id).await? else { bail!("there is no issue #{id}") };
            let tally = Tally::of(&services.store, id).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "Issue #{id}: {}", issue.subject)?;
            let all = services.store.list_newsletters().await?;
            if let Some(newsletter) = all.iter().find(|n| n.id == issue.newsletter_id) {
                let archived = services.signup.catalog().by_id(issue.newsletter_id).is_none();
                let state = if archived { ", archived" } else { "" };
                writeln!(out, "Newsletter: {} ({}{state})", newsletter.name, newsletter.slug)?;
            }
            writeln!(out, "Status: {}", issue.status)?;
            writeln!(out, "Queued: {}", format_timestamp(issue.created_at))?;
            if issue.status == IssueStatus::Sending
                && let Some(due) = services.store.next_due(id).await?.filter(|due| *due > Clock::system().now())
            {
                writeln!(out, "Next message due: {}", format_timestamp(due))?;
            }
            if let Some(done) = issue.completed_at {
                let took = (done - issue.created_at).max(0);
                let rate = if took > 0 {
                    format!(", {:.0} messages/s", tally.sent as f64 / took as f64)
                } else {
                    String::new()
                };
                writeln!(out, "Done: {} (took {}{rate})", format_timestamp(done), duration(took))?;
            }
            if issue.status == IssueStatus::Sending
                && let Some(wait) = services.store.mail_server_wait(Clock::system().now()).await?
            {
                writeln!(out, "Sending is {}; it continues when the server answers.", waiting_line(&wait))?;
            }
            if issue.status == IssueStatus::Sending
                && let Some(cap) = services.store.relay_cap(Clock::system().now()).await?
            {
                writeln!(out, "Connections: {}.", cap_line(&cap))?;
            }
            if let Some(reason) = &issue.paused_reason {
                writeln!(out, "Paused: {reason}")?;
            }
            let counts = services.store.delivery_counts(Some(id)).await?;
            for (status, n) in &counts {
                writeln!(out, "  {status:<10} {n}")?;
            }
            writeln!(out, "  {:<10} {}", "total", tally.total)?;
            let delivered = counts.iter().find(|(status, _)| status == "sent").map_or(0, |(_, n)| *n);
            let reported = services.store.feedback_counts(id).await?;
            writeln!(
                out,
                "Bounces reported after sending: {} hard, {} soft",
                reported.hard_bounces, reported.soft_bounces
            )?;
            if reported.sender_refusals > 0 {
                writeln!(
                    out,
                    "Refused for the sender's reasons after sending: {} (not the readers' fault, nobody suppressed: \
                     check the sending IP's reputation and blocklists, SPF, DKIM, DMARC and the content)",
                    reported.sender_refusals
                )?;
            }
            let by_domain = services.store.refusals_by_domain(id, super::refusals::TOP).await?;
            if !by_domain.is_empty() {
                writeln!(
                    out,
                    "Refused for the sender's reasons by receiving domain (at sending and reported after; \
                     nobody suppressed):"
                )?;
                super::refusals::print(&mut out, &by_domain, &settings.bounces.refusal_warning())?;
            }
            writeln!(out, "Spam complaints: {}", complaint_rate(reported.complaints, delivered))?;
            let failures = services.store.issue_failures(id, 50).await?;
            if !failures.is_empty() {
                writeln!(out, "Not delivered (first {}):", failures.len())?;
                for (email, status, reply) in failures {
                    writeln!(out, "  {email}  {status}  {}", reply.unwrap_or_default())?;
                }
            }
            Ok(())
        }
        IssueCommand::Resume { id, detach } => {
            let Some(issue) = services.store.issue(id).await? else { bail!("there is no issue #{id}") };
            if issue.status != IssueStatus::Done {
                ensure_configured(&services, id, issue.newsletter_id).await?;
            }
            match issue.status {
                IssueStatus::Paused => {
                    services.store.resume_issue(id).await?;
                    eprintln!("Issue #{id} resumed.");
                }
                IssueStatus::Done => {
                    eprintln!("Issue #{id} is done: {}", Tally::of(&services.store, id).await?.summary());
                    return Ok(());
                }
                IssueStatus::Sending => eprintln!("Issue #{id} is sending; continuing."),
            }
            if detach { Ok(()) } else { deliver_in_foreground(services, id).await }
        }
        IssueCommand::Retry { id, failed, ambiguous } => retry(&services, id, failed, ambiguous).await,
        IssueCommand::Pause { id } => {
            if services.store.pause_issue(id, "paused by an editor").await? {
                eprintln!("Issue #{id} paused. `bulletin issue resume {id}` continues it.");
                Ok(())
            } else {
                bail!("issue #{id} is not sending (see `bulletin issue status {id}`)")
            }
        }
    }
}

/// Refuses to send on for a newsletter taken out of the configuration: its
/// issues are held until it is put back (see `delivery::hold_unconfigured`).
async fn ensure_configured(services: &Services, id: i64, newsletter_id: i64) -> anyhow::Result<()> {
    if services.signup.catalog().by_id(newsletter_id).is_some() {
        return Ok(());
    }
    let slug = services.store.list_newsletters().await?.into_iter().find(|n| n.id == newsletter_id).map(|n| n.slug);
    let slug = slug.map(|s| s.to_string()).unwrap_or_else(|| format!("#{newsletter_id}"));
    bail!(
        "issue #{id} is held: newsletter \"{slug}\" is no longer in the configuration; put it back in config.toml, then run `bulletin issue resume {id}` again"
    )
}

/// `issue retry`: requeues what the operator asked for and says what happens next.
async fn retry(services: &Services, id: i64, failed: bool, ambiguous: bool) -> anyhow::Result<()> {
    if !failed && !ambiguous {
        if services.store.issue(id).await?.is_none() {
            bail!("there is no issue #{id}; `bulletin issue list` shows them");
        }
        let counts: HashMap<String, i64> = services.store.delivery_counts(Some(id)).await?.into_iter().collect();
        let count = |status: &str| counts.get(status).copied().unwrap_or(0);
        bail!(
            "issue #{id} has {} failed and {} ambiguous message(s); pass --failed, --ambiguous or both to requeue them",
            count("failed"),
            count("ambiguous")
        );
    }
    if let Some(issue) = services.store.issue(id).await? {
        ensure_configured(services, id, issue.newsletter_id).await?;
    }
    let now = Clock::system().now();
    let Some((requeued, status)) = services.store.requeue_deliveries(id, failed, ambiguous, now).await? else {
        bail!("there is no issue #{id}; `bulletin issue list` shows them");
    };
    writeln!(std::io::stdout(), "Requeued {requeued} message(s) of issue #{id}.")?;
    match status {
        IssueStatus::Done => {}
        IssueStatus::Paused => eprintln!("Issue #{id} is paused: `bulletin issue resume {id}` sends what waits."),
        IssueStatus::Sending => eprintln!(
            "`bulletin serve` or `bulletin worker` sends what waits; `bulletin issue resume {id}` sends it in the foreground."
        ),
    }
    Ok(())
}

/// Asks on the terminal; refuses to `action` when nobody is there to
/// answer, and fails with `declined` unless the answer is yes.
pub(super) fn confirm(question: &str, action: &str, declined: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to {action} without --yes: standard input is not a terminal");
    }
    if !super::prompt::yes(question)? {
        bail!("{declined}");
    }
    Ok(())
}

/// Runs the delivery engine here until the issue is done, paused or interrupted.
///
/// Ctrl-C (or SIGTERM) pauses the issue: nothing more is claimed, the
/// messages in hand finish, and `bulletin issue resume` continues it (a
/// running `serve` does not). A second Ctrl-C stops without waiting for the
/// messages in hand; their rows turn `ambiguous` when their lease expires.
/// The result is an [`Unfinished`] error unless every message was delivered.
pub(super) async fn deliver_in_foreground(services: Services, id: i64) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut gathering = Gathering::start();
    let engine = tokio::spawn(services.engine.run(Arc::new(Notify::new()), stopped));
    let store = services.store.clone();
    let total = Tally::of(&store, id).await?.total;
    let mut progress = Progress::new(total);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut interrupted = loop {
        let tally = Tally::of(&store, id).await?;
        progress.update(&tally, store.mail_server_wait(Clock::system().now()).await?.as_ref());
        if let Some(line) = gathering.summary_due() {
            progress.note(&line);
        }
        let status = store.issue(id).await?.map(|i| i.status);
        if tally.waiting == 0 || status == Some(IssueStatus::Paused) {
            break None;
        }
        tokio::select! {
            signal = &mut signal => break Some(signal),
            _ = sleep_tick(total) => {}
        }
    };
    let mut forced = false;
    if let Some(signal) = interrupted {
        let how = if signal == 2 { "Ctrl-C" } else { "SIGTERM" };
        if store.pause_issue(id, &format!("interrupted ({how}) during `bulletin issue send`")).await? {
            progress.note(&format!(
                "{how}: pausing issue #{id}, finishing the message(s) in hand (Ctrl-C again: stop now)"
            ));
        } else {
            // It ended (done, or paused from elsewhere) just before: say how it ended instead.
            interrupted = None;
        }
    }
    let _ = stop.send(true);
    tokio::pin!(engine);
    tokio::select! {
        _ = &mut engine => {}
        _ = shutdown_signal(), if interrupted.is_some() => forced = true,
    }
    if !forced {
        store.complete_issues(Clock::system().now()).await?;
    }
    drop(gathering);
    if let Some(line) = Gathering::summary() {
        progress.note(&line);
    }
    progress.finish();
    let tally = Tally::of(&store, id).await?;
    let issue = store.issue(id).await?;
    eprintln!("Issue #{id}: {}", tally.summary());
    let undelivered = tally.failed + tally.ambiguous;
    if undelivered > 0 {
        eprintln!("`bulletin issue status {id}` lists what was not delivered and why.");
    }
    if let Some(signal) = interrupted {
        eprintln!(
            "Paused issue #{id} after {} of {}; `bulletin issue resume {id}` continues (nobody already sent to gets a second copy).",
            tally.settled(),
            tally.total
        );
        if forced {
            eprintln!("Stopped without waiting: a message in hand shows as ambiguous once its lease expires.");
        }
        return Err(Unfinished::Interrupted { id, signal }.into());
    }
    match issue {
        Some(issue) if issue.status == IssueStatus::Paused => {
            eprintln!("Paused: {}", issue.paused_reason.unwrap_or_default());
            eprintln!("`bulletin issue status {id}` shows the replies; `bulletin issue resume {id}` continues.");
            Err(Unfinished::Paused { id }.into())
        }
        _ if undelivered > 0 => Err(Unfinished::Undelivered { id, count: undelivered }.into()),
        _ => Ok(()),
    }
}

/// "2 (0.50 % of 400 delivered)": complaints and their rate, the figure
/// mailbox providers hold senders to (Gmail and Yahoo: under 0.3 %).
fn complaint_rate(complaints: i64, delivered: i64) -> String {
    if delivered == 0 {
        return format!("{complaints}");
    }
    format!("{complaints} ({:.2} % of {delivered} delivered)", complaints as f64 * 100.0 / delivered as f64)
}

/// A duration for people: "42 s", "3 min 5 s", "2 h 10 min".
fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Tells the editor about raw HTML in the Markdown, which goes out as written.
fn warn_raw_html(markdown: &str) {
    let tags = crate::mail::raw_html_tags(markdown);
    if !tags.is_empty() {
        eprintln!(
            "Note: the issue contains raw HTML ({}); it goes into the HTML part as written, and mail clients drop \
             scripts, forms and styles they do not trust.",
            tags.join(" ")
        );
    }
}

/// `--at`: an RFC 3339 time in the future.
fn send_time(at: &str, now: crate::clock::Timestamp) -> anyhow::Result<crate::clock::Timestamp> {
    let when = crate::clock::parse_timestamp(at)
        .map_err(|_| anyhow::anyhow!("--at {at:?} is not a time like 2026-12-01T07:00:00+02:00 (RFC 3339)"))?;
    if when <= now {
        bail!("--at {at:?} is in the past; leave --at out to send now");
    }
    Ok(when)
}

/// The issue's Markdown, from a file or (`-`) standard input.
fn read_issue(file: &std::path::Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut markdown = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut markdown)
            .context("could not read the issue from standard input")?;
        return Ok(markdown);
    }
    std::fs::read_to_string(file).with_context(|| format!("could not read {}", file.display()))
}

/// Why an issue to nobody is refused, with the likely cause to check first.
fn no_recipients(settings: &Settings, draft: &Draft) -> String {
    let database = if settings.database.url.expose_secret().starts_with("sqlite:") {
        format!("the SQLite file in database.url ({})", settings.database.url.expose_secret())
    } else {
        "the database in database.url".to_owned()
    };
    format!(
        "\"{}\" has no confirmed subscriber, so the issue would go to nobody; check that {database} is the one \
         your readers are in, or pass --allow-empty to record the issue anyway",
        draft.newsletter.slug
    )
}

/// The reader a test copy's links name: nobody (no subscriber has id 0).
pub(super) const TEST_COPY: LinkRef = LinkRef::TEST_COPY;

/// One copy to one address, outside the ledger, marked as a test.
async fn send_test(settings: &Settings, services: &Services, draft: &Draft, to: &str) -> anyhow::Result<()> {
    let to = EmailAddress::parse(to).map_err(|e| anyhow::anyhow!("--test-to {to:?}: {e}"))?;
    let mailer = services.composer.mailer();
    let issue = RenderedIssue::new(
        &draft.newsletter.name,
        draft.newsletter.slug.as_str(),
        &format!("[TEST] {}", draft.subject),
        &draft.markdown,
        mailer,
    )
    .with_preheader(draft.preheader.as_deref());
    let links = services.signup.links();
    let message = IssueMail {
        issue: &issue,
        to: &to,
        name: None,
        unsubscribe_url: &links.unsubscribe_url(TEST_COPY, draft.newsletter.id),
        preferences_url: &links.preferences_url(TEST_COPY),
        message_id: mailer.new_message_id(),
        return_path: None,
    }
    .build(mailer)?;
    let mut channel = Outbound::from_settings(&settings.mail)?.channel();
    let sent = channel.send(&message).await;
    // QUIT whatever the reply: a refused recipient is no reason to drop the line on the relay.
    channel.close().await;
    let reply = sent.map_err(|e| anyhow::anyhow!("test copy not sent: {e}"))?;
    eprintln!("Test copy sent to {}: {reply}", to.as_str());
    Ok(())
}
