//! The gateway's REST contract against real NATS, Redis and MongoDB-compatible servers.

mod helpers;

mod admin;
mod auth;
mod cluster;
mod commands;
mod hardening;
mod operations;
mod placements;
mod reads;
mod redis_asks;
mod stop;
mod stream;
