//! The JetStream topology of the game backend, as code.
//!
//! - [`topology`]: the streams (`COMMANDS`, `FACTS`, `DLQ`, `ADVISORIES`) and KV buckets
//!   (region leases, snapshots, node load) with their limits, for one node or a cluster.
//! - [`ensure()`]: creates what is missing and updates what drifted; safe to run from every service.
//! - [`publish`](mod@publish): the bounded JetStream context, and publishing with `Nats-Msg-Id` and awaited,
//!   pipelined acknowledgements.
//! - [`dlq`]: dead letters, their headers, and storing one.
//! - [`advisory`]: the listener that moves exhausted and terminated messages to `DLQ`.
//! - [`headers`]: the header names the project writes, and reading one back.
//! - [`jobs`]: projection rebuild jobs and their progress.
//! - [`lease`]: the documents of the region-lease and node-load buckets.
//! - [`outcome`]: how a waiting gateway hears of a command's outcome.
//! - [`avatars`]: the region each avatar is in, as the simulators decided it, for routing.
//! - [`cli`]: what the `nats-topology` binary reads from its command line and environment.
//!
//! The `nats-topology` binary runs `ensure` and the listener from the command line; the
//! `config/` folder beside this crate holds the `nats-server` configurations.

pub mod advisory;
pub mod avatars;
pub mod cli;
pub mod dlq;
pub mod ensure;
pub mod headers;
pub mod jobs;
pub mod lease;
pub mod outcome;
pub mod publish;
pub mod topology;

pub use advisory::run_dead_letter_listener;
pub use dlq::{DeadLetter, dead_letter};
pub use ensure::{Change, EnsureError, Report, ensure};
pub use publish::{Credentials, Outgoing, connect, context, publish, publish_all};
pub use topology::{Settings, Topology};
