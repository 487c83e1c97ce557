//! The one envelope around every command and every fact, and its JSON form on the bus:
//!
//! ```json
//! {"id": "0192…", "kind": "move", "schema_version": 2, "occurred_at": "2026-11-25T18:00:00Z",
//!  "actor": {"type": "player", "id": "…"}, "region": "north-1",
//!  "correlation_id": "0192…", "causation_id": null,
//!  "payload": {"type": "move", "x": 10.5, "y": 3.0}}
//! ```
//!
//! Decoding reads `kind` and `schema_version` first and upcasts an older payload to today's
//! shape before typing it (see [`crate::upcast`]), so the log stays readable forever.

use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::command::{Command, CommandKind};
use crate::fact::{Fact, FactKind};
use crate::ids::{EventId, PlayerId, RegionId};
use crate::subject::{CommandSubject, FactSubject};
use crate::upcast;
use crate::validation::FieldError;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    /// A player, through the REST API.
    Player {
        /// The player.
        id: PlayerId,
    },
    /// An admin, through the admin routes.
    Admin {
        /// The admin's account.
        id: PlayerId,
    },
    /// A service of the backend (a region simulator, the gateway on registration).
    System {
        /// The service's name.
        service: String,
    },
}

/// A command or a fact with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<P> {
    /// Its id: the `Nats-Msg-Id` on the bus, so the same event is stored once.
    pub id: EventId,
    /// When it happened (UTC, millisecond precision).
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The region it belongs to; `None` for world-wide events (accounts).
    pub region: Option<RegionId>,
    /// The command this event is part of the outcome of (a command's own id for a command).
    pub correlation_id: EventId,
    /// The event that directly caused this one, if any.
    pub causation_id: Option<EventId>,
    /// What it says.
    pub payload: P,
}

/// A payload that can travel in an [`Envelope`]: commands and facts.
pub trait Payload: Serialize + Sized {
    /// The wire name of its kind.
    fn kind_name(&self) -> &'static str;
    /// The schema version it is written in.
    fn schema_version(&self) -> u16;
    /// Decodes a payload of `kind` written in `version` (without its `type`), upcasting it first.
    fn decode(kind: &str, version: u16, payload: Map<String, Value>) -> Result<Self, DecodeError>;
}

/// Why bytes are not a valid envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an envelope's shape.
    #[error("not an envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    /// `kind` names nothing known.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// `schema_version` is 0 or newer than this build knows.
    #[error("{kind} has no schema version {version} (this build reads 1 to {current})")]
    UnsupportedVersion {
        /// The kind.
        kind: String,
        /// The version found.
        version: u16,
        /// The newest version known.
        current: u16,
    },
    /// The payload's `type` disagrees with the envelope's `kind`.
    #[error("envelope kind {kind:?} but payload type {payload_type:?}")]
    KindMismatch {
        /// The envelope's kind.
        kind: String,
        /// The payload's `type`.
        payload_type: String,
    },
    /// An older payload could not be brought to today's shape.
    #[error("cannot upcast {kind} from version {version}: {why}")]
    Upcast {
        /// The kind.
        kind: String,
        /// The version it was written in.
        version: u16,
        /// What is wrong.
        why: String,
    },
    /// The payload's fields are wrong.
    #[error("bad {kind} payload: {}", details.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Payload {
        /// The kind.
        kind: String,
        /// Every bad field.
        details: Vec<FieldError>,
    },
}

#[derive(Serialize)]
struct WireOut<'a, P> {
    id: EventId,
    kind: &'static str,
    schema_version: u16,
    occurred_at: DateTime<Utc>,
    actor: &'a Actor,
    region: &'a Option<RegionId>,
    correlation_id: EventId,
    causation_id: Option<EventId>,
    payload: &'a P,
}

#[derive(Deserialize)]
struct WireIn {
    id: EventId,
    kind: String,
    schema_version: u16,
    occurred_at: DateTime<Utc>,
    actor: Actor,
    #[serde(default)]
    region: Option<RegionId>,
    correlation_id: EventId,
    #[serde(default)]
    causation_id: Option<EventId>,
    payload: Map<String, Value>,
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

impl<P: Payload> Envelope<P> {
    /// A new event that starts a chain (a command): fresh id, its own correlation id.
    pub fn new(actor: Actor, region: Option<RegionId>, payload: P) -> Self {
        let id = EventId::new();
        Self {
            id,
            occurred_at: now(),
            actor,
            region,
            correlation_id: id,
            causation_id: None,
            payload,
        }
    }

    /// The `index`-th event caused by `cause` (the facts of a command): its id is derived from
    /// the cause's, so producing it again gives the same id and the bus stores it once.
    pub fn caused_by<Q>(
        cause: &Envelope<Q>,
        index: u32,
        actor: Actor,
        region: Option<RegionId>,
        payload: P,
    ) -> Self {
        Self {
            id: EventId::derived(cause.id, index),
            occurred_at: now(),
            actor,
            region,
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.id),
            payload,
        }
    }

    /// The JSON bytes for the bus. Fails, rather than write what could not be read back, when a
    /// coordinate is NaN or infinite.
    pub fn encode(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&WireOut {
            id: self.id,
            kind: self.payload.kind_name(),
            schema_version: self.payload.schema_version(),
            occurred_at: self.occurred_at,
            actor: &self.actor,
            region: &self.region,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload: &self.payload,
        })
    }

    /// Reads an envelope written by this or any earlier version.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: WireIn = serde_json::from_slice(bytes)?;
        let mut payload = wire.payload;
        match payload.remove("type") {
            None => {}
            Some(Value::String(t)) if t == wire.kind => {}
            Some(other) => {
                return Err(DecodeError::KindMismatch {
                    kind: wire.kind,
                    payload_type: other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned),
                });
            }
        }
        Ok(Self {
            id: wire.id,
            occurred_at: wire.occurred_at,
            actor: wire.actor,
            region: wire.region,
            correlation_id: wire.correlation_id,
            causation_id: wire.causation_id,
            payload: P::decode(&wire.kind, wire.schema_version, payload)?,
        })
    }
}

impl Envelope<Command> {
    /// The subject the command is published on; `None` before a region is chosen.
    pub fn subject(&self) -> Option<CommandSubject> {
        self.region
            .clone()
            .map(|region| CommandSubject::new(region, self.payload.kind()))
    }
}

impl Envelope<Fact> {
    /// The subject the fact is published on.
    pub fn subject(&self) -> FactSubject {
        FactSubject::new(self.region.clone(), self.payload.kind())
    }
}

impl Payload for Command {
    fn kind_name(&self) -> &'static str {
        self.kind().as_str()
    }

    fn schema_version(&self) -> u16 {
        self.kind().schema_version()
    }

    fn decode(
        kind: &str,
        version: u16,
        mut payload: Map<String, Value>,
    ) -> Result<Self, DecodeError> {
        let kind: CommandKind = kind
            .parse()
            .map_err(|_| DecodeError::UnknownKind(kind.to_owned()))?;
        upcast::command(kind, version, &mut payload)?;
        Command::from_fields(kind, payload).map_err(|details| DecodeError::Payload {
            kind: kind.as_str().to_owned(),
            details,
        })
    }
}

impl Payload for Fact {
    fn kind_name(&self) -> &'static str {
        self.kind().as_str()
    }

    fn schema_version(&self) -> u16 {
        self.kind().schema_version()
    }

    fn decode(
        kind: &str,
        version: u16,
        mut payload: Map<String, Value>,
    ) -> Result<Self, DecodeError> {
        let kind: FactKind = kind
            .parse()
            .map_err(|_| DecodeError::UnknownKind(kind.to_owned()))?;
        upcast::fact(kind, version, &mut payload)?;
        Fact::from_fields(kind, payload).map_err(|e| DecodeError::Payload {
            kind: kind.as_str().to_owned(),
            details: vec![FieldError::new("", "invalid", e.to_string())],
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::command::{Chat, Move};

    fn player() -> Actor {
        Actor::Player {
            id: PlayerId::new(),
        }
    }

    fn region() -> Option<RegionId> {
        Some(RegionId::new("north-1").expect("id"))
    }

    #[test]
    fn a_command_round_trips() {
        let env = Envelope::new(player(), region(), Command::Move(Move { x: 1.5, y: -2.0 }));
        let bytes = env.encode().expect("encode");
        let back = Envelope::<Command>::decode(&bytes).expect("decode");
        assert_eq!(back, env);
        let json: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["kind"], "move");
        assert_eq!(json["schema_version"], 2);
        assert_eq!(
            json["payload"],
            json!({"type": "move", "x": 1.5, "y": -2.0})
        );
        assert_eq!(
            env.subject().map(|s| s.to_string()).as_deref(),
            Some("cmd.normal.north-1.move")
        );
    }

    #[test]
    fn facts_of_a_command_have_derived_ids_and_its_correlation() {
        let cmd = Envelope::new(
            player(),
            region(),
            Command::Chat(Chat {
                text: "hi".into(),
                channel: None,
            }),
        );
        let fact = Fact::Rejected(crate::fact::Rejected {
            command: CommandKind::Chat,
            reason: crate::fact::RejectReason::NotSpawned,
            message: "spawn first".into(),
        });
        let a = Envelope::caused_by(&cmd, 0, cmd.actor.clone(), cmd.region.clone(), fact.clone());
        let b = Envelope::caused_by(&cmd, 0, cmd.actor.clone(), cmd.region.clone(), fact);
        assert_eq!(a.id, b.id);
        assert_eq!(a.correlation_id, cmd.id);
        assert_eq!(a.causation_id, Some(cmd.id));
        assert_eq!(a.subject().to_string(), "fact.north-1.rejected");
    }

    #[test]
    fn a_payload_that_could_not_be_read_back_is_not_written() {
        let env = Envelope::new(
            player(),
            region(),
            Command::Move(Move {
                x: f64::NAN,
                y: 0.0,
            }),
        );
        assert!(env.encode().is_err());
    }

    #[test]
    fn bad_envelopes_say_why() {
        let env = Envelope::new(player(), region(), Command::Move(Move { x: 1.0, y: 2.0 }));
        let good: Value = serde_json::from_slice(&env.encode().expect("encode")).expect("json");
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            edit(&mut v);
            Envelope::<Command>::decode(&serde_json::to_vec(&v).expect("bytes"))
                .expect_err("must fail")
        };
        let unknown = |v: &mut Value| {
            v["kind"] = json!("fly");
            v["payload"]["type"] = json!("fly");
        };
        assert!(matches!(with(&unknown), DecodeError::UnknownKind(_)));
        assert!(matches!(
            with(&|v| v["schema_version"] = json!(9)),
            DecodeError::UnsupportedVersion {
                version: 9,
                current: 2,
                ..
            }
        ));
        assert!(matches!(
            with(&|v| v["schema_version"] = json!(0)),
            DecodeError::UnsupportedVersion { .. }
        ));
        assert!(matches!(
            with(&|v| v["payload"]["type"] = json!("chat")),
            DecodeError::KindMismatch { .. }
        ));
        assert!(matches!(
            with(&|v| v["payload"]["x"] = json!("far")),
            DecodeError::Payload { .. }
        ));
        assert!(matches!(
            with(&|v| v["id"] = json!("nope")),
            DecodeError::Malformed(_)
        ));
        assert!(matches!(
            Envelope::<Command>::decode(b"\xff"),
            Err(DecodeError::Malformed(_))
        ));
    }
}
