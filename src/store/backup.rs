//! `bulletin backup FILE`: a consistent copy of the SQLite database while
//! `serve` keeps running.
//!
//! `VACUUM INTO` reads one snapshot of the database (a read transaction: in
//! WAL mode writers go on beside it) and writes it, compacted, to a new file.
//! The copy is written under a hidden temporary name in the destination's
//! directory, checked (`PRAGMA integrity_check`, the foreign keys), flushed to
//! disk, and only then linked to the name asked for, which must not exist: a
//! backup never overwrites anything, and a half-written one never carries
//! the final name. PostgreSQL is backed up with `pg_dump`;
//! [`pg_dump_command`] says how for the configured database.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

/// Why a backup was not made; no file is left under the name asked for.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} already exists; a backup never overwrites a file: give a new name (with the date, say) or move the old one away", .0.display())]
    Exists(PathBuf),
    #[error("the directory {} does not exist; create it first", .0.display())]
    NoDirectory(PathBuf),
    #[error("there is no SQLite database at {} (database.url); nothing to back up", .0.display())]
    NoDatabase(PathBuf),
    #[error("database.url is not an SQLite file: bulletin backup copies SQLite databases")]
    NotSqlite,
    #[error("could not write the backup in {}: {source}; nothing was kept", .dir.display())]
    Write { dir: PathBuf, source: std::io::Error },
    #[error(
        "the copy failed SQLite's integrity check ({0}); nothing was kept: check the disk, then run `sqlite3 DB 'PRAGMA integrity_check'` on the live database"
    )]
    Damaged(String),
    #[error("could not read the database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub subscribers: i64,
    pub issues: i64,
}

/// Copies the SQLite database at `url` into a new file `dest`.
pub async fn backup_sqlite(url: &str, dest: &Path) -> Result<BackupReport, BackupError> {
    if !url.starts_with("sqlite:") {
        return Err(BackupError::NotSqlite);
    }
    let source = SqliteConnectOptions::from_str(url)?.create_if_missing(false).busy_timeout(Duration::from_secs(10));
    let db_file = source.get_filename().to_owned();
    if db_file.as_os_str().is_empty() || db_file.to_str() == Some(":memory:") {
        return Err(BackupError::NotSqlite);
    }
    if !db_file.is_file() {
        return Err(BackupError::NoDatabase(db_file));
    }
    if dest.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(dest.to_owned()));
    }
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(BackupError::NoDirectory(dir));
    }
    let write_error = |source| BackupError::Write { dir: dir.clone(), source };
    // Empty, as VACUUM INTO requires; removed when dropped unless persisted.
    let partial = tempfile::Builder::new()
        .prefix(".bulletin-backup-")
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(write_error)?;

    let mut conn = SqliteConnection::connect_with(&source).await?;
    let vacuum =
        sqlx::query("VACUUM INTO $1").bind(partial.path().to_string_lossy().into_owned()).execute(&mut conn).await;
    conn.close().await?;
    vacuum?;

    let (subscribers, issues) = check(partial.path()).await?;
    partial.as_file().sync_all().map_err(write_error)?;
    let bytes = partial.as_file().metadata().map_err(write_error)?.len();
    partial.persist_noclobber(dest).map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::Exists(dest.to_owned()),
        _ => write_error(e.error),
    })?;
    // The new name is durable once the directory is.
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(write_error)?;
    Ok(BackupReport { path: dest.to_owned(), bytes, subscribers, issues })
}

/// Opens the copy as a database of its own, checks it through and turns it
/// into a single self-contained file (rollback journal, no `-wal` beside it).
async fn check(path: &Path) -> Result<(i64, i64), BackupError> {
    let options =
        SqliteConnectOptions::new().filename(path).create_if_missing(false).journal_mode(SqliteJournalMode::Delete);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let verdict: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut conn).await?;
    if verdict != ["ok"] {
        return Err(BackupError::Damaged(verdict.join("; ")));
    }
    let dangling: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pragma_foreign_key_check").fetch_one(&mut conn).await?;
    if dangling > 0 {
        return Err(BackupError::Damaged(format!("{dangling} row(s) refer to rows that are not there")));
    }
    let subscribers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers").fetch_one(&mut conn).await?;
    let issues: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM issues").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok((subscribers, issues))
}

/// The `pg_dump` command line that backs up the PostgreSQL database at
/// `url` into `file`, without its password (pg_dump asks for it, or reads
/// `~/.pgpass` or `PGPASSWORD`); `None` when `url` is not PostgreSQL.
pub fn pg_dump_command(url: &str, file: &Path) -> Option<String> {
    if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        return None;
    }
    let options = PgConnectOptions::from_str(url).ok()?;
    let quote = |s: &str| shlex::try_quote(s).map_or_else(|_| s.to_owned(), |q| q.into_owned());
    let mut command = vec![
        "pg_dump".to_owned(),
        "--format=custom".to_owned(),
        format!("--file={}", quote(&file.to_string_lossy())),
        format!("--host={}", quote(options.get_host())),
        format!("--port={}", options.get_port()),
        format!("--username={}", quote(options.get_username())),
    ];
    command.push(quote(options.get_database().unwrap_or(options.get_username())));
    Some(command.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_command_names_the_database_but_not_the_password() {
        let command =
            pg_dump_command("postgres://bulletin:s3cret@db.internal:5433/news", Path::new("/var/backups/b 1.dump"))
                .unwrap();
        assert_eq!(
            command,
            "pg_dump --format=custom --file='/var/backups/b 1.dump' --host=db.internal --port=5433 --username=bulletin news"
        );
        assert!(pg_dump_command("sqlite://data/bulletin.db", Path::new("x")).is_none());
    }
}
