//! The whole stack through its front door: the gateway and a region simulator (in this process)
//! and the projector (a process of its own), against real NATS, Redis and MongoDB-compatible
//! servers. Two players meet, fight, chat and pick something up through the REST API; the read
//! models, the live stream, the sessions and the audit trail show every step; the projector is
//! killed and restarted along the way, MongoDB is stopped and restarted while facts come, and a
//! rebuild runs while commands flow; the read models end equal to the fold of the log.

use std::collections::HashMap;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_servers::{Service, Stack};

/// Fast walkers with a long reach, quick attacks, no NPCs, two potions per region. Every number
/// the test relies on is stated; a key the rules gain comes from the shipped file.
const BALANCE: &str = r#"
player_speed = 200.0
player_base_hp = 100
player_hp_per_level = 10
respawn_secs = 1.0
xp_per_level = 100
max_level = 100
pickup_range = 3000.0
inventory_slots = 10
npc = []

[attack]
range = 3.0
cooldown_ms = 200
damage_min = 5
damage_max = 9

[[item]]
kind = "healing_potion"
per_region = 2
respawn_secs = 3600.0
"#;

/// The game's servers, NATS secured as `ops/up` runs it (one user per role, each with only the
/// subjects it needs), a gateway and a simulator in this process, each as its own NATS user.
struct World {
    servers: Stack,
    base: String,
    http: reqwest::Client,
    env: HashMap<&'static str, String>,
    _stop_gateway: tokio::sync::oneshot::Sender<()>,
    _stop_sim: tokio::sync::oneshot::Sender<()>,
}

test_servers::stands_on!(World, servers);

/// A gateway in this process, serving until the returned sender is dropped: its base URL, and
/// the sender.
async fn serve_gateway(settings: gateway::Settings) -> (String, tokio::sync::oneshot::Sender<()>) {
    let gateway = gateway::Application::build(settings)
        .await
        .expect("gateway starts");
    let addr = gateway.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop)
}

impl World {
    async fn start() -> Self {
        let servers = Stack::builder().secured().mongo().redis().start().await;
        let _ = LOGS.set(servers.dir.path().to_path_buf());
        let balance = servers.path("balance.toml");
        std::fs::write(&balance, test_servers::balance::shipped_with(BALANCE)).expect("balance");
        let env: HashMap<&str, String> = HashMap::from([
            ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
            ("SIM_ADDR", "127.0.0.1:0".to_owned()),
            ("SIM_NODE_ID", "sim-e2e".to_owned()),
            ("BALANCE_CONFIG", balance.display().to_string()),
            (
                "JWT_SECRET",
                "e2e-secret-e2e-secret-e2e-secret-00".to_owned(),
            ),
            ("ADMIN_API_KEY", "e2e-admin-key-0123".to_owned()),
        ]);
        let as_user = |role: &str| {
            let mut env = env.clone();
            env.extend(servers.env_for(role));
            move |k: &str| env.get(k).cloned()
        };
        let (base, stop_gateway) =
            serve_gateway(gateway::Settings::load(as_user("gateway")).expect("gateway settings"))
                .await;
        let sim = region_sim::node::Node::start(
            region_sim::settings::Settings::load(as_user("simulator")).expect("simulator settings"),
        )
        .await
        .expect("simulator starts");
        let (stop_sim, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sim.run(async {
            let _ = stopped.await;
        }));
        Self {
            servers,
            base,
            http: reqwest::Client::new(),
            env,
            _stop_gateway: stop_gateway,
            _stop_sim: stop_sim,
        }
    }

    /// Another gateway on the same servers, as a second process behind a load balancer would
    /// be: its address, and what stops it when dropped.
    async fn another_gateway(&self) -> (String, tokio::sync::oneshot::Sender<()>) {
        let mut env = self.env.clone();
        env.extend(self.env_for("gateway"));
        let settings =
            gateway::Settings::load(move |k: &str| env.get(k).cloned()).expect("gateway settings");
        serve_gateway(settings).await
    }

    fn projector(&self) -> Service {
        let port = test_servers::free_port().expect("port");
        let log = self.path(&format!("projector-{port}.log"));
        let mut command = Process::new(env!("CARGO_BIN_EXE_system-tests-projector"));
        command
            .envs(self.env_for("projector"))
            // Gives up on an unreachable server quickly, so an outage shows in the log.
            .env(
                "MONGODB_URI",
                format!("{}&serverSelectionTimeoutMS=500", self.mongo().url()),
            )
            .env("PROJECTOR_ADDR", format!("127.0.0.1:{port}"));
        Service::start(command, log).expect("projector binary")
    }

    async fn post(&self, path: &str, body: Value, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    async fn player(&self, name: &str) -> (String, String) {
        let password = "correct horse battery";
        let (status, body) = self
            .post(
                "/v1/auth/register",
                json!({"username": name, "password": password}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["player_id"].as_str().expect("id").to_owned();
        let (status, body) = self
            .post(
                "/v1/auth/login",
                json!({"username": name, "password": password}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (id, body["access_token"].as_str().expect("token").to_owned())
    }

    /// Sends a command and waits for its outcome; returns the command id and the answer.
    async fn command(&self, token: &str, body: Value) -> (String, Value) {
        let (status, answer) = self
            .post(
                "/v1/commands?wait=true&wait_ms=5000",
                body.clone(),
                Some(token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body} answered {status}: {answer}");
        (
            answer["command_id"]
                .as_str()
                .expect("command id")
                .to_owned(),
            answer,
        )
    }

    /// A read through the gateway at `base`: its status and body.
    async fn read_at(&self, base: &str, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn me(&self, token: &str) -> Value {
        self.get("/v1/players/me", token).await
    }
}

/// [`test_servers::poll::eventually`], with the projectors' last words when it fails.
/// Waits until the audit trail holds the command `id`, and returns its entry.
async fn audit_entry(audit: &mongodb::Collection<Document>, id: &str) -> Document {
    until("the command is audited", || async {
        audit.find_one(doc! {"_id": id}).await.ok().flatten()
    })
    .await
}

async fn until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    if let Some(found) = test_servers::poll::poll(test_servers::poll::PATIENCE, check).await {
        return found;
    }
    let logs = LOGS.get().map(|dir| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("projector-"))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                format!("{}: {tail:#?}", e.file_name().to_string_lossy())
            })
            .collect::<Vec<_>>()
    });
    panic!("timed out waiting until {what}; the projectors said: {logs:#?}");
}

/// Where the projectors' logs are, for a failure to show them.
static LOGS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

fn applied(answer: &Value, kind: &str) {
    assert_eq!(answer["status"], "applied", "{answer}");
    let kinds: Vec<&str> = answer["facts"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["kind"].as_str()).collect())
        .unwrap_or_default();
    assert!(kinds.contains(&kind), "{kind} not among {kinds:?}");
}

#[tokio::test]
async fn two_players_meet_fight_chat_and_every_step_shows_everywhere() {
    let mut world = World::start().await;
    let mut projector = world.projector();
    let (ada, ada_token) = world.player("ada").await;
    let (bo, bo_token) = world.player("bob").await;
    let mut sent = Vec::new();

    for token in [&ada_token, &bo_token] {
        let (id, answer) = world
            .command(token, json!({"type": "spawn", "region": "south-west"}))
            .await;
        applied(&answer, "spawned");
        sent.push(id);
    }
    let bo_at = until("bob's avatar is in the read model", || async {
        let me = world.me(&bo_token).await;
        (me["online"] == true).then(|| me["position"].clone())
    })
    .await;
    until("ada's avatar is in the read model", || async {
        (world.me(&ada_token).await["region"] == "south-west").then_some(())
    })
    .await;

    // Ada watches the live stream.
    let url = format!(
        "{}/v1/stream?access_token={ada_token}",
        world.base.replace("http", "ws")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("stream");

    // She walks up to bo and strikes; he answers in words.
    let x = bo_at["x"].as_f64().expect("x") + 1.0;
    let y = bo_at["y"].as_f64().expect("y");
    let (id, answer) = world
        .command(&ada_token, json!({"type": "move", "x": x, "y": y}))
        .await;
    applied(&answer, "movement_started");
    sent.push(id);
    until("ada has arrived", || async {
        let me = world.me(&ada_token).await;
        (me["position"]["x"].as_f64() == Some(x)).then_some(())
    })
    .await;
    let (id, answer) = world
        .command(&ada_token, json!({"type": "attack", "target": bo}))
        .await;
    applied(&answer, "damaged");
    sent.push(id);
    let (id, answer) = world
        .command(&bo_token, json!({"type": "chat", "text": "ouch, ada!"}))
        .await;
    applied(&answer, "chat_said");
    sent.push(id);

    // The projector dies here and comes back: nothing is lost or doubled.
    projector.kill();
    let nearby = world
        .get(
            "/v1/regions/south-west/entities?x=500&y=500&radius=500",
            &ada_token,
        )
        .await;
    let item = nearby["entities"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "item"))
        .and_then(|e| e["entity_id"].as_str())
        .expect("an item lies in the region")
        .to_owned();
    let (id, answer) = world
        .command(&ada_token, json!({"type": "pickup", "item": item}))
        .await;
    applied(&answer, "item_picked");
    sent.push(id);
    let projector = world.projector();

    // The read models show it all.
    let hurt = until("bo's wound is in the read model", || async {
        let me = world.me(&bo_token).await;
        me["hp"].as_u64().filter(|hp| *hp < 100)
    })
    .await;
    assert!((91..=95).contains(&hurt), "hp {hurt}");
    until("ada's pickup is in the read model", || async {
        let me = world.me(&ada_token).await;
        (me["inventory"][0]["item"] == item.as_str()).then_some(())
    })
    .await;

    // The live stream carried the blow and the words.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !(seen.iter().any(|k: &String| k == "damaged") && seen.iter().any(|k| k == "chat_said")) {
        assert!(Instant::now() < deadline, "the stream showed only {seen:?}");
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await
        else {
            continue;
        };
        if let Ok(text) = message.into_text()
            && let Ok(event) = serde_json::from_str::<Value>(&text)
            && let Some(kind) = event["kind"].as_str()
        {
            seen.push(kind.to_owned());
        }
    }

    // The audit trail has every command, with who and from where, and every fact it caused.
    let audit = world.db().collection::<Document>("audit");
    for id in &sent {
        let command = audit_entry(&audit, id).await;
        assert_eq!(command.get_str("stream"), Ok("COMMANDS"));
        assert!(command.get_str("request_id").is_ok(), "{command}");
        assert!(command.get_str("client_ip").is_ok(), "{command}");
        // Written by the facts' consumer after their read models, apart from the command's
        // entry: waited for as well.
        until("a fact of the command is audited", || async {
            let facts = audit
                .count_documents(doc! {"correlation_id": id.as_str(), "stream": "FACTS"})
                .await
                .ok()?;
            (facts >= 1).then_some(())
        })
        .await;
    }
    let by_ada = audit
        .count_documents(doc! {"actor_id": ada.as_str(), "stream": "COMMANDS"})
        .await
        .expect("count");
    assert_eq!(by_ada, 4, "spawn, move, attack, pickup");
    // Each login is a session, with the address it came from.
    let sessions = world.db().collection::<Document>("sessions");
    for player in [&ada, &bo] {
        let session = until("the login is a session", || async {
            sessions
                .find_one(doc! {"player": player.as_str()})
                .await
                .expect("find")
        })
        .await;
        assert_eq!(session.get_str("client_ip"), Ok("127.0.0.1"));
        assert!(session.get("expires_at").is_some() && session.get("started_at").is_some());
    }

    // MongoDB stops while facts keep coming, and comes back: nothing is lost or doubled.
    // (The gateway routes by the player's cached view, warmed here, while MongoDB is away.)
    let _ = world.me(&bo_token).await;
    world.mongo_mut().stop();
    let (said, answer) = world
        .command(
            &bo_token,
            json!({"type": "chat", "text": "is anyone there?"}),
        )
        .await;
    applied(&answer, "chat_said");
    until("the projector finds MongoDB unavailable", || async {
        projector
            .log()
            .contains("MongoDB unavailable")
            .then_some(())
    })
    .await;
    world.mongo_mut().restart().expect("MongoDB back");
    let audited = until(
        "what was said while MongoDB was away is audited",
        || async {
            audit
                .count_documents(doc! {"correlation_id": said.as_str(), "stream": "FACTS"})
                .await
                .ok()
                .filter(|n| *n > 0)
        },
    )
    .await;
    assert_eq!(audited, 1, "one chat_said, once");
    audit_entry(&audit, &said).await;

    // A rebuild while commands flow ends equal to the live models.
    let walking = {
        let world_base = world.base.clone();
        let token = bo_token.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..20 {
                let _ = http
                    .post(format!("{world_base}/v1/commands"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "move", "x": 480.0 + f64::from(i), "y": 480.0}))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let rebuild = Process::new(env!("CARGO_BIN_EXE_system-tests-projector"))
        .arg("rebuild")
        .envs(world.env_for("projector"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("projector rebuild");
    let output = tokio::task::spawn_blocking(move || rebuild.wait_with_output())
        .await
        .expect("join")
        .expect("rebuild");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    walking.await.expect("walker");
    until("bo's last walk is projected", || async {
        let me = world.me(&bo_token).await;
        (me["position"]["x"].as_f64() == Some(499.0)).then_some(())
    })
    .await;
    let players: Vec<Document> = world
        .db()
        .collection::<Document>("players")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("players");
    assert_eq!(players.len(), 2);
    let ada_doc = players
        .iter()
        .find(|d| d.get_str("_id") == Ok(ada.as_str()))
        .expect("ada");
    assert_eq!(ada_doc.get_array("inventory").map(Vec::len), Ok(1));
    drop(projector);
    // Every service did all of this as its own NATS user, refused nothing.
    let refused: Vec<String> = world
        .nats
        .log()
        .lines()
        .filter(|l| l.contains(" Violation - "))
        .map(str::to_owned)
        .collect();
    assert!(refused.is_empty(), "NATS refused: {refused:#?}");
}

/// The highest `FACTS` sequence an outcome names.
fn last_fact_seq(answer: &Value) -> u64 {
    let seqs: Vec<u64> = answer["fact_seqs"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let facts = answer["facts"].as_array().map_or(0, Vec::len);
    assert_eq!(seqs.len(), facts, "a sequence per fact: {answer}");
    assert!(seqs.iter().all(|&s| s > 0), "{answer}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {answer}");
    *seqs.last().expect("the outcome names its facts")
}

#[tokio::test]
async fn a_client_acts_on_what_it_was_just_told_and_reads_its_own_writes_on_any_gateway() {
    // No projector yet: the read models know nothing of the avatar, so whatever routes the
    // commands below, it is not the projection.
    let world = World::start().await;
    let (other, _stop_other) = world.another_gateway().await;
    let (ada, token) = world.player("ada").await;

    let (_, spawned) = world
        .command(&token, json!({"type": "spawn", "region": "south-west"}))
        .await;
    applied(&spawned, "spawned");
    let spawn_seq = last_fact_seq(&spawned);
    assert!(
        spawned["stream_seq"].as_u64().is_some_and(|s| s > 0),
        "{spawned}"
    );
    let at = spawned["facts"][0]["payload"]["state"]["position"].clone();

    // The very next command, through the other gateway: routed where the spawn put the avatar.
    let step = json!({"type": "move", "x": at["x"].as_f64().expect("x") + 1.0, "y": at["y"]});
    let answer: Value = world
        .http
        .post(format!("{other}/v1/commands?wait=true&wait_ms=5000"))
        .bearer_auth(&token)
        .json(&step)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("an outcome");
    applied(&answer, "movement_started");
    assert!(last_fact_seq(&answer) > spawn_seq);

    // A walk over the border to the east: the region hands the avatar on while it walks, and
    // a command sent once the hand-off is stored goes to the new region.
    let east = json!({"type": "move", "x": 1100.0, "y": at["y"]});
    let (_, answer) = world.command(&token, east).await;
    applied(&answer, "movement_started");
    let facts = world.js.get_stream("FACTS").await.expect("FACTS");
    until("ada is handed to the east", || {
        let facts = facts.clone();
        async move {
            facts
                .get_last_raw_message_by_subject("fact.south-east.handed_off_in")
                .await
                .ok()
        }
    })
    .await;
    let (_, answer) = world
        .command(&token, json!({"type": "move", "x": 1500.0, "y": 500.0}))
        .await;
    applied(&answer, "movement_started");
    assert_eq!(answer["facts"][0]["region"], "south-east", "{answer}");
    let at = answer["facts"][0]["payload"]["from"].clone();
    let moved_seq = last_fact_seq(&answer);

    // A read that asks for the spawn waits a bounded time, then says how far the read models
    // are: nothing projects them yet.
    let (status, body) = world
        .read_at(
            &world.base,
            &format!("/v1/players/me?min_seq={spawn_seq}"),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "projection_behind", "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "min_seq", "{body}");

    // With a projector, the same read answers with the move, at once and on either gateway:
    // the client never sleeps.
    let _projector = world.projector();
    for base in [&world.base, &other] {
        let (status, me) = world
            .read_at(base, &format!("/v1/players/me?min_seq={moved_seq}"), &token)
            .await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["player_id"], ada.as_str(), "{me}");
        assert_eq!(me["online"], true, "{me}");
        assert_eq!(me["region"], "south-east", "{me}");
        assert_eq!(me["destination"]["x"], 1500.0, "{me}");
    }
    let path = format!(
        "/v1/regions/south-east/entities?x={}&y={}&radius=50&min_seq={moved_seq}",
        at["x"], at["y"]
    );
    let (status, nearby) = world.read_at(&other, &path, &token).await;
    assert_eq!(status, StatusCode::OK, "{nearby}");
    let ids: Vec<&str> = nearby["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|e| e["entity_id"].as_str())
        .collect();
    assert!(ids.contains(&ada.as_str()), "{nearby}");

    // A position beyond the log's end was named by no outcome: 409 at once, not after a wait.
    let (status, body) = world
        .read_at(
            &world.base,
            &format!("/v1/players/me?min_seq={}", moved_seq + 1_000_000),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "projection_behind", "{body}");
    assert_eq!(
        body["error"]["details"][0]["code"], "beyond_the_log",
        "{body}"
    );

    // Absurd positions are refused with the error shape, and change nothing.
    for bad in [
        "0",
        "-1",
        "abc",
        "1.5",
        "",
        "18446744073709551615",
        "9223372036854775808",
    ] {
        for path in [
            format!("/v1/players/me?min_seq={bad}"),
            format!("/v1/regions/south-west?min_seq={bad}"),
            format!("/v1/regions?min_seq={bad}"),
            format!("/v1/regions/south-west/entities?x=1&y=1&min_seq={bad}"),
        ] {
            let (status, body) = world.read_at(&world.base, &path, &token).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(
                body["error"]["details"][0]["field"], "min_seq",
                "{path}: {body}"
            );
        }
    }
}
