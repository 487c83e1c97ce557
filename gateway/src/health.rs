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
    let nats = state.nats().connection_state() == async_nats::connection::State::Connected;
    let mut redis = state.redis();
    let redis_ok = matches!(
        tokio::time::timeout(
            PROBE_BUDGET,
            redis::cmd("PING").query_async::<String>(&mut redis)
        )
        .await,
        Ok(Ok(_))
    );
    let mongo_ok = matches!(
        tokio::time::timeout(PROBE_BUDGET, state.db().run_command(doc! {"ping": 1})).await,
        Ok(Ok(_))
    );
    let status = if nats && redis_ok && mongo_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    (
        status,
        Json(
            json!({"status": word(status == StatusCode::OK), "nats": word(nats), "redis": word(redis_ok), "mongodb": word(mongo_ok)}),
        ),
    )
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics().render(),
    )
}
