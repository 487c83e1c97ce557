//! `/healthz` (the process answers), `/readyz` (NATS, Redis and MongoDB answer) and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mongodb::bson::doc;
use serde_json::json;

use crate::AppState;

const PROBE_BUDGET: Duration = Duration::from_millis(500);

/// `GET /healthz`: 200 while the process serves.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
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
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    (
        status,
        Json(
            json!({"status": word(status == StatusCode::OK), "nats": word(nats), "redis": word(redis), "mongodb": word(mongodb)}),
        ),
    )
}

/// Which dependencies answered.
struct Probes {
    nats: bool,
    redis: bool,
    mongodb: bool,
}

/// Asks NATS, Redis and MongoDB at once, each within the probe budget.
async fn probe(state: &AppState) -> Probes {
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

/// `GET /metrics`: Prometheus text. Each scrape probes the dependencies first, so
/// `gateway_dependency_up` says what the gateway can reach now, not at its last request.
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
