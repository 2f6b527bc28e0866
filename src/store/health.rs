//! Is the database usable right now? The check behind `/healthz`, and which
//! store errors mean "the database is unavailable" (503, try again shortly)
//! rather than a fault of ours (500).
//!
//! A database can answer reads while every write fails (a full disk, a
//! read-only database after a failover), so the check also writes: one row
//! of `settings` holding the time of the last write that succeeded, written
//! again only once it is older than [`WRITE_PROBE_INTERVAL`]. A probe costs
//! one small write every few seconds at most, however often `/healthz` is
//! asked and by however many instances; while writes fail the row stays old,
//! so every check tries again and sees the moment they work.
//!
//! The check runs in its own task: a client that hangs up mid-check cannot
//! leave the SQLite writer with a short busy timeout or a lock held, and
//! the caller gets an answer within [`HEALTH_BUDGET`] whatever the database does.

use std::time::Duration;

use sqlx::Connection;

use super::{Db, Store, StoreError, with_pool};

/// The longest a health check takes to answer.
pub const HEALTH_BUDGET: Duration = Duration::from_secs(3);
/// How long the check waits its turn for the SQLite writer, and then for the write lock.
const WRITER_WAIT: Duration = Duration::from_secs(1);
/// A health check writes at most once per this; in between, the last write's success stands.
pub const WRITE_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// The `settings` row the write probe keeps its time in (Unix milliseconds).
const WRITE_PROBE: &str = "health_write_probe";

/// Why the database is not usable.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the SQLite writer was not free within {} s", WRITER_WAIT.as_secs())]
    WriterBusy,
    #[error("the SQLite writer is stuck inside a transaction")]
    WriterStuck,
    #[error("the database did not answer within {} s", HEALTH_BUDGET.as_secs())]
    NoAnswer,
    #[error("the health check failed: {0}")]
    Check(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reads work, writes do not: the disk under the database is full.
    #[error("the database answers but its disk is full: {0}")]
    DiskFull(sqlx::Error),
    /// Reads work, writes do not: a read-only database (SQLite's READONLY;
    /// PostgreSQL's `read_only_sql_transaction`: a standby, `default_transaction_read_only`).
    #[error("the database answers but is read-only: {0}")]
    ReadOnly(sqlx::Error),
    /// Reads work, writes fail otherwise (an I/O error, a lock never granted).
    #[error("the database answers but refuses writes: {0}")]
    WritesFail(sqlx::Error),
}

/// What a failed write probe says about the database.
fn writes_fail(e: sqlx::Error) -> Unhealthy {
    match database_code(&e) {
        Some(DatabaseCode::Sqlite(code)) if code & 0xff == 13 => Unhealthy::DiskFull(e),
        Some(DatabaseCode::Sqlite(code)) if code & 0xff == 8 => Unhealthy::ReadOnly(e),
        Some(DatabaseCode::Postgres(code)) if code == "53100" => Unhealthy::DiskFull(e),
        Some(DatabaseCode::Postgres(code)) if code == "25006" => Unhealthy::ReadOnly(e),
        _ => Unhealthy::WritesFail(e),
    }
}

/// A database error's code: SQLite's numeric result code, PostgreSQL's SQLSTATE.
enum DatabaseCode {
    Sqlite(i32),
    Postgres(String),
}

fn database_code(e: &sqlx::Error) -> Option<DatabaseCode> {
    let sqlx::Error::Database(db) = e else { return None };
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
        Some(DatabaseCode::Postgres(code.into_owned()))
    } else {
        code.parse().ok().map(DatabaseCode::Sqlite)
    }
}

impl Store {
    /// A cheap real check: a read on the reading pool; on SQLite the writer
    /// taking and releasing the write lock (another process holding it, or a
    /// writer stuck in a failed transaction, shows here); and, at most every
    /// [`WRITE_PROBE_INTERVAL`], a write that must be stored.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn health(&self) -> Result<(), Unhealthy> {
        let store = self.clone();
        let check = tokio::spawn(async move { store.check_health().await });
        tokio::time::timeout(HEALTH_BUDGET, check).await.map_err(|_| Unhealthy::NoAnswer)??
    }

    async fn check_health(&self) -> Result<(), Unhealthy> {
        let last_write: Option<String> = super::reading!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(WRITE_PROBE)
                .fetch_optional(pool)
                .await?
        });
        if let Db::Sqlite(_) = &self.db {
            self.check_sqlite_writer().await?;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let due = last_write
            .and_then(|at| at.parse::<i64>().ok())
            .is_none_or(|at| now.saturating_sub(at) >= WRITE_PROBE_INTERVAL.as_millis() as i64 || at > now);
        if due {
            with_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )
                .bind(WRITE_PROBE)
                .bind(now.to_string())
                .execute(pool)
                .await
                .map_err(writes_fail)?;
            });
        }
        Ok(())
    }

    /// The writer is free and can take the write lock, within [`WRITER_WAIT`] each.
    async fn check_sqlite_writer(&self) -> Result<(), Unhealthy> {
        let Db::Sqlite(pools) = &self.db else { return Ok(()) };
        // The open connections keep working on a deleted file; only the path tells.
        self.check_file()?;
        let mut writer =
            tokio::time::timeout(WRITER_WAIT, pools.write.acquire()).await.map_err(|_| Unhealthy::WriterBusy)??;
        if writer.is_in_transaction() {
            return Err(Unhealthy::WriterStuck);
        }
        // PRAGMA takes no parameters; 10000 is the busy timeout `Store::connect` sets.
        sqlx::query("PRAGMA busy_timeout = 1000").execute(&mut *writer).await?;
        let locked = match writer.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx.rollback().await,
            Err(e) => Err(e),
        };
        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *writer).await?;
        Ok(locked?)
    }
}

impl StoreError {
    /// The database is unreachable, refusing connections, too busy to answer
    /// in time, out of room or refusing writes: the request may well succeed
    /// if tried again shortly, and it is not a fault of ours.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            StoreError::Database(e) => e,
            StoreError::FileGone(_) | StoreError::Unreachable { .. } | StoreError::NoAnswer { .. } => return true,
            StoreError::Migrate(_) | StoreError::UnsupportedUrl => return false,
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // connection_exception, operator intervention (shutdown, cannot
            // connect now), insufficient resources (disk full, too many
            // connections), database gone or not accepting connections, a
            // read-only transaction (a standby), an I/O error on the server, a lock
            // held elsewhere past `lock_timeout`.
            _ => match database_code(e) {
                Some(DatabaseCode::Postgres(code)) => {
                    ["08", "57P", "53"].iter().any(|class| code.starts_with(class))
                        || ["3D000", "55000", "25006", "58030", "55P03"].contains(&&*code)
                }
                // SQLite's primary result code: BUSY, READONLY, IOERR, FULL, CANTOPEN.
                Some(DatabaseCode::Sqlite(code)) => [5, 8, 10, 13, 14].contains(&(code & 0xff)),
                None => false,
            },
        }
    }
}
