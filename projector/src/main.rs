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

#[tokio::main]
async fn main() -> ExitCode {
    // `--help` and `--version` print and exit 0; a wrong command line exits 2 with the usage.
    let args = Args::parse();
    service::init_json_logs();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("projector: {e}");
            return ExitCode::from(2);
        }
    };
    if args.command == Some(Command::Rebuild) {
        return match rebuild_command::request_and_follow(&settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("projector rebuild: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("projector: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(service::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("projector: {e}");
            ExitCode::FAILURE
        }
    }
}
