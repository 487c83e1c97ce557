//! The simulator's configuration: `config/region-sim.toml` (or `SIM_CONFIG`) with environment
//! variables over it, checked at start-up; every error names the key.

use std::net::SocketAddr;
use std::time::Duration;

use schemas::{RegionId, WorldConfig};
use serde::Deserialize;
pub use service::SettingsError;
use service::bad;

use crate::balance::Balance;

/// Everything a simulator process needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This process's name in leases and load reports (`SIM_NODE_ID`; a fresh one by default).
    pub node_id: String,
    /// Where health, metrics and the region views are served (`SIM_ADDR`).
    pub addr: SocketAddr,
    /// NATS server(s) (`NATS_URL`).
    pub nats_url: String,
    /// Who it is to NATS (`NATS_USER`, `NATS_PASSWORD`).
    pub nats_credentials: nats_topology::Credentials,
    /// The regions (`REGIONS_CONFIG`).
    pub world: WorldConfig,
    /// The game balance (`BALANCE_CONFIG`).
    pub balance: Balance,
    /// The time between two ticks.
    pub tick: Duration,
    /// Commands per tick per region at most.
    pub tick_budget: usize,
    /// The share of the budget kept for low priority.
    pub low_priority_share: f64,
    /// The time between two snapshots of a region.
    pub snapshot_every: Duration,
    /// How far past its border an entity goes before it is handed over.
    pub hysteresis: f64,
    /// Applied command ids remembered per region.
    pub applied_memory: usize,
    /// Regions this process runs at most (`SIM_MAX_REGIONS`; `None` for no limit).
    pub max_regions: Option<usize>,
    /// Regions this process may run (`SIM_REGIONS`, comma-separated; empty for any).
    pub allowed_regions: Vec<RegionId>,
    /// How often leases are renewed.
    pub lease_renew: Duration,
    /// How long an unacknowledged command waits before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries of a command before it is dead-lettered.
    pub max_deliver: i64,
    /// How often load is reported and balanced.
    pub balance_every: Duration,
    /// A slowest recent tick above this makes the process give a region away.
    pub overloaded_tick_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    addr: String,
    tick_hz: u32,
    tick_budget: usize,
    low_priority_share: f64,
    snapshot_secs: u64,
    hysteresis: f64,
    applied_memory: usize,
    max_regions: usize,
    #[serde(default)]
    regions: Vec<RegionId>,
    leases: Leases,
    commands: Commands,
    balancing: Balancing,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Leases {
    renew_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Commands {
    ack_wait_secs: u64,
    max_deliver: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Balancing {
    every_secs: u64,
    overloaded_tick_ms: f64,
}

impl Settings {
    /// Reads the process environment and the files it names.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(service::config::env_var)
    }

    /// Reads settings with `env` standing for the environment (tests pass a map).
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let file: File = service::config::parse(&env, "SIM_CONFIG", "region-sim.toml")?;
        let world = service::config::read_regions(&env, WorldConfig::from_toml)?;
        let balance =
            service::config::read_with(&env, "BALANCE_CONFIG", "balance.toml", Balance::from_toml)?;

        let addr = service::config::listen_addr(&env, "SIM_ADDR", file.addr)?;
        if file.tick_hz == 0 || file.tick_hz > 1000 {
            return Err(bad("tick_hz", "must be from 1 to 1000"));
        }
        if file.tick_budget == 0 {
            return Err(bad("tick_budget", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&file.low_priority_share) {
            return Err(bad("low_priority_share", "must be at least 0 and below 1"));
        }
        if file.snapshot_secs == 0 {
            return Err(bad("snapshot_secs", "must be at least 1"));
        }
        if !(file.hysteresis.is_finite() && file.hysteresis >= 0.0) {
            return Err(bad("hysteresis", "must be a number of at least 0"));
        }
        if file.applied_memory == 0 {
            return Err(bad("applied_memory", "must be at least 1"));
        }
        let max_regions = match env("SIM_MAX_REGIONS") {
            Some(text) => text
                .parse::<usize>()
                .map_err(|_| bad("SIM_MAX_REGIONS", format!("{text:?} is not a whole number")))?,
            None => file.max_regions,
        };
        let allowed_regions = match env("SIM_REGIONS") {
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<RegionId>()
                        .map_err(|e| bad("SIM_REGIONS", format!("{s:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => file.regions,
        };
        if let Some(unknown) = allowed_regions.iter().find(|r| world.region(r).is_none()) {
            return Err(bad(
                "SIM_REGIONS",
                format!("{unknown} is not a region of the region config"),
            ));
        }
        if file.leases.renew_ms == 0 {
            return Err(bad("leases.renew_ms", "must be at least 1"));
        }
        if file.commands.ack_wait_secs == 0 {
            return Err(bad("commands.ack_wait_secs", "must be at least 1"));
        }
        if file.commands.max_deliver < 1 {
            return Err(bad("commands.max_deliver", "must be at least 1"));
        }
        if file.balancing.every_secs == 0 {
            return Err(bad("balancing.every_secs", "must be at least 1"));
        }
        if !(file.balancing.overloaded_tick_ms.is_finite()
            && file.balancing.overloaded_tick_ms > 0.0)
        {
            return Err(bad("balancing.overloaded_tick_ms", "must be positive"));
        }
        let node_id = env("SIM_NODE_ID")
            .unwrap_or_else(|| format!("sim-{}", &schemas::EventId::new().to_string()[24..]));
        if node_id.is_empty()
            || !node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "SIM_NODE_ID",
                "must be letters, digits, '-' and '_' only",
            ));
        }
        Ok(Self {
            node_id,
            addr,
            nats_url: env("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            nats_credentials: nats_topology::Credentials::from_env(&env)?,
            world,
            balance,
            tick: Duration::from_secs(1) / file.tick_hz,
            tick_budget: file.tick_budget,
            low_priority_share: file.low_priority_share,
            snapshot_every: Duration::from_secs(file.snapshot_secs),
            hysteresis: file.hysteresis,
            applied_memory: file.applied_memory,
            max_regions: (max_regions > 0).then_some(max_regions),
            allowed_regions,
            lease_renew: Duration::from_millis(file.leases.renew_ms),
            ack_wait: Duration::from_secs(file.commands.ack_wait_secs),
            max_deliver: file.commands.max_deliver,
            balance_every: Duration::from_secs(file.balancing.every_secs),
            overloaded_tick_ms: file.balancing.overloaded_tick_ms,
        })
    }

    /// Whether this process may run `region`.
    pub fn may_run(&self, region: &RegionId) -> bool {
        self.allowed_regions.is_empty() || self.allowed_regions.contains(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load(service::config::env_of(pairs))
    }

    #[test]
    fn the_shipped_files_are_enough() {
        let s = with(&[]).expect("shipped config");
        assert_eq!(s.tick, Duration::from_millis(50));
        assert_eq!(s.max_regions, None);
        assert!(s.node_id.starts_with("sim-"));
        assert!(s.may_run(&"north-east".parse().expect("id")));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let s = with(&[
            ("SIM_NODE_ID", "sim-a"),
            ("SIM_MAX_REGIONS", "2"),
            ("SIM_REGIONS", "south-west, north-west"),
            ("SIM_ADDR", "127.0.0.1:9999"),
        ])
        .expect("valid");
        assert_eq!(s.node_id, "sim-a");
        assert_eq!(s.max_regions, Some(2));
        assert_eq!(s.addr.port(), 9999);
        assert!(s.may_run(&"north-west".parse().expect("id")));
        assert!(!s.may_run(&"north-east".parse().expect("id")));
    }

    #[test]
    fn errors_name_the_key() {
        for (pairs, key) in [
            (vec![("SIM_MAX_REGIONS", "many")], "SIM_MAX_REGIONS"),
            (vec![("SIM_REGIONS", "atlantis")], "SIM_REGIONS"),
            (vec![("SIM_REGIONS", "Bad Id")], "SIM_REGIONS"),
            (vec![("SIM_NODE_ID", "a.b")], "SIM_NODE_ID"),
            (vec![("SIM_ADDR", "nowhere")], "SIM_ADDR"),
            (vec![("SIM_CONFIG", "/does/not/exist")], "SIM_CONFIG"),
            (
                vec![("BALANCE_CONFIG", "/does/not/exist")],
                "BALANCE_CONFIG",
            ),
        ] {
            let err = with(&pairs).expect_err("invalid");
            assert_eq!(err.key, key, "{err}");
        }
    }
}
