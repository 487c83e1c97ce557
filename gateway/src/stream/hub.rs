//! The gateway's one Redis subscription, shared by every live stream ([`Hub`]), and a stream's
//! place in it (`Joined`), left however the stream ends.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::ApiError;

/// How long a subscribe or unsubscribe may take before Redis counts as unreachable.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

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

/// A stream's place in the hub; leaves it when dropped, however the stream ends.
pub(super) struct Joined {
    pub(super) hub: Arc<Hub>,
    pub(super) conn: u64,
    pub(super) channels: BTreeSet<String>,
}

impl Joined {
    /// Makes the stream hear its channels on `queue`; 503 when Redis does not answer.
    pub(super) async fn subscribe(
        &self,
        state: &AppState,
        queue: &mpsc::Sender<Delivery>,
    ) -> Result<(), ApiError> {
        self.hub
            .join(self.conn, &self.channels, queue)
            .await
            .map_err(|e| {
                state.dependency_failed(
                    "redis",
                    e,
                    "cannot subscribe for a stream",
                    "the live stream",
                )
            })
    }
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
