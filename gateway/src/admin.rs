//! Admin routes (admin role and `X-Api-Key`): dead letters, region assignments, roles.
//!
//! - `GET /admin/dlq?after=&limit=`: dead letters in `DLQ` order, with origin, reason, attempts.
//! - `POST /admin/dlq/redrive` `{"seqs": [..]}` or `{"all": true}`: each dead command is published
//!   again on its origin subject (with a `Dlq-Redriven-From` header) and, once JetStream has it,
//!   removed from `DLQ`. Facts are not redriven this way: publishing a fact again would put it in
//!   the event log twice; they are answered `redrive_unsupported`. A dead command goes back only
//!   to a command's subject, as the command its payload decodes to would be published, and as
//!   `COMMANDS` still holds it (`not_a_command`, `not_as_stored` otherwise): whoever writes
//!   `DLQ` writes a letter's origin, and the gateway publishes with rights of its own.
//! - `GET /admin/regions`: who owns each region, and each simulator node's load.
//! - `PUT /admin/players/{id}/role` `{"role": ..}`: changes a role and ends the player's sessions,
//!   so the next token carries the new role.

use async_nats::jetstream::stream::RawMessageErrorKind;
use axum::Json;
use axum::extract::{Path, Query, State};
use bytes::Bytes;
use futures::StreamExt;
use mongodb::bson::doc;
use nats_topology::DeadLetter;
use nats_topology::topology::{COMMANDS, DLQ};
use schemas::fact::{LoggedOut, RoleChanged};
use schemas::{Actor, EventId, Fact, FieldError, Invalid, PlayerId, RegionId};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

use crate::AppState;
use crate::accounts;
use crate::auth::{Admin, Role};
use crate::body::JsonBody;
use crate::error::{ApiError, Code};

/// The most dead letters one page lists, and one redrive handles.
pub const MAX_PAGE: usize = 500;

/// The largest sequence number a request may name: the largest whole number JSON clients read
/// exactly (2^53 - 1). A `DLQ` never comes near it; anything above is refused, not computed with.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// A dead letter as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeadLetterView {
    /// Its sequence in `DLQ`: what redrive takes.
    pub seq: u64,
    /// The stream it came from.
    pub origin_stream: String,
    /// Its origin subject.
    pub origin_subject: String,
    /// Its sequence in the origin stream.
    pub origin_seq: u64,
    /// The consumer that gave up on it.
    pub consumer: Option<String>,
    /// Why.
    pub reason: String,
    /// Deliveries attempted.
    pub attempts: u64,
    /// When it was dead-lettered.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Its body: JSON when it is JSON, text otherwise.
    pub payload: Value,
}

/// A page of dead letters.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeadLetterPage {
    /// The dead letters after `after`, in `DLQ` order.
    pub dead_letters: Vec<DeadLetterView>,
    /// What to pass as `after` for the next page; `null` when this page is empty.
    pub next_after: Option<u64>,
    /// Dead letters in `DLQ` now.
    pub total: u64,
}

/// What a redrive did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Redriven {
    /// The `DLQ` sequences published again and removed from `DLQ`.
    pub redriven: Vec<u64>,
    /// Those that were not, and why.
    pub failed: Vec<RedriveFailure>,
}

/// A dead letter that was not redriven.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RedriveFailure {
    /// Its `DLQ` sequence.
    pub seq: u64,
    /// Why, as a code: `not_found`, `not_a_dead_letter`, `redrive_unsupported`, `not_a_command`,
    /// `not_as_stored`, `unavailable`.
    pub code: String,
    /// Why, for people.
    pub message: String,
}

/// Region owners and simulator load.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Assignments {
    /// Every region, with its owner if it has one.
    pub regions: Vec<RegionAssignment>,
    /// Every simulator node that reported its load recently.
    pub nodes: Vec<NodeView>,
}

/// A region and who owns it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RegionAssignment {
    /// The region.
    pub id: RegionId,
    /// The simulator node that owns it, if any.
    pub owner: Option<String>,
    /// When the owner took it.
    pub acquired_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the owner last renewed its lease.
    pub renewed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Players in it, as last counted.
    pub population: u32,
    /// Players it holds at most.
    pub capacity: u32,
}

/// How busy a simulator node is.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NodeView {
    /// The node.
    pub node: String,
    /// The regions it runs.
    pub regions: Vec<RegionId>,
    /// Players in those regions.
    pub players: u64,
    /// Entities in those regions.
    pub entities: u64,
    /// The slowest recent tick, in milliseconds.
    pub tick_ms: f64,
    /// When this was measured.
    pub reported_at: chrono::DateTime<chrono::Utc>,
}

impl From<nats_topology::lease::NodeLoad> for NodeView {
    fn from(load: nats_topology::lease::NodeLoad) -> Self {
        Self {
            node: load.node,
            regions: load.regions,
            players: load.players,
            entities: load.entities,
            tick_ms: load.tick_ms,
            reported_at: load.reported_at,
        }
    }
}

/// A player's new role.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RoleSet {
    /// The player.
    pub player_id: PlayerId,
    /// Its role now.
    pub role: Role,
}

/// Where a rebuild job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    /// Waiting for a projector to take it.
    Pending,
    /// Folding the facts.
    Running,
    /// The rebuilt collections replaced the live ones.
    Done,
    /// It failed; `error` says why.
    Failed,
}

impl From<nats_topology::jobs::JobState> for RebuildState {
    fn from(state: nats_topology::jobs::JobState) -> Self {
        use nats_topology::jobs::JobState;
        match state {
            JobState::Pending => Self::Pending,
            JobState::Running => Self::Running,
            JobState::Done => Self::Done,
            JobState::Failed => Self::Failed,
        }
    }
}

/// A rebuild job just requested.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RebuildRequested {
    /// Its id: 32 hexadecimal digits.
    pub job_id: String,
    /// `pending`.
    pub state: RebuildState,
}

/// A rebuild job and its progress.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RebuildProgress {
    /// Its id.
    pub job_id: String,
    /// Where it stands.
    pub state: RebuildState,
    /// Who asked for it (a player id).
    pub requested_by: String,
    /// When it was asked for.
    pub requested_at: chrono::DateTime<chrono::Utc>,
    /// When its progress was last written.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Facts folded so far.
    pub facts_done: u64,
    /// Facts to fold.
    pub facts_total: u64,
    /// Facts per second, recently.
    pub rate_per_sec: f64,
    /// Seconds left at that rate, when known.
    pub eta_secs: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl From<nats_topology::jobs::RebuildJob> for RebuildProgress {
    fn from(job: nats_topology::jobs::RebuildJob) -> Self {
        Self {
            job_id: job.job_id,
            state: job.state.into(),
            requested_by: job.requested_by,
            requested_at: job.requested_at,
            updated_at: job.updated_at,
            facts_done: job.facts_done,
            facts_total: job.facts_total,
            rate_per_sec: job.rate_per_sec,
            eta_secs: job.eta_secs,
            error: job.error,
        }
    }
}

/// A job id as `POST /admin/projections/rebuild` makes them: 32 hexadecimal digits.
pub const JOB_ID_LEN: usize = 32;

/// Whether a job id may hold `c`.
pub fn job_id_char(c: char) -> bool {
    c.is_ascii_hexdigit()
}

fn payload_of(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn bus_down(state: &AppState, e: impl std::fmt::Display) -> ApiError {
    state.dependency_failed(
        "nats",
        e,
        "dead-letter stream unreachable",
        "the dead-letter stream",
    )
}

/// The `DLQ` stream and its current state.
async fn dlq(
    state: &AppState,
) -> Result<
    (
        async_nats::jetstream::stream::Stream,
        async_nats::jetstream::stream::State,
    ),
    ApiError,
> {
    let mut stream = state
        .js()
        .get_stream(DLQ)
        .await
        .map_err(|e| bus_down(state, e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| bus_down(state, e))?
        .state
        .clone();
    Ok((stream, info))
}

fn page_params(query: &HashMap<String, String>) -> Result<(u64, usize), ApiError> {
    let mut details = Vec::new();
    let after = match query.get("after").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(v)) if v <= MAX_SEQ => v,
        Some(_) => {
            details.push(FieldError::new(
                "after",
                "range",
                format!("must be a sequence number from 0 to {MAX_SEQ}"),
            ));
            0
        }
    };
    let limit = match query.get("limit").map(|v| v.parse::<usize>()) {
        None => 100,
        Some(Ok(v)) if (1..=MAX_PAGE).contains(&v) => v,
        Some(_) => {
            details.push(FieldError::new(
                "limit",
                "range",
                format!("must be 1 to {MAX_PAGE}"),
            ));
            100
        }
    };
    details.extend(crate::error::unknown_parameters(query, &["after", "limit"]));
    Invalid::check(details)?;
    Ok((after, limit))
}

/// `GET /admin/dlq`.
pub async fn list_dead_letters(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let (after, limit) = page_params(&query)?;
    let (stream, info) = dlq(&state).await?;
    let mut letters = Vec::new();
    let mut seq = after
        .max(info.first_sequence.saturating_sub(1))
        .saturating_add(1);
    while seq <= info.last_sequence && letters.len() < limit {
        if let Ok(message) = stream.get_raw_message(seq).await
            && let Ok(letter) = DeadLetter::parse(&message.headers, message.payload.clone())
        {
            letters.push(view_of(seq, &letter));
        }
        let Some(next) = seq.checked_add(1) else {
            break;
        };
        seq = next;
    }
    let next_after = letters.last().map(|l: &DeadLetterView| l.seq);
    Ok(Json(DeadLetterPage {
        dead_letters: letters,
        next_after,
        total: info.messages,
    }))
}

fn view_of(seq: u64, letter: &DeadLetter) -> DeadLetterView {
    DeadLetterView {
        seq,
        origin_stream: letter.origin_stream.clone(),
        origin_subject: letter.origin_subject.clone(),
        origin_seq: letter.origin_seq,
        consumer: letter.consumer.clone(),
        reason: letter.reason.clone(),
        attempts: letter.attempts,
        at: letter.at,
        payload: payload_of(&letter.payload),
    }
}

/// Which dead letters to redrive.
fn redrive_selection(body: &Value) -> Result<Option<Vec<u64>>, ApiError> {
    let Some(map) = body.as_object() else {
        return Err(Invalid::one("", "not_an_object", "the body must be a JSON object").into());
    };
    let mut details = Vec::new();
    for name in map.keys().filter(|k| *k != "seqs" && *k != "all") {
        details.push(FieldError::new(
            name.clone(),
            "unknown_field",
            "is not a field of this request",
        ));
    }
    let selection = match (map.get("seqs"), map.get("all")) {
        (Some(_), Some(_)) | (None, None) => {
            details.push(FieldError::new("", "one_of", "give either seqs or all"));
            None
        }
        (None, Some(Value::Bool(true))) => Some(None),
        (None, Some(_)) => {
            details.push(FieldError::new("all", "invalid", "must be true"));
            None
        }
        (Some(Value::Array(items)), None) => {
            let seqs: Option<Vec<u64>> = items
                .iter()
                .map(|v| sequence_number(v).filter(|s| (1..=MAX_SEQ).contains(s)))
                .collect();
            match seqs {
                Some(s) if !s.is_empty() && s.len() <= MAX_PAGE => Some(Some(s)),
                Some(_) => {
                    details.push(FieldError::new(
                        "seqs",
                        "length",
                        format!("must list 1 to {MAX_PAGE} sequences"),
                    ));
                    None
                }
                None => {
                    details.push(FieldError::new(
                        "seqs",
                        "invalid",
                        format!("must be whole numbers from 1 to {MAX_SEQ}"),
                    ));
                    None
                }
            }
        }
        (Some(_), None) => {
            details.push(FieldError::new(
                "seqs",
                "invalid",
                "must be an array of sequence numbers",
            ));
            None
        }
    };
    Invalid::check(details)?;
    selection.ok_or_else(|| ApiError::of(Code::InvalidRequest))
}

/// `POST /admin/dlq/redrive`.
pub async fn redrive(
    State(state): State<AppState>,
    _admin: Admin,
    JsonBody(body): JsonBody,
) -> Result<Json<Redriven>, ApiError> {
    let selection = redrive_selection(&body)?;
    let (stream, info) = dlq(&state).await?;
    let seqs: Vec<u64> = match selection {
        Some(seqs) => seqs,
        None => (info.first_sequence..=info.last_sequence)
            .take(MAX_PAGE)
            .collect(),
    };
    let mut redriven = Vec::new();
    let mut failed = Vec::new();
    for seq in seqs {
        let fail = |code: &str, message: String| RedriveFailure {
            seq,
            code: code.to_owned(),
            message,
        };
        let Ok(message) = stream.get_raw_message(seq).await else {
            if selection_was_explicit(&body) {
                failed.push(fail("not_found", "no dead letter has this sequence".into()));
            }
            continue;
        };
        let letter = match DeadLetter::parse(&message.headers, message.payload.clone()) {
            Ok(l) => l,
            Err(e) => {
                failed.push(fail("not_a_dead_letter", e.to_string()));
                continue;
            }
        };
        if letter.origin_stream != COMMANDS {
            failed.push(fail(
                "redrive_unsupported",
                format!(
                    "dead letters from {} cannot be redriven to their subject",
                    letter.origin_stream
                ),
            ));
            continue;
        }
        if let Err((code, why)) = redrivable(&state, &letter).await {
            failed.push(fail(code, why));
            continue;
        }
        let mut out = nats_topology::Outgoing::new(
            letter.origin_subject.clone(),
            format!("redrive:{seq}"),
            letter.payload.clone(),
        );
        out.headers = letter.headers.clone();
        let out = out.header("Dlq-Redriven-From", &seq.to_string());
        match nats_topology::publish(state.js(), out).await {
            Ok(_) => {
                if let Err(e) = stream.delete_message(seq).await {
                    tracing::warn!(seq, error = %e, "redriven but still in DLQ");
                }
                redriven.push(seq);
            }
            Err(e) => failed.push(fail("unavailable", e.to_string())),
        }
    }
    tracing::info!(
        redriven = redriven.len(),
        failed = failed.len(),
        "dead letters redriven"
    );
    Ok(Json(Redriven { redriven, failed }))
}

/// Whether a dead letter of `COMMANDS` may go back to its origin subject, published with the
/// gateway's rights: that subject is a command's, its payload a command stored there, and byte
/// for byte the original `COMMANDS` still holds at its sequence (one aged out of `COMMANDS` is
/// not redriven: nothing says what it was). A dead letter's headers and
/// body are written by whoever may write `DLQ` (the simulators, the projector, the listener):
/// unchecked, a letter naming `fact._global.role_changed` or a bucket's key would have the
/// gateway write there.
async fn redrivable(state: &AppState, letter: &DeadLetter) -> Result<(), (&'static str, String)> {
    let not_a_command = |why: String| ("not_a_command", why);
    let subject: schemas::CommandSubject = letter
        .origin_subject
        .parse()
        .map_err(|e| not_a_command(format!("its origin subject is not a command's: {e}")))?;
    let command = schemas::Envelope::<schemas::Command>::decode(&letter.payload)
        .map_err(|e| not_a_command(format!("its payload is not a command: {e}")))?;
    let said = command.subject();
    if said.as_ref() != Some(&subject) {
        return Err(not_a_command(format!(
            "its payload is a command for {}, not for {subject}",
            said.map_or_else(|| "no region".to_owned(), |s| s.to_string())
        )));
    }
    let commands = state
        .js()
        .get_stream(COMMANDS)
        .await
        .map_err(|e| ("unavailable", e.to_string()))?;
    let original = match commands.get_raw_message(letter.origin_seq).await {
        Ok(original) => original,
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => {
            return Err((
                "not_as_stored",
                format!(
                    "COMMANDS holds nothing at {} (aged out, or never there): a dead command goes \
                     back only as it was stored",
                    letter.origin_seq
                ),
            ));
        }
        Err(e) => return Err(("unavailable", e.to_string())),
    };
    if original.subject.as_str() != letter.origin_subject || original.payload != letter.payload {
        return Err((
            "not_as_stored",
            format!(
                "COMMANDS holds another message at {}: the dead letter was altered",
                letter.origin_seq
            ),
        ));
    }
    Ok(())
}

/// A JSON number that is a whole number, as JSON Schema's `integer` reads it: `7` and `7.0`
/// alike (JSON does not tell them apart, and some clients write every number with a fraction).
fn sequence_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=MAX_SEQ as f64).contains(f))
            .map(|f| f as u64)
    })
}

fn selection_was_explicit(body: &Value) -> bool {
    body.get("seqs").is_some()
}

/// `GET /admin/regions`.
pub async fn regions(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Assignments>, ApiError> {
    let owners = crate::regions::owners(&state).await?;
    let population = crate::regions::population(&state).await;
    let regions: Vec<RegionAssignment> = state
        .settings()
        .world
        .regions
        .iter()
        .map(|r| {
            let lease = owners.get(&r.id);
            RegionAssignment {
                id: r.id.clone(),
                owner: lease.map(|l| l.node.clone()),
                acquired_at: lease.map(|l| l.acquired_at),
                renewed_at: lease.map(|l| l.renewed_at),
                population: population.get(r.id.as_str()).copied().unwrap_or(0),
                capacity: r.capacity,
            }
        })
        .collect();
    let mut nodes = Vec::new();
    let mut keys = state
        .node_load()
        .keys()
        .await
        .map_err(|e| bus_down(&state, e))?;
    while let Some(Ok(key)) = keys.next().await {
        if let Ok(Some(bytes)) = state.node_load().get(&key).await
            && let Ok(load) = nats_topology::lease::NodeLoad::decode(&bytes)
        {
            nodes.push(NodeView::from(load));
        }
    }
    Ok(Json(Assignments { regions, nodes }))
}

/// `PUT /admin/players/{id}/role`.
pub async fn set_role(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<RoleSet>, ApiError> {
    let mut details = Vec::new();
    let player = id
        .parse::<PlayerId>()
        .map_err(|e| details.push(FieldError::new("id", "invalid", e.to_string())))
        .ok();
    let role = match body.get("role") {
        None | Some(Value::Null) => {
            details.push(FieldError::new("role", "required", "is required"));
            None
        }
        Some(v) => serde_json::from_value::<Role>(v.clone())
            .map_err(|_| {
                details.push(FieldError::new(
                    "role",
                    "invalid",
                    "must be player, moderator or admin",
                ))
            })
            .ok(),
    };
    if let Some(map) = body.as_object() {
        for name in map.keys().filter(|k| *k != "role") {
            details.push(FieldError::new(
                name.clone(),
                "unknown_field",
                "is not a field of this request",
            ));
        }
    } else {
        details.push(FieldError::new(
            "",
            "not_an_object",
            "the body must be a JSON object",
        ));
    }
    Invalid::check(details)?;
    let (Some(player), Some(role)) = (player, role) else {
        return Err(ApiError::of(Code::InvalidRequest));
    };
    let Some(account) = accounts::find_by_id(&state, player).await? else {
        return Err(ApiError::new(Code::NotFound, "no such player"));
    };
    // The log hears of the account before it hears of its new role.
    accounts::complete(&state, &account).await?;
    let redis_down = |e: redis::RedisError| {
        state.dependency_failed(
            "redis",
            e,
            "cannot reach the session store",
            "the session store",
        )
    };
    let sessions = state
        .sessions()
        .of(&mut state.redis(), player)
        .await
        .map_err(redis_down)?;
    // The log first: the change and the sessions it ends. A failure here leaves the account as
    // it was; one after it is made good by sending the same request again (each logout's id
    // follows from its session, so it is stored once; the role change is stored again, to the
    // same role).
    let actor = Actor::Admin { id: admin.player };
    let changed = Fact::RoleChanged(RoleChanged {
        player,
        role: role.as_str().to_owned(),
    });
    accounts::record(&state, actor.clone(), EventId::new(), changed, None).await?;
    for sid in &sessions {
        let ended = Fact::LoggedOut(LoggedOut {
            player,
            session: sid.clone(),
        });
        let id = accounts::logout_id(sid);
        accounts::record(&state, actor.clone(), id, ended, None).await?;
    }
    accounts::collection(state.db())
        .update_one(
            doc! {"_id": player.to_string()},
            doc! {"$set": {"role": role.as_str()}},
        )
        .await
        .map_err(|e| {
            state.dependency_failed("mongodb", e, "cannot update role", "the account store")
        })?;
    // No login that read the old role starts a session from here on; those that started one
    // already are listed now, with the sessions listed before.
    let mut redis = state.redis();
    state
        .sessions()
        .fence_role(&mut redis, &account.username_key)
        .await
        .map_err(redis_down)?;
    let to_end = state
        .sessions()
        .of(&mut redis, player)
        .await
        .map_err(redis_down)?;
    for sid in to_end.iter().filter(|sid| !sessions.contains(sid)) {
        // A login that overtook the listing: its end is recorded too, but it ends even if the
        // log cannot say so now, as the old role must not outlive the change.
        let ended = Fact::LoggedOut(LoggedOut {
            player,
            session: sid.clone(),
        });
        let id = accounts::logout_id(sid);
        if let Err(e) = accounts::record(&state, actor.clone(), id, ended, None).await {
            tracing::warn!(error = %e, session = %sid, "cannot record the end of a session");
        }
    }
    state
        .sessions()
        .end_these(&mut redis, player, &to_end)
        .await
        .map_err(redis_down)?;
    tracing::info!(admin = %admin.player, %player, role = role.as_str(), "role changed");
    Ok(Json(RoleSet {
        player_id: player,
        role,
    }))
}

/// `POST /admin/projections/rebuild`: records a `pending` rebuild job for a projector to take,
/// and answers 202 with its id. Progress is at `GET /admin/projections/rebuild/{job_id}`.
pub async fn start_rebuild(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<(axum::http::StatusCode, Json<RebuildRequested>), ApiError> {
    let job = nats_topology::jobs::RebuildJob::pending(admin.player.to_string());
    let bytes = job.to_bytes().map_err(ApiError::internal)?;
    state
        .rebuild_jobs()
        .create(&job.job_id, bytes)
        .await
        .map_err(|e| bus_down(&state, e))?;
    tracing::info!(admin = %admin.player, job = %job.job_id, "projection rebuild requested");
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(RebuildRequested {
            job_id: job.job_id,
            state: job.state.into(),
        }),
    ))
}

/// `GET /admin/projections/rebuild/{job_id}`: the job's state and progress.
pub async fn rebuild_progress(
    State(state): State<AppState>,
    _admin: Admin,
    Path(job_id): Path<String>,
) -> Result<Json<RebuildProgress>, ApiError> {
    if job_id.chars().count() != JOB_ID_LEN || !job_id.chars().all(job_id_char) {
        return Err(
            Invalid::one("job_id", "invalid", "must be a job id as POST returned it").into(),
        );
    }
    let stored = state
        .rebuild_jobs()
        .get(&job_id)
        .await
        .map_err(|e| bus_down(&state, e))?;
    let job: nats_topology::jobs::RebuildJob = stored
        .ok_or_else(|| ApiError::new(Code::NotFound, "no rebuild job has this id"))
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(ApiError::internal))?;
    Ok(Json(RebuildProgress::from(job)))
}
