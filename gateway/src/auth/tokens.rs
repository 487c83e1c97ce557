//! Access tokens: HS256 JWTs with issuer, audience, expiry and a session id, issued at login and
//! checked on every request.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schemas::PlayerId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::Role;
use crate::error::ApiError;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The player.
    pub sub: PlayerId,
    /// The session; logging out deletes it.
    pub sid: String,
    /// The player's role when the token was issued, for the client to read. The gateway never
    /// trusts it: a caller's role is its session's.
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    /// How long a token lives.
    pub ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Past its expiry.
    Expired,
    /// Malformed, forged, or for another issuer or audience.
    Invalid,
}

impl Tokens {
    /// Keys from the configured secret.
    pub fn new(secret: &SecretString, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // A token that says it is not valid yet (`nbf`) is not, when it says so.
        validation.validate_nbf = true;
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// A token for `player` in session `sid`, valid from `now` (seconds since the epoch).
    pub fn issue(
        &self,
        player: PlayerId,
        sid: &str,
        role: Role,
        now: u64,
    ) -> Result<String, ApiError> {
        let claims = Claims {
            sub: player,
            sid: sid.to_owned(),
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The claims of a valid token.
    pub fn check(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn tokens(ttl: u64) -> Tokens {
        tokens_of(SECRET, "game-clients", ttl)
    }

    /// Tokens signed with `secret`, for `audience`.
    fn tokens_of(secret: &str, audience: &str, ttl: u64) -> Tokens {
        Tokens::new(
            &SecretString::from(secret),
            "game-gateway",
            audience,
            Duration::from_secs(ttl),
        )
    }

    #[test]
    fn a_token_checks_out_until_it_expires() {
        let t = tokens(60);
        let player = PlayerId::new();
        let token = t
            .issue(player, "s1", Role::Player, now_secs())
            .expect("token");
        let claims = t.check(&token).expect("valid");
        assert_eq!(
            (claims.sub, claims.sid.as_str(), claims.role),
            (player, "s1", Role::Player)
        );
        let old = t
            .issue(player, "s1", Role::Player, now_secs() - 120)
            .expect("token");
        assert_eq!(t.check(&old), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let t = tokens(60);
        let token = t
            .issue(PlayerId::new(), "s1", Role::Admin, now_secs())
            .expect("token");
        for (checker, other) in [
            (
                "another key",
                tokens_of("another-secret-another-secret-xx", "game-clients", 60),
            ),
            ("another audience", tokens_of(SECRET, "elsewhere", 60)),
        ] {
            assert_eq!(other.check(&token), Err(TokenError::Invalid), "{checker}");
        }
        let mut tampered = token.clone();
        tampered.pop();
        assert_eq!(t.check(&tampered), Err(TokenError::Invalid));
        assert_eq!(t.check("not.a.token"), Err(TokenError::Invalid));
        // An unsigned token ("alg": "none") is never accepted.
        let parts: Vec<&str> = token.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert_eq!(t.check(&none), Err(TokenError::Invalid));
    }
}
