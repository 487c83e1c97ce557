//! The region simulator binary: configuration from the environment (see
//! `config/region-sim.toml`), JSON logs, and a graceful stop on Ctrl-C or SIGTERM (every region
//! snapshotted, every lease released, then the HTTP side drained).

use std::process::ExitCode;

use region_sim::{Application, Settings};
use service::Exit;

#[tokio::main]
async fn main() -> ExitCode {
    service::init_json_logs();
    service::exit_code("region-sim", run().await)
}

async fn run() -> Result<(), Exit> {
    let app = Application::build(Settings::from_env()?)
        .await
        .map_err(Exit::start)?;
    app.run_until_stopped(service::shutdown_signal()).await;
    Ok(())
}
