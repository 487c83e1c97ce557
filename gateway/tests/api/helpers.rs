//! `spawn_app()`: a gateway on port 0 with its own NATS, Redis and SecantusDB.

use std::collections::HashMap;
use std::time::Duration;

use gateway::{AppState, Application, RunError, Settings};
use mongodb::bson::doc;
use reqwest::{Response, StatusCode};
use schemas::Position;
use schemas::fold::PlayerState;
use schemas::read_model::{PlayerDoc, collection, to_document};
use serde_json::{Value, json};
use test_servers::Stack;
pub use test_servers::poll::eventually_within;

pub const PASSWORD: &str = "correct horse battery";
pub const ADMIN_KEY: &str = "test-admin-key-123";

/// Rate limits loose enough that only the tests about limits meet them.
pub const LOOSE_LIMITS: &str = r#"
[rate_limits]
auth_per_ip = { rate_per_sec = 1000.0, burst = 1000 }
api_per_ip = { rate_per_sec = 1000.0, burst = 1000 }
commands_per_player = { rate_per_sec = 1000.0, burst = 1000 }
reads_per_player = { rate_per_sec = 1000.0, burst = 1000 }
"#;

/// A gateway on port 0, on servers of its own (NATS, Redis, the MongoDB-compatible server).
pub struct TestApp {
    servers: Stack,
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    /// Dropped with the app, which stops the gateway; taken by [`TestApp::stop`].
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), RunError>>>,
}

test_servers::stands_on!(TestApp, servers);

pub async fn spawn_app() -> TestApp {
    spawn_app_with(LOOSE_LIMITS).await
}

/// A gateway whose config file holds `config` (rate limits and any other gateway keys).
pub async fn spawn_app_with(config: &str) -> TestApp {
    spawn_app_with_env(config, &[]).await
}

/// As [`spawn_app_with`], with these environment variables besides.
pub async fn spawn_app_with_env(config: &str, extra: &[(&'static str, &str)]) -> TestApp {
    let servers = Stack::start().await;
    let config_path = servers.path("gateway.toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut env: HashMap<&str, String> = HashMap::from([
        ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
        ("GATEWAY_CONFIG", config_path.display().to_string()),
        (
            "JWT_SECRET",
            "test-secret-test-secret-test-secret".to_owned(),
        ),
        ("ADMIN_API_KEY", ADMIN_KEY.to_owned()),
        ("BOOTSTRAP_ADMIN_USERNAME", "root".to_owned()),
        ("BOOTSTRAP_ADMIN_PASSWORD", PASSWORD.to_owned()),
    ]);
    env.extend(servers.env_for("gateway"));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let settings = Settings::load(|k| env.get(k).cloned()).expect("settings");
    let app = Application::build(settings).await.expect("gateway starts");
    let addr = app.local_addr().expect("addr");
    let state = app.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        servers,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        state,
        stop: Some(stop),
        serving: Some(serving),
    }
}

impl TestApp {
    /// Asks the gateway to stop, as a signal would; what `run_until_stopped` returns comes on
    /// the handle.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<Result<(), RunError>> {
        let _ = self.stop.take().expect("the gateway is running").send(());
        self.serving.take().expect("the gateway is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    pub async fn register(&self, username: &str) -> Response {
        self.register_with(username, PASSWORD).await
    }

    /// Registers `username` and logs in: (player id, token).
    pub async fn player(&self, username: &str) -> (String, String) {
        let registered = self.register(username).await;
        assert_eq!(registered.status(), StatusCode::CREATED);
        let token = self.login(username, PASSWORD).await;
        let player_id = registered.json::<Value>().await.expect("json")["player_id"]
            .as_str()
            .expect("id")
            .to_owned();
        (player_id, token)
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let response = self.log_in(username, password).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.expect("json")["access_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Writes the read model the projector would: the player is online in `region`.
    pub async fn put_in_world(&self, player_id: &str, username: &str, region: &str) {
        self.put_in_world_at(player_id, username, region, (10.0, 10.0))
            .await;
    }

    pub async fn put_in_world_at(
        &self,
        player_id: &str,
        username: &str,
        region: &str,
        (x, y): (f64, f64),
    ) {
        let player = PlayerDoc {
            id: player_id.parse().expect("a player id"),
            state: PlayerState {
                username: username.to_owned(),
                region: Some(region.parse().expect("a region id")),
                position: Some(Position { x, y }),
                hp: Some(100),
                max_hp: Some(100),
                online: true,
                ..PlayerState::unknown()
            },
            seq: 1,
        };
        self.db()
            .collection::<mongodb::bson::Document>(collection::PLAYERS)
            .insert_one(to_document(&player).expect("a document"))
            .await
            .expect("read model");
    }

    /// Every stored fact about `player` (by the ids a fact names), with the headers it was
    /// stored with.
    pub async fn facts_about(
        &self,
        player: &str,
    ) -> Vec<(schemas::Envelope<schemas::Fact>, async_nats::HeaderMap)> {
        let facts = self.js.get_stream("FACTS").await.expect("FACTS");
        let last = facts.get_info().await.expect("info").state.last_sequence;
        let mut found = Vec::new();
        for seq in 1..=last {
            let Ok(message) = facts.get_raw_message(seq).await else {
                continue;
            };
            let text = String::from_utf8_lossy(&message.payload);
            if !text.contains(player) {
                continue;
            }
            let env = schemas::Envelope::decode(&message.payload).expect("a fact");
            found.push((env, message.headers));
        }
        found
    }

    /// Waits until the gateway has seen NATS go (after `self.nats.stop()`).
    pub async fn nats_gone(&self) {
        eventually_within(
            Duration::from_secs(10),
            "the gateway to see NATS gone",
            || async {
                self.state.nats().connection_state() != async_nats::connection::State::Connected
            },
        )
        .await;
    }

    pub async fn accounts(&self) -> u64 {
        self.db()
            .collection::<mongodb::bson::Document>("accounts")
            .count_documents(doc! {})
            .await
            .expect("count")
    }
}

/// The `error` object of an error body, checked for the contract's shape.
pub async fn error_of(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id")
        .to_owned();
    let body: Value = response.json().await.expect("a JSON error body");
    let error = body["error"].clone();
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{body}"
    );
    assert!(error["details"].is_array(), "{body}");
    assert_eq!(error["request_id"], request_id.as_str());
    error
}

/// The (field, code) pairs of an error's details.
pub fn details(error: &Value) -> Vec<(String, String)> {
    error["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that an error's details name exactly these (field, code) pairs, in order.
pub fn assert_details(error: &Value, expected: &[(&str, &str)], context: &str) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(f, c)| (f.to_string(), c.to_string()))
        .collect();
    assert_eq!(details(error), expected, "{context}");
}

/// Another gateway of the same deployment: this one's settings, its NATS, Redis and MongoDB.
pub struct OtherGateway {
    pub base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    /// Starts another gateway beside this one, as a deployment runs several.
    pub async fn another_gateway(&self) -> OtherGateway {
        let mut settings = self.state.settings().clone();
        settings.addr = ([127, 0, 0, 1], 0).into();
        let app = Application::build(settings)
            .await
            .expect("another gateway starts");
        let addr = app.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        OtherGateway {
            base: format!("http://{addr}"),
            _stop: stop,
        }
    }
}

/// [`LOOSE_LIMITS`] but for these limits (name, TOML value), which it sets or adds: a config in
/// which only the limits a test is about are met.
pub fn loose_limits_but(tight: &[(&str, &str)]) -> String {
    let mut config = String::new();
    for line in LOOSE_LIMITS.lines() {
        let name = line.split(" = ").next().unwrap_or_default();
        if !tight.iter().any(|(limit, _)| *limit == name) {
            config += line;
            config += "\n";
        }
    }
    for (limit, value) in tight {
        config += &format!("{limit} = {value}\n");
    }
    config
}

impl TestApp {
    /// The JSON body of a GET, whatever its status.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        self.get(path, token).await.json().await.expect("json")
    }

    /// The admin logged in with `admin` gives `player_id` the role `role`.
    pub async fn change_role(&self, admin: &str, player_id: &str, role: &str) -> Response {
        self.http
            .put(self.url(&format!("/admin/players/{player_id}/role")))
            .bearer_auth(admin)
            .header("x-api-key", ADMIN_KEY)
            .json(&json!({ "role": role }))
            .send()
            .await
            .expect("send")
    }

    /// The answer to registering `username` with `password`, whatever it is.
    pub async fn register_with(&self, username: &str, password: &str) -> Response {
        self.post_credentials("/v1/auth/register", username, password)
            .await
    }

    /// The answer to logging in as `username` with `password`, whatever it is.
    pub async fn log_in(&self, username: &str, password: &str) -> Response {
        self.post_credentials("/v1/auth/login", username, password)
            .await
    }

    async fn post_credentials(&self, path: &str, username: &str, password: &str) -> Response {
        let credentials = json!({"username": username, "password": password});
        self.post_json(path, &credentials, None).await
    }

    /// Logs out the session of `token`, which the gateway answers 204.
    pub async fn log_out(&self, token: &str) {
        let logout = self
            .post_json("/v1/auth/logout", &json!({}), Some(token))
            .await;
        assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    }

    /// Asserts that `token` is refused because its session has ended.
    pub async fn assert_revoked(&self, token: &str) {
        let error = error_of(
            self.get("/v1/players/me", Some(token)).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(error["code"], "token_revoked");
    }

    /// Writes the lease a simulator would: `node` owns `region` from now on.
    pub async fn put_lease(&self, region: &str, node: &str) {
        let kv = self
            .js
            .get_key_value("region_leases")
            .await
            .expect("bucket");
        let now = chrono::Utc::now();
        let lease = nats_topology::lease::Lease {
            node: node.into(),
            acquired_at: now,
            renewed_at: now,
        };
        kv.put(region, serde_json::to_vec(&lease).expect("json").into())
            .await
            .expect("put");
    }

    /// The answer to submitting `command` with `token`.
    pub async fn command(&self, token: &str, command: &Value) -> Response {
        self.post_json("/v1/commands", command, Some(token)).await
    }

    /// The 400 error of a `leave` command submitted with `query` (`?...`) on its path.
    pub async fn refused_command_query(&self, token: &str, query: &str) -> Value {
        let path = format!("/v1/commands{query}");
        let response = self
            .post_json(&path, &json!({"type": "leave"}), Some(token))
            .await;
        error_of(response, StatusCode::BAD_REQUEST).await
    }

    /// The 400 error of a query (`?...`) for the entities near a point of `south-west`.
    pub async fn refused_entity_query(&self, token: &str, query: &str) -> Value {
        let path = format!("/v1/regions/south-west/entities{query}");
        error_of(self.get(&path, Some(token)).await, StatusCode::BAD_REQUEST).await
    }

    /// The sessions Redis lists for `player_id`.
    pub async fn sessions_of(&self, player_id: &str) -> Vec<String> {
        let mut redis = self.state.redis();
        redis::cmd("SMEMBERS")
            .arg(format!("player_sessions:{{{player_id}}}"))
            .query_async(&mut redis)
            .await
            .expect("smembers")
    }
}
