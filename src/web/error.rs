//! Errors at the HTTP edge: a clear 4xx for bad input, a logged 503 "try
//! again shortly" when the database is unavailable, a logged and generic 500
//! for our own faults. Internals never reach the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::pages::MessagePage;
use crate::digest::DigestError;
use crate::signup::SignupError;
use crate::store::StoreError;

/// What a client is told to wait before trying again while the database is unavailable.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 10;

/// An error answered with an HTML page. The response carries it as an
/// extension too, so a framed box's refusal can be drawn as the box
/// ([`super::frames::answer_in_box`]).
#[derive(Debug, Clone)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self { status, title, message: message.into(), retry_after: None }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Link not valid",
            "This link is not valid. Please check that you copied all of it.",
        )
    }

    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Something went wrong on our side. Please try again in a minute.",
        )
    }

    /// The database is unavailable (down, refusing connections, too busy):
    /// logged, answered 503 with a Retry-After.
    pub fn unavailable(error: &StoreError) -> Self {
        tracing::error!(%error, "request failed: the database is unavailable");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "We cannot handle your request right now. Please try again shortly.",
        );
        e.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
        e
    }

    /// Maps a rejected request body (wrong type, too large, broken) to a clear 4xx.
    pub fn rejected(status: StatusCode, detail: String) -> Self {
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "The form you sent is too large.".to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "Please send the form as a web form.".to_owned(),
            _ => format!("The form could not be read: {detail}"),
        };
        let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
        Self::new(status, "Request not understood", message)
    }
}

impl From<SignupError> for PageError {
    fn from(e: SignupError) -> Self {
        match e {
            SignupError::NoNewsletter | SignupError::UnknownNewsletter(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Unknown newsletter", e.to_string())
            }
            SignupError::RhythmNotOffered { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Choice not offered", e.to_string())
            }
            SignupError::Store(e) if e.is_unavailable() => Self::unavailable(&e),
            SignupError::Store(e) => Self::internal(&e),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = MessagePage::new(self.title).line(self.message.clone()).link("/", "Back to the newsletters");
        let mut response = (self.status, page).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// An error of the JSON API: `{"error": {"code": "...", "message": "..."}}`,
/// with `"field"` naming the request's key when one key is at fault.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None }
    }

    /// A 422 for one key of the request body.
    pub fn field(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { field: Some(field), ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message) }
    }
}

impl From<SignupError> for ApiError {
    fn from(e: SignupError) -> Self {
        match e {
            SignupError::NoNewsletter => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "no_newsletter", e.to_string()),
            SignupError::UnknownNewsletter(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_newsletter", e.to_string())
            }
            SignupError::RhythmNotOffered { .. } => Self::field("rhythm", "rhythm_not_offered", e.to_string()),
            SignupError::Store(e) => e.into(),
        }
    }
}

impl From<DigestError> for ApiError {
    fn from(e: DigestError) -> Self {
        match e {
            DigestError::NotADigest(_) => Self::field("newsletter", "not_a_digest", format!("newsletter: {e}")),
            DigestError::ByRhythm(_) => Self::new(StatusCode::CONFLICT, "by_rhythm", e.to_string()),
            DigestError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "request failed: the database is unavailable");
            let mut api = Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service cannot handle requests right now; try again shortly",
            );
            api.retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECS);
            api
        } else {
            tracing::error!(error = %e, "request failed");
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on our side")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let body = Json(json!({ "error": error }));
        let mut response = (self.status, body).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
