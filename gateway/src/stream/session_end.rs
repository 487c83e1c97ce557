//! A stream lives no longer than its session: the announcement of a session's end on Redis
//! ([`announce_ended`], wherever sessions end), and what a stream waits on to end with it
//! (`SessionEnd`).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::hub::{Delivery, Joined};
use crate::AppState;
use crate::auth::Claims;
use crate::error::ApiError;
use crate::open_streams::Admitted;

/// The Redis channel on which the end of session `sid` is announced.
pub fn session_channel(sid: &str) -> String {
    format!("session_ended:{sid}")
}

/// Announces on Redis that sessions `sids` have ended, so that every gateway ends their streams
/// at once. Called wherever sessions end. Best effort: a stream that misses the word ends at the
/// next check of its session ([`crate::open_streams`]).
pub async fn announce_ended<S: AsRef<str>>(redis: &mut service::redis::Redis, sids: &[S]) {
    if sids.is_empty() {
        return;
    }
    let publish: Vec<redis::Cmd> = sids
        .iter()
        .map(|sid| redis::Cmd::publish(session_channel(sid.as_ref()), "ended"))
        .collect();
    let announced: redis::RedisResult<Vec<redis::Value>> = redis.each(publish).await;
    if let Err(e) = announced {
        // Their streams end at the next check of their sessions.
        tracing::warn!(error = %e, "cannot announce the end of sessions");
    }
}

/// What ends a stream with its session: the announcement of its end, the periodic check
/// finding it gone, or the token's expiry.
pub(super) struct SessionEnd {
    /// The stream's place on the session's channel; left when dropped.
    pub(super) _listening: Joined,
    pub(super) announced: mpsc::Receiver<Delivery>,
    pub(super) gone: oneshot::Receiver<()>,
    /// When the token expires (seconds since the epoch).
    pub(super) expires_at: u64,
    /// The stream's place among the open ones; given back when dropped.
    pub(super) _admitted: Admitted,
}

impl SessionEnd {
    /// Waits for the session to end; why, for the close frame.
    pub(super) async fn ended(&mut self) -> &'static str {
        let now = crate::auth::now_secs();
        let expiry = Duration::from_secs(self.expires_at.saturating_sub(now));
        let expired = |at: u64| crate::auth::now_secs() >= at;
        tokio::select! {
            Some(_) = self.announced.recv() => "session ended",
            Ok(()) = &mut self.gone => {
                if expired(self.expires_at) { "session expired" } else { "session ended" }
            }
            () = tokio::time::sleep(expiry) => "session expired",
        }
    }
}

/// Listens for the end of the session `claims` name, before the session is checked: an end
/// announced after the check cannot be missed.
pub(super) async fn listen_for_end(
    state: &AppState,
    conn: u64,
    claims: &Claims,
) -> Result<(Joined, mpsc::Receiver<Delivery>), ApiError> {
    let (announce, announced) = mpsc::channel::<Delivery>(8);
    let listening = Joined {
        hub: state.hub().clone(),
        conn,
        channels: BTreeSet::from([session_channel(&claims.sid)]),
    };
    listening.subscribe(state, &announce).await?;
    Ok((listening, announced))
}
