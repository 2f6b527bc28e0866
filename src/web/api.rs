//! The JSON signup API, for sites that build their own forms.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::client::ClientIp;
use super::error::ApiError;
use super::pages::{INVALID_EMAIL, parse_rhythm, parse_zone, visitor};
use crate::domain::{ConsentSource, EmailAddress};
use crate::metrics::SignupOutcome;
use crate::signup::RhythmChoice;

#[derive(Debug, Deserialize)]
pub struct NewSubscription {
    email: String,
    newsletters: Vec<String>,
    /// For the newsletters that offer rhythms; missing, null or "": each one's default.
    #[serde(default)]
    rhythm: Option<String>,
    /// An IANA zone for daily and weekly digests; missing, null or "": the newsletter's.
    #[serde(default)]
    timezone: Option<String>,
}

/// `POST /api/subscriptions`: 202 `{"status": "pending"}` for every valid
/// request, whatever the address's previous state. A bad `rhythm` or
/// `timezone` is a 422 whose `error.field` names the key.
pub async fn create_subscription(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Result<Json<NewSubscription>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let answer = subscribe(&state, ip, &headers, body).await;
    let outcome = match &answer {
        Ok(_) => SignupOutcome::Accepted,
        Err(e) => SignupOutcome::of_error(e.status),
    };
    state.metrics.signup(ConsentSource::Api, outcome);
    answer
}

/// The answer to a signup request, counted by [`create_subscription`].
async fn subscribe(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    body: Result<Json<NewSubscription>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body.map_err(|e| rejection(e, SUBSCRIPTION_SHAPE))?;
    let newsletters = state.signup.resolve(&request.newsletters)?;
    let email = EmailAddress::parse(&request.email).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email", format!("{INVALID_EMAIL}: {e}"))
    })?;
    let rhythm = parse_rhythm(request.rhythm.as_deref())
        .map_err(|e| ApiError::field("rhythm", "invalid_rhythm", format!("rhythm: {e}")))?;
    let zone = parse_zone(request.timezone.as_deref())
        .map_err(|e| ApiError::field("timezone", "invalid_timezone", format!("timezone: {e}")))?;
    let requested = state.signup.requested(&newsletters, RhythmChoice { rhythm, zone })?;
    state.signup.subscribe_requested(&email, &requested, ConsentSource::Api, &visitor(ip, headers)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "pending"}))))
}

const SUBSCRIPTION_SHAPE: &str = r#"{"email": "...", "newsletters": ["slug", ...], "rhythm": "daily" (optional), "timezone": "Europe/Kyiv" (optional)}"#;

/// Maps a body the JSON extractor refused to a clear 4xx; `shape` is what the route expects.
pub(super) fn rejection(e: JsonRejection, shape: &str) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("expected {shape}: {}", e.body_text()),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
    }
}
