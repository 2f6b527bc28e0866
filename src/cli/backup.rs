//! `bulletin backup FILE`: a consistent copy of the SQLite database, taken
//! while `serve` runs (see `store::backup_sqlite`); for PostgreSQL, the
//! `pg_dump` command that does the same job.

use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::store;

/// Makes the backup, or fails (exit 1) saying why and leaving no file named `file`.
pub async fn run(settings: &Settings, file: &Path) -> anyhow::Result<()> {
    let url = settings.database.url.expose_secret();
    if let Some(command) = store::pg_dump_command(url, file) {
        bail!(
            "bulletin backup copies SQLite databases, and database.url is PostgreSQL: back it up with pg_dump \
             (it asks for the password, or reads ~/.pgpass or PGPASSWORD):\n  {command}"
        );
    }
    let started = Instant::now();
    let report = store::backup_sqlite(url, file).await?;
    eprintln!(
        "Backed up {} subscriber(s) and {} issue(s) to {} ({:.1} MB) in {:.1} s; the copy passed SQLite's integrity check.",
        report.subscribers,
        report.issues,
        report.path.display(),
        report.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
