//! The simulator's HTTP side, for operators: `/healthz`, `/metrics`, `/regions` (what this
//! process runs) and `/regions/{id}` (a region's entities and items as they are now).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use schemas::RegionId;
use serde_json::json;

use crate::node::View;

/// The router over a process's view.
pub fn router(view: View) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/regions", get(regions))
        .route("/regions/{id}", get(region))
        .with_state(view)
}

async fn metrics(State(view): State<View>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        view.metrics(),
    )
}

async fn regions(State(view): State<View>) -> impl IntoResponse {
    Json(json!({"node": view.node(), "regions": view.regions().await}))
}

async fn region(State(view): State<View>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<RegionId>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "invalid_region", "message": format!("{id:?} is not a region id")}})),
        )
            .into_response();
    };
    match view.state(&id).await {
        Some(state) => Json(state).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_here", "message": format!("this process does not run {id}")}})),
        )
            .into_response(),
    }
}
