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
        .envs(test_servers::NatsUsers::random().env())
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

/// The cluster config really forms a cluster: the topology gets three replicas, and losing one
/// node loses no acknowledged fact and does not stop publishing.
#[tokio::test]
async fn the_cluster_config_keeps_three_replicas_and_survives_a_lost_node() {
    use std::time::{Duration, Instant};

    use nats_topology::topology::FACTS;
    use nats_topology::{Outgoing, Settings, Topology};

    let mut cluster =
        test_servers::NatsCluster::start(&config("cluster.conf")).expect("three nodes");
    let admin = nats_topology::Credentials::user(
        "admin",
        cluster.users.password("admin").unwrap_or_default(),
    );
    let (_client, js) = nats_topology::connect(&cluster.url(), "test", &admin)
        .await
        .expect("connect to every node");
    let topology = Topology::new(&Settings::cluster());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The first requests fail until the nodes have elected a meta leader.
        match nats_topology::ensure(&js, &topology).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "ensure on the cluster: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut facts = js.get_stream(FACTS).await.expect("FACTS");
    let info = facts.info().await.expect("info");
    assert_eq!(info.config.num_replicas, 3);

    let first = nats_topology::publish(
        &js,
        Outgoing::new("fact._global.account_registered", "a-1", "one"),
    )
    .await
    .expect("stored on a majority");

    cluster.nodes[2].stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        match nats_topology::publish(
            &js,
            Outgoing::new("fact._global.account_registered", "a-2", "two"),
        )
        .await
        {
            Ok(ack) => break ack,
            Err(e) => assert!(Instant::now() < deadline, "publish with one node down: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(second.sequence > first.sequence);
    let kept = facts
        .get_raw_message(first.sequence)
        .await
        .expect("the first fact is still there");
    assert_eq!(kept.payload.as_ref(), b"one");
}
