//! The projector's command line: `projector` or `projector rebuild`, with `--help` and
//! `--version`.

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "projector",
    version,
    about = "Projects the game's facts into the MongoDB read models and the audit trail, \
             refreshes the Redis caches and feeds the live streams, until Ctrl-C or SIGTERM.",
    after_help = "Configuration: config/projector.toml (PROJECTOR_CONFIG names another), \
                  overridden by the environment: NATS_URL, MONGODB_URI, REDIS_URL, \
                  PROJECTOR_ADDR and the rest the README lists. Logs are JSON on stdout."
)]
pub struct Args {
    /// What to do; without one, run the live projection.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `projector` is asked to do besides projecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask the running projector to rebuild the read models from the log, and show its progress
    /// until it is done.
    Rebuild,
}
