//! `POST /v1/commands`: a player's command, validated, routed to the region that owns the
//! player's avatar, stored in JetStream with its id as `Nats-Msg-Id`, and answered 202 with the
//! command id and stream sequence once JetStream has acknowledged it.
//!
//! An `Idempotency-Key` maps, per player, to one command id for 24 hours: a retried request is
//! stored once and answered the same; the same key with a different command is a 409.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use redis::AsyncCommands;
use schemas::read_model::key::POPULATION;
use schemas::{Actor, Command, Envelope, EventId, FieldError, Invalid, Origin, PlayerId, RegionId};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Bearer;
use crate::body::JsonBody;
use crate::error::{ApiError, Code};
use crate::players;
use crate::ratelimit::Rule;
use crate::request::{ClientIp, RequestIds};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What a key was used for, and the answer once there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KeyRecord {
    command_id: EventId,
    command: serde_json::Value,
    #[serde(default)]
    stream_seq: Option<u64>,
}

/// The 202 answer.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Accepted {
    /// The command's id: the correlation id of its facts.
    pub command_id: EventId,
    /// Its sequence in the `COMMANDS` stream.
    pub stream_seq: u64,
}

/// The 200 answer of `?wait=true` when the outcome came in time.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    /// The command's id.
    pub command_id: EventId,
    /// Whether the region applied it or rejected it.
    pub status: OutcomeStatus,
    /// Why it was rejected, as a code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<schemas::RejectReason>,
    /// Why it was rejected, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The facts it produced, as stored in the event log.
    pub facts: Vec<serde_json::Value>,
    /// The command's sequence in the `COMMANDS` stream.
    pub stream_seq: u64,
    /// Each fact's sequence in the `FACTS` stream, in the order of `facts`. A read given
    /// `?min_seq=` the last of them answers with what the command did.
    pub fact_seqs: Vec<u64>,
}

/// What the region did with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Applied: its facts say what happened.
    Applied,
    /// Rejected: `reason` says why.
    Rejected,
}

/// How long to wait for the outcome: `None` without `?wait=true`. `wait_ms` (1 to the configured
/// maximum) overrides the default wait; any other parameter is refused.
fn wait_for(
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<Option<Duration>, ApiError> {
    let mut details = Vec::new();
    let wait = match query.get("wait").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => {
            details.push(FieldError::new("wait", "invalid", "must be true or false"));
            false
        }
    };
    let max = state.settings().wait_max;
    let mut limit = state.settings().wait_default;
    if let Some(ms) = query.get("wait_ms") {
        match ms.parse::<u64>() {
            Ok(ms) if ms >= 1 && Duration::from_millis(ms) <= max => {
                limit = Duration::from_millis(ms)
            }
            _ => details.push(FieldError::new(
                "wait_ms",
                "range",
                format!(
                    "must be a whole number of milliseconds from 1 to {}",
                    max.as_millis()
                ),
            )),
        }
    }
    details.extend(crate::error::unknown_parameters(
        query,
        &["wait", "wait_ms"],
    ));
    details.sort_by(|a, b| a.field.cmp(&b.field));
    Invalid::check(details)?;
    Ok(wait.then_some(limit))
}

/// How long an `Idempotency-Key` may be, in characters.
pub const IDEMPOTENCY_KEY_LEN: std::ops::RangeInclusive<usize> = 1..=128;

/// Whether an `Idempotency-Key` may hold `c`: visible ASCII.
pub fn idempotency_key_char(c: char) -> bool {
    c.is_ascii_graphic()
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        IDEMPOTENCY_KEY_LEN.contains(&k.chars().count()) && k.chars().all(idempotency_key_char)
    });
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::from(schemas::Invalid::one(
            "Idempotency-Key",
            "invalid",
            "must be 1 to 128 visible ASCII characters",
        ))
    })
}

/// `POST /v1/commands`.
///
/// The client's IP is counted against its limit before anything else is decided: a token that
/// is not valid, or whose session has ended, or a body that is refused, still counts, so a
/// flood of them from one address gets 429.
pub async fn submit(
    State(state): State<AppState>,
    bearer: Result<Bearer, ApiError>,
    request_ids: RequestIds,
    axum::Extension(ClientIp(ip)): axum::Extension<ClientIp>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<axum::response::Response, ApiError> {
    let ip_key = ClientIp(ip).holder().to_string();
    let bearer = match bearer {
        Ok(bearer) => bearer,
        Err(refused) => {
            state.limit(Rule::ApiPerIp, &ip_key).await?;
            return Err(refused);
        }
    };
    // Every command asks Redis three things: is the session live, are the sender and its IP
    // within their limits, and the cached view (where the avatar is, should avatar_regions have
    // no entry). The gate asks them in one script call, together with other requests'
    // questions; the IP is counted whatever the session's state. Where the simulators put the
    // avatar is asked of avatar_regions meanwhile (the lookup starts after the request came, so
    // after any outcome its sender was told of), unless the gate turned the player away lately:
    // then only once admitted, so that what the gate refuses does not reach NATS.
    let player = bearer.0.sub;
    let player_key = player.to_string();
    let by_ip = [(Rule::ApiPerIp, ip_key.as_str())];
    let by_player = [(Rule::CommandsPerPlayer, player_key.as_str())];
    let admit = state.admit(&bearer.0.sid, player, &by_ip, &by_player);
    let (admission, placed) = if state.refused().lately(player) {
        (admit.await, None)
    } else {
        let (admission, placed) = tokio::join!(admit, placed_by_simulators(&state, player));
        (admission, Some(placed))
    };
    let turned_away = |e: ApiError| {
        state.refused().note(player);
        e
    };
    admission.limited.map_err(turned_away)?;
    let caller = bearer
        .into_caller(&state, admission.session)
        .map_err(turned_away)?;
    let placed = match placed {
        Some(placed) => placed,
        None => placed_by_simulators(&state, player).await,
    };
    let JsonBody(body) = body?;
    let wait = wait_for(&state, &query)?;
    let key = idempotency_key(&headers)?;
    let command = Command::parse_value(body, Origin::Player, state.validation())?;
    // The bucket first, and the read models only when it has no entry: the projector drops a
    // player's cached view with every batch that changes the player, so asking both at once sent
    // nearly every command to MongoDB, where a read waits behind the projector's batch.
    let current = match placed {
        Some(entry) => entry.region,
        // Not placed by a simulator since the bucket was made: the read models know.
        None => players::resolve(&state, caller.player, admission.cached_view)
            .await?
            .filter(|v| v.online)
            .and_then(|v| v.region),
    };
    let region = route(&state, current, &command).await?;
    tracing::Span::current().record("region", tracing::field::display(&region));

    let normalized = serde_json::to_value(&command).map_err(ApiError::internal)?;
    let (command_id, answered) = match &key {
        None => (EventId::new(), None),
        Some(key) => claim_key(&state, caller.player, key, &normalized).await?,
    };
    if let Some(stream_seq) = answered {
        // Answered before: the outcome, if any, went to that request.
        let accepted = Accepted {
            command_id,
            stream_seq,
        };
        return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response());
    }

    let mut env = Envelope::new(Actor::Player { id: caller.player }, Some(region), command);
    env.id = command_id;
    env.correlation_id = command_id;
    let client_request_id = request_ids.client.as_ref().map(|c| c.0.as_str());
    let mut message =
        stored_as(&env, &request_ids.own.0, client_request_id, ip).map_err(ApiError::internal)?;
    // Registered before publishing, so an outcome that comes back at once is not missed.
    let waiter = wait.map(|_| state.outcomes().register(command_id));
    if waiter.is_some() {
        message = message.header(
            nats_topology::outcome::OUTCOME_INBOX,
            state.outcomes().inbox(),
        );
    }
    let ack = state.publish(message).await?;
    let kind = env.payload.kind();
    state
        .metrics()
        .command_published(kind.as_str(), kind.priority().as_str());

    if let Some(key) = &key {
        let record = KeyRecord {
            command_id,
            command: normalized,
            stream_seq: Some(ack.sequence),
        };
        // The command is stored; failing to remember its sequence only costs a republish (which
        // JetStream de-duplicates) on a retry.
        if let Err(e) = remember(&state, caller.player, key, &record).await {
            tracing::warn!(error = %e, "cannot record the answer of an idempotency key");
        }
    }
    if let (Some(waiter), Some(limit)) = (waiter, wait)
        && let Some(outcome) = waiter.wait(limit).await
    {
        let rejection = outcome.rejection();
        let answer = Outcome {
            command_id,
            status: if rejection.is_some() {
                OutcomeStatus::Rejected
            } else {
                OutcomeStatus::Applied
            },
            reason: rejection.as_ref().map(|r| r.0),
            message: rejection.map(|r| r.1),
            facts: outcome.facts,
            stream_seq: ack.sequence,
            fact_seqs: outcome.seqs,
        };
        return Ok((StatusCode::OK, Json(answer)).into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            command_id,
            stream_seq: ack.sequence,
        }),
    )
        .into_response())
}

/// The message a command is stored as: its envelope on its subject, with its id as
/// `Nats-Msg-Id`, and in the headers the gateway's request id, the client's own beside it when
/// it sent one, and the client's address.
pub fn stored_as(
    env: &Envelope<Command>,
    request_id: &str,
    client_request_id: Option<&str>,
    ip: IpAddr,
) -> Result<nats_topology::Outgoing, nats_topology::publish::OutgoingError> {
    let mut message = nats_topology::Outgoing::command(env)?
        .header(nats_topology::headers::REQUEST_ID, request_id)
        .header(nats_topology::headers::CLIENT_IP, &ip.to_string());
    if let Some(client_request_id) = client_request_id {
        message = message.header(nats_topology::headers::CLIENT_REQUEST_ID, client_request_id);
    }
    Ok(message)
}

fn redis_key(player: PlayerId, key: &str) -> String {
    format!("idem:{player}:{key}")
}

/// The command id a key stands for (a new one on first use), and the earlier answer if there
/// is one.
async fn claim_key(
    state: &AppState,
    player: PlayerId,
    key: &str,
    command: &serde_json::Value,
) -> Result<(EventId, Option<u64>), ApiError> {
    let unavailable = |e: redis::RedisError| {
        state.dependency_failed(
            "redis",
            e,
            "idempotency store unreachable",
            "the idempotency store",
        )
    };
    let fresh = KeyRecord {
        command_id: EventId::new(),
        command: command.clone(),
        stream_seq: None,
    };
    let text = serde_json::to_string(&fresh).map_err(ApiError::internal)?;
    let mut redis = state.redis();
    let options = redis::SetOptions::default()
        .conditional_set(redis::ExistenceCheck::NX)
        .with_expiration(redis::SetExpiry::EX(IDEMPOTENCY_TTL.as_secs()));
    let claimed: Option<String> = redis
        .set_options(redis_key(player, key), &text, options)
        .await
        .map_err(unavailable)?;
    if claimed.is_some() {
        return Ok((fresh.command_id, None));
    }
    let existing: Option<String> = redis
        .get(redis_key(player, key))
        .await
        .map_err(unavailable)?;
    let existing: KeyRecord = existing
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or_else(|| ApiError::unavailable("the idempotency store"))?;
    if &existing.command != command {
        return Err(ApiError::new(
            Code::IdempotencyConflict,
            "this Idempotency-Key was used for a different command",
        ));
    }
    Ok((existing.command_id, existing.stream_seq))
}

async fn remember(
    state: &AppState,
    player: PlayerId,
    key: &str,
    record: &KeyRecord,
) -> Result<(), redis::RedisError> {
    let text = serde_json::to_string(record).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "encode", e.to_string()))
    })?;
    let options = redis::SetOptions::default()
        .conditional_set(redis::ExistenceCheck::XX)
        .with_expiration(redis::SetExpiry::KEEPTTL);
    let _: Option<String> = state
        .redis()
        .set_options(redis_key(player, key), text, options)
        .await?;
    Ok(())
}

/// The players whose commands the gate turned away lately (over a limit, or with a session that
/// is not live), each for [`Refused::FOR`] after its last refusal. A command of theirs asks
/// `avatar_regions` only once admitted: a flood the gate refuses costs Redis its call, and NATS
/// one read for the first refusal in a row. At most [`Refused::MOST`] are kept (moka's policy
/// decides which go; one let go is noted again at its next refusal).
#[derive(Debug)]
pub struct Refused(moka::sync::Cache<PlayerId, ()>);

impl Default for Refused {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(Self::MOST)
                .time_to_live(Self::FOR)
                .build(),
        )
    }
}

impl Refused {
    /// How long a refusal is remembered.
    pub const FOR: Duration = Duration::from_secs(2);
    /// The most players remembered.
    pub const MOST: u64 = 100_000;

    /// Whether the gate turned `player` away within [`Refused::FOR`].
    pub fn lately(&self, player: PlayerId) -> bool {
        self.0.contains_key(&player)
    }

    /// Remembers that the gate turned `player` away now.
    pub fn note(&self, player: PlayerId) {
        self.0.insert(player, ());
    }
}

/// Where the simulators last put the player's avatar (`avatar_regions`): written before the
/// fact that put it there was stored, so it is never behind an outcome the player was told of,
/// whichever gateway told it. `None` when the bucket has no entry for the player or does not
/// answer within the gate's budget (the read models decide then).
async fn placed_by_simulators(
    state: &AppState,
    player: PlayerId,
) -> Option<nats_topology::avatars::AvatarRegion> {
    let lookup = state.placements().lookup(player);
    match tokio::time::timeout(crate::redis_asks::BUDGET, lookup).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            state.metrics().dependency_error("nats");
            tracing::warn!(error = %e, "avatar_regions did not answer; routing by the read models");
            None
        }
        Err(_) => {
            state.metrics().dependency_error("nats");
            tracing::warn!("avatar_regions did not answer in time; routing by the read models");
            None
        }
    }
}

/// The region a command goes to: the one the player's avatar is in; for a `spawn` of a player
/// with no avatar in the world, the region it names (or the least crowded). A player with no
/// avatar in the world gets 409 for anything but a spawn.
///
/// A spawn of an avatar already in the world goes to its region whatever it names, and that
/// region refuses it (`already_spawned`): sent to the region named, it would find no avatar
/// there and place a second one, leaving the first where no command reaches it.
async fn route(
    state: &AppState,
    current: Option<RegionId>,
    command: &Command,
) -> Result<RegionId, ApiError> {
    if let Command::Spawn(spawn) = command {
        if let Some(region) = current.or_else(|| spawn.region.clone()) {
            return Ok(region);
        }
        let population = population(state).await;
        return state
            .settings()
            .world
            .least_crowded(&population)
            .map(|r| r.id.clone())
            .ok_or_else(|| ApiError::unavailable("every region is full; a region"));
    }
    current.ok_or_else(|| {
        ApiError::new(
            Code::NotInWorld,
            "spawn first: the player has no avatar in the world",
        )
    })
}

/// Players per region, as the projector last counted them (empty when unknown).
async fn population(state: &AppState) -> BTreeMap<RegionId, u32> {
    let counts: Result<BTreeMap<String, u32>, _> = state.redis().hgetall(POPULATION).await;
    counts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(region, count)| RegionId::new(region).ok().map(|r| (r, count)))
        .collect()
}
