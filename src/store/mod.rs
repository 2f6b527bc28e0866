//! The only place with SQL.
//!
//! One `Store` over SQLite (the single-box default) or PostgreSQL (several
//! boxes). Each query is written once with `$N` placeholders, valid on both,
//! and run on whichever pool the store holds by [`with_pool!`]/[`in_tx!`];
//! per-backend SQL appears only where the dialects really differ.

mod backup;
mod copy;
mod deadlines;
mod deliveries;
mod digests;
mod feedback;
mod gauges;
mod health;
mod imports;
mod issues;
mod items;
mod mail_server;
mod newsletters;
mod readers;
mod refusals;
mod rhythms;
mod signups;
mod stats;
mod subscribers;
mod suppressions;
mod tokens;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use backup::{BackupError, BackupReport, backup_sqlite, pg_dump_command};
pub use copy::{CopyError, CopyReport};
pub use deadlines::{Deadlines, deadline_note};
use deadlines::{connect_within, millis, probe};
pub use deliveries::{ClaimedDelivery, DeliveryKind, Handover, Settlement};
pub use digests::{DigestOutcome, DigestRequest, DigestRunRow, DigestRunStatus};
pub use feedback::{ComplaintOutcome, FeedbackCounts, FeedbackDelivery, FeedbackEvent};
pub use health::{HEALTH_BUDGET, Unhealthy};
pub use imports::{ImportOutcome, ImportRow, ImportWish};
pub use issues::{IssueRow, NewIssue};
pub use items::{FeedFetch, FeedState, ItemRow};
pub use mail_server::{MailServerWait, RelayCap};
pub use readers::SubscriberRecord;
pub use rhythms::{RhythmRequest, RhythmSlot};
pub use stats::{DAY, DailyRow, IssueTally, UNSUBSCRIBE_WINDOW};
pub use subscribers::{
    Consent, ConsentEvent, MailCap, PreferenceChange, RequestedSubscription, SignupOutcome, SignupRequest,
    SubscriberRow, SubscriptionState,
};
pub use suppressions::{BounceRecord, Suppression};
pub use tokens::{ConfirmOutcome, NewToken, TokenState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// The SQLite file was deleted or replaced under the running process:
    /// writing on would go into an unlinked file and be lost at exit.
    #[error(
        "the database file {} was deleted or replaced while Bulletin was running; nothing is stored until it is restored and Bulletin restarted",
        .0.display()
    )]
    FileGone(PathBuf),
    /// The first connection to PostgreSQL failed; the pool alone would retry
    /// until its timeout and then say only "pool timed out".
    #[error(
        "could not connect to PostgreSQL at {host}:{port}: {reason}; check that the server is running and that the URL names the right host, port, user and database"
    )]
    Unreachable { host: String, port: u16, reason: String },
    /// Opening a connection took longer than `database.connect_timeout_seconds`:
    /// without a deadline a host that takes the connection and never
    /// answers would keep every command waiting forever.
    #[error(
        "PostgreSQL at {host}:{port} {what} within {seconds} s; {check} (database.connect_timeout_seconds sets the wait)"
    )]
    NoAnswer { host: String, port: u16, seconds: u64, what: &'static str, check: &'static str },
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
    /// Migrations run on a connection of their own, without the statement
    /// deadline: rewriting a large table may rightly take longer.
    migrations: Arc<PgConnectOptions>,
    connect_deadline: Duration,
}

/// SQLite allows one writer at a time. Writers queue for the single write
/// connection in the pool (in order, in memory) instead of contending inside
/// SQLite, whose busy handler sleeps and turns a signup surge into
/// half-second tail latencies. Reads run side by side on their own pool.
///
/// The database file opened at start is the only one written: a file
/// deleted or replaced under the running process fails every write loudly
/// ([`StoreError::FileGone`]) instead of letting it vanish with an unlinked
/// inode, and connections opened later never create a fresh empty file.
#[derive(Clone)]
struct SqlitePools {
    read: SqlitePool,
    write: SqlitePool,
    file: Option<Arc<DbFile>>,
}

/// The SQLite database file and the identity it had when it was opened.
struct DbFile {
    path: PathBuf,
    id: FileId,
}

#[cfg(unix)]
type FileId = (u64, u64);
#[cfg(not(unix))]
type FileId = ();

fn file_id(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(())
    }
}

impl DbFile {
    /// A `stat` per write: cheap next to the write itself.
    fn check(&self) -> Result<()> {
        match file_id(&self.path) {
            Ok(id) if id == self.id => Ok(()),
            _ => {
                tracing::error!(path = %self.path.display(), "the database file was deleted or replaced under the running process");
                Err(StoreError::FileGone(self.path.clone()))
            }
        }
    }
}

/// Keeps the write connection only if it is outside any transaction.
///
/// SQLite rolls a transaction back by itself on some errors (a full disk,
/// an I/O error). sqlx still counts it as open: the rollback it queues when
/// the transaction is dropped fails ("no transaction is active") and every
/// later `BEGIN` on that connection is refused ("attempted to call
/// begin_with at non-zero transaction depth"), so one failed write would
/// stop all writing until a restart. Such a connection is closed instead,
/// and the pool opens a fresh one for the next writer.
async fn left_clean(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // The dropped transaction's rollback was queued ahead of this ping.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("closing the SQLite write connection: a failed write left it inside a transaction");
        return Ok(false);
    }
    Ok(true)
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
    ($store:expr, |$pool:ident| $body:expr) => {{
        $store.check_file()?;
        $crate::store::on_pool!($store, write, main, |$pool| $body)
    }};
}

/// Like [`with_pool!`] for statements that only read: on SQLite they run
/// beside the writer instead of queueing for it.
macro_rules! reading {
    ($store:expr, |$pool:ident| $body:expr) => {
        $crate::store::on_pool!($store, read, main, |$pool| $body)
    };
}

/// Runs `$body` inside a transaction bound to `$tx` and commits it (or,
/// with `commit: false`, rolls it back: a rehearsal that changes nothing).
///
/// SQLite transactions begin IMMEDIATE: taking the write lock up front means a
/// busy writer is waited for (`busy_timeout`) instead of failing on upgrade.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        $crate::store::in_tx!($store, commit: true, |$tx| $body)
    };
    ($store:expr, commit: $commit:expr, |$tx:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite(pools) => {
                $store.check_file()?;
                let mut $tx = pools.write.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                if $commit { $tx.commit().await? } else { $tx.rollback().await? }
                out
            }
            $crate::store::Db::Postgres(pools) => {
                let mut $tx = pools.main.begin().await?;
                let out = $body;
                if $commit { $tx.commit().await? } else { $tx.rollback().await? }
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
    ($store:expr, |$conn:ident| $body:expr) => {{
        $store.check_file()?;
        $crate::store::on_pool!($store, write, relaxed, |$conn| $body)
    }};
}

pub(crate) use {in_tx, on_pool, reading, relaxed, with_pool};

/// Prepared statements kept per connection. Batched statements differ by
/// their number of rows, so there are a few hundred of them; with sqlx's
/// default of 100 they keep evicting each other and are parsed and planned
/// again on every use.
const STATEMENT_CACHE: usize = 1024;

/// (version, description) of the migrations recorded.
type Applied = Vec<(i64, String)>;

/// The migrations recorded, or none before the first (no table yet: a
/// brand-new database); any other error, such as a lock held elsewhere, is one.
fn no_table_is_none(rows: Result<Applied, sqlx::Error>) -> Result<Applied> {
    match rows {
        Err(sqlx::Error::Database(e))
            if e.code().as_deref() == Some("42P01") || e.message().starts_with("no such table") =>
        {
            Ok(vec![])
        }
        rows => Ok(rows?),
    }
}

/// The longest a query waits for a pooled connection (or for a new one to be
/// opened) before failing with a "try again shortly" answer, so a database
/// outage makes requests fail fast instead of hanging.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`) with the
    /// default deadlines, creating an SQLite file if missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, max_connections, Deadlines::default()).await
    }

    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating an
    /// SQLite file if missing. On PostgreSQL every session gets
    /// `lock_timeout` and `statement_timeout` from `deadlines`; SQLite waits
    /// for another process's write lock 10 s (its busy timeout).
    pub async fn connect_with(url: &str, max_connections: u32, deadlines: Deadlines) -> Result<Self> {
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
            // Created here once; a connection opened later finds the file or fails.
            SqliteConnection::connect_with(&options).await?.close().await?;
            let options = options.create_if_missing(false);
            let path = options.get_filename().to_owned();
            let file = file_id(&path).ok().map(|id| Arc::new(DbFile { path, id }));
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_release(|conn, _| Box::pin(left_clean(conn)))
                .connect_with(options.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            Ok(Self { db: Db::Sqlite(SqlitePools { read, write, file }) })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?.statement_cache_capacity(STATEMENT_CACHE);
            probe(&options, deadlines.connect).await?;
            let lock = ("lock_timeout", millis(deadlines.lock));
            let migrations = Arc::new(options.clone().options([lock.clone(), ("statement_timeout", "0".to_owned())]));
            let options = options.options([lock, ("statement_timeout", millis(deadlines.statement))]);
            // The acquire timeout also bounds opening a pooled connection.
            let acquire = ACQUIRE_TIMEOUT.min(deadlines.connect);
            let pool = |max| PgPoolOptions::new().max_connections(max).acquire_timeout(acquire);
            let main = pool(max_connections).connect_with(options.clone()).await?;
            let relaxed = pool(4).connect_lazy_with(options.options([("synchronous_commit", "off")]));
            Ok(Self { db: Db::Postgres(PgPools { main, relaxed, migrations, connect_deadline: deadlines.connect }) })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Applies the embedded migrations of this backend; safe to run on every start.
    /// Brings the schema up to date; returns the descriptions of the
    /// migrations applied now (all of them on a brand-new database).
    pub async fn migrate(&self) -> Result<Vec<String>> {
        const SQL: &str = "SELECT version, description FROM _sqlx_migrations ORDER BY version";
        let (before, after): (Applied, Applied) = match &self.db {
            Db::Sqlite(pools) => {
                let before = no_table_is_none(sqlx::query_as(SQL).fetch_all(&pools.write).await)?;
                sqlx::migrate!("./migrations/sqlite").run(&pools.write).await?;
                (before, sqlx::query_as(SQL).fetch_all(&pools.write).await?)
            }
            Db::Postgres(pools) => {
                let mut conn = connect_within(&pools.migrations, pools.connect_deadline).await?;
                let before = no_table_is_none(sqlx::query_as(SQL).fetch_all(&mut conn).await)?;
                sqlx::migrate!("./migrations/postgres").run(&mut conn).await?;
                let after = sqlx::query_as(SQL).fetch_all(&mut conn).await?;
                let _ = conn.close().await;
                (before, after)
            }
        };
        Ok(after.into_iter().filter(|m| !before.contains(m)).map(|(_, description)| description).collect())
    }

    /// Fails once the SQLite file opened at start is gone (see [`SqlitePools`]).
    fn check_file(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite(SqlitePools { file: Some(file), .. }) => file.check(),
            _ => Ok(()),
        }
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
