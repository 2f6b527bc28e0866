//! Confirmation tokens: stored as hashes, expiring, single use.

use sqlx::QueryBuilder;

use super::subscribers::record_consent;
use super::{Consent, Result, Store, in_tx, reading, relaxed};
use crate::clock::Timestamp;
use crate::domain::TokenHash;

/// What a confirmation link shows before anyone presses its button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    /// Usable: these newsletters would be confirmed.
    Valid {
        subscriber_id: i64,
        pending: Vec<i64>,
    },
    Used {
        subscriber_id: i64,
    },
    Expired,
    Unknown,
}

/// What pressing the button did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed { subscriber_id: i64, newsletters: Vec<i64> },
    AlreadyConfirmed { subscriber_id: i64 },
    Expired,
    Unknown,
}

/// A confirmation token to store: only its hash, never the token itself.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub hash: TokenHash,
    pub subscriber_id: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Store {
    /// Stores the tokens of confirmation mails about to go out, in one
    /// statement. Written by the delivery engine just before the mails
    /// leave, with the ledger's relaxed durability (see [`relaxed!`]): a
    /// crash of the database server itself may forget the last fraction of
    /// a second of tokens, and such a link then shows the page with the
    /// signup form.
    pub async fn insert_confirmation_tokens(&self, tokens: &[NewToken]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        relaxed!(self, |conn| {
            let mut qb = QueryBuilder::new(
                "INSERT INTO confirmation_tokens (token_hash, subscriber_id, created_at, expires_at) ",
            );
            qb.push_values(tokens, |mut b, t| {
                b.push_bind(t.hash.as_str()).push_bind(t.subscriber_id).push_bind(t.created_at).push_bind(t.expires_at);
            });
            qb.build().execute(conn).await?;
            Ok(())
        })
    }

    /// Reads a token's state without changing anything (GET and HEAD use this).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn token_state(&self, hash: &TokenHash, now: Timestamp) -> Result<TokenState> {
        let row: Option<(i64, i64, Option<i64>)> = reading!(self, |pool| {
            sqlx::query_as("SELECT subscriber_id, expires_at, used_at FROM confirmation_tokens WHERE token_hash = $1")
                .bind(hash.as_str())
                .fetch_optional(pool)
                .await?
        });
        let Some((subscriber_id, expires_at, used_at)) = row else {
            return Ok(TokenState::Unknown);
        };
        if used_at.is_some() {
            return Ok(TokenState::Used { subscriber_id });
        }
        if expires_at <= now {
            return Ok(TokenState::Expired);
        }
        let pending: Vec<i64> = reading!(self, |pool| {
            sqlx::query_scalar(
                "SELECT newsletter_id FROM subscriptions WHERE subscriber_id = $1 AND status = 'pending' \
                 ORDER BY newsletter_id",
            )
            .bind(subscriber_id)
            .fetch_all(pool)
            .await?
        });
        if pending.is_empty() {
            return Ok(TokenState::Used { subscriber_id });
        }
        Ok(TokenState::Valid { subscriber_id, pending })
    }

    /// Uses the token: every pending subscription of its subscriber becomes
    /// confirmed, with a consent event each. A used token changes nothing.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn confirm(&self, hash: &TokenHash, consent: &Consent) -> Result<ConfirmOutcome> {
        let now = consent.at;
        in_tx!(self, |tx| {
            let claimed: Option<i64> = sqlx::query_scalar(
                "UPDATE confirmation_tokens SET used_at = $2 \
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING subscriber_id",
            )
            .bind(hash.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            match claimed {
                None => {
                    let row: Option<(i64, Option<i64>)> =
                        sqlx::query_as("SELECT subscriber_id, used_at FROM confirmation_tokens WHERE token_hash = $1")
                            .bind(hash.as_str())
                            .fetch_optional(&mut *tx)
                            .await?;
                    Ok(match row {
                        None => ConfirmOutcome::Unknown,
                        Some((subscriber_id, Some(_))) => ConfirmOutcome::AlreadyConfirmed { subscriber_id },
                        Some((_, None)) => ConfirmOutcome::Expired,
                    })
                }
                Some(subscriber_id) => {
                    let newsletters: Vec<i64> = sqlx::query_scalar(
                        "UPDATE subscriptions SET status = 'confirmed', confirmed_at = $2, digest_through = NULL \
                         WHERE subscriber_id = $1 AND status = 'pending' RETURNING newsletter_id",
                    )
                    .bind(subscriber_id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                    if newsletters.is_empty() {
                        Ok(ConfirmOutcome::AlreadyConfirmed { subscriber_id })
                    } else {
                        record_consent!(tx, newsletters.iter().map(|n| (subscriber_id, *n)), "confirm", consent);
                        Ok(ConfirmOutcome::Confirmed { subscriber_id, newsletters })
                    }
                }
            }
        })
    }
}
