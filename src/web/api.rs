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
use super::pages::{INVALID_EMAIL, visitor};
use crate::domain::{ConsentSource, EmailAddress};

#[derive(Debug, Deserialize)]
pub struct NewSubscription {
    email: String,
    newsletters: Vec<String>,
}

/// `POST /api/subscriptions`: 202 `{"status": "pending"}` for every valid
/// request, whatever the address's previous state.
pub async fn create_subscription(
    State(state): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Result<Json<NewSubscription>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body.map_err(|e| rejection(e, SUBSCRIPTION_SHAPE))?;
    let newsletters = state.signup.resolve(&request.newsletters)?;
    let email = EmailAddress::parse(&request.email).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email", format!("{INVALID_EMAIL}: {e}"))
    })?;
    state.signup.subscribe(&email, &newsletters, ConsentSource::Api, &visitor(ip, &headers)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"status": "pending"}))))
}

const SUBSCRIPTION_SHAPE: &str = r#"{"email": "...", "newsletters": ["slug", ...]}"#;

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
