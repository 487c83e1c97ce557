//! The shipped `nats-server` configurations are valid, and each profile says what it promises.

use std::path::{Path, PathBuf};
use std::process::Command;

fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

fn nats_server() -> PathBuf {
    let venv = test_servers::venv_bin().join("nats-server");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("nats-server")
    }
}

/// Runs `nats-server -t` (check the configuration and exit) with the environment a config reads.
fn check(name: &str) -> std::process::Output {
    Command::new(nats_server())
        .args(["-t", "-c"])
        .arg(config(name))
        .envs([
            ("NATS_SERVER_NAME", "game-1"),
            ("NATS_LISTEN", "127.0.0.1:4222"),
            ("NATS_HTTP", "127.0.0.1:8222"),
            ("NATS_STORE_DIR", "/tmp/game-nats"),
            ("NATS_CLUSTER_LISTEN", "127.0.0.1:6222"),
            ("NATS_ROUTE_1", "nats-route://127.0.0.1:6222"),
            ("NATS_ROUTE_2", "nats-route://127.0.0.1:6223"),
            ("NATS_ROUTE_3", "nats-route://127.0.0.1:6224"),
        ])
        .output()
        .expect("nats-server runs (ops/install installs it)")
}

#[test]
fn every_shipped_config_is_valid() {
    for name in ["local.conf", "local-durable.conf", "cluster.conf"] {
        let out = check(name);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn durable_profiles_fsync_every_write_and_the_fast_one_does_not() {
    let read = |name: &str| std::fs::read_to_string(config(name)).expect("config");
    let fsyncs = |text: &str| text.lines().any(|l| l.trim() == "sync_interval: always");
    assert!(!fsyncs(&read("local.conf")));
    assert!(fsyncs(&read("local-durable.conf")));
    assert!(fsyncs(&read("cluster.conf")));
}
