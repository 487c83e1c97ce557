//! The gateway's configuration: a TOML file (`config/gateway.toml` unless `GATEWAY_CONFIG` names
//! another) with environment variables over it, checked once at start-up. Every error names the
//! key that is wrong; secrets are never printed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use schemas::WorldConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
pub use service::SettingsError;
use service::bad;

/// A rate: `rate_per_sec` requests per second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per second.
    pub rate_per_sec: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// The rate-limit rules: per client IP and per player, stricter on the auth routes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Register and log in, per IP.
    pub auth_per_ip: Rate,
    /// Every other route, per IP.
    pub api_per_ip: Rate,
    /// Commands, per player.
    pub commands_per_player: Rate,
    /// Reads, per player.
    pub reads_per_player: Rate,
    /// Failed logins, per account (by lower-cased username, whether it exists or not): when a
    /// guesser has spent the budget, every login of that account is refused, the right password
    /// too, until it refills.
    #[serde(default = "RateLimits::default_login_failures")]
    pub login_failures_per_account: Rate,
}

impl RateLimits {
    /// Ten wrong passwords at once, then one every 20 seconds.
    fn default_login_failures() -> Rate {
        Rate {
            rate_per_sec: 0.05,
            burst: 10,
        }
    }
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen (`GATEWAY_ADDR`).
    pub addr: SocketAddr,
    /// NATS server(s) (`NATS_URL`).
    pub nats_url: String,
    /// Who it is to NATS (`NATS_USER`, `NATS_PASSWORD`).
    pub nats_credentials: nats_topology::Credentials,
    /// Redis (`REDIS_URL`): one server's URL, or a Redis Cluster's seed nodes' separated by
    /// commas (see [`service::redis::Target`]).
    pub redis_url: String,
    /// MongoDB (`MONGODB_URI`).
    pub mongodb_uri: String,
    /// The database holding accounts and read models (`MONGODB_DATABASE`).
    pub mongodb_database: String,
    /// The HMAC key signing access tokens (`JWT_SECRET`, at least 32 bytes).
    pub jwt_secret: SecretString,
    /// The tokens' `iss`.
    pub jwt_issuer: String,
    /// The tokens' `aud`.
    pub jwt_audience: String,
    /// How long an access token (and its session) lives.
    pub token_ttl: Duration,
    /// Threads hashing passwords, at a lower priority than the rest (`[auth]
    /// password_workers`; by default half the cores, at least one).
    pub password_workers: usize,
    /// How many hashes may wait for a worker before a login or a registration is answered 503
    /// (`[auth] password_queue`, 256 by default).
    pub password_queue: usize,
    /// Keys accepted in `X-Api-Key` on admin routes (`ADMIN_API_KEY`, comma-separated).
    pub admin_api_keys: Vec<SecretString>,
    /// An admin account to create at start-up when missing
    /// (`BOOTSTRAP_ADMIN_USERNAME`, `BOOTSTRAP_ADMIN_PASSWORD`).
    pub bootstrap_admin: Option<(String, SecretString)>,
    /// The largest request body accepted.
    pub body_limit_bytes: usize,
    /// How long `?wait=true` waits by default, and at most.
    pub wait_default: Duration,
    /// The longest wait a client may ask for.
    pub wait_max: Duration,
    /// The rate-limit rules.
    pub rate_limits: RateLimits,
    /// How far a live stream sees: the regions within this distance of the avatar are
    /// streamed, so what stands just across a border is seen.
    pub stream_interest_radius: f64,
    /// The most live streams one player may hold open on a gateway at once.
    pub stream_max_per_player: usize,
    /// The most live streams one client address may hold open on a gateway at once.
    pub stream_max_per_ip: usize,
    /// How often a gateway checks in Redis that the sessions of its open streams still live (a
    /// backstop: the end of a session is announced, and an expiry is timed).
    pub stream_session_check: Duration,
    /// How long the messages sent to a live stream's client at once (those queued for it, 64 at
    /// most) may wait for the client to read them before the stream is closed as too slow
    /// (`stream.send_timeout_ms`): a client that stops reading holds no socket longer than this.
    pub stream_send_timeout: Duration,
    /// The regions (`REGIONS_CONFIG`, default `config/regions.toml`).
    pub world: WorldConfig,
    /// Copies of every stream (`NATS_REPLICAS`).
    pub nats_replicas: usize,
    /// The reverse proxies in front of the gateway (`GATEWAY_TRUSTED_PROXIES`, comma-separated
    /// addresses): a request from one of them is taken to come from the address it names in
    /// `X-Forwarded-For`; from anyone else, that header is ignored. Empty by default.
    pub trusted_proxies: Vec<IpAddr>,
    /// How long a stopping gateway gives the requests in flight and the close frames of its live
    /// streams before it gives them up (`GATEWAY_DRAIN_DEADLINE_MS`, `drain_deadline_ms`).
    pub drain_deadline: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    addr: Option<String>,
    drain_deadline_ms: Option<u64>,
    mongodb_database: Option<String>,
    body_limit_bytes: Option<usize>,
    auth: Option<AuthFile>,
    wait: Option<WaitFile>,
    stream: Option<StreamFile>,
    rate_limits: RateLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamFile {
    interest_radius: Option<f64>,
    max_per_player: Option<usize>,
    max_per_ip: Option<usize>,
    session_check_ms: Option<u64>,
    send_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    issuer: Option<String>,
    audience: Option<String>,
    token_ttl_secs: Option<u64>,
    password_workers: Option<usize>,
    password_queue: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitFile {
    default_ms: Option<u64>,
    max_ms: Option<u64>,
}

/// The most password workers accepted.
const MAX_PASSWORD_WORKERS: usize = 256;
/// The longest password queue a gateway takes: each waiting login holds a connection.
const MAX_PASSWORD_QUEUE: usize = 65_536;

/// How long a message to a live stream's client waits for it to read, unless
/// `stream.send_timeout_ms` says otherwise.
const DEFAULT_SEND_TIMEOUT_MS: u64 = 10_000;
/// The longest `stream.send_timeout_ms` taken (ten minutes).
const MAX_SEND_TIMEOUT_MS: u64 = 600_000;

/// The longest drain deadline accepted: a stop that waits longer is taken for a typo (an
/// orchestrator kills a process that takes this long anyway).
const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(600);

/// Secrets the project has published (the development defaults `ops/up` once used, in its
/// history and docs): anyone may know them, so a gateway reachable from other machines refuses
/// them.
const PUBLIC_SECRETS: &[&str] = &[
    "dev-jwt-secret-not-for-production-0123",
    "dev-admin-key",
    "dev-admin-password",
];

impl Settings {
    /// Reads the process environment and the files it names.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::load(service::config::env_var)
    }

    /// Reads settings with `env` standing for the environment (tests pass a map).
    pub fn load(env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let file: File = service::config::parse(&env, "GATEWAY_CONFIG", "gateway.toml")?;
        let world = service::config::read_regions(&env, WorldConfig::from_toml)?;
        let addr = service::config::listen_addr(
            &env,
            "GATEWAY_ADDR",
            file.addr.unwrap_or_else(|| "127.0.0.1:8080".into()),
        )?;

        let jwt_secret = env("JWT_SECRET").ok_or_else(|| bad("JWT_SECRET", "is required"))?;
        if jwt_secret.len() < 32 {
            return Err(bad("JWT_SECRET", "must be at least 32 bytes"));
        }
        let admin_api_keys: Vec<SecretString> = env("ADMIN_API_KEY")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| SecretString::from(k.to_owned()))
            .collect();
        if admin_api_keys.iter().any(|k| k.expose_secret().len() < 12) {
            return Err(bad(
                "ADMIN_API_KEY",
                "every key must be at least 12 characters",
            ));
        }
        let bootstrap_admin = match (
            env("BOOTSTRAP_ADMIN_USERNAME"),
            env("BOOTSTRAP_ADMIN_PASSWORD"),
        ) {
            (None, None) => None,
            (Some(user), Some(password)) => Some((user, SecretString::from(password))),
            (Some(_), None) => {
                return Err(bad(
                    "BOOTSTRAP_ADMIN_PASSWORD",
                    "is required with BOOTSTRAP_ADMIN_USERNAME",
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "BOOTSTRAP_ADMIN_USERNAME",
                    "is required with BOOTSTRAP_ADMIN_PASSWORD",
                ));
            }
        };

        if !addr.ip().is_loopback() {
            let given = [
                ("JWT_SECRET", Some(jwt_secret.as_str())),
                (
                    "BOOTSTRAP_ADMIN_PASSWORD",
                    bootstrap_admin.as_ref().map(|(_, p)| p.expose_secret()),
                ),
            ]
            .into_iter()
            .chain(
                admin_api_keys
                    .iter()
                    .map(|k| ("ADMIN_API_KEY", Some(k.expose_secret()))),
            );
            for (key, value) in given {
                if value.is_some_and(|v| PUBLIC_SECRETS.contains(&v)) {
                    return Err(bad(
                        key,
                        format!(
                            "is a development value anyone can read in the project; set your own \
                             before listening on {addr}, which is not loopback"
                        ),
                    ));
                }
            }
        }

        let auth = file.auth.unwrap_or(AuthFile {
            issuer: None,
            audience: None,
            token_ttl_secs: None,
            password_workers: None,
            password_queue: None,
        });
        let token_ttl = Duration::from_secs(auth.token_ttl_secs.unwrap_or(3600));
        if token_ttl.is_zero() {
            return Err(bad("auth.token_ttl_secs", "must be positive"));
        }
        let password_workers = match auth.password_workers {
            Some(n) if (1..=MAX_PASSWORD_WORKERS).contains(&n) => n,
            Some(_) => {
                return Err(bad(
                    "auth.password_workers",
                    format!("must be from 1 to {MAX_PASSWORD_WORKERS}"),
                ));
            }
            // Half the cores: logins never take more than that from the game.
            None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
        };
        let password_queue = match auth.password_queue {
            None => crate::auth::passwords::QUEUE,
            Some(n) if (1..=MAX_PASSWORD_QUEUE).contains(&n) => n,
            Some(_) => {
                return Err(bad(
                    "auth.password_queue",
                    format!("must be from 1 to {MAX_PASSWORD_QUEUE}"),
                ));
            }
        };
        let wait = file.wait.unwrap_or(WaitFile {
            default_ms: None,
            max_ms: None,
        });
        let wait_default = Duration::from_millis(wait.default_ms.unwrap_or(2000));
        let wait_max = Duration::from_millis(wait.max_ms.unwrap_or(10_000));
        if wait_default > wait_max {
            return Err(bad("wait.default_ms", "must not exceed wait.max_ms"));
        }
        let stream_file = file.stream.as_ref();
        let stream_max_per_player = stream_file.and_then(|s| s.max_per_player).unwrap_or(4);
        let stream_max_per_ip = stream_file.and_then(|s| s.max_per_ip).unwrap_or(256);
        let stream_session_check =
            Duration::from_millis(stream_file.and_then(|s| s.session_check_ms).unwrap_or(500));
        for (key, cap) in [
            ("stream.max_per_player", stream_max_per_player),
            ("stream.max_per_ip", stream_max_per_ip),
        ] {
            if cap == 0 {
                return Err(bad(key, "must be at least 1"));
            }
        }
        if stream_session_check < Duration::from_millis(10) {
            return Err(bad("stream.session_check_ms", "must be at least 10"));
        }
        let stream_send_timeout_ms = stream_file
            .and_then(|s| s.send_timeout_ms)
            .unwrap_or(DEFAULT_SEND_TIMEOUT_MS);
        if !(10..=MAX_SEND_TIMEOUT_MS).contains(&stream_send_timeout_ms) {
            return Err(bad(
                "stream.send_timeout_ms",
                format!("must be from 10 to {MAX_SEND_TIMEOUT_MS}"),
            ));
        }
        let stream_send_timeout = Duration::from_millis(stream_send_timeout_ms);
        let stream_interest_radius = file.stream.and_then(|s| s.interest_radius).unwrap_or(100.0);
        if !(stream_interest_radius.is_finite() && stream_interest_radius >= 0.0) {
            return Err(bad(
                "stream.interest_radius",
                "must be a finite distance, 0 or more",
            ));
        }
        let limits = &file.rate_limits;
        for (key, rate) in [
            ("rate_limits.auth_per_ip", limits.auth_per_ip),
            ("rate_limits.api_per_ip", limits.api_per_ip),
            (
                "rate_limits.commands_per_player",
                limits.commands_per_player,
            ),
            ("rate_limits.reads_per_player", limits.reads_per_player),
            (
                "rate_limits.login_failures_per_account",
                limits.login_failures_per_account,
            ),
        ] {
            if !(rate.rate_per_sec.is_finite() && rate.rate_per_sec > 0.0) || rate.burst == 0 {
                return Err(bad(
                    key,
                    "rate_per_sec must be positive and burst at least 1",
                ));
            }
        }
        let nats_replicas = match env("NATS_REPLICAS").as_deref() {
            None | Some("1") => 1,
            Some("3") => 3,
            Some(other) => {
                return Err(bad(
                    "NATS_REPLICAS",
                    format!("must be 1 or 3, not {other:?}"),
                ));
            }
        };
        let trusted_proxies = trusted_proxies(env("GATEWAY_TRUSTED_PROXIES").as_deref())?;
        let drain_deadline = drain_deadline(
            env("GATEWAY_DRAIN_DEADLINE_MS").as_deref(),
            file.drain_deadline_ms,
        )?;
        Ok(Self {
            addr,
            nats_url: env("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            nats_credentials: nats_topology::Credentials::from_env(&env)?,
            redis_url: env("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            mongodb_uri: env("MONGODB_URI")
                .unwrap_or_else(|| "mongodb://127.0.0.1:27017/?directConnection=true".into()),
            mongodb_database: env("MONGODB_DATABASE")
                .or(file.mongodb_database)
                .unwrap_or_else(|| "game".into()),
            jwt_secret: SecretString::from(jwt_secret),
            jwt_issuer: auth.issuer.unwrap_or_else(|| "game-gateway".into()),
            jwt_audience: auth.audience.unwrap_or_else(|| "game-clients".into()),
            token_ttl,
            password_workers,
            password_queue,
            admin_api_keys,
            bootstrap_admin,
            body_limit_bytes: file.body_limit_bytes.unwrap_or(16 * 1024),
            wait_default,
            wait_max,
            rate_limits: file.rate_limits,
            stream_interest_radius,
            stream_max_per_player,
            stream_max_per_ip,
            stream_session_check,
            stream_send_timeout,
            world,
            nats_replicas,
            trusted_proxies,
            drain_deadline,
        })
    }
}

/// The most proxies `GATEWAY_TRUSTED_PROXIES` may name: a deployment has a handful.
const MAX_TRUSTED_PROXIES: usize = 64;

fn trusted_proxies(text: Option<&str>) -> Result<Vec<IpAddr>, SettingsError> {
    let key = "GATEWAY_TRUSTED_PROXIES";
    let mut proxies = Vec::new();
    for part in text.unwrap_or_default().split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let ip: IpAddr = part
            .parse()
            .map(|ip: IpAddr| ip.to_canonical())
            .map_err(|_| {
                bad(
                    key,
                    format!("{part:?} is not an IP address (name each proxy's address, no ranges)"),
                )
            })?;
        if ip.is_unspecified() {
            return Err(bad(key, format!("{ip} would trust every client")));
        }
        proxies.push(ip);
    }
    if proxies.len() > MAX_TRUSTED_PROXIES {
        return Err(bad(
            key,
            format!("names more than {MAX_TRUSTED_PROXIES} proxies"),
        ));
    }
    Ok(proxies)
}

/// The drain deadline: the environment's `GATEWAY_DRAIN_DEADLINE_MS` over the file's
/// `drain_deadline_ms`, 5 s by default; an error names whichever was given.
fn drain_deadline(env: Option<&str>, file: Option<u64>) -> Result<Duration, SettingsError> {
    // Long enough for a command waiting its default 2 s and a close frame's 1 s, short of the
    // 10 s a container is given to stop before it is killed.
    let (key, ms) = match (env, file) {
        (Some(text), _) => {
            let key = "GATEWAY_DRAIN_DEADLINE_MS";
            let ms = text
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(key, format!("{text:?} is not a number of milliseconds")))?;
            (key, ms)
        }
        (None, Some(ms)) => ("drain_deadline_ms", ms),
        (None, None) => return Ok(Duration::from_secs(5)),
    };
    let deadline = Duration::from_millis(ms);
    if deadline.is_zero() || deadline > MAX_DRAIN_DEADLINE {
        return Err(bad(
            key,
            format!(
                "must be from 1 to {} ms, not {ms}",
                MAX_DRAIN_DEADLINE.as_millis()
            ),
        ));
    }
    Ok(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::load(service::config::env_of(pairs))
    }

    const SECRET: (&str, &str) = ("JWT_SECRET", "0123456789abcdef0123456789abcdef");

    #[test]
    fn published_development_secrets_are_refused_beyond_loopback() {
        let dev = [
            ("JWT_SECRET", "dev-jwt-secret-not-for-production-0123"),
            ("ADMIN_API_KEY", "dev-admin-key"),
            ("BOOTSTRAP_ADMIN_USERNAME", "admin"),
            ("BOOTSTRAP_ADMIN_PASSWORD", "dev-admin-password"),
        ];
        let mut on_loopback = dev.to_vec();
        on_loopback.push(("GATEWAY_ADDR", "127.0.0.1:8080"));
        assert!(with(&on_loopback).is_ok(), "a laptop keeps its convenience");
        for (key, _) in [dev[0], dev[1], dev[3]] {
            let mut exposed: Vec<(&str, &str)> = vec![
                ("GATEWAY_ADDR", "0.0.0.0:8080"),
                SECRET,
                ("ADMIN_API_KEY", "an-admin-key-of-our-own"),
                ("BOOTSTRAP_ADMIN_USERNAME", "admin"),
                ("BOOTSTRAP_ADMIN_PASSWORD", "a password of our own"),
            ];
            assert!(with(&exposed).is_ok(), "our own secrets are fine anywhere");
            let public = dev.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            exposed.retain(|(k, _)| *k != key);
            exposed.push((key, public.unwrap_or_default()));
            let err = with(&exposed).expect_err("a published secret on 0.0.0.0");
            assert_eq!(err.key, key);
            assert!(err.why.contains("development value"), "{}", err.why);
        }
    }

    #[test]
    fn the_shipped_files_and_a_secret_are_enough() {
        let s = with(&[SECRET]).expect("valid");
        assert_eq!(s.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.world.regions.len(), 4);
        assert!(s.admin_api_keys.is_empty());
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let s = with(&[
            SECRET,
            ("GATEWAY_ADDR", "0.0.0.0:9000"),
            ("ADMIN_API_KEY", "first-key-123, second-key-456"),
        ])
        .expect("valid");
        assert_eq!(s.addr.to_string(), "0.0.0.0:9000");
        assert_eq!(s.admin_api_keys.len(), 2);
    }

    #[test]
    fn errors_name_the_key() {
        for (pairs, key) in [
            (vec![], "JWT_SECRET"),
            (vec![("JWT_SECRET", "short")], "JWT_SECRET"),
            (vec![SECRET, ("GATEWAY_ADDR", "nowhere")], "GATEWAY_ADDR"),
            (vec![SECRET, ("ADMIN_API_KEY", "short")], "ADMIN_API_KEY"),
            (
                vec![SECRET, ("BOOTSTRAP_ADMIN_USERNAME", "root")],
                "BOOTSTRAP_ADMIN_PASSWORD",
            ),
            (vec![SECRET, ("NATS_REPLICAS", "2")], "NATS_REPLICAS"),
            (
                vec![SECRET, ("GATEWAY_CONFIG", "/nonexistent.toml")],
                "GATEWAY_CONFIG",
            ),
        ] {
            let err = with(&pairs).expect_err(key);
            assert_eq!(err.key, key, "{err}");
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_and_nothing_wider() {
        let s = with(&[SECRET, ("GATEWAY_TRUSTED_PROXIES", " 10.40.0.10, ::1 ,")]).expect("valid");
        assert_eq!(
            s.trusted_proxies,
            vec![
                "10.40.0.10".parse::<IpAddr>().expect("ip"),
                "::1".parse().expect("ip")
            ]
        );
        assert!(with(&[SECRET]).expect("valid").trusted_proxies.is_empty());
        let many = vec!["10.0.0.1"; MAX_TRUSTED_PROXIES + 1].join(",");
        for bad in [
            "10.0.0.0/8",
            "proxy.internal",
            "0.0.0.0",
            "::",
            "10.0.0.1\u{200b}",
            "999.1.1.1",
            many.as_str(),
        ] {
            let err = with(&[SECRET, ("GATEWAY_TRUSTED_PROXIES", bad)]).expect_err(bad);
            assert_eq!(err.key, "GATEWAY_TRUSTED_PROXIES", "{err}");
        }
    }

    /// The settings of the shipped `gateway.toml` with its line `line` changed to `changed`.
    fn with_shipped_line(line: &str, changed: &str) -> Result<Settings, SettingsError> {
        let shipped = std::fs::read_to_string(service::config::shipped_dir().join("gateway.toml"))
            .expect("the shipped file");
        let text = shipped.replace(line, changed);
        assert_ne!(text, shipped, "the shipped file has the line {line:?}");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).expect("write");
        let path = path.to_string_lossy().into_owned();
        with(&[SECRET, ("GATEWAY_CONFIG", &path)])
    }

    #[test]
    fn a_stream_radius_that_is_not_a_distance_is_refused() {
        for radius in ["-1.0", "nan", "inf"] {
            let err = with_shipped_line(
                "interest_radius = 100.0",
                &format!("interest_radius = {radius}"),
            )
            .expect_err(radius);
            assert_eq!(err.key, "stream.interest_radius", "{err}");
        }
    }

    #[test]
    fn the_drain_deadline_comes_from_the_environment_over_the_file() {
        assert_eq!(
            with(&[SECRET]).expect("valid").drain_deadline,
            Duration::from_millis(5000),
            "the shipped file's"
        );
        let s = with(&[SECRET, ("GATEWAY_DRAIN_DEADLINE_MS", " 250 ")]).expect("valid");
        assert_eq!(s.drain_deadline, Duration::from_millis(250));
        for bad in ["soon", "-1", "1.5", "0", "600001", "18446744073709551616"] {
            let err = with(&[SECRET, ("GATEWAY_DRAIN_DEADLINE_MS", bad)]).expect_err(bad);
            assert_eq!(err.key, "GATEWAY_DRAIN_DEADLINE_MS", "{err}");
        }
    }

    #[test]
    fn a_drain_deadline_of_nothing_or_of_hours_in_the_file_is_refused() {
        let line = "drain_deadline_ms = 5000";
        let s = with_shipped_line(line, "drain_deadline_ms = 800").expect("valid");
        assert_eq!(s.drain_deadline, Duration::from_millis(800));
        for ms in ["0", "86400000"] {
            let err = with_shipped_line(line, &format!("drain_deadline_ms = {ms}")).expect_err(ms);
            assert_eq!(err.key, "drain_deadline_ms", "{err}");
        }
    }

    #[test]
    fn password_workers_are_a_count_from_one() {
        let line = "# password_workers = 1";
        let default = with(&[SECRET]).expect("valid").password_workers;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(default, (cores / 2).max(1), "half the cores by default");
        let s = with_shipped_line(line, "password_workers = 3").expect("valid");
        assert_eq!(s.password_workers, 3);
        for bad in ["0", "257"] {
            let err = with_shipped_line(line, &format!("password_workers = {bad}")).expect_err(bad);
            assert_eq!(err.key, "auth.password_workers", "{err}");
        }
        // Not a whole number that fits: the file does not parse, and says where.
        for bad in ["-1", "1.5", "\"two\"", "18446744073709551616"] {
            let err = with_shipped_line(line, &format!("password_workers = {bad}")).expect_err(bad);
            assert_eq!(err.key, "GATEWAY_CONFIG", "{err}");
            assert!(err.why.contains("password_workers"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_password_queue_is_a_count_from_one() {
        let line = "# password_queue = 256";
        assert_eq!(with(&[SECRET]).expect("valid").password_queue, 256);
        let s = with_shipped_line(line, "password_queue = 1").expect("valid");
        assert_eq!(s.password_queue, 1);
        refused_in_place_of(
            line,
            ("auth", "password_queue"),
            &["0", "65537", "9223372036854775807"],
            &["-1", "0.5", "\"many\"", "18446744073709551616", "[]"],
        );
    }

    /// Each of `out_of_range` in place of the shipped `line` is refused naming `section.name`;
    /// each of `not_a_count` (a value of the wrong type or size) as a file that does not read,
    /// naming `name`.
    fn refused_in_place_of(
        line: &str,
        (section, name): (&str, &str),
        out_of_range: &[&str],
        not_a_count: &[&str],
    ) {
        for bad in out_of_range {
            let err = with_shipped_line(line, &format!("{name} = {bad}")).expect_err(bad);
            assert_eq!(err.key, format!("{section}.{name}"), "{err}");
        }
        for bad in not_a_count {
            let err = with_shipped_line(line, &format!("{name} = {bad}")).expect_err(bad);
            assert_eq!(err.key, "GATEWAY_CONFIG", "{err}");
            assert!(err.why.contains(name), "{bad}: {err}");
        }
    }

    #[test]
    fn the_stream_send_timeout_is_milliseconds_within_bounds() {
        let line = "send_timeout_ms = 10000";
        let shipped = with(&[SECRET]).expect("valid").stream_send_timeout;
        assert_eq!(shipped, Duration::from_secs(10));
        let s = with_shipped_line(line, "send_timeout_ms = 10").expect("valid");
        assert_eq!(s.stream_send_timeout, Duration::from_millis(10));
        refused_in_place_of(
            line,
            ("stream", "send_timeout_ms"),
            &["0", "9", "600001", "9223372036854775807"],
            &["-1", "0.5", "\"soon\"", "18446744073709551616", "[]"],
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = with(&[SECRET, ("ADMIN_API_KEY", "very-secret-key")]).expect("valid");
        let printed = format!("{s:?}");
        assert!(
            !printed.contains(SECRET.1) && !printed.contains("very-secret-key"),
            "{printed}"
        );
    }
}
