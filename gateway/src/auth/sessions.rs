//! Sessions in Redis: a session holds its player and the role it was started with
//! (`session:<sid>` is `"<player> <role>"`), is listed among its player's, and ends at logout,
//! at a role change (fenced by the account's role generation) or when it lapses; its end is
//! announced to the live streams. While Redis is unreachable, a session confirmed within the
//! last [`SESSION_GRACE`] is still taken as live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use schemas::PlayerId;

use super::Role;

/// How long a confirmed session is trusted while Redis is unreachable.
pub const SESSION_GRACE: Duration = Duration::from_secs(30);

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
