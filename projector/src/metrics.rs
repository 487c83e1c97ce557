//! The projector's Prometheus metrics, served at `/metrics`.
//!
//! Per consumer (`consumer` label: `projector` for the facts, `audit-commands` for the
//! commands): events waiting and the position acknowledged, so an operator sees a projector
//! falling behind or standing still; the batch size the pace allows; write times and failures.

use prometheus::{
    Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};
use service::metrics::Registrar;

/// Why the projector dead-letters an event, as the `reason` label says it (the full reason is
/// in the dead letter's headers and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The message is not an event the projector can read.
    Undecodable,
    /// Its data cannot be written as a document (tried once).
    Unwritable,
    /// MongoDB refused it on every attempt.
    Refused,
}

impl DeadLetterReason {
    /// Every reason, for the metrics' initial zeros.
    pub const ALL: [Self; 3] = [Self::Undecodable, Self::Unwritable, Self::Refused];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::Unwritable => "unwritable",
            Self::Refused => "refused",
        }
    }
}

/// Every metric the projector keeps.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Events applied, by kind (facts by their kind; commands as `command`).
    pub facts: IntCounterVec,
    /// Events per written batch, by consumer.
    pub batch_size: HistogramVec,
    /// The largest batch the pace allows now, by consumer.
    pub batch_limit: IntGaugeVec,
    /// Time of a batch's write (not counting its wait for its turn), by consumer.
    pub write_seconds: HistogramVec,
    /// Failed writes (each retried, or its events dead-lettered), by consumer.
    pub write_errors: IntCounterVec,
    /// Failed Redis bridge rounds.
    pub redis_errors: IntCounter,
    /// Events stored but not yet acknowledged by the projector (delivered or not), by consumer.
    pub lag: IntGaugeVec,
    /// The stream sequence up to which the consumer has acknowledged everything.
    pub position: IntGaugeVec,
    /// Events sent to the dead letters, by origin stream (`facts`, `commands`) and reason.
    pub dead_letters: IntCounterVec,
    /// Time from a fact's occurrence to its read models being written.
    pub fact_to_read_model_seconds: Histogram,
    /// Facts a running rebuild has folded.
    pub rebuild_done: IntGauge,
    /// Facts the running rebuild has to fold.
    pub rebuild_total: IntGauge,
    /// The running rebuild's rate, in facts per second.
    pub rebuild_rate: Gauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let r = Registrar::new("projector");
        let by_consumer = &["consumer"];
        let m = Self {
            facts: r.counter_vec(
                "events_applied_total",
                "Events applied, by kind.",
                &["kind"],
            ),
            batch_size: r.histogram_vec(
                "batch_size",
                "Events per written batch.",
                by_consumer,
                &[1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0],
            ),
            batch_limit: r.gauge_vec(
                "batch_limit",
                "The largest batch the pace allows now (it shrinks when writes are slow).",
                by_consumer,
            ),
            write_seconds: r.histogram_vec(
                "write_duration_seconds",
                "Time of a batch's write, not counting its wait for its turn.",
                by_consumer,
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
            ),
            write_errors: r.counter_vec(
                "write_errors_total",
                "Failed writes, by consumer.",
                by_consumer,
            ),
            redis_errors: r.counter("redis_errors_total", "Failed Redis bridge rounds."),
            lag: r.gauge_vec(
                "consumer_lag",
                "Events stored but not yet acknowledged by the projector, by consumer.",
                by_consumer,
            ),
            position: r.gauge_vec(
                "consumer_position",
                "Stream sequence up to which the consumer has acknowledged everything.",
                by_consumer,
            ),
            dead_letters: r.counter_vec(
                "dead_letters_total",
                "Events sent to DLQ, by origin stream and reason.",
                &["origin", "reason"],
            ),
            fact_to_read_model_seconds: r.histogram(
                "fact_to_read_model_seconds",
                "Time from a fact's occurrence to its read models being written.",
                &[
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            ),
            rebuild_done: r.gauge("rebuild_facts_done", "Facts a rebuild has folded."),
            rebuild_total: r.gauge("rebuild_facts_total", "Facts a rebuild has to fold."),
            rebuild_rate: r.float_gauge("rebuild_rate", "A rebuild's facts per second."),
            registry: r.into_registry(),
        };
        // Known label values start at zero, so a query finds them before the first event.
        for consumer in ["projector", "audit-commands"] {
            m.write_errors.with_label_values(&[consumer]);
        }
        for origin in ["facts", "commands"] {
            for reason in DeadLetterReason::ALL {
                m.dead_letters.with_label_values(&[origin, reason.as_str()]);
            }
        }
        m
    }

    /// Forgets what the live projection reported of its consumers and of a rebuild, once this
    /// process has given it up: a standing-by projector reports no lag or position, and no
    /// rebuild under way, so that its last figures neither raise an alert nor hide the live
    /// projector's.
    pub fn stopped_projecting(&self) {
        self.lag.reset();
        self.position.reset();
        self.batch_limit.reset();
        self.rebuild_done.set(0);
        self.rebuild_total.set(0);
        self.rebuild_rate.set(0.0);
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
