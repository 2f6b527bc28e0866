use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Sending allocates and frees a few buffers per message on every worker
/// thread; glibc's malloc spent a tenth of the CPU per message on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = bulletin::cli::Cli::parse();
    // PostgreSQL's NOTICEs ("relation _sqlx_migrations already exists, skipping")
    // are not news to an operator: only its warnings are shown.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    // BULLETIN_LOG_SPANS=1: a line as each span closes, with its busy and idle time.
    let spans =
        if std::env::var_os("BULLETIN_LOG_SPANS").is_some_and(|v| v == "1") { FmtSpan::CLOSE } else { FmtSpan::NONE };
    let log = tracing_subscriber::fmt::layer()
        .with_writer(bulletin::cli::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(spans);
    tracing_subscriber::registry().with(filter).with(log).with(bulletin::cli::GatherLayer).init();
    match bulletin::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => bulletin::cli::report(&e),
    }
}
