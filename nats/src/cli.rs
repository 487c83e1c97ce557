//! What the `nats-topology` binary reads: its command and its environment, checked before it
//! connects. A library module so that whatever starts the binary (a deployment file, a test)
//! can be checked against the same reader.

use crate::{Credentials, Settings};

/// The command line: `nats-topology ensure | dlq-listener`, with `--help` and `--version`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "nats-topology",
    version,
    about = "The game backend's JetStream topology: streams, consumers and key-value buckets.",
    after_help = "Environment: NATS_URL (comma-separated servers; default nats://127.0.0.1:4222), \
                  NATS_USER and NATS_PASSWORD (ensure needs the admin; the dead-letter listener \
                  runs as dlq), NATS_REPLICAS (1 or 3; default 1), RUST_LOG (default info)."
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The binary's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Create what is missing, update what drifted, and print what changed (trying again for up
    /// to a minute while NATS refuses, as a cluster does until it has elected its leader).
    Ensure,
    /// Move exhausted and terminated messages to DLQ until Ctrl-C or SIGTERM.
    DlqListener,
}

/// The command and the environment, read and checked.
#[derive(Debug, Clone)]
pub struct CommandLine {
    /// What to do.
    pub command: Command,
    /// The NATS server(s) (`NATS_URL`, comma-separated; default `nats://127.0.0.1:4222`).
    pub url: String,
    /// The topology, with `NATS_REPLICAS` copies of everything (1 or 3; default 1).
    pub settings: Settings,
    /// Who it is to NATS (`NATS_USER`, `NATS_PASSWORD`).
    pub credentials: Credentials,
}

impl CommandLine {
    /// Reads the variables `env` stands for beside `command`; `Err` says what is wrong.
    pub fn load(command: Command, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let url = env("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let replicas = match env("NATS_REPLICAS").as_deref() {
            None | Some("1") => 1,
            Some("3") => 3,
            Some(other) => return Err(format!("NATS_REPLICAS must be 1 or 3, not {other:?}")),
        };
        let credentials =
            Credentials::from_env(&env).map_err(|e| format!("{}: {}", e.key, e.why))?;
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

    use clap::Parser;

    fn command(args: &[&str]) -> Result<Command, clap::Error> {
        Args::try_parse_from(args).map(|a| a.command)
    }

    #[test]
    fn commands_and_variables_are_checked_before_connecting() {
        let none = |_: &str| None;
        let line = CommandLine::load(command(&["nats-topology", "ensure"]).expect("ensure"), none)
            .expect("valid");
        assert_eq!(line.command, Command::Ensure);
        assert_eq!(line.url, "nats://127.0.0.1:4222");
        assert_eq!(line.settings.replicas, 1);
        for bad in [
            &["nats-topology"][..],
            &["nats-topology", ""],
            &["nats-topology", "ENSURE"],
            &["nats-topology", "ensure\u{200b}"],
            &["nats-topology", "ensure", "extra"],
            &["nats-topology", "--replicas", "3", "ensure"],
        ] {
            let err = command(bad).expect_err("no such command");
            assert!(
                err.to_string().contains("Usage: nats-topology"),
                "{bad:?}: {err}"
            );
        }
        let help = command(&["nats-topology", "--help"]).expect_err("help, not a command");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("dlq-listener") && help.to_string().contains("NATS_URL"));
        let three = |k: &str| (k == "NATS_REPLICAS").then(|| "3".to_owned());
        let line = CommandLine::load(Command::DlqListener, three).expect("valid");
        assert_eq!(line.settings.replicas, 3);
        let two = |k: &str| (k == "NATS_REPLICAS").then(|| "2".to_owned());
        assert!(CommandLine::load(Command::Ensure, two).is_err());
        let half = |k: &str| (k == "NATS_USER").then(|| "admin".to_owned());
        let err = CommandLine::load(Command::Ensure, half).expect_err("no password");
        assert!(err.starts_with("NATS_PASSWORD"), "{err}");
    }
}
