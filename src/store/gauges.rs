//! What the metrics read from the database when scraped: the queue by kind
//! of mail, and the pools' connections.

use super::{Db, Result, Store, reading};
use crate::metrics::PoolUse;

impl Store {
    /// Messages waiting (`queued`, `retry`) or being sent, by kind:
    /// `confirmation`, `issue`, or `digest` for an issue a digest run made.
    ///
    /// The waiting rows are counted per issue first (a confirmation has no
    /// issue), from an index alone, so the digest look-up runs once per
    /// issue, not once per row.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT CASE WHEN w.issue_id IS NULL THEN 'confirmation' \
                 WHEN EXISTS (SELECT 1 FROM digest_runs r WHERE r.issue_id = w.issue_id) THEN 'digest' \
                 ELSE 'issue' END AS kind, CAST(SUM(w.n) AS BIGINT) AS waiting \
                 FROM (SELECT issue_id, COUNT(*) AS n FROM deliveries \
                       WHERE status IN ('queued', 'retry', 'sending') GROUP BY issue_id) w \
                 GROUP BY 1",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Each pool's connections now: no query, the pools' own counts.
    pub fn pool_use(&self) -> Vec<PoolUse> {
        fn of<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> PoolUse {
            PoolUse {
                pool: name,
                open: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        }
        match &self.db {
            Db::Sqlite(pools) => vec![of("read", &pools.read), of("write", &pools.write)],
            Db::Postgres(pools) => vec![of("main", &pools.main), of("relaxed", &pools.relaxed)],
        }
    }
}
