//! The `bulletin` command line for operators and editors.

mod backup;
mod bounces;
mod digest;
mod import;
mod issue;
mod items;
mod move_to_postgres;
mod output;
mod progress;
mod prompt;
mod reader;
mod refusals;
mod stats;
mod subscribers;
mod warnings;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app;
use crate::clock::Clock;
use crate::config::Settings;
use crate::digest::DigestPlan;
use crate::domain::{NewsletterSlug, SubscriptionStatus};
use crate::signup::RhythmOffer;
use crate::store;
use crate::web;
use output::Format;
pub use warnings::{GatherLayer, Stderr as LogWriter};

/// How `issue send` or `issue resume` ended when the issue did not simply
/// go out; the command has already said what happened and what to do, and
/// the exit code tells scripts (see README, "Exit codes").
#[derive(Debug, thiserror::Error)]
pub enum Unfinished {
    /// Ctrl-C (or SIGTERM) paused the issue: exit 128 + the signal, as a shell would.
    #[error("issue #{id} was interrupted and paused")]
    Interrupted { id: i64, signal: i32 },
    /// Paused by an editor or by the policy-failure limit: exit 4.
    #[error("issue #{id} is paused")]
    Paused { id: i64 },
    /// Done, but some messages failed or may not have arrived: exit 3.
    #[error("issue #{id} is done with {count} message(s) not delivered")]
    Undelivered { id: i64, count: i64 },
}

impl Unfinished {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Interrupted { signal, .. } => 128u8.saturating_add(*signal as u8),
            Self::Paused { .. } => 4,
            Self::Undelivered { .. } => 3,
        }
    }
}

/// Prints a failed command's error, each cause once, and returns its exit code.
pub fn report(error: &anyhow::Error) -> ExitCode {
    if let Some(unfinished) = error.downcast_ref::<Unfinished>() {
        return ExitCode::from(unfinished.exit_code());
    }
    if closed_pipe(error) {
        // `bulletin … | head`: the reader has what it wanted.
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {}", causes(error));
    if let Some(failure) = error.downcast_ref::<bounces::IngestFailure>() {
        return ExitCode::from(failure.exit_code());
    }
    if error.downcast_ref::<subscribers::NoSuchAddress>().is_some() {
        return ExitCode::from(subscribers::NoSuchAddress::EXIT_CODE);
    }
    ExitCode::FAILURE
}

/// Whether the command failed only because whoever read its output stopped reading (EPIPE).
/// serde_json keeps the `io::Error` it met out of its error chain, so it is asked by kind.
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| match cause.downcast_ref::<csv::Error>()?.kind() {
                csv::ErrorKind::Io(e) => Some(e.kind()),
                _ => None,
            })
            .or_else(|| cause.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The causes of `error` joined by ": ", leaving out a cause the one before
/// already quotes (a wrapper such as `database error: {0}` repeats its
/// source, and some libraries' messages repeat theirs); a database deadline
/// that passed is followed by what held it up and which setting it was.
fn causes(error: &anyhow::Error) -> String {
    let mut said: Vec<String> = vec![];
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || said.last().is_some_and(|before| before.contains(&text)) {
            continue;
        }
        said.push(text);
    }
    let note = error.chain().filter_map(|cause| cause.downcast_ref::<sqlx::Error>()).find_map(store::deadline_note);
    let said = said.join(": ");
    match note {
        Some(note) => format!("{said} ({note})"),
        None => said,
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "bulletin",
    version,
    about = "Self-hosted newsletter subscriptions: signup forms, double opt-in, one-click unsubscribe"
)]
pub struct Cli {
    /// Configuration file; every setting can also be set as BULLETIN_<SECTION>__<KEY>.
    #[arg(long, global = true, env = "BULLETIN_CONFIG", default_value = "config.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server (signup forms, confirmation and unsubscribe pages) and the mail worker.
    Serve,
    /// Run the delivery engine and the digest schedules only (no web server): sends queued confirmation mail, issues and digests.
    Worker,
    /// Create or update the database schema and the configured newsletters, then exit;
    /// with --to, copy the SQLite database into an empty PostgreSQL one.
    Migrate {
        /// An empty PostgreSQL database (postgres://user@host/db) to copy everything into:
        /// readers, consent records, tokens, issues, the ledger, digests and the link secret.
        #[arg(long, value_name = "POSTGRES_URL")]
        to: Option<String>,
    },
    /// Copy the SQLite database into a new FILE while serve keeps running (PostgreSQL: says how to use pg_dump).
    Backup {
        /// Where to write the copy; it must not exist yet (a backup never overwrites a file).
        file: PathBuf,
    },
    /// Inspect the configured newsletters.
    Newsletters {
        #[command(subcommand)]
        command: NewslettersCommand,
    },
    /// List, import and export subscribers; show, add, unsubscribe and erase one reader.
    Subscribers {
        #[command(subcommand)]
        command: SubscribersCommand,
    },
    /// List the suppression list (bounced, complained and erased addresses), take an address off it,
    /// or review the bounce suppressions that no longer read as gone.
    Suppressions {
        #[command(subcommand)]
        command: subscribers::SuppressionsCommand,
    },
    /// Send issues and watch them go out.
    Issue {
        #[command(subcommand)]
        command: issue::IssueCommand,
    },
    /// Preview, send and list digests (newsletters with a [newsletters.digest] table).
    Digest {
        #[command(subcommand)]
        command: digest::DigestCommand,
    },
    /// Add and list the stories a newsletter's digests are made of.
    Items {
        #[command(subcommand)]
        command: items::ItemsCommand,
    },
    /// Growth, churn and bounces per UTC day, and how each issue went; `--html` draws them on one page.
    Stats(stats::StatsArgs),
    /// Read bounces and spam complaints a mail server received (DSNs, ARF reports) and act on them.
    Bounces {
        #[command(subcommand)]
        command: bounces::BouncesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum NewslettersCommand {
    /// List newsletters with their subscriber counts.
    List {
        /// How to print: a table for people, CSV or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the HTML a site pastes into its pages for one newsletter's signup box.
    Snippet {
        /// The newsletter's slug, as in `bulletin newsletters list`.
        slug: String,
        /// An `<iframe>` of Bulletin's own small page: nothing to style, works without JavaScript.
        #[arg(long, conflicts_with = "script")]
        iframe: bool,
        /// A plain form the site styles, made inline by `/embed.js` (the default).
        #[arg(long)]
        script: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// List a newsletter's subscribers (CSV header: email,status,created_at,confirmed_at,name).
    List {
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long)]
        newsletter: String,
        /// Only subscribers in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// How to print: a table for people, CSV or JSON for scripts.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    Import(import::ImportArgs),
    #[command(flatten)]
    Reader(subscribers::ReaderCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Pending,
    Confirmed,
    Unsubscribed,
}

impl From<StatusArg> for SubscriptionStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => Self::Pending,
            StatusArg::Confirmed => Self::Confirmed,
            StatusArg::Unsubscribed => Self::Unsubscribed,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()));
    // A mail server's pipe reads the exit status of `bounces ingest`: a bad config is "try again later".
    let command = match cli.command {
        Command::Bounces { command } => return bounces::run(settings, command).await,
        command => command,
    };
    let settings = settings?;
    match command {
        Command::Serve => serve(&settings, &cli.config).await,
        Command::Worker => worker(&settings, &cli.config).await,
        Command::Issue { command } => issue::run(&settings, command).await,
        Command::Digest { command } => digest::run(&settings, command).await,
        Command::Items { command } => items::run(&settings, command).await,
        Command::Stats(args) => stats::run(&settings, args).await,
        Command::Bounces { .. } => unreachable!("handled above"),
        Command::Subscribers { command: SubscribersCommand::Import(args) } => import::run(&settings, args).await,
        Command::Subscribers { command: SubscribersCommand::Reader(command) } => {
            subscribers::run(&settings, command).await
        }
        Command::Suppressions { command } => subscribers::suppressions(&settings, command).await,
        Command::Backup { file } => backup::run(&settings, &file).await,
        Command::Migrate { to: Some(to) } => move_to_postgres::run(&settings, &to).await,
        Command::Migrate { to: None } => {
            let (store, applied) = app::open_and_migrate(&settings).await?;
            let newsletters = app::sync_newsletters(&settings, &store, Clock::system().now()).await?;
            let slugs: Vec<String> = newsletters.iter().map(|n| n.slug.to_string()).collect();
            match applied.as_slice() {
                [] => eprintln!("Database ({}) was already up to date.", store.backend_name()),
                applied => eprintln!(
                    "Database ({}): applied {} migration(s): {}.",
                    store.backend_name(),
                    applied.len(),
                    applied.join(", ")
                ),
            }
            eprintln!(
                "Newsletters: {}.",
                if slugs.is_empty() { "none configured".to_owned() } else { slugs.join(", ") }
            );
            Ok(())
        }
        Command::Newsletters { command: NewslettersCommand::List { format } } => {
            let store = app::open_store(&settings).await?;
            app::sync_newsletters(&settings, &store, Clock::system().now()).await?;
            let newsletters = store.list_newsletters().await?;
            let counts = store.subscription_counts().await?;
            let configured =
                |n: &crate::domain::Newsletter| settings.newsletters.iter().any(|c| c.slug == n.slug.as_str());
            output::newsletters(&mut std::io::stdout().lock(), format, &newsletters, &counts, &configured)?;
            Ok(())
        }
        Command::Newsletters { command: NewslettersCommand::Snippet { slug, iframe, script: _ } } => {
            let slug = NewsletterSlug::parse(&slug).with_context(|| format!("{slug:?}"))?;
            let Some(newsletter) = settings.newsletters.iter().find(|n| n.slug == slug.as_str()) else {
                bail!("there is no newsletter \"{slug}\" in the configuration; `bulletin newsletters list` shows them");
            };
            let kind = if iframe { web::SnippetKind::Iframe } else { web::SnippetKind::Script };
            // Checked at load, so a plan that does not parse cannot be here.
            let plan = newsletter.digest.as_ref().and_then(|d| DigestPlan::from_settings(d).ok());
            let offer = plan.as_ref().and_then(RhythmOffer::from_plan);
            println!("{}", web::snippet(settings.public_url(), &slug, &newsletter.name, offer.as_ref(), kind)?);
            Ok(())
        }
        Command::Subscribers { command: SubscribersCommand::List { newsletter, status, format } } => {
            let slug = NewsletterSlug::parse(&newsletter).with_context(|| format!("--newsletter {newsletter:?}"))?;
            let store = app::open_store(&settings).await?;
            let Some(found) = store.list_newsletters().await?.into_iter().find(|n| n.slug == slug) else {
                bail!("there is no newsletter \"{slug}\"; `bulletin newsletters list` shows them");
            };
            // Checked at load, so a plan that does not parse cannot be here.
            let plan = settings
                .newsletters
                .iter()
                .find(|n| n.slug == slug.as_str())
                .and_then(|n| DigestPlan::from_settings(n.digest.as_ref()?).ok());
            let offer = plan.as_ref().and_then(RhythmOffer::from_plan);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            output::subscribers(&mut out, format, &store, found.id, status.map(Into::into), offer.as_ref()).await?;
            out.flush()?;
            Ok(())
        }
    }
}

async fn serve(settings: &Settings, config: &std::path::Path) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("could not listen on {} (server.listen)", settings.server.listen))?;
    let running = app::start(settings, Clock::system(), listener).await?;
    check_mail_server(settings);
    if let Some(warning) = settings.public_url_warning() {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        "Bulletin listening on http://{} (public URL {}), database {}, mail via {:?}",
        running.addr,
        settings.public_url(),
        running.store.backend_name(),
        settings.mail.transport
    );
    if let Some(addr) = running.metrics_addr {
        tracing::info!("Metrics on http://{addr}/metrics (server.metrics_listen)");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follow =
        tokio::spawn(app::follow_configuration(config.to_owned(), running.store.clone(), Clock::system(), stopped));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = follow.await;
    running.stop().await;
    Ok(())
}

/// A configured newsletter by slug, or an error that says where to look.
pub(crate) fn newsletter_by_slug(services: &app::Services, slug: &str) -> anyhow::Result<crate::domain::Newsletter> {
    let parsed = NewsletterSlug::parse(slug).with_context(|| format!("--newsletter {slug:?}"))?;
    services
        .signup
        .catalog()
        .by_slug(&parsed)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("there is no newsletter \"{slug}\"; `bulletin newsletters list` shows them"))
}

async fn worker(settings: &Settings, config: &std::path::Path) -> anyhow::Result<()> {
    let services = app::services(settings, Clock::system()).await?;
    check_mail_server(settings);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = app::serve_metrics(settings, &services, stopped.clone()).await?;
    if let Some((addr, _)) = &metrics {
        tracing::info!("Metrics on http://{addr}/metrics (server.metrics_listen)");
    }
    let schedules = tokio::spawn(services.digests.schedule(services.mail_queued.clone(), stopped.clone()));
    let follow = tokio::spawn(app::follow_configuration(
        config.to_owned(),
        services.store.clone(),
        Clock::system(),
        stopped.clone(),
    ));
    let engine = tokio::spawn(services.engine.run(services.mail_queued, stopped));
    tracing::info!("Bulletin worker running (database {})", services.store.backend_name());
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = engine.await;
    let _ = follow.await;
    let _ = schedules.await;
    if let Some((_, exporter)) = metrics {
        let _ = exporter.await;
    }
    services.store.close().await;
    Ok(())
}

/// Says at start-up when the mail server cannot be reached, not only once mail is due.
fn check_mail_server(settings: &Settings) {
    let Ok(outbound) = crate::mail::Outbound::from_settings(&settings.mail) else { return };
    if let crate::mail::Outbound::Smtp(target) = &outbound {
        let (name, source) = target.hello_name();
        tracing::info!("SMTP: EHLO {name} ({source}; mail.helo_name sets it)");
    }
    tokio::spawn(async move {
        if let Err(e) = outbound.check().await {
            tracing::warn!("{e}. Mail waits until it answers: check mail.smtp_url and that the server is running.");
        }
    });
}

/// Waits for Ctrl-C or SIGTERM and returns the signal's number.
pub(crate) async fn shutdown_signal() -> i32 {
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => SIGINT,
        _ = term => SIGTERM,
    }
}
