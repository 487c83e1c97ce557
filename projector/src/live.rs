//! The live projection: `FACTS` into the read models, the audit trail and Redis; `COMMANDS` into
//! the audit trail; the simulators' live positions onto Redis.
//!
//! A pull batch of facts becomes one bulk write; the batch is acknowledged only once MongoDB has
//! journaled it. Writes take turns on the process's [`Lane`](crate::pace::Lane), are sized by a
//! [`Pace`] and are never abandoned while the server may still run them (see [`crate::pace`]).
//! While MongoDB is unreachable the batch is retried with backoff (and kept from being
//! redelivered meanwhile), so the stream position is kept and nothing is skipped. A fact whose
//! data cannot be written goes to `DLQ` at once, one whose writes MongoDB refuses again and
//! again after its attempts, each with the reason, and the rest of its batch goes on. Killed
//! mid-batch, the projector is given the unacknowledged batch again on its next start, and the
//! `seq` guards and unique audit ids make the second pass change nothing that the first
//! already wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use mongodb::Database;
use mongodb::bson::{Document, doc};
use nats_topology::dlq::{DeadLetter, dead_letter};
use nats_topology::headers::{self, CLIENT_IP, CLIENT_REQUEST_ID, REQUEST_ID};
use nats_topology::topology::{COMMANDS, FACTS};
use schemas::read_model::{channel, collection, key};
use schemas::{Command, Envelope, Fact};
use service::redis::Redis;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::Context;
use crate::metrics::DeadLetterReason;
use crate::models::Stored;
use crate::pace::{Backoff, Lost, Pace, Running};
use crate::projection::{self, Changed, Names, WriteError};
use crate::settings::Settings;
use crate::trail::{self, named_index};

/// The durable consumer of the live projection on `FACTS`.
pub const FACTS_CONSUMER: &str = "projector";
/// The durable consumer of the audit trail on `COMMANDS`.
pub const COMMANDS_CONSUMER: &str = "audit-commands";

/// Creates the read models' indexes: the world's by region and coordinates, so "entities near a
/// point" is a range query, and the audit trail's.
pub async fn ensure_indexes(db: &Database, names: &Names) -> Result<(), mongodb::error::Error> {
    db.collection::<Document>(&names.world)
        .create_index(named_index(
            doc! {"region": 1, "position.x": 1, "position.y": 1},
            "by_region_position",
        ))
        .await?;
    db.collection::<Document>(&names.players)
        .create_index(named_index(doc! {"online": 1, "region": 1}, "by_presence"))
        .await?;
    db.collection::<Document>(&names.sessions)
        .create_index(named_index(
            doc! {"player": 1, "started_at": -1},
            "by_player_time",
        ))
        .await?;
    if names.audit.is_some() {
        trail::ensure_indexes(db).await?;
    }
    Ok(())
}

/// Decodes a fact message; `Err` with why when it is not one.
pub fn stored(message: &jetstream::Message) -> Result<Stored, String> {
    let info = message
        .info()
        .map_err(|e| format!("no JetStream metadata: {e}"))?;
    let env = Envelope::<Fact>::decode(&message.payload)
        .map_err(|e| format!("the fact does not decode: {e}"))?;
    // The subject is what the bus's permissions judged (a simulator writes its regions' facts
    // alone); a fact that names another would be filed where its writer may not write.
    let own = env.subject().to_string();
    if own != message.subject.as_str() {
        return Err(format!(
            "the fact was stored on {}, not on {own}",
            message.subject
        ));
    }
    Ok(Stored {
        seq: info.stream_sequence,
        env,
        client_ip: headers::read(message, CLIENT_IP),
        request_id: headers::read(message, REQUEST_ID),
    })
}

/// The durable pull consumer `name` of the subjects `filter`, as a projector with `settings`
/// creates it.
pub fn durable_config(settings: &Settings, name: &str, filter: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subject: filter.to_owned(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        deliver_policy: DeliverPolicy::All,
        // One batch outstanding at most. That alone does not keep the facts in stream order:
        // a batch delivered to a projector that stopped before acknowledging it (or, for a
        // moment, to one that was killed) comes back only once its acknowledgement is overdue,
        // after newer facts; the live projection reads such facts from the stream first (see
        // `earlier_facts`).
        max_ack_pending: settings.batch_size as i64,
        ..Default::default()
    }
}

async fn durable(
    ctx: &Context,
    stream: &str,
    name: &str,
    filter: &str,
) -> Result<PullConsumer, async_nats::Error> {
    let stream = ctx.js.get_stream(stream).await?;
    Ok(stream
        .create_consumer(durable_config(&ctx.settings, name, filter))
        .await?)
}

/// The next batch of `name`'s consumer, as large as `pace` allows now (and that limit shown in
/// the metrics), waiting through empty pulls; `None` once `stop` turns true.
async fn paced_batch(
    consumer: &PullConsumer,
    name: &str,
    ctx: &Context,
    pace: &Pace,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<jetstream::Message>> {
    loop {
        if *stop.borrow() {
            return None;
        }
        ctx.metrics
            .batch_limit
            .with_label_values(&[name])
            .set(pace.limit() as i64);
        let messages = tokio::select! {
            m = next_batch(consumer, ctx, pace.limit()) => m,
            _ = stop.changed() => return None,
        };
        if !messages.is_empty() {
            return Some(messages);
        }
    }
}

async fn next_batch(
    consumer: &PullConsumer,
    ctx: &Context,
    limit: usize,
) -> Vec<jetstream::Message> {
    let batch = consumer
        .batch()
        .max_messages(limit)
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

/// Keeps the messages of a batch being written or retried from being delivered again meanwhile.
async fn keep(messages: &[&jetstream::Message]) {
    for m in messages {
        let _ = m.ack_with(AckKind::Progress).await;
    }
}

/// The stream a consumer's events come from, as the `origin` label of the dead letters says it.
fn origin(consumer: &str) -> &'static str {
    if consumer == COMMANDS_CONSUMER {
        "commands"
    } else {
        "facts"
    }
}

async fn to_dlq(
    ctx: &Context,
    message: &jetstream::Message,
    why: &str,
    origin: &str,
    reason: DeadLetterReason,
) {
    warn!(subject = %message.subject, reason = why, "dead-lettered");
    ctx.metrics
        .dead_letters
        .with_label_values(&[origin, reason.as_str()])
        .inc();
    let Ok(mut letter) = DeadLetter::from_delivery(message, why) else {
        return;
    };
    if origin == "facts" {
        // A fact read from the stream ahead of its own delivery (see `earlier_facts`) came by
        // an ordered consumer of no standing: it is the live projection's.
        letter.consumer = Some(FACTS_CONSUMER.to_owned());
    }
    // The projection waits here rather than go on without a record of what it left out; a
    // full `DLQ` (it discards new letters) stops it until there is room, which the log says.
    let mut backoff = Backoff::new();
    while let Err(e) = dead_letter(&ctx.js, &letter).await {
        warn!(subject = %message.subject, error = %e, "DLQ did not take a dead letter; the projection waits until it does");
        tokio::time::sleep(backoff.delay()).await;
    }
    let _ = message.ack_with(AckKind::Term).await;
}

/// Sleeps for `delay`; `false` (at once) when asked to stop.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

/// Waits for a write on the lane to end, keeping `messages` from redelivery meanwhile and
/// logging while it runs long: it is never abandoned and sent again on top of itself. Asked to
/// stop, it waits at most the stop grace period; `None` when the write had not ended by then
/// (its batch stays unacknowledged and is delivered again to the next projector).
async fn finish<T>(
    ctx: &Context,
    consumer: &'static str,
    mut running: Running<T>,
    messages: &[&jetstream::Message],
    stop: &mut watch::Receiver<bool>,
) -> Option<Result<(T, Duration), Lost>> {
    let every = (ctx.settings.ack_wait / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut deadline = stop
        .borrow()
        .then(|| tokio::time::Instant::now() + ctx.settings.stop_grace);
    loop {
        let give_up = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut running => return Some(result),
            _ = tick.tick() => {
                keep(messages).await;
                if running.waited() >= ctx.settings.ack_wait {
                    warn!(
                        consumer,
                        waited_ms = running.waited().as_millis() as u64,
                        events = messages.len(),
                        "a write is still running; waiting for it to end before writing again"
                    );
                }
            }
            changed = stop.changed(), if deadline.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    deadline = Some(tokio::time::Instant::now() + ctx.settings.stop_grace);
                }
            }
            _ = give_up => {
                warn!(consumer, "stopping with a write still running; its batch will be delivered again");
                return None;
            }
        }
    }
}

/// Dead-letters the events of `batch` at `indexes` with `why`; returns the rest.
async fn dead_letter_some<'a, I>(
    ctx: &Context,
    consumer: &str,
    batch: Vec<(I, &'a jetstream::Message)>,
    indexes: &BTreeSet<usize>,
    why: &str,
    reason: DeadLetterReason,
) -> Vec<(I, &'a jetstream::Message)> {
    let mut kept = Vec::with_capacity(batch.len());
    for (i, (item, m)) in batch.into_iter().enumerate() {
        if indexes.contains(&i) {
            to_dlq(ctx, m, why, origin(consumer), reason).await;
        } else {
            kept.push((item, m));
        }
    }
    kept
}

/// Writes a batch on the lane until it is written: what MongoDB could not take is retried
/// (after the attempt before has ended, with backoff, in smaller batches next time); events
/// whose data cannot be written are dead-lettered at once, and those MongoDB refuses
/// `max_write_attempts` times after that. Returns the write's output and the events written
/// (to acknowledge), or `None` when asked to stop first.
async fn write_batch<'a, I, T, F, Fut>(
    ctx: &Context,
    consumer: &'static str,
    pace: &mut Pace,
    stop: &mut watch::Receiver<bool>,
    mut batch: Vec<(I, &'a jetstream::Message)>,
    make: F,
) -> Option<(T, Vec<(I, &'a jetstream::Message)>)>
where
    I: Clone,
    T: Send + 'static,
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Result<T, WriteError>> + Send + 'static,
{
    let mut refusals = 0;
    let mut backoff = Backoff::new();
    loop {
        let messages: Vec<&jetstream::Message> = batch.iter().map(|(_, m)| *m).collect();
        let events = batch.len();
        let running = ctx
            .lane
            .spawn(make(batch.iter().map(|(i, _)| i.clone()).collect()));
        let error = match finish(ctx, consumer, running, &messages, stop).await? {
            Ok((Ok(out), took)) => {
                pace.wrote(events, took);
                ctx.metrics
                    .write_seconds
                    .with_label_values(&[consumer])
                    .observe(took.as_secs_f64());
                ctx.metrics
                    .batch_size
                    .with_label_values(&[consumer])
                    .observe(events as f64);
                return Some((out, batch));
            }
            Ok((Err(e), _)) => e,
            Err(lost) => {
                error!(consumer, error = %lost, "a write failed unexpectedly; retrying");
                WriteError::Unavailable(mongodb::error::Error::from(std::io::Error::other(
                    lost.to_string(),
                )))
            }
        };
        ctx.metrics
            .write_errors
            .with_label_values(&[consumer])
            .inc();
        match error {
            WriteError::Unwritable { facts, reason } => {
                // Nothing was written and the rest has not been tried: at once, without them.
                batch = dead_letter_some(
                    ctx,
                    consumer,
                    batch,
                    &facts,
                    &reason,
                    DeadLetterReason::Unwritable,
                )
                .await;
                continue;
            }
            WriteError::Refused { facts, reason } => {
                refusals += 1;
                if refusals >= ctx.settings.max_write_attempts {
                    let why = format!("MongoDB refused it {refusals} times: {reason}");
                    batch = dead_letter_some(
                        ctx,
                        consumer,
                        batch,
                        &facts,
                        &why,
                        DeadLetterReason::Refused,
                    )
                    .await;
                    refusals = 0;
                    continue;
                }
                warn!(
                    consumer,
                    reason,
                    attempts = refusals,
                    "writes refused; retrying"
                );
            }
            WriteError::Unavailable(e) => {
                pace.failed();
                warn!(consumer, error = %e, events, "MongoDB unavailable; the batch waits");
            }
        }
        keep(&messages).await;
        if !pause(backoff.delay(), stop).await {
            return None;
        }
    }
}

/// What a batch of facts did to the read models, and the population after it when that may
/// have changed.
struct Written {
    changed: Changed,
    population: Option<Result<Vec<(String, u32)>, mongodb::error::Error>>,
}

/// Projects facts until `stop` turns true.
pub async fn project_facts(
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let names = Names::live();
    let consumer = durable(&ctx, FACTS, FACTS_CONSUMER, "fact.>").await?;
    let mut pace = Pace::new(ctx.settings.batch_size, ctx.settings.target_write);
    let mut headway = Headway::default();
    while let Some(messages) = paced_batch(&consumer, FACTS_CONSUMER, &ctx, &pace, &mut stop).await
    {
        let _guard = ctx.live_lock.lock().await;
        project_batch(&ctx, &names, messages, &mut pace, &mut stop, &mut headway).await;
    }
    Ok(())
}

/// What the live projection of facts knows of its own progress, from one batch to the next.
#[derive(Debug, Default)]
pub struct Headway {
    /// How far the projection is written in stream order, as far as this task knows.
    folded_to: Option<u64>,
    /// The facts read from the stream ahead of their own delivery, folded and published on the
    /// live stream's channels then; their own delivery publishes them no more.
    read_ahead: BTreeSet<u64>,
}

impl Headway {
    /// Whether the fact at `seq`, delivered in its own right, was published when it was read
    /// ahead; it is forgotten either way, as it comes once more at most.
    fn published_before(&mut self, seq: u64) -> bool {
        self.read_ahead.remove(&seq)
    }

    /// Remembers the facts at `seqs` as read ahead and published, keeping no more than `most`:
    /// a fact whose own delivery never comes to this task (another projector took the
    /// consumer) is forgotten once newer ones push it out, and at worst published twice.
    fn read_ahead(&mut self, seqs: &BTreeSet<u64>, most: usize) {
        self.read_ahead.extend(seqs);
        while self.read_ahead.len() > most {
            self.read_ahead.pop_first();
        }
    }
}

/// The facts before the newest of a batch (`messages`) that the projection has not written and
/// the batch was not given, read from the stream.
///
/// Facts delivered to a projector that stopped before it acknowledged them (or, for a moment,
/// to one that was killed) are delivered again only once their acknowledgement is overdue,
/// after newer ones. Folded after those, they would be skipped as older than the documents
/// (the `seq` guard), and lost. So they are folded first, read from the stream (`FACTS` keeps
/// every fact, in order, and allows no deletion); their own delivery later changes nothing.
/// `folded_to` is how far the projection is written in stream order: asked of MongoDB when it
/// is not known, and again when a batch seems to skip facts. `None` when asked to stop first.
///
/// A batch is ahead of the projection by one batch at most (`max_ack_pending`), and the position
/// recorded behind it by another at most (a projector killed between a write and its record).
/// Far more means that the position is not what the consumer delivers (the database restored
/// from an older backup, say): a rebuild, not a batch, repairs that, and the batch goes on
/// alone, saying so.
async fn earlier_facts(
    ctx: &Context,
    names: &Names,
    folded_to: &mut Option<u64>,
    messages: &[jetstream::Message],
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<jetstream::Message>> {
    let delivered: BTreeSet<u64> = messages.iter().filter_map(sequence).collect();
    let Some(&newest) = delivered.last() else {
        return Some(Vec::new());
    };
    let skipped = |from: u64| (from.saturating_add(1)..newest).filter(|s| !delivered.contains(s));
    if folded_to.is_some_and(|w| skipped(w).next().is_none()) {
        return Some(Vec::new());
    }
    let held: Vec<&jetstream::Message> = messages.iter().collect();
    let mut backoff = Backoff::new();
    let position = loop {
        // On the lane, as the writes, and kept from redelivery while MongoDB takes its time.
        let (db, players) = (ctx.db.clone(), names.players.clone());
        let running = ctx
            .lane
            .spawn(async move { projection::position(&db, &players).await });
        match finish(ctx, FACTS_CONSUMER, running, &held, stop).await? {
            Ok((Ok(position), _)) => break position,
            Ok((Err(e), _)) => {
                warn!(error = %e, "cannot read the projection's position; the batch waits")
            }
            Err(lost) => warn!(error = %lost, "cannot read the projection's position; retrying"),
        }
        keep(&held).await;
        if !pause(backoff.delay(), stop).await {
            return None;
        }
    };
    *folded_to = Some(position);
    let most = 2 * ctx.settings.batch_size;
    let missing: BTreeSet<u64> = skipped(position).take(most + 1).collect();
    let (Some(&first), Some(&last)) = (missing.first(), missing.last()) else {
        return Some(Vec::new());
    };
    if missing.len() > most {
        error!(
            position,
            newest,
            "the consumer delivers facts far beyond the projection's recorded position; \
             folding on without those in between (a rebuild brings them in)"
        );
        return Some(Vec::new());
    }
    warn!(
        facts = missing.len(),
        first,
        last,
        "facts before this batch were delivered to a projector that did not write them; \
         reading them from the stream to fold them first"
    );
    loop {
        keep(&held).await;
        match read_facts(ctx, first, last, &missing).await {
            Ok(read) => return Some(read),
            Err(e) => {
                warn!(error = %e, "cannot read the earlier facts from FACTS; the batch waits")
            }
        }
        keep(&held).await;
        if !pause(backoff.delay(), stop).await {
            return None;
        }
    }
}

/// The messages of `FACTS` at the sequences `wanted`, from `first` to `last`, read with an
/// ordered consumer (as a rebuild reads the stream).
async fn read_facts(
    ctx: &Context,
    first: u64,
    last: u64,
    wanted: &BTreeSet<u64>,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let mut messages = facts_from(ctx, first).await?;
    let mut out = Vec::with_capacity(wanted.len());
    // Well inside `ack_wait`: the batch waiting for these is not kept from redelivery meanwhile.
    let patience = ctx.settings.ack_wait / 2;
    loop {
        let next = tokio::time::timeout(patience, messages.next())
            .await
            .map_err(|_| "FACTS gave no fact in time")?;
        let message = next.ok_or("FACTS ended before the earlier facts")??;
        let seq = sequence(&message).ok_or("a fact without its sequence")?;
        if wanted.contains(&seq) {
            out.push(message);
        }
        if seq >= last {
            return Ok(out);
        }
    }
}

/// The facts of `FACTS` from the sequence `first` on, in order, read by an ordered consumer (a
/// rebuild's whole stream, the live projection's earlier facts).
pub async fn facts_from(
    ctx: &Context,
    first: u64,
) -> Result<consumer::pull::Ordered, async_nats::Error> {
    let stream = ctx.js.get_stream(FACTS).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "fact.>".into(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

/// A delivered message's sequence in its stream.
fn sequence(message: &jetstream::Message) -> Option<u64> {
    message.info().ok().map(|i| i.stream_sequence)
}

/// Projects one batch of fact messages and acknowledges them (or, asked to stop before they
/// are written, leaves them to be delivered again).
pub async fn project_batch(
    ctx: &Context,
    names: &Names,
    messages: Vec<jetstream::Message>,
    pace: &mut Pace,
    stop: &mut watch::Receiver<bool>,
    headway: &mut Headway,
) {
    let newest = messages.iter().filter_map(sequence).max();
    let folded_to = &mut headway.folded_to;
    let Some(earlier) = earlier_facts(ctx, names, folded_to, &messages, stop).await else {
        return;
    };
    let earlier_seqs: BTreeSet<u64> = earlier.iter().filter_map(sequence).collect();
    let mut messages = messages;
    messages.extend(earlier);
    messages.sort_by_key(|m| sequence(m).unwrap_or(0));
    let mut batch: Vec<(Stored, &jetstream::Message)> = Vec::with_capacity(messages.len());
    for m in &messages {
        match stored(m) {
            Ok(s) => batch.push((s, m)),
            // It changes no document: its own delivery dead-letters it.
            Err(_) if sequence(m).is_some_and(|s| earlier_seqs.contains(&s)) => {}
            Err(why) => to_dlq(ctx, m, &why, "facts", DeadLetterReason::Undecodable).await,
        }
    }
    let (client, db, names) = (ctx.mongo.clone(), ctx.db.clone(), names.clone());
    let writer = ctx.live_writer.clone();
    let write = move |facts: Vec<Stored>| {
        let (client, db, names, writer) =
            (client.clone(), db.clone(), names.clone(), writer.clone());
        async move {
            let mut writer = writer.lock().await;
            let changed = projection::apply(&client, &db, &names, &facts, &mut writer).await?;
            if let Some(newest) = newest
                && facts.last().is_none_or(|f| f.seq < newest)
            {
                // The newest were dead-lettered, so the write did not record them: recorded
                // here, so that a later batch does not take them for facts it was not given.
                projection::mark(&db, &names.players, newest).await?;
            }
            // Counted here, on the lane, so that the count is never one more query
            // running beside a write.
            let population = if changed.population {
                Some(population(&db).await)
            } else {
                None
            };
            Ok(Written {
                changed,
                population,
            })
        }
    };
    let Some((written, batch)) = write_batch(ctx, FACTS_CONSUMER, pace, stop, batch, write).await
    else {
        return;
    };
    let facts: Vec<&Stored> = batch.iter().map(|(s, _)| s).collect();
    // Every fact of the batch is handled now: written, or dead-lettered; and every one before
    // it.
    if let Some(newest) = newest {
        *folded_to = Some(folded_to.map_or(newest, |w| w.max(newest)));
    }
    let now = chrono::Utc::now();
    for f in facts.iter().filter(|f| !earlier_seqs.contains(&f.seq)) {
        ctx.metrics
            .facts
            .with_label_values(&[f.env.payload.kind().as_str()])
            .inc();
        let behind = (now - f.env.occurred_at).to_std().unwrap_or_default();
        ctx.metrics
            .fact_to_read_model_seconds
            .observe(behind.as_secs_f64());
    }
    tracing::debug!(facts = facts.len(), "batch written");
    // A fact read ahead was published with the batch that read it; a client's stream would
    // drop the repeat, but Redis and every gateway would carry it first.
    let to_publish: Vec<&Stored> = facts
        .iter()
        .copied()
        .filter(|f| earlier_seqs.contains(&f.seq) || !headway.published_before(f.seq))
        .collect();
    if bridge(ctx, &to_publish, &written, newest).await {
        // Only what went out: a fact whose publishing failed goes out with its own delivery.
        let published: BTreeSet<u64> = to_publish
            .iter()
            .map(|f| f.seq)
            .filter(|s| earlier_seqs.contains(s))
            .collect();
        headway.read_ahead(&published, 4 * ctx.settings.batch_size);
    }
    for (_, m) in &batch {
        if let Err(e) = m.ack().await {
            // It comes back and changes nothing.
            warn!(error = %e, "ack failed");
        }
    }
}

/// Raises the projection's position to `ARGV[1]`, never lowers it (a redelivered batch is
/// older than what is written already).
const RAISE_POSITION: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
";

/// Replaces the hash `KEYS[1]` by the field and value pairs of `ARGV` (emptied when there are
/// none), in one step: on a Redis Cluster, the commands of one bridge round are not one
/// pipeline, and a reader between a `DEL` and an `HSET` would see nobody in the world.
const REPLACE_POPULATION: &str = r"
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 0
";

/// Publishes the facts on the live stream's channels, refreshes the caches and then raises the
/// projection's position to `position`; whether Redis took it all. Best effort: the read models
/// are written already; a cache left stale expires on its own, and a position not raised holds
/// back only the reads that asked for it.
async fn bridge(
    ctx: &Context,
    facts: &[&Stored],
    written: &Written,
    position: Option<u64>,
) -> bool {
    let Some(mut redis) = ctx.redis.clone() else {
        return false;
    };
    let changed = &written.changed;
    let mut caches = Vec::new();
    for f in facts {
        let Ok(body) = f.env.encode() else { continue };
        if let Some(region) = &f.env.region {
            caches.push(redis::Cmd::publish(
                channel::region(region),
                body.as_slice(),
            ));
        }
        let mut to: BTreeSet<_> = crate::models::players_of(&f.env.payload)
            .into_iter()
            .collect();
        if let schemas::Actor::Player { id } = &f.env.actor {
            to.insert(*id);
        }
        for player in to {
            caches.push(redis::Cmd::publish(
                channel::player(player),
                body.as_slice(),
            ));
        }
    }
    for player in &changed.players {
        caches.push(redis::Cmd::del(key::player_view(player)));
    }
    for region in &changed.regions {
        caches.push(redis::Cmd::incr(key::world_version(region), 1));
    }
    match &written.population {
        None => {}
        Some(Ok(counts)) => {
            // One command, so that no reader sees the hash emptied and not yet filled.
            let mut replace = redis::cmd("EVAL");
            replace.arg(REPLACE_POPULATION).arg(1).arg(key::POPULATION);
            for (region, n) in counts {
                replace.arg(region).arg(n);
            }
            caches.push(replace);
        }
        Some(Err(e)) => warn!(error = %e, "cannot count the population"),
    }
    // Last, after the caches: a read that sees the position sees fresh caches.
    let mut last = Vec::new();
    if let Some(position) = position {
        let mut raise = redis::cmd("EVAL");
        raise
            .arg(RAISE_POSITION)
            .arg(1)
            .arg(key::PROJECTION_POSITION)
            .arg(position);
        last.push(raise);
    }
    if let Err(e) = redis.in_order(vec![caches, last]).await {
        ctx.metrics.redis_errors.inc();
        warn!(error = %e, "Redis bridge failed; caches expire on their own");
        return false;
    }
    true
}

async fn population(db: &Database) -> Result<Vec<(String, u32)>, mongodb::error::Error> {
    use futures::TryStreamExt;
    let docs: Vec<Document> = db
        .collection::<Document>(collection::PLAYERS)
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
            let n = projection::integer(&d, "n")?;
            Some((region, u32::try_from(n).unwrap_or(u32::MAX)))
        })
        .collect())
}

/// A command's audit document and its sequence in `COMMANDS`.
type AuditEntry = (u64, Document);

/// Why a command has no audit entry.
enum Unaudited {
    /// It is no command: it goes to the dead letters.
    Undecodable(String),
    /// A command, but its document cannot be made: logged and let be (a simulator may have
    /// applied it, so it is no dead letter to redrive).
    NoDocument(String),
}

/// Builds the audit entry of a command message; `Err` with why when it has none.
fn command_entry(m: &jetstream::Message) -> Result<AuditEntry, Unaudited> {
    let info = m.info().map_err(|e| Unaudited::NoDocument(e.to_string()))?;
    let env = Envelope::<Command>::decode(&m.payload)
        .map_err(|e| Unaudited::Undecodable(format!("the command does not decode: {e}")))?;
    let json: serde_json::Value = env
        .encode()
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let doc = trail::entry(
        &json,
        &trail::Origin {
            stream: COMMANDS.into(),
            seq: info.stream_sequence,
            subject: m.subject.to_string(),
            client_ip: headers::read(m, CLIENT_IP),
            request_id: headers::read(m, REQUEST_ID),
            client_request_id: headers::read(m, CLIENT_REQUEST_ID),
        },
        env.occurred_at.timestamp_millis(),
    )
    .map_err(|e| Unaudited::NoDocument(e.to_string()))?;
    Ok((info.stream_sequence, doc))
}

/// Writes every command into the audit trail until `stop` turns true.
pub async fn audit_commands(
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let consumer = durable(&ctx, COMMANDS, COMMANDS_CONSUMER, "cmd.>").await?;
    let mut pace = Pace::new(ctx.settings.batch_size, ctx.settings.target_write);
    while let Some(messages) =
        paced_batch(&consumer, COMMANDS_CONSUMER, &ctx, &pace, &mut stop).await
    {
        let mut batch = Vec::with_capacity(messages.len());
        for m in &messages {
            match command_entry(m) {
                Ok(entry) => batch.push((entry, m)),
                // Dead-lettered here too: on a subject no simulator takes (a region that does not
                // exist, no command's subject at all) nobody else would. A simulator's letter of
                // the same command has the same id, so DLQ keeps one of the two when both come
                // within its duplicate window.
                Err(Unaudited::Undecodable(why)) => {
                    to_dlq(&ctx, m, &why, "commands", DeadLetterReason::Undecodable).await;
                }
                Err(Unaudited::NoDocument(why)) => {
                    warn!(subject = %m.subject, reason = why, "command not audited");
                    let _ = m.ack().await;
                }
            }
        }
        let db = ctx.db.clone();
        let write = move |entries: Vec<AuditEntry>| {
            let db = db.clone();
            async move {
                let last = entries.iter().map(|(seq, _)| *seq).max();
                let docs = entries.into_iter().map(|(_, d)| d).collect();
                projection::insert(&db, collection::AUDIT, docs).await?;
                if let Some(last) = last {
                    projection::mark(&db, COMMANDS_CONSUMER, last).await?;
                }
                Ok(())
            }
        };
        let Some(((), written)) =
            write_batch(&ctx, COMMANDS_CONSUMER, &mut pace, &mut stop, batch, write).await
        else {
            return Ok(());
        };
        ctx.metrics
            .facts
            .with_label_values(&["command"])
            .inc_by(written.len() as u64);
        for (_, m) in written {
            let _ = m.ack().await;
        }
    }
    Ok(())
}

/// Keeps the consumers' lag and position metrics current, every `every`, whatever the writes
/// are doing (a stalled write must not freeze the numbers that show it), until `stop`.
pub async fn watch_consumers(
    ctx: Arc<Context>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let mut streams = BTreeMap::new();
    loop {
        for (stream, consumer) in [(FACTS, FACTS_CONSUMER), (COMMANDS, COMMANDS_CONSUMER)] {
            if !streams.contains_key(stream) {
                match ctx.js.get_stream(stream).await {
                    Ok(s) => {
                        streams.insert(stream, s);
                    }
                    Err(e) => tracing::debug!(stream, error = %e, "stream not reachable"),
                }
            }
            let Some(s) = streams.get(stream) else {
                continue;
            };
            match s.consumer_info(consumer).await {
                Ok(info) => {
                    let waiting = info.num_pending + info.num_ack_pending as u64;
                    ctx.metrics
                        .lag
                        .with_label_values(&[consumer])
                        .set(i64::try_from(waiting).unwrap_or(i64::MAX));
                    ctx.metrics
                        .position
                        .with_label_values(&[consumer])
                        .set(i64::try_from(info.ack_floor.stream_sequence).unwrap_or(i64::MAX));
                }
                Err(e) => tracing::debug!(consumer, error = %e, "consumer not reachable"),
            }
        }
        if !pause(every, &mut stop).await {
            return Ok(());
        }
    }
}

/// Forwards the simulators' live positions (`live.<region>`) to the region's Redis channel.
pub async fn bridge_positions(
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
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
            .arg(channel::region(region))
            .arg(body.to_string())
            .query_async(&mut redis)
            .await;
    }
}

/// Logs that the projection is up.
pub fn started(names: &Names) {
    info!(players = %names.players, world = %names.world, "live projection started");
}

/// A connection to Redis (one server or a cluster, see [`service::redis::Target`]), or `None` (with a warning) when it cannot be had yet.
pub async fn redis(url: &str) -> Option<Redis> {
    // Bounded, so that a Redis node gone silent costs a bridge round seconds, not the library's
    // default minutes of retries on a cluster.
    let patience = service::redis::Patience {
        connect: Duration::from_secs(1),
        response: Duration::from_secs(2),
        retries: 2,
    };
    match Redis::connect(url, Some(patience)).await {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(error = %e, "Redis unreachable; the live stream and caches wait for it");
            None
        }
    }
}
