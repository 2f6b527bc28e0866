//! A plain connection to a test database, for what the store does not do.

/// An SQLite or PostgreSQL pool, by the URL's scheme.
pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Pool {
    pub async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite") {
            Self::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Self::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    pub async fn run(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap()
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// One count read straight from the database at `url`, as an operator's SQL would.
pub async fn count(url: &str, sql: &'static str) -> i64 {
    let pool = Pool::connect(url).await;
    let n = pool.count(sql).await;
    pool.close().await;
    n
}

/// Another session's open transaction holding locks, as a forgotten `psql`
/// session or a stuck job would: on PostgreSQL `tables` locked ACCESS
/// EXCLUSIVE (not even read), on SQLite the write lock of the whole file.
pub enum HeldLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl HeldLock {
    pub async fn take(url: &str, tables: &str) -> Self {
        use sqlx::Connection;
        if url.starts_with("sqlite") {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            Self::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let sql = format!("BEGIN; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
            Self::Postgres(conn)
        }
    }

    pub async fn release(self) {
        use sqlx::Connection;
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}
