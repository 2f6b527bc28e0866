//! Is the database usable right now? The check behind `/healthz`, and which
//! store errors mean "the database is unavailable" (503, try again shortly)
//! rather than a fault of ours (500).
//!
//! The check runs in its own task: a client that hangs up mid-check cannot
//! leave the SQLite writer with a short busy timeout or a lock held, and
//! the caller gets an answer within [`HEALTH_BUDGET`] whatever the database does.

use std::time::Duration;

use sqlx::Connection;

use super::{Db, Store, StoreError};

/// The longest a health check takes to answer.
pub const HEALTH_BUDGET: Duration = Duration::from_secs(3);
/// How long the check waits its turn for the SQLite writer, and then for the write lock.
const WRITER_WAIT: Duration = Duration::from_secs(1);

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
}

impl Store {
    /// A cheap real check: a read on the reading pool and, on SQLite, the
    /// writer taking and releasing the write lock (another process holding
    /// it, or a writer stuck in a failed transaction, shows here).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn health(&self) -> Result<(), Unhealthy> {
        let store = self.clone();
        let check = tokio::spawn(async move { store.check_health().await });
        tokio::time::timeout(HEALTH_BUDGET, check).await.map_err(|_| Unhealthy::NoAnswer)??
    }

    async fn check_health(&self) -> Result<(), Unhealthy> {
        super::reading!(self, |pool| {
            sqlx::query("SELECT 1 FROM settings LIMIT 1").fetch_optional(pool).await?;
        });
        let Db::Sqlite(pools) = &self.db else {
            return Ok(());
        };
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
    /// The database is unreachable, refusing connections or too busy to
    /// answer in time: the request may well succeed if tried again shortly.
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
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                    // connection_exception, operator intervention (shutdown, cannot
                    // connect now), too many connections, database gone or not
                    // accepting connections, a lock held elsewhere past `lock_timeout`.
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || ["53300", "3D000", "55000", "55P03"].contains(&&*code)
                } else {
                    // SQLite's primary result code: BUSY, IOERR, FULL, CANTOPEN.
                    code.parse::<i32>().is_ok_and(|c| [5, 10, 13, 14].contains(&(c & 0xff)))
                }
            }
            _ => false,
        }
    }
}
