//! The shared language of the game backend: what the gateway, the region simulators, the
//! projectors and the analysts' tools say to each other.
//!
//! - [`ids`]: typed ids (events, players, entities, regions), parsed once.
//! - [`geometry`]: positions and bounds in world coordinates.
//! - [`command`]: what clients and admins ask for, parsed and validated with a detail per bad field.
//! - [`fact`]: what happened; the event log.
//! - [`fold`]: how facts change an entity's state, shared by every reader of the log.
//! - [`envelope`]: the one envelope around commands and facts, and its JSON on the bus.
//! - [`upcast`]: how old payload versions keep decoding.
//! - [`read_model`]: the documents of the read models the gateway serves.
//! - [`subject`]: NATS subjects, built and parsed in one place.
//! - [`validation`]: field errors and the context the domain rules need.
//! - [`json_schema`]: JSON Schema documents for client developers.
//! - [`world`]: the region config shared by the gateway and the simulators.

pub mod command;
pub mod envelope;
pub mod fact;
pub mod fold;
pub mod geometry;
pub mod ids;
pub mod json_schema;
pub mod read_model;
pub mod subject;
pub mod upcast;
pub mod validation;
pub mod world;

pub use command::{Command, CommandKind, Origin};
pub use envelope::{Actor, DecodeError, Envelope, Payload};
pub use fact::{Fact, FactKind, RejectReason};
pub use fold::{EntityKind, EntityState};
pub use geometry::{Bounds, Position};
pub use ids::{EntityId, EventId, PlayerId, RegionId};
pub use subject::{CommandSubject, FactSubject, Priority, Scope};
pub use validation::{FieldError, Invalid, ValidationContext};
pub use world::{RegionConfig, WorldConfig};
