//! The analysts' tool: the game's event log read straight from JetStream (the log is the source
//! of truth; MongoDB's audit trail is a projection of it), handed out as files that pandas,
//! DuckDB and Spark open without ceremony.
//!
//! - [`select`]: what to read: streams, time and sequence ranges, regions, kinds, a player, a
//!   correlation; region and kind filters become subject filters on the server.
//! - [`event`]: one event of the log as analysts see it: the envelope and where it was stored.
//! - [`log`]: reading the selection in stream order (both streams merged by when they were
//!   stored), up to the end of the log as of the start, or following it.
//! - [`sink`]: JSONL and CSV, and the output file written under a temporary name and renamed
//!   when complete; [`parquet`]: the Parquet writer.
//! - [`state`]: a player or a region at any moment, by the one fold in `schemas`.
//! - [`verify`]: proof that the audit trail in MongoDB is the log, whole and unaltered.
//! - [`stats`]: counts by kind, region or hour.
//! - [`error`]: every way a run can fail, each with one clear line.

pub mod error;
pub mod event;
pub mod log;
pub mod parquet;
pub mod select;
pub mod sink;
pub mod state;
pub mod stats;
pub mod verify;

pub use error::AuditError;
pub use event::Event;
pub use select::{LogStream, Selection};
