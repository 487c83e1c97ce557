//! The projector binary.
//!
//! ```text
//! projector            run the live projection (and take rebuild jobs) until Ctrl-C / SIGTERM
//! projector rebuild    ask the running projector to rebuild the read models, and show its
//!                      progress until it is done
//! ```
//!
//! Configuration from the environment over `config/projector.toml`; JSON logs. `projector --help`
//! says the same.

use std::process::ExitCode;

use clap::Parser;
use projector::cli::{Args, Command};
use projector::settings::Settings;
use projector::{Application, rebuild_command};
use service::Exit;

#[tokio::main]
async fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; a wrong command line exits 2 with the usage.
    let args = Args::parse();
    service::init_json_logs();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => return service::exit_code("projector", Err(e.into())),
    };
    if args.command == Some(Command::Rebuild) {
        let followed = rebuild_command::request_and_follow(&settings).await;
        return service::exit_code("projector rebuild", followed.map_err(Exit::failed));
    }
    service::exit_code("projector", run(settings).await)
}

async fn run(settings: Settings) -> Result<(), Exit> {
    let app = Application::build(settings).await.map_err(Exit::start)?;
    app.run_until_stopped(service::shutdown_signal())
        .await
        .map_err(Exit::failed)
}
