//! Real servers for the game backend's tests: `nats-server` with JetStream, `redis-server`, and the
//! MongoDB-compatible SecantusDB, each on a free port of the loopback interface with its own
//! temporary directory, ready when returned, and stopped when dropped.
//!
//! ```no_run
//! let nats = test_servers::Server::start_nats().expect("nats-server");
//! let url = nats.url(); // nats://127.0.0.1:<port>
//! ```
//!
//! Binaries are looked up in this order: an environment variable (`NATS_SERVER_BIN`,
//! `REDIS_SERVER_BIN`, `SECANTUSD_BIN`), the `PATH`, then the project-local virtual environment
//! `.local/venv/bin` that `ops/install` fills. A missing binary is an error that says which
//! command installs it. Tests may run in parallel: nothing is shared between two servers.
//!
//! Fault tests use [`Server::stop`] (the process is killed, as in a crash),
//! [`Server::restart`] (the same port and data directory, as after a reboot), and
//! [`Server::pause`] / [`Server::resume`] (the process frozen and thawed, as a stalled server),
//! and [`Server::throttle`] (the process given a share of the time, as on a busy machine).
//!
//! Tests wait for conditions with [`poll::eventually`], never a fixed sleep, and start the
//! backend's own binaries as a [`Service`], which is killed when the test lets go of it.
//!
//! - `server`: one server process of a [`Kind`] ([`Server`]), and where its binary is found;
//! - `nats`: the role users ([`NatsUsers`]), a secured server, a three-node [`NatsCluster`];
//! - `redis_cluster`: a Redis Cluster of three masters ([`RedisCluster`]);
//! - `ports`: free ports on the loopback interface;
//! - [`stack`]: the servers a test of the game runs against, started together ([`Stack`]);
//! - [`service`]: a backend binary a test starts, with its log in a file;
//! - [`poll`]: waiting for a condition, with a deadline;
//! - [`balance`]: the shipped game balance with a test's overrides;
//! - [`regions`]: the region configs the tests run with.

mod nats;
mod ports;
mod redis_cluster;
mod server;

pub mod balance;
pub mod poll;
pub mod regions;
pub mod service;
pub mod stack;

pub use nats::{NatsCluster, NatsUsers, nats_config};
pub use ports::{free_cluster_port, free_port, free_ports};
pub use redis_cluster::RedisCluster;
pub use server::{Error, Kind, Server, Throttle, venv_bin};
pub use service::Service;
pub use stack::Stack;
