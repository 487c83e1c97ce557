//! Every route of the REST contract, and the layers every request passes: request ids and
//! metrics, the body limit, the per-IP rate limit.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{ApiError, Code};
use crate::ratelimit::Rule;
use crate::request::ClientIp;
use crate::state::AppState;
use crate::{accounts, admin, commands, health, openapi, players, regions, request, stream};

/// Every route, with the layers every request passes.
pub fn router(state: AppState) -> Router {
    let limit = state.settings().body_limit_bytes;
    Router::new()
        .route("/v1/auth/register", post(accounts::register))
        .route("/v1/auth/login", post(accounts::login))
        .route("/v1/auth/logout", post(accounts::logout))
        .route("/v1/players/me", get(players::me))
        .route("/v1/commands", post(commands::submit))
        .route("/v1/stream", get(stream::stream))
        .route("/v1/regions", get(regions::list))
        .route("/v1/regions/{id}", get(regions::one))
        .route("/v1/regions/{id}/entities", get(regions::entities))
        .route("/admin/dlq", get(admin::list_dead_letters))
        .route("/admin/dlq/redrive", post(admin::redrive))
        .route("/admin/regions", get(admin::regions))
        .route("/admin/projections/rebuild", post(admin::start_rebuild))
        .route(
            "/admin/projections/rebuild/{job_id}",
            get(admin::rebuild_progress),
        )
        .route(
            "/admin/players/{id}/role",
            axum::routing::put(admin::set_role),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { ApiError::of(Code::NotFound) })
        .route_layer(middleware::from_fn(request::remember_route))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), limit_per_ip))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request::around,
        ))
        .with_state(state)
}

/// The per-IP limit: stricter on register and login; operations routes are not limited.
async fn limit_per_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let rule = match path {
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => return next.run(request).await,
        "/v1/auth/register" | "/v1/auth/login" => Rule::AuthPerIp,
        // Commands count against the per-IP limit together with the per-player one.
        "/v1/commands" => return next.run(request).await,
        _ => Rule::ApiPerIp,
    };
    let ip = request
        .extensions()
        .get::<ClientIp>()
        .map(|c| c.holder().to_string())
        .unwrap_or_default();
    match state.limit(rule, &ip).await {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
