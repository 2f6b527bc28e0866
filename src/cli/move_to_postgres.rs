//! `bulletin migrate --to postgres://…`: moves a site from its SQLite
//! database to PostgreSQL, everything included (see `store::copy`).

use std::io::Write;

use anyhow::{Context, bail};
use secrecy::ExposeSecret;

use crate::app;
use crate::config::Settings;
use crate::store::{Deadlines, Store};

/// Migrates both schemas, copies every row and prints the count per table;
/// fails (exit 1) having written nothing to `to` when anything goes wrong.
pub async fn run(settings: &Settings, to: &str) -> anyhow::Result<()> {
    if !settings.database.url.expose_secret().starts_with("sqlite:") {
        bail!("migrate --to copies an SQLite database into PostgreSQL, and database.url is not SQLite");
    }
    if !(to.starts_with("postgres:") || to.starts_with("postgresql:")) {
        bail!("--to takes a PostgreSQL URL such as postgres://bulletin@db.internal/bulletin");
    }
    let (source, _) = app::open_and_migrate(settings).await?;
    let deadlines = Deadlines::from_settings(&settings.database);
    let target =
        Store::connect_with(to, 2, deadlines).await.context("could not open the PostgreSQL database (--to)")?;
    target.migrate().await.context("could not create the schema in the PostgreSQL database (--to)")?;
    let copied = source.copy_into(&target).await;
    target.close().await;
    source.close().await;
    let report = copied?;

    let width = report.tables.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:width$}  rows", "table")?;
    for (name, rows) in &report.tables {
        writeln!(out, "{name:width$}  {rows}")?;
    }
    out.flush()?;
    eprintln!(
        "Copied into PostgreSQL in one transaction; its id sequences start above every id the SQLite database handed out. \
         Now set database.url to the --to URL and start serve there; keep the SQLite file as your backup. \
         Anything written to SQLite after this copy is not in PostgreSQL: if serve or worker ran meanwhile, \
         create a fresh database and copy again."
    );
    Ok(())
}
