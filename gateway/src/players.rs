//! Players' read model: `GET /v1/players/me`, and the region a player's avatar is in.
//!
//! Read from the Redis cache (`player:<id>`, kept fresh by the projector), then from MongoDB
//! (`players`, written by the projector), and, for a player the projector has not seen yet, from
//! the account itself: registered, not spawned, offline.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use mongodb::bson::doc;
use redis::AsyncCommands;
use schemas::read_model::PlayerView;
use schemas::{PlayerId, RegionId};

use crate::AppState;
use crate::accounts;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ratelimit::Rule;

/// The read-model collection of players.
pub const PLAYERS: &str = "players";

/// How long a view read from MongoDB stays in the cache (the projector replaces it sooner).
pub const READ_THROUGH_TTL: Duration = Duration::from_secs(5);

/// The cache key of a player's view.
pub fn cache_key(player: PlayerId) -> String {
    format!("player:{player}")
}

/// A player's view, from the cache or the read model; `None` when neither has it.
pub async fn view(state: &AppState, player: PlayerId) -> Result<Option<PlayerView>, ApiError> {
    let mut redis = state.redis();
    let cached: Result<Option<String>, _> =
        tokio::time::timeout(Duration::from_millis(200), redis.get(cache_key(player)))
            .await
            .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timed out"))));
    match cached {
        Ok(Some(text)) => {
            if let Ok(view) = serde_json::from_str(&text) {
                return Ok(Some(view));
            }
        }
        Ok(None) => {}
        Err(_) => state.metrics().dependency_error("redis"),
    }
    let found = state
        .db()
        .collection::<mongodb::bson::Document>(PLAYERS)
        .find_one(doc! {"_id": player.to_string()})
        .await
        .map_err(|e| {
            state.metrics().dependency_error("mongodb");
            tracing::warn!(error = %e, "cannot read players");
            ApiError::unavailable("the player read model")
        })?
        .map(from_document)
        .transpose()?;
    if let Some(view) = &found
        && let Ok(text) = serde_json::to_string(view)
    {
        let _: Result<(), _> = redis
            .set_ex(cache_key(player), text, READ_THROUGH_TTL.as_secs())
            .await;
    }
    Ok(found)
}

/// A read-model document as a [`PlayerView`]. Documents hold ids as strings, which BSON's own
/// deserializer would read as binary UUIDs, so the document goes through JSON.
fn from_document(doc: mongodb::bson::Document) -> Result<PlayerView, ApiError> {
    serde_json::from_value(mongodb::bson::Bson::Document(doc).into_relaxed_extjson())
        .map_err(ApiError::internal)
}

/// The region the player's avatar is in, if it is in the world.
pub async fn current_region(
    state: &AppState,
    player: PlayerId,
) -> Result<Option<RegionId>, ApiError> {
    Ok(view(state, player)
        .await?
        .filter(|v| v.online)
        .and_then(|v| v.region))
}

/// `GET /v1/players/me`.
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PlayerView>, ApiError> {
    state
        .limit(Rule::ReadsPerPlayer, &caller.player.to_string())
        .await?;
    if let Some(view) = view(&state, caller.player).await? {
        return Ok(Json(view));
    }
    let account = accounts::find_by_id(&state, caller.player)
        .await?
        .ok_or_else(|| ApiError::new(crate::error::Code::NotFound, "no such player"))?;
    Ok(Json(PlayerView::registered(
        caller.player,
        account.username,
        account.role.as_str().to_owned(),
    )))
}
