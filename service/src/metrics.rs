//! The Prometheus text every binary's `/metrics` answers with.

use prometheus::{Encoder, Registry, TextEncoder};

/// Every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec fails only on metrics that break the format's rules (a name or label
    // the registry would have refused at registration); what was encoded is still served.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounter, Registry};

    use super::render;

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
}
