//! The region simulator: the authoritative world of the game, one shipyard ECS world per region,
//! sharded across simulator processes by leases in JetStream KV. [`Application`] is the process
//! (`main.rs` only reads the settings and waits for a signal); [`Region`] is one region's world
//! and tick, with no bus, for tests and benchmarks.
//!
//! The process:
//! - [`application`]: building the process and running it until stopped: its node, then its
//!   HTTP side drained within a deadline.
//! - [`node`]: the regions a process runs: leases (`nats_topology::lease`), load reports,
//!   balancing.
//! - [`placement`]: the balancing decision by player density, a pure function of the loads.
//! - [`runner`]: one region on the bus: recovery, the tick, the outbox of facts and follow-up
//!   commands, players' progress and whereabouts, outcomes, snapshots, load; and, with the
//!   `failpoints` feature only, where the crash tests make a process die.
//! - [`http`]: the operators' side: `/healthz`, `/metrics`, `/regions`, `/regions/{id}`.
//! - [`settings`], [`metrics`]: configuration and Prometheus metrics.
//!
//! A region's world and rules:
//! - [`region`]: one region's tick, its memory of applied commands, its snapshots, the
//!   follow-up commands its facts call for.
//! - [`admission`]: what a command (and a stored snapshot or progress) must be before it is
//!   taken: the edge's bounds and the balance's, whoever sent it.
//! - [`components`], [`ecs_fold`]: the world of a region in the ECS, and how facts change it.
//! - [`handlers`]: what each command does, one file per kind of rule (presence, movement,
//!   chat, items).
//! - [`combat`]: every combat rule: attacks here and over the border, blows from across it,
//!   rewards, cooldowns, damage, the strike shared by players and NPCs.
//! - `decide`: the world and the facts decided so far, that handlers, combat and systems emit
//!   into.
//! - [`systems`]: one ECS system per file, named and timed: movement, border crossings, NPCs,
//!   respawns; and the seed of a region that has never run.
//! - [`balance`]: the game rules from `config/balance.toml`.
//! - [`spatial`]: the grid index that makes neighbour and area-of-interest queries cost what is
//!   nearby, not what is in the region.

pub mod admission;
pub mod application;
pub mod balance;
pub mod combat;
pub mod components;
mod decide;
pub mod ecs_fold;
pub mod handlers;
pub mod http;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod region;
pub mod runner;
pub mod settings;
pub mod spatial;
pub mod systems;

pub use application::Application;
pub use balance::Balance;
pub use region::{Region, RegionSettings, Snapshot, TickOutput};
pub use settings::Settings;
pub use spatial::Grid;
