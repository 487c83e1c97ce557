//! The region simulator: the authoritative world of the game, one shipyard ECS world per region,
//! sharded across simulator processes by leases in JetStream KV.
//!
//! Built so far (the rest of the simulator lands on top of these):
//! - [`balance`]: the game rules from `config/balance.toml`.
//! - [`spatial`]: the grid index that makes neighbour and area-of-interest queries cost what is
//!   nearby, not what is in the region.

pub mod balance;
pub mod spatial;

pub use balance::Balance;
pub use spatial::Grid;
