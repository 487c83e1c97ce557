//! The projector's configuration: `config/projector.toml` (or `PROJECTOR_CONFIG`) with
//! environment variables over it, checked at start-up; every error names the key.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
pub use service::SettingsError;
use service::bad;

/// Everything the projector needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where health and metrics are served (`PROJECTOR_ADDR`).
    pub addr: SocketAddr,
    /// NATS (`NATS_URL`).
    pub nats_url: String,
    /// Who it is to NATS (`NATS_USER`, `NATS_PASSWORD`).
    pub nats_credentials: nats_topology::Credentials,
    /// MongoDB (`MONGODB_URI`).
    pub mongodb_uri: String,
    /// The database of the read models (`MONGODB_DATABASE`).
    pub mongodb_database: String,
    /// Redis (`REDIS_URL`): one server's URL, or a Redis Cluster's seed nodes' separated by
    /// commas (see [`service::redis::Target`]).
    pub redis_url: String,
    /// Facts per batch.
    pub batch_size: usize,
    /// How long a pull waits for a full batch.
    pub fetch_wait: Duration,
    /// How long a delivered batch may go unacknowledged.
    pub ack_wait: Duration,
    /// Attempts at a refused write before its fact is dead-lettered.
    pub max_write_attempts: u32,
    /// How long a batch's write should take: slower writes shrink the next batches, faster ones
    /// let them grow back to `batch_size`.
    pub target_write: Duration,
    /// How many writes this process runs on MongoDB at once (its consumers take turns).
    pub concurrent_writes: usize,
    /// How long a stopping projector waits for a write in flight to end before it leaves it
    /// unacknowledged (to be delivered again).
    pub stop_grace: Duration,
    /// Read-model documents of each kind the live projection and a rebuild remember between
    /// batches (see [`crate::projection::Writer`]); 0 for none.
    pub known_documents: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    addr: String,
    mongodb_database: String,
    batch_size: usize,
    fetch_wait_ms: u64,
    ack_wait_secs: u64,
    max_write_attempts: u32,
    target_write_ms: u64,
    concurrent_writes: usize,
    stop_grace_secs: u64,
    known_documents: u64,
}

impl Settings {
    /// Reads the process environment and the file it names.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(service::config::env_var)
    }

    /// Reads settings with `env` standing for the environment (tests pass a map).
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let file: File = service::config::parse(&env, "PROJECTOR_CONFIG", "projector.toml")?;
        let addr = service::config::listen_addr(&env, "PROJECTOR_ADDR", file.addr)?;
        if file.batch_size == 0 || file.batch_size > 10_000 {
            return Err(bad("batch_size", "must be from 1 to 10000"));
        }
        if file.ack_wait_secs == 0 {
            return Err(bad("ack_wait_secs", "must be at least 1"));
        }
        if file.max_write_attempts == 0 {
            return Err(bad("max_write_attempts", "must be at least 1"));
        }
        if file.target_write_ms == 0 {
            return Err(bad("target_write_ms", "must be at least 1"));
        }
        if file.concurrent_writes == 0 || file.concurrent_writes > 64 {
            return Err(bad("concurrent_writes", "must be from 1 to 64"));
        }
        if file.known_documents > 10_000_000 {
            return Err(bad("known_documents", "must be from 0 to 10000000"));
        }
        Ok(Self {
            addr,
            nats_url: env("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            nats_credentials: nats_topology::Credentials::from_env(&env)?,
            mongodb_uri: env("MONGODB_URI")
                .unwrap_or_else(|| "mongodb://127.0.0.1:27017/?directConnection=true".into()),
            mongodb_database: env("MONGODB_DATABASE").unwrap_or(file.mongodb_database),
            redis_url: env("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            batch_size: file.batch_size,
            fetch_wait: Duration::from_millis(file.fetch_wait_ms.max(1)),
            ack_wait: Duration::from_secs(file.ack_wait_secs),
            max_write_attempts: file.max_write_attempts,
            target_write: Duration::from_millis(file.target_write_ms),
            concurrent_writes: file.concurrent_writes,
            stop_grace: Duration::from_secs(file.stop_grace_secs),
            known_documents: file.known_documents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load(service::config::env_of(pairs))
    }

    #[test]
    fn the_shipped_file_is_enough_and_the_environment_wins() {
        let s = with(&[]).expect("shipped config");
        assert_eq!((s.batch_size, s.known_documents), (512, 50_000));
        let s = with(&[
            ("MONGODB_DATABASE", "other"),
            ("PROJECTOR_ADDR", "127.0.0.1:1"),
        ])
        .expect("valid");
        assert_eq!((s.mongodb_database.as_str(), s.addr.port()), ("other", 1));
    }

    #[test]
    fn errors_name_the_key() {
        for (pairs, key) in [
            (vec![("PROJECTOR_ADDR", "nowhere")], "PROJECTOR_ADDR"),
            (
                vec![("PROJECTOR_CONFIG", "/does/not/exist")],
                "PROJECTOR_CONFIG",
            ),
        ] {
            assert_eq!(with(&pairs).expect_err("invalid").key, key);
        }
    }

    #[test]
    fn remembered_documents_are_bounded_and_a_whole_number() {
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/projector.toml"
        ))
        .expect("the shipped file");
        let dir = tempfile::tempdir().expect("temporary directory");
        for (value, ok) in [
            ("0", true),
            ("10000000", true),
            ("10000001", false),
            ("18446744073709551615", false),
            ("-1", false),
            ("1.5", false),
            ("\"50000\"", false),
        ] {
            let text = shipped.replace(
                "known_documents = 50000",
                &format!("known_documents = {value}"),
            );
            let path = dir.path().join("projector.toml");
            std::fs::write(&path, text).expect("written");
            let path = path.to_str().expect("a UTF-8 path");
            match with(&[("PROJECTOR_CONFIG", path)]) {
                Ok(s) => assert!(ok, "{value} taken as {}", s.known_documents),
                Err(e) => {
                    assert!(!ok, "{value} refused: {e}");
                    assert!(
                        e.to_string().contains("known_documents"),
                        "{value}: {e} names the key"
                    );
                }
            }
        }
    }
}
