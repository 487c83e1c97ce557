//! The projector process: [`Application::build`] connects, creates the indexes and binds the
//! operators' HTTP side; [`Application::run_until_stopped`] stands by until the live projection's
//! lease is this process's, projects until the stop (standing by again whenever the lease is
//! lost), and stops in order: the tasks finish what they hold within the grace period, the lease
//! is released for a standing-by projector, and the HTTP side drains last, so `/healthz` and
//! `/metrics` answer throughout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use service::CancellationToken;

use crate::projection::Names;
use crate::{Context, StartError, lease, live, rebuild};

/// How long the HTTP side's requests in flight get to finish once the projector has stopped.
/// Its answers are quick (health, metrics), so a request still open after this is a client that
/// does not read.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// A projector, connected and listening, not yet projecting.
pub struct Application {
    ctx: Arc<Context>,
    names: Names,
    listener: tokio::net::TcpListener,
}

/// Why a running projector stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The lease bucket could not be read at start.
    #[error("cannot reach the lease bucket: {0}")]
    Lease(async_nats::Error),
}

impl Application {
    /// Connects to NATS, MongoDB and Redis, creates the read models' indexes and binds
    /// `settings.addr`.
    pub async fn build(settings: crate::settings::Settings) -> Result<Self, StartError> {
        let addr = settings.addr;
        let ctx = Context::connect(settings).await?;
        let names = Names::live();
        live::ensure_indexes(&ctx.db, &names)
            .await
            .map_err(StartError::Indexes)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        Ok(Self {
            ctx,
            names,
            listener,
        })
    }

    /// Where the HTTP side listens (the real port when the settings asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/healthz` and `/metrics`, takes the live projection's lease (standing by while
    /// another projector holds it) and projects until `shutdown` completes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let Self {
            ctx,
            names,
            listener,
        } = self;
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        });
        let http_stop = CancellationToken::new();
        let http =
            service::drain::spawn_http(listener, router(&ctx), http_stop.clone(), DRAIN_DEADLINE);
        let projected = project(&ctx, &names, &stop).await;
        http_stop.cancel();
        if let Err(e) = http.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
        projected
    }
}

/// The operators' side: liveness and the metrics.
fn router(ctx: &Context) -> Router {
    let metrics = ctx.metrics.clone();
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(move || async move { metrics.render() }))
}

/// One live projection per deployment: stands by until the lease is ours, then runs the
/// projection's tasks until `stop`. A lease lost on the way stops the tasks at once and the
/// process stands by again.
async fn project(
    ctx: &Arc<Context>,
    names: &Names,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let node = format!("projector-{}", schemas::EventId::new());
    let mut standby = lease::Standby::open(ctx, &node)
        .await
        .map_err(RunError::Lease)?;
    loop {
        let Some(lease) = standby.take(stop.cancelled()).await else {
            return Ok(());
        };
        live::started(names);
        let (tell, stopped) = tokio::sync::watch::channel(false);
        let tasks = vec![
            tokio::spawn(run(
                "facts",
                live::project_facts(Arc::clone(ctx), stopped.clone()),
            )),
            tokio::spawn(run(
                "commands",
                live::audit_commands(Arc::clone(ctx), stopped.clone()),
            )),
            tokio::spawn(run(
                "consumers",
                live::watch_consumers(Arc::clone(ctx), Duration::from_secs(2), stopped.clone()),
            )),
            tokio::spawn(run(
                "positions",
                live::bridge_positions(Arc::clone(ctx), stopped.clone()),
            )),
            tokio::spawn(run(
                "rebuilds",
                rebuild::take_jobs(Arc::clone(ctx), stopped.clone()),
            )),
        ];
        let lease = match lease.keep(stop.cancelled()).await {
            lease::Kept::Stopping(lease) => lease,
            lease::Kept::Lost(again) => {
                // Another projector may be projecting already: stop at once, mid-batch if need
                // be (an unacknowledged batch is delivered again and changes nothing twice).
                for t in &tasks {
                    t.abort();
                }
                futures::future::join_all(tasks).await;
                ctx.metrics.stopped_projecting();
                tracing::warn!("stopped projecting; standing by until the lease is free");
                standby = again;
                continue;
            }
        };
        let _ = tell.send(true);
        // Each task finishes what it has in flight within the grace period (a write that has
        // not ended by then is left unacknowledged, to be delivered again); never wait much
        // longer.
        let grace = ctx.settings.stop_grace + Duration::from_secs(2);
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!("tasks still running after the grace period; stopping them");
            for a in aborts {
                a.abort();
            }
        }
        lease.release().await;
        return Ok(());
    }
}

async fn run(what: &str, task: impl Future<Output = Result<(), async_nats::Error>>) {
    if let Err(e) = task.await {
        tracing::error!(task = what, error = %e, "stopped");
    }
}
