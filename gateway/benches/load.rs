//! The load driver: accepted commands per second and latency with N concurrent clients through
//! the gateway, next to N `async-nats` publishers that each await their own JetStream ack on the
//! same server in the same run (the ceiling for answering 202 after the ack). The publishers run
//! twice: with a small bare payload, and with exactly the messages the gateway stores (the
//! command's envelope, its id as `Nats-Msg-Id` for de-duplication, the request id and client
//! address headers), which is the ceiling for what the gateway must publish.
//!
//! ```text
//! cargo bench -p gateway --bench load                    # 64 clients, 10 s per phase
//! cargo bench -p gateway --bench load -- --clients 16 --seconds 5
//! ```
//!
//! Each HTTP client holds one keep-alive connection and speaks bare `hyper` on it: the driver
//! shares the machine with what it measures, so it spends as little of it as it can.
//!
//! It starts its own NATS, Redis and SecantusDB (like the tests), runs the gateway in-process,
//! and prints one line per phase and the ratio. Every loop is bounded by the phase's duration.
//! The timed phases, the bare client and the bare publishers are the whole game's load driver's
//! (`game_bench`, run by `ops/bench`), so both measure the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use tokio::sync::Mutex;

use game_bench::ceilings::{Phase, phase};
use game_bench::http::connect;
use gateway::{Application, Settings};
use schemas::fold::PlayerState;
use schemas::read_model::{PlayerDoc, collection, to_document};
use schemas::{Actor, Command, Envelope, Origin, PlayerId, Position, RegionId};
use serde_json::{Value, json};
use test_servers::Server;

// As in the gateway binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LIMITS: &str = r#"
[rate_limits]
auth_per_ip = { rate_per_sec = 100000.0, burst = 100000 }
api_per_ip = { rate_per_sec = 1000000.0, burst = 1000000 }
commands_per_player = { rate_per_sec = 100000.0, burst = 100000 }
reads_per_player = { rate_per_sec = 100000.0, burst = 100000 }
"#;

/// The JSON answer to posting `body` to `url`.
async fn post_for_json(http: &reqwest::Client, url: String, body: &Value) -> Value {
    let response = http.post(url).json(body).send().await.expect("request");
    response.json().await.expect("json")
}

/// Prints one phase's line.
fn print(name: &str, phase: &Phase) {
    println!(
        "{:<28} {:>8} ok {:>6} failed {:>10.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        name,
        phase.ok,
        phase.failed,
        phase.rate(),
        phase.percentile(0.50).as_secs_f64() * 1e3,
        phase.percentile(0.99).as_secs_f64() * 1e3,
        phase
            .latencies
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
    );
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One client's own keep-alive HTTP/1.1 connection, with nothing on top: the driver shares the
/// machine with what it measures, so it should spend as little of it as it can.
type Connection = Mutex<http1::SendRequest<Full<Bytes>>>;

/// Sends a request on a client's connection and reads the whole answer: its status, or `None`
/// when the request or the request's building failed.
async fn send(
    connection: &Connection,
    request: Result<Request<Full<Bytes>>, axum::http::Error>,
) -> Option<StatusCode> {
    let mut sender = connection.lock().await;
    sender.ready().await.ok()?;
    let response = sender.send_request(request.ok()?).await.ok()?;
    let status = response.status();
    response.into_body().collect().await.ok()?;
    Some(status)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let clients = arg("--clients", 64) as usize;
    let duration = Duration::from_secs(arg("--seconds", 10));
    let nats = Server::start_nats().expect("nats-server");
    let redis = Server::start_redis().expect("redis-server");
    let mongo = Server::start_mongo().expect("secantusd");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, LIMITS).expect("config");
    let env: HashMap<&str, String> = HashMap::from([
        ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
        ("GATEWAY_CONFIG", config.display().to_string()),
        ("NATS_URL", nats.url()),
        ("REDIS_URL", redis.url()),
        ("MONGODB_URI", mongo.url()),
        (
            "JWT_SECRET",
            "load-secret-load-secret-load-secret".to_owned(),
        ),
    ]);
    let settings = Settings::load(|k| env.get(k).cloned()).expect("settings");
    let world = settings.world.validation_context();
    let app = Application::build(settings).await.expect("gateway");
    let app_addr = app.local_addr().expect("addr");
    let base = format!("http://{app_addr}");
    let avatars = app.state().avatars().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client");
    let db = mongodb::Client::with_uri_str(mongo.url())
        .await
        .expect("mongo")
        .database("game");
    let mut tokens = Vec::new();
    for i in 0..clients {
        let creds = json!({"username": format!("load_{i}"), "password": "load-password"});
        let registered = post_for_json(&http, format!("{base}/v1/auth/register"), &creds).await;
        let player = registered["player_id"].as_str().expect("id").to_owned();
        let doc = PlayerDoc {
            id: player.parse().expect("a player id"),
            state: PlayerState {
                username: format!("load_{i}"),
                region: Some(RegionId::new("south-west").expect("a region id")),
                position: Some(Position { x: 10.0, y: 10.0 }),
                hp: Some(100),
                max_hp: Some(100),
                online: true,
                ..PlayerState::unknown()
            },
            seq: 1,
        };
        db.collection::<mongodb::bson::Document>(collection::PLAYERS)
            .insert_one(to_document(&doc).expect("a document"))
            .await
            .expect("read model");
        // Where a simulator would have put the avatar, as for every player in the world.
        let placed = nats_topology::avatars::AvatarRegion::at(doc.state.region.clone());
        nats_topology::avatars::record(&avatars, doc.id, &placed)
            .await
            .expect("an avatar_regions entry");
        let login = post_for_json(&http, format!("{base}/v1/auth/login"), &creds).await;
        tokens.push(login["access_token"].as_str().expect("token").to_owned());
    }
    let tokens = Arc::new(tokens);

    println!(
        "load: {clients} clients, {} s per phase, on {} cores",
        duration.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let addr = app_addr;
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(Arc::new(Mutex::new(connect(addr).await.expect("connect"))));
    }
    let connections = Arc::new(connections);
    let gateway_phase = {
        let (connections, tokens) = (Arc::clone(&connections), Arc::clone(&tokens));
        phase(clients, duration, move |client| {
            let body = json!({"type": "move", "x": 100.0 + client as f64, "y": 200.0});
            let request = Request::post("/v1/commands")
                .header(header::HOST, addr.to_string())
                .header(header::AUTHORIZATION, format!("Bearer {}", tokens[client]))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string())));
            let connection = Arc::clone(&connections[client]);
            async move { send(&connection, request).await == Some(StatusCode::ACCEPTED) }
        })
        .await
    };
    // The same clients against a route that does nothing: what HTTP alone costs on this machine.
    let http_phase = {
        let connections = Arc::clone(&connections);
        phase(clients, duration, move |client| {
            let request = Request::get("/healthz")
                .header(header::HOST, addr.to_string())
                .body(Full::new(Bytes::new()));
            let connection = Arc::clone(&connections[client]);
            async move { send(&connection, request).await == Some(StatusCode::OK) }
        })
        .await
    };
    let (_client, js) = nats_topology::connect(&nats.url(), "load", &Default::default())
        .await
        .expect("nats");
    // Into a scratch stream stored like COMMANDS, as the whole game's load driver measures it.
    let raw_phase = game_bench::ceilings::publishers(&js, clients, duration)
        .await
        .expect("publishers");
    let (_client, js) = nats_topology::connect(&nats.url(), "load-envelopes", &Default::default())
        .await
        .expect("nats");
    let stored_phase = phase(clients, duration, move |client| {
        let js = js.clone();
        let message = json!({"type": "move", "x": 100.0 + client as f64, "y": 200.0});
        let command = Command::parse_value(message, Origin::Player, &world).map(|command| {
            let region = RegionId::new("south-west").ok();
            let actor = Actor::Player {
                id: PlayerId::new(),
            };
            let mut env = Envelope::new(actor, region, command);
            env.correlation_id = env.id;
            let request_id = uuid::Uuid::now_v7().to_string();
            gateway::commands::stored_as(&env, &request_id, None, [127, 0, 0, 1].into())
        });
        async move {
            match command {
                Ok(Ok(message)) => nats_topology::publish(&js, message).await.is_ok(),
                _ => false,
            }
        }
    })
    .await;
    print("gateway POST /v1/commands", &gateway_phase);
    print("gateway GET /healthz", &http_phase);
    print("async-nats publish + ack", &raw_phase);
    print("async-nats gateway's messages", &stored_phase);
    println!(
        "ratio gateway / raw publishers: {:.2}",
        gateway_phase.rate() / raw_phase.rate().max(1.0)
    );
    println!(
        "ratio gateway / publishers of the gateway's messages: {:.2}",
        gateway_phase.rate() / stored_phase.rate().max(1.0)
    );
}
