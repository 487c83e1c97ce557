//! The handshake of `GET /v1/stream`: the token (from the header or `?access_token=`), the
//! listening for the session's end before the session is checked, the caps, the player's place,
//! the first subscriptions, and then the upgrade to the per-connection loop.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use tokio::sync::mpsc;

use super::hub::{Delivery, Joined};
use super::interest::Interest;
use super::session_end::{SessionEnd, listen_for_end};
use super::socket::pump;
use super::{BUFFER, MAX_INCOMING};
use crate::AppState;
use crate::auth::{Bearer, Caller};
use crate::error::ApiError;
use crate::players;
use crate::request::ClientIp;

/// The token of a stream: from the `Authorization` header, or from `?access_token=`.
async fn bearer(
    parts: &mut Parts,
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<Bearer, ApiError> {
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
    Bearer::from_request_parts(parts, state).await
}

/// `GET /v1/stream`.
pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    mut parts: Parts,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Bearer(claims) = bearer(&mut parts, &state, &query).await?;
    let conn = state.hub().connection();
    let (listening, announced) = listen_for_end(&state, conn, &claims).await?;
    // Checked as every route checks it, once the stream listens for its end.
    let caller = Caller::from_request_parts(&mut parts, &state).await?;
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.holder());
    let (admitted, gone) = state
        .open_streams()
        .admit(conn, caller.player, ip, &caller.session)?;
    let end = SessionEnd {
        _listening: listening,
        announced,
        gone,
        expires_at: claims.exp,
        _admitted: admitted,
    };
    let placed = players::view(&state, caller.player)
        .await?
        .filter(|v| v.online);
    let interest = Interest::new(
        &state.settings().world,
        caller.player,
        state.settings().stream_interest_radius,
        placed.as_ref().and_then(|v| v.region.clone()),
        placed.as_ref().and_then(|v| v.position),
    );
    let hub = state.hub().clone();
    let (queue, queued) = mpsc::channel::<Delivery>(BUFFER);
    let joined = Joined {
        conn,
        channels: interest.channels(),
        hub,
    };
    joined.subscribe(&state, &queue).await?;
    tracing::info!(player = %caller.player, channels = ?joined.channels, "stream opened");
    // Only the hub holds the queue now: when it drops a client that fell behind, the queue
    // closes and the stream ends.
    let queue = queue.downgrade();
    // The read buffer no larger than what a client may send: tungstenite fills the free part
    // of it with zeros before each read, and a stream's read is tried again after every fact
    // sent. With the default 128 KiB, `memset` was 8.8 % of the gateway's samples under the load
    // driver (perf); with 4 KiB, 2.8 to 3.1 %.
    let ws = ws
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .read_buffer_size(MAX_INCOMING);
    Ok(ws.on_upgrade(move |socket| pump(socket, state, joined, interest, queue, queued, end)))
}
