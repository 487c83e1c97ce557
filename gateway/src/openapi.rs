//! The OpenAPI 3.1 document of the REST contract, served at `/openapi.json`.
//!
//! Bodies are described by the JSON Schema of the very types the handlers read and write
//! (generated with `schemars`), and the command bodies by the client command schema of the
//! shared `schemas` crate; the operations are listed in [`OPERATIONS`], and a test asks the
//! router for every one of them, so the document cannot name a route that does not exist.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

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

/// One operation: method, path (with `{param}`s), who may call it, what it does.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// `get`, `post`, `put`.
    pub method: &'static str,
    /// The path.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// A line about it.
    pub summary: &'static str,
}

const fn op(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> Operation {
    Operation {
        method,
        path,
        access,
        summary,
    }
}

/// Every operation of the REST contract.
pub const OPERATIONS: &[Operation] = &[
    op(
        "post",
        "/v1/auth/register",
        Access::Anyone,
        "Create an account: 201 {player_id}; 409 when the username is taken.",
    ),
    op(
        "post",
        "/v1/auth/login",
        Access::Anyone,
        "Log in: a bearer token for the player.",
    ),
    op(
        "post",
        "/v1/auth/logout",
        Access::Player,
        "End the session: the token is refused from then on.",
    ),
    op(
        "get",
        "/v1/players/me",
        Access::Player,
        "The caller's player read model.",
    ),
    op(
        "post",
        "/v1/commands",
        Access::Player,
        "Send a command: 202 once stored; with ?wait=true, 200 with its outcome when it comes in time.",
    ),
    op(
        "get",
        "/v1/regions",
        Access::Player,
        "Every region, with owner node and population.",
    ),
    op("get", "/v1/regions/{id}", Access::Player, "One region."),
    op(
        "get",
        "/v1/regions/{id}/entities",
        Access::Player,
        "Entities near a point of a region, nearest first.",
    ),
    op(
        "get",
        "/v1/stream",
        Access::Player,
        "A WebSocket of the live facts around the player (token also as ?access_token=).",
    ),
    op(
        "get",
        "/admin/dlq",
        Access::Admin,
        "Dead letters, page by page, with origin, reason and attempts.",
    ),
    op(
        "post",
        "/admin/dlq/redrive",
        Access::Admin,
        "Publish dead commands again on their origin subject.",
    ),
    op(
        "get",
        "/admin/regions",
        Access::Admin,
        "Region owners and simulator node load.",
    ),
    op(
        "put",
        "/admin/players/{id}/role",
        Access::Admin,
        "Change a player's role; ends the player's sessions.",
    ),
    op(
        "post",
        "/admin/projections/rebuild",
        Access::Admin,
        "Request a projection rebuild: 202 {job_id}.",
    ),
    op(
        "get",
        "/admin/projections/rebuild/{job_id}",
        Access::Admin,
        "A rebuild's state and progress.",
    ),
    op("get", "/healthz", Access::Anyone, "Liveness."),
    op(
        "get",
        "/readyz",
        Access::Anyone,
        "Readiness: NATS, Redis and MongoDB reachable.",
    ),
    op("get", "/metrics", Access::Anyone, "Prometheus metrics."),
    op("get", "/openapi.json", Access::Anyone, "This document."),
];

/// The document (built once).
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

fn build() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    let player = schema_of::<schemas::read_model::PlayerView>(&mut generator);
    let accepted = schema_of::<crate::commands::Accepted>(&mut generator);
    let outcome = schema_of::<crate::commands::Outcome>(&mut generator);
    let region = schema_of::<crate::regions::RegionView>(&mut generator);
    let nearby = schema_of::<crate::regions::Nearby>(&mut generator);
    let dead_letter = schema_of::<crate::admin::DeadLetterView>(&mut generator);
    let mut components: Map<String, Value> = generator.take_definitions(true);

    // The client command schema, with its definitions moved among the components.
    let (_, mut command) = schemas::json_schema::documents()
        .into_iter()
        .find(|(name, _)| *name == "command.schema.json")
        .unwrap_or(("", Value::Null));
    if let Some(Value::Object(defs)) = command.as_object_mut().and_then(|c| c.remove("$defs")) {
        components.extend(defs);
    }
    if let Some(c) = command.as_object_mut() {
        c.remove("$schema");
    }
    let command: Value = serde_json::from_str(
        &command
            .to_string()
            .replace("#/$defs/", "#/components/schemas/"),
    )
    .unwrap_or(Value::Null);
    components.insert("Command".into(), command);
    components.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "details", "request_id"],
                "properties": {
                    "code": {"type": "string", "description": "A stable snake_case code: invalid_request, unauthorized, rate_limited, ..."},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}
                    }},
                    "request_id": {"type": "string"}
                }
            }}
        }),
    );
    components.insert(
        "Credentials".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["username", "password"],
            "properties": {
                "username": {"type": "string", "pattern": "^[A-Za-z0-9_]{3,32}$"},
                "password": {"type": "string", "minLength": 8, "maxLength": 128}
            }
        }),
    );

    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let body = |schema: Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
    let answer = |description: &str, schema: Option<Value>| match schema {
        Some(schema) => {
            json!({"description": description, "content": {"application/json": {"schema": schema}}})
        }
        None => json!({"description": description}),
    };
    let mut paths: Map<String, Value> = Map::new();
    for operation in OPERATIONS {
        let mut responses = Map::new();
        let success = match (operation.method, operation.path) {
            ("post", "/v1/auth/register") => (
                "201",
                answer(
                    "Registered",
                    Some(
                        json!({"type": "object", "properties": {"player_id": {"type": "string", "format": "uuid"}}}),
                    ),
                ),
            ),
            ("post", "/v1/auth/login") => (
                "200",
                answer(
                    "Logged in",
                    Some(json!({"type": "object", "properties": {
                "access_token": {"type": "string"}, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}, "player_id": {"type": "string", "format": "uuid"}}})),
                ),
            ),
            ("post", "/v1/auth/logout") => ("204", answer("Logged out", None)),
            ("get", "/v1/players/me") => ("200", answer("The player", Some(player.clone()))),
            ("post", "/v1/commands") => {
                responses.insert(
                    "200".into(),
                    answer("The outcome, with ?wait=true", Some(outcome.clone())),
                );
                ("202", answer("Stored", Some(accepted.clone())))
            }
            ("get", "/v1/regions") => (
                "200",
                answer(
                    "The regions",
                    Some(json!({"type": "array", "items": region.clone()})),
                ),
            ),
            ("get", "/v1/regions/{id}") => ("200", answer("The region", Some(region.clone()))),
            ("get", "/v1/regions/{id}/entities") => (
                "200",
                answer("Entities near the point", Some(nearby.clone())),
            ),
            ("get", "/v1/stream") => ("101", answer("Switching to the WebSocket protocol", None)),
            ("get", "/admin/dlq") => (
                "200",
                answer(
                    "A page of dead letters",
                    Some(json!({"type": "object", "properties": {
                "dead_letters": {"type": "array", "items": dead_letter.clone()}, "next_after": {"type": ["integer", "null"]}, "total": {"type": "integer"}}})),
                ),
            ),
            ("post", "/admin/projections/rebuild") => (
                "202",
                answer(
                    "Requested",
                    Some(
                        json!({"type": "object", "properties": {"job_id": {"type": "string"}, "state": {"type": "string"}}}),
                    ),
                ),
            ),
            _ => ("200", answer("OK", None)),
        };
        responses.insert(success.0.into(), success.1);
        for (status, why) in match operation.access {
            Access::Anyone => vec![("400", "Invalid request"), ("429", "Rate limited")],
            Access::Player => vec![
                ("400", "Invalid request"),
                ("401", "No valid token"),
                ("429", "Rate limited"),
                ("503", "A dependency is down"),
            ],
            Access::Admin => vec![
                ("400", "Invalid request"),
                ("401", "No valid token"),
                ("403", "Not an admin, or a bad X-Api-Key"),
                ("503", "A dependency is down"),
            ],
        } {
            responses.insert(status.into(), answer(why, Some(reference("Error"))));
        }
        let mut entry = json!({"summary": operation.summary, "responses": responses});
        let params: Vec<Value> = operation
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            entry["parameters"] = Value::Array(params);
        }
        match (operation.method, operation.path) {
            ("post", "/v1/auth/register") | ("post", "/v1/auth/login") => {
                entry["requestBody"] = body(reference("Credentials"))
            }
            ("post", "/v1/commands") => entry["requestBody"] = body(reference("Command")),
            ("put", "/admin/players/{id}/role") => {
                entry["requestBody"] = body(
                    json!({"type": "object", "required": ["role"], "properties": {"role": {"enum": ["player", "moderator", "admin"]}}}),
                )
            }
            ("post", "/admin/dlq/redrive") => {
                entry["requestBody"] = body(json!({"oneOf": [
                    {"type": "object", "required": ["seqs"], "properties": {"seqs": {"type": "array", "items": {"type": "integer", "minimum": 1}}}},
                    {"type": "object", "required": ["all"], "properties": {"all": {"const": true}}}
                ]}))
            }
            _ => {}
        }
        entry["security"] = match operation.access {
            Access::Anyone => json!([]),
            Access::Player => json!([{"bearer": []}]),
            Access::Admin => json!([{"bearer": [], "apiKey": []}]),
        };
        let path = paths.entry(operation.path).or_insert_with(|| json!({}));
        path[operation.method] = entry;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Game backend REST API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
            }
        }
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::Json<Value> {
    axum::Json(document().clone())
}
