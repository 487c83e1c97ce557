//! Accounts: register, log in, log out, and the admin account bootstrapped from configuration.
//!
//! Accounts live in MongoDB (`accounts`, unique on the lower-cased username) and are written with
//! `j: true`, so an acknowledged registration survives a crash of the database. Registering also
//! records an `account_registered` fact (without the password or its hash) for the read models
//! and the audit trail, and a `role_changed` for an account created with another role.
//!
//! An account is stored first, marked unrecorded, and marked recorded once its facts are stored.
//! When they cannot be (NATS down, or no acknowledgement in time, so they may or may not be
//! stored) the client gets 503 and the account stays, unrecorded: nobody logs in with it, and
//! registering again with the same password, logging in, or starting again with it as the
//! bootstrap admin stores its facts then. Their ids follow from the player's, so a fact stored
//! twice is stored once. The log thus never names an account that does not exist, and no
//! account is used that the log does not know of.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mongodb::bson::doc;
use mongodb::options::{IndexOptions, WriteConcern};
use mongodb::{Collection, IndexModel};
use schemas::fact::{AccountRegistered, LoggedIn, LoggedOut, RoleChanged};
use schemas::{Actor, Envelope, EventId, Fact, FieldError, PlayerId};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{Caller, Role, now_secs};
use crate::body::JsonBody;
use crate::error::{ApiError, Code};
use crate::ratelimit::Rule;
use crate::request::{ClientIp, RequestId};

/// The accounts collection.
pub const ACCOUNTS: &str = "accounts";

/// An account as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// The player id, as a string.
    #[serde(rename = "_id")]
    pub id: String,
    /// The username as registered.
    pub username: String,
    /// The username lower-cased: unique.
    pub username_key: String,
    /// The Argon2id hash of the password.
    pub password_hash: String,
    /// The role.
    pub role: Role,
    /// When it was registered (seconds since the epoch).
    pub created_at: i64,
    /// Whether the log holds its facts. Accounts from before this field were recorded before
    /// they were answered.
    #[serde(default = "recorded_before")]
    pub recorded: bool,
}

fn recorded_before() -> bool {
    true
}

/// The accounts collection, writing with `j: true`.
pub fn collection(db: &mongodb::Database) -> Collection<Account> {
    db.collection_with_options(
        ACCOUNTS,
        mongodb::options::CollectionOptions::builder()
            .write_concern(WriteConcern::builder().journal(true).build())
            .build(),
    )
}

/// Creates the unique index on usernames (idempotent).
pub async fn ensure_indexes(db: &mongodb::Database) -> mongodb::error::Result<()> {
    let index = IndexModel::builder()
        .keys(doc! {"username_key": 1})
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("username_unique".to_owned())
                .build(),
        )
        .build();
    collection(db).create_index(index).await.map(|_| ())
}

/// How long a username may be, in characters.
pub const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
/// How long a password may be, in characters.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Whether a username may hold `c`: A-Z, a-z, 0-9 and `_`.
pub fn username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `length` error of `field` when `value` is not `len` characters long.
fn length_error(
    field: &str,
    value: &str,
    len: &std::ops::RangeInclusive<usize>,
) -> Option<FieldError> {
    (!len.contains(&value.chars().count())).then(|| {
        FieldError::new(
            field,
            "length",
            format!("must be {} to {} characters long", len.start(), len.end()),
        )
    })
}

/// Checks a username and password against the contract's rules, naming each bad field.
pub fn check_credentials(body: &serde_json::Value) -> Result<(String, SecretString), ApiError> {
    let mut details = Vec::new();
    let text = |field: &str, details: &mut Vec<FieldError>| match body.get(field) {
        None | Some(serde_json::Value::Null) => {
            details.push(FieldError::new(field, "required", "is required"));
            None
        }
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            details.push(FieldError::new(field, "invalid", "must be a string"));
            None
        }
    };
    if !body.is_object() {
        return Err(ApiError::from(schemas::Invalid::one(
            "",
            "not_an_object",
            "the body must be a JSON object",
        )));
    }
    let username = text("username", &mut details);
    let password = text("password", &mut details);
    if let Some(u) = &username {
        if let Some(error) = length_error("username", u, &USERNAME_LEN) {
            details.push(error);
        } else if !u.chars().all(username_char) {
            details.push(FieldError::new(
                "username",
                "charset",
                "may hold only A-Z, a-z, 0-9 and _",
            ));
        }
    }
    if let Some(error) = password
        .as_deref()
        .and_then(|p| length_error("password", p, &PASSWORD_LEN))
    {
        details.push(error);
    }
    if let Some(map) = body.as_object() {
        for key in map.keys().filter(|k| *k != "username" && *k != "password") {
            details.push(FieldError::new(
                key.clone(),
                "unknown_field",
                "is not a field of this request",
            ));
        }
    }
    schemas::Invalid::check(details).map_err(ApiError::from)?;
    match (username, password) {
        (Some(u), Some(p)) => Ok((u, SecretString::from(p))),
        _ => Err(ApiError::of(Code::InvalidRequest)),
    }
}

/// The answer to a registration.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Registered {
    /// The new player's id.
    pub player_id: PlayerId,
}

/// `POST /v1/auth/register`: 201 `{player_id}`, 409 when the username is taken.
pub async fn register(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let (username, password) = check_credentials(&body)?;
    let player = create_account(&state, &username, password, Role::Player).await?;
    Ok((StatusCode::CREATED, Json(Registered { player_id: player })))
}

/// Creates an account and records its facts. When they cannot be recorded the account stays,
/// unrecorded, and the answer is 503; registering again with the same password records them.
pub async fn create_account(
    state: &AppState,
    username: &str,
    password: SecretString,
    role: Role,
) -> Result<PlayerId, ApiError> {
    let player = PlayerId::new();
    let account = Account {
        id: player.to_string(),
        username: username.to_owned(),
        username_key: username.to_lowercase(),
        password_hash: state.passwords().hash(password.clone()).await?,
        role,
        created_at: now_secs() as i64,
        recorded: false,
    };
    match collection(state.db()).insert_one(&account).await {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => return resume(state, username, password).await,
        Err(e) => {
            return Err(state.dependency_failed(
                "mongodb",
                e,
                "cannot store account",
                "the account store",
            ));
        }
    }
    complete(state, &account).await?;
    tracing::info!(%player, role = role.as_str(), "account registered");
    Ok(player)
}

/// A registration of a taken username: the same registration again when its account is still
/// unrecorded and the password matches (its facts are recorded now), 409 otherwise.
async fn resume(
    state: &AppState,
    username: &str,
    password: SecretString,
) -> Result<PlayerId, ApiError> {
    let taken = || {
        ApiError::new(
            Code::UsernameTaken,
            format!("the username {username:?} is taken"),
        )
    };
    let Some(account) = find_by_username(state, username).await? else {
        return Err(taken());
    };
    if account.recorded
        || !state
            .passwords()
            .verify(password, Some(account.password_hash.clone()))
            .await?
    {
        return Err(taken());
    }
    complete(state, &account).await?;
    tracing::info!(player = %account.id, "account registered on a second try");
    account.id.parse().map_err(ApiError::internal)
}

/// Records the facts of an account that is not recorded yet, and marks it recorded; nothing for
/// one that is. The facts' ids follow from the player's, so recording again stores them once.
pub async fn complete(state: &AppState, account: &Account) -> Result<(), ApiError> {
    if account.recorded {
        return Ok(());
    }
    let player: PlayerId = account.id.parse().map_err(ApiError::internal)?;
    let origin = EventId::from_uuid(*player.as_uuid());
    let registered = Fact::AccountRegistered(AccountRegistered {
        player,
        username: account.username.clone(),
    });
    record(
        state,
        gateway(),
        EventId::derived(origin, 0),
        registered,
        None,
    )
    .await?;
    if account.role != Role::Player {
        let role = Fact::RoleChanged(RoleChanged {
            player,
            role: account.role.as_str().to_owned(),
        });
        record(state, gateway(), EventId::derived(origin, 1), role, None).await?;
    }
    // The facts are stored; failing to say so here only means they are sent again next time.
    if let Err(e) = collection(state.db())
        .update_one(doc! {"_id": &account.id}, doc! {"$set": {"recorded": true}})
        .await
    {
        state.metrics().dependency_error("mongodb");
        tracing::warn!(error = %e, player = %account.id, "cannot mark an account recorded");
    }
    Ok(())
}

fn gateway() -> Actor {
    Actor::System {
        service: "gateway".into(),
    }
}

/// Stores a world-wide fact (about accounts and sessions, in no region) with the id given, and
/// the request's id and client address when it answers a request.
pub async fn record(
    state: &AppState,
    actor: Actor,
    id: EventId,
    fact: Fact,
    origin: Option<(&RequestId, &ClientIp)>,
) -> Result<(), ApiError> {
    let mut env = Envelope::new(actor, None, fact);
    env.id = id;
    env.correlation_id = id;
    let mut message = nats_topology::Outgoing::fact(&env).map_err(ApiError::internal)?;
    if let Some((request_id, ClientIp(ip))) = origin {
        message = message
            .header(nats_topology::headers::REQUEST_ID, &request_id.0)
            .header(nats_topology::headers::CLIENT_IP, &ip.to_string());
    }
    state.publish(message).await.map(|_| ())
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m.write_errors.iter().flatten().any(|w| w.code == 11000),
        _ => e.to_string().contains("E11000"),
    }
}

/// Finds an account by username, whatever its case.
pub async fn find_by_username(
    state: &AppState,
    username: &str,
) -> Result<Option<Account>, ApiError> {
    collection(state.db())
        .find_one(doc! {"username_key": username.to_lowercase()})
        .await
        .map_err(|e| {
            state.dependency_failed("mongodb", e, "cannot read accounts", "the account store")
        })
}

/// The answer to a login.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Token {
    /// The bearer token: `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: TokenType,
    /// Seconds until the token and its session expire.
    pub expires_in: u64,
    /// The player logged in.
    pub player_id: PlayerId,
}

/// The kind of token a login answers: a bearer token.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub enum TokenType {
    /// `Authorization: Bearer <token>`.
    Bearer,
}

/// How many times a login reads the account again when a role change overtakes it, before it
/// answers 503.
const LOGIN_ATTEMPTS: usize = 3;

/// `POST /v1/auth/login`: 200 with a bearer token, 401 on bad credentials, 429 (with
/// `Retry-After`) when the client's IP or the account is over its limit.
///
/// Besides the per-IP limit, failed logins are limited per account, from whatever address
/// (`rate_limits.login_failures_per_account`, by lower-cased username, known or not, so the
/// answer does not tell whether an account exists). The budget refills, so a guesser cannot
/// lock a player out for longer than it keeps guessing; but while it is spent, every login of
/// the account is refused with 429, **the right password included**, until it refills.
///
/// A role change wins over every login that has not answered: the login reads the account's
/// role generation before the account, and starts its session only if the generation has not
/// moved since (in the same Redis script); a role change moves it once the new role is stored,
/// then ends the sessions there are. A login overtaken that way reads the account again.
pub async fn login(
    State(state): State<AppState>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    axum::Extension(ip): axum::Extension<ClientIp>,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let (username, password) = check_credentials(&body)?;
    // Every attempt is counted before the password is checked, so that attempts in flight at
    // once cannot overrun the budget; all but the wrong passwords are given back.
    let account_key = username.to_lowercase();
    state
        .limit(Rule::LoginFailuresPerAccount, &account_key)
        .await?;
    let answer = log_in(&state, &request_id, &ip, &username, password).await;
    if !matches!(&answer, Err(e) if e.code == Code::BadCredentials) {
        state
            .refund(Rule::LoginFailuresPerAccount, &account_key)
            .await;
    }
    answer.map(Json)
}

/// A login whose attempt is counted: the token, or why not.
async fn log_in(
    state: &AppState,
    request_id: &RequestId,
    ip: &ClientIp,
    username: &str,
    password: SecretString,
) -> Result<Token, ApiError> {
    let bad_credentials = || ApiError::new(Code::BadCredentials, "wrong username or password");
    let mut redis = state.redis();
    let session_store_down = |e: redis::RedisError| {
        state.dependency_failed(
            "redis",
            e,
            "cannot reach the session store",
            "the session store",
        )
    };
    let ttl = state.tokens().ttl;
    // The hash the password was checked against: checked again only if it changes.
    let mut verified: Option<String> = None;
    for _ in 0..LOGIN_ATTEMPTS {
        let generation = state
            .sessions()
            .role_generation(&mut redis, &username.to_lowercase())
            .await
            .map_err(session_store_down)?;
        let account = find_by_username(state, username).await?;
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        if verified.is_none() || verified != hash {
            if !state
                .passwords()
                .verify(password.clone(), hash.clone())
                .await?
            {
                state.metrics().auth_rejected("bad_credentials");
                return Err(bad_credentials());
            }
            verified = hash;
        }
        let Some(account) = account else {
            return Err(bad_credentials());
        };
        // An account whose registration was cut short is recorded before its first login.
        complete(state, &account).await?;
        let player: PlayerId = account.id.parse().map_err(ApiError::internal)?;
        let sid = uuid::Uuid::now_v7();
        let started = state
            .sessions()
            .start(
                &mut redis,
                &generation,
                &sid.to_string(),
                player,
                account.role,
                ttl,
            )
            .await
            .map_err(session_store_down)?;
        if !started {
            tracing::info!(%player, "a role change overtook a login; reading the account again");
            continue;
        }
        // The login is in the log before the token is handed out; without the log, no login.
        let logged_in = Fact::LoggedIn(LoggedIn {
            player,
            session: sid.to_string(),
            expires_at: chrono::Utc::now()
                + chrono::Duration::from_std(ttl).map_err(ApiError::internal)?,
        });
        let actor = Actor::Player { id: player };
        let id = EventId::derived(EventId::from_uuid(sid), 0);
        if let Err(e) = record(state, actor, id, logged_in, Some((request_id, ip))).await {
            let _ = state
                .sessions()
                .end(&mut redis, player, &sid.to_string())
                .await;
            return Err(e);
        }
        let token = state
            .tokens()
            .issue(player, &sid.to_string(), account.role, now_secs())?;
        state.metrics().session_started();
        return Ok(Token {
            access_token: token,
            token_type: TokenType::Bearer,
            expires_in: ttl.as_secs(),
            player_id: player,
        });
    }
    Err(ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            Code::Unavailable,
            "the account's role keeps changing; try again shortly",
        )
    })
}

/// `POST /v1/auth/logout`: 204; the token is refused from then on.
///
/// The logout is stored in the log first, then the session ends: while NATS is down the answer
/// is 503 and the token still works, so a retry finds everything as it was.
pub async fn logout(
    State(state): State<AppState>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    axum::Extension(ip): axum::Extension<ClientIp>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    let session = caller.session.clone();
    let logged_out = Fact::LoggedOut(LoggedOut {
        player: caller.player,
        session: session.clone(),
    });
    let id = logout_id(&session);
    let actor = Actor::Player { id: caller.player };
    record(&state, actor, id, logged_out, Some((&request_id, &ip))).await?;
    state
        .sessions()
        .end(&mut state.redis(), caller.player, &session)
        .await
        .map_err(|e| {
            state.dependency_failed("redis", e, "cannot end session", "the session store")
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The id of a session's logout fact: one per session, so a retried logout is stored once.
pub fn logout_id(session: &str) -> EventId {
    match session.parse::<uuid::Uuid>() {
        Ok(sid) => EventId::derived(EventId::from_uuid(sid), 1),
        Err(_) => EventId::new(),
    }
}

/// Creates the configured admin account when it does not exist yet.
pub async fn bootstrap_admin(state: &AppState) -> Result<(), ApiError> {
    let Some((username, password)) = state.settings().bootstrap_admin.clone() else {
        return Ok(());
    };
    if let Some(account) = find_by_username(state, &username).await? {
        // Created before, maybe with its facts cut short.
        return complete(state, &account).await;
    }
    match create_account(state, &username, password, Role::Admin).await {
        Ok(player) => {
            tracing::info!(%player, username, "bootstrap admin created");
            Ok(())
        }
        // Another gateway created it at the same moment.
        Err(e) if e.code == Code::UsernameTaken => Ok(()),
        Err(e) => Err(e),
    }
}

/// The account document of a player, for reads that need it.
pub async fn find_by_id(state: &AppState, player: PlayerId) -> Result<Option<Account>, ApiError> {
    collection(state.db())
        .find_one(doc! {"_id": player.to_string()})
        .await
        .map_err(|e| {
            state.dependency_failed("mongodb", e, "cannot read accounts", "the account store")
        })
}
