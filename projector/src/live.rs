//! The live projection: `FACTS` into the read models, the audit trail and Redis; `COMMANDS` into
//! the audit trail; the simulators' live positions onto Redis.
//!
//! A pull batch of facts becomes one bulk write; the batch is acknowledged only once MongoDB has
//! journaled it. While MongoDB is unreachable the batch is retried with backoff (and kept from
//! being redelivered meanwhile), so the stream position is kept and nothing is skipped. A fact
//! whose writes MongoDB refuses again and again goes to `DLQ` with the reason, and the rest of
//! its batch goes on. Killed mid-batch, the projector is given the unacknowledged batch again
//! on its next start, and the `seq` guards and unique audit ids make the second pass change
//! nothing that the first already wrote.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use nats_topology::dlq::{DeadLetter, dead_letter};
use nats_topology::headers::{CLIENT_IP, REQUEST_ID};
use nats_topology::topology::{COMMANDS, FACTS};
use redis::aio::ConnectionManager;
use schemas::{Command, Envelope, Fact};
use tracing::{error, info, warn};

use crate::Context;
use crate::audit;
use crate::models::Stored;
use crate::projection::{self, Changed, Names, WriteError};

/// The durable consumer of the live projection on `FACTS`.
pub const FACTS_CONSUMER: &str = "projector";
/// The durable consumer of the audit trail on `COMMANDS`.
pub const COMMANDS_CONSUMER: &str = "audit-commands";

/// Creates the read models' indexes: the world's by region and coordinates, so "entities near a
/// point" is a range query, and the audit trail's.
pub async fn ensure_indexes(db: &Database, names: &Names) -> Result<(), mongodb::error::Error> {
    db.collection::<Document>(&names.world)
        .create_index(
            IndexModel::builder()
                .keys(doc! {"region": 1, "position.x": 1, "position.y": 1})
                .options(
                    IndexOptions::builder()
                        .name("by_region_position".to_owned())
                        .build(),
                )
                .build(),
        )
        .await?;
    db.collection::<Document>(&names.players)
        .create_index(
            IndexModel::builder()
                .keys(doc! {"online": 1, "region": 1})
                .options(
                    IndexOptions::builder()
                        .name("by_presence".to_owned())
                        .build(),
                )
                .build(),
        )
        .await?;
    db.collection::<Document>(&names.sessions)
        .create_index(
            IndexModel::builder()
                .keys(doc! {"player": 1, "started_at": -1})
                .options(
                    IndexOptions::builder()
                        .name("by_player_time".to_owned())
                        .build(),
                )
                .build(),
        )
        .await?;
    if names.audit.is_some() {
        audit::ensure_indexes(db).await?;
    }
    Ok(())
}

fn header(message: &jetstream::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

/// Decodes a fact message; `Err` with why when it is not one.
pub fn stored(message: &jetstream::Message) -> Result<Stored, String> {
    let info = message
        .info()
        .map_err(|e| format!("no JetStream metadata: {e}"))?;
    let env = Envelope::<Fact>::decode(&message.payload)
        .map_err(|e| format!("the fact does not decode: {e}"))?;
    Ok(Stored {
        seq: info.stream_sequence,
        env,
        client_ip: header(message, CLIENT_IP),
        request_id: header(message, REQUEST_ID),
    })
}

async fn durable(
    ctx: &Context,
    stream: &str,
    name: &str,
    filter: &str,
) -> Result<PullConsumer, async_nats::Error> {
    let stream = ctx.js.get_stream(stream).await?;
    Ok(stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject: filter.to_owned(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ctx.settings.ack_wait,
            deliver_policy: DeliverPolicy::All,
            // One batch outstanding at most: a batch a killed projector left unacknowledged is
            // delivered again before anything newer, so the facts of a document are folded in
            // stream order (the `seq` guard keeps an older fact from rolling a document back,
            // which would otherwise mean skipping one that was never applied).
            max_ack_pending: ctx.settings.batch_size as i64,
            ..Default::default()
        })
        .await?)
}

async fn next_batch(consumer: &PullConsumer, ctx: &Context) -> Vec<jetstream::Message> {
    let batch = consumer
        .batch()
        .max_messages(ctx.settings.batch_size)
        .expires(ctx.settings.fetch_wait)
        .messages()
        .await;
    let Ok(batch) = batch else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return Vec::new();
    };
    let mut batch = std::pin::pin!(batch);
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        match m {
            Ok(m) => out.push(m),
            Err(e) => {
                tracing::debug!(error = %e, "pull ended");
                break;
            }
        }
    }
    out
}

/// Keeps the messages of a batch being retried from being delivered again meanwhile.
async fn keep(messages: &[&jetstream::Message]) {
    for m in messages {
        let _ = m.ack_with(AckKind::Progress).await;
    }
}

async fn to_dlq(ctx: &Context, message: &jetstream::Message, why: &str) {
    warn!(subject = %message.subject, reason = why, "dead-lettered");
    ctx.metrics.dead_letters.inc();
    let Ok(letter) = DeadLetter::from_delivery(message, why) else {
        return;
    };
    let mut backoff = Duration::from_millis(100);
    while dead_letter(&ctx.js, &letter).await.is_err() {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let _ = message.ack_with(AckKind::Term).await;
}

/// Projects facts until `stop` turns true.
pub async fn project_facts(
    ctx: Arc<Context>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let names = Names::live();
    let consumer = durable(&ctx, FACTS, FACTS_CONSUMER, "fact.>").await?;
    let mut lag_at = Instant::now();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let messages = tokio::select! {
            m = next_batch(&consumer, &ctx) => m,
            _ = stop.changed() => return Ok(()),
        };
        if lag_at.elapsed() > Duration::from_secs(1) {
            lag_at = Instant::now();
            let mut c = consumer.clone();
            if let Ok(info) = c.info().await {
                ctx.metrics
                    .lag
                    .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            }
        }
        if messages.is_empty() {
            continue;
        }
        let _guard = ctx.live_lock.lock().await;
        project_batch(&ctx, &names, messages).await;
    }
}

/// Projects one batch of fact messages and acknowledges them.
pub async fn project_batch(ctx: &Context, names: &Names, messages: Vec<jetstream::Message>) {
    let mut batch: Vec<(Stored, &jetstream::Message)> = Vec::with_capacity(messages.len());
    for m in &messages {
        match stored(m) {
            Ok(s) => batch.push((s, m)),
            Err(why) => to_dlq(ctx, m, &why).await,
        }
    }
    ctx.metrics.batch_size.observe(batch.len() as f64);
    let mut attempts = 0;
    let mut backoff = Duration::from_millis(100);
    let changed = loop {
        let facts: Vec<Stored> = batch.iter().map(|(s, _)| s.clone()).collect();
        let started = Instant::now();
        // A server that accepted the connection and then never answers (one restarting, say)
        // must not hold the batch for ever: give up on the attempt and try again.
        let attempt = tokio::time::timeout(
            ctx.settings.write_timeout,
            projection::apply(&ctx.mongo, &ctx.db, names, &facts),
        )
        .await
        .unwrap_or_else(|_| {
            Err(WriteError::Unavailable(mongodb::error::Error::custom(
                "the bulk write did not finish in time",
            )))
        });
        match attempt {
            Ok(changed) => {
                ctx.metrics
                    .write_seconds
                    .observe(started.elapsed().as_secs_f64());
                break changed;
            }
            Err(WriteError::Unavailable(e)) => {
                warn!(error = %e, facts = facts.len(), "MongoDB unavailable; the batch waits");
                ctx.metrics.write_errors.inc();
                keep(&batch.iter().map(|(_, m)| *m).collect::<Vec<_>>()).await;
            }
            Err(WriteError::Refused {
                facts: refused,
                reason,
            }) => {
                attempts += 1;
                ctx.metrics.write_errors.inc();
                if attempts >= ctx.settings.max_write_attempts {
                    let mut kept = Vec::new();
                    for (i, (s, m)) in batch.into_iter().enumerate() {
                        if refused.contains(&i) {
                            to_dlq(
                                ctx,
                                m,
                                &format!("the read models refused it {attempts} times: {reason}"),
                            )
                            .await;
                        } else {
                            kept.push((s, m));
                        }
                    }
                    batch = kept;
                    attempts = 0;
                    continue;
                }
                warn!(reason, attempts, "writes refused; retrying");
                keep(&batch.iter().map(|(_, m)| *m).collect::<Vec<_>>()).await;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    let facts: Vec<&Stored> = batch.iter().map(|(s, _)| s).collect();
    for f in &facts {
        ctx.metrics
            .facts
            .with_label_values(&[f.env.payload.kind().as_str()])
            .inc();
    }
    tracing::debug!(facts = facts.len(), "batch written");
    bridge(ctx, &facts, &changed).await;
    for (_, m) in &batch {
        if let Err(e) = m.ack().await {
            // It comes back and changes nothing.
            warn!(error = %e, "ack failed");
        }
    }
}

/// Publishes the facts on the live stream's channels and refreshes the caches. Best effort:
/// the read models are written already; a cache left stale expires on its own.
async fn bridge(ctx: &Context, facts: &[&Stored], changed: &Changed) {
    let Some(mut redis) = ctx.redis.clone() else {
        return;
    };
    let mut pipe = redis::pipe();
    for f in facts {
        let Ok(body) = f.env.encode() else { continue };
        if let Some(region) = &f.env.region {
            pipe.publish(format!("region:{region}"), body.as_slice())
                .ignore();
        }
        let mut to: BTreeSet<String> = crate::models::players_of(&f.env.payload)
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        if let schemas::Actor::Player { id } = &f.env.actor {
            to.insert(id.to_string());
        }
        for player in to {
            pipe.publish(format!("player:{player}"), body.as_slice())
                .ignore();
        }
    }
    for player in &changed.players {
        pipe.del(format!("player:{player}")).ignore();
    }
    for region in &changed.regions {
        pipe.incr(format!("world:version:{region}"), 1).ignore();
    }
    if changed.population {
        let counted = tokio::time::timeout(ctx.settings.write_timeout, population(&ctx.db))
            .await
            .unwrap_or_else(|_| Err(mongodb::error::Error::custom("timed out")));
        match counted {
            Ok(counts) if !counts.is_empty() => {
                pipe.del("world:population").ignore();
                pipe.hset_multiple("world:population", &counts).ignore();
            }
            Ok(_) => {
                pipe.del("world:population").ignore();
            }
            Err(e) => warn!(error = %e, "cannot count the population"),
        }
    }
    if let Err(e) = pipe.query_async::<()>(&mut redis).await {
        ctx.metrics.redis_errors.inc();
        warn!(error = %e, "Redis bridge failed; caches expire on their own");
    }
}

async fn population(db: &Database) -> Result<Vec<(String, u32)>, mongodb::error::Error> {
    use futures::TryStreamExt;
    let docs: Vec<Document> = db
        .collection::<Document>(projection::PLAYERS)
        .aggregate([
            doc! {"$match": {"online": true, "region": {"$ne": null}}},
            doc! {"$group": {"_id": "$region", "n": {"$sum": 1}}},
        ])
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| {
            let region = d.get_str("_id").ok()?.to_owned();
            let n = d
                .get_i32("n")
                .map(i64::from)
                .or_else(|_| d.get_i64("n"))
                .ok()?;
            Some((region, u32::try_from(n).unwrap_or(u32::MAX)))
        })
        .collect())
}

/// Writes every command into the audit trail until `stop` turns true.
pub async fn audit_commands(
    ctx: Arc<Context>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let consumer = durable(&ctx, COMMANDS, COMMANDS_CONSUMER, "cmd.>").await?;
    let ns = mongodb::Namespace::new(ctx.db.name(), audit::AUDIT);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let messages = tokio::select! {
            m = next_batch(&consumer, &ctx) => m,
            _ = stop.changed() => return Ok(()),
        };
        if messages.is_empty() {
            continue;
        }
        let mut models = Vec::new();
        let mut behind = Vec::new();
        let mut written = Vec::new();
        let last_seq = messages
            .iter()
            .filter_map(|m| m.info().ok().map(|i| i.stream_sequence))
            .max()
            .unwrap_or(0);
        for (i, m) in messages.iter().enumerate() {
            let entry = m.info().map_err(|e| e.to_string()).and_then(|info| {
                let env = Envelope::<Command>::decode(&m.payload)
                    .map_err(|e| format!("the command does not decode: {e}"))?;
                let json: serde_json::Value = env
                    .encode()
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                audit::entry(
                    &json,
                    &audit::Origin {
                        stream: COMMANDS.into(),
                        seq: info.stream_sequence,
                        subject: m.subject.to_string(),
                        client_ip: header(m, CLIENT_IP),
                        request_id: header(m, REQUEST_ID),
                    },
                    env.occurred_at.timestamp_millis(),
                )
                .map_err(|e| e.to_string())
            });
            match entry {
                Ok(d) => {
                    models.push(mongodb::options::WriteModel::InsertOne(
                        mongodb::options::InsertOneModel::builder()
                            .namespace(ns.clone())
                            .document(d)
                            .build(),
                    ));
                    behind.push(vec![i]);
                    written.push(m);
                }
                // A command that does not decode is the simulator's to dead-letter; the audit
                // trail records what it can and lets it be.
                Err(why) => {
                    warn!(subject = %m.subject, reason = why, "command not audited");
                    let _ = m.ack().await;
                }
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = tokio::time::timeout(
                ctx.settings.write_timeout,
                projection::write(&ctx.mongo, models.clone(), &behind),
            )
            .await
            .unwrap_or_else(|_| {
                Err(WriteError::Unavailable(mongodb::error::Error::custom(
                    "the bulk write did not finish in time",
                )))
            });
            let attempt = match attempt {
                Ok(()) => projection::mark(&ctx.db, COMMANDS_CONSUMER, last_seq).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(()) => break,
                Err(e) => {
                    ctx.metrics.write_errors.inc();
                    error!(error = %e, "cannot write the audit of commands; retrying");
                    keep(&written).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        ctx.metrics
            .facts
            .with_label_values(&["command"])
            .inc_by(written.len() as u64);
        for m in written {
            let _ = m.ack().await;
        }
    }
}

/// Forwards the simulators' live positions (`live.<region>`) to the region's Redis channel.
pub async fn bridge_positions(
    ctx: Arc<Context>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let mut live = ctx.nats.subscribe("live.>").await?;
    loop {
        let message = tokio::select! {
            m = live.next() => match m { Some(m) => m, None => return Ok(()) },
            _ = stop.changed() => return Ok(()),
        };
        let Some(region) = message.subject.as_str().strip_prefix("live.") else {
            continue;
        };
        let Some(mut redis) = ctx.redis.clone() else {
            continue;
        };
        let Ok(entities) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
            continue;
        };
        let body = serde_json::json!({"kind": "positions", "region": region, "entities": entities});
        let _: Result<(), _> = redis::cmd("PUBLISH")
            .arg(format!("region:{region}"))
            .arg(body.to_string())
            .query_async(&mut redis)
            .await;
    }
}

/// Logs that the projection is up.
pub fn started(names: &Names) {
    info!(players = %names.players, world = %names.world, "live projection started");
}

/// A connection manager to Redis, or `None` (with a warning) when it cannot be had yet.
pub async fn redis(url: &str) -> Option<ConnectionManager> {
    let client = redis::Client::open(url).ok()?;
    match ConnectionManager::new(client).await {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(error = %e, "Redis unreachable; the live stream and caches wait for it");
            None
        }
    }
}
