//! The simulator's Prometheus metrics, served at `/metrics`.

use prometheus::{HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use schemas::{CommandKind, FactKind};
use service::metrics::Registrar;

use crate::region::COMMANDS;
use crate::systems;

/// Why the simulator dead-letters a command, as the `reason` label says it (the full reason,
/// which may quote the input, is in the dead letter's headers and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The message is not a command envelope.
    Undecodable,
    /// The command fails the bounds a command must pass on the bus.
    Inadmissible,
    /// Applying the command failed.
    HandlerFailed,
}

impl DeadLetterReason {
    /// Every reason, for the metrics' initial zeros.
    pub const ALL: [Self; 3] = [Self::Undecodable, Self::Inadmissible, Self::HandlerFailed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::Inadmissible => "inadmissible",
            Self::HandlerFailed => "handler_failed",
        }
    }
}

/// Every metric a simulator process keeps, in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Tick duration, by region.
    pub tick_seconds: HistogramVec,
    /// Time each part of a tick took, by region and system (`commands` for the commands'
    /// handlers, then each system by its name): which one a slow tick spends its time in.
    pub system_seconds: HistogramVec,
    /// Entities (avatars, NPCs, items), by region.
    pub entities: IntGaugeVec,
    /// Avatars, by region.
    pub players: IntGaugeVec,
    /// Commands handled, by region, kind and outcome (`applied`, `rejected`, `duplicate`,
    /// `dead_lettered`).
    pub commands: IntCounterVec,
    /// Commands rejected, by region and reason.
    pub rejections: IntCounterVec,
    /// Facts stored, by region and kind (deaths, pickups and chat lines are game KPIs).
    pub facts: IntCounterVec,
    /// The highest FACTS stream sequence this process has stored: with the projector's
    /// position, how far the read models are behind even while the projector cannot answer.
    pub facts_sequence: IntGauge,
    /// Time from a command's acceptance at the gateway to its facts being stored, by region.
    pub command_to_fact_seconds: HistogramVec,
    /// Ticks that took longer than the tick period, by region.
    pub tick_overruns: IntCounterVec,
    /// Commands sent to DLQ, by region, origin and reason.
    pub dead_letters: IntCounterVec,
    /// Commands waiting in each region's consumers, by region and priority.
    pub lag: IntGaugeVec,
    /// Leases acquired, released and lost, by region.
    pub lease_changes: IntCounterVec,
    /// Snapshots written, by region and result.
    pub snapshots: IntCounterVec,
    /// Failures to reach the bus (each retried), by region and what was being done.
    pub bus_errors: IntCounterVec,
    /// Regions this process runs.
    pub regions: IntGauge,
}

/// The bounds of a histogram of a tick or a part of one: from 100 µs to 250 ms.
const TICK_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let r = Registrar::new("sim");
        Self {
            tick_seconds: r.histogram_vec(
                "tick_duration_seconds",
                "Time a region's tick took.",
                &["region"],
                TICK_BUCKETS,
            ),
            system_seconds: r.histogram_vec(
                "system_duration_seconds",
                "Time a part of a region's tick took: the commands, or one system.",
                &["region", "system"],
                TICK_BUCKETS,
            ),
            entities: r.gauge_vec(
                "entities",
                "Avatars, NPCs and items in a region.",
                &["region"],
            ),
            players: r.gauge_vec("players", "Avatars in a region.", &["region"]),
            commands: r.counter_vec(
                "commands_total",
                "Commands handled, by region, kind and outcome.",
                &["region", "kind", "outcome"],
            ),
            rejections: r.counter_vec(
                "commands_rejected_total",
                "Commands rejected, by region and reason.",
                &["region", "reason"],
            ),
            facts: r.counter_vec(
                "facts_published_total",
                "Facts stored in FACTS, by region and kind.",
                &["region", "kind"],
            ),
            facts_sequence: r.gauge(
                "facts_stream_sequence",
                "How far the FACTS stream goes: read from JetStream every second (every writer's facts), or the last fact this process stored when that is further.",
            ),
            command_to_fact_seconds: r.histogram_vec(
                "command_to_fact_seconds",
                "Time from a command's acceptance to its facts being stored.",
                &["region"],
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            tick_overruns: r.counter_vec(
                "tick_overruns_total",
                "Ticks that took longer than the tick period.",
                &["region"],
            ),
            dead_letters: r.counter_vec(
                "dead_letters_total",
                "Commands sent to DLQ, by origin and reason.",
                &["region", "origin", "reason"],
            ),
            lag: r.gauge_vec(
                "consumer_lag",
                "Commands waiting for a region, by priority.",
                &["region", "priority"],
            ),
            lease_changes: r.counter_vec(
                "lease_changes_total",
                "Leases acquired, released and lost.",
                &["region", "change"],
            ),
            snapshots: r.counter_vec(
                "snapshots_total",
                "Snapshots written, by result.",
                &["region", "result"],
            ),
            bus_errors: r.counter_vec(
                "bus_errors_total",
                "Failed attempts to reach NATS (each retried), by operation.",
                &["region", "operation"],
            ),
            regions: r.gauge("regions_owned", "Regions this process runs."),
            registry: r.into_registry(),
        }
    }

    /// Makes every series of a region exist from its start, at zero, so dashboards and alerts
    /// see a region before its first death, pickup or overrun.
    pub fn region_started(&self, region: &str) {
        for kind in FactKind::ALL {
            self.facts.with_label_values(&[region, kind.as_str()]);
        }
        for kind in CommandKind::ALL {
            for outcome in ["applied", "rejected"] {
                self.commands
                    .with_label_values(&[region, kind.as_str(), outcome]);
            }
        }
        for reason in DeadLetterReason::ALL {
            self.dead_letters
                .with_label_values(&[region, "commands", reason.as_str()]);
        }
        self.tick_overruns.with_label_values(&[region]);
        let parts = std::iter::once(COMMANDS).chain(systems::TICK.iter().map(|s| s.name));
        for part in parts {
            self.system_seconds.with_label_values(&[region, part]);
        }
        self.command_to_fact_seconds.with_label_values(&[region]);
        self.players.with_label_values(&[region]).set(0);
    }

    /// The Prometheus text format of every metric.
    pub fn render(&self) -> String {
        service::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_and_rendered() {
        let m = Metrics::new();
        m.region_started("west");
        m.facts.with_label_values(&["west", "died"]).inc();
        m.tick_seconds.with_label_values(&["west"]).observe(0.001);
        m.regions.set(1);
        let text = m.render();
        for name in [
            "sim_facts_published_total",
            "sim_tick_duration_seconds",
            "sim_regions_owned",
            "sim_tick_overruns_total",
            "sim_dead_letters_total",
            "sim_command_to_fact_seconds",
            "sim_facts_stream_sequence",
            r#"sim_system_duration_seconds_count{region="west",system="commands"}"#,
            r#"sim_system_duration_seconds_count{region="west",system="npcs"}"#,
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
