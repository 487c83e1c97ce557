//! Virtual players: each registers and logs in before the clock starts ([`enlist`]), then, from
//! its turn in the ramp, opens its live stream, spawns and acts by the plan's mix until the run
//! ends ([`play`]), on its own keep-alive connection.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hyper::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::http::Http;
use crate::plan::{Action, Plan};
use crate::stats::Samples;

/// The world's extent players walk in (config/regions.toml: 2 x 2 regions of 1 000).
const WORLD: (f64, f64) = (2000.0, 2000.0);
/// How far from where it stands a player walks at most.
const STRIDE: f64 = 15.0;
/// How far around it a player looks for targets and items.
const LOOK_RADIUS: f64 = 60.0;
/// A player looks around again after this many actions.
const LOOK_EVERY: u32 = 20;
/// Every player's password.
const PASSWORD: &str = "bench-password";

/// What players record as they go, shared by all of them. Times are microseconds since the
/// epoch (to compare with the times the log stores) or seconds since the start.
pub struct Recorder {
    started: Instant,
    started_us: i64,
    /// Players in the world now.
    pub active: AtomicUsize,
    /// Commands accepted so far.
    pub accepted_count: AtomicU64,
    inner: Mutex<Recorded>,
}

/// The raw records of the players.
#[derive(Default)]
pub struct Recorded {
    /// When each command was accepted, seconds since the start.
    pub accepted: Vec<f64>,
    /// 202 latencies.
    pub latency_202: Samples,
    /// `?wait=true` latencies.
    pub latency_wait: Samples,
    /// Answers by status.
    pub statuses: BTreeMap<String, u64>,
    /// Outcomes of waited commands.
    pub outcomes: BTreeMap<String, u64>,
    /// Accepted commands: id to when it was sent (µs since the epoch).
    pub sent: HashMap<String, i64>,
    /// Facts delivered on live streams: (fact id, µs since the epoch).
    pub deliveries: Vec<(String, i64)>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_us: chrono::Utc::now().timestamp_micros(),
            active: AtomicUsize::new(0),
            accepted_count: AtomicU64::new(0),
            inner: Mutex::new(Recorded::default()),
        }
    }

    /// When the clock started, µs since the epoch.
    pub fn started_us(&self) -> i64 {
        self.started_us
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status(&self, status: &str) {
        *self.lock().statuses.entry(status.to_owned()).or_insert(0) += 1;
    }

    /// Answers by status so far.
    pub fn statuses(&self) -> BTreeMap<String, u64> {
        self.lock().statuses.clone()
    }

    /// Everything recorded, leaving nothing behind.
    pub fn take(&self) -> Recorded {
        std::mem::take(&mut *self.lock())
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// What every player shares.
pub struct Game {
    /// The gateway.
    pub addr: SocketAddr,
    /// What players do.
    pub plan: Plan,
    /// Where they record it.
    pub recorder: Arc<Recorder>,
    /// When they stop.
    pub deadline: Instant,
    /// A tag making this run's usernames its own.
    pub tag: String,
    /// Ids of the players in the world, to strike one another.
    pub players: RwLock<Vec<String>>,
}

/// A player's own state.
pub struct Player {
    index: usize,
    http: Http,
    token: String,
    id: String,
    region: String,
    position: (f64, f64),
    targets: Vec<String>,
    items: Vec<String>,
    sent: u64,
    stream: Option<JoinHandle<()>>,
}

/// A fact on a live stream, of which only the id is read.
#[derive(serde::Deserialize)]
struct FactId<'a> {
    #[serde(borrow)]
    id: &'a str,
}

/// An answer worth reading, or `None` when the request got none (counted already).
type Answer = Option<(u16, Value)>;

impl Player {
    async fn call(
        &mut self,
        game: &Game,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let token = (!self.token.is_empty()).then_some(self.token.as_str());
        self.sent += 1;
        let request_id = format!("bench-{}-{}", self.index, self.sent);
        match self
            .http
            .call(method, path, token, body, Some(&request_id))
            .await
        {
            Ok((status, bytes)) => {
                game.recorder.status(&status.to_string());
                Some((
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                ))
            }
            Err(_) => {
                game.recorder.status("no answer");
                None
            }
        }
    }

    async fn log_in(&mut self, game: &Game) -> bool {
        self.token.clear();
        let creds = json!({"username": self.username(game), "password": PASSWORD});
        let Some((200, login)) = self
            .call(game, Method::POST, "/v1/auth/login", Some(&creds))
            .await
        else {
            return false;
        };
        let (Some(token), Some(id)) = (login["access_token"].as_str(), login["player_id"].as_str())
        else {
            return false;
        };
        self.token = token.to_owned();
        self.id = id.to_owned();
        true
    }

    fn username(&self, game: &Game) -> String {
        format!("bench_{}_{}", game.tag, self.index)
    }

    async fn open_stream(&mut self, game: &Game) {
        if let Some(old) = self.stream.take() {
            old.abort();
        }
        let url = format!("ws://{}/v1/stream?access_token={}", game.addr, self.token);
        match tokio_tungstenite::connect_async(url).await {
            Ok((mut ws, _)) => {
                let recorder = Arc::clone(&game.recorder);
                self.stream = Some(tokio::spawn(async move {
                    while let Some(Ok(message)) = ws.next().await {
                        let now = chrono::Utc::now().timestamp_micros();
                        // Only the id is read: a crowd's stream carries many facts a second.
                        if let tokio_tungstenite::tungstenite::Message::Text(text) = message
                            && let Ok(fact) = serde_json::from_str::<FactId<'_>>(&text)
                        {
                            recorder.lock().deliveries.push((fact.id.to_owned(), now));
                        }
                    }
                }));
            }
            Err(_) => game.recorder.status("stream refused"),
        }
    }

    /// Sends a command, records its latency, and returns the waited outcome's body.
    async fn command(&mut self, game: &Game, body: Value, wait: bool) -> Option<Value> {
        let path = if wait {
            "/v1/commands?wait=true"
        } else {
            "/v1/commands"
        };
        let sent_us = chrono::Utc::now().timestamp_micros();
        let sent = Instant::now();
        let (status, answer) = self.call(game, Method::POST, path, Some(&body)).await?;
        let took = sent.elapsed().as_secs_f64() * 1e3;
        let at = game.recorder.started.elapsed().as_secs_f64();
        if !matches!(status, 200 | 202) {
            return None;
        }
        game.recorder.accepted_count.fetch_add(1, Ordering::Relaxed);
        let mut recorded = game.recorder.lock();
        recorded.accepted.push(at);
        if let Some(id) = answer["command_id"].as_str() {
            recorded.sent.insert(id.to_owned(), sent_us);
        }
        if status == 202 {
            recorded.latency_202.push(at, took);
            return None;
        }
        recorded.latency_wait.push(at, took);
        let outcome = match (answer["status"].as_str(), answer["reason"].as_str()) {
            (Some("rejected"), Some(reason)) => format!("rejected: {reason}"),
            (Some(status), _) => status.to_owned(),
            (None, _) => "no status".to_owned(),
        };
        *recorded.outcomes.entry(outcome).or_insert(0) += 1;
        Some(answer)
    }

    /// Enters the world (or comes back from death) and notes where.
    async fn spawn(&mut self, game: &Game, kind: &str) {
        let Some(outcome) = self.command(game, json!({"type": kind}), true).await else {
            return;
        };
        for fact in outcome["facts"].as_array().into_iter().flatten() {
            if let (Some(x), Some(y)) = (
                fact.pointer("/payload/state/position/x")
                    .and_then(Value::as_f64),
                fact.pointer("/payload/state/position/y")
                    .and_then(Value::as_f64),
            ) {
                self.position = (x, y);
                if let Some(region) = fact["region"].as_str() {
                    self.region = region.to_owned();
                }
            }
        }
    }

    /// Looks around: who and what is near, from the read model.
    async fn look(&mut self, game: &Game) {
        if self.region.is_empty() {
            return;
        }
        let path = format!(
            "/v1/regions/{}/entities?x={:.1}&y={:.1}&radius={LOOK_RADIUS}",
            self.region, self.position.0, self.position.1
        );
        let Some((200, seen)) = self.call(game, Method::GET, &path, None).await else {
            return;
        };
        self.targets.clear();
        self.items.clear();
        for entity in seen["entities"].as_array().into_iter().flatten() {
            let Some(id) = entity["entity_id"].as_str() else {
                continue;
            };
            if entity["kind"] == "item" {
                self.items.push(id.to_owned());
            } else if id != self.id {
                self.targets.push(id.to_owned());
            }
        }
    }

    fn pick(list: &[String]) -> Option<&String> {
        (!list.is_empty()).then(|| &list[fastrand::usize(..list.len())])
    }

    async fn act(&mut self, game: &Game, action: Action) {
        let wait = fastrand::f64() < game.plan.pace.wait_share;
        let body = match action {
            Action::Walk => {
                let step = || (fastrand::f64() * 2.0 - 1.0) * STRIDE;
                let x = (self.position.0 + step()).clamp(1.0, WORLD.0 - 1.0);
                let y = (self.position.1 + step()).clamp(1.0, WORLD.1 - 1.0);
                self.position = (x, y);
                json!({"type": "move", "x": x, "y": y})
            }
            Action::Attack => {
                let other = {
                    let players = game.players.read().unwrap_or_else(|p| p.into_inner());
                    Self::pick(&players).cloned()
                };
                match Self::pick(&self.targets).cloned().or(other) {
                    Some(target) => json!({"type": "attack", "target": target}),
                    None => return,
                }
            }
            Action::Chat => {
                json!({"type": "chat", "text": format!("hello from player {} ({})", self.index, self.sent)})
            }
            Action::Pickup => match Self::pick(&self.items) {
                Some(item) => json!({"type": "pickup", "item": item}),
                None => return,
            },
            Action::Relog => {
                let _ = self.call(game, Method::POST, "/v1/auth/logout", None).await;
                if self.log_in(game).await {
                    self.open_stream(game).await;
                    self.spawn(game, "spawn").await;
                }
                return;
            }
        };
        if let Some(outcome) = self.command(game, body, wait).await {
            match outcome["reason"].as_str() {
                Some("dead") => self.spawn(game, "respawn").await,
                Some("not_spawned") => self.spawn(game, "spawn").await,
                _ => {}
            }
        }
    }
}

/// Makes player `index`'s account and logs it in; `None` when either failed (counted).
pub async fn enlist(game: Arc<Game>, index: usize) -> Option<Player> {
    let mut player = Player {
        index,
        http: Http::new(game.addr),
        token: String::new(),
        id: String::new(),
        region: String::new(),
        position: (WORLD.0 / 4.0, WORLD.1 / 4.0),
        targets: Vec::new(),
        items: Vec::new(),
        sent: 0,
        stream: None,
    };
    let creds = json!({"username": player.username(&game), "password": PASSWORD});
    player
        .call(&game, Method::POST, "/v1/auth/register", Some(&creds))
        .await?;
    player.log_in(&game).await.then_some(player)
}

/// One logged-in player, from joining at `join` (opening its live stream and spawning) until
/// the game's deadline. Returns its live stream, to be closed once the facts after the
/// deadline have been delivered.
pub async fn play(game: Arc<Game>, mut player: Player, join: Instant) -> Option<JoinHandle<()>> {
    tokio::time::sleep_until(join.into()).await;
    player.open_stream(&game).await;
    player.spawn(&game, "spawn").await;
    game.players
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(player.id.clone());
    game.recorder.active.fetch_add(1, Ordering::Relaxed);
    let think = game.plan.think();
    let total = game.plan.mix.total();
    let mut actions = 0u32;
    while Instant::now() < game.deadline {
        if actions.is_multiple_of(LOOK_EVERY) {
            player.look(&game).await;
        }
        actions += 1;
        let action = game.plan.mix.pick(fastrand::u32(..total));
        player.act(&game, action).await;
        if !think.is_zero() {
            tokio::time::sleep(think.min(game.deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }
    game.recorder.active.fetch_sub(1, Ordering::Relaxed);
    player.stream.take()
}

/// When player `index` of `players` joins: evenly over the ramp.
pub fn join_at(start: Instant, ramp: Duration, index: usize, players: usize) -> Instant {
    start + ramp.mul_f64(index as f64 / players.max(1) as f64)
}
