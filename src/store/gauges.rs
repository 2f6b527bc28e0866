//! What the metrics read from the database when scraped: the queue by kind
//! of mail, and the pools' connections.

use super::{Db, Result, Store, reading};
use crate::metrics::PoolUse;

impl Store {
    /// Messages waiting (`queued`, `retry`) or being sent, by kind:
    /// `confirmation`, `issue`, or `digest` for an issue a digest run made.
    ///
    /// Counted per unfinished issue (and once for confirmations, which have
    /// no issue) along `deliveries_due_by_issue`, from the index alone: the
    /// cost follows the open queue, not the ledger's whole history.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn queue_depth(&self) -> Result<Vec<(String, i64)>> {
        reading!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT w.kind, CAST(SUM(w.n) AS BIGINT) AS waiting FROM (\
                 SELECT 'confirmation' AS kind, COUNT(*) AS n FROM deliveries \
                 WHERE issue_id IS NULL AND status IN ('queued', 'retry', 'sending') \
                 UNION ALL \
                 SELECT CASE WHEN i.digest_run_id IS NULL THEN 'issue' ELSE 'digest' END, \
                 (SELECT COUNT(*) FROM deliveries d \
                  WHERE d.issue_id = i.id AND d.status IN ('queued', 'retry', 'sending')) \
                 FROM issues i WHERE i.status <> 'done') w \
                 GROUP BY w.kind",
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
