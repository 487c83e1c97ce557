//! `nats-topology`: the JetStream topology from the command line.
//!
//! ```text
//! nats-topology ensure          create what is missing, update what drifted, print what changed
//!                               (trying again for up to a minute while NATS refuses)
//! nats-topology dlq-listener    move exhausted and terminated messages to DLQ until Ctrl-C
//! ```
//!
//! Environment: `NATS_URL` (default `nats://127.0.0.1:4222`), `NATS_USER` and `NATS_PASSWORD`
//! (`ensure` needs the admin; the dead-letter listener runs as `dlq`), `NATS_REPLICAS` (1 or 3;
//! default 1), `RUST_LOG` (default `info`). `nats-topology --help` says the same.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nats_topology::Topology;
use nats_topology::cli::{Args, Command, CommandLine};

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

/// How long `ensure` keeps trying: a cluster just started refuses it until it has elected its
/// JetStream leader, and a deployment starts ensure beside the servers.
const ENSURE_PATIENCE: Duration = Duration::from_secs(60);

async fn run() -> Result<(), String> {
    // `--help` and `--version` print and exit 0; a wrong command line exits 2 with the usage.
    let Args { command } = Args::parse();
    let line = CommandLine::load(command, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
    let url = &line.url;
    match line.command {
        Command::Ensure => {
            let give_up = Instant::now() + ENSURE_PATIENCE;
            let report = loop {
                let attempt = async {
                    let (_client, js) =
                        nats_topology::connect(url, "nats-topology", &line.credentials)
                            .await
                            .map_err(|e| format!("cannot connect to NATS_URL={url}: {e}"))?;
                    nats_topology::ensure(&js, &Topology::new(&line.settings))
                        .await
                        .map_err(|e| e.to_string())
                };
                match attempt.await {
                    Ok(report) => break report,
                    Err(e) if Instant::now() < give_up => {
                        eprintln!("nats-topology: {e}; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            // A closed stdout (a pipe read by `head`, say) is not an error of ensure's.
            let _ = write!(std::io::stdout(), "{report}");
            Ok(())
        }
        Command::DlqListener => {
            let (_client, js) = nats_topology::connect(url, "nats-topology", &line.credentials)
                .await
                .map_err(|e| format!("cannot connect to NATS_URL={url}: {e}"))?;
            // Ctrl-C or SIGTERM: a container's stop is a SIGTERM.
            nats_topology::run_dead_letter_listener(js, service::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
    }
}
