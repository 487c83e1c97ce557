//! The region simulator binary: configuration from the environment (see
//! `config/region-sim.toml`), JSON logs, an HTTP side for operators, and a graceful stop on
//! Ctrl-C or SIGTERM (every region snapshotted, every lease released).

use std::process::ExitCode;

use region_sim::node::Node;
use region_sim::settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    service::init_json_logs();
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
    node.run(service::shutdown_signal()).await;
    ExitCode::SUCCESS
}
