//! `POST /api/items`: a CMS adds a story to a newsletter's next digest.
//!
//! Server to server, so no CORS and no per-IP limit: a bearer token from
//! `server.api_tokens` is required instead. With no tokens configured the
//! route is not mounted at all and answers 404 like any unknown path.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::AppState;
use super::api::rejection;
use super::error::ApiError;
use crate::clock::parse_timestamp;
use crate::digest::{Story, StoryError};
use crate::domain::NewsletterSlug;

/// The configured API tokens, kept only as SHA-256 digests.
///
/// Comparing digests of equal length in constant time tells a caller nothing
/// about how much of a guess was right, whatever the tokens' lengths.
pub struct ApiTokens(Vec<[u8; 32]>);

impl ApiTokens {
    pub fn new(tokens: &[SecretString]) -> Self {
        Self(tokens.iter().map(|t| digest(t.expose_secret().trim())).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the tokens; every token is compared, match or not.
    fn allows(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let matched = self.0.iter().fold(Choice::from(0), |found, known| found | known.ct_eq(&presented));
        matched.into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive, RFC 7235).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Lets a request through only with a configured bearer token; else 401
/// with the RFC 6750 challenge. The token itself is never logged.
pub async fn require_api_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (reason, challenge, message) = match bearer(req.headers()) {
        Some(token) if state.api_tokens.allows(token) => return next.run(req).await,
        Some(_) => (
            "unknown bearer token",
            r#"Bearer error="invalid_token""#,
            "the bearer token is not one of server.api_tokens",
        ),
        None => ("no bearer token", "Bearer", "send one of server.api_tokens as `Authorization: Bearer <token>`"),
    };
    tracing::info!(reason, "API request refused");
    let error = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    ([(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge))], error).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    newsletter: String,
    title: String,
    url: String,
    #[serde(default)]
    summary: Option<String>,
    /// RFC 3339; missing: when it arrives.
    #[serde(default)]
    published_at: Option<String>,
}

const ITEM_SHAPE: &str =
    r#"{"newsletter": "slug", "title": "...", "url": "https://...", "summary"?: "...", "published_at"?: "RFC 3339"}"#;

/// `POST /api/items`: 201 `{"status": "added"}` for a new story, 200
/// `{"status": "already stored"}` for one the newsletter has (same URL),
/// 422 `not_a_digest` for a newsletter without `[newsletters.digest]`.
pub async fn add_item(
    State(state): State<AppState>,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(item) = body.map_err(|e| rejection(e, ITEM_SHAPE))?;
    let newsletter = NewsletterSlug::parse(item.newsletter.trim())
        .ok()
        .and_then(|slug| state.signup.catalog().by_slug(&slug))
        .ok_or_else(|| {
            let shown: String = item.newsletter.chars().take(64).collect();
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_newsletter",
                format!("newsletter: there is no newsletter {shown:?}"),
            )
        })?;
    let published_at = item
        .published_at
        .as_deref()
        .map(|text| {
            parse_timestamp(text).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_published_at",
                    format!("published_at: expected an RFC 3339 time such as 2026-11-28T07:00:00Z ({e})"),
                )
            })
        })
        .transpose()?;
    let story = Story::new(&item.title, &item.url, item.summary.as_deref(), published_at).map_err(|e| {
        let code = match e {
            StoryError::EmptyTitle | StoryError::LongTitle => "invalid_title",
            StoryError::Url | StoryError::LongUrl => "invalid_url",
            StoryError::LongSummary => "invalid_summary",
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, format!("{}: {e}", e.field()))
    })?;
    let added = state.digests.add_stories(newsletter, std::slice::from_ref(&story), "api").await?;
    tracing::info!(newsletter = %newsletter.slug, added = added > 0, "story from the API");
    if added > 0 {
        Ok((StatusCode::CREATED, Json(json!({"status": "added"}))))
    } else {
        Ok((StatusCode::OK, Json(json!({"status": "already stored"}))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_configured_tokens_pass() {
        let tokens =
            ApiTokens::new(&[SecretString::from("0123456789abcdef-one"), SecretString::from(" spaced-token-0123 ")]);
        assert!(tokens.allows("0123456789abcdef-one"));
        assert!(tokens.allows("spaced-token-0123"));
        for wrong in ["", "0123456789abcdef", "0123456789abcdef-one ", "0123456789abcdef-onex", "0123456789ABCDEF-ONE"]
        {
            assert!(!tokens.allows(wrong), "{wrong:?}");
        }
        assert!(ApiTokens::new(&[]).is_empty());
    }

    #[test]
    fn bearer_header_is_read_as_rfc_6750_says() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&with("Bearerabc")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
