//! The gateway's REST contract against real NATS, Redis and MongoDB-compatible servers.

mod helpers;

mod admin;
mod auth;
mod cluster;
mod commands;
mod gate;
mod hardening;
mod operations;
mod reads;
mod stream;
