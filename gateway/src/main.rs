//! The gateway binary: configuration from the environment (see `config/gateway.toml`), JSON logs,
//! and a graceful stop on Ctrl-C or SIGTERM.

use std::process::ExitCode;

use gateway::{Application, Settings};

// glibc's allocator took about a seventh of the gateway's time under load (perf); mimalloc's
// per-thread pages suit many small short-lived allocations across tokio's workers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    service::init_json_logs();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped(service::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
