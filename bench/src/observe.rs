//! What the driver watches beside the players: every fact of the run as `FACTS` stores it (an
//! ordered consumer from the first sequence after the start), and the projector's position in
//! Redis (`projection:facts:position`), polled often.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use schemas::read_model::key::PROJECTION_POSITION;

/// How often the projector's position is read.
pub const POSITION_POLL: Duration = Duration::from_millis(5);

/// One fact as the log stored it.
#[derive(Debug, Clone)]
pub struct StoredFact {
    /// Its place in `FACTS`.
    pub seq: u64,
    /// When the server stored it, microseconds since the epoch.
    pub stored_us: i64,
    /// Its id (what a live stream carries).
    pub id: String,
    /// The command it is part of the outcome of.
    pub correlation_id: String,
}

#[derive(Deserialize)]
struct Head {
    id: String,
    correlation_id: String,
}

/// Why the log could not be followed.
#[derive(Debug, thiserror::Error)]
#[error("cannot follow FACTS: {0}")]
pub struct FollowError(String);

impl FollowError {
    /// An error saying why.
    pub fn new(why: String) -> Self {
        Self(why)
    }
}

/// The last sequence `FACTS` holds.
pub async fn last_fact(js: &Context) -> Result<u64, FollowError> {
    let mut stream = js
        .get_stream(nats_topology::topology::FACTS)
        .await
        .map_err(|e| FollowError(e.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|e| FollowError(e.to_string()))?;
    Ok(info.state.last_sequence)
}

/// Reads every fact from `from` on until `stop` names a sequence it has reached (or passed);
/// `seen` is told the last sequence read as it goes.
pub async fn follow_facts(
    js: Context,
    from: u64,
    mut stop: watch::Receiver<Option<u64>>,
    seen: watch::Sender<u64>,
) -> Result<Vec<StoredFact>, FollowError> {
    let stream = js
        .get_stream(nats_topology::topology::FACTS)
        .await
        .map_err(|e| FollowError(e.to_string()))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| FollowError(e.to_string()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| FollowError(e.to_string()))?;
    let mut facts = Vec::new();
    let mut last = from.saturating_sub(1);
    loop {
        if stop.borrow().is_some_and(|end| last >= end) {
            return Ok(facts);
        }
        tokio::select! {
            next = messages.next() => {
                let Some(next) = next else { return Ok(facts) };
                let message = next.map_err(|e| FollowError(e.to_string()))?;
                let Ok(info) = message.info() else { continue };
                last = info.stream_sequence;
                let stored_us = info.published.timestamp_micros();
                if let Ok(head) = serde_json::from_slice::<Head>(&message.payload) {
                    facts.push(StoredFact { seq: last, stored_us, id: head.id, correlation_id: head.correlation_id });
                }
                seen.send_replace(last);
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    return Ok(facts);
                }
            }
        }
    }
}

/// Polls the projector's position until `stop` turns true; `latest` is told each new one. Returns
/// each change: `(microseconds since the epoch, position)`.
pub async fn follow_position(
    redis_url: String,
    mut stop: watch::Receiver<bool>,
    latest: watch::Sender<u64>,
) -> Result<Vec<(i64, u64)>, redis::RedisError> {
    let mut redis = service::redis::Redis::connect(&redis_url, None).await?;
    let mut changes = Vec::new();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(POSITION_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => continue,
        }
        // A read that fails or times out on a loaded machine is tried again at the next poll:
        // the observer must not end before the run does.
        let position: Result<Option<u64>, _> = redis::cmd("GET")
            .arg(PROJECTION_POSITION)
            .query_async(&mut redis)
            .await;
        let now = chrono::Utc::now().timestamp_micros();
        if let Ok(Some(position)) = position
            && position > last
        {
            last = position;
            changes.push((now, position));
            latest.send_replace(position);
        }
    }
    Ok(changes)
}
