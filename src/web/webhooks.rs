//! `POST /webhooks/{provider}/{token}` and `POST /webhooks/{provider}`:
//! bounces and complaints from Amazon SES (through SNS), Postmark and the
//! generic JSON form (`feedback::webhook`).
//!
//! Server to server, so no CORS and no per-IP limit; instead a secret path
//! token (`webhooks.token`; a wrong one is 404, like any unknown path) or HTTP
//! basic auth (`webhooks.basic_auth`; wrong or missing is 401 with the
//! challenge). Each route exists only when its secret is configured. Secrets
//! are compared as SHA-256 digests in constant time; the request log names
//! the route template, so the token never reaches a log.
//!
//! The secret and the provider's name are checked before a byte of the body
//! is read, so a post without the secret costs no memory however large it
//! says it is. A post that passes then waits for one of [`IN_FLIGHT`] slots,
//! and only then is its body read, up to [`BODY_LIMIT`] (SNS messages reach
//! 256 KiB): webhook bodies never hold more than `IN_FLIGHT × BODY_LIMIT`.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::AppState;
use super::error::ApiError;
use super::pages::not_found;
use crate::config::WebhookSettings;
use crate::feedback::FeedbackError;
use crate::feedback::webhook::{Provider, WebhookError, WebhookReceiver};

/// The largest webhook body read: an SNS message of 256 KiB, JSON-escaped inside its envelope.
pub const BODY_LIMIT: usize = 512 * 1024;

/// Posts worked on at once; more wait for a slot, up to [`SLOT_WAIT`].
const IN_FLIGHT: usize = 8;
const SLOT_WAIT: Duration = Duration::from_secs(10);
const RETRY_AFTER_SECS: u64 = 10;

const CHALLENGE: &str = r#"Basic realm="bulletin webhooks", charset="UTF-8""#;

/// Who may post webhooks, and the receiver their posts go to.
pub struct WebhookAccess {
    token: Option<[u8; 32]>,
    basic_auth: Option<[u8; 32]>,
    receiver: WebhookReceiver,
    in_flight: Semaphore,
}

impl WebhookAccess {
    /// `None` when neither a token nor basic auth is configured: no webhook route exists.
    pub fn new(settings: &WebhookSettings, receiver: WebhookReceiver) -> Option<Arc<Self>> {
        let secret = |s: &SecretString| Some(s.expose_secret().trim()).filter(|s| !s.is_empty()).map(digest);
        let token = secret(&settings.token);
        let basic_auth = secret(&settings.basic_auth);
        (token.is_some() || basic_auth.is_some())
            .then(|| Arc::new(Self { token, basic_auth, receiver, in_flight: Semaphore::new(IN_FLIGHT) }))
    }

    pub fn by_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn by_basic_auth(&self) -> bool {
        self.basic_auth.is_some()
    }

    fn token_matches(&self, presented: &str) -> bool {
        self.token.is_some_and(|known| known.ct_eq(&digest(presented)).into())
    }

    fn basic_auth_matches(&self, headers: &HeaderMap) -> bool {
        let Some(known) = self.basic_auth else { return false };
        basic_credentials(headers).is_some_and(|presented| {
            let presented: [u8; 32] = Sha256::digest(&presented).into();
            known.ct_eq(&presented).into()
        })
    }

    /// A post whose secret was right: an unknown provider is 404; else it
    /// takes a slot (503 when none frees up in time), which it holds while
    /// its body is read and worked on.
    async fn admit(&self, provider: &str, mut req: Request, next: Next) -> Response {
        let Some(provider) = Provider::from_name(provider) else {
            return not_found().await.into_response();
        };
        let Ok(_slot) = tokio::time::timeout(SLOT_WAIT, self.in_flight.acquire()).await else {
            tracing::warn!(provider = provider.name(), "webhook refused: too many in flight");
            let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many webhooks at once; retry");
            error.retry_after = Some(RETRY_AFTER_SECS);
            return error.into_response();
        };
        req.extensions_mut().insert(provider);
        next.run(req).await
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The decoded `user:password` of an `Authorization: Basic …` header (scheme case-insensitive, RFC 7617).
fn basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()
}

fn error(provider: Provider, e: WebhookError) -> ApiError {
    match e {
        WebhookError::Malformed(message) => {
            tracing::info!(provider = provider.name(), "webhook body refused: not what the provider sends");
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
        }
        WebhookError::Refused(reason) => {
            tracing::warn!(provider = provider.name(), %reason, "SNS message refused");
            ApiError::new(StatusCode::FORBIDDEN, "not_verified", format!("{reason}; nothing was applied"))
        }
        WebhookError::Unavailable(reason) => {
            tracing::warn!(provider = provider.name(), %reason, "SNS message not checked");
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sns_unavailable",
                format!("{reason}; nothing was applied, retry later"),
            );
            error.retry_after = Some(RETRY_AFTER_SECS);
            error
        }
        WebhookError::Feedback(FeedbackError::Store(e)) => e.into(),
    }
}

/// Admits `POST /webhooks/{provider}/{token}` with the right token, before its body is read.
pub async fn admit_by_token(
    State(state): State<AppState>,
    Path((provider, token)): Path<(String, String)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(access) = &state.webhooks else { return not_found().await.into_response() };
    if !access.token_matches(&token) {
        tracing::info!("webhook refused: unknown path token");
        return not_found().await.into_response();
    }
    access.admit(&provider, req, next).await
}

/// Admits `POST /webhooks/{provider}` with the right HTTP basic auth, before its body is read.
pub async fn admit_by_basic_auth(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    req: Request,
    next: Next,
) -> Response {
    let Some(access) = &state.webhooks else { return not_found().await.into_response() };
    let headers = req.headers();
    if !access.basic_auth_matches(headers) {
        let reason = if headers.contains_key(header::AUTHORIZATION) { "wrong credentials" } else { "no credentials" };
        tracing::info!(reason, "webhook refused");
        let error = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send webhooks.basic_auth as HTTP basic auth (user:password)",
        );
        return ([(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE))], error).into_response();
    }
    access.admit(&provider, req, next).await
}

/// The body of an admitted post (the `Provider` comes from [`admit_by_token`] or
/// [`admit_by_basic_auth`]; without one, axum answers 500 rather than skip the check).
pub async fn receive(State(state): State<AppState>, Extension(provider): Extension<Provider>, body: Bytes) -> Response {
    let Some(access) = &state.webhooks else { return not_found().await.into_response() };
    match access.receiver.receive(provider, &body).await {
        Ok(received) => Json(received).into_response(),
        Err(e) => error(provider, e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_read_as_rfc_7617_says() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("ses:a-long-password-123");
        assert_eq!(basic_credentials(&headers(&format!("Basic {encoded}"))).unwrap(), b"ses:a-long-password-123");
        assert_eq!(basic_credentials(&headers(&format!("basic {encoded}"))).unwrap(), b"ses:a-long-password-123");
        assert_eq!(basic_credentials(&headers(&format!("Bearer {encoded}"))), None);
        assert_eq!(basic_credentials(&headers("Basic !!!")), None);
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }
}
