//! The simulator process as one thing to build and run: its [`Node`] (leases, regions,
//! balancing) and the HTTP side for operators ([`crate::http`]), stopped together in order.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use service::CancellationToken;
use service::drain::DrainTimedOut;

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

/// Why a simulator process stopped other than as asked.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP side's listener failed.
    #[error("serving: {0}")]
    Serve(#[from] std::io::Error),
    /// Requests were still in flight at the drain deadline; they were given up.
    #[error(transparent)]
    Drain(#[from] DrainTimedOut),
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
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves and runs regions until `shutdown` completes; then stops every region (each
    /// snapshotted, its lease released) while the HTTP side still answers health and metrics,
    /// and only then stops the HTTP side, giving its requests in flight [`DRAIN_DEADLINE`].
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        let stop = CancellationToken::new();
        let serving = axum::serve(self.listener, http::router(self.node.view()))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let http = tokio::spawn({
            let stop = stop.clone();
            async move {
                let served = service::drain::within(serving, &stop, DRAIN_DEADLINE).await;
                if let Ok(Err(e)) = &served {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
                served
            }
        });
        self.node.run(shutdown).await;
        stop.cancel();
        match http.await {
            Ok(served) => served??,
            // The HTTP task panicked: the regions have stopped in order all the same.
            Err(e) => tracing::error!(error = %e, "HTTP server failed"),
        }
        Ok(())
    }
}
