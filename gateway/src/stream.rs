//! `GET /v1/stream`: the live facts around a player, over a WebSocket.
//!
//! The projector publishes every fact on Redis channels `live:region:<region>` and
//! `live:player:<player>` ([`schemas::read_model::channel`]), and the simulators' live positions
//! on `live:region:<region>`. A stream listens to its player's
//! channel and to every region within `stream.interest_radius` of the avatar, so what stands
//! just across a border is seen. It follows the avatar: each of the player's own facts that
//! places it (spawn, walk, arrival, hand-off, respawn, death) recomputes the regions, and leaving
//! the world drops them. The client never reconnects to cross a border.
//!
//! Every stream of a gateway shares one Redis subscription through the [`Hub`]: a message is
//! read once and handed to each listener. Between the hub and a socket sits a queue of
//! [`BUFFER`] messages: a client that reads slower than facts arrive fills it and is
//! disconnected (close code 1008, "too slow"), so no client can make the gateway hold memory
//! without bound.
//!
//! A stream lives no longer than its session: it ends (close code [`SESSION_ENDED`], 4001, with
//! "session ended" or "session expired") when the session's end is announced on Redis
//! (`session_ended:<sid>`, see [`announce_ended`]: logout, role change, any end that goes
//! through [`crate::auth::Sessions`]), when the token expires, or when the periodic check of
//! [`crate::open_streams`] finds the session gone, whichever comes first, on whichever gateway
//! holds the stream.
//!
//! A stream also ends when its gateway stops (close code [`GOING_AWAY`], 1001), before the
//! drain deadline runs out.
//!
//! Clients have nothing to say on a stream: a message or frame from them over [`MAX_INCOMING`]
//! bytes closes it (1009), and a player or an address holds only so many streams at once
//! (`stream.max_per_player`, `stream.max_per_ip`; the next gets 429 before the upgrade).
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as `?access_token=`.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use schemas::fold::{PlayerState, players_of};
use schemas::read_model::channel;
use schemas::{Envelope, Fact, PlayerId, Position, RegionId, WorldConfig};
use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::auth::{Bearer, Caller, Claims};
use crate::error::ApiError;
use crate::open_streams::Admitted;
use crate::players;
use crate::request::ClientIp;

/// Messages queued for one client before it is dropped as too slow.
pub const BUFFER: usize = 256;

/// The close code sent to a client that could not keep up (policy violation).
pub const TOO_SLOW: u16 = 1008;

/// The close code of a stream whose session ended (logout, role change, expiry, any other end).
pub const SESSION_ENDED: u16 = 4001;

/// The close code sent to a client whose message or frame is over [`MAX_INCOMING`].
pub const TOO_BIG: u16 = 1009;

/// The close code of a stream whose gateway is stopping (going away); the client reconnects,
/// to another gateway or to this one once it is back.
pub const GOING_AWAY: u16 = 1001;

/// The close code sent to a client that broke the WebSocket protocol.
pub const PROTOCOL_ERROR: u16 = 1002;

/// The largest message, and frame, a client may send on a stream. Clients have nothing to say
/// there (what they send is read and dropped), but tungstenite would otherwise gather up to
/// 64 MiB per message: six clients each sending most of one took a gateway from 103 to 679 MB.
pub const MAX_INCOMING: usize = 4 * 1024;

/// How long a close frame may take to go out before the connection is dropped without it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a subscribe or unsubscribe may take before Redis counts as unreachable.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis channel on which the end of session `sid` is announced.
pub fn session_channel(sid: &str) -> String {
    format!("session_ended:{sid}")
}

/// Announces on Redis that sessions `sids` have ended, so that every gateway ends their streams
/// at once. Called wherever sessions end. Best effort: a stream that misses the word ends at the
/// next check of its session ([`crate::open_streams`]).
pub async fn announce_ended<S: AsRef<str>>(redis: &mut service::redis::Redis, sids: &[S]) {
    if sids.is_empty() {
        return;
    }
    let publish: Vec<redis::Cmd> = sids
        .iter()
        .map(|sid| redis::Cmd::publish(session_channel(sid.as_ref()), "ended"))
        .collect();
    let announced: redis::RedisResult<Vec<redis::Value>> = redis.each(publish).await;
    if let Err(e) = announced {
        // Their streams end at the next check of their sessions.
        tracing::warn!(error = %e, "cannot announce the end of sessions");
    }
}

/// One message from Redis, shared by every stream that listens to its channel.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The channel it came on.
    pub channel: Arc<str>,
    /// The message, as published.
    pub text: Arc<str>,
}

/// The streams listening to each channel: connection id to its queue.
#[derive(Default)]
struct Routes {
    channels: HashMap<String, HashMap<u64, mpsc::Sender<Delivery>>>,
}

impl Routes {
    /// Forgets a connection on every channel (it fell behind or went away).
    fn drop_connection(&mut self, conn: u64) {
        self.channels.retain(|_, listeners| {
            listeners.remove(&conn);
            !listeners.is_empty()
        });
    }
}

/// The gateway's one Redis subscription.
struct Link {
    sink: redis::aio::PubSubSink,
    alive: Arc<AtomicBool>,
}

/// Shares one Redis pub/sub connection among every live stream of the gateway.
///
/// A channel is subscribed in Redis while at least one stream listens to it. When Redis goes
/// away, every stream ends (their clients reconnect) and the next stream connects again. On a
/// Redis Cluster, which carries pub/sub messages to every node, the hub listens on one node and
/// moves to the next when that one is gone.
pub struct Hub {
    clients: Vec<redis::Client>,
    /// The client the next connection tries first.
    next_client: AtomicUsize,
    /// Held across every change of subscriptions, so Redis and the routes agree.
    link: tokio::sync::Mutex<Option<Link>>,
    /// Read by the task that hands out messages.
    routes: Arc<Mutex<Routes>>,
    next_connection: AtomicU64,
}

impl Hub {
    /// A hub that connects, through one of `clients`, when the first stream opens.
    pub fn new(clients: Vec<redis::Client>) -> Self {
        Self {
            clients,
            next_client: AtomicUsize::new(0),
            link: tokio::sync::Mutex::new(None),
            routes: Arc::default(),
            next_connection: AtomicU64::new(1),
        }
    }

    /// A fresh connection id.
    pub fn connection(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes `conn` hear `channels` on `queue`, subscribing in Redis to those nobody heard yet.
    pub async fn join(
        &self,
        conn: u64,
        channels: &BTreeSet<String>,
        queue: &mpsc::Sender<Delivery>,
    ) -> redis::RedisResult<()> {
        let mut link = self.link.lock().await;
        if !link
            .as_ref()
            .is_some_and(|l| l.alive.load(Ordering::Acquire))
        {
            *link = Some(self.connect().await?);
        }
        let Some(current) = link.as_mut() else {
            return Err(gone());
        };
        let fresh: Vec<&String> = {
            let mut routes = lock(&self.routes);
            channels
                .iter()
                .filter(|channel| {
                    let listeners = routes.channels.entry((*channel).clone()).or_default();
                    let fresh = listeners.is_empty();
                    listeners.insert(conn, queue.clone());
                    fresh
                })
                .collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let subscribed = tokio::time::timeout(REDIS_TIMEOUT, current.sink.subscribe(&fresh))
            .await
            .unwrap_or_else(|_| Err(gone()));
        if let Err(e) = subscribed {
            current.alive.store(false, Ordering::Release);
            let mut routes = lock(&self.routes);
            for channel in channels {
                if let Some(listeners) = routes.channels.get_mut(channel) {
                    listeners.remove(&conn);
                }
            }
            routes.channels.retain(|_, listeners| !listeners.is_empty());
            return Err(e);
        }
        Ok(())
    }

    /// Makes `conn` stop hearing `channels`, unsubscribing in Redis those nobody hears now.
    pub async fn leave(&self, conn: u64, channels: &BTreeSet<String>) {
        let mut link = self.link.lock().await;
        let unheard: Vec<&String> = {
            let mut routes = lock(&self.routes);
            channels
                .iter()
                .filter(|channel| match routes.channels.get_mut(*channel) {
                    Some(listeners) => {
                        listeners.remove(&conn);
                        let unheard = listeners.is_empty();
                        if unheard {
                            routes.channels.remove(*channel);
                        }
                        unheard
                    }
                    // Dropped already (it fell behind); its subscription may still be there.
                    None => true,
                })
                .collect()
        };
        if let Some(current) = link.as_mut()
            && current.alive.load(Ordering::Acquire)
            && !unheard.is_empty()
        {
            let _ = tokio::time::timeout(REDIS_TIMEOUT, current.sink.unsubscribe(&unheard)).await;
        }
    }

    async fn connect(&self) -> redis::RedisResult<Link> {
        let first = self.next_client.load(Ordering::Relaxed);
        let mut failed = gone();
        let mut connected = None;
        for i in 0..self.clients.len() {
            let at = (first + i) % self.clients.len();
            let client = &self.clients[at];
            match tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
                .await
                .unwrap_or_else(|_| Err(gone()))
            {
                Ok(pubsub) => {
                    // The next connection, made when this one is gone, tries the next node first.
                    self.next_client.store(at + 1, Ordering::Relaxed);
                    connected = Some(pubsub);
                    break;
                }
                Err(e) => failed = e,
            }
        }
        let pubsub = connected.ok_or(failed)?;
        let (sink, messages) = pubsub.split();
        let alive = Arc::new(AtomicBool::new(true));
        // Whatever a previous link left is gone with it.
        lock(&self.routes).channels.clear();
        tokio::spawn(hand_out(messages, self.routes.clone(), alive.clone()));
        tracing::info!("live stream hub connected to Redis");
        Ok(Link { sink, alive })
    }
}

fn gone() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "Redis did not answer in time"))
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    // A panic while holding the lock leaves plain maps behind, still usable.
    routes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands each message to the queues of its channel; a full or closed queue is dropped from
/// every channel, which ends its stream.
async fn hand_out(
    mut messages: redis::aio::PubSubStream,
    routes: Arc<Mutex<Routes>>,
    alive: Arc<AtomicBool>,
) {
    while let Some(message) = messages.next().await {
        let Ok(text) = message.get_payload::<String>() else {
            continue;
        };
        let channel = message.get_channel_name();
        let mut routes = lock(&routes);
        let Some(listeners) = routes.channels.get(channel) else {
            continue;
        };
        let delivery = Delivery {
            channel: Arc::from(channel),
            text: Arc::from(text),
        };
        let behind: Vec<u64> = listeners
            .iter()
            .filter(|(_, queue)| queue.try_send(delivery.clone()).is_err())
            .map(|(conn, _)| *conn)
            .collect();
        for conn in behind {
            routes.drop_connection(conn);
        }
    }
    tracing::warn!("live stream hub lost Redis; open streams end");
    let mut routes = lock(&routes);
    alive.store(false, Ordering::Release);
    routes.channels.clear();
}

/// The regions a stream listens to: those within `radius` of any of `points`.
pub fn regions_near(world: &WorldConfig, points: &[Position], radius: f64) -> BTreeSet<RegionId> {
    world
        .regions
        .iter()
        .filter(|r| points.iter().any(|p| r.bounds.distance(p) <= radius))
        .map(|r| r.id.clone())
        .collect()
}

/// Points along a walk, close enough together that no region within `radius` of the walk is
/// missed between them.
fn along(from: Position, to: Position, radius: f64) -> Vec<Position> {
    let step = radius.max(1.0);
    let steps = (from.distance(&to) / step).ceil().clamp(1.0, 10_000.0) as usize;
    (0..=steps)
        .map(|i| {
            let t = i as f64 / steps as f64;
            Position::new(from.x + (to.x - from.x) * t, from.y + (to.y - from.y) * t)
        })
        .collect()
}

/// Where a stream's avatar is, as far as its own facts tell: the shared fold's [`PlayerState`]
/// of the player (the same the `players` read model is), and the regions within the radius of
/// where it stands and of the walk it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct Interest {
    player: PlayerId,
    radius: f64,
    avatar: Option<PlayerState>,
    regions: BTreeSet<RegionId>,
}

impl Interest {
    /// An avatar in `region` at `position`, or out of the world when `region` is `None`.
    pub fn new(
        world: &WorldConfig,
        player: PlayerId,
        radius: f64,
        region: Option<RegionId>,
        position: Option<Position>,
    ) -> Self {
        let avatar = PlayerState {
            online: region.is_some() || position.is_some(),
            region,
            position,
            ..PlayerState::unknown()
        };
        let regions = Self::regions_of(world, &avatar, radius);
        Self {
            player,
            radius,
            avatar: Some(avatar),
            regions,
        }
    }

    fn regions_of(world: &WorldConfig, avatar: &PlayerState, radius: f64) -> BTreeSet<RegionId> {
        if !avatar.online {
            return BTreeSet::new();
        }
        let points = match (avatar.position, avatar.destination) {
            (Some(from), Some(to)) => along(from, to, radius),
            (Some(at), None) => vec![at],
            (None, _) => vec![],
        };
        let mut regions = regions_near(world, &points, radius);
        regions.extend(avatar.region.clone());
        regions
    }

    /// The channels to listen to.
    pub fn channels(&self) -> BTreeSet<String> {
        let mut channels: BTreeSet<String> = self.regions.iter().map(channel::region).collect();
        channels.insert(channel::player(self.player));
        channels
    }

    /// Follows a fact with the shared fold when it concerns the player; whether the regions
    /// changed.
    pub fn follow(&mut self, world: &WorldConfig, fact: &Envelope<Fact>) -> bool {
        if !players_of(&fact.payload).contains(&self.player)
            || !PlayerState::fold(&mut self.avatar, self.player, fact)
        {
            return false;
        }
        let next = self
            .avatar
            .as_ref()
            .map(|a| Self::regions_of(world, a, self.radius))
            .unwrap_or_default();
        let changed = next != self.regions;
        self.regions = next;
        changed
    }
}

/// The token of a stream: from the `Authorization` header, or from `?access_token=`.
async fn bearer(
    parts: &mut Parts,
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<Bearer, ApiError> {
    if !parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
        && let Some(token) = query.get("access_token")
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        parts
            .headers
            .insert(axum::http::header::AUTHORIZATION, value);
    }
    Bearer::from_request_parts(parts, state).await
}

/// A stream's place in the hub; leaves it when dropped, however the stream ends.
struct Joined {
    hub: Arc<Hub>,
    conn: u64,
    channels: BTreeSet<String>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        let (hub, conn, channels) = (
            self.hub.clone(),
            self.conn,
            std::mem::take(&mut self.channels),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { hub.leave(conn, &channels).await });
        }
    }
}

/// What ends a stream with its session: the announcement of its end, the periodic check
/// finding it gone, or the token's expiry.
struct SessionEnd {
    /// The stream's place on the session's channel; left when dropped.
    _listening: Joined,
    announced: mpsc::Receiver<Delivery>,
    gone: oneshot::Receiver<()>,
    /// When the token expires (seconds since the epoch).
    expires_at: u64,
    /// The stream's place among the open ones; given back when dropped.
    _admitted: Admitted,
}

impl SessionEnd {
    /// Waits for the session to end; why, for the close frame.
    async fn ended(&mut self) -> &'static str {
        let now = crate::auth::now_secs();
        let expiry = Duration::from_secs(self.expires_at.saturating_sub(now));
        let expired = |at: u64| crate::auth::now_secs() >= at;
        tokio::select! {
            Some(_) = self.announced.recv() => "session ended",
            Ok(()) = &mut self.gone => {
                if expired(self.expires_at) { "session expired" } else { "session ended" }
            }
            () = tokio::time::sleep(expiry) => "session expired",
        }
    }
}

/// Listens for the end of the session `claims` name, before the session is checked: an end
/// announced after the check cannot be missed.
async fn listen_for_end(
    state: &AppState,
    conn: u64,
    claims: &Claims,
) -> Result<(Joined, mpsc::Receiver<Delivery>), ApiError> {
    let (announce, announced) = mpsc::channel::<Delivery>(8);
    let listening = Joined {
        hub: state.hub().clone(),
        conn,
        channels: BTreeSet::from([session_channel(&claims.sid)]),
    };
    listening
        .hub
        .join(conn, &listening.channels, &announce)
        .await
        .map_err(|e| {
            state.metrics().dependency_error("redis");
            tracing::warn!(error = %e, "cannot subscribe for a stream");
            ApiError::unavailable("the live stream")
        })?;
    Ok((listening, announced))
}

/// `GET /v1/stream`.
pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    mut parts: Parts,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Bearer(claims) = bearer(&mut parts, &state, &query).await?;
    let conn = state.hub().connection();
    let (listening, announced) = listen_for_end(&state, conn, &claims).await?;
    // Checked as every route checks it, once the stream listens for its end.
    let caller = Caller::from_request_parts(&mut parts, &state).await?;
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.holder());
    let (admitted, gone) = state
        .open_streams()
        .admit(conn, caller.player, ip, &caller.session)?;
    let end = SessionEnd {
        _listening: listening,
        announced,
        gone,
        expires_at: claims.exp,
        _admitted: admitted,
    };
    let placed = players::view(&state, caller.player)
        .await?
        .filter(|v| v.online);
    let interest = Interest::new(
        &state.settings().world,
        caller.player,
        state.settings().stream_interest_radius,
        placed.as_ref().and_then(|v| v.region.clone()),
        placed.as_ref().and_then(|v| v.position),
    );
    let hub = state.hub().clone();
    let (queue, queued) = mpsc::channel::<Delivery>(BUFFER);
    let joined = Joined {
        conn,
        channels: interest.channels(),
        hub,
    };
    joined
        .hub
        .join(joined.conn, &joined.channels, &queue)
        .await
        .map_err(|e| {
            state.metrics().dependency_error("redis");
            tracing::warn!(error = %e, "cannot subscribe for a stream");
            ApiError::unavailable("the live stream")
        })?;
    tracing::info!(player = %caller.player, channels = ?joined.channels, "stream opened");
    // Only the hub holds the queue now: when it drops a client that fell behind, the queue
    // closes and the stream ends.
    let queue = queue.downgrade();
    let ws = ws
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING);
    Ok(ws.on_upgrade(move |socket| pump(socket, state, joined, interest, queue, queued, end)))
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;
type Incoming = futures::stream::SplitStream<WebSocket>;

async fn pump(
    socket: WebSocket,
    state: AppState,
    joined: Joined,
    interest: Interest,
    queue: mpsc::WeakSender<Delivery>,
    queued: mpsc::Receiver<Delivery>,
    mut end: SessionEnd,
) {
    let (mut sink, mut incoming) = socket.split();
    let player = interest.player;
    // The session's end wins over whatever the stream is doing, a send to a client that does
    // not read included.
    let close = tokio::select! {
        reason = end.ended() => {
            tracing::info!(%player, reason, "stream ends with its session");
            Some(close_frame(SESSION_ENDED, reason))
        }
        () = state.stopping().cancelled() => {
            tracing::info!(%player, "stream ends as the gateway stops");
            Some(close_frame(GOING_AWAY, "gateway stopping"))
        }
        close = forward(&mut sink, &mut incoming, &state, joined, interest, queue, queued) => close,
    };
    if let Some(frame) = close {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

/// Sends the stream's facts until the stream ends; the close frame to end it with, if any.
async fn forward(
    sink: &mut Sink,
    incoming: &mut Incoming,
    state: &AppState,
    mut joined: Joined,
    mut interest: Interest,
    queue: mpsc::WeakSender<Delivery>,
    mut queued: mpsc::Receiver<Delivery>,
) -> Option<CloseFrame> {
    let own = channel::player(interest.player);
    let mut recent = Recent::default();
    loop {
        tokio::select! {
            next = queued.recv() => match next {
                Some(delivery) => {
                    if *delivery.channel == *own
                        && let Ok(fact) = Envelope::<Fact>::decode(delivery.text.as_bytes())
                        && interest.follow(&state.settings().world, &fact)
                        && !retarget(&mut joined, &interest, &queue).await
                    {
                        return None;
                    }
                    // A fact about the player in a region it listens to comes on two channels:
                    // once is enough.
                    if !recent.first_time(&delivery.text) {
                        continue;
                    }
                    let text = Utf8Bytes::from(delivery.text.as_ref());
                    if sink.send(Message::Text(text)).await.is_err() {
                        return None;
                    }
                }
                // The hub dropped this client: it fell behind, or Redis went away.
                None => return Some(close_frame(TOO_SLOW, "too slow or stream ended")),
            },
            from_client = incoming.next() => match from_client {
                None | Some(Ok(Message::Close(_))) => return None,
                Some(Err(e)) => return refusal(e),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The close frame for what a client sent that could not be read: 1009 when it was too big,
/// 1002 when it broke the protocol, none when the connection itself failed.
fn refusal(error: axum::Error) -> Option<CloseFrame> {
    let error = error.into_inner().downcast::<tungstenite::Error>().ok()?;
    match *error {
        tungstenite::Error::Capacity(_) => {
            Some(close_frame(TOO_BIG, "message too big for a stream"))
        }
        tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => {
            Some(close_frame(PROTOCOL_ERROR, "protocol error"))
        }
        _ => None,
    }
}

/// Moves a stream to the channels of its interest; `false` when the stream has ended.
async fn retarget(
    joined: &mut Joined,
    interest: &Interest,
    queue: &mpsc::WeakSender<Delivery>,
) -> bool {
    let next = interest.channels();
    let added: BTreeSet<String> = next.difference(&joined.channels).cloned().collect();
    let removed: BTreeSet<String> = joined.channels.difference(&next).cloned().collect();
    if !added.is_empty() {
        // No queue: the hub dropped this client already.
        let Some(queue) = queue.upgrade() else {
            return false;
        };
        if let Err(e) = joined.hub.join(joined.conn, &added, &queue).await {
            tracing::warn!(error = %e, "a stream could not follow its player");
            return false;
        }
    }
    joined.hub.leave(joined.conn, &removed).await;
    tracing::debug!(channels = ?next, "stream follows its player");
    joined.channels = next;
    true
}

/// The ids of the last facts sent on one connection, to send each once.
#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<String>,
    seen: std::collections::HashSet<String>,
}

impl Recent {
    const KEEP: usize = 1024;

    /// Whether a message is seen for the first time (messages without an id always are).
    fn first_time(&mut self, text: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Option<String>,
        }
        let Some(id) = serde_json::from_str::<Id>(text).ok().and_then(|m| m.id) else {
            return true;
        };
        if !self.seen.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use schemas::fact::{LeaveReason, Left, MovementStarted};
    use schemas::{Actor, EntityId, EventId};

    use super::*;

    fn world() -> WorldConfig {
        WorldConfig::from_toml(include_str!("../../config/regions.toml")).expect("regions")
    }

    fn fact(region: &str, payload: Fact) -> Envelope<Fact> {
        let id = EventId::new();
        Envelope {
            id,
            occurred_at: chrono::Utc::now(),
            actor: Actor::System {
                service: "region-sim".into(),
            },
            region: Some(region.parse().expect("region")),
            correlation_id: id,
            causation_id: None,
            payload,
        }
    }

    fn names(interest: &Interest) -> Vec<String> {
        interest.regions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_stream_listens_to_every_region_within_its_radius() {
        let world = world();
        let player = PlayerId::new();
        let middle = Interest::new(
            &world,
            player,
            100.0,
            Some("south-west".parse().expect("region")),
            Some(Position::new(500.0, 500.0)),
        );
        assert_eq!(names(&middle), ["south-west"]);
        let corner = Interest::new(
            &world,
            player,
            100.0,
            None,
            Some(Position::new(990.0, 990.0)),
        );
        assert_eq!(corner.regions.len(), 4, "all four regions meet there");
        let nowhere = Interest::new(&world, player, 100.0, None, None);
        assert!(nowhere.regions.is_empty());
        assert_eq!(
            nowhere.channels(),
            BTreeSet::from([channel::player(player)])
        );
    }

    #[test]
    fn a_walk_brings_every_region_along_it_into_view_and_leaving_drops_them() {
        let world = world();
        let player = PlayerId::new();
        let me = EntityId::from(player);
        let mut interest = Interest::new(
            &world,
            player,
            100.0,
            Some("south-west".parse().expect("region")),
            Some(Position::new(500.0, 500.0)),
        );
        let walk = fact(
            "south-west",
            Fact::MovementStarted(MovementStarted {
                entity: me,
                from: Position::new(500.0, 500.0),
                destination: Position::new(1500.0, 500.0),
            }),
        );
        assert!(interest.follow(&world, &walk));
        assert_eq!(names(&interest), ["south-east", "south-west"]);

        let someone_else = fact(
            "south-west",
            Fact::MovementStarted(MovementStarted {
                entity: EntityId::new(),
                from: Position::new(500.0, 500.0),
                destination: Position::new(500.0, 1500.0),
            }),
        );
        assert!(
            !interest.follow(&world, &someone_else),
            "only the player's own facts move it"
        );

        let left = fact(
            "south-east",
            Fact::Left(Left {
                entity: me,
                reason: LeaveReason::Requested,
                position: Position::new(1500.0, 500.0),
                progress: None,
            }),
        );
        assert!(interest.follow(&world, &left));
        assert!(interest.regions.is_empty());
    }

    #[test]
    fn a_fact_arriving_on_two_channels_is_sent_once() {
        let mut recent = Recent::default();
        let fact = r#"{"id": "0193", "kind": "damaged"}"#;
        assert!(recent.first_time(fact));
        assert!(!recent.first_time(fact));
        assert!(recent.first_time(r#"{"id": "0194", "kind": "moved"}"#));
        // Live positions carry no id; each is sent.
        let positions = r#"{"kind": "positions", "entities": []}"#;
        assert!(recent.first_time(positions) && recent.first_time(positions));
    }
}
