//! Who a request comes from, as extractors: [`Bearer`] (a valid token, its session not yet
//! checked), [`Caller`] (a live session, with the session's role) and [`Admin`] (the admin role
//! and a valid `X-Api-Key`).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use schemas::PlayerId;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Role;
use super::sessions::{SessionState, SessionUnknown};
use super::tokens::{Claims, TokenError};
use crate::AppState;
use crate::error::{ApiError, Code};

/// An authenticated caller, taken from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The player.
    pub player: PlayerId,
    /// The role of the session (decided at login, held by the server), not the token's claim.
    pub role: Role,
    /// The session id.
    pub session: String,
}

/// A caller whose token is valid, before its session is checked: lets a hot route ask Redis
/// about the session together with its other questions (see [`Bearer::into_caller`]).
#[derive(Debug, Clone)]
pub struct Bearer(pub Claims);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let reject = |code: Code, reason: &str, message: &str| {
            state.metrics().auth_rejected(reason);
            ApiError::new(code, message)
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                reject(
                    Code::Unauthorized,
                    "missing_token",
                    "an Authorization: Bearer token is required",
                )
            })?;
        let claims = state.tokens().check(token).map_err(|e| match e {
            TokenError::Expired => reject(
                Code::TokenExpired,
                "expired",
                "the token has expired; log in again",
            ),
            TokenError::Invalid => reject(
                Code::Unauthorized,
                "invalid_token",
                "the token is not valid",
            ),
        })?;
        tracing::Span::current().record("player_id", tracing::field::display(&claims.sub));
        Ok(Bearer(claims))
    }
}

impl Bearer {
    /// The session's state as [`super::Sessions::answered`] decided it, turned into a caller
    /// (with the session's role) or a refusal.
    pub fn into_caller(
        self,
        state: &AppState,
        session: Result<SessionState, SessionUnknown>,
    ) -> Result<Caller, ApiError> {
        match session {
            Ok(SessionState::Live(role)) => Ok(Caller {
                player: self.0.sub,
                role,
                session: self.0.sid,
            }),
            Ok(SessionState::NotTheirs) => {
                // Only a holder of the signing key makes such a token.
                state.metrics().auth_rejected("session_mismatch");
                tracing::warn!(
                    player = %self.0.sub,
                    "a validly signed token names another player's session"
                );
                Err(ApiError::new(Code::Unauthorized, "the token is not valid"))
            }
            Ok(SessionState::Ended) => {
                state.metrics().auth_rejected("revoked");
                Err(ApiError::new(
                    Code::TokenRevoked,
                    "the session has ended; log in again",
                ))
            }
            Err(SessionUnknown) => {
                state.metrics().dependency_error("redis");
                Err(ApiError::unavailable("the session store"))
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = Bearer::from_request_parts(parts, state).await?;
        let session = state
            .sessions()
            .check(state.gate(), &bearer.0.sid, bearer.0.sub)
            .await;
        bearer.into_caller(state, session)
    }
}

/// An admin caller: the admin role and a valid `X-Api-Key`.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != Role::Admin {
            state.metrics().auth_rejected("role");
            return Err(ApiError::new(Code::Forbidden, "this route is for admins"));
        }
        let given = parts
            .headers
            .get("x-api-key")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !api_key_matches(given, state.settings().admin_api_keys.as_slice()) {
            state.metrics().auth_rejected("api_key");
            return Err(ApiError::new(
                Code::BadApiKey,
                "a valid X-Api-Key is required",
            ));
        }
        Ok(Admin(caller))
    }
}

/// Whether `given` is one of `keys`. The SHA-256 digests of both are compared, in constant time
/// and with every key: comparing the keys themselves stops at once when the lengths differ, so
/// the time would tell a guesser the key's length.
pub fn api_key_matches(given: &[u8], keys: &[SecretString]) -> bool {
    let given_digest = Sha256::digest(given);
    let mut found = subtle::Choice::from(0);
    for key in keys {
        let key_digest = Sha256::digest(key.expose_secret().as_bytes());
        found |= key_digest[..].ct_eq(&given_digest[..]);
    }
    !given.is_empty() && bool::from(found)
}

/// The token of an `Authorization` value of the Bearer scheme, whose name is matched in any
/// case (RFC 9110, 11.1); `None` for another scheme or no token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_named_in_any_case() {
        for value in [
            "Bearer t.o.k",
            "bearer t.o.k",
            "BEARER t.o.k",
            "Bearer   t.o.k  ",
        ] {
            assert_eq!(bearer_token(value), Some("t.o.k"), "{value:?}");
        }
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "Basic dTpw",
            "Bearert.o.k",
            "t.o.k",
            "",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn api_keys_match_exactly() {
        let keys = [
            SecretString::from("first-key-1234"),
            SecretString::from("second-key-5678"),
        ];
        assert!(api_key_matches(b"second-key-5678", &keys));
        assert!(!api_key_matches(b"second-key-567", &keys));
        assert!(!api_key_matches(b"", &keys));
        assert!(!api_key_matches(b"anything", &[]));
    }
}
