//! Players' read model: `GET /v1/players/me`, and the region a player's avatar is in.
//!
//! Read from the Redis cache (`player:{<id>}`, kept fresh by the projector), then from MongoDB
//! (`players`, written by the projector), and, for a player the projector has not seen yet, from
//! the account itself: registered, not spawned, offline.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use mongodb::bson::doc;
use redis::AsyncCommands;
use schemas::PlayerId;
use schemas::read_model::collection::PLAYERS;
use schemas::read_model::{PlayerDoc, PlayerView, from_document, key};

use crate::AppState;
use crate::accounts;
use crate::auth::Bearer;
use crate::consistency;
use crate::error::ApiError;
use crate::ratelimit::Rule;
use crate::redis_asks::Unanswered;

/// How long a view read from MongoDB stays in the cache (the projector replaces it sooner).
pub const READ_THROUGH_TTL: Duration = Duration::from_secs(5);

/// A player's view, from the cache or the read model; `None` when neither has it.
pub async fn view(state: &AppState, player: PlayerId) -> Result<Option<PlayerView>, ApiError> {
    let cached = tokio::time::timeout(
        crate::redis_asks::BUDGET,
        state
            .redis()
            .get::<_, Option<String>>(key::player_view(player)),
    )
    .await
    .map_err(|_| Unanswered("no answer in time".to_owned()))
    .and_then(|got| got.map_err(|e| Unanswered(e.to_string())));
    resolve(state, player, cached).await
}

/// A player's view, given what the cache held (`Err` when Redis gave no answer): the cached
/// view, or else the read model's, which is then cached for [`READ_THROUGH_TTL`].
pub async fn resolve(
    state: &AppState,
    player: PlayerId,
    cached: Result<Option<String>, Unanswered>,
) -> Result<Option<PlayerView>, ApiError> {
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
            state.dependency_failed("mongodb", e, "cannot read players", "the player read model")
        })?
        .map(|doc| from_document::<PlayerDoc>(doc).map(PlayerView::from))
        .transpose()
        .map_err(ApiError::internal)?;
    if let Some(view) = &found
        && let Ok(text) = serde_json::to_string(view)
    {
        let _: Result<(), _> = state
            .redis()
            .set_ex(key::player_view(player), text, READ_THROUGH_TTL.as_secs())
            .await;
    }
    Ok(found)
}

/// `GET /v1/players/me`: the session, the player's read limit and the cached view are asked of
/// Redis in one round trip.
///
/// With `?min_seq=N`, answers once the read models hold every fact up to `N` (see
/// [`crate::consistency`]), from MongoDB rather than the cache.
pub async fn me(
    State(state): State<AppState>,
    bearer: Bearer,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PlayerView>, ApiError> {
    let player_key = bearer.0.sub.to_string();
    let limits = [(Rule::ReadsPerPlayer, player_key.as_str())];
    // The per-IP limit was counted before (see `limit_per_ip`).
    let admission = state.admit(&bearer.0.sid, bearer.0.sub, &[], &limits).await;
    let caller = bearer.into_caller(&state, admission.session)?;
    admission.limited?;
    let min_seq = consistency::only_min_seq(&query)?;
    consistency::reached(&state, min_seq).await?;
    // A cached view may have been read through from before the position was reached.
    let cached = match min_seq {
        Some(_) => Ok(None),
        None => admission.cached_view,
    };
    if let Some(view) = resolve(&state, caller.player, cached).await? {
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
