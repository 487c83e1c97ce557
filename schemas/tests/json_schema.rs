//! The committed JSON Schema documents match the types.

use std::path::PathBuf;

#[test]
fn committed_json_schemas_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json-schema");
    let update = std::env::var_os("UPDATE_JSON_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in schemas::json_schema::documents() {
        let path = dir.join(name);
        let fresh = serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n";
        if update {
            std::fs::create_dir_all(&dir).expect("create json-schema/");
            std::fs::write(&path, &fresh).expect("write schema");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "stale JSON Schema documents {stale:?}: run `UPDATE_JSON_SCHEMAS=1 cargo test -p schemas --test json_schema` and commit"
    );
}

#[test]
fn the_command_schema_describes_the_rules() {
    let (_, command) = schemas::json_schema::documents()
        .into_iter()
        .find(|(name, _)| *name == "command.schema.json")
        .expect("command schema");
    let text = command.to_string();
    for needle in [
        "\"move\"",
        "\"chat\"",
        "\"maxLength\":500",
        "\"minLength\":1",
        "\"format\":\"uuid\"",
    ] {
        assert!(
            text.contains(needle),
            "command schema lacks {needle}: {text}"
        );
    }
}
