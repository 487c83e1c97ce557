//! Running one region on the bus: recover it, then tick.
//!
//! Recovery restores the region's latest snapshot and folds the facts stored after it, sends
//! again the hand-offs those facts call for, and seeds a region that has never run. Each tick
//! then takes the region's waiting commands (high priority first, then normal, then low, within a
//! budget that keeps a share for low), applies them in that order, runs the systems, stores the
//! facts (pipelined, every acknowledgement awaited, retried with the same ids until stored), sends
//! the hand-offs and outcomes, and only then acknowledges the commands. A process that dies at any
//! point leaves either unstored facts (and unacknowledged commands, applied again by the next
//! owner) or stored facts (which the next owner folds, so the redelivered commands are
//! recognised as applied): never a lost or doubled effect.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::kv::Store;
use async_nats::jetstream::{self, AckKind, Context};
use chrono::Utc;
use futures::StreamExt;
use nats_topology::avatars::AvatarRegion;
use nats_topology::dlq::{DeadLetter, dead_letter};
use nats_topology::headers::{CLIENT_IP, REQUEST_ID};
use nats_topology::outcome::{OUTCOME_INBOX, Outcome};
use nats_topology::publish::{Outgoing, publish_all};
use nats_topology::topology::{COMMANDS, FACTS};
use schemas::{
    Actor, Command, CommandSubject, Envelope, EventId, Fact, FactSubject, PlayerId, Priority,
    RegionId, Scope, WorldConfig,
};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, debug, error, info, warn};

use crate::admission::Admission;
use crate::balance::Balance;
use crate::metrics::{DeadLetterReason, Metrics};
use crate::region::{Region, RegionSettings, Snapshot, TickOutput};
use crate::settings::Settings;

/// What every region task of a process shares.
pub struct Shared {
    /// The NATS connection.
    pub client: async_nats::Client,
    /// JetStream on it.
    pub js: Context,
    /// The process's settings.
    pub settings: Arc<Settings>,
    /// The region config.
    pub world: Arc<WorldConfig>,
    /// The game balance.
    pub balance: Arc<Balance>,
    /// The metrics.
    pub metrics: Metrics,
    /// The `region_snapshots` bucket.
    pub snapshots: Store,
    /// The `player_progress` bucket.
    pub progress: Store,
    /// The `avatar_regions` bucket.
    pub avatars: Store,
    /// A fault to inject, for the fault tests (`SIM_FAILPOINT`).
    pub failpoint: Option<Failpoint>,
}

/// A place to make the process die abruptly, for the tests that prove nothing is lost then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// Abort right after a tick that applied commands has stored its facts, before its
    /// hand-offs are sent and its commands acknowledged.
    AbortAfterFacts,
    /// Abort right after storing a fact that calls for a command in a neighbouring region (a
    /// hand-off's `handed_off_out`, a blow's `struck_across`, a kill's `reward_sent`), before
    /// that command is sent.
    AbortAfterHandOffFact,
    /// Make every tick take [`SLOW_TICK`] longer, as a process on an overloaded machine would.
    SlowTicks,
}

/// How much longer a tick takes under [`Failpoint::SlowTicks`].
pub const SLOW_TICK: Duration = Duration::from_millis(40);

impl Failpoint {
    /// Reads `SIM_FAILPOINT` (`abort-after-facts`, `abort-after-hand-off-fact`, `slow-ticks`).
    pub fn from_env() -> Option<Self> {
        match std::env::var("SIM_FAILPOINT").ok()?.as_str() {
            "abort-after-facts" => Some(Self::AbortAfterFacts),
            "abort-after-hand-off-fact" => Some(Self::AbortAfterHandOffFact),
            "slow-ticks" => Some(Self::SlowTicks),
            _ => None,
        }
    }
}

/// A question to a running region, answered between two ticks.
pub enum Inspect {
    /// Its entities and items as they are.
    State(oneshot::Sender<RegionState>),
}

/// A region's state as the operators' view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RegionState {
    /// The region.
    pub region: RegionId,
    /// Avatars and NPCs.
    pub entities: Vec<schemas::EntityState>,
    /// Items on the ground.
    pub items: Vec<Item>,
    /// The last `FACTS` sequence of the region stored or folded.
    pub facts_seq: u64,
}

/// An item on the ground.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Its id.
    pub id: schemas::EntityId,
    /// Its kind.
    pub kind: String,
    /// Where it lies.
    pub position: schemas::Position,
}

/// How busy a region is, for load reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegionLoad {
    /// Avatars.
    pub players: u64,
    /// Avatars, NPCs and items.
    pub entities: u64,
    /// NPCs.
    pub npcs: u64,
    /// Items lying in the region.
    pub items: u64,
    /// The slowest tick since the last report, in milliseconds.
    pub slowest_tick_ms: f64,
}

/// Why a region stopped running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The bus failed where no retry makes sense (a stream or consumer is missing).
    #[error("{0}")]
    Bus(String),
}

fn bus(e: impl std::fmt::Display) -> RunError {
    RunError::Bus(e.to_string())
}

/// The consumer name of a region's commands of one priority.
pub fn consumer_name(region: &RegionId, priority: Priority) -> String {
    format!("region-{region}-{priority}")
}

/// The priorities a region takes commands of, each from a consumer of its own, highest first.
pub const PRIORITIES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

/// The longest a tick waits for its fetches of commands: a fetch answers at once when the bus
/// is well, so this only bounds a lost answer.
const FETCH_DEADLINE: Duration = Duration::from_secs(2);

struct Running {
    shared: Arc<Shared>,
    region: Region,
    admission: Admission,
    id: RegionId,
    consumers: Vec<(Priority, PullConsumer)>,
    facts_seq: u64,
    last_snapshot: Instant,
    load: Arc<std::sync::Mutex<RegionLoad>>,
    slowest: f64,
}

/// Recovers `region` and ticks it until `stop` turns true (then snapshots it and returns).
/// Keeps its load in `load`; answers `inspect` between ticks.
pub async fn run(
    shared: Arc<Shared>,
    id: RegionId,
    mut stop: watch::Receiver<bool>,
    mut inspect: mpsc::Receiver<Inspect>,
    load: Arc<std::sync::Mutex<RegionLoad>>,
) -> Result<(), RunError> {
    shared.metrics.region_started(id.as_str());
    let mut running = Running::recover(shared.clone(), id.clone(), load).await?;
    let mut interval = tokio::time::interval(shared.settings.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lag_every = tokio::time::interval(Duration::from_secs(1));
    let mut tick_no: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = lag_every.tick() => {
                running.report_lag().await;
                continue;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    running.snapshot().await;
                    info!(region = %id, "region stopped");
                    return Ok(());
                }
                continue;
            }
            Some(question) = inspect.recv() => {
                running.answer(question);
                continue;
            }
        }
        tick_no += 1;
        running
            .tick()
            .instrument(tracing::debug_span!("tick", region = %id, tick = tick_no))
            .await?;
    }
}

impl Running {
    async fn recover(
        shared: Arc<Shared>,
        id: RegionId,
        load: Arc<std::sync::Mutex<RegionLoad>>,
    ) -> Result<Self, RunError> {
        let started = Instant::now();
        let config = shared
            .world
            .region(&id)
            .cloned()
            .ok_or_else(|| RunError::Bus(format!("{id} is not in the region config")))?;
        let settings = RegionSettings {
            hysteresis: shared.settings.hysteresis,
            applied_memory: shared.settings.applied_memory,
        };
        let admission = Admission::new(
            id.clone(),
            shared.world.validation_context(),
            shared.balance.clone(),
        );
        let snapshot = match shared.snapshots.get(id.as_str()).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(s) if s.region != id => {
                    warn!(region = %id, "the stored snapshot is another region's; rebuilding from the whole log");
                    None
                }
                Ok(s) => match admission.check_snapshot(&s) {
                    Ok(()) => Some(s),
                    Err(why) => {
                        error!(region = %id, reason = why, "the stored snapshot is refused; rebuilding from the whole log");
                        None
                    }
                },
                Err(e) => {
                    warn!(region = %id, error = %e, "the stored snapshot is unreadable; rebuilding from the whole log");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => return Err(bus(format!("cannot read the snapshot of {id}: {e}"))),
        };
        let (region, facts_seq) = match &snapshot {
            Some(s) => (
                Region::restore(
                    s,
                    config,
                    shared.world.clone(),
                    shared.balance.clone(),
                    settings,
                ),
                s.facts_seq,
            ),
            None => (
                Region::new(
                    config,
                    shared.world.clone(),
                    shared.balance.clone(),
                    settings,
                ),
                0,
            ),
        };
        let mut running = Self {
            region,
            admission,
            id: id.clone(),
            consumers: Vec::new(),
            facts_seq,
            last_snapshot: Instant::now(),
            load,
            slowest: 0.0,
            shared,
        };
        let (folded, resend) = running.fold_log().await?;
        if !resend.is_empty() {
            info!(region = %id, commands = resend.len(), "sending unfinished hand-offs and blows again");
            running.publish_commands(&resend).await;
        }
        let now = Utc::now().timestamp_millis();
        let seed = running.region.seed(now);
        if !seed.is_empty() {
            let facts: Vec<_> = seed.iter().map(|f| (f, None)).collect();
            running.publish_facts(&facts).await;
        }
        running.consumers = running.open_consumers().await?;
        info!(
            region = %id,
            from_snapshot = snapshot.is_some(),
            facts_folded = folded,
            seeded = seed.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "region recovered"
        );
        running.publish_load();
        Ok(running)
    }

    /// Folds every fact of the region after the snapshot's sequence.
    async fn fold_log(&mut self) -> Result<(usize, Vec<Envelope<Command>>), RunError> {
        let stream = self.shared.js.get_stream(FACTS).await.map_err(bus)?;
        let deliver_policy = if self.facts_seq == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.facts_seq + 1,
            }
        };
        let mut consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: FactSubject::filter(&Scope::Region(self.id.clone())),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(bus)?;
        let pending = consumer.info().await.map_err(bus)?.num_pending;
        let mut resend = Vec::new();
        let mut folded = 0;
        if pending == 0 {
            return Ok((0, resend));
        }
        let mut messages = consumer.messages().await.map_err(bus)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(bus)?;
            let info = message.info().map_err(bus)?;
            let (seq, left) = (info.stream_sequence, info.pending);
            match Envelope::<Fact>::decode(&message.payload) {
                Ok(env) => {
                    resend.extend(self.region.fold(&env));
                    folded += 1;
                }
                Err(e) => {
                    error!(region = %self.id, seq, error = %e, "a stored fact does not decode; skipped")
                }
            }
            self.facts_seq = seq;
            if left == 0 {
                break;
            }
        }
        // A hand-off or blow whose neighbour already answered needs no resend: that is for the
        // neighbour to recognise (the command's id is derived from the fact's), so all are sent.
        Ok((folded, resend))
    }

    async fn open_consumers(&self) -> Result<Vec<(Priority, PullConsumer)>, RunError> {
        let stream = self.shared.js.get_stream(COMMANDS).await.map_err(bus)?;
        let mut consumers = Vec::new();
        for priority in PRIORITIES {
            let name = consumer_name(&self.id, priority);
            let consumer: PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!("{priority} commands of region {}", self.id)),
                    filter_subject: CommandSubject::filter(priority, &self.id),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.shared.settings.ack_wait,
                    max_deliver: self.shared.settings.max_deliver,
                    max_ack_pending: 20_000,
                    deliver_policy: DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| bus(format!("consumer {name}: {e}")))?;
            consumers.push((priority, consumer));
        }
        Ok(consumers)
    }

    /// Takes the waiting commands: high first, then normal, then low, keeping a share of the
    /// budget for low whenever the budget would otherwise run out before it.
    async fn take(&self) -> Vec<(Priority, jetstream::Message)> {
        let budget = self.shared.settings.tick_budget;
        let low_share = ((budget as f64) * self.shared.settings.low_priority_share).ceil() as usize;
        let mut taken = Vec::new();
        // A fetch asks the consumer's leader once and waits for its answer with no timer of
        // its own: an answer lost with a NATS node would hold the tick, and the region, for
        // ever. So the fetches of a tick share one deadline. What a fetch cut short did not
        // bring comes again after the ack wait, so after such a loss a player's later command
        // may be applied before an earlier one.
        let deadline = tokio::time::Instant::now() + FETCH_DEADLINE;
        for (priority, consumer) in &self.consumers {
            let room = budget - taken.len();
            let want = match priority {
                Priority::Low => room,
                _ => room.saturating_sub(low_share),
            };
            if want == 0 {
                continue;
            }
            let fetch = consumer.fetch().max_messages(want).messages();
            let batch = match tokio::time::timeout_at(deadline, fetch).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    self.bus_error("fetch", &e);
                    continue;
                }
                Err(_) => {
                    self.bus_error("fetch", &"no answer before the deadline");
                    continue;
                }
            };
            let mut batch = std::pin::pin!(batch);
            loop {
                match tokio::time::timeout_at(deadline, batch.next()).await {
                    Ok(Some(Ok(m))) => taken.push((*priority, m)),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        self.bus_error("fetch", &e);
                        break;
                    }
                    Err(_) => {
                        self.bus_error("fetch", &"the batch did not end before the deadline");
                        break;
                    }
                }
            }
        }
        taken
    }

    async fn tick(&mut self) -> Result<(), RunError> {
        let started = Instant::now();
        let taken = self.take().await;
        let mut commands = Vec::with_capacity(taken.len());
        let mut messages = Vec::with_capacity(taken.len());
        let mut dead = Vec::new();
        for (_, message) in taken {
            // The bus is not trusted: a command from a client or from another simulator passes
            // the same bounds before anything applies it.
            match Envelope::<Command>::decode(&message.payload) {
                Ok(env) => match self.admission.admit(&env) {
                    Ok(()) => {
                        commands.push(env);
                        messages.push(message);
                    }
                    Err(why) => dead.push((message, why, DeadLetterReason::Inadmissible)),
                },
                Err(e) => dead.push((
                    message,
                    format!("the command does not decode: {e}"),
                    DeadLetterReason::Undecodable,
                )),
            }
        }
        self.look_up_returning(&commands).await;
        let now_ms = Utc::now().timestamp_millis();
        let out = self.region.tick(&commands, now_ms);
        // What avatars that left take with them is kept before their `left` is stored: a
        // spawn that follows the stored fact always finds it.
        self.keep_progress(&out.facts).await;
        // Where the avatars are, before the facts that put them there are stored: a command a
        // player sends after being told an outcome is routed where that outcome put it.
        self.keep_avatar_regions(&out.facts).await;
        if self.shared.failpoint == Some(Failpoint::SlowTicks) {
            tokio::time::sleep(SLOW_TICK).await;
        }

        // Facts first, with the request id and client address of the command they answer.
        let index: HashMap<EventId, usize> = commands
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        let mut cause_of = vec![None; out.facts.len()];
        for (id, range) in &out.outcomes {
            let cause = index.get(id).copied();
            for slot in &mut cause_of[range.clone()] {
                *slot = cause;
            }
        }
        let facts: Vec<_> = out
            .facts
            .iter()
            .zip(&cause_of)
            .map(|(f, cause)| (f, cause.and_then(|i| messages.get(i))))
            .collect();
        let seqs = self.publish_facts(&facts).await;
        if !out.outcomes.is_empty() && self.shared.failpoint == Some(Failpoint::AbortAfterFacts) {
            error!(region = %self.id, "failpoint abort-after-facts");
            std::process::abort();
        }
        if !out.follow_ups.is_empty()
            && self.shared.failpoint == Some(Failpoint::AbortAfterHandOffFact)
        {
            error!(region = %self.id, "failpoint abort-after-hand-off-fact");
            std::process::abort();
        }
        self.publish_commands(&out.follow_ups).await;
        self.notify_outcomes(&out, &seqs, &index, &messages).await;

        // Dead letters: commands that do not decode, and those whose handler failed.
        let failed: HashSet<EventId> = out.failed.iter().map(|(id, _)| *id).collect();
        for (id, why) in &out.failed {
            if let Some(&i) = index.get(id) {
                dead.push((
                    messages[i].clone(),
                    why.clone(),
                    DeadLetterReason::HandlerFailed,
                ));
            }
        }
        for (message, why, reason) in &dead {
            self.dead_letter(message, why).await;
            self.shared
                .metrics
                .dead_letters
                .with_label_values(&[self.id.as_str(), "commands", reason.as_str()])
                .inc();
        }
        for (i, message) in messages.iter().enumerate() {
            if failed.contains(&commands[i].id) {
                continue;
            }
            if let Err(e) = message.ack().await {
                // Not fatal: the command comes back and is recognised as applied.
                self.bus_error("ack", &e);
            }
        }
        self.count(&out, &commands, dead.len());
        self.broadcast(&out).await;

        let took = started.elapsed();
        self.shared
            .metrics
            .tick_seconds
            .with_label_values(&[self.id.as_str()])
            .observe(took.as_secs_f64());
        if took > self.shared.settings.tick {
            self.shared
                .metrics
                .tick_overruns
                .with_label_values(&[self.id.as_str()])
                .inc();
        }
        self.slowest = self.slowest.max(took.as_secs_f64() * 1000.0);
        self.publish_load();
        if self.last_snapshot.elapsed() >= self.shared.settings.snapshot_every {
            self.snapshot().await;
        }
        debug!(
            commands = commands.len(),
            facts = out.facts.len(),
            took_us = took.as_micros() as u64,
            "tick"
        );
        Ok(())
    }

    /// Stores facts in order, retrying (with the same ids, so nothing is stored twice) until
    /// every one is.
    /// Stores the facts in order; the `FACTS` sequence of each (0 for one that cannot be
    /// encoded and is left out).
    async fn publish_facts(
        &mut self,
        facts: &[(&Envelope<Fact>, Option<&jetstream::Message>)],
    ) -> Vec<u64> {
        if facts.is_empty() {
            return Vec::new();
        }
        let mut outgoing = Vec::with_capacity(facts.len());
        let mut sent = Vec::with_capacity(facts.len());
        let mut kinds = Vec::with_capacity(facts.len());
        for (i, (env, cause)) in facts.iter().enumerate() {
            let mut message = match Outgoing::fact(env) {
                Ok(m) => m,
                Err(e) => {
                    error!(region = %self.id, fact = %env.id, error = %e, "a fact cannot be encoded; left out");
                    continue;
                }
            };
            if let Some(headers) = cause.and_then(|m| m.headers.as_ref()) {
                for name in [REQUEST_ID, CLIENT_IP] {
                    if let Some(value) = headers.get(name) {
                        message = message.header(name, value.as_str());
                    }
                }
            }
            outgoing.push(message);
            sent.push(i);
            kinds.push(env.payload.kind());
        }
        let stored_at = self.publish_until_stored(outgoing, "publish_facts").await;
        let mut seqs = vec![0; facts.len()];
        for (i, seq) in sent.into_iter().zip(stored_at) {
            seqs[i] = seq;
            self.facts_seq = self.facts_seq.max(seq);
        }
        let m = &self.shared.metrics;
        // Process-wide: the regions of this process store into the one stream. Two regions
        // racing here may leave the lower of two close numbers for a moment; the next fact
        // corrects it.
        let seq = i64::try_from(self.facts_seq).unwrap_or(i64::MAX);
        if seq > m.facts_sequence.get() {
            m.facts_sequence.set(seq);
        }
        for kind in kinds {
            m.facts
                .with_label_values(&[self.id.as_str(), kind.as_str()])
                .inc();
        }
        seqs
    }

    /// Gives the region what each player spawning in `commands` had when it last left.
    async fn look_up_returning(&mut self, commands: &[Envelope<Command>]) {
        for cmd in commands {
            let (Command::Spawn(_), Actor::Player { id }) = (&cmd.payload, &cmd.actor) else {
                continue;
            };
            let key = id.to_string();
            let mut backoff = Duration::from_millis(50);
            let found = loop {
                match self.shared.progress.get(&key).await {
                    Ok(found) => break found,
                    // Spawning without it would lose the player's progress: wait for the bus.
                    Err(e) => {
                        self.bus_error("progress_get", &e);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            };
            let Some(bytes) = found else { continue };
            match serde_json::from_slice::<schemas::fact::Progress>(bytes.as_ref()) {
                Ok(progress) => match self.admission.check_progress(&progress) {
                    Ok(()) => self.region.returning(*id, progress),
                    // Tampered with, or written under other rules: the avatar starts afresh
                    // rather than with what the rules do not allow.
                    Err(why) => {
                        error!(region = %self.id, player = %id, reason = why, "stored progress refused")
                    }
                },
                Err(e) => {
                    error!(region = %self.id, player = %id, error = %e, "stored progress unreadable")
                }
            }
        }
    }

    /// Stores the progress carried by the `left` facts among `facts`, retrying until stored.
    async fn keep_progress(&self, facts: &[Envelope<Fact>]) {
        for f in facts {
            let Fact::Left(left) = &f.payload else {
                continue;
            };
            let Some(progress) = &left.progress else {
                continue;
            };
            let Ok(body) = serde_json::to_vec(progress) else {
                continue;
            };
            let key = left.entity.to_string();
            let mut backoff = Duration::from_millis(50);
            while let Err(e) = self.shared.progress.put(&key, body.clone().into()).await {
                self.bus_error("progress_put", &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// Records where the `facts` leave each avatar they move into, out of or across regions,
    /// retrying until every entry is stored. The entries are written together; a player moved
    /// twice in one tick gets the last.
    async fn keep_avatar_regions(&self, facts: &[Envelope<Fact>]) {
        let mut latest: HashMap<PlayerId, AvatarRegion> = HashMap::new();
        for f in facts {
            if let Some((player, region)) = schemas::fold::avatar_region(f) {
                latest.insert(player, AvatarRegion { region });
            }
        }
        let mut pending: Vec<(String, Vec<u8>)> = latest
            .into_iter()
            .map(|(player, entry)| (player.to_string(), entry.encode()))
            .collect();
        let mut backoff = Duration::from_millis(50);
        while !pending.is_empty() {
            let results = futures::future::join_all(
                pending
                    .iter()
                    .map(|(key, body)| self.shared.avatars.put(key, body.clone().into())),
            )
            .await;
            let mut failed = Vec::new();
            for (entry, result) in pending.into_iter().zip(results) {
                if let Err(e) = result {
                    self.bus_error("avatar_region_put", &e);
                    failed.push(entry);
                }
            }
            pending = failed;
            if !pending.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    async fn publish_commands(&self, commands: &[Envelope<Command>]) {
        let outgoing: Vec<_> = commands
            .iter()
            .filter_map(|c| match Outgoing::command(c) {
                Ok(m) => Some(m),
                Err(e) => {
                    error!(region = %self.id, command = %c.id, error = %e, "a command for a neighbour cannot be encoded");
                    None
                }
            })
            .collect();
        if !outgoing.is_empty() {
            self.publish_until_stored(outgoing, "publish_follow_ups")
                .await;
        }
    }

    /// Publishes in order until every message is stored; the stream sequence of each.
    async fn publish_until_stored(&self, mut outgoing: Vec<Outgoing>, what: &str) -> Vec<u64> {
        let mut backoff = Duration::from_millis(50);
        let mut seqs = Vec::with_capacity(outgoing.len());
        loop {
            let results = publish_all(&self.shared.js, outgoing.clone()).await;
            let first_failed = results.iter().position(Result::is_err);
            // A message stored before is recognised by its id, and acknowledged with the
            // sequence it was stored at.
            seqs.extend(
                results[..first_failed.unwrap_or(results.len())]
                    .iter()
                    .flatten()
                    .map(|ack| ack.sequence),
            );
            let Some(first) = first_failed else {
                return seqs;
            };
            if let Some(Err(e)) = results.get(first) {
                self.bus_error(what, e);
            }
            // From the first failure on, in order again; those already stored are recognised
            // by their ids and stored once.
            outgoing.drain(..first);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn notify_outcomes(
        &self,
        out: &TickOutput,
        seqs: &[u64],
        index: &HashMap<EventId, usize>,
        messages: &[jetstream::Message],
    ) {
        for (command_id, range) in &out.outcomes {
            let Some(&i) = index.get(command_id) else {
                continue;
            };
            let Some(inbox) = messages[i]
                .headers
                .as_ref()
                .and_then(|h| h.get(OUTCOME_INBOX))
                .map(|v| v.as_str().to_owned())
            else {
                continue;
            };
            let facts = out.facts[range.clone()]
                .iter()
                .filter_map(|f| f.encode().ok())
                .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
                .collect();
            let outcome = Outcome {
                command_id: *command_id,
                facts,
                seqs: seqs.get(range.clone()).unwrap_or_default().to_vec(),
            };
            if let Ok(body) = serde_json::to_vec(&outcome)
                && let Err(e) = self.shared.client.publish(inbox, body.into()).await
            {
                // Only a notification: the facts are stored, the client gets a 202.
                self.bus_error("outcome", &e);
            }
        }
    }

    async fn dead_letter(&self, message: &jetstream::Message, why: &str) {
        warn!(region = %self.id, subject = %message.subject, reason = why, "command dead-lettered");
        let letter = match DeadLetter::from_delivery(message, why) {
            Ok(l) => l,
            Err(e) => {
                error!(region = %self.id, error = %e, "cannot describe a dead letter");
                return;
            }
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            match dead_letter(&self.shared.js, &letter).await {
                Ok(_) => break,
                Err(e) => {
                    self.bus_error("dead_letter", &e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        // Stored in DLQ: this delivery is over for good.
        if let Err(e) = message.ack_with(AckKind::Term).await {
            self.bus_error("ack", &e);
        }
    }

    fn count(&self, out: &TickOutput, commands: &[Envelope<Command>], dead: usize) {
        let m = &self.shared.metrics;
        let region = self.id.as_str();
        for (command_id, range) in &out.outcomes {
            let Some(cmd) = commands.iter().find(|c| c.id == *command_id) else {
                continue;
            };
            let kind = cmd.payload.kind().as_str();
            let waited = (Utc::now() - cmd.occurred_at).to_std().unwrap_or_default();
            m.command_to_fact_seconds
                .with_label_values(&[region])
                .observe(waited.as_secs_f64());
            let rejected = out.facts[range.clone()]
                .iter()
                .find_map(|f| match &f.payload {
                    Fact::Rejected(r) => Some(r.reason),
                    _ => None,
                });
            match rejected {
                Some(reason) => {
                    m.commands
                        .with_label_values(&[region, kind, "rejected"])
                        .inc();
                    m.rejections
                        .with_label_values(&[region, reason.as_str()])
                        .inc();
                }
                None => m
                    .commands
                    .with_label_values(&[region, kind, "applied"])
                    .inc(),
            }
        }
        if !out.duplicates.is_empty() {
            m.commands
                .with_label_values(&[region, "any", "duplicate"])
                .inc_by(out.duplicates.len() as u64);
        }
        if dead > 0 {
            m.commands
                .with_label_values(&[region, "any", "dead_lettered"])
                .inc_by(dead as u64);
        }
        let (players, entities) = self.region.population();
        m.players.with_label_values(&[region]).set(players as i64);
        m.entities.with_label_values(&[region]).set(entities as i64);
    }

    /// Live positions for the broadcast bridge: `live.<region>`, core NATS, one message a tick
    /// with everything that moved. Not stored: the log records arrivals, not every step.
    async fn broadcast(&self, out: &TickOutput) {
        if out.moved.is_empty() {
            return;
        }
        #[derive(Serialize)]
        struct Step {
            id: schemas::EntityId,
            x: f64,
            y: f64,
        }
        let steps: Vec<Step> = out
            .moved
            .iter()
            .map(|(id, p)| Step {
                id: *id,
                x: p.x,
                y: p.y,
            })
            .collect();
        if let Ok(body) = serde_json::to_vec(&steps)
            && let Err(e) = self
                .shared
                .client
                .publish(format!("live.{}", self.id), body.into())
                .await
        {
            self.bus_error("live", &e);
        }
    }

    async fn report_lag(&self) {
        for (priority, consumer) in &self.consumers {
            let mut consumer = consumer.clone();
            if let Ok(info) = consumer.info().await {
                self.shared
                    .metrics
                    .lag
                    .with_label_values(&[self.id.as_str(), priority.as_str()])
                    .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            }
        }
    }

    fn publish_load(&mut self) {
        let (players, npcs, items) = self.region.census();
        let slowest = self.slowest;
        let mut load = self.load.lock().unwrap_or_else(|e| e.into_inner());
        load.players = players;
        load.npcs = npcs;
        load.items = items;
        load.entities = players + npcs + items;
        load.slowest_tick_ms = load.slowest_tick_ms.max(slowest);
        self.slowest = 0.0;
    }

    async fn snapshot(&mut self) {
        let now = Utc::now().timestamp_millis();
        let snapshot = self.region.snapshot(self.facts_seq, now);
        self.last_snapshot = Instant::now();
        let region = self.id.as_str();
        let result = match serde_json::to_vec(&snapshot) {
            Ok(bytes) => self
                .shared
                .snapshots
                .put(region, bytes.into())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(_) => {
                self.shared
                    .metrics
                    .snapshots
                    .with_label_values(&[region, "ok"])
                    .inc();
            }
            Err(e) => {
                // The previous snapshot and the log still recover the region, only slower.
                warn!(region, error = %e, "snapshot not stored");
                self.shared
                    .metrics
                    .snapshots
                    .with_label_values(&[region, "failed"])
                    .inc();
            }
        }
    }

    fn answer(&self, question: Inspect) {
        match question {
            Inspect::State(reply) => {
                let _ = reply.send(RegionState {
                    region: self.id.clone(),
                    entities: self.region.entities().into_values().collect(),
                    items: self
                        .region
                        .items()
                        .into_iter()
                        .map(|(id, (kind, position))| Item { id, kind, position })
                        .collect(),
                    facts_seq: self.facts_seq,
                });
            }
        }
    }

    fn bus_error(&self, operation: &str, error: &dyn std::fmt::Display) {
        warn!(region = %self.id, operation, error = %error, "bus error; retrying");
        self.shared
            .metrics
            .bus_errors
            .with_label_values(&[self.id.as_str(), operation])
            .inc();
    }
}
