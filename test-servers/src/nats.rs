//! `nats-server` as the project configures it: the role users and their passwords, the shipped
//! config files, a secured server, and a three-node cluster.

use std::path::{Path, PathBuf};

use crate::ports::free_ports;
use crate::server::{Error, Kind, PORT_ATTEMPTS, Server, find_binary};

/// The users `nats/config/users.conf` declares, with the passwords a secured server was started
/// with (made at random per server).
#[derive(Debug, Clone)]
pub struct NatsUsers {
    passwords: Vec<(&'static str, &'static str, String)>,
}

impl NatsUsers {
    /// Every role: its user name and the environment variable its password comes from.
    pub const ROLES: [(&'static str, &'static str); 6] = [
        ("admin", "NATS_ADMIN_PASSWORD"),
        ("gateway", "NATS_GATEWAY_PASSWORD"),
        ("simulator", "NATS_SIMULATOR_PASSWORD"),
        ("projector", "NATS_PROJECTOR_PASSWORD"),
        ("dlq", "NATS_DLQ_PASSWORD"),
        ("analyst", "NATS_ANALYST_PASSWORD"),
    ];

    /// Fresh random passwords for every role.
    pub fn random() -> Self {
        let password = || {
            (0..24)
                .map(|_| fastrand::alphanumeric())
                .collect::<String>()
        };
        Self {
            passwords: Self::ROLES
                .iter()
                .map(|(user, var)| (*user, *var, password()))
                .collect(),
        }
    }

    /// The password of `user`.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.passwords
            .iter()
            .find(|(u, _, _)| *u == user)
            .map(|(_, _, p)| p.as_str())
    }

    /// The environment the config reads them from.
    pub fn env(&self) -> Vec<(String, String)> {
        self.passwords
            .iter()
            .map(|(_, var, p)| ((*var).to_owned(), p.clone()))
            .collect()
    }
}

/// The project's `nats-server` config files (`nats/config/`).
pub fn nats_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nats/config")
        .join(name)
}

impl Server {
    /// A `nats-server` started from the project's `local.conf`, as `ops/up` starts it: JetStream,
    /// and one user per role with only the subjects it needs; the users' passwords are returned
    /// with it.
    pub fn start_secured() -> Result<(Self, NatsUsers), Error> {
        let kind = Kind::Nats;
        let io = |source| Error::Io {
            binary: kind.binary(),
            source,
        };
        let users = NatsUsers::random();
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let ports = free_ports(2).map_err(io)?;
            let mut env = users.env();
            env.push(("NATS_HTTP".to_owned(), format!("127.0.0.1:{}", ports[1])));
            let mut server = Server {
                kind,
                binary: find_binary(kind)?,
                port: ports[0],
                dir: tempfile::Builder::new()
                    .prefix("nats-secured-")
                    .tempdir()
                    .map_err(io)?,
                child: None,
                config: Some((nats_config("local.conf"), env)),
            };
            match server.spawn_and_wait() {
                Err(e) if e.is_port_taken() => last = Some(e),
                started => return started.map(|()| (server, users)),
            }
        }
        Err(last.unwrap_or_else(|| Error::no_free_port(kind)))
    }
}

/// Three `nats-server` nodes clustered with JetStream, each started from a config file that
/// reads its addresses from the environment (like `nats/config/cluster.conf`).
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, in order; stop one to see the cluster survive it.
    pub nodes: Vec<Server>,
    /// The users the nodes accept (the shipped configs include `users.conf`).
    pub users: NatsUsers,
}

impl NatsCluster {
    /// Starts three nodes from `config` on free ports and waits until each answers. JetStream
    /// may still be electing its leaders: retry the first requests with a deadline.
    pub fn start(config: &Path) -> Result<Self, Error> {
        let kind = Kind::Nats;
        let io = |source| Error::Io {
            binary: kind.binary(),
            source,
        };
        let binary = find_binary(kind)?;
        let users = NatsUsers::random();
        let ports = free_ports(9).map_err(io)?;
        let (clients, rest) = ports.split_at(3);
        let (routes, monitors) = rest.split_at(3);
        let route_urls: Vec<String> = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let mut env = vec![
                ("NATS_SERVER_NAME".to_owned(), format!("game-{}", i + 1)),
                ("NATS_HTTP".to_owned(), format!("127.0.0.1:{}", monitors[i])),
                (
                    "NATS_CLUSTER_LISTEN".to_owned(),
                    format!("127.0.0.1:{}", routes[i]),
                ),
            ];
            for (n, url) in route_urls.iter().enumerate() {
                env.push((format!("NATS_ROUTE_{}", n + 1), url.clone()));
            }
            env.extend(users.env());
            let dir = tempfile::Builder::new()
                .prefix("nats-cluster-")
                .tempdir()
                .map_err(io)?;
            nodes.push(Server {
                kind,
                binary: binary.clone(),
                port: clients[i],
                dir,
                child: None,
                config: Some((config.to_owned(), env)),
            });
        }
        for node in &mut nodes {
            node.spawn_and_wait()?;
        }
        Ok(Self { nodes, users })
    }

    /// The client URLs of every node, comma-separated, as NATS clients take them.
    pub fn url(&self) -> String {
        Server::urls(&self.nodes)
    }
}

/// A plain JetStream server's config. The topology reserves its streams' limits (about
/// 12.3 GiB); without `max_file_store`, nats-server allows itself 75 % of the disk free at its
/// start, so tests failed on a machine with less than about 16.5 GB free. The tests store little.
pub(crate) fn plain_nats_config(port: u16, data: &Path) -> String {
    let data = data
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "server_name: test-nats\nlisten: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{data}\"\n  max_file_store: 64GB\n}}\n"
    )
}
