//! How long the database may keep Bulletin waiting, and what an operator is
//! told when it did.
//!
//! Three deadlines, from `[database]`: opening a connection
//! (`connect_timeout_seconds`, kept by Bulletin itself, since a host that
//! takes the connection and never answers would otherwise hold a command
//! forever), and on PostgreSQL waiting for another session's lock
//! (`lock_timeout_seconds`) and running one statement
//! (`statement_timeout_seconds`), kept by the server as `lock_timeout` and
//! `statement_timeout` on every session. Migrations run without the statement
//! deadline (rewriting a large table may rightly take long) but with the lock
//! deadline, so a migration queued behind a long transaction gives up instead
//! of stalling every query queued behind it. SQLite waits 10 s for another
//! process's write lock (its busy timeout).

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError};

use super::{Result, StoreError};
use crate::config::DatabaseSettings;

/// How long the database may keep Bulletin waiting (`database.*_timeout_seconds`).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Opening a connection: TCP, TLS and logging in.
    pub connect: Duration,
    /// PostgreSQL: waiting for a lock another session holds.
    pub lock: Duration,
    /// PostgreSQL: running one statement (migrations are exempt).
    pub statement: Duration,
}

impl Deadlines {
    pub fn from_settings(database: &DatabaseSettings) -> Self {
        Self {
            connect: Duration::from_secs(database.connect_timeout_seconds),
            lock: Duration::from_secs(database.lock_timeout_seconds),
            statement: Duration::from_secs(database.statement_timeout_seconds),
        }
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        Self::from_settings(&DatabaseSettings::default())
    }
}

/// What an operator should know when `error` is one of the database's
/// deadlines passing: the database's own words ("canceling statement due to
/// lock timeout") say what happened but not why, or which setting it was.
pub fn deadline_note(error: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = error else { return None };
    let code = db.code()?;
    if db.try_downcast_ref::<PgDatabaseError>().is_some() {
        match &*code {
            "55P03" => Some(
                "another session held a lock it needed for longer than database.lock_timeout_seconds; \
                 look for a long transaction in pg_stat_activity",
            ),
            "57014" if db.message().contains("statement timeout") => {
                Some("the statement ran longer than database.statement_timeout_seconds")
            }
            _ => None,
        }
    } else if code.parse::<i32>().is_ok_and(|c| c & 0xff == 5) {
        Some("another process held the database's write lock for longer than 10 s")
    } else {
        None
    }
}

/// One direct connection before the pool is built, so a server that is
/// down, unknown, refusing us or silent says so at once and in its own words.
pub(super) async fn probe(options: &PgConnectOptions, within: Duration) -> Result<()> {
    let reason = match tokio::time::timeout(within, sqlx::PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(_) => return Err(no_answer(options, within).await),
        Ok(Err(sqlx::Error::Io(e))) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "the connection timed out".to_owned(),
            _ => e.to_string(),
        },
        Ok(Err(sqlx::Error::Database(e))) => e.message().to_owned(),
        Ok(Err(e)) => e.to_string(),
    };
    Err(StoreError::Unreachable { host: options.get_host().to_owned(), port: options.get_port(), reason })
}

/// Opens one connection within the connect deadline.
pub(super) async fn connect_within(options: &PgConnectOptions, within: Duration) -> Result<sqlx::PgConnection> {
    match tokio::time::timeout(within, sqlx::PgConnection::connect_with(options)).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(no_answer(options, within).await),
    }
}

/// A connection that was not made within `within`. Whether the host took
/// the TCP connection at all tells a silent server (stopped, overloaded, a
/// proxy with nothing behind it) from packets that go nowhere (a firewall,
/// a wrong address); a second, plain TCP connection finds out.
async fn no_answer(options: &PgConnectOptions, within: Duration) -> StoreError {
    let (host, port) = (options.get_host(), options.get_port());
    let socket = options.get_socket().is_some() || host.starts_with('/');
    let knock = tokio::time::timeout(within.min(Duration::from_secs(2)), tokio::net::TcpStream::connect((host, port)));
    let accepted = !socket && matches!(knock.await, Ok(Ok(_)));
    let (what, check) = if accepted || socket {
        (
            "accepted the connection but did not answer",
            "check that PostgreSQL itself listens there (not another service, or a proxy with nothing behind it) and is neither stopped nor overloaded",
        )
    } else {
        (
            "did not take the connection",
            "check the host and port in database.url and that no firewall drops the packets on the way",
        )
    };
    StoreError::NoAnswer { host: host.to_owned(), port, seconds: within.as_secs(), what, check }
}

/// A PostgreSQL setting's value in milliseconds, as `lock_timeout` and `statement_timeout` take it.
pub(super) fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Db, Store};

    /// The test server's URL, or `None` on a laptop without PostgreSQL.
    async fn postgres() -> Option<String> {
        let url = std::env::var("BULLETIN_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let required = std::env::var("BULLETIN_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        match sqlx::PgConnection::connect(&url).await {
            Ok(conn) => {
                let _ = conn.close().await;
                Some(url)
            }
            Err(e) if !required => {
                eprintln!("skipping: PostgreSQL not reachable at {url}: {e}");
                None
            }
            Err(e) => panic!("PostgreSQL is required (BULLETIN_TEST_REQUIRE_POSTGRES=1) but {url} failed: {e}"),
        }
    }

    /// Every session of the pools stops a statement at the statement
    /// deadline; the migrations' session lets it run, but still gives up
    /// waiting for a lock (here the advisory lock `migrate` takes, held by
    /// another session).
    #[tokio::test]
    async fn statements_stop_at_the_deadline_and_migrations_only_wait_so_long() {
        let Some(url) = postgres().await else { return };
        let second = Duration::from_secs(1);
        let deadlines = Deadlines { connect: Duration::from_secs(10), lock: second, statement: second };
        let store = Store::connect_with(&url, 1, deadlines).await.unwrap();
        let Db::Postgres(pools) = &store.db else { unreachable!("a PostgreSQL URL") };
        let statement_note = Some("the statement ran longer than database.statement_timeout_seconds");
        for pool in [&pools.main, &pools.relaxed] {
            let stopped = sqlx::query("SELECT pg_sleep(1.5)").execute(pool).await.unwrap_err();
            assert_eq!(deadline_note(&stopped), statement_note, "{stopped}");
        }

        let mut migrations = connect_within(&pools.migrations, deadlines.connect).await.unwrap();
        sqlx::query("SELECT pg_sleep(1.5)").execute(&mut migrations).await.expect("a long migration runs on");
        let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
        let key = i64::from(std::process::id()) << 16 | 0xdead;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut other).await.unwrap();
        let waited = sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut migrations).await.unwrap_err();
        let note = deadline_note(&waited).expect("a lock deadline");
        assert!(note.starts_with("another session held a lock"), "{note}");
        store.close().await;
    }
}
