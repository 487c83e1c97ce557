//! The simulator process as one thing to build and run: its [`Node`] (leases, regions,
//! balancing) and the HTTP side for operators ([`crate::http`]), stopped together in order.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use service::CancellationToken;

use crate::http;
use crate::node::{Node, StartError};
use crate::settings::Settings;

/// How long the HTTP side's requests in flight get to finish once every region has stopped.
/// Its answers are quick (health, metrics, a region's state within 5 s), so a request still
/// open after this is a client that does not read.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Why a simulator process could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// NATS or its buckets could not be reached.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The HTTP side's address could not be bound.
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        /// The address tried.
        addr: SocketAddr,
        /// Why not.
        why: std::io::Error,
    },
}

/// A simulator process, connected and bound, not yet running.
pub struct Application {
    node: Node,
    listener: tokio::net::TcpListener,
}

impl Application {
    /// Connects to NATS and opens the buckets (taking no region yet), then binds the HTTP
    /// side's address (`SIM_ADDR`).
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        let addr = settings.addr;
        let node = Node::start(settings).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|why| BuildError::Listen { addr, why })?;
        Ok(Self { node, listener })
    }

    /// The address the HTTP side listens on (the port the system gave, for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves and runs regions until `shutdown` completes; then stops every region (each
    /// snapshotted, its lease released) while the HTTP side still answers health and metrics,
    /// and only then stops the HTTP side, giving its requests in flight [`DRAIN_DEADLINE`]
    /// (a failure of the HTTP side is logged; it does not undo the regions' stop in order).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let http = service::drain::spawn_http(
            self.listener,
            http::router(self.node.view()),
            stop.clone(),
            DRAIN_DEADLINE,
        );
        self.node.run(shutdown).await;
        stop.cancel();
        if let Err(e) = http.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }
}
