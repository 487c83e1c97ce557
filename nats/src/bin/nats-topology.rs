//! `nats-topology`: the JetStream topology from the command line.
//!
//! ```text
//! nats-topology ensure          create what is missing, update what drifted, print what changed
//! nats-topology dlq-listener    move exhausted and terminated messages to DLQ until Ctrl-C
//! ```
//!
//! Environment: `NATS_URL` (default `nats://127.0.0.1:4222`), `NATS_USER` and `NATS_PASSWORD`
//! (`ensure` needs the admin; the dead-letter listener runs as `dlq`), `NATS_REPLICAS` (1 or 3;
//! default 1), `RUST_LOG` (default `info`).

use std::io::Write;
use std::process::ExitCode;

use nats_topology::Topology;
use nats_topology::cli::{CommandLine, USAGE};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nats-topology: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let command = std::env::args().nth(1);
    let line = CommandLine::load(command.as_deref(), |k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })?;
    let url = &line.url;
    let (_client, js) = nats_topology::connect(url, "nats-topology", &line.credentials)
        .await
        .map_err(|e| format!("cannot connect to NATS_URL={url}: {e}"))?;
    match line.command.as_str() {
        "ensure" => {
            let report = nats_topology::ensure(&js, &Topology::new(&line.settings))
                .await
                .map_err(|e| e.to_string())?;
            // A closed stdout (a pipe read by `head`, say) is not an error of ensure's.
            let _ = write!(std::io::stdout(), "{report}");
            Ok(())
        }
        "dlq-listener" => {
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            nats_topology::run_dead_letter_listener(js, shutdown)
                .await
                .map_err(|e| e.to_string())
        }
        _ => Err(USAGE.to_owned()),
    }
}
