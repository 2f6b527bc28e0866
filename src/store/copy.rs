//! `bulletin migrate --to postgres://…`: moving a site from SQLite to
//! PostgreSQL with everything it holds.
//!
//! Every table is copied row for row with its ids, so links already mailed
//! (which carry subscriber ids and link salts), Message-IDs (delivery ids),
//! the consent record, hashed confirmation tokens and the link secret in
//! `settings` all work on the new database as on the old. The rules:
//!
//! - The copier names every table and column it copies ([`TABLES`]). A table
//!   or column in either database that it does not name stops the copy
//!   before anything is written, so a later migration cannot be dropped
//!   silently; so does a column whose types differ (SQLite `INTEGER` must be
//!   PostgreSQL `bigint`, `TEXT` must be `text`).
//! - The source is read in one snapshot (one SQLite read transaction); the
//!   target is written in one PostgreSQL transaction, in batches: a failure
//!   anywhere leaves the target as it was.
//! - The target must hold no rows (its migrations' `settings` excepted, which
//!   the source's values replace).
//! - Every identity sequence is set past the highest id the source ever
//!   handed out (SQLite's `sqlite_sequence` remembers ids of erased rows), so
//!   an id that reached the outside is never given to anyone else.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row as _};

use super::{Db, Store};

/// Why nothing was copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("migrate --to copies an SQLite database (database.url) into PostgreSQL (--to postgres://…)")]
    Backends,
    #[error(
        "the PostgreSQL database already holds {0}; migrate --to copies only into an empty database: create a new one (createdb) or empty this one, then run it again"
    )]
    TargetNotEmpty(String),
    #[error(
        "the {side} database has a table \"{table}\" that this version of bulletin does not know how to copy; nothing was copied (use the bulletin that made it)"
    )]
    UnknownTable { side: &'static str, table: String },
    #[error("table {table}: {detail}; nothing was copied")]
    Schema { table: &'static str, detail: String },
    #[error("copying table {table} failed, nothing was copied: {source}")]
    Rows { table: &'static str, source: sqlx::Error },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// One table the copier knows: its columns (every one of them) and its SQL.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    /// `SELECT rowid, <columns> FROM <name> WHERE rowid > $1 ORDER BY rowid LIMIT $2`
    select: &'static str,
    /// `INSERT INTO <name> (<columns>) `, followed by `VALUES …`.
    insert: &'static str,
    /// What follows the values (settings: the source's values win).
    conflict: &'static str,
    count: &'static str,
}

macro_rules! table {
    ($name:literal: $first:literal $(, $column:literal)* $(; $conflict:literal)?) => {
        Table {
            name: $name,
            columns: &[$first $(, $column)*],
            select: concat!("SELECT rowid, ", $first $(, ", ", $column)*, " FROM ", $name,
                " WHERE rowid > $1 ORDER BY rowid LIMIT $2"),
            insert: concat!("INSERT INTO ", $name, " (", $first $(, ", ", $column)*, ") "),
            conflict: concat!("" $(, $conflict)?),
            count: concat!("SELECT COUNT(*) FROM ", $name),
        }
    };
}

/// Every table the migrations define, in an order that inserts each row
/// after the rows it refers to, with every column but [`LATER`]'s.
const TABLES: &[Table] = &[
    table!("newsletters": "id", "slug", "name", "description", "created_at"),
    table!("subscribers": "id", "email", "email_key", "created_at", "suppressed_at", "link_salt", "name",
        "suppressed_reason"),
    table!("subscriptions": "subscriber_id", "newsletter_id", "status", "created_at", "confirmed_at",
        "unsubscribed_at", "rhythm", "timezone", "digest_through"),
    table!("confirmation_tokens": "token_hash", "subscriber_id", "created_at", "expires_at", "used_at"),
    table!("consent_events": "id", "subscriber_id", "newsletter_id", "action", "source", "ip", "user_agent",
        "created_at"),
    table!("digest_runs": "id", "newsletter_id", "stream", "period_start", "period_label", "status", "reason",
        "items", "recipients", "created_at"),
    table!("issues": "id", "newsletter_id", "subject", "body_markdown", "content_hash", "status", "paused_reason",
        "policy_failures", "created_at", "completed_at", "digest_run_id", "preheader"),
    table!("items": "id", "newsletter_id", "dedup_key", "title", "url", "summary", "source", "published_at",
        "added_at"),
    table!("digest_items": "run_id", "item_id", "stream", "position"),
    table!("issue_items": "issue_id", "item_id", "position"),
    table!("feeds": "newsletter_id", "url", "etag", "last_modified", "fetched_at", "ok_at", "last_error"),
    table!("deliveries": "id", "kind", "issue_id", "subscriber_id", "status", "attempts", "next_attempt_at",
        "claim_token", "lease_until", "last_reply", "created_at", "sent_at", "message_nonce"),
    table!("feedback_events": "id", "subscriber_id", "delivery_id", "issue_id", "kind", "source", "detail",
        "report_id", "created_at"),
    table!("sender_refusals": "id", "issue_id", "delivery_id", "domain", "reason", "source", "created_at"),
    table!("suppressions": "email_hash", "reason", "created_at"),
    table!("settings": "name", "value"; " ON CONFLICT (name) DO UPDATE SET value = excluded.value"),
];

/// A column that refers to a table copied after its own (issues and digest
/// runs name each other): filled in once every table is in.
struct Later {
    table: &'static str,
    column: &'static str,
    select: &'static str,
    update: (&'static str, &'static str),
}

const LATER: &[Later] = &[Later {
    table: "digest_runs",
    column: "issue_id",
    select: "SELECT id, issue_id FROM digest_runs WHERE issue_id IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
    update: (
        "UPDATE digest_runs SET issue_id = v.issue_id FROM (",
        ") AS v (id, issue_id) WHERE digest_runs.id = v.id",
    ),
}];

/// Rows read and written at a time.
const BATCH: i64 = 1000;
/// PostgreSQL takes at most 65 535 parameters in one statement.
const MAX_PARAMETERS: usize = 60_000;

/// One value on its way; the target column's type decides how it is read.
enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
}

/// What was copied: rows per table, in copy order.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64)>,
}

impl Store {
    /// Copies everything in this (SQLite) store into `target` (PostgreSQL,
    /// migrated and empty). Nothing is written unless everything is.
    pub async fn copy_into(&self, target: &Store) -> Result<CopyReport, CopyError> {
        let (Db::Sqlite(source), Db::Postgres(pg)) = (&self.db, &target.db) else {
            return Err(CopyError::Backends);
        };
        let mut src = source.read.begin().await?;
        let mut dst = pg.main.begin().await?;
        let kinds = check_schemas(&mut src, &mut dst).await?;
        refuse_rows(&mut dst).await?;

        let mut report = CopyReport::default();
        let mut highest: BTreeMap<&'static str, i64> = BTreeMap::new();
        for table in TABLES {
            let kinds: Vec<Kind> = table.columns.iter().map(|c| kinds[&(table.name, *c)]).collect();
            let (rows, max_id) = copy_table(&mut src, &mut dst, table, &kinds)
                .await
                .map_err(|source| CopyError::Rows { table: table.name, source })?;
            if let Some(id) = max_id {
                highest.insert(table.name, id);
            }
            report.tables.push((table.name, rows));
        }
        for later in LATER {
            fill_later(&mut src, &mut dst, later)
                .await
                .map_err(|source| CopyError::Rows { table: later.table, source })?;
        }
        let handed_out: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, seq FROM sqlite_sequence").fetch_all(&mut *src).await?;
        for (name, seq) in handed_out {
            if let Some(table) = TABLES.iter().find(|t| t.name == name) {
                let high = highest.entry(table.name).or_default();
                *high = (*high).max(seq);
            }
        }
        set_sequences(&mut dst, &highest).await?;
        dst.commit().await?;
        src.rollback().await?;
        Ok(report)
    }
}

/// Both schemas hold exactly the tables and columns the copier knows, with
/// matching types; returns each column's type.
async fn check_schemas(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
) -> Result<BTreeMap<(&'static str, &'static str), Kind>, CopyError> {
    let known: BTreeSet<&str> = TABLES.iter().map(|t| t.name).collect();
    let source_tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *src)
    .await?;
    let target_tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
         AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&mut *dst)
    .await?;
    for (side, tables) in [("SQLite", &source_tables), ("PostgreSQL", &target_tables)] {
        if let Some(table) = tables.iter().find(|t| !known.contains(t.as_str())) {
            return Err(CopyError::UnknownTable { side, table: table.clone() });
        }
    }

    let mut kinds = BTreeMap::new();
    for table in TABLES {
        let columns: Vec<&'static str> = table
            .columns
            .iter()
            .copied()
            .chain(LATER.iter().filter(|l| l.table == table.name).map(|l| l.column))
            .collect();
        let expected: BTreeSet<&str> = columns.iter().copied().collect();
        let source: BTreeMap<String, String> = sqlx::query_as("SELECT name, type FROM pragma_table_info($1)")
            .bind(table.name)
            .fetch_all(&mut *src)
            .await?
            .into_iter()
            .collect();
        let target: BTreeMap<String, String> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table.name)
        .fetch_all(&mut *dst)
        .await?
        .into_iter()
        .collect();
        for (side, found) in [("SQLite", &source), ("PostgreSQL", &target)] {
            if found.is_empty() {
                return Err(CopyError::Schema {
                    table: table.name,
                    detail: format!("the {side} database has no such table; run `bulletin migrate` on it"),
                });
            }
            let found: BTreeSet<&str> = found.keys().map(String::as_str).collect();
            if found != expected {
                let unknown: Vec<&str> = found.difference(&expected).copied().collect();
                let missing: Vec<&str> = expected.difference(&found).copied().collect();
                return Err(CopyError::Schema {
                    table: table.name,
                    detail: format!(
                        "the {side} database's columns are not the ones this bulletin copies (unknown: {unknown:?}, missing: {missing:?})"
                    ),
                });
            }
        }
        for column in columns {
            let kind = match (source[column].to_ascii_uppercase().as_str(), target[column].as_str()) {
                ("INTEGER", "bigint") => Kind::Int,
                ("TEXT", "text") => Kind::Text,
                (s, t) => {
                    return Err(CopyError::Schema {
                        table: table.name,
                        detail: format!("column {column} is {s} in SQLite but {t} in PostgreSQL"),
                    });
                }
            };
            kinds.insert((table.name, column), kind);
        }
    }
    Ok(kinds)
}

/// Refuses a target that holds anything but the settings its migrations wrote.
async fn refuse_rows(dst: &mut PgConnection) -> Result<(), CopyError> {
    let mut held = vec![];
    for table in TABLES.iter().filter(|t| t.name != "settings") {
        let rows: i64 = sqlx::query_scalar(table.count).fetch_one(&mut *dst).await?;
        if rows > 0 {
            held.push(format!("{rows} row(s) in {}", table.name));
        }
    }
    if held.is_empty() { Ok(()) } else { Err(CopyError::TargetNotEmpty(held.join(", "))) }
}

/// Copies one table in batches; returns its row count and, for a table
/// with an `id`, the highest id copied.
async fn copy_table(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    table: &Table,
    kinds: &[Kind],
) -> Result<(u64, Option<i64>), sqlx::Error> {
    let per_batch = BATCH.min((MAX_PARAMETERS / kinds.len()) as i64);
    let has_id = table.columns.first() == Some(&"id");
    let (mut after, mut copied, mut max_id) = (i64::MIN, 0u64, None);
    loop {
        let rows = sqlx::query(table.select).bind(after).bind(per_batch).fetch_all(&mut *src).await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        let mut cells = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(kinds.len());
            for (i, kind) in kinds.iter().enumerate() {
                values.push(match kind {
                    Kind::Int => Cell::Int(row.try_get(i + 1)?),
                    Kind::Text => Cell::Text(row.try_get(i + 1)?),
                });
            }
            if has_id && let Some(Cell::Int(Some(id))) = values.first() {
                max_id = Some(max_id.map_or(*id, |m: i64| m.max(*id)));
            }
            cells.push(values);
        }
        let mut qb = QueryBuilder::new(table.insert);
        qb.push_values(cells, |mut b, values| {
            for value in values {
                match value {
                    Cell::Int(v) => b.push_bind(v),
                    Cell::Text(v) => b.push_bind(v),
                };
            }
        });
        qb.push(table.conflict);
        qb.build().execute(&mut *dst).await?;
        copied += rows.len() as u64;
    }
    Ok((copied, max_id))
}

/// Fills in a [`Later`] column on the target.
async fn fill_later(src: &mut SqliteConnection, dst: &mut PgConnection, later: &Later) -> Result<(), sqlx::Error> {
    let mut after = i64::MIN;
    loop {
        let rows: Vec<(i64, i64)> = sqlx::query_as(later.select).bind(after).bind(BATCH).fetch_all(&mut *src).await?;
        let Some(&(last, _)) = rows.last() else { return Ok(()) };
        after = last;
        let mut qb = QueryBuilder::new(later.update.0);
        qb.push_values(rows, |mut b, (id, value)| {
            b.push_bind(id).push_bind(value);
        });
        qb.push(later.update.1);
        qb.build().execute(&mut *dst).await?;
    }
}

/// Sets each identity column's sequence so the next id is above `highest`.
async fn set_sequences(dst: &mut PgConnection, highest: &BTreeMap<&'static str, i64>) -> Result<(), CopyError> {
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut *dst)
    .await?;
    for (table, column) in identities {
        let high = highest.get(table.as_str()).copied().unwrap_or(0);
        sqlx::query("SELECT setval(pg_get_serial_sequence($1, $2), GREATEST($3, 1), $3 > 0)")
            .bind(&table)
            .bind(&column)
            .bind(high)
            .execute(&mut *dst)
            .await?;
    }
    Ok(())
}
