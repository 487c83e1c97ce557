//! The load driver of the whole game: virtual players through the real stack (`ops/bench`
//! starts it as `ops/up` does, in release), the ceilings of the same servers in the same run,
//! and the report.
//!
//! - [`plan`]: the mix file (`config/bench.toml`): what players do, how fast, the ramp;
//! - [`players`]: the players, each on its own keep-alive connection ([`http`]) and live stream;
//! - [`observe`]: the log as `FACTS` stores it and the projector's position in Redis;
//! - [`ceilings`]: publishers awaiting acks, a bare ordered consumer, raw bulk writes;
//! - [`run`]: one run, from the ramp to the ceilings, joined into [`report::Results`];
//! - [`stats`], [`report`], [`plot`]: percentiles per second, `report.md`, `summary.json` and
//!   the PNG plots;
//! - [`readme`]: the README's "The whole game under load" subsection from a run.

pub mod ceilings;
pub mod http;
pub mod observe;
pub mod plan;
pub mod players;
pub mod plot;
pub mod readme;
pub mod report;
pub mod run;
pub mod stats;
