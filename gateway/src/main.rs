//! The gateway binary: configuration from the environment (see `config/gateway.toml`), JSON logs,
//! and a graceful stop on Ctrl-C or SIGTERM.

use std::process::ExitCode;

use gateway::{Application, Settings};
use service::Exit;

// glibc's allocator took about a seventh of the gateway's time under load (perf); mimalloc's
// per-thread pages suit many small short-lived allocations across tokio's workers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    service::init_json_logs();
    service::exit_code("gateway", run().await)
}

async fn run() -> Result<(), Exit> {
    let app = Application::build(Settings::from_env()?)
        .await
        .map_err(Exit::start)?;
    app.run_until_stopped(service::shutdown_signal())
        .await
        .map_err(Exit::failed)
}
