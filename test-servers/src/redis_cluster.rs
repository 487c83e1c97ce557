//! A Redis Cluster of three masters, for the scaled-out topology's tests.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::server::{Error, Kind, READY_POLL, READY_TIMEOUT, Server};

/// A Redis Cluster of three masters (no replicas) on free ports, every slot assigned, ready when
/// returned; its nodes stop when it is dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// The masters, in the order their slot ranges follow.
    pub nodes: Vec<Server>,
}

impl RedisCluster {
    /// Starts three `redis-server`s in cluster mode, joins them with `redis-cli --cluster
    /// create` (the `redis-cli` beside `redis-server`, or on the `PATH`), and waits until every
    /// node says the cluster is ok.
    pub fn start() -> Result<Self, Error> {
        let nodes = (0..3)
            .map(|_| Server::start_kind(Kind::RedisClusterNode))
            .collect::<Result<Vec<_>, _>>()?;
        let cli = nodes[0]
            .binary
            .parent()
            .map(|dir| dir.join("redis-cli"))
            .filter(|cli| cli.exists())
            .unwrap_or_else(|| PathBuf::from("redis-cli"));
        let io = |source| Error::Io {
            binary: "redis-cli",
            source,
        };
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(io)?;
        if !output.status.success() {
            return Err(Error::NotReady {
                binary: "redis-cli",
                why: "--cluster create failed".into(),
                log: String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr),
            });
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &nodes {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .map_err(io)?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::NotReady {
                        binary: "redis-server",
                        why: "the cluster did not reach cluster_state:ok".into(),
                        log: String::from_utf8_lossy(&info.stdout).into_owned(),
                    });
                }
                std::thread::sleep(READY_POLL);
            }
        }
        Ok(Self { nodes })
    }

    /// The seed URLs, separated by commas, as `REDIS_URL` takes a cluster.
    pub fn url(&self) -> String {
        Server::urls(&self.nodes)
    }
}
