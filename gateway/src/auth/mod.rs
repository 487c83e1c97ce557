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
//!
//! - [`tokens`]: access tokens: their claims, issuing and checking them.
//! - [`passwords`]: hashing and verifying passwords (Argon2id), alike for unknown accounts, on
//!   workers of their own at a lower priority.
//! - [`sessions`]: sessions in Redis, their roles and their end, with the memory that carries
//!   players through a short Redis outage.
//! - [`callers`]: who a request comes from, as extractors: [`Bearer`], [`Caller`], [`Admin`]
//!   (with the admin API key).

pub mod callers;
pub mod passwords;
pub mod sessions;
pub mod tokens;

use serde::{Deserialize, Serialize};

pub use callers::{Admin, Bearer, Caller, api_key_matches};
pub use passwords::Passwords;
pub use sessions::{
    RoleGeneration, SESSION_GRACE, SessionState, SessionUnknown, Sessions, session_key,
};
pub use tokens::{Claims, TokenError, Tokens, now_secs};

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
