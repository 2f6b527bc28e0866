//! The ceiling for `POST /subscribe`: the least a signup endpoint can do.
//!
//! An axum handler that reads the same form and does one INSERT into the
//! same kind of database, nothing else: no validation, no consent record,
//! no outbox. `bench/run` loads it and Bulletin in the same run and reports
//! their ratio.
//!
//! Usage: bulletin-bench-ceiling DATABASE_URL LISTEN_ADDR

use std::str::FromStr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Form, Router};
use serde::Deserialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Deserialize)]
struct Signup {
    email: String,
    newsletter: String,
}

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS signups (email TEXT PRIMARY KEY, newsletter TEXT NOT NULL, created_at BIGINT NOT NULL)";
const INSERT: &str =
    "INSERT INTO signups (email, newsletter, created_at) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING";

async fn subscribe(State(db): State<Db>, Form(form): Form<Signup>) -> StatusCode {
    let now = chrono::Utc::now().timestamp();
    let result = match &db {
        Db::Sqlite(pool) => {
            sqlx::query(INSERT).bind(&form.email).bind(&form.newsletter).bind(now).execute(pool).await.map(drop)
        }
        Db::Postgres(pool) => {
            sqlx::query(INSERT).bind(&form.email).bind(&form.newsletter).bind(now).execute(pool).await.map(drop)
        }
    };
    if result.is_ok() { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(listen)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bulletin-bench-ceiling DATABASE_URL LISTEN_ADDR");
    };
    // The same pool settings and pragmas Bulletin uses.
    let db = if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        Db::Sqlite(pool)
    } else {
        let pool = PgPoolOptions::new().max_connections(8).connect(&url).await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        Db::Postgres(pool)
    };
    let app = Router::new().route("/subscribe", post(subscribe)).with_state(db);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
