//! The gateway: the game's REST front door. It authenticates (JWT and a Redis session),
//! authorises (roles, the admin API key), rate-limits (per IP and per player, shared through
//! Redis), validates every command with the shared schemas, and publishes it to JetStream,
//! answering once JetStream has stored it.
//!
//! - [`settings`]: typed configuration, file and environment.
//! - [`connection`]: the listener; hyper's own answers to requests it cannot parse, in the error
//!   shape.
//! - [`request`]: request ids, client IPs, error bodies, request metrics.
//! - [`error`]: the error codes of the REST contract and their statuses.
//! - [`body`]: JSON bodies at the edge (415, 413, 400).
//! - [`auth`]: passwords, tokens, sessions, roles, API keys.
//! - [`accounts`]: register, log in, log out, the bootstrap admin.
//! - [`admin`]: dead letters and their redrive, region assignments, roles, rebuild jobs.
//! - [`commands`]: `POST /v1/commands`, idempotency keys, routing to a region.
//! - [`outcomes`]: waiting for a command's outcome, one subscription per gateway.
//! - [`players`]: the players' read model.
//! - [`redis_asks`]: the Redis round trip a request begins with: many requests, one script call.
//! - [`ratelimit`]: GCRA in Redis, with an in-process fallback.
//! - [`regions`]: regions, their owners and population, entities near a point.
//! - [`bus`]: publishing, with a circuit breaker.
//! - [`stream`]: the live stream of facts over a WebSocket, with a bounded queue per client,
//!   ending with its session.
//! - [`open_streams`]: the streams open on a gateway: caps per player and address, and a
//!   periodic check of their sessions.
//! - [`health`]: liveness, readiness, metrics.
//! - [`metrics`]: the Prometheus registry.
//! - [`openapi`]: the OpenAPI document of the contract, with every rule the gateway checks and
//!   every status it answers, at `/openapi.json`.
//!
//! [`Application::build`] connects to everything and binds; [`Application::run_until_stopped`]
//! serves until the shutdown future completes, then drains in-flight requests.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod body;
pub mod bus;
pub mod commands;
pub mod connection;
pub mod consistency;
pub mod error;
pub mod health;
pub mod metrics;
pub mod open_streams;
pub mod openapi;
pub mod outcomes;
pub mod players;
pub mod ratelimit;
pub mod redis_asks;
pub mod regions;
pub mod request;
pub mod settings;
pub mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use schemas::{PlayerId, ValidationContext};

pub use error::{ApiError, Code};
pub use settings::Settings;

use crate::auth::{Sessions, Tokens};
use crate::bus::Breaker;
use crate::metrics::Metrics;
use crate::ratelimit::{Limiter, Rule};
use crate::request::ClientIp;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// NATS did not answer.
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
    /// The topology could not be ensured.
    #[error("NATS topology: {0}")]
    Topology(#[from] nats_topology::EnsureError),
    /// A key-value bucket of the topology could not be opened.
    #[error("NATS bucket {name}: {source}")]
    Bucket {
        /// The bucket.
        name: &'static str,
        /// Why.
        source: async_nats::jetstream::context::KeyValueError,
    },
    /// Redis did not answer.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The outcome inbox could not be subscribed to.
    #[error("NATS subscription: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// MongoDB did not answer.
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The address could not be bound.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The bootstrap admin could not be created.
    #[error("bootstrap admin: {0}")]
    Bootstrap(ApiError),
}

struct Inner {
    settings: Settings,
    validation: ValidationContext,
    tokens: Tokens,
    sessions: Sessions,
    limiter: Limiter,
    metrics: Metrics,
    breaker: Breaker,
    outcomes: Arc<outcomes::Outcomes>,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    leases: async_nats::jetstream::kv::Store,
    node_load: async_nats::jetstream::kv::Store,
    rebuild_jobs: async_nats::jetstream::kv::Store,
    avatars: async_nats::jetstream::kv::Store,
    redis: service::redis::Redis,
    gate: redis_asks::Gate,
    hub: Arc<stream::Hub>,
    open_streams: Arc<open_streams::OpenStreams>,
    db: mongodb::Database,
    openapi: bytes::Bytes,
    stopping: service::CancellationToken,
}

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("addr", &self.0.settings.addr)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The configuration.
    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
    /// What command validation needs to know of the world.
    pub fn validation(&self) -> &ValidationContext {
        &self.0.validation
    }
    /// Token signing and checking.
    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }
    /// Sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.0.sessions
    }
    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    /// The publish circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.0.breaker
    }
    /// The outcome waiters.
    pub fn outcomes(&self) -> &Arc<outcomes::Outcomes> {
        &self.0.outcomes
    }
    /// The NATS client.
    pub fn nats(&self) -> &async_nats::Client {
        &self.0.nats
    }
    /// The JetStream context.
    pub fn js(&self) -> &async_nats::jetstream::Context {
        &self.0.js
    }
    /// The region lease bucket.
    pub fn leases(&self) -> &async_nats::jetstream::kv::Store {
        &self.0.leases
    }
    /// The node load bucket.
    pub fn node_load(&self) -> &async_nats::jetstream::kv::Store {
        &self.0.node_load
    }
    /// The rebuild job bucket.
    pub fn rebuild_jobs(&self) -> &async_nats::jetstream::kv::Store {
        &self.0.rebuild_jobs
    }
    /// The `avatar_regions` bucket: where the simulators put each player's avatar.
    pub fn avatars(&self) -> &async_nats::jetstream::kv::Store {
        &self.0.avatars
    }
    /// A Redis connection (a cheap clone of a shared, reconnecting one).
    pub fn redis(&self) -> service::redis::Redis {
        self.0.redis.clone()
    }
    /// The shared Redis round trip requests begin with.
    pub fn gate(&self) -> &redis_asks::Gate {
        &self.0.gate
    }
    /// The Redis subscription every live stream shares.
    pub fn hub(&self) -> &Arc<stream::Hub> {
        &self.0.hub
    }
    /// The live streams open on this gateway.
    pub fn open_streams(&self) -> &Arc<open_streams::OpenStreams> {
        &self.0.open_streams
    }
    /// The MongoDB database.
    pub fn db(&self) -> &mongodb::Database {
        &self.0.db
    }
    /// The OpenAPI document of this gateway, as JSON.
    pub fn openapi(&self) -> &bytes::Bytes {
        &self.0.openapi
    }
    /// Cancelled when the gateway begins to stop: the live streams end with a close frame.
    pub fn stopping(&self) -> &service::CancellationToken {
        &self.0.stopping
    }
    /// Whether rate limits are decided locally because Redis is unreachable.
    pub fn limiter_falling_back(&self) -> bool {
        self.0.limiter.is_falling_back()
    }

    /// Counts a request against a rate limit; 429 with `Retry-After` when it is over.
    pub async fn limit(&self, rule: Rule, key: &str) -> Result<(), ApiError> {
        self.limit_all(&[(rule, key)]).await
    }

    /// Gives back a request counted against `rule` for `key` (see [`ratelimit::Limiter::refund`]);
    /// a failure is only logged: the request stays counted.
    pub async fn refund(&self, rule: Rule, key: &str) {
        if let Err(e) = self.0.limiter.refund(&mut self.redis(), rule, key).await {
            self.metrics().dependency_error("redis");
            tracing::warn!(error = %e, rule = rule.as_str(), "cannot give back a counted request");
        }
    }

    /// Counts a request against several rate limits in one round trip; 429 with `Retry-After`
    /// when any is over.
    pub async fn limit_all(&self, limits: &[(Rule, &str)]) -> Result<(), ApiError> {
        self.0.limiter.check_all(limits).await.map_err(rate_limited)
    }

    /// What a player's request asks first, in one round trip: is the session live and the
    /// player's (and with which role), is the request within `before_session` (counted whatever
    /// the session's state, so a flood of bad tokens is limited) and `limits` (counted only for
    /// a live session of the player), and the player's cached view. Without an answer from
    /// Redis, the session is judged by the memory of confirmed ones, the limits locally, and the
    /// view is `Err` (to be read from MongoDB).
    pub async fn admit(
        &self,
        sid: &str,
        player: PlayerId,
        before_session: &[(Rule, &str)],
        limits: &[(Rule, &str)],
    ) -> Admission {
        let limit = |&(rule, key): &(Rule, &str)| self.0.limiter.limit(rule, key);
        let ask = redis_asks::Ask {
            session: Some(redis_asks::SessionCheck {
                key: auth::session_key(player, sid),
                owner: player.to_string(),
            }),
            view: Some(schemas::read_model::key::player_view(player)),
            limits_before_session: before_session.iter().map(limit).collect(),
            limits: limits.iter().map(limit).collect(),
        };
        let answer = self.0.gate.ask(ask).await;
        let session =
            self.sessions()
                .answered(sid, player, answer.as_ref().ok().and_then(|a| a.session));
        let all_limits: Vec<(Rule, &str)> = before_session.iter().chain(limits).copied().collect();
        let limited = self
            .0
            .limiter
            .decide(
                &all_limits,
                answer.as_ref().map(|a| a.wait).map_err(Clone::clone),
            )
            .map_err(rate_limited);
        Admission {
            session,
            limited,
            cached_view: answer.map(|a| a.view),
        }
    }
}

/// What [`AppState::admit`] found.
#[derive(Debug)]
pub struct Admission {
    /// The state of the token's session (`Err` when nobody can say).
    pub session: Result<auth::SessionState, auth::SessionUnknown>,
    /// `Ok` when the request is within its rate limits, 429 otherwise.
    pub limited: Result<(), ApiError>,
    /// The player's cached view (`Ok(None)` when not cached, `Err` when Redis gave no answer).
    pub cached_view: Result<Option<String>, redis_asks::Unanswered>,
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError {
        retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
        ..ApiError::new(
            Code::RateLimited,
            format!("too many requests; retry in {} ms", wait.as_millis()),
        )
    }
}

/// Why the gateway stopped other than as asked.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The listener failed.
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
    /// Requests or live streams were still open at the drain deadline; they were given up.
    #[error(transparent)]
    Drain(#[from] service::drain::DrainTimedOut),
}

/// The gateway, connected and bound, not yet serving.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Application {
    /// Connects to NATS (ensuring the topology), Redis and MongoDB, creates the bootstrap admin,
    /// and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let (nats, js) =
            nats_topology::connect(&settings.nats_url, "gateway", &settings.nats_credentials)
                .await?;
        let topology = nats_topology::Topology::new(&nats_topology::Settings {
            replicas: settings.nats_replicas,
            ..nats_topology::Settings::local()
        });
        nats_topology::ensure(&js, &topology).await?;

        let patience = service::redis::Patience {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(500),
            retries: 1,
        };
        let redis = service::redis::Redis::connect(&settings.redis_url, Some(patience)).await?;
        let pubsub = service::redis::Target::parse(&settings.redis_url).clients()?;

        let mut mongo_options =
            mongodb::options::ClientOptions::parse(&settings.mongodb_uri).await?;
        mongo_options.app_name = Some("gateway".into());
        mongo_options.server_selection_timeout = Some(Duration::from_secs(2));
        let db = mongodb::Client::with_options(mongo_options)?.database(&settings.mongodb_database);
        accounts::ensure_indexes(&db).await?;

        let bucket = |name: &'static str| {
            let js = js.clone();
            async move {
                js.get_key_value(name)
                    .await
                    .map_err(|source| StartError::Bucket { name, source })
            }
        };
        let leases = bucket(nats_topology::topology::REGION_LEASES).await?;
        let node_load = bucket(nats_topology::topology::NODE_LOAD).await?;
        let rebuild_jobs = bucket(nats_topology::topology::REBUILD_JOBS).await?;
        let avatars = bucket(nats_topology::topology::AVATAR_REGIONS).await?;
        let gateway_id = uuid::Uuid::now_v7().simple().to_string();
        let outcomes = outcomes::Outcomes::start(&nats, &gateway_id).await?;
        let metrics = Metrics::new();
        let gate = redis_asks::Gate::start(redis.clone());
        let open_streams = open_streams::OpenStreams::start(
            settings.stream_max_per_player,
            settings.stream_max_per_ip,
            settings.stream_session_check,
            redis.clone(),
        );
        let openapi = bytes::Bytes::from(openapi::document(&settings).to_string());
        let state = AppState(Arc::new(Inner {
            openapi,
            validation: settings.world.validation_context(),
            tokens: Tokens::new(
                &settings.jwt_secret,
                &settings.jwt_issuer,
                &settings.jwt_audience,
                settings.token_ttl,
            ),
            sessions: Sessions::default(),
            limiter: Limiter::new(settings.rate_limits.clone(), gate.clone(), metrics.clone()),
            metrics,
            breaker: Breaker::default(),
            outcomes,
            nats,
            js,
            leases,
            node_load,
            rebuild_jobs,
            avatars,
            redis,
            gate,
            hub: Arc::new(stream::Hub::new(pubsub)),
            open_streams,
            db,
            settings,
            stopping: service::CancellationToken::new(),
        }));
        accounts::bootstrap_admin(&state)
            .await
            .map_err(StartError::Bootstrap)?;
        let listener = tokio::net::TcpListener::bind(state.settings().addr).await?;
        Ok(Self { listener, state })
    }

    /// Where it listens (the port is the real one when the settings asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state, for tests and tools.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then stops taking connections, ends the live streams
    /// with a close frame (1001, going away) and lets the requests in flight finish, all within
    /// the drain deadline (`drain_deadline_ms`).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        use axum::serve::ListenerExt;
        tracing::info!(addr = %self.listener.local_addr()?, "gateway listening");
        let listener = connection::Listener::new(self.listener, self.state.metrics().clone())
            // A tap that does nothing: axum gives the connections of a tapped listener their
            // address as `ConnectInfo<SocketAddr>`, which the request layer reads.
            .tap_io(|_| {});
        let stop = self.state.stopping().clone();
        let deadline = self.state.settings().drain_deadline;
        let open_streams = self.state.open_streams().clone();
        let app = router(self.state);
        let serving = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown({
            let stop = stop.clone();
            async move {
                shutdown.await;
                tracing::info!(deadline_ms = deadline.as_millis(), "gateway stopping");
                stop.cancel();
            }
        });
        // An upgraded connection is no longer the server's: the live streams are waited for
        // apart, so that their close frames go out before the process ends.
        let served = async move {
            serving.await?;
            open_streams.all_ended().await;
            Ok::<(), std::io::Error>(())
        };
        service::drain::within(served, &stop, deadline).await??;
        tracing::info!("gateway stopped");
        Ok(())
    }
}

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
