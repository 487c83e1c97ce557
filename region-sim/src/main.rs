//! The region simulator binary: configuration from the environment (see
//! `config/region-sim.toml`), JSON logs, and a graceful stop on Ctrl-C or SIGTERM (every region
//! snapshotted, every lease released, then the HTTP side drained).

use std::process::ExitCode;

use region_sim::{Application, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    service::init_json_logs();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("region-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("region-sim: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    app.run_until_stopped(service::shutdown_signal()).await;
    ExitCode::SUCCESS
}
