//! Start-up and stop: [`Application::build`] connects to everything and binds;
//! [`Application::run_until_stopped`] serves until the shutdown future completes, then drains
//! within the drain deadline. What can go wrong on the way: [`StartError`], [`RunError`].

use std::future::Future;
use std::net::SocketAddr;

use crate::error::ApiError;
use crate::router::router;
use crate::settings::Settings;
use crate::state::AppState;
use crate::{accounts, connection};

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
    /// The password workers' threads could not be started.
    #[error("cannot start the password workers: {0}")]
    Threads(std::io::Error),
    /// The bootstrap admin could not be created.
    #[error("bootstrap admin: {0}")]
    Bootstrap(ApiError),
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
        let state = AppState::connect(settings).await?;
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
