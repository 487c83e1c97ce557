//! The gateway: the game's REST front door. It authenticates (JWT and a Redis session),
//! authorises (roles, the admin API key), rate-limits (per IP and per player, shared through
//! Redis), validates every command with the shared schemas, and publishes it to JetStream,
//! answering once JetStream has stored it.
//!
//! Running it:
//! - [`settings`]: typed configuration, file and environment.
//! - [`application`]: start-up and stop: [`Application::build`] connects to everything and
//!   binds; [`Application::run_until_stopped`] serves until the shutdown future completes, then
//!   closes the live streams and drains the requests in flight within the drain deadline.
//! - [`state`]: what every handler shares ([`AppState`]), how it is made, and the first
//!   questions a request asks (session, rate limits, cached view) in one round trip.
//! - [`router`](mod@router): every route, and the layers every request passes (the per-IP
//!   limit among them).
//!
//! At the edge:
//! - [`connection`]: the listener; hyper's own answers to requests it cannot parse, in the error
//!   shape.
//! - [`request`]: request ids, client IPs, error bodies, request metrics.
//! - [`error`]: the error codes of the REST contract and their statuses.
//! - [`body`]: JSON bodies at the edge (415, 413, 400).
//! - [`auth`]: who is calling: tokens, passwords, sessions, roles, and the extractors that
//!   check them (the admin API key among them).
//! - [`ratelimit`]: GCRA in Redis, with an in-process fallback.
//! - [`redis_asks`]: the Redis round trip a request begins with: many requests, one script call.
//!
//! The routes:
//! - [`accounts`]: register, log in, log out, the bootstrap admin.
//! - [`players`]: the players' read model.
//! - [`commands`]: `POST /v1/commands`, idempotency keys, routing to a region.
//! - [`placements`]: where the simulators put avatars: a copy of `avatar_regions`, and one
//!   read of NATS for many commands.
//! - [`outcomes`]: waiting for a command's outcome, one subscription per gateway.
//! - [`consistency`]: reads that see the reader's own writes (`?min_seq=`).
//! - [`regions`]: regions, their owners and population, entities near a point.
//! - [`stream`]: the live stream of facts over a WebSocket, with a bounded queue per client,
//!   ending with its session or with the gateway: its handshake, the shared Redis subscription,
//!   the regions it follows, the per-connection loop.
//! - [`open_streams`]: the streams open on a gateway: caps per player and address, and a
//!   periodic check of their sessions.
//! - [`admin`]: dead letters and their redrive, region assignments, roles, rebuild jobs.
//! - [`health`]: liveness, readiness, metrics.
//! - [`openapi`]: the OpenAPI document of the contract, with every rule the gateway checks and
//!   every status it answers, at `/openapi.json`.
//!
//! Underneath:
//! - [`bus`]: publishing, with a circuit breaker.
//! - [`metrics`]: the Prometheus registry.

pub mod accounts;
pub mod admin;
pub mod application;
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
pub mod placements;
pub mod players;
pub mod ratelimit;
pub mod redis_asks;
pub mod regions;
pub mod request;
pub mod router;
pub mod settings;
pub mod state;
pub mod stream;

pub use application::{Application, RunError, StartError};
pub use error::{ApiError, Code};
pub use router::router;
pub use settings::Settings;
pub use state::{Admission, AppState};
