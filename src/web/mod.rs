//! The HTTP face of Bulletin: router, per-request plumbing, security headers.
//!
//! Handlers are thin: extract, call `signup`, render. Request logs name the
//! route template (`/confirm/{token}`), never the path, so tokens stay out of logs.
//! Every request body is read before any handler, bounded in size, time and
//! total bytes held ([`body`]); the listener ([`serve`]) bounds connections.

mod api;
mod body;
pub mod client;
mod embed;
mod error;
mod frames;
mod items;
mod pages;
mod preferences;
mod serve;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipnet::IpNet;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument as _;

use crate::digest::Digests;
use crate::domain::ConsentSource;
use crate::metrics::{Metrics, SignupOutcome};
use crate::signup::Signup;
use crate::store::Store;
pub use body::OPEN_BODY_BUDGET;
use body::{BodyReader, read_body};
use client::{ClientIp, IpLimiter};
pub use embed::{SnippetKind, box_policy, snippet};
pub use items::ApiTokens;
pub use serve::{ConnectionLimits, serve};
pub use webhooks::WebhookAccess;

/// Largest request body we read: a signup form is a few hundred bytes.
const BODY_LIMIT: usize = 16 * 1024;

/// What every handler shares. Handlers receive it by value on every
/// request, so it is one `Arc` to clone, not a struct full of them.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub signup: Signup,
    /// For `POST /api/items`: stories go to digest newsletters only.
    pub digests: Digests,
    /// For `/healthz`, which asks the database itself.
    pub store: Store,
    /// How long a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// Sites allowed to call the JSON API from a browser and to frame the boxes.
    pub allowed_origins: Arc<[HeaderValue]>,
    /// The boxes' Content-Security-Policy, made once from `allowed_origins`.
    pub box_policy: HeaderValue,
    /// Signup limits per client IP; authenticated API routes are exempt.
    pub limiter: Option<Arc<IpLimiter>>,
    /// Who may call `POST /api/items`; empty: the route does not exist.
    pub api_tokens: ApiTokens,
    /// Who may post bounces and complaints to `/webhooks/…`; `None`: those routes do not exist.
    pub webhooks: Option<Arc<WebhookAccess>>,
    pub trusted_proxies: Arc<[IpNet]>,
    pub form_min_secs: u64,
    pub form_max_age_secs: u64,
    /// What the requests count: signups by outcome, latencies by route.
    pub metrics: Metrics,
}

pub fn router(state: AppState) -> Router {
    // Browsers on other sites may call the JSON API only from the configured
    // origins; plain HTML forms post cross-origin without CORS anyway.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(state.allowed_origins.iter().cloned()))
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(3600));
    let api = Router::new()
        .route("/api/subscriptions", post(api::create_subscription))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_per_ip))
        .layer(cors);
    let signups = Router::new()
        .route("/subscribe", post(pages::subscribe))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_per_ip))
        .merge(api);
    // Pages behind emailed tokens: never cached, never leaked by Referer.
    let tokened = Router::new()
        .route("/confirm/{token}", get(pages::confirm_page).post(pages::confirm))
        .route("/unsubscribe/{token}", get(pages::unsubscribe_page).post(pages::unsubscribe))
        .route("/preferences/{token}", get(preferences::preferences_page).post(preferences::update_preferences))
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    // Routes behind a secret check it before a byte of the body is read.
    let behind_secret =
        |limit| middleware::from_fn_with_state(BodyReader::behind_secret(limit, state.body_read_timeout), read_body);
    // Server to server: a bearer token instead of CORS and the per-IP limit.
    let mut authenticated = Router::new();
    if !state.api_tokens.is_empty() {
        authenticated = authenticated
            .route("/api/items", post(items::add_item))
            .route_layer(behind_secret(BODY_LIMIT))
            .route_layer(middleware::from_fn_with_state(state.clone(), items::require_api_token));
    }
    // Providers posting bounces: a path token or basic auth, then one of a few
    // slots, and only then the body, with a larger limit.
    let mut hooks = Router::new();
    if let Some(access) = &state.webhooks {
        let receive = || post(webhooks::receive).route_layer(behind_secret(webhooks::BODY_LIMIT));
        if access.by_token() {
            let admit = middleware::from_fn_with_state(state.clone(), webhooks::admit_by_token);
            hooks = hooks.route("/webhooks/{provider}/{token}", receive().route_layer(admit));
        }
        if access.by_basic_auth() {
            let admit = middleware::from_fn_with_state(state.clone(), webhooks::admit_by_basic_auth);
            hooks = hooks.route("/webhooks/{provider}", receive().route_layer(admit));
        }
        hooks = hooks.layer(DefaultBodyLimit::max(webhooks::BODY_LIMIT));
    }
    let open_body = BodyReader::open(BODY_LIMIT, state.body_read_timeout);
    // Pages, boxes, embed.js and JSON go compressed to clients that ask (Brotli
    // or gzip). Not the pages behind emailed tokens: a secret in a compressed
    // response that also reflects input is what BREACH reads, and they are small.
    let compressed = Router::new()
        .route("/", get(pages::index))
        .route("/embed", get(embed::embed_several))
        .route("/embed/{slug}", get(embed::embed_one))
        .route("/embed.js", get(embed::script))
        .route("/healthz", get(healthz))
        .merge(signups)
        .layer(CompressionLayer::new());
    compressed
        .merge(tokened)
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(open_body, read_body))
        .layer(middleware::from_fn_with_state(state.clone(), frames::answer_in_box))
        .merge(authenticated)
        .merge(hooks)
        .layer(middleware::from_fn_with_state(state.clone(), identify_client))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        // The boxes set their own policy, which lets the allowed sites frame them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::try_from(embed::content_security_policy("'none'")).expect("a valid header"),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .with_state(state)
}

/// 200 when the database answers a read, on SQLite the writer can take the
/// write lock, and a write succeeds (probed at most every few seconds); 503
/// with the reason otherwise, within a few seconds either way.
async fn healthz(State(state): State<AppState>) -> Response {
    use crate::store::Unhealthy;
    match state.store.health().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            let (reason, message) = match e {
                Unhealthy::DiskFull(_) => ("disk_full", "the database's disk is full: nothing can be stored"),
                Unhealthy::ReadOnly(_) => ("read_only", "the database is read-only: nothing can be stored"),
                Unhealthy::WritesFail(_) => ("writes_fail", "the database answers but refuses writes"),
                _ => ("not_answering", "the database is not answering"),
            };
            let body = serde_json::json!({"status": "unavailable", "reason": reason, "message": message});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Puts the client's address (after trusted proxies) into the request.
async fn identify_client(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
    let ip = client::client_ip(peer, req.headers(), &state.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

async fn limit_per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (Some(limiter), Some(ClientIp(ip))) = (&state.limiter, req.extensions().get::<ClientIp>().copied()) else {
        return next.run(req).await;
    };
    match limiter.check(ip) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            tracing::info!(retry_after, "signup rate limited");
            let api = req.uri().path().starts_with("/api/");
            state
                .metrics
                .signup(if api { ConsentSource::Api } else { ConsentSource::Form }, SignupOutcome::RateLimited);
            let wait = if retry_after == 1 { "1 second".to_owned() } else { format!("{retry_after} seconds") };
            let message = format!("Too many signups from your network. Please try again in {wait}.");
            if api {
                let mut e = error::ApiError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                e.retry_after = Some(retry_after);
                e.into_response()
            } else {
                let mut e =
                    error::PageError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "Too many requests", message);
                e.retry_after = Some(retry_after);
                let mut refusal = e.into_response();
                frames::Typed::keep(req, &mut refusal).await;
                refusal
            }
        }
    }
}

/// One line per request (method, route template, status, latency), its
/// latency in the metrics, and a span around it that whatever the request
/// logs on its way carries, so a slow one can be followed.
async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route_name = route.as_ref().map_or("(no route)", MatchedPath::as_str);
    let span = tracing::info_span!("request", %method, route = route_name, status = tracing::field::Empty);
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status();
    span.record("status", status.as_u16());
    state.metrics.http_request(route.as_ref(), &method, status, took);
    tracing::info!(
        target: "bulletin::http",
        %method,
        route = route_name,
        status = status.as_u16(),
        latency_ms = took.as_secs_f64() * 1000.0,
        "request"
    );
    response
}
