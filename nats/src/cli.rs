//! What the `nats-topology` binary reads: its command and its environment, checked before it
//! connects. A library module so that whatever starts the binary (a deployment file, a test)
//! can be checked against the same reader.

use crate::{Credentials, Settings};

/// The binary's commands, as typed on its command line.
pub const COMMANDS: &[&str] = &["ensure", "dlq-listener"];

/// The usage line.
pub const USAGE: &str = "usage: nats-topology ensure | dlq-listener";

/// The command and the environment, read and checked.
#[derive(Debug, Clone)]
pub struct CommandLine {
    /// One of [`COMMANDS`].
    pub command: String,
    /// The NATS server(s) (`NATS_URL`, comma-separated; default `nats://127.0.0.1:4222`).
    pub url: String,
    /// The topology, with `NATS_REPLICAS` copies of everything (1 or 3; default 1).
    pub settings: Settings,
    /// Who it is to NATS (`NATS_USER`, `NATS_PASSWORD`).
    pub credentials: Credentials,
}

impl CommandLine {
    /// Reads `command` and the variables `env` stands for; `Err` says what is wrong.
    pub fn load(
        command: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let command = command
            .filter(|c| COMMANDS.contains(c))
            .ok_or(USAGE)?
            .to_owned();
        let url = env("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let replicas = match env("NATS_REPLICAS").as_deref() {
            None | Some("1") => 1,
            Some("3") => 3,
            Some(other) => return Err(format!("NATS_REPLICAS must be 1 or 3, not {other:?}")),
        };
        let credentials = Credentials::from_env(&env).map_err(|missing| {
            format!("{missing} is required with the other of NATS_USER and NATS_PASSWORD")
        })?;
        Ok(Self {
            command,
            url,
            settings: Settings {
                replicas,
                ..Settings::local()
            },
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_variables_are_checked_before_connecting() {
        let none = |_: &str| None;
        let line = CommandLine::load(Some("ensure"), none).expect("valid");
        assert_eq!(line.url, "nats://127.0.0.1:4222");
        assert_eq!(line.settings.replicas, 1);
        for bad in [None, Some(""), Some("ENSURE"), Some("ensure\u{200b}")] {
            assert_eq!(
                CommandLine::load(bad, none).expect_err("no such command"),
                USAGE
            );
        }
        let three = |k: &str| (k == "NATS_REPLICAS").then(|| "3".to_owned());
        let line = CommandLine::load(Some("dlq-listener"), three).expect("valid");
        assert_eq!(line.settings.replicas, 3);
        let two = |k: &str| (k == "NATS_REPLICAS").then(|| "2".to_owned());
        assert!(CommandLine::load(Some("ensure"), two).is_err());
        let half = |k: &str| (k == "NATS_USER").then(|| "admin".to_owned());
        let err = CommandLine::load(Some("ensure"), half).expect_err("no password");
        assert!(err.starts_with("NATS_PASSWORD"), "{err}");
    }
}
