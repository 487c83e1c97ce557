//! The Prometheus text every binary's `/metrics` answers with.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec fails only on metrics that break the format's rules (a name or label
    // the registry would have refused at registration); what was encoded is still served.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A program's metrics, every name under its prefix. Each metric made here is registered as it is
/// made, so no list of them has to be kept in step with the struct that holds them.
///
/// Metric names, help texts and labels are constants of the program: one that Prometheus
/// refuses is a bug, and making it panics.
#[derive(Debug)]
pub struct Registrar {
    registry: Registry,
}

impl Registrar {
    /// Metrics named `{prefix}_...`.
    pub fn new(prefix: &str) -> Self {
        Self {
            registry: Registry::new_custom(Some(prefix.into()), None).unwrap_or_default(),
        }
    }

    /// The registry of every metric made so far, for [`render`].
    pub fn into_registry(self) -> Registry {
        self.registry
    }

    /// A counter.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    /// A counter per value of `labels`.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    /// A whole-number gauge.
    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    /// A gauge of a fractional value (a rate).
    pub fn float_gauge(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help))
    }

    /// A whole-number gauge per value of `labels`.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// A histogram with these bucket bounds.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        ))
    }

    /// A histogram with these bucket bounds per value of `labels`.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ))
    }

    fn add<C: Collector + Clone + 'static>(&self, made: prometheus::Result<C>) -> C {
        let metric = made.unwrap_or_else(|e| panic!("invalid metric definition: {e}"));
        // Only a second metric of the same name is refused here, and that one is still counted
        // where it is used; the first is what `/metrics` shows.
        let _ = self.registry.register(Box::new(metric.clone()));
        metric
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounter, Registry};

    use super::{Registrar, render};

    #[test]
    fn every_registered_metric_is_in_the_text() {
        let registry = Registry::new_custom(Some("game".into()), None).expect("registry");
        let counter = IntCounter::new("things_total", "Things counted.").expect("counter");
        registry
            .register(Box::new(counter.clone()))
            .expect("registered");
        counter.inc_by(3);
        let text = render(&registry);
        assert!(
            text.contains("# HELP game_things_total Things counted."),
            "{text}"
        );
        assert!(text.contains("game_things_total 3"), "{text}");
    }

    #[test]
    fn a_metric_made_by_the_registrar_is_registered_under_its_prefix() {
        let metrics = Registrar::new("game");
        let lag = metrics.gauge_vec("consumer_lag", "Events waiting.", &["consumer"]);
        lag.with_label_values(&["projector"]).set(7);
        let text = render(&metrics.into_registry());
        assert!(
            text.contains(r#"game_consumer_lag{consumer="projector"} 7"#),
            "{text}"
        );
    }
}
