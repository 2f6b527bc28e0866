//! The only place with SQL.
//!
//! One `Store` over SQLite (the single-box default) or PostgreSQL (several
//! boxes). Each query is written once with `$N` placeholders, valid on both,
//! and run on whichever pool the store holds by [`with_pool!`]/[`in_tx!`];
//! per-backend SQL appears only where the dialects really differ.

mod deliveries;
mod health;
mod issues;
mod newsletters;
mod subscribers;
mod suppressions;
mod tokens;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use deliveries::{ClaimedDelivery, DeliveryKind, Handover, Settlement};
pub use health::{HEALTH_BUDGET, Unhealthy};
pub use issues::IssueRow;
pub use subscribers::{
    Consent, MailCap, PreferenceChange, SignupOutcome, SignupRequest, SubscriberRow, SubscriptionState,
};
pub use suppressions::{ImportOutcome, ImportRow};
pub use tokens::{ConfirmOutcome, NewToken, TokenState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Store {
    db: Db,
}

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePools),
    Postgres(PgPools),
}

/// PostgreSQL: the main pool, and a small one whose sessions commit
/// without waiting for the WAL flush, for the delivery engine's
/// per-message bookkeeping (see [`relaxed!`]).
#[derive(Clone)]
struct PgPools {
    main: PgPool,
    relaxed: PgPool,
}

/// SQLite allows one writer at a time. Writers queue for the single write
/// connection in the pool (in order, in memory) instead of contending inside
/// SQLite, whose busy handler sleeps and turns a signup surge into
/// half-second tail latencies. Reads run side by side on their own pool.
#[derive(Clone)]
struct SqlitePools {
    read: SqlitePool,
    write: SqlitePool,
}

/// Runs `$body` with `$pool` bound to the named pool of whichever backend
/// the store holds: the one place that picks a pool.
macro_rules! on_pool {
    ($store:expr, $sqlite:ident, $postgres:ident, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite(pools) => {
                let $pool = &pools.$sqlite;
                $body
            }
            $crate::store::Db::Postgres(pools) => {
                let $pool = &pools.$postgres;
                $body
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to the store's pool, whatever its backend
/// (on SQLite the write connection: anything may write here).
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        $crate::store::on_pool!($store, write, main, |$pool| $body)
    };
}

/// Like [`with_pool!`] for statements that only read: on SQLite they run
/// beside the writer instead of queueing for it.
macro_rules! reading {
    ($store:expr, |$pool:ident| $body:expr) => {
        $crate::store::on_pool!($store, read, main, |$pool| $body)
    };
}

/// Runs `$body` inside a transaction bound to `$tx` and commits it.
///
/// SQLite transactions begin IMMEDIATE: taking the write lock up front means a
/// busy writer is waited for (`busy_timeout`) instead of failing on upgrade.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite(pools) => {
                let mut $tx = pools.write.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Db::Postgres(pools) => {
                let mut $tx = pools.main.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Runs one statement `$body` on `$conn` for the delivery engine's
/// per-message bookkeeping. On PostgreSQL it commits without waiting for
/// the WAL flush (`synchronous_commit = off`): an fsync per message would
/// cap sending at a few hundred a second. A crash of the application loses
/// nothing; only a crash of the database server itself can forget the last
/// fraction of a second of ledger updates (a handful of rows sent again).
/// SQLite in WAL mode with `synchronous = NORMAL` makes the same trade by default.
macro_rules! relaxed {
    ($store:expr, |$conn:ident| $body:expr) => {
        $crate::store::on_pool!($store, write, relaxed, |$conn| $body)
    };
}

pub(crate) use {in_tx, on_pool, reading, relaxed, with_pool};

/// Prepared statements kept per connection. Batched statements differ by
/// their number of rows, so there are a few hundred of them; with sqlx's
/// default of 100 they keep evicting each other and are parsed and planned
/// again on every use.
const STATEMENT_CACHE: usize = 1024;

/// The longest a query waits for a pooled connection (or for a new one to be
/// opened) before failing with a "try again shortly" answer, so a database
/// outage makes requests fail fast instead of hanging.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating an SQLite file if missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .statement_cache_capacity(STATEMENT_CACHE)
                .foreign_keys(true);
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
            }
            let pool = |max| SqlitePoolOptions::new().max_connections(max).acquire_timeout(ACQUIRE_TIMEOUT);
            let write = pool(1).connect_with(options.clone()).await?;
            let read = pool(max_connections).connect_with(options).await?;
            Ok(Self { db: Db::Sqlite(SqlitePools { read, write }) })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?.statement_cache_capacity(STATEMENT_CACHE);
            let pool = |max| PgPoolOptions::new().max_connections(max).acquire_timeout(ACQUIRE_TIMEOUT);
            let main = pool(max_connections).connect_with(options.clone()).await?;
            let relaxed = pool(4).connect_lazy_with(options.options([("synchronous_commit", "off")]));
            Ok(Self { db: Db::Postgres(PgPools { main, relaxed }) })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Applies the embedded migrations of this backend; safe to run on every start.
    pub async fn migrate(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite(pools) => sqlx::migrate!("./migrations/sqlite").run(&pools.write).await?,
            Db::Postgres(pools) => sqlx::migrate!("./migrations/postgres").run(&pools.main).await?,
        }
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(pools) => {
                pools.read.close().await;
                pools.write.close().await;
            }
            Db::Postgres(pools) => {
                pools.relaxed.close().await;
                pools.main.close().await;
            }
        }
    }

    /// Returns the value stored under `name`, storing `generate()` first if there is none.
    ///
    /// Safe when several instances start at once: the first insert wins and
    /// everyone reads the same value back.
    pub async fn setting_or_insert(&self, name: &str, generate: impl FnOnce() -> String) -> Result<String> {
        let candidate = generate();
        with_pool!(self, |pool| {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(&candidate)
                .execute(pool)
                .await?;
            let value: String =
                sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_one(pool).await?;
            Ok(value)
        })
    }
}
