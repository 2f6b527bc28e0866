//! Request bodies: read before any handler runs, bounded in size, in time
//! and, for requests anyone may send, in the bytes they hold all together.
//!
//! A declared length over the limit is refused at once (413) without keeping
//! a byte of it (a framed box's form is read through for its address alone),
//! and a body that has not arrived within `server.body_read_timeout_seconds`
//! is answered 408 (hyper then closes the connection, the body being unread).
//! Routes behind a secret (webhooks, `POST /api/items`) check it before this
//! reader runs, so a wrong secret costs no body at all. Every other request first reserves its body's size
//! (the declared length, or the limit when none is declared) from
//! [`OPEN_BODY_BUDGET`], shared by all connections, and keeps it until it is
//! answered; when the budget is spent, a request waits up to [`BUDGET_WAIT`]
//! and is then answered 503 with a Retry-After. A flood of large or slow
//! bodies so costs a bounded amount of memory, whatever the number of connections.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::{ApiError, PageError};
use super::frames::{FramedBox, Typed};

/// Bytes of request bodies that requests without a secret may hold at once:
/// 256 forms of the largest size; a real signup form is a few hundred bytes.
pub const OPEN_BODY_BUDGET: usize = 4 * 1024 * 1024;
/// How long a request waits for room in the budget before it is answered 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);
const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// How one group of routes reads its bodies.
#[derive(Clone)]
pub struct BodyReader {
    limit: usize,
    timeout: Duration,
    /// The shared budget of open routes; `None` behind a secret, which bounds them itself.
    budget: Option<Arc<Semaphore>>,
}

impl BodyReader {
    /// For routes anyone may call: bodies up to `limit`, within the open budget.
    pub fn open(limit: usize, timeout: Duration) -> Self {
        Self { limit, timeout, budget: Some(Arc::new(Semaphore::new(OPEN_BODY_BUDGET))) }
    }

    /// For routes whose secret was checked before the body is read.
    pub fn behind_secret(limit: usize, timeout: Duration) -> Self {
        Self { limit, timeout, budget: None }
    }
}

/// Reads the body into the request, or answers 413, 408, 400 or 503 (budget spent).
pub async fn read_body(State(reader): State<BodyReader>, req: Request, next: Next) -> Response {
    use http_body_util::{BodyExt, LengthLimitError, Limited};

    let path = req.uri().path();
    let api = path.starts_with("/api/") || path.starts_with("/webhooks/");
    let limit = reader.limit;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        let mut refused = body_refused(api, StatusCode::PAYLOAD_TOO_LARGE);
        if FramedBox::of(req.uri()).is_some() {
            // A box is drawn again with the reader's address, read from the body holding nothing else.
            refused.extensions_mut().insert(Typed::scan(req.into_body(), reader.timeout).await);
        }
        return refused;
    }
    let (parts, body) = req.into_parts();
    // hyper knows the declared length (or that there is no body); a chunked body may be up to the limit.
    let size = body.size_hint().upper().map_or(limit, |upper| (upper as usize).min(limit));
    let _reserved = match &reader.budget {
        Some(budget) if size > 0 => match tokio::time::timeout(BUDGET_WAIT, budget.acquire_many(size as u32)).await {
            Ok(Ok(permit)) => Some(permit),
            _ => {
                let held = OPEN_BODY_BUDGET - budget.available_permits();
                tracing::warn!(
                    held,
                    budget = OPEN_BODY_BUDGET,
                    "request refused: request bodies in hand fill the open budget"
                );
                return busy(api);
            }
        },
        _ => None,
    };
    match tokio::time::timeout(reader.timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => next.run(Request::from_parts(parts, Body::from(collected.to_bytes()))).await,
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            body_refused(api, StatusCode::PAYLOAD_TOO_LARGE)
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request body could not be read");
            body_refused(api, StatusCode::BAD_REQUEST)
        }
        Err(_) => body_refused(api, StatusCode::REQUEST_TIMEOUT),
    }
}

fn body_refused(api: bool, status: StatusCode) -> Response {
    let (code, api_message, page_message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "the request body is too large", "The form you sent is too large.")
        }
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "the request body took too long to arrive; please send it again",
            "The form took too long to arrive. Please send it again.",
        ),
        _ => (
            "bad_request",
            "the request body could not be read; please send it again",
            "The form could not be read. Please send it again.",
        ),
    };
    if api {
        ApiError::new(status, code, api_message).into_response()
    } else {
        PageError::new(status, "Request not understood", page_message).into_response()
    }
}

fn busy(api: bool) -> Response {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    if api {
        let mut e = ApiError::new(status, "busy", "too many requests are being sent at once; retry in a few seconds");
        e.retry_after = Some(BUSY_RETRY_AFTER_SECS);
        e.into_response()
    } else {
        let mut e = PageError::new(
            status,
            "Busy",
            "Too many forms are arriving at once. Please send yours again in a few seconds.",
        );
        e.retry_after = Some(BUSY_RETRY_AFTER_SECS);
        e.into_response()
    }
}
