//! `/healthz` (the process answers), `/readyz` (NATS, Redis and MongoDB answer) and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mongodb::bson::doc;
use serde::Serialize;

use crate::AppState;

const PROBE_BUDGET: Duration = Duration::from_millis(500);

/// Whether something answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// It answers.
    Ok,
    /// It does not.
    Unreachable,
}

impl Probe {
    fn of(ok: bool) -> Self {
        if ok { Probe::Ok } else { Probe::Unreachable }
    }
}

/// The answer of `/healthz`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Liveness {
    /// Always `ok`: the process answers.
    pub status: Probe,
}

/// The answer of `/readyz`: the whole, and each dependency.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Readiness {
    /// `ok` when every dependency answers.
    pub status: Probe,
    /// NATS.
    pub nats: Probe,
    /// Redis.
    pub redis: Probe,
    /// MongoDB.
    pub mongodb: Probe,
}

/// `GET /healthz`: 200 while the process serves.
pub async fn healthz() -> impl IntoResponse {
    Json(Liveness { status: Probe::Ok })
}

/// `GET /readyz`: 200 when every dependency answers, 503 naming those that do not.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let Probes {
        nats,
        redis,
        mongodb,
    } = probe(&state).await;
    let status = if nats && redis && mongodb {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: Probe::of(status == StatusCode::OK),
            nats: Probe::of(nats),
            redis: Probe::of(redis),
            mongodb: Probe::of(mongodb),
        }),
    )
}

/// Which dependencies answered.
#[derive(Debug, Clone, Copy)]
struct Probes {
    nats: bool,
    redis: bool,
    mongodb: bool,
}

/// How long a probe's answer stands: `/readyz` and `/metrics` take no rate limit, so a flood of
/// them asks Redis and MongoDB once per this period at most, not once per request.
pub const PROBE_FRESH: Duration = Duration::from_secs(1);

/// The last probe and when it ended. Requests that come while one probe runs wait for its
/// answer instead of asking again.
#[derive(Debug, Default)]
pub struct LastProbe(tokio::sync::Mutex<Option<(tokio::time::Instant, Probes)>>);

/// What the dependencies answered within [`PROBE_FRESH`], asking them again when older.
async fn probe(state: &AppState) -> Probes {
    let mut last = state.probes().0.lock().await;
    if let Some((at, probes)) = *last
        && at.elapsed() < PROBE_FRESH
    {
        return probes;
    }
    let probes = ask(state).await;
    *last = Some((tokio::time::Instant::now(), probes));
    probes
}

/// Asks NATS, Redis and MongoDB at once, each within the probe budget.
async fn ask(state: &AppState) -> Probes {
    let nats = state.nats().connection_state() == async_nats::connection::State::Connected;
    let mut redis = state.redis();
    let ping = redis::cmd("PING");
    let (redis, mongodb) = tokio::join!(
        tokio::time::timeout(PROBE_BUDGET, ping.query_async::<String>(&mut redis)),
        tokio::time::timeout(PROBE_BUDGET, state.db().run_command(doc! {"ping": 1})),
    );
    Probes {
        nats,
        redis: matches!(redis, Ok(Ok(_))),
        mongodb: matches!(mongodb, Ok(Ok(_))),
    }
}

/// `GET /metrics`: Prometheus text. Each scrape probes the dependencies first (or takes a probe
/// at most [`PROBE_FRESH`] old), so `gateway_dependency_up` says what the gateway can reach now,
/// not at its last request.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let probes = probe(&state).await;
    for (dependency, up) in [
        ("nats", probes.nats),
        ("redis", probes.redis),
        ("mongodb", probes.mongodb),
    ] {
        state.metrics().set_dependency_up(dependency, up);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics().render(),
    )
}
