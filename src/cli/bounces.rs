//! `bulletin bounces ingest`: bounces (DSNs) and spam complaints (ARF
//! reports, Microsoft JMRP mails, SES notifications) from a mail server, one message on standard input — behind a
//! Postfix `pipe` transport — or a maildir of them from cron.
//!
//! The exit status is what a `pipe` transport reads (sysexits): 0 when the
//! message was applied or needed nothing, 65 (`EX_DATAERR`) when it is no
//! report Bulletin can read, 75 (`EX_TEMPFAIL`) when it could not be done
//! now (the database is unreachable), so Postfix keeps it and tries again.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use crate::app;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::BounceReason;
use crate::feedback::{self, Applied, Feedback, Parsed, ReportKind};

#[derive(Debug, Subcommand)]
pub enum BouncesCommand {
    /// Read bounces (DSNs, RFC 3464, and plain-text ones) and spam complaints (ARF, RFC 5965; Microsoft JMRP; SES notifications sent by mail) and act on them.
    ///
    /// Hard bounces suppress the address, soft ones count toward
    /// `bounces.soft_bounce_limit`, a complaint unsubscribes and suppresses.
    /// Exit status for a Postfix pipe transport: 0 done, 65 not a report,
    /// 75 try again later (the database is unreachable).
    Ingest(IngestArgs),
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// One message to read: a file, or `-` (the default) for standard input.
    #[arg(value_name = "FILE", conflicts_with = "maildir")]
    file: Option<PathBuf>,
    /// Read every message in DIR/new and DIR/cur instead, moving each to DIR/.Processed/cur (or DIR/.Unparsed/cur when it is no report).
    #[arg(long, value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// The address the message was delivered to (Postfix pipe: `${recipient}`): a VERP address names the delivery.
    #[arg(long, value_name = "ADDRESS")]
    recipient: Option<String>,
    /// How to print the summary: a line for people, or JSON for scripts (which lists each recipient acted on).
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    format: SummaryFormat,
    /// In the text summary, a line per recipient first: the file, the address, the class, reason and status, and what was done.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

/// How `bounces ingest` failed, as a mail server's `pipe` transport reads it.
#[derive(Debug, thiserror::Error)]
pub enum IngestFailure {
    /// The message is no DSN or ARF report: `EX_DATAERR`, so it is not tried again.
    #[error("{0}")]
    NotAReport(String),
    /// The file named cannot be read: `EX_NOINPUT`.
    #[error("{0}")]
    NoInput(String),
    /// Nothing was lost, but nothing could be done now: `EX_TEMPFAIL`, so the mail server tries again.
    #[error("{0}; nothing was changed for this message, try again later")]
    TryLater(String),
}

impl IngestFailure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotAReport(_) => 65,
            Self::NoInput(_) => 66,
            Self::TryLater(_) => 75,
        }
    }
}

pub async fn run(settings: anyhow::Result<Settings>, command: BouncesCommand) -> anyhow::Result<()> {
    let BouncesCommand::Ingest(args) = command;
    let settings = settings.map_err(|e| IngestFailure::TryLater(super::causes(&e)))?;
    let mut summary = Summary::default();
    let result = match &args.maildir {
        Some(dir) => ingest_maildir(&settings, dir, args.recipient.as_deref(), &mut summary).await,
        None => ingest_one(&settings, args.file.as_deref(), args.recipient.as_deref(), &mut summary).await,
    };
    if summary.messages > 0 || result.is_ok() {
        summary.print(args.format, args.verbose)?;
    }
    result.map_err(Into::into)
}

/// One message, from a file or standard input: parsed first, so garbage is
/// refused without touching the database.
async fn ingest_one(
    settings: &Settings,
    file: Option<&Path>,
    recipient: Option<&str>,
    summary: &mut Summary,
) -> Result<(), IngestFailure> {
    let file = file.filter(|f| f.as_os_str() != "-");
    let (raw, name) = match file {
        Some(path) => (
            std::fs::read(path)
                .map_err(|e| IngestFailure::NoInput(format!("could not read {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => {
            let mut raw = vec![];
            std::io::stdin()
                .lock()
                .read_to_end(&mut raw)
                .map_err(|e| IngestFailure::TryLater(format!("could not read standard input: {e}")))?;
            (raw, "standard input".to_owned())
        }
    };
    let parsed = feedback::parse(&raw, recipient).map_err(|e| IngestFailure::NotAReport(format!("{name}: {e}")))?;
    let feedback = open(settings).await?;
    summary.messages += 1;
    apply(&feedback, &parsed, file, summary).await
}

/// Every message in `dir/new` and `dir/cur`, each moved once dealt with.
async fn ingest_maildir(
    settings: &Settings,
    dir: &Path,
    recipient: Option<&str>,
    summary: &mut Summary,
) -> Result<(), IngestFailure> {
    let files = maildir_files(dir)?;
    let feedback = open(settings).await?;
    let processed = maildir_folder(dir, "Processed")?;
    let unparsed = maildir_folder(dir, "Unparsed")?;
    for file in files {
        let raw = std::fs::read(&file)
            .map_err(|e| IngestFailure::TryLater(format!("could not read {}: {e}", file.display())))?;
        summary.messages += 1;
        match feedback::parse(&raw, recipient) {
            Ok(parsed) => {
                let before = summary.recipients.len();
                apply(&feedback, &parsed, Some(&file), summary).await?;
                // Named where the file is now, so the operator can open it.
                let moved = move_into(&file, &processed)?;
                for acted in &mut summary.recipients[before..] {
                    acted.file = Some(moved.display().to_string());
                }
            }
            Err(e) => {
                eprintln!("{}: {e}; moved to {}", file.display(), unparsed.display());
                summary.unreadable += 1;
                move_into(&file, &unparsed)?;
            }
        }
    }
    Ok(())
}

async fn open(settings: &Settings) -> Result<Feedback, IngestFailure> {
    app::feedback(settings, Clock::system()).await.map_err(|e| IngestFailure::TryLater(super::causes(&e)))
}

/// Applies every report of one message; a database error stops at once (the
/// reports applied before it are recorded, and count as duplicates on the retry).
async fn apply(
    feedback: &Feedback,
    parsed: &Parsed,
    file: Option<&Path>,
    summary: &mut Summary,
) -> Result<(), IngestFailure> {
    summary.ignored += parsed.ignored;
    for report in &parsed.reports {
        let applied = feedback.apply(report).await.map_err(|e| {
            IngestFailure::TryLater(super::causes(&anyhow::Error::new(e).context("could not apply the report")))
        })?;
        summary.count(report.kind, &applied);
        summary.recipients.push(Acted {
            file: file.map(|f| f.display().to_string()),
            recipient: report.recipient.as_ref().map(|r| r.as_str().to_owned()),
            class: report.kind,
            reason: report.reason,
            status: report.status().map(str::to_owned),
            applied,
        });
    }
    Ok(())
}

/// The message files of a maildir, oldest name first (names start with their arrival time).
fn maildir_files(dir: &Path) -> Result<Vec<PathBuf>, IngestFailure> {
    let mut files = vec![];
    for sub in ["new", "cur"] {
        let path = dir.join(sub);
        let entries = std::fs::read_dir(&path).map_err(|e| {
            IngestFailure::NoInput(format!("{} is not a maildir (no {sub}/ readable: {e})", dir.display()))
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| IngestFailure::TryLater(format!("reading {}: {e}", path.display())))?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// `dir/.NAME/cur`, a Maildir++ folder (with its `new`, `tmp` and `maildirfolder`), created if missing.
fn maildir_folder(dir: &Path, name: &str) -> Result<PathBuf, IngestFailure> {
    let folder = dir.join(format!(".{name}"));
    let made = (|| {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(sub))?;
        }
        std::fs::OpenOptions::new().create(true).append(true).open(folder.join("maildirfolder")).map(drop)
    })();
    made.map_err(|e| IngestFailure::TryLater(format!("could not create {}: {e}", folder.display())))?;
    Ok(folder.join("cur"))
}

/// Moves a message file into a folder's `cur`, marked seen-by-nobody (`:2,`)
/// as Maildir names files there; returns where it is now.
fn move_into(file: &Path, cur: &Path) -> Result<PathBuf, IngestFailure> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = if name.contains(":2,") { name } else { format!("{name}:2,") };
    let to = cur.join(&name);
    std::fs::rename(file, &to)
        .map_err(|e| IngestFailure::TryLater(format!("could not move {} to {}: {e}", file.display(), cur.display())))?;
    Ok(to)
}

/// What a run did, for its closing line.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    messages: usize,
    hard_bounces_suppressed: usize,
    soft_bounces_counted: usize,
    /// Soft bounces that reached `bounces.soft_bounce_limit`: the address is suppressed.
    soft_bounce_limits_reached: usize,
    complaints_unsubscribed: usize,
    /// Refused for the sender's reasons (blocklist, policy, DMARC, content): no reader suppressed.
    sender_refusals: usize,
    /// Issues a complaint paused (`bounces.pause_complaint_rate`).
    paused_issues: Vec<i64>,
    /// Reports applied before (a maildir run again, a retried delivery).
    already_applied: usize,
    /// Recipients or reports that needed nothing: delays, relays, other feedback types.
    ignored: usize,
    unmatched: usize,
    unreadable: usize,
    /// Each recipient of each report, in the order read, with what was done.
    recipients: Vec<Acted>,
}

/// One recipient acted on: the operator's own record of whom a run touched
/// and why (the log, by contrast, names nobody).
#[derive(Debug, serde::Serialize)]
struct Acted {
    /// The message's file (in a maildir run, where it was moved to); `None` for standard input.
    file: Option<String>,
    /// `None` when the report names no recipient (it was matched by its Message-ID or VERP address alone, or not at all).
    recipient: Option<String>,
    class: ReportKind,
    /// `None` for a complaint, and for a provider's verdict that came with no words.
    reason: Option<BounceReason>,
    /// The RFC 3463 status (`5.1.1`), when the report gives one.
    status: Option<String>,
    /// `action`: suppressed, counted (with `count`), sender_refused, unsubscribed (with `paused_issue`), duplicate, unmatched.
    #[serde(flatten)]
    applied: Applied,
}

impl Acted {
    /// "new/1764…:2,: reader@example.org hard_bounce user_unknown 5.1.1: suppressed"
    fn line(&self) -> String {
        let mut words = vec![self.recipient.as_deref().unwrap_or("(no recipient named)").to_owned()];
        words.push(self.class.as_str().to_owned());
        words.extend(self.reason.map(|r| r.as_str().to_owned()));
        words.extend(self.status.clone());
        let action = match &self.applied {
            Applied::Suppressed => "suppressed".to_owned(),
            Applied::SenderRefused => "refused for the sender's reasons: recorded against the issue".to_owned(),
            Applied::SoftBounceCounted { count } => format!("counted ({count} in the window)"),
            Applied::Unsubscribed { paused_issue: Some(issue) } => format!("unsubscribed; issue #{issue} paused"),
            Applied::Unsubscribed { paused_issue: None } => "unsubscribed".to_owned(),
            Applied::Duplicate => "already applied".to_owned(),
            Applied::Unmatched => "unmatched: nothing changed".to_owned(),
        };
        let file = self.file.as_deref().unwrap_or("standard input");
        format!("{file}: {}: {action}", words.join(" "))
    }
}

impl Summary {
    fn count(&mut self, kind: ReportKind, applied: &Applied) {
        match (kind, applied) {
            (_, Applied::Duplicate) => self.already_applied += 1,
            (_, Applied::Unmatched) => self.unmatched += 1,
            (ReportKind::SoftBounce, Applied::Suppressed) => self.soft_bounce_limits_reached += 1,
            (_, Applied::Suppressed) => self.hard_bounces_suppressed += 1,
            (_, Applied::SoftBounceCounted { .. }) => self.soft_bounces_counted += 1,
            (_, Applied::SenderRefused) => self.sender_refusals += 1,
            (_, Applied::Unsubscribed { paused_issue }) => {
                self.complaints_unsubscribed += 1;
                self.paused_issues.extend(paused_issue);
            }
        }
    }

    fn print(&self, format: SummaryFormat, verbose: bool) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        match format {
            SummaryFormat::Json => {
                serde_json::to_writer_pretty(&mut out, self)?;
                writeln!(out)?;
            }
            SummaryFormat::Text => {
                if verbose {
                    for acted in &self.recipients {
                        writeln!(out, "{}", acted.line())?;
                    }
                }
                writeln!(out, "{}", self.line())?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// "4 messages: 2 hard bounces suppressed, 1 soft bounce counted, 1 complaint unsubscribed; 0 unmatched, 0 unreadable"
    fn line(&self) -> String {
        let mut done = vec![
            count(self.hard_bounces_suppressed, "hard bounce", "hard bounces", "suppressed"),
            count(self.soft_bounces_counted, "soft bounce", "soft bounces", "counted"),
        ];
        if self.soft_bounce_limits_reached > 0 {
            done.push(count(
                self.soft_bounce_limits_reached,
                "soft bounce",
                "soft bounces",
                "at the limit: suppressed",
            ));
        }
        if self.sender_refusals > 0 {
            done.push(format!(
                "{} refused for the sender's reasons (no reader suppressed; see `bulletin issue status`)",
                self.sender_refusals
            ));
        }
        done.push(count(self.complaints_unsubscribed, "complaint", "complaints", "unsubscribed"));
        for issue in &self.paused_issues {
            done.push(format!("issue #{issue} paused for its complaint rate"));
        }
        let mut rest = vec![format!("{} unmatched", self.unmatched), format!("{} unreadable", self.unreadable)];
        if self.already_applied > 0 {
            rest.push(format!("{} already applied", self.already_applied));
        }
        if self.ignored > 0 {
            rest.push(format!("{} needing nothing (delays, relays, other report types)", self.ignored));
        }
        let messages = if self.messages == 1 { "message" } else { "messages" };
        format!("{} {messages}: {}; {}", self.messages, done.join(", "), rest.join(", "))
    }
}

fn count(n: usize, one: &str, many: &str, what: &str) -> String {
    format!("{n} {} {what}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_as_a_sentence() {
        let summary = Summary {
            messages: 4,
            hard_bounces_suppressed: 2,
            soft_bounces_counted: 1,
            complaints_unsubscribed: 1,
            ..Summary::default()
        };
        assert_eq!(
            summary.line(),
            "4 messages: 2 hard bounces suppressed, 1 soft bounce counted, 1 complaint unsubscribed; 0 unmatched, 0 unreadable"
        );
    }
}
