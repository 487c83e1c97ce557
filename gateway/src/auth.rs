//! Who is calling: passwords (Argon2id), access tokens (HS256 JWTs with issuer, audience, expiry
//! and a session id), sessions in Redis (a token whose session is gone is revoked), roles, and the
//! admin API key.
//!
//! A session holds its player and the role it was started with (`session:<sid>` is
//! `"<player> <role>"`). A token counts only for the player of the session it names, and the
//! caller's role is the session's: the claims of a token are what the gateway signed, but a
//! leaked signing key must not make anyone another player, or an admin, with one live session.
//!
//! While Redis is unreachable a token whose session was confirmed within the last
//! [`SESSION_GRACE`] is still accepted, so players in the middle of a game keep playing through a
//! short Redis outage; any other token gets 503, never a guess.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use redis::AsyncCommands;
use schemas::PlayerId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::{ApiError, Code};

/// How long a confirmed session is trusted while Redis is unreachable.
pub const SESSION_GRACE: Duration = Duration::from_secs(30);

/// What a caller may do. Ordered: a moderator may do what a player may, an admin anything.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A game client.
    Player,
    /// Can act on other players' behaviour.
    Moderator,
    /// Runs the game: dead letters, rebuilds, regions, roles.
    Admin,
}

impl Role {
    /// The name, as stored and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// The role a name stands for.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::Player, Role::Moderator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

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

/// Hashes a password with Argon2id and a fresh salt (off the async threads: it is slow on
/// purpose).
pub async fn hash_password(password: SecretString) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// A hash of a password nobody has, verified when the username is unknown so that a login
/// takes as long whether or not the account exists.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2Ym1Tl0wHk2LJyA7Y1bJ1+7iWwNb4kXuZc0e2b2zs6A";

/// Whether `password` matches `hash` (or, with no hash, spends the same time and says no).
pub async fn verify_password(
    password: SecretString,
    hash: Option<String>,
) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DECOY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .map_err(ApiError::internal)
}

/// What Redis, or this gateway's memory of it, says of the session a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Live and the token's player's, started with this role: the caller's role.
    Live(Role),
    /// Ended (logout, role change), lapsed, or never started.
    Ended,
    /// Live, but another player's: no login made that token; it was signed by someone holding
    /// the signing key.
    NotTheirs,
}

impl SessionState {
    /// The state the gate script answered: `live` 1 (the role the session holds, empty for a
    /// session stored before sessions held roles, which is a player's), 0 or 2 (another
    /// player's).
    pub fn from_gate(live: u8, role: &str) -> Self {
        match live {
            1 if role.is_empty() => SessionState::Live(Role::Player),
            1 => Role::parse(role).map_or(SessionState::Ended, SessionState::Live),
            2 => SessionState::NotTheirs,
            _ => SessionState::Ended,
        }
    }
}

/// Neither Redis nor this gateway's memory can say whether a session is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nobody can say whether the session is live")]
pub struct SessionUnknown;

/// The Redis key of session `sid` of `player`, tagged with the player like the player's other
/// keys (see [`service::redis::tag`]).
pub fn session_key(player: PlayerId, sid: &str) -> String {
    format!("session:{}:{sid}", service::redis::tag(player))
}

/// What a session's key holds: its player and role.
fn session_value(player: PlayerId, role: Role) -> String {
    format!("{player} {}", role.as_str())
}

fn player_sessions_key(player: PlayerId) -> String {
    format!("player_sessions:{}", service::redis::tag(player))
}

/// The Redis key counting an account's role changes, by its lower-cased username (what a login
/// knows before it reads the account). Kept for good: one small key per account whose role ever
/// changed, and one that lapsed would read as 0 again and could match a login's stale reading.
/// No script takes it with the session's keys, which lie in the player's slot (see
/// [`Sessions::start`]).
fn role_generation_key(username_key: &str) -> String {
    format!("role_generation:{username_key}")
}

/// How many times an account's role had changed when a login began, read before the account:
/// the login starts its session only if no role change came in between (see
/// [`Sessions::start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGeneration {
    key: String,
    value: u64,
}

/// Stores a session and lists it among its player's. `KEYS`: the session, the player's sessions
/// (one slot: both carry the player's tag); `ARGV`: the session's value, its lifetime in
/// seconds, the session id.
static START_SESSION: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"#,
    )
});

/// A session Redis confirmed: when, whose, and with which role.
#[derive(Debug, Clone, Copy)]
struct Confirmed {
    at: Instant,
    player: PlayerId,
    role: Role,
}

/// Sessions in Redis, with a short memory of confirmed ones for Redis outages.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    confirmed: Arc<Mutex<HashMap<String, Confirmed>>>,
}

impl Sessions {
    /// The role generation of the account `username_key` names, to be read before the account.
    pub async fn role_generation(
        &self,
        redis: &mut service::redis::Redis,
        username_key: &str,
    ) -> Result<RoleGeneration, redis::RedisError> {
        let key = role_generation_key(username_key);
        let value: Option<u64> = redis.get(&key).await?;
        Ok(RoleGeneration {
            key,
            value: value.unwrap_or(0),
        })
    }

    /// Starts a session for `player` with `role` (as read after `generation`) that lives `ttl`;
    /// `false`, and no session, when the role has changed since `generation` was read: the
    /// account must be read again.
    ///
    /// The session is stored first, then the generation read again. A role change stores the
    /// role, then moves the generation, then lists the player's sessions and ends them (see
    /// [`Sessions::fence_role`]). If the generation still reads as the login first read it, the
    /// change moved it after the session was stored, so its listing finds the session and ends
    /// it; if it has moved, this login ends its session itself. Either way no session outlives
    /// a role it was started with. The session's keys and the generation need not share a slot.
    pub async fn start(
        &self,
        redis: &mut service::redis::Redis,
        generation: &RoleGeneration,
        sid: &str,
        player: PlayerId,
        role: Role,
        ttl: Duration,
    ) -> Result<bool, redis::RedisError> {
        let _: u8 = START_SESSION
            .key(session_key(player, sid))
            .key(player_sessions_key(player))
            .arg(session_value(player, role))
            .arg(ttl.as_secs())
            .arg(sid)
            .invoke_async(redis)
            .await?;
        let now: Result<Option<u64>, _> = redis.get(&generation.key).await;
        match now {
            Ok(now) if now.unwrap_or(0) == generation.value => {
                self.remember(sid, player, role);
                Ok(true)
            }
            Ok(_) => {
                self.end(redis, player, sid).await?;
                Ok(false)
            }
            Err(e) => {
                // Nobody holds the session's token yet: best not to leave it behind.
                let _ = self.end(redis, player, sid).await;
                Err(e)
            }
        }
    }

    /// Moves the role generation of the account `username_key` names, once its new role is
    /// stored: from then on no login that read the account before can start a session, so
    /// every session with the old role is among [`Sessions::of`].
    pub async fn fence_role(
        &self,
        redis: &mut service::redis::Redis,
        username_key: &str,
    ) -> Result<(), redis::RedisError> {
        let _: u64 = redis.incr(role_generation_key(username_key), 1).await?;
        Ok(())
    }

    /// The sessions `player` has started and not ended (some may have lapsed since).
    pub async fn of(
        &self,
        redis: &mut service::redis::Redis,
        player: PlayerId,
    ) -> Result<Vec<String>, redis::RedisError> {
        redis.smembers(player_sessions_key(player)).await
    }

    /// Ends these sessions of `player` (after a role change, say). Sessions started since they
    /// were listed stay.
    pub async fn end_these(
        &self,
        redis: &mut service::redis::Redis,
        player: PlayerId,
        sids: &[String],
    ) -> Result<(), redis::RedisError> {
        if sids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for sid in sids {
            pipe.del(session_key(player, sid)).ignore();
        }
        pipe.srem(player_sessions_key(player), sids).ignore();
        let () = pipe.query_async(redis).await?;
        crate::stream::announce_ended(redis, sids).await;
        for sid in sids {
            self.forget(sid);
        }
        Ok(())
    }

    /// Ends a session of `player`: its tokens are refused from now on.
    pub async fn end(
        &self,
        redis: &mut service::redis::Redis,
        player: PlayerId,
        sid: &str,
    ) -> Result<(), redis::RedisError> {
        let () = redis::pipe()
            .atomic()
            .del(session_key(player, sid))
            .ignore()
            .srem(player_sessions_key(player), sid)
            .ignore()
            .query_async(redis)
            .await?;
        crate::stream::announce_ended(redis, &[sid]).await;
        self.forget(sid);
        Ok(())
    }

    /// The state of session `sid` for a token of `player`: from Redis, or from the memory of
    /// confirmed sessions while Redis is unreachable (`Err` when it has no answer either).
    pub async fn check(
        &self,
        gate: &crate::redis_asks::Gate,
        sid: &str,
        player: PlayerId,
    ) -> Result<SessionState, SessionUnknown> {
        let ask = crate::redis_asks::Ask {
            session: Some(crate::redis_asks::SessionCheck {
                key: session_key(player, sid),
                owner: player.to_string(),
            }),
            ..crate::redis_asks::Ask::default()
        };
        let answer = gate.ask(ask).await;
        self.answered(sid, player, answer.ok().and_then(|a| a.session))
    }

    /// The state of session `sid` for a token of `player`, given Redis's answer (`None` when it
    /// gave none): Redis's answer is remembered, and without one a session confirmed within
    /// [`SESSION_GRACE`] keeps the player and role it was confirmed with (`Err` when there is no
    /// answer either way).
    pub fn answered(
        &self,
        sid: &str,
        player: PlayerId,
        redis_says: Option<SessionState>,
    ) -> Result<SessionState, SessionUnknown> {
        match redis_says {
            Some(SessionState::Live(role)) => {
                self.remember(sid, player, role);
                Ok(SessionState::Live(role))
            }
            Some(SessionState::Ended) => {
                self.forget(sid);
                Ok(SessionState::Ended)
            }
            Some(SessionState::NotTheirs) => Ok(SessionState::NotTheirs),
            None => {
                let confirmed = self.confirmed.lock().map_err(|_| SessionUnknown)?;
                match confirmed.get(sid) {
                    Some(c) if c.at.elapsed() < SESSION_GRACE && c.player == player => {
                        Ok(SessionState::Live(c.role))
                    }
                    Some(c) if c.at.elapsed() < SESSION_GRACE => Ok(SessionState::NotTheirs),
                    _ => Err(SessionUnknown),
                }
            }
        }
    }

    fn remember(&self, sid: &str, player: PlayerId, role: Role) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            if confirmed.len() > 100_000 {
                confirmed.retain(|_, c| c.at.elapsed() < SESSION_GRACE);
            }
            let at = Instant::now();
            confirmed.insert(sid.to_owned(), Confirmed { at, player, role });
        }
    }

    fn forget(&self, sid: &str) {
        if let Ok(mut confirmed) = self.confirmed.lock() {
            confirmed.remove(sid);
        }
    }
}

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
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
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
    /// The session's state as [`Sessions::answered`] decided it, turned into a caller (with the
    /// session's role) or a refusal.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ttl: u64) -> Tokens {
        Tokens::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "game-gateway",
            "game-clients",
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
        let other_key = Tokens::new(
            &SecretString::from("another-secret-another-secret-xx"),
            "game-gateway",
            "game-clients",
            Duration::from_secs(60),
        );
        assert_eq!(other_key.check(&token), Err(TokenError::Invalid));
        let other_audience = Tokens::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "game-gateway",
            "elsewhere",
            Duration::from_secs(60),
        );
        assert_eq!(other_audience.check(&token), Err(TokenError::Invalid));
        let mut tampered = token.clone();
        tampered.pop();
        assert_eq!(t.check(&tampered), Err(TokenError::Invalid));
        assert_eq!(t.check("not.a.token"), Err(TokenError::Invalid));
        // An unsigned token ("alg": "none") is never accepted.
        let parts: Vec<&str> = token.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert_eq!(t.check(&none), Err(TokenError::Invalid));
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

    #[test]
    fn the_decoy_hash_is_a_real_argon2_hash() {
        // Were it malformed, a login for an unknown user would return at once and tell.
        let parsed = PasswordHash::new(DECOY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password(SecretString::from("correct horse"))
            .await
            .expect("hash");
        assert!(
            verify_password(SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !verify_password(SecretString::from("wrong horse"), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !verify_password(SecretString::from("correct horse"), None)
                .await
                .expect("verify")
        );
    }
}
