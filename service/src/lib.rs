//! What the gateway, the region simulator and the projector do alike as processes:
//!
//! - JSON logs filtered by `RUST_LOG`, and a graceful stop on Ctrl-C or SIGTERM (here);
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
