//! JSON Schema documents for client developers, generated from the types themselves.
//!
//! The committed copies live in `schemas/json-schema/`; a test fails when they are stale, and
//! `UPDATE_JSON_SCHEMAS=1 cargo test -p schemas` rewrites them.

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::command::{Command, CommandKind, Origin};
use crate::envelope::Actor;
use crate::fact::Fact;

/// The documents: file name and content, with object keys sorted so that the text is the same
/// whichever features of `serde_json` the build happens to enable.
pub fn documents() -> Vec<(&'static str, Value)> {
    let documents = vec![
        (
            "command.schema.json",
            client_commands(document::<Command>(
                "Command",
                "A command body for POST /v1/commands, tagged by `type`.",
            )),
        ),
        (
            "fact.schema.json",
            document::<Fact>(
                "Fact",
                "A fact payload as found in the event log and on the live stream.",
            ),
        ),
        (
            "actor.schema.json",
            document::<Actor>(
                "Actor",
                "Who caused an event, as written in every envelope.",
            ),
        ),
    ];
    documents
        .into_iter()
        .map(|(name, doc)| (name, sorted(doc)))
        .collect()
}

/// `value` with the keys of every object in sorted order (`serde_json`'s `preserve_order`, which
/// another crate in the workspace may switch on, would otherwise keep the generator's order).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn document<T: schemars::JsonSchema>(title: &str, description: &str) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Value::Object(map) = &mut schema {
        map.insert("title".into(), title.into());
        map.insert("description".into(), description.into());
    }
    schema
}

/// The client command schema of [`documents`] with the domain rules of `ctx`'s world written in:
/// the regions a `spawn` may name, the bounds of a `move`, the pattern of a chat line. What the
/// gateway's OpenAPI document gives as the body of `POST /v1/commands`.
pub fn client_commands_in(ctx: &crate::ValidationContext) -> Value {
    let mut schema = documents()
        .into_iter()
        .find(|(name, _)| *name == "command.schema.json")
        .map_or(Value::Null, |(_, schema)| schema);
    if let Some(Value::Array(variants)) = schema.get_mut("oneOf") {
        for variant in variants {
            let kind = variant
                .pointer("/properties/type/const")
                .and_then(Value::as_str)
                .and_then(|name| name.parse::<CommandKind>().ok());
            if let (Some(kind), Some(Value::Object(properties))) =
                (kind, variant.get_mut("properties"))
            {
                kind.state_in_schema(ctx, properties);
            }
        }
    }
    schema
}

/// Keeps only the commands a player may send, and the definitions they use.
fn client_commands(mut schema: Value) -> Value {
    let is_client = |variant: &Value| {
        variant
            .pointer("/properties/type/const")
            .and_then(Value::as_str)
            .and_then(|name| name.parse::<CommandKind>().ok())
            .is_some_and(|kind| kind.origin() == Origin::Player)
    };
    if let Some(Value::Array(variants)) = schema.get_mut("oneOf") {
        variants.retain(is_client);
    }
    prune_unused_definitions(&mut schema);
    schema
}

/// Drops `$defs` entries that nothing outside them refers to, until none is left to drop.
fn prune_unused_definitions(schema: &mut Value) {
    loop {
        let Some(Value::Object(defs)) = schema.get("$defs") else {
            return;
        };
        let names: Vec<String> = defs.keys().cloned().collect();
        let unused: Vec<String> = names
            .into_iter()
            .filter(|name| {
                let reference = format!("\"#/$defs/{name}\"");
                let mut rest = schema.clone();
                if let Some(Value::Object(defs)) = rest.get_mut("$defs") {
                    defs.remove(name);
                }
                !rest.to_string().contains(&reference)
            })
            .collect();
        if unused.is_empty() {
            return;
        }
        if let Some(Value::Object(defs)) = schema.get_mut("$defs") {
            for name in unused {
                defs.remove(&name);
            }
        }
    }
}
