//! `GET /v1/stream`: the live facts around a player, over a WebSocket.
//!
//! The projector publishes every fact on Redis channels `region:<region>` and `player:<player>`;
//! a connection subscribes to its player's channel and to the region the avatar is in, and
//! forwards each message as a text frame. Between Redis and the socket sits a queue of
//! [`BUFFER`] messages: a client that reads slower than facts arrive fills it and is disconnected
//! (close code 1008, "too slow"), so no client can make the gateway hold memory without bound.
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as `?access_token=`.

use std::collections::HashMap;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::players;

/// Messages queued for one client before it is dropped as too slow.
pub const BUFFER: usize = 256;

/// The close code sent to a client that could not keep up (policy violation).
pub const TOO_SLOW: u16 = 1008;

/// The Redis channel of a region's facts.
pub fn region_channel(region: &schemas::RegionId) -> String {
    format!("region:{region}")
}

/// The Redis channel of one player's facts.
pub fn player_channel(player: schemas::PlayerId) -> String {
    format!("player:{player}")
}

/// The caller of a stream: from the `Authorization` header, or from `?access_token=`.
async fn caller(
    parts: &mut Parts,
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<Caller, ApiError> {
    if !parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
        && let Some(token) = query.get("access_token")
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        parts
            .headers
            .insert(axum::http::header::AUTHORIZATION, value);
    }
    Caller::from_request_parts(parts, state).await
}

/// `GET /v1/stream`.
pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    mut parts: Parts,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let caller = caller(&mut parts, &state, &query).await?;
    let mut channels = vec![player_channel(caller.player)];
    if let Some(region) = players::current_region(&state, caller.player).await? {
        channels.push(region_channel(&region));
    }
    let mut pubsub = state.redis_client().get_async_pubsub().await.map_err(|e| {
        state.metrics().dependency_error("redis");
        tracing::warn!(error = %e, "cannot subscribe for a stream");
        ApiError::unavailable("the live stream")
    })?;
    for channel in &channels {
        pubsub
            .subscribe(channel)
            .await
            .map_err(|_| ApiError::unavailable("the live stream"))?;
    }
    tracing::info!(player = %caller.player, ?channels, "stream opened");
    Ok(ws.on_upgrade(move |socket| pump(socket, pubsub)))
}

async fn pump(socket: WebSocket, pubsub: redis::aio::PubSub) {
    let (mut sink, mut incoming) = socket.split();
    let (queue, mut queued) = mpsc::channel::<String>(BUFFER);
    let reader = tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        let mut recent = Recent::default();
        while let Some(message) = messages.next().await {
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            // A fact about the player in the player's region comes on both channels: once is
            // enough.
            if !recent.first_time(&text) {
                continue;
            }
            match queue.try_send(text) {
                Ok(()) => {}
                // Full: the client is too slow. Closed: the client has gone.
                Err(_) => break,
            }
        }
    });
    loop {
        tokio::select! {
            next = queued.recv() => match next {
                Some(text) => {
                    if sink.send(Message::Text(Utf8Bytes::from(text))).await.is_err() {
                        break;
                    }
                }
                None => {
                    // The reader stopped: Redis went away or the client fell behind.
                    let frame = CloseFrame { code: TOO_SLOW, reason: Utf8Bytes::from_static("too slow or stream ended") };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
            },
            from_client = incoming.next() => match from_client {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    reader.abort();
}

/// The ids of the last facts sent on one connection, to send each once.
#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<String>,
    seen: std::collections::HashSet<String>,
}

impl Recent {
    const KEEP: usize = 1024;

    /// Whether a message is seen for the first time (messages without an id always are).
    fn first_time(&mut self, text: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Option<String>,
        }
        let Some(id) = serde_json::from_str::<Id>(text).ok().and_then(|m| m.id) else {
            return true;
        };
        if !self.seen.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn a_fact_arriving_on_two_channels_is_sent_once() {
        let mut recent = Recent::default();
        let fact = r#"{"id": "0193", "kind": "damaged"}"#;
        assert!(recent.first_time(fact));
        assert!(!recent.first_time(fact));
        assert!(recent.first_time(r#"{"id": "0194", "kind": "moved"}"#));
        // Live positions carry no id; each is sent.
        let positions = r#"{"kind": "positions", "entities": []}"#;
        assert!(recent.first_time(positions) && recent.first_time(positions));
    }
}
