//! The projector's Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the projector keeps.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events applied, by kind (facts by their kind; commands as `command`).
    pub facts: IntCounterVec,
    /// Facts per batch.
    pub batch_size: Histogram,
    /// Time of a batch's bulk write.
    pub write_seconds: Histogram,
    /// Failed bulk writes (each retried).
    pub write_errors: IntCounter,
    /// Failed Redis bridge rounds.
    pub redis_errors: IntCounter,
    /// Facts waiting for the live projection.
    pub lag: IntGauge,
    /// Events sent to the dead letters.
    pub dead_letters: IntCounter,
    /// Facts a running rebuild has folded.
    pub rebuild_done: IntGauge,
    /// Facts the running rebuild has to fold.
    pub rebuild_total: IntGauge,
    /// The running rebuild's rate, in facts per second.
    pub rebuild_rate: Gauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("projector".into()), None).unwrap_or_default();
        let m = Self {
            facts: must(IntCounterVec::new(
                Opts::new("events_applied_total", "Events applied, by kind."),
                &["kind"],
            )),
            batch_size: must(Histogram::with_opts(
                HistogramOpts::new("batch_size", "Facts per batch.")
                    .buckets(vec![1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
            )),
            write_seconds: must(Histogram::with_opts(
                HistogramOpts::new("write_duration_seconds", "Time of a batch's bulk write.")
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ]),
            )),
            write_errors: must(IntCounter::new("write_errors_total", "Failed bulk writes.")),
            redis_errors: must(IntCounter::new(
                "redis_errors_total",
                "Failed Redis bridge rounds.",
            )),
            lag: must(IntGauge::new(
                "consumer_lag",
                "Facts waiting for the live projection.",
            )),
            dead_letters: must(IntCounter::new("dead_letters_total", "Events sent to DLQ.")),
            rebuild_done: must(IntGauge::new(
                "rebuild_facts_done",
                "Facts a rebuild has folded.",
            )),
            rebuild_total: must(IntGauge::new(
                "rebuild_facts_total",
                "Facts a rebuild has to fold.",
            )),
            rebuild_rate: must(Gauge::new("rebuild_rate", "A rebuild's facts per second.")),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.facts.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.write_seconds.clone()),
            Box::new(m.write_errors.clone()),
            Box::new(m.redis_errors.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.dead_letters.clone()),
            Box::new(m.rebuild_done.clone()),
            Box::new(m.rebuild_total.clone()),
            Box::new(m.rebuild_rate.clone()),
        ];
        for c in collectors {
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
