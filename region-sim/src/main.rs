//! The region simulator binary: configuration from the environment (see
//! `config/region-sim.toml`), JSON logs, an HTTP side for operators, and a graceful stop on
//! Ctrl-C or SIGTERM (every region snapshotted, every lease released).

use std::process::ExitCode;

use region_sim::node::Node;
use region_sim::settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("region-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = settings.addr;
    let node = match Node::start(settings).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("region-sim: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("region-sim: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http = axum::serve(listener, region_sim::http::router(node.view()));
    tokio::spawn(async move {
        if let Err(e) = http.await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    node.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
