//! What the gateway, the region simulator and the projector do alike as processes:
//!
//! - JSON logs filtered by `RUST_LOG`, a graceful stop on Ctrl-C or SIGTERM, and how a binary
//!   ends ([`Exit`], [`exit_code`]) (here);
//! - [`config`]: settings from the environment over TOML files, with errors that name the key
//!   at fault ([`SettingsError`]);
//! - [`drain`]: an HTTP server's stop, with a deadline for the requests in flight;
//! - [`metrics`]: the Prometheus text of `/metrics`;
//! - [`redis`]: one connection to Redis, whether it runs alone or as a Redis Cluster.

pub mod config;
pub mod drain;
pub mod metrics;
pub mod redis;

pub use tokio_util::sync::CancellationToken;

/// Logs as JSON lines on stdout, filtered by `RUST_LOG` (`info` when unset), each line with the
/// span it was written in (request id, region and the like).
pub fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Completes on Ctrl-C or SIGTERM: the moment to stop in good order.
pub async fn shutdown_signal() {
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

/// Why a program binary ends before its time, which decides what it says on stderr and its exit
/// code.
#[derive(Debug)]
pub enum Exit {
    /// A setting cannot be used: exit code 2, as for a wrong command line.
    Settings(SettingsError),
    /// The program could not start (a server out of reach, an address in use): exit code 1.
    Start(String),
    /// The program failed while it ran: exit code 1.
    Failed(String),
}

impl Exit {
    /// The program could not start because of `e`.
    pub fn start(e: impl std::fmt::Display) -> Self {
        Self::Start(e.to_string())
    }

    /// The program failed with `e`.
    pub fn failed(e: impl std::fmt::Display) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<SettingsError> for Exit {
    fn from(e: SettingsError) -> Self {
        Self::Settings(e)
    }
}

/// The exit code of the binary `program` that ended as `ended`, once it has said on stderr why
/// it failed, if it did.
pub fn exit_code(program: &str, ended: Result<(), Exit>) -> std::process::ExitCode {
    use std::process::ExitCode;
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit::Settings(e)) => {
            eprintln!("{program}: {e}");
            ExitCode::from(2)
        }
        Err(Exit::Start(e)) => {
            eprintln!("{program}: cannot start: {e}");
            ExitCode::FAILURE
        }
        Err(Exit::Failed(e)) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A configuration that cannot be used; says which key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {key}: {why}")]
pub struct SettingsError {
    /// The file key or environment variable.
    pub key: String,
    /// What is wrong with it.
    pub why: String,
}

/// The error for `key`.
pub fn bad(key: &str, why: impl Into<String>) -> SettingsError {
    SettingsError {
        key: key.to_owned(),
        why: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::bad;

    #[test]
    fn a_settings_error_names_its_key() {
        let e = bad("NATS_URL", "is not a URL");
        assert_eq!(e.to_string(), "configuration: NATS_URL: is not a URL");
    }
}
