//! The OpenAPI 3.1 document of the REST contract, served at `/openapi.json`: what every
//! operation takes, with every rule the gateway checks, and every status it can answer, with its
//! body.
//!
//! Nothing in it is copied by hand from a check. Bodies are the JSON Schema of the very types
//! the handlers read and write (generated with `schemars`); the command body is the client
//! command schema of `schemas` with the domain rules of this deployment's world written in by
//! the rules themselves (the regions a `spawn` may name, the bounds of a `move`, the chat line's
//! pattern); lengths, bounds and patterns of parameters come from the constants and character
//! predicates the checks use; the error codes of each status come from [`Code`]'s table. The
//! document is built once per gateway from its settings, as the world and the longest wait are
//! configured.
//!
//! [`OPERATIONS`] lists the operations; a test asks the router for every one of them, and
//! `ops/schemathesis` has Schemathesis check the running stack against the document.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use schemas::validation::char_class;
use schemas::{RegionId, ValidationContext};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::Code;
use crate::settings::Settings;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Anyone,
    /// A logged-in player (bearer token).
    Player,
    /// An admin: bearer token with the admin role, and `X-Api-Key`.
    Admin,
}

impl Access {
    /// The operation's tag in the document, by which a client (or Schemathesis) picks the
    /// operations of one kind of caller.
    pub fn tag(self) -> &'static str {
        match self {
            Access::Anyone => "anonymous",
            Access::Player => "player",
            Access::Admin => "admin",
        }
    }
}

/// One operation: method, path (with `{param}`s), its `operationId`, who may call it, what it
/// does.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// `get`, `post`, `put`.
    pub method: &'static str,
    /// The path.
    pub path: &'static str,
    /// The `operationId`, which links name.
    pub id: &'static str,
    /// Who may call it.
    pub access: Access,
    /// A line about it.
    pub summary: &'static str,
}

const fn op(
    method: &'static str,
    path: &'static str,
    id: &'static str,
    access: Access,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        id,
        access,
        summary,
    }
}

/// Every operation of the REST contract.
pub const OPERATIONS: &[Operation] = &[
    op(
        "post",
        "/v1/auth/register",
        "register",
        Access::Anyone,
        "Create an account: 201 {player_id}; 409 when the username is taken.",
    ),
    op(
        "post",
        "/v1/auth/login",
        "logIn",
        Access::Anyone,
        "Log in: a bearer token for the player. Failed logins are limited per account too.",
    ),
    op(
        "post",
        "/v1/auth/logout",
        "logOut",
        Access::Player,
        "End the session: the token is refused from then on.",
    ),
    op(
        "get",
        "/v1/players/me",
        "getMe",
        Access::Player,
        "The caller's player read model.",
    ),
    op(
        "post",
        "/v1/commands",
        "submitCommand",
        Access::Player,
        "Send a command: 202 once stored; with ?wait=true, 200 with its outcome when it comes in time.",
    ),
    op(
        "get",
        "/v1/regions",
        "listRegions",
        Access::Player,
        "Every region, with owner node and population.",
    ),
    op(
        "get",
        "/v1/regions/{id}",
        "getRegion",
        Access::Player,
        "One region.",
    ),
    op(
        "get",
        "/v1/regions/{id}/entities",
        "entitiesNear",
        Access::Player,
        "Entities near a point, nearest first, from every region the circle reaches.",
    ),
    op(
        "get",
        "/v1/stream",
        "openStream",
        Access::Player,
        "A WebSocket of the live facts around the player (the token also as ?access_token=).",
    ),
    op(
        "get",
        "/admin/dlq",
        "listDeadLetters",
        Access::Admin,
        "Dead letters, page by page, with origin, reason and attempts.",
    ),
    op(
        "post",
        "/admin/dlq/redrive",
        "redrive",
        Access::Admin,
        "Publish dead commands again on their origin subject.",
    ),
    op(
        "get",
        "/admin/regions",
        "regionAssignments",
        Access::Admin,
        "Region owners and simulator node load.",
    ),
    op(
        "put",
        "/admin/players/{id}/role",
        "setRole",
        Access::Admin,
        "Change a player's role; ends the player's sessions.",
    ),
    op(
        "post",
        "/admin/projections/rebuild",
        "startRebuild",
        Access::Admin,
        "Request a projection rebuild: 202 {job_id}.",
    ),
    op(
        "get",
        "/admin/projections/rebuild/{job_id}",
        "rebuildProgress",
        Access::Admin,
        "A rebuild's state and progress.",
    ),
    op("get", "/healthz", "healthz", Access::Anyone, "Liveness."),
    op(
        "get",
        "/readyz",
        "readyz",
        Access::Anyone,
        "Readiness: NATS, Redis and MongoDB reachable.",
    ),
    op(
        "get",
        "/metrics",
        "metrics",
        Access::Anyone,
        "Prometheus metrics.",
    ),
    op(
        "get",
        "/openapi.json",
        "openapi",
        Access::Anyone,
        "This document.",
    ),
];

/// The error statuses, each a response of the document's `components`, named for what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    /// 429 with `Retry-After`: a rate limit.
    RateLimited,
    /// 429 of the live stream: a rate limit (with `Retry-After`) or too many open streams.
    TooManyStreams,
    HeadersTooLarge,
    /// 503 with `Retry-After`.
    Unavailable,
}

const FAILURES: &[Failure] = &[
    Failure::BadRequest,
    Failure::Unauthorized,
    Failure::Forbidden,
    Failure::NotFound,
    Failure::Conflict,
    Failure::PayloadTooLarge,
    Failure::UriTooLong,
    Failure::UnsupportedMediaType,
    Failure::RateLimited,
    Failure::TooManyStreams,
    Failure::HeadersTooLarge,
    Failure::Unavailable,
];

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::BadRequest => "BadRequest",
            Failure::Unauthorized => "Unauthorized",
            Failure::Forbidden => "Forbidden",
            Failure::NotFound => "NotFound",
            Failure::Conflict => "Conflict",
            Failure::PayloadTooLarge => "PayloadTooLarge",
            Failure::UriTooLong => "UriTooLong",
            Failure::UnsupportedMediaType => "UnsupportedMediaType",
            Failure::RateLimited => "RateLimited",
            Failure::TooManyStreams => "TooManyStreams",
            Failure::HeadersTooLarge => "HeadersTooLarge",
            Failure::Unavailable => "Unavailable",
        }
    }

    /// A code of this status (the status is the code's, from the one table).
    fn code(self) -> Code {
        match self {
            Failure::BadRequest => Code::InvalidRequest,
            Failure::Unauthorized => Code::Unauthorized,
            Failure::Forbidden => Code::Forbidden,
            Failure::NotFound => Code::NotFound,
            Failure::Conflict => Code::UsernameTaken,
            Failure::PayloadTooLarge => Code::PayloadTooLarge,
            Failure::UriTooLong => Code::UriTooLong,
            Failure::UnsupportedMediaType => Code::UnsupportedMediaType,
            Failure::RateLimited | Failure::TooManyStreams => Code::RateLimited,
            Failure::HeadersTooLarge => Code::HeadersTooLarge,
            Failure::Unavailable => Code::Unavailable,
        }
    }

    fn status(self) -> String {
        self.code().status().as_u16().to_string()
    }

    fn description(self) -> &'static str {
        match self {
            Failure::BadRequest => {
                "The request is invalid: `details` names every bad field, parameter or header \
                 (`malformed_json` when the body is not JSON). Also the HTTP layer's answer to a \
                 request it cannot read."
            }
            Failure::Unauthorized => {
                "No valid token: missing, malformed, forged, expired (`token_expired`), or its \
                 session ended (`token_revoked`); on login, a wrong username or password \
                 (`bad_credentials`)."
            }
            Failure::Forbidden => {
                "An admin route: the session's role is not admin (`forbidden`), or `X-Api-Key` is \
                 missing or wrong (`bad_api_key`)."
            }
            Failure::NotFound => "No such thing.",
            Failure::Conflict => {
                "The username is taken (`username_taken`); the command needs an avatar in the \
                 world (`not_in_world`); the `Idempotency-Key` was used for another command \
                 (`idempotency_conflict`); the read models have not reached a read's `min_seq` \
                 within the wait, or no fact is stored there yet (`projection_behind`, with the \
                 position reached in `details`)."
            }
            Failure::PayloadTooLarge => "The body is over the gateway's limit.",
            Failure::UriTooLong => "The request's URI is longer than the gateway reads.",
            Failure::UnsupportedMediaType => "The body is not `application/json`.",
            Failure::RateLimited => {
                "Over a rate limit (per address, per player, or failed logins per account); \
                 `Retry-After` says in how many seconds to come back."
            }
            Failure::TooManyStreams => {
                "Over the per-address rate limit (with `Retry-After`), or the player or the \
                 address holds as many live streams as it may (`too_many_streams`): close one."
            }
            Failure::HeadersTooLarge => "The request's headers are larger than the gateway reads.",
            Failure::Unavailable => {
                "A server the gateway depends on is unreachable, or (on registering and logging \
                 in) too many passwords are being checked at once; `Retry-After` says when to \
                 try again."
            }
        }
    }

    fn retry_after(self) -> Option<bool> {
        match self {
            Failure::RateLimited | Failure::Unavailable => Some(true),
            Failure::TooManyStreams => Some(false),
            _ => None,
        }
    }

    /// The codes the body may carry: every code of the status.
    fn codes(self) -> Vec<&'static str> {
        let status = self.code().status();
        Code::ALL
            .iter()
            .filter(|c| c.status() == status)
            .map(|c| c.as_str())
            .collect()
    }

    fn response(self) -> Value {
        let mut headers = json!({"X-Request-Id": reference("headers", "X-Request-Id")});
        if let Some(required) = self.retry_after() {
            headers["Retry-After"] = json!({
                "description": "Seconds until a retry may succeed.",
                "required": required,
                "schema": {"type": "integer", "minimum": 1}
            });
        }
        json!({
            "description": self.description(),
            "headers": headers,
            "content": {"application/json": {"schema": {"allOf": [
                reference("schemas", "Error"),
                {"properties": {"error": {"properties": {"code": {"enum": self.codes()}}}}}
            ]}}}
        })
    }

    fn reference(self) -> Value {
        reference("responses", self.name())
    }
}

fn reference(kind: &str, name: &str) -> Value {
    json!({"$ref": format!("#/components/{kind}/{name}")})
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

/// A string of `len` characters each of which `member` holds, as a pattern.
fn pattern_of(member: impl Fn(char) -> bool, len: &std::ops::RangeInclusive<usize>) -> String {
    format!("^{}{{{},{}}}$", char_class(member), len.start(), len.end())
}

/// The patterns of the document's strings, made once per process: a class is found by asking
/// every character of Unicode, which takes seconds in a debug build, and every gateway a test
/// starts builds the document.
struct Patterns {
    username: String,
    idempotency_key: String,
    job_id: String,
}

static PATTERNS: std::sync::LazyLock<Patterns> = std::sync::LazyLock::new(|| Patterns {
    username: pattern_of(
        crate::accounts::username_char,
        &crate::accounts::USERNAME_LEN,
    ),
    idempotency_key: pattern_of(
        crate::commands::idempotency_key_char,
        &crate::commands::IDEMPOTENCY_KEY_LEN,
    ),
    job_id: format!(
        "^{}{{{}}}$",
        char_class(crate::admin::job_id_char),
        crate::admin::JOB_ID_LEN
    ),
});

/// What a body or an answer is: JSON of `schema`.
fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// A success answer with a JSON body.
fn answer(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "headers": {"X-Request-Id": reference("headers", "X-Request-Id")},
        "content": json_content(schema),
    })
}

/// A success answer with no body.
fn empty_answer(description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"X-Request-Id": reference("headers", "X-Request-Id")},
    })
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn query_param(name: &str, required: bool, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema})
}

fn header_param(name: &str, required: bool, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "header", "required": required, "description": description, "schema": schema})
}

/// A link to the operation `target`, with `parameters` and, when given, a request body.
fn link(target: &str, description: &str, parameters: Value, body: Option<Value>) -> Value {
    let mut link = json!({"operationId": target, "description": description});
    if parameters.as_object().is_some_and(|p| !p.is_empty()) {
        link["parameters"] = parameters;
    }
    if let Some(body) = body {
        link["requestBody"] = body;
    }
    link
}

/// The document for a gateway with these settings.
pub fn document(settings: &Settings) -> Value {
    Builder::new(settings).build()
}

struct Builder<'a> {
    settings: &'a Settings,
    context: ValidationContext,
    components: Map<String, Value>,
}

impl<'a> Builder<'a> {
    fn new(settings: &'a Settings) -> Self {
        Self {
            settings,
            context: settings.world.validation_context(),
            components: Map::new(),
        }
    }

    fn build(mut self) -> Value {
        let mut schema_settings = SchemaSettings::draft2020_12();
        schema_settings.definitions_path = "/components/schemas".into();
        schema_settings.meta_schema = None;
        let mut generator = schema_settings.into_generator();
        let types = Types {
            registered: schema_of::<crate::accounts::Registered>(&mut generator),
            token: schema_of::<crate::accounts::Token>(&mut generator),
            player: schema_of::<schemas::read_model::PlayerView>(&mut generator),
            accepted: schema_of::<crate::commands::Accepted>(&mut generator),
            outcome: schema_of::<crate::commands::Outcome>(&mut generator),
            region: schema_of::<crate::regions::RegionView>(&mut generator),
            nearby: schema_of::<crate::regions::Nearby>(&mut generator),
            dead_letters: schema_of::<crate::admin::DeadLetterPage>(&mut generator),
            redriven: schema_of::<crate::admin::Redriven>(&mut generator),
            assignments: schema_of::<crate::admin::Assignments>(&mut generator),
            role: schema_of::<crate::auth::Role>(&mut generator),
            role_set: schema_of::<crate::admin::RoleSet>(&mut generator),
            rebuild_requested: schema_of::<crate::admin::RebuildRequested>(&mut generator),
            rebuild: schema_of::<crate::admin::RebuildProgress>(&mut generator),
            liveness: schema_of::<crate::health::Liveness>(&mut generator),
            readiness: schema_of::<crate::health::Readiness>(&mut generator),
            field_error: schema_of::<schemas::FieldError>(&mut generator),
        };
        self.components = generator.take_definitions(true);
        self.add_shared_schemas(&types);

        let mut paths: Map<String, Value> = Map::new();
        for operation in OPERATIONS {
            let entry = self.operation(operation, &types);
            let path = paths.entry(operation.path).or_insert_with(|| json!({}));
            path[operation.method] = entry;
        }
        let responses: Map<String, Value> = FAILURES
            .iter()
            .map(|f| (f.name().to_owned(), f.response()))
            .collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Game backend REST API",
                "version": "1",
                "description": INFO,
            },
            "tags": [
                {"name": Access::Anyone.tag(), "description": "Anyone may call these: registering, logging in, health, metrics, this document."},
                {"name": Access::Player.tag(), "description": "A logged-in player: `Authorization: Bearer <token>` from `logIn`."},
                {"name": Access::Admin.tag(), "description": "An admin: a bearer token of a session with the admin role, and `X-Api-Key`."},
            ],
            "paths": paths,
            "components": {
                "schemas": self.components,
                "responses": responses,
                "headers": {
                    "X-Request-Id": {
                        "description": "The request's id: the client's own `X-Request-Id` when it sent one of 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-', the gateway's otherwise. Every answer carries it, and error bodies repeat it.",
                        "required": true,
                        "schema": {"type": "string"}
                    }
                },
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "The `access_token` of `logIn`."},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "An admin API key (`ADMIN_API_KEY`)."},
                    "accessToken": {"type": "apiKey", "in": "query", "name": "access_token", "description": "The `access_token` of `logIn`, for WebSocket clients that cannot set headers."}
                }
            }
        })
    }

    /// The schemas the operations name that no Rust type of the gateway gives: the error
    /// shape, the request bodies, the commands of this world.
    fn add_shared_schemas(&mut self, types: &Types) {
        let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        self.components.insert(
            "Error".into(),
            json!({
                "type": "object",
                "description": "Every error of every layer has this shape.",
                "required": ["error"],
                "properties": {"error": {
                    "type": "object",
                    "required": ["code", "message", "details", "request_id"],
                    "properties": {
                        "code": {"type": "string", "enum": codes, "description": "A stable snake_case code; the status follows from it."},
                        "message": {"type": "string", "description": "For people."},
                        "details": {"type": "array", "items": types.field_error, "description": "One entry per bad field of a 400; empty otherwise."},
                        "request_id": {"type": "string", "description": "The request's id, as in `X-Request-Id`."}
                    }
                }}
            }),
        );
        self.components.insert(
            "Credentials".into(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["username", "password"],
                "properties": {
                    "username": {
                        "type": "string",
                        "description": "3 to 32 characters of A-Z, a-z, 0-9 and _; unique whatever the case.",
                        "pattern": PATTERNS.username,
                    },
                    "password": {
                        "type": "string",
                        "minLength": crate::accounts::PASSWORD_LEN.start(),
                        "maxLength": crate::accounts::PASSWORD_LEN.end(),
                    }
                }
            }),
        );
        // The client command schema of this world, its definitions moved among the components.
        let mut command = schemas::json_schema::client_commands_in(&self.context);
        if let Some(Value::Object(defs)) = command.as_object_mut().and_then(|c| c.remove("$defs")) {
            self.components.extend(defs);
        }
        if let Some(c) = command.as_object_mut() {
            c.remove("$schema");
        }
        let command: Value = serde_json::from_str(
            &command
                .to_string()
                .replace("\"#/$defs/", "\"#/components/schemas/"),
        )
        .unwrap_or(Value::Null);
        self.components.insert("Command".into(), command);
        self.components.insert(
            "RoleChange".into(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["role"],
                "properties": {"role": types.role}
            }),
        );
        let seq = json!({"type": "integer", "minimum": 1, "maximum": crate::admin::MAX_SEQ});
        self.components.insert(
            "RedriveSelection".into(),
            json!({
                "description": "Either the `DLQ` sequences to redrive, or all (up to a page).",
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["seqs"],
                        "properties": {"seqs": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": crate::admin::MAX_PAGE,
                            "items": seq
                        }}
                    },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["all"],
                        "properties": {"all": {"const": true}}
                    }
                ]
            }),
        );
    }

    fn operation(&self, operation: &Operation, types: &Types) -> Value {
        use Failure::*;
        let body = |name: &str| json!({"required": true, "content": json_content(reference("schemas", name))});
        let region_id = json!({"type": "string", "pattern": RegionId::pattern()});
        let world = self.context.world;
        let mut responses = Map::new();
        let mut parameters: Vec<Value> = Vec::new();
        let mut request_body = None;
        // Every operation may meet the HTTP layer's own refusals.
        let mut failures = vec![BadRequest, UriTooLong, HeadersTooLarge];
        let min_seq = || {
            query_param(
                crate::consistency::MIN_SEQ,
                false,
                &format!(
                    "Answer once the read models hold every fact up to this `FACTS` sequence (one \
                     of an outcome's `fact_seqs`), waiting up to {} s; 409 `projection_behind` \
                     otherwise.",
                    crate::consistency::MIN_SEQ_WAIT.as_secs()
                ),
                json!({"type": "integer", "minimum": 1, "maximum": crate::consistency::MAX_MIN_SEQ}),
            )
        };
        match operation.id {
            "register" => {
                request_body = Some(body("Credentials"));
                let mut created = answer("Registered", types.registered.clone());
                created["links"] = json!({
                    "LogIn": link("logIn", "Log in with the account just made.", json!({}), Some(json!({
                        "username": "$request.body#/username",
                        "password": "$request.body#/password"
                    }))),
                    "SetRole": link("setRole", "An admin gives the new player a role.", json!({
                        "path.id": "$response.body#/player_id"
                    }), None),
                });
                responses.insert("201".into(), created);
                failures.extend([
                    Conflict,
                    PayloadTooLarge,
                    UnsupportedMediaType,
                    RateLimited,
                    Unavailable,
                ]);
            }
            "logIn" => {
                request_body = Some(body("Credentials"));
                let bearer =
                    json!({"header.Authorization": "Bearer {$response.body#/access_token}"});
                let mut logged_in = answer("Logged in", types.token.clone());
                logged_in["links"] = json!({
                    "Me": link("getMe", "The player, with the token just issued.", bearer.clone(), None),
                    "Spawn": link("submitCommand", "Enter the world, with the token just issued.", json!({
                        "header.Authorization": "Bearer {$response.body#/access_token}",
                        "query.wait": "true"
                    }), Some(json!({"type": "spawn"}))),
                    "LogOut": link("logOut", "End the session just started.", bearer, None),
                });
                responses.insert("200".into(), logged_in);
                failures.extend([
                    Unauthorized,
                    PayloadTooLarge,
                    UnsupportedMediaType,
                    RateLimited,
                    Unavailable,
                ]);
            }
            "logOut" => {
                responses.insert("204".into(), empty_answer("Logged out"));
                failures.extend([Unauthorized, RateLimited, Unavailable]);
            }
            "getMe" => {
                parameters.push(min_seq());
                responses.insert("200".into(), answer("The player", types.player.clone()));
                failures.extend([Unauthorized, NotFound, Conflict, RateLimited, Unavailable]);
            }
            "submitCommand" => {
                let wait_max = self.settings.wait_max.as_millis() as u64;
                parameters.push(query_param(
                    "wait",
                    false,
                    "Wait for the outcome: 200 with it when it comes in time, 202 otherwise.",
                    json!({"type": "boolean", "default": false}),
                ));
                parameters.push(query_param(
                    "wait_ms",
                    false,
                    "How long to wait for the outcome, in milliseconds (with `wait`).",
                    json!({"type": "integer", "minimum": 1, "maximum": wait_max,
                           "default": self.settings.wait_default.as_millis() as u64}),
                ));
                parameters.push(header_param(
                    "Idempotency-Key",
                    false,
                    "Makes a retried request stored once and answered the same, for 24 hours; the same key with another command is a 409.",
                    json!({"type": "string", "pattern": PATTERNS.idempotency_key}),
                ));
                request_body = Some(body("Command"));
                let next = json!({
                    "Me": link("getMe", "Read the player after its command.", json!({}), None),
                    "Next": link("submitCommand", "Another command.", json!({}), None),
                });
                let mut outcome = answer(
                    "The outcome, with ?wait=true when it came in time",
                    types.outcome.clone(),
                );
                outcome["links"] = json!({
                    "Me": link("getMe", "Read the player as the command left it.", json!({
                        "query.min_seq": "$response.body#/fact_seqs/0"
                    }), None),
                    "Next": link("submitCommand", "Another command: it goes where this one put the avatar.", json!({}), None),
                });
                let mut accepted = answer(
                    "Stored; the region decides it within a tick",
                    types.accepted.clone(),
                );
                accepted["links"] = next;
                responses.insert("200".into(), outcome);
                responses.insert("202".into(), accepted);
                failures.extend([
                    Unauthorized,
                    Conflict,
                    PayloadTooLarge,
                    UnsupportedMediaType,
                    RateLimited,
                    Unavailable,
                ]);
            }
            "listRegions" => {
                let mut listed = answer(
                    "The regions",
                    json!({"type": "array", "items": types.region}),
                );
                listed["links"] = json!({
                    "Region": link("getRegion", "The first region.", json!({"path.id": "$response.body#/0/id"}), None),
                    "Entities": link("entitiesNear", "What is in the first region.", json!({"path.id": "$response.body#/0/id"}), None),
                });
                parameters.push(min_seq());
                responses.insert("200".into(), listed);
                failures.extend([Unauthorized, Conflict, RateLimited, Unavailable]);
            }
            "getRegion" => {
                parameters.push(path_param(
                    "id",
                    "The region (404 when the world has none of that id).",
                    region_id,
                ));
                let mut region = answer("The region", types.region.clone());
                region["links"] = json!({
                    "Entities": link("entitiesNear", "What is at the region's south-west corner.", json!({
                        "path.id": "$response.body#/id",
                        "query.x": "$response.body#/bounds/min/x",
                        "query.y": "$response.body#/bounds/min/y"
                    }), None),
                });
                parameters.push(min_seq());
                responses.insert("200".into(), region);
                failures.extend([Unauthorized, NotFound, Conflict, RateLimited, Unavailable]);
            }
            "entitiesNear" => {
                parameters.push(path_param("id", "The region asked through (404 when the world has none of that id); the point may lie in any region.", region_id));
                for (name, lo, hi) in [
                    ("x", world.min.x, world.max.x),
                    ("y", world.min.y, world.max.y),
                ] {
                    parameters.push(query_param(
                        name,
                        true,
                        "The point, inside the world.",
                        json!({"type": "number", "minimum": lo, "exclusiveMaximum": hi}),
                    ));
                }
                parameters.push(query_param(
                    "radius",
                    false,
                    "How far from the point to look.",
                    json!({"type": "number", "exclusiveMinimum": 0, "maximum": crate::regions::MAX_RADIUS,
                           "default": crate::regions::DEFAULT_RADIUS}),
                ));
                responses.insert(
                    "200".into(),
                    answer(
                        &format!(
                            "Entities within the radius, nearest first, at most {}",
                            crate::regions::MAX_ENTITIES
                        ),
                        types.nearby.clone(),
                    ),
                );
                parameters.push(min_seq());
                failures.extend([Unauthorized, NotFound, Conflict, RateLimited, Unavailable]);
            }
            "openStream" => {
                for (name, description, schema) in [
                    (
                        "Connection",
                        "`Upgrade` (a list holding it).",
                        json!({"type": "string", "enum": ["Upgrade", "upgrade", "keep-alive, Upgrade"]}),
                    ),
                    (
                        "Upgrade",
                        "The protocol: `websocket`.",
                        json!({"type": "string", "enum": ["websocket"]}),
                    ),
                    (
                        "Sec-WebSocket-Version",
                        "`13`.",
                        json!({"type": "string", "enum": ["13"]}),
                    ),
                    (
                        "Sec-WebSocket-Key",
                        "The client's nonce (RFC 6455).",
                        json!({"type": "string", "pattern": "^[A-Za-z0-9+/]{22}==$"}),
                    ),
                ] {
                    parameters.push(header_param(name, true, description, schema));
                }
                responses.insert("101".into(), empty_answer(
                    "Switching to the WebSocket protocol: the facts around the player come as text messages; the stream ends with close code 4001 when its session ends, and 1001 when the gateway stops.",
                ));
                failures.extend([Unauthorized, TooManyStreams, Unavailable]);
            }
            "listDeadLetters" => {
                parameters.push(query_param(
                    "after",
                    false,
                    "The `DLQ` sequence to list after (`next_after` of the page before).",
                    json!({"type": "integer", "minimum": 0, "maximum": crate::admin::MAX_SEQ, "default": 0}),
                ));
                parameters.push(query_param(
                    "limit",
                    false,
                    "The most dead letters to list.",
                    json!({"type": "integer", "minimum": 1, "maximum": crate::admin::MAX_PAGE, "default": 100}),
                ));
                responses.insert(
                    "200".into(),
                    answer("A page of dead letters", types.dead_letters.clone()),
                );
                failures.extend([Unauthorized, Forbidden, RateLimited, Unavailable]);
            }
            "redrive" => {
                request_body = Some(body("RedriveSelection"));
                responses.insert(
                    "200".into(),
                    answer(
                        "What was redriven, and what was not",
                        types.redriven.clone(),
                    ),
                );
                failures.extend([
                    Unauthorized,
                    Forbidden,
                    PayloadTooLarge,
                    UnsupportedMediaType,
                    RateLimited,
                    Unavailable,
                ]);
            }
            "regionAssignments" => {
                responses.insert(
                    "200".into(),
                    answer("Owners and loads", types.assignments.clone()),
                );
                failures.extend([Unauthorized, Forbidden, RateLimited, Unavailable]);
            }
            "setRole" => {
                parameters.push(path_param(
                    "id",
                    "The player (404 when there is no such player).",
                    json!({"type": "string", "format": "uuid"}),
                ));
                request_body = Some(body("RoleChange"));
                responses.insert(
                    "200".into(),
                    answer(
                        "The role is changed and the player's sessions ended",
                        types.role_set.clone(),
                    ),
                );
                failures.extend([
                    Unauthorized,
                    Forbidden,
                    NotFound,
                    PayloadTooLarge,
                    UnsupportedMediaType,
                    RateLimited,
                    Unavailable,
                ]);
            }
            "startRebuild" => {
                let mut requested = answer(
                    "Requested; a projector takes it",
                    types.rebuild_requested.clone(),
                );
                requested["links"] = json!({
                    "Progress": link("rebuildProgress", "How the rebuild goes.", json!({"path.job_id": "$response.body#/job_id"}), None),
                });
                responses.insert("202".into(), requested);
                failures.extend([Unauthorized, Forbidden, RateLimited, Unavailable]);
            }
            "rebuildProgress" => {
                let job_id = &PATTERNS.job_id;
                parameters.push(path_param(
                    "job_id",
                    "A job id as `startRebuild` answered it (404 when no job has it).",
                    json!({"type": "string", "pattern": job_id}),
                ));
                responses.insert("200".into(), answer("The job", types.rebuild.clone()));
                failures.extend([Unauthorized, Forbidden, NotFound, RateLimited, Unavailable]);
            }
            "healthz" => {
                responses.insert(
                    "200".into(),
                    answer("The process serves", types.liveness.clone()),
                );
            }
            "readyz" => {
                responses.insert(
                    "200".into(),
                    answer("Every dependency answers", types.readiness.clone()),
                );
                responses.insert(
                    "503".into(),
                    answer(
                        "Some dependency does not answer; which, the body says",
                        types.readiness.clone(),
                    ),
                );
            }
            "metrics" => {
                responses.insert(
                    "200".into(),
                    json!({
                        "description": "Prometheus' text format",
                        "headers": {"X-Request-Id": reference("headers", "X-Request-Id")},
                        "content": {"text/plain": {"schema": {"type": "string"}}}
                    }),
                );
            }
            "openapi" => {
                responses.insert(
                    "200".into(),
                    answer("This document", json!({"type": "object"})),
                );
            }
            _ => {}
        }
        for failure in failures {
            responses.insert(failure.status(), failure.reference());
        }
        let mut entry = json!({
            "operationId": operation.id,
            "summary": operation.summary,
            "tags": [operation.access.tag()],
            "responses": responses,
            "security": match (operation.access, operation.id) {
                (_, "openStream") => json!([{"bearer": []}, {"accessToken": []}]),
                (Access::Anyone, _) => json!([]),
                (Access::Player, _) => json!([{"bearer": []}]),
                (Access::Admin, _) => json!([{"bearer": [], "apiKey": []}]),
            },
        });
        if !parameters.is_empty() {
            entry["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = request_body {
            entry["requestBody"] = body;
        }
        entry
    }
}

/// The schemas of the types the operations read and write.
struct Types {
    registered: Value,
    token: Value,
    player: Value,
    accepted: Value,
    outcome: Value,
    region: Value,
    nearby: Value,
    dead_letters: Value,
    redriven: Value,
    assignments: Value,
    role: Value,
    role_set: Value,
    rebuild_requested: Value,
    rebuild: Value,
    liveness: Value,
    readiness: Value,
    field_error: Value,
}

const INFO: &str = "The game backend's REST API.\n\n\
Every error, of every layer (the HTTP layer's own answers to requests it cannot read included), \
has one shape: `{\"error\": {\"code\", \"message\", \"details\", \"request_id\"}}`. Every answer \
carries `X-Request-Id`. Requests are limited per client address (every route but health, \
metrics and this document) and per player (commands, reads), and failed logins per account: \
429 with `Retry-After`. Every rule the gateway checks is stated here, with this deployment's \
world: the regions there are, the world's bounds, the longest wait.";

/// `GET /openapi.json`: the document of this gateway, built when it started.
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi().clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_names_a_status_of_its_codes() {
        for failure in FAILURES {
            let codes = failure.codes();
            assert!(!codes.is_empty(), "{failure:?}");
            assert!(codes.contains(&failure.code().as_str()), "{failure:?}");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids: Vec<&str> = OPERATIONS.iter().map(|o| o.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), OPERATIONS.len());
    }
}
