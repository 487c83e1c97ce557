//! The gateway's Prometheus metrics, served at `/metrics`.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use service::metrics::Registrar;

/// The dependencies the gateway probes, as they are named in `dependency` labels.
pub const DEPENDENCIES: [&str; 3] = ["nats", "redis", "mongodb"];

/// Every metric the gateway keeps, in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    commands: IntCounterVec,
    rate_limited: IntCounterVec,
    auth_rejections: IntCounterVec,
    dependency_errors: IntCounterVec,
    limiter_fallback: IntGauge,
    sessions_started: IntCounter,
    dependency_up: IntGaugeVec,
    passwords_busy: IntCounter,
    avatar_lookups: IntCounterVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let made = Registrar::new("gateway");
        let metrics = Self {
            requests: made.counter_vec(
                "http_requests_total",
                "Requests answered, by route, method and status.",
                &["route", "method", "status"],
            ),
            latency: made.histogram_vec(
                "http_request_duration_seconds",
                "Time to answer, by route and method.",
                &["route", "method"],
                &[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            ),
            commands: made.counter_vec(
                "commands_published_total",
                "Commands stored in JetStream, by kind and priority.",
                &["kind", "priority"],
            ),
            rate_limited: made.counter_vec(
                "rate_limited_total",
                "Requests refused by a rate limit, by rule.",
                &["rule"],
            ),
            auth_rejections: made.counter_vec(
                "auth_rejections_total",
                "Requests refused by authentication or authorisation, by reason.",
                &["reason"],
            ),
            dependency_errors: made.counter_vec(
                "dependency_errors_total",
                "Failed calls to NATS, Redis or MongoDB.",
                &["dependency"],
            ),
            limiter_fallback: made.gauge(
                "rate_limiter_fallback",
                "1 while Redis is unreachable and each gateway limits on its own.",
            ),
            sessions_started: made.counter(
                "sessions_started_total",
                "Logins that began a session (a game KPI).",
            ),
            dependency_up: made.gauge_vec(
                "dependency_up",
                "1 when the dependency answered the probe made at this scrape, 0 when not.",
                &["dependency"],
            ),
            passwords_busy: made.counter(
                "password_queue_full_total",
                "Registrations and logins answered 503 because every password worker was busy \
                 and the queue was full.",
            ),
            avatar_lookups: made.counter_vec(
                "avatar_lookups_total",
                "Lookups of where players' avatars are, by what answered them: the gateway's copy \
                 of avatar_regions (`copy`), or the bucket itself when the copy had not caught up \
                 (`bucket`).",
                &["answered_by"],
            ),
            registry: made.into_registry(),
        };
        // Known label values start at zero, so a query finds them before the first event.
        for dependency in DEPENDENCIES {
            metrics.dependency_errors.with_label_values(&[dependency]);
        }
        for answered_by in ["copy", "bucket"] {
            metrics.avatar_lookups.with_label_values(&[answered_by]);
        }
        metrics
    }

    /// Counts and times one answered request; `method` as [`method_label`] names it.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(took.as_secs_f64());
    }

    /// Counts a stored command.
    pub fn command_published(&self, kind: &str, priority: &str) {
        self.commands.with_label_values(&[kind, priority]).inc();
    }

    /// Counts a request refused by a rate limit.
    pub fn rate_limited(&self, rule: &str) {
        self.rate_limited.with_label_values(&[rule]).inc();
    }

    /// Counts a request refused by authentication or authorisation.
    pub fn auth_rejected(&self, reason: &str) {
        self.auth_rejections.with_label_values(&[reason]).inc();
    }

    /// Counts a failed call to a dependency.
    pub fn dependency_error(&self, dependency: &str) {
        self.dependency_errors
            .with_label_values(&[dependency])
            .inc();
    }

    /// Says whether the in-process fallback limiter is in use.
    pub fn set_limiter_fallback(&self, on: bool) {
        self.limiter_fallback.set(i64::from(on));
    }

    /// Counts a login that began a session.
    pub fn session_started(&self) {
        self.sessions_started.inc();
    }

    /// The count of registrations and logins refused because the password queue was full.
    pub fn passwords_busy(&self) -> IntCounter {
        self.passwords_busy.clone()
    }

    /// The count of avatar lookups, by what answered them (`copy` or `bucket`).
    pub fn avatar_lookups(&self) -> IntCounterVec {
        self.avatar_lookups.clone()
    }

    /// Records whether a dependency answered its probe.
    pub fn set_dependency_up(&self, dependency: &str, up: bool) {
        self.dependency_up
            .with_label_values(&[dependency])
            .set(i64::from(up));
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

/// A request's method as a label: the methods of HTTP itself by name, any other `other`. A
/// client may send any token as a method, and each new label value would be a series kept for
/// the process's life.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}
