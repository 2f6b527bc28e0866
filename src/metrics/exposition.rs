//! `GET /metrics` on `server.metrics_listen`: a listener of its own, so the
//! numbers are never on the public address by accident (there `/metrics` is
//! a 404 like any unknown path).
//!
//! A scrape first reads what only the database knows — the queue, in one
//! grouped query bounded by [`QUEUE_READ_BUDGET`] — and the pools, then
//! answers every series at once. The listener is the public one's
//! ([`web::serve`]): the same deadlines on slow and idle connections, and
//! far fewer of them.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Format, Metrics};
use crate::config::ServerSettings;
use crate::store::Store;
use crate::web::{self, ConnectionLimits};

/// The longest a scrape waits for the queue's numbers; past it the queue
/// series are left out of that scrape rather than holding the scraper.
pub const QUEUE_READ_BUDGET: Duration = Duration::from_secs(2);
/// Connections the metrics listener holds at once: a scraper or two, and a person with curl.
const CONNECTIONS: usize = 16;

/// What a scrape reads from.
#[derive(Clone)]
pub struct Exporter {
    pub metrics: Metrics,
    pub store: Store,
}

/// Binds `server.metrics_listen`, when it is set.
pub async fn bind(server: &ServerSettings) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = server.metrics_listen else { return Ok(None) };
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("could not listen on {addr} (server.metrics_listen)"))?;
    Ok(Some(listener))
}

/// Serves `GET /metrics` on `listener` until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    exporter: Exporter,
    server: &ServerSettings,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let limits = ConnectionLimits {
        header_read: Duration::from_secs(server.header_read_timeout_seconds),
        keepalive_idle: Duration::from_secs(server.keepalive_idle_seconds),
        max_connections: CONNECTIONS,
    };
    web::serve(listener, router(exporter), limits, stop)
}

pub fn router(exporter: Exporter) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Only /metrics is served here.\n") })
        .with_state(exporter)
}

async fn scrape(State(exporter): State<Exporter>, headers: HeaderMap) -> Response {
    let depth = match tokio::time::timeout(QUEUE_READ_BUDGET, exporter.store.queue_depth()).await {
        Ok(Ok(depth)) => Some(depth),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: could not read the queue depth");
            None
        }
        Err(_) => {
            tracing::warn!(
                budget_ms = QUEUE_READ_BUDGET.as_millis() as u64,
                "metrics: the queue depth took too long to read; left out of this scrape"
            );
            None
        }
    };
    exporter.metrics.queue_depth(depth.as_deref());
    exporter.metrics.pools(&exporter.store.pool_use());
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    ([(header::CONTENT_TYPE, format.content_type())], exporter.metrics.encode(format)).into_response()
}
