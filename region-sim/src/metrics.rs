//! The simulator's Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric a simulator process keeps, in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Tick duration, by region.
    pub tick_seconds: HistogramVec,
    /// Entities (avatars, NPCs, items), by region.
    pub entities: IntGaugeVec,
    /// Avatars, by region.
    pub players: IntGaugeVec,
    /// Commands handled, by region, kind and outcome (`applied`, `rejected`, `duplicate`,
    /// `dead_lettered`).
    pub commands: IntCounterVec,
    /// Commands rejected, by region and reason.
    pub rejections: IntCounterVec,
    /// Facts stored, by region.
    pub facts: IntCounterVec,
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

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric())
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric())
}

/// Metric names and labels are constants checked by the tests: building one cannot fail.
fn unreachable_metric<T>() -> T {
    panic!("a metric definition is invalid")
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("sim".into()), None).unwrap_or_default();
        let tick_seconds = HistogramVec::new(
            HistogramOpts::new("tick_duration_seconds", "Time a region's tick took.").buckets(
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                ],
            ),
            &["region"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let m = Self {
            tick_seconds,
            entities: gauge(
                "entities",
                "Avatars, NPCs and items in a region.",
                &["region"],
            ),
            players: gauge("players", "Avatars in a region.", &["region"]),
            commands: counter(
                "commands_total",
                "Commands handled, by region, kind and outcome.",
                &["region", "kind", "outcome"],
            ),
            rejections: counter(
                "commands_rejected_total",
                "Commands rejected, by region and reason.",
                &["region", "reason"],
            ),
            facts: counter(
                "facts_published_total",
                "Facts stored in FACTS.",
                &["region"],
            ),
            lag: gauge(
                "consumer_lag",
                "Commands waiting for a region, by priority.",
                &["region", "priority"],
            ),
            lease_changes: counter(
                "lease_changes_total",
                "Leases acquired, released and lost.",
                &["region", "change"],
            ),
            snapshots: counter(
                "snapshots_total",
                "Snapshots written, by result.",
                &["region", "result"],
            ),
            bus_errors: counter(
                "bus_errors_total",
                "Failed attempts to reach NATS (each retried), by operation.",
                &["region", "operation"],
            ),
            regions: IntGauge::new("regions_owned", "Regions this process runs.")
                .unwrap_or_else(|_| unreachable_metric()),
            registry,
        };
        for c in [
            Box::new(m.tick_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.entities.clone()),
            Box::new(m.players.clone()),
            Box::new(m.commands.clone()),
            Box::new(m.rejections.clone()),
            Box::new(m.facts.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.lease_changes.clone()),
            Box::new(m.snapshots.clone()),
            Box::new(m.bus_errors.clone()),
            Box::new(m.regions.clone()),
        ] {
            let _ = m.registry.register(c);
        }
        m
    }

    /// The Prometheus text format of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
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
        m.facts.with_label_values(&["west"]).inc();
        m.tick_seconds.with_label_values(&["west"]).observe(0.001);
        m.regions.set(1);
        let text = m.render();
        for name in [
            "sim_facts_published_total",
            "sim_tick_duration_seconds",
            "sim_regions_owned",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
