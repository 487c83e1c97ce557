//! The ceilings, measured on the same servers in the same run as the game, so every figure of
//! the game is also a ratio: publishers awaiting their own JetStream acks (what the gateway's
//! 202 could at best reach), a bare ordered consumer reading `FACTS` (what any reader of the
//! log could at best reach), and the raw driver's bulk writes into MongoDB (what any projection
//! could at best reach). They write only to their own stream and database, removed afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::{Config, StorageType};
use futures::StreamExt;
use mongodb::bson::doc;
use mongodb::options::{UpdateOneModel, WriteConcern, WriteModel};

/// The scratch stream the publishers write to.
pub const SCRATCH_STREAM: &str = "BENCH_CEILING";
/// The scratch database the raw writes go to; never the game's.
pub const SCRATCH_DATABASE: &str = "bench_ceiling";
/// Documents per client bulk write, as the projector's benchmark writes them.
pub const RAW_BATCH: usize = 256;

/// Why a ceiling could not be measured.
#[derive(Debug, thiserror::Error)]
#[error("ceiling {what}: {why}")]
pub struct CeilingError {
    what: &'static str,
    why: String,
}

fn fail(what: &'static str) -> impl Fn(String) -> CeilingError {
    move |why| CeilingError { what, why }
}

/// What a timed phase came to: successes, failures, each success's latency, how long it took.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Calls that succeeded.
    pub ok: usize,
    /// Calls that failed.
    pub failed: usize,
    /// Latencies of the successes, sorted.
    pub latencies: Vec<Duration>,
    /// How long the phase took.
    pub took: Duration,
}

impl Phase {
    /// Successes per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.took.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The latency at quantile `q` (0 to 1); zero when nothing succeeded.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies[i]
    }
}

/// Runs `tasks` loops of `op` (given the task's number; `true` when it succeeded) until
/// `duration` has passed, timing each call.
pub async fn phase<F, Fut>(tasks: usize, duration: Duration, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if op(task).await {
                        ok += 1;
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    let mut result = Phase::default();
    for handle in handles {
        if let Ok((ok, failed, latencies)) = handle.await {
            result.ok += ok;
            result.failed += failed;
            result.latencies.extend(latencies);
        }
    }
    result.took = started.elapsed();
    result.latencies.sort();
    result
}

/// `publishers` tasks each publishing a small message and awaiting its ack, into a scratch
/// stream stored like `COMMANDS` (on file).
pub async fn publishers(
    js: &Context,
    publishers: usize,
    duration: Duration,
) -> Result<Phase, CeilingError> {
    let fail = fail("publishers");
    js.get_or_create_stream(Config {
        name: SCRATCH_STREAM.to_owned(),
        subjects: vec!["bench.ceiling.>".to_owned()],
        storage: StorageType::File,
        max_bytes: 1 << 30,
        ..Default::default()
    })
    .await
    .map_err(|e| fail(e.to_string()))?;
    let publisher = js.clone();
    let result = phase(publishers, duration, move |task| {
        let js = publisher.clone();
        async move {
            let payload = format!("{{\"type\":\"move\",\"x\":{task},\"y\":200}}");
            match js.publish("bench.ceiling.move", payload.into()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    js.delete_stream(SCRATCH_STREAM)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(result)
}

/// A bare ordered consumer reading `FACTS` from its first message, counting, for at most
/// `duration` or until the end; messages per second.
pub async fn ordered_consumer(js: &Context, duration: Duration) -> Result<f64, CeilingError> {
    let fail = fail("ordered consumer");
    let mut stream = js
        .get_stream(nats_topology::topology::FACTS)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let last = stream
        .info()
        .await
        .map_err(|e| fail(e.to_string()))?
        .state
        .last_sequence;
    let consumer = stream
        .create_consumer(OrderedConfig::default())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| fail(e.to_string()))?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + duration);
    let mut count = 0u64;
    while let Ok(Some(next)) = tokio::time::timeout_at(deadline, messages.next()).await {
        let message = next.map_err(|e| fail(e.to_string()))?;
        count += 1;
        if message.info().is_ok_and(|i| i.stream_sequence >= last) {
            break;
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// One upsert by `_id` per document: the least any projection of a fact has to write.
pub fn raw_upserts<'a>(
    ns: &mongodb::Namespace,
    docs: impl IntoIterator<Item = (String, &'a str, i64)>,
) -> Vec<WriteModel> {
    docs.into_iter()
        .map(|(id, kind, at)| {
            WriteModel::UpdateOne(
                UpdateOneModel::builder()
                    .namespace(ns.clone())
                    .filter(doc! {"_id": id})
                    .update(doc! {"$set": {"kind": kind, "at": at}})
                    .upsert(true)
                    .build(),
            )
        })
        .collect()
}

/// Writes `models` in one unordered, journaled client bulk write, as the projector writes.
pub async fn write_journaled(
    mongo: &mongodb::Client,
    models: Vec<WriteModel>,
) -> mongodb::error::Result<()> {
    mongo
        .bulk_write(models)
        .ordered(false)
        .write_concern(WriteConcern::builder().journal(true).build())
        .await
        .map(|_| ())
}

/// The raw driver's writes: one journaled upsert per document, [`RAW_BATCH`] to a client bulk
/// write, into a scratch database dropped afterwards, for `duration`; documents per second.
pub async fn raw_writes(mongo: &mongodb::Client, duration: Duration) -> Result<f64, CeilingError> {
    let fail = fail("raw writes");
    let ns = mongodb::Namespace::new(SCRATCH_DATABASE, "raw");
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < duration {
        let at = chrono::Utc::now().timestamp_millis();
        let models = raw_upserts(
            &ns,
            (0..RAW_BATCH as u64).map(|i| (format!("fact-{}", written + i), "moved", at)),
        );
        write_journaled(mongo, models)
            .await
            .map_err(|e| fail(e.to_string()))?;
        written += RAW_BATCH as u64;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    mongo
        .database(SCRATCH_DATABASE)
        .drop()
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(rate)
}
