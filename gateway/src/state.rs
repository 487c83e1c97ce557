//! What every handler shares ([`AppState`]): the settings, the clients of NATS, Redis and
//! MongoDB, and the gateway's own parts (tokens, sessions, limits, the stream hub, the stop);
//! how they are made from the settings at start-up; and the rate-limit and session questions a
//! request begins with ([`AppState::admit`]).

use std::sync::Arc;
use std::time::Duration;

use schemas::{PlayerId, ValidationContext};

use crate::application::StartError;
use crate::auth::{self, Passwords, Sessions, Tokens};
use crate::bus::Breaker;
use crate::error::{ApiError, Code};
use crate::metrics::Metrics;
use crate::ratelimit::{Limiter, Rule};
use crate::settings::Settings;
use crate::{accounts, open_streams, openapi, outcomes, redis_asks, stream};

struct Inner {
    settings: Settings,
    validation: ValidationContext,
    tokens: Tokens,
    passwords: Passwords,
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
    placements: crate::placements::Placements,
    redis: service::redis::Redis,
    gate: redis_asks::Gate,
    hub: Arc<stream::Hub>,
    open_streams: Arc<open_streams::OpenStreams>,
    refused: crate::commands::Refused,
    db: mongodb::Database,
    probes: crate::health::LastProbe,
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
    /// Connects to NATS (ensuring the topology), Redis and MongoDB (ensuring the accounts'
    /// indexes), and starts the gateway's own tasks: the outcome inbox, the Redis gate, the
    /// check of open streams' sessions.
    pub async fn connect(settings: Settings) -> Result<Self, StartError> {
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
        let placements = crate::placements::Placements::start(
            nats.clone(),
            avatars.clone(),
            metrics.avatar_lookups(),
        );
        let gate = redis_asks::Gate::start(redis.clone());
        let open_streams = open_streams::OpenStreams::start(
            settings.stream_max_per_player,
            settings.stream_max_per_ip,
            settings.stream_session_check,
            redis.clone(),
        );
        let openapi = bytes::Bytes::from(openapi::document(&settings).to_string());
        let passwords = Passwords::start(
            settings.password_workers,
            settings.password_queue,
            metrics.passwords_busy(),
        )
        .map_err(StartError::Threads)?;
        Ok(Self(Arc::new(Inner {
            openapi,
            validation: settings.world.validation_context(),
            tokens: Tokens::new(
                &settings.jwt_secret,
                &settings.jwt_issuer,
                &settings.jwt_audience,
                settings.token_ttl,
            ),
            passwords,
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
            placements,
            redis,
            gate,
            hub: Arc::new(stream::Hub::new(pubsub)),
            open_streams,
            refused: crate::commands::Refused::default(),
            db,
            probes: crate::health::LastProbe::default(),
            settings,
            stopping: service::CancellationToken::new(),
        })))
    }

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
    /// Where passwords are hashed and checked.
    pub fn passwords(&self) -> &Passwords {
        &self.0.passwords
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
    /// Where the simulators put players' avatars, looked up for many commands at once.
    pub fn placements(&self) -> &crate::placements::Placements {
        &self.0.placements
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
    /// The players whose commands the gate turned away lately.
    pub fn refused(&self) -> &crate::commands::Refused {
        &self.0.refused
    }
    /// The MongoDB database.
    pub fn db(&self) -> &mongodb::Database {
        &self.0.db
    }
    /// The dependencies' last probe, shared by `/readyz` and `/metrics`.
    pub(crate) fn probes(&self) -> &crate::health::LastProbe {
        &self.0.probes
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

    /// The answer when `dependency` (`nats`, `redis`, `mongodb`) failed with `error`: counted in
    /// the metrics, logged as `failed` (what the gateway could not do), and a 503 saying `what`
    /// is unreachable.
    pub fn dependency_failed(
        &self,
        dependency: &str,
        error: impl std::fmt::Display,
        failed: &str,
        what: &str,
    ) -> ApiError {
        self.metrics().dependency_error(dependency);
        tracing::warn!(error = %error, "{failed}");
        ApiError::unavailable(what)
    }

    /// Counts a request against a rate limit; 429 with `Retry-After` when it is over.
    pub async fn limit(&self, rule: Rule, key: &str) -> Result<(), ApiError> {
        self.limit_all(&[(rule, key)]).await
    }

    /// Gives back a request counted against `rule` for `key` (see
    /// [`crate::ratelimit::Limiter::refund`]); a failure is only logged: the request stays
    /// counted.
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
