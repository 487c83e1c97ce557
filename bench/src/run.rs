//! One run: the writers' ceilings (publishers, raw bulk writes) on the idle servers, then the
//! observers start, players ramp up and play for the set time, the projection is given the
//! drain to catch up, and the reader's ceiling (a bare ordered consumer) reads the log they
//! made; what was recorded is joined into [`Results`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::ceilings;
use crate::observe::{self, StoredFact};
use crate::plan::Plan;
use crate::players::{self, Game, Recorder};
use crate::report::{Ceilings, Results};

/// How many players make their accounts and log in at once before the clock starts.
const ENLISTING_AT_ONCE: usize = 32;

/// Where the stack is and how to reach it.
pub struct Target {
    /// The gateway.
    pub gateway: SocketAddr,
    /// NATS, with a user that may read `FACTS` and make a scratch stream.
    pub nats_url: String,
    /// Its credentials.
    pub nats: nats_topology::publish::Credentials,
    /// Redis (the projector's position).
    pub redis_url: String,
    /// MongoDB (the raw writes, in a scratch database).
    pub mongodb_uri: String,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A server could not be reached.
    #[error("cannot reach {0}")]
    Connect(String),
    /// Following the log failed.
    #[error(transparent)]
    Follow(#[from] observe::FollowError),
    /// A ceiling failed.
    #[error(transparent)]
    Ceiling(#[from] ceilings::CeilingError),
}

/// How long the log's reader may take to reach the drain's end once told to stop there.
const READ_TO_END: Duration = Duration::from_secs(60);

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn spin(message: &str) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner.set_message(message.to_owned());
    spinner
}

/// Runs `players` players for `seconds` by `plan` against `target`.
pub async fn run(
    target: Target,
    plan: Plan,
    players: usize,
    seconds: f64,
    setup: String,
) -> Result<Results, RunError> {
    let (_nats, js) = nats_topology::connect(&target.nats_url, "game-bench", &target.nats)
        .await
        .map_err(|e| RunError::Connect(format!("NATS: {e}")))?;
    let mongo = mongodb::Client::with_uri_str(&target.mongodb_uri)
        .await
        .map_err(|e| RunError::Connect(format!("MongoDB: {e}")))?;

    // The writers' ceilings first, on servers nothing else loads yet: after the game the
    // projector may still be catching up, and would share the database with the raw writes.
    let ceiling_for = Duration::from_secs_f64(plan.ceilings.seconds);
    let spinner = spin(&format!("ceiling: {} publishers", plan.ceilings.publishers));
    let publishers_per_s = ceilings::publishers(&js, plan.ceilings.publishers, ceiling_for)
        .await?
        .rate();
    spinner.set_message("ceiling: raw bulk writes");
    let raw_writes_per_s = ceilings::raw_writes(&mongo, ceiling_for).await?;
    spinner.finish_and_clear();

    let first = observe::last_fact(&js).await? + 1;

    let (stop_facts, facts_stop) = watch::channel(None);
    let (facts_seen_tx, facts_seen) = watch::channel(0u64);
    let facts_task = tokio::spawn(observe::follow_facts(
        js.clone(),
        first,
        facts_stop,
        facts_seen_tx,
    ));
    let (stop_position, position_stop) = watch::channel(false);
    let (position_tx, mut position) = watch::channel(0u64);
    let position_task = tokio::spawn(observe::follow_position(
        target.redis_url.clone(),
        position_stop,
        position_tx,
    ));

    // Accounts are made and logged in before the clock starts: 2 argon2 hashes a player would
    // otherwise take the first seconds of a short run. Logging in again is part of the mix.
    let tag = format!("{:x}", fastrand::u32(..));
    let enlisting = Arc::new(Game {
        addr: target.gateway,
        plan: plan.clone(),
        recorder: Arc::new(Recorder::new()),
        deadline: Instant::now(),
        tag: tag.clone(),
        players: Default::default(),
    });
    let accounts = bar(
        players as u64,
        "{elapsed_precise} [{bar:40}] {pos}/{len} accounts made and logged in",
    );
    let mut enlisted = Vec::new();
    // A few at a time: the gateway hashes passwords on a few workers of its own and answers 503
    // once too many wait for them, so more at once would only queue there.
    let at_once = Arc::new(tokio::sync::Semaphore::new(ENLISTING_AT_ONCE));
    for task in (0..players)
        .map(|i| {
            let (game, at_once) = (Arc::clone(&enlisting), Arc::clone(&at_once));
            tokio::spawn(async move {
                let _turn = at_once.acquire_owned().await;
                players::enlist(game, i).await
            })
        })
        .collect::<Vec<_>>()
    {
        if let Ok(Some(player)) = task.await {
            enlisted.push(player);
        }
        accounts.inc(1);
    }
    accounts.finish();

    let recorder = Arc::new(Recorder::new());
    let started_at = chrono::Utc::now();
    let start = recorder.started();
    let play_for = Duration::from_secs_f64(seconds);
    let ramp = Duration::from_secs_f64(plan.ramp.seconds.min(seconds));
    let game = Arc::new(Game {
        addr: target.gateway,
        plan: plan.clone(),
        recorder: Arc::clone(&recorder),
        deadline: start + play_for,
        tag,
        players: Default::default(),
    });
    let joining = enlisted.len();
    let handles: Vec<_> = enlisted
        .into_iter()
        .enumerate()
        .map(|(i, player)| {
            let join = players::join_at(start, ramp, i, joining);
            tokio::spawn(players::play(Arc::clone(&game), player, join))
        })
        .collect();

    // The progress bar, one step a second.
    let progress = bar(
        seconds.ceil() as u64,
        "{elapsed_precise} [{bar:40}] {pos}/{len} s  {msg}",
    );
    let mut last_accepted = 0;
    while Instant::now() < game.deadline {
        tokio::time::sleep(Duration::from_secs(1).min(game.deadline - Instant::now())).await;
        let accepted = recorder.accepted_count.load(Ordering::Relaxed);
        progress.set_position(start.elapsed().as_secs());
        progress.set_message(format!(
            "{} players in the world, {} commands accepted in the last second",
            recorder.active.load(Ordering::Relaxed),
            accepted - last_accepted
        ));
        last_accepted = accepted;
    }
    let mut streams = Vec::new();
    for handle in handles {
        if let Ok(Some(stream)) = handle.await {
            streams.push(stream);
        }
    }
    progress.finish_with_message("players done");
    let played = start.elapsed().as_secs_f64();

    // The drain: the log's end as the players left it, read and projected.
    let end = observe::last_fact(&js).await?;
    let drain = bar(
        end.saturating_sub(first - 1),
        "{elapsed_precise} [{bar:40}] {pos}/{len} facts projected  {msg}",
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(plan.drain.max_seconds);
    loop {
        let reached = *position.borrow_and_update();
        drain.set_position(
            reached
                .saturating_sub(first - 1)
                .min(drain.length().unwrap_or(0)),
        );
        if reached >= end {
            break;
        }
        match tokio::time::timeout_at(deadline, position.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    drain.finish_with_message("drained");
    // The log's reader stops at the drain's end once it has read that far.
    let _ = stop_facts.send(Some(end));
    let span = start.elapsed().as_secs_f64().ceil() as usize;
    let _ = stop_position.send(true);
    for stream in streams {
        stream.abort();
    }
    let facts = match tokio::time::timeout(READ_TO_END, facts_task).await {
        Ok(Ok(facts)) => facts?,
        _ => {
            return Err(RunError::Follow(observe::FollowError::new(format!(
                "the reader did not reach sequence {end} (it read up to {})",
                *facts_seen.borrow()
            ))));
        }
    };
    let positions = position_task
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();

    // The reader's ceiling, on the log the game has just written.
    let spinner = spin("ceiling: a bare ordered consumer on FACTS");
    let ordered_consumer_per_s = ceilings::ordered_consumer(&js, ceiling_for).await?;
    spinner.finish_and_clear();

    let mut recorded = recorder.take();
    for (status, n) in enlisting.recorder.statuses() {
        *recorded.statuses.entry(status).or_insert(0) += n;
    }
    let mut results = Results {
        started_at,
        players,
        seconds: played,
        ramp_seconds: ramp.as_secs_f64(),
        span,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        setup,
        accepted: recorded.accepted,
        latency_202: recorded.latency_202,
        latency_wait: recorded.latency_wait,
        statuses: recorded.statuses,
        outcomes: recorded.outcomes,
        ceilings: Ceilings {
            publishers_per_s,
            publishers: plan.ceilings.publishers,
            ordered_consumer_per_s,
            raw_writes_per_s,
        },
        ..Default::default()
    };
    join(
        &mut results,
        recorder.started_us(),
        &facts,
        &positions,
        &recorded.sent,
        &recorded.deliveries,
    );
    Ok(results)
}

/// Joins what the players, the log and the projector's position recorded into the lags.
pub fn join(
    results: &mut Results,
    started_us: i64,
    facts: &[StoredFact],
    positions: &[(i64, u64)],
    sent: &HashMap<String, i64>,
    deliveries: &[(String, i64)],
) {
    let since = |us: i64| (us - started_us) as f64 / 1e6;
    let ms = |from: i64, to: i64| ((to - from) as f64 / 1e3).max(0.0);
    let mut by_seq: Vec<&StoredFact> = facts.iter().collect();
    by_seq.sort_by_key(|f| f.seq);
    // Each fact is projected when the position first reaches its sequence.
    let mut next = 0;
    for fact in &by_seq {
        results.facts_stored.push(since(fact.stored_us));
        while next < positions.len() && positions[next].1 < fact.seq {
            next += 1;
        }
        match positions.get(next) {
            Some(&(at, _)) => {
                results.facts_projected.push(since(at));
                results
                    .projection_lag
                    .push(since(fact.stored_us), ms(fact.stored_us, at));
            }
            None => results.unprojected += 1,
        }
    }
    // A command's first fact.
    let mut first_fact: HashMap<&str, i64> = HashMap::new();
    for fact in &by_seq {
        first_fact
            .entry(fact.correlation_id.as_str())
            .or_insert(fact.stored_us);
    }
    let mut commands: Vec<(&String, &i64)> = sent.iter().collect();
    commands.sort_by_key(|(_, at)| **at);
    for (id, &at) in commands {
        if let Some(&stored) = first_fact.get(id.as_str()) {
            results.command_to_fact.push(since(at), ms(at, stored));
        }
    }
    let stored: HashMap<&str, i64> = by_seq
        .iter()
        .map(|f| (f.id.as_str(), f.stored_us))
        .collect();
    for (id, at) in deliveries {
        if let Some(&s) = stored.get(id.as_str()) {
            results.delivery_lag.push(since(s), ms(s, *at));
        }
    }
}
