//! `game-bench`: drives virtual players through a running stack and writes the report. Run it
//! through `ops/bench`, which starts a fresh stack and gives it the environment below.
//!
//! Environment: `GATEWAY_URL`, `NATS_URL` with `NATS_USER` and `NATS_PASSWORD` (a user that
//! may read `FACTS` and make a stream), `REDIS_URL`, `MONGODB_URI`; `GATEWAY_CONFIG` is named
//! in the report.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Parser;

use game_bench::plan::Plan;
use game_bench::run::{Target, run};

#[derive(Parser)]
#[command(about = "Drives virtual players through the game and reports what it measured")]
struct Args {
    /// How long players play, in seconds (the ramp included).
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// How many players at full strength.
    #[arg(long, default_value_t = 50)]
    players: usize,
    /// Where the report goes (default bench-results/<today>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// How long each ceiling runs, in seconds (default: the mix file's).
    #[arg(long)]
    ceiling_seconds: Option<f64>,
    /// The mix file.
    #[arg(long, default_value = "config/bench.toml")]
    mix: PathBuf,
    /// Instead of running: put the report of the run in DIR into README.md (and its plots
    /// under docs/bench/).
    #[arg(long, value_name = "DIR")]
    readme: Option<PathBuf>,
}

/// What can go wrong, as a message for the operator.
type Fallible<T> = Result<T, String>;

fn env(key: &str) -> Fallible<String> {
    std::env::var(key).map_err(|_| format!("{key} is not set (run through ops/bench)"))
}

fn gateway(url: &str) -> Fallible<SocketAddr> {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    host.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("GATEWAY_URL {url} is not http://host:port"))
}

async fn main_() -> Fallible<()> {
    let args = Args::parse();
    let command = format!(
        "ops/bench --seconds {} --players {}",
        args.seconds, args.players
    );
    if let Some(dir) = args.readme {
        game_bench::readme::update(std::path::Path::new("."), &dir, &command_of(&dir))
            .map_err(|e| e.to_string())?;
        println!("README.md and docs/bench/ updated from {}", dir.display());
        return Ok(());
    }
    let mut plan = Plan::load(&args.mix).map_err(|e| e.to_string())?;
    if let Some(seconds) = args.ceiling_seconds.filter(|s| *s > 0.0) {
        plan.ceilings.seconds = seconds;
    }
    let target = Target {
        gateway: gateway(&env("GATEWAY_URL")?)?,
        nats_url: env("NATS_URL")?,
        nats: nats_topology::publish::Credentials::from_env(|k| std::env::var(k).ok())
            .map_err(|e| format!("{}: {}", e.key, e.why))?,
        redis_url: env("REDIS_URL")?,
        mongodb_uri: env("MONGODB_URI")?,
    };
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("bench-results").join(chrono::Utc::now().format("%Y-%m-%d").to_string())
    });
    // The niceness ops/up started SecantusDB at beside the services, when it started it (see
    // `MONGO_NICE`).
    let mongo = match std::env::var("BENCH_MONGO_NICE").map(|n| n.parse::<i32>()) {
        Ok(Ok(0)) => ", SecantusDB at the services' priority".to_owned(),
        Ok(Ok(n)) => format!(", SecantusDB at nice {n} beside the services"),
        _ => String::new(),
    };
    let setup = format!(
        "Mix {} (think {} ms, {:.0} % with `?wait=true`), gateway settings {}{mongo}, a {} build.",
        args.mix.display(),
        plan.pace.think_ms,
        plan.pace.wait_share * 100.0,
        std::env::var("GATEWAY_CONFIG").unwrap_or_else(|_| "config/gateway.toml".into()),
        std::env::var("BENCH_PROFILE").unwrap_or_else(|_| "release".into()),
    );
    let results = run(target, plan, args.players, args.seconds, setup)
        .await
        .map_err(|e| e.to_string())?;
    results.write(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("command.txt"), format!("{command}\n")).map_err(|e| e.to_string())?;
    println!("{}", results.markdown(&results.summary(), ""));
    println!("written to {}", out.display());
    Ok(())
}

/// The command that made the run in `dir`, as it noted it.
fn command_of(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("command.txt"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|_| "ops/bench".to_owned())
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("game-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("game-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
