//! The projector binary.
//!
//! ```text
//! projector            run the live projection (and take rebuild jobs) until Ctrl-C / SIGTERM
//! projector rebuild    ask the running projector to rebuild the read models, and show its
//!                      progress until it is done
//! ```
//!
//! Configuration from the environment over `config/projector.toml`; JSON logs. `projector --help`
//! says the same.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use clap::Parser;
use projector::settings::Settings;
use projector::{Context, live};

/// The command line: `projector` or `projector rebuild`, with `--help` and `--version`.
#[derive(Debug, Parser)]
#[command(
    name = "projector",
    version,
    about = "Projects the game's facts into the MongoDB read models and the audit trail, \
             refreshes the Redis caches and feeds the live streams, until Ctrl-C or SIGTERM.",
    after_help = "Configuration: config/projector.toml (PROJECTOR_CONFIG names another), \
                  overridden by the environment: NATS_URL, MONGODB_URI, REDIS_URL, \
                  PROJECTOR_ADDR and the rest the README lists. Logs are JSON on stdout."
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
enum Command {
    /// Ask the running projector to rebuild the read models from the log, and show its progress
    /// until it is done.
    Rebuild,
}

#[tokio::main]
async fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; a wrong command line exits 2 with the usage.
    let args = Args::parse();
    service::init_json_logs();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("projector: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = settings.addr;
    if args.command == Some(Command::Rebuild) {
        return match projector::rebuild_command::request_and_follow(&settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("projector rebuild: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let ctx = match Context::connect(settings).await {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("projector: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let names = projector::projection::Names::live();
    if let Err(e) = live::ensure_indexes(&ctx.db, &names).await {
        eprintln!("projector: cannot create indexes: {e}");
        return ExitCode::FAILURE;
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("projector: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = ctx.metrics.clone();
    let router = axum::Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(move || async move { metrics.render() }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    // One live projection per deployment: stand by until the lease is ours.
    let node = format!("projector-{}", schemas::EventId::new());
    let mut lease = match projector::lease::take(&ctx, &node, service::shutdown_signal()).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("projector: cannot reach the lease bucket: {e}");
            return ExitCode::FAILURE;
        }
    };
    live::started(&names);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = vec![
        tokio::spawn(run(
            "facts",
            live::project_facts(Arc::clone(&ctx), stopped.clone()),
        )),
        tokio::spawn(run(
            "commands",
            live::audit_commands(Arc::clone(&ctx), stopped.clone()),
        )),
        tokio::spawn(run(
            "consumers",
            live::watch_consumers(Arc::clone(&ctx), Duration::from_secs(2), stopped.clone()),
        )),
        tokio::spawn(run(
            "positions",
            live::bridge_positions(Arc::clone(&ctx), stopped.clone()),
        )),
        tokio::spawn(run(
            "rebuilds",
            projector::rebuild::take_jobs(Arc::clone(&ctx), stopped.clone()),
        )),
    ];
    if !lease.keep(service::shutdown_signal()).await {
        // Another projector may be projecting already: stop at once, mid-batch if need be (an
        // unacknowledged batch is delivered again and changes nothing twice).
        for t in &tasks {
            t.abort();
        }
        return ExitCode::FAILURE;
    }
    let _ = stop.send(true);
    // Each task finishes what it has in flight within the grace period (a write that has not
    // ended by then is left unacknowledged, to be delivered again); never wait much longer.
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
    ExitCode::SUCCESS
}

async fn run(what: &str, task: impl Future<Output = Result<(), async_nats::Error>>) {
    if let Err(e) = task.await {
        tracing::error!(task = what, error = %e, "stopped");
    }
}
