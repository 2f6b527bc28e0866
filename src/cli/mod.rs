//! The `bulletin` command line for operators and editors.

mod output;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{NewsletterSlug, SubscriptionStatus};
use output::Format;

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
    /// Create or update the database schema and the configured newsletters, then exit.
    Migrate,
    /// Inspect the configured newsletters.
    Newsletters {
        #[command(subcommand)]
        command: NewslettersCommand,
    },
    /// Inspect subscribers.
    Subscribers {
        #[command(subcommand)]
        command: SubscribersCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum NewslettersCommand {
    /// List newsletters with their subscriber counts.
    List {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// List a newsletter's subscribers (CSV header: email,status,created_at,confirmed_at).
    List {
        /// The newsletter's slug, as in `bulletin newsletters list`.
        #[arg(long)]
        newsletter: String,
        /// Only subscribers in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
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
    let settings = Settings::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command {
        Command::Serve => serve(&settings).await,
        Command::Migrate => {
            let store = app::open_store(&settings).await?;
            store.sync_newsletters(&settings.newsletters, Clock::system().now()).await?;
            eprintln!("Database ({}) is up to date.", store.backend_name());
            Ok(())
        }
        Command::Newsletters { command: NewslettersCommand::List { format } } => {
            let store = app::open_store(&settings).await?;
            store.sync_newsletters(&settings.newsletters, Clock::system().now()).await?;
            let newsletters = store.list_newsletters().await?;
            let counts = store.subscription_counts().await?;
            output::newsletters(&mut std::io::stdout().lock(), format, &newsletters, &counts)?;
            Ok(())
        }
        Command::Subscribers { command: SubscribersCommand::List { newsletter, status, format } } => {
            let slug = NewsletterSlug::parse(&newsletter).with_context(|| format!("--newsletter {newsletter:?}"))?;
            let store = app::open_store(&settings).await?;
            let Some(found) = store.list_newsletters().await?.into_iter().find(|n| n.slug == slug) else {
                bail!("there is no newsletter \"{slug}\"; `bulletin newsletters list` shows them");
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            output::subscribers(&mut out, format, &store, found.id, status.map(Into::into)).await?;
            out.flush()?;
            Ok(())
        }
    }
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("could not listen on {} (server.listen)", settings.server.listen))?;
    let running = app::start(settings, Clock::system(), listener).await?;
    tracing::info!(
        "Bulletin listening on http://{} (public URL {}), database {}, mail via {:?}",
        running.addr,
        settings.public_url(),
        running.store.backend_name(),
        settings.mail.transport
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
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
        _ = ctrl_c => {}
        _ = term => {}
    }
}
