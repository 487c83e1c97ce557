//! Upcasting: every payload ever written keeps decoding, forever.
//!
//! When a payload's shape changes, its kind's schema version goes up by one and a step is added
//! here that turns the old JSON into the new. Decoding runs the steps from the version a payload
//! was written in up to today's, then types the result. Steps are never removed.
//!
//! History:
//! - `move` v1 (the first client prototype) carried its destination as `{"to": {"x", "y"}}`;
//!   v2 carries `x` and `y` at the top, as the REST contract has it.
//! - `left` v2 adds `progress` (level, experience, inventory), so an avatar has them again when
//!   it spawns. A v1 fact did not record them: it reads as v2 without `progress`.

use serde_json::{Map, Value};

use crate::command::CommandKind;
use crate::envelope::DecodeError;
use crate::fact::FactKind;

/// One step: a payload of version `n` becomes version `n + 1`, or says why it cannot.
type Step = fn(&mut Map<String, Value>) -> Result<(), String>;

fn command_step(kind: CommandKind, from: u16) -> Option<Step> {
    match (kind, from) {
        (CommandKind::Move, 1) => Some(move_v1_to_v2),
        _ => None,
    }
}

fn fact_step(kind: FactKind, from: u16) -> Option<Step> {
    match (kind, from) {
        (FactKind::Left, 1) => Some(unrecorded),
        _ => None,
    }
}

/// A step that adds only optional fields: the old payload is already a valid new one, with
/// them missing.
fn unrecorded(_: &mut Map<String, Value>) -> Result<(), String> {
    Ok(())
}

/// `move` v1 `{"to": {"x": 1, "y": 2}}` becomes v2 `{"x": 1, "y": 2}`.
fn move_v1_to_v2(payload: &mut Map<String, Value>) -> Result<(), String> {
    let Some(Value::Object(mut to)) = payload.remove("to") else {
        return Err("a version 1 move has its destination in a `to` object".to_owned());
    };
    for axis in ["x", "y"] {
        let value = to
            .remove(axis)
            .ok_or_else(|| format!("`to` has no `{axis}`"))?;
        payload.insert(axis.to_owned(), value);
    }
    Ok(())
}

fn run(
    kind: &str,
    version: u16,
    current: u16,
    step: impl Fn(u16) -> Option<Step>,
    payload: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    if version == 0 || version > current {
        return Err(DecodeError::UnsupportedVersion {
            kind: kind.to_owned(),
            version,
            current,
        });
    }
    for from in version..current {
        let upcast = step(from).ok_or_else(|| DecodeError::Upcast {
            kind: kind.to_owned(),
            version,
            why: format!("no step from version {from}"),
        })?;
        upcast(payload).map_err(|why| DecodeError::Upcast {
            kind: kind.to_owned(),
            version,
            why,
        })?;
    }
    Ok(())
}

/// Brings a command payload written in `version` to today's shape.
pub(crate) fn command(
    kind: CommandKind,
    version: u16,
    payload: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    run(
        kind.as_str(),
        version,
        kind.schema_version(),
        |from| command_step(kind, from),
        payload,
    )
}

/// Brings a fact payload written in `version` to today's shape.
pub(crate) fn fact(
    kind: FactKind,
    version: u16,
    payload: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    run(
        kind.as_str(),
        version,
        kind.schema_version(),
        |from| fact_step(kind, from),
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Move};
    use crate::envelope::Envelope;

    /// A `move` exactly as the first prototype wrote it to the bus.
    const MOVE_V1: &str = r#"{
        "id": "019ab6a4-2f10-7c3e-9a51-5d2c8e0f1a22",
        "kind": "move",
        "schema_version": 1,
        "occurred_at": "2026-11-02T09:15:00.250Z",
        "actor": {"type": "player", "id": "019ab6a3-0000-7000-8000-00000000beef"},
        "region": "north-1",
        "correlation_id": "019ab6a4-2f10-7c3e-9a51-5d2c8e0f1a22",
        "causation_id": null,
        "payload": {"type": "move", "to": {"x": 120.5, "y": -40}}
    }"#;

    #[test]
    fn a_version_1_move_decodes_into_todays_type() {
        let env = Envelope::<Command>::decode(MOVE_V1.as_bytes()).expect("v1 decodes");
        assert_eq!(env.payload, Command::Move(Move { x: 120.5, y: -40.0 }));
        let again =
            Envelope::<Command>::decode(&env.encode().expect("encode")).expect("v2 decodes");
        assert_eq!(again, env);
    }

    #[test]
    fn a_version_1_move_without_its_destination_is_refused() {
        let broken = MOVE_V1.replace(r#""to": {"x": 120.5, "y": -40}"#, r#""to": {"x": 120.5}"#);
        assert!(matches!(
            Envelope::<Command>::decode(broken.as_bytes()),
            Err(DecodeError::Upcast { version: 1, .. })
        ));
    }

    #[test]
    fn a_version_1_left_decodes_without_progress() {
        let v1 = r#"{
            "id": "019ab6a4-2f10-7c3e-9a51-5d2c8e0f1a23",
            "kind": "left",
            "schema_version": 1,
            "occurred_at": "2026-11-02T09:16:00.000Z",
            "actor": {"type": "player", "id": "019ab6a3-0000-7000-8000-00000000beef"},
            "region": "north-1",
            "correlation_id": "019ab6a4-2f10-7c3e-9a51-5d2c8e0f1a23",
            "causation_id": null,
            "payload": {"type": "left", "entity": "019ab6a3-0000-7000-8000-00000000beef",
                        "reason": "requested", "position": {"x": 1.0, "y": 2.0}}
        }"#;
        let env = crate::envelope::Envelope::<crate::fact::Fact>::decode(v1.as_bytes())
            .expect("v1 decodes");
        let crate::fact::Fact::Left(left) = &env.payload else {
            panic!("{env:?}")
        };
        assert_eq!(left.progress, None);
    }

    #[test]
    fn every_kind_has_a_step_for_every_old_version() {
        for kind in CommandKind::ALL {
            for from in 1..kind.schema_version() {
                assert!(command_step(*kind, from).is_some(), "{kind} v{from}");
            }
        }
        for kind in FactKind::ALL {
            for from in 1..kind.schema_version() {
                assert!(fact_step(*kind, from).is_some(), "{kind} v{from}");
            }
        }
    }
}
