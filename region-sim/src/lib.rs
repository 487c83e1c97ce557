//! The region simulator: the authoritative world of the game, one shipyard ECS world per region,
//! sharded across simulator processes by leases in JetStream KV.
//!
//! - [`admission`]: what a command (and a stored snapshot or progress) must be before it is
//!   taken: the edge's bounds and the balance's, whoever sent it.
//! - [`balance`]: the game rules from `config/balance.toml`.
//! - [`spatial`]: the grid index that makes neighbour and area-of-interest queries cost what is
//!   nearby, not what is in the region.
//! - [`components`], [`ecs_fold`]: the world of a region in the ECS, and how facts change it.
//! - [`handlers`]: what each command does.
//! - [`systems`]: movement, border crossings, NPC behaviour, respawns.
//! - [`region`]: one region's tick, its memory of applied commands, its snapshots.
//! - [`runner`]: one region on the bus: recovery, then ticks.
//! - [`node`]: a simulator process: region leases (`nats_topology::lease`), balancing.
//! - [`placement`]: the balancing decision by player density, a pure function of the loads.
//! - [`settings`], [`metrics`]: configuration and Prometheus metrics.

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
