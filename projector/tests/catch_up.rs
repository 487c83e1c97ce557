//! The projector catching up on a backlog against real servers: 20 000 facts and 20 000 commands
//! stored while no projector ran, drained with progress on both consumers in every 30-second
//! window; and the same while MongoDB is first slow (given a tenth of the time, as on a busy
//! machine) and then frozen outright for longer than the driver's checks wait.
//!
//! Progress, not speed, is what is asserted: each window must move both consumers' acknowledged
//! positions forward until the backlog is gone. The rates seen are printed for the README.

use std::time::{Duration, Instant};

use nats_topology::publish::{Outgoing, publish_all};
use projector::live::{COMMANDS_CONSUMER, FACTS_CONSUMER};
use schemas::command::Chat;
use schemas::{Actor, Command, Envelope, PlayerId};

mod common;

use common::*;

/// Facts and commands stored before the projector starts.
const BACKLOG: usize = 20_000;
/// Each of these must see both consumers move forward (until their backlog is gone).
const WINDOW: Duration = Duration::from_secs(30);

/// Stores at least [`BACKLOG`] facts (players registering, logging in, spawning, walking, being
/// hurt) and [`BACKLOG`] chat commands; returns the last sequence of each stream.
async fn backlog(stack: &Stack) -> (u64, u64) {
    let mut facts = Vec::new();
    while facts.len() < BACKLOG {
        facts.extend(history(100));
    }
    for chunk in facts.chunks(2_000) {
        stack.publish(chunk).await;
    }
    let players: Vec<PlayerId> = (0..200).map(|_| PlayerId::new()).collect();
    let commands: Vec<Outgoing> = (0..BACKLOG)
        .map(|i| {
            let player = players[i % players.len()];
            let env = Envelope::new(
                Actor::Player { id: player },
                Some(west()),
                Command::Chat(Chat {
                    text: format!("line {i} of the backlog"),
                    channel: None,
                }),
            );
            Outgoing::command(&env).expect("a command message")
        })
        .collect();
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let chunk: Vec<Outgoing> = commands.by_ref().take(2_000).collect();
        for r in publish_all(&stack.js, chunk).await {
            r.expect("stored");
        }
    }
    let last = |name: &'static str| {
        let js = stack.js.clone();
        async move {
            let mut stream = js.get_stream(name).await.expect("stream");
            stream.info().await.expect("info").state.last_sequence
        }
    };
    (last("FACTS").await, last("COMMANDS").await)
}

/// How far a projector's durable consumer has acknowledged (0 before it exists).
async fn acked(stack: &Stack, stream: &str, consumer: &str) -> u64 {
    let Ok(stream) = stack.js.get_stream(stream).await else {
        return 0;
    };
    stream
        .consumer_info(consumer)
        .await
        .map(|i| i.ack_floor.stream_sequence)
        .unwrap_or(0)
}

/// Both positions: facts, commands.
async fn positions(stack: &Stack) -> (u64, u64) {
    (
        acked(stack, "FACTS", FACTS_CONSUMER).await,
        acked(stack, "COMMANDS", COMMANDS_CONSUMER).await,
    )
}

/// Waits until both consumers have acknowledged everything up to `ends`, or until `until`
/// when given, failing the first window in which one with facts or commands still waiting did
/// not move. Returns the time it took from the call.
async fn drains_with_progress(
    stack: &Stack,
    projector: &Projector,
    ends: (u64, u64),
    until: Option<Instant>,
) -> Duration {
    let started = Instant::now();
    let mut window_start = Instant::now();
    let mut at_window_start = positions(stack).await;
    loop {
        let now = positions(stack).await;
        let drained = now.0 >= ends.0 && now.1 >= ends.1;
        if drained || until.is_some_and(|t| Instant::now() >= t) {
            return started.elapsed();
        }
        if window_start.elapsed() >= WINDOW {
            let facts_moved = now.0 > at_window_start.0 || now.0 >= ends.0;
            let commands_moved = now.1 > at_window_start.1 || now.1 >= ends.1;
            if !(facts_moved && commands_moved) {
                let tail = projector.log_tail(12);
                panic!(
                    "no progress in {WINDOW:?}: facts {} -> {} of {}, commands {} -> {} of {}; \
                     the projector says: {tail:#?}",
                    at_window_start.0, now.0, ends.0, at_window_start.1, now.1, ends.1
                );
            }
            eprintln!(
                "window: facts {} -> {} of {}, commands {} -> {} of {}",
                at_window_start.0, now.0, ends.0, at_window_start.1, now.1, ends.1
            );
            window_start = Instant::now();
            at_window_start = now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_backlog_of_facts_and_commands_drains_with_progress_in_every_window() {
    let stack = Stack::start().await;
    let ends = backlog(&stack).await;
    let projector = stack.projector();
    // An operator sees both backlogs.
    for consumer in [FACTS_CONSUMER, COMMANDS_CONSUMER] {
        let lag = format!("projector_consumer_lag{{consumer=\"{consumer}\"}}");
        eventually("the backlog shows in the metrics", || async {
            projector.metric(&lag).await.filter(|n| *n > 0.0)
        })
        .await;
    }
    let took = drains_with_progress(&stack, &projector, ends, None).await;
    eprintln!(
        "drained {} facts and {} commands in {took:?}: {:.0} events/s",
        ends.0,
        ends.1,
        (ends.0 + ends.1) as f64 / took.as_secs_f64()
    );
    stack.all_projected(ends.0 + ends.1, &[&projector]).await;
    for (consumer, end) in [(FACTS_CONSUMER, ends.0), (COMMANDS_CONSUMER, ends.1)] {
        let lag = format!("projector_consumer_lag{{consumer=\"{consumer}\"}}");
        let position = format!("projector_consumer_position{{consumer=\"{consumer}\"}}");
        eventually("the metrics show the backlog gone", || async {
            let done = projector.metric(&lag).await == Some(0.0)
                && projector.metric(&position).await == Some(end as f64);
            done.then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_backlog_drains_with_progress_while_mongodb_is_slow_and_after_it_was_frozen() {
    let mut stack = Stack::start().await;
    let ends = backlog(&stack).await;
    let mut projector = stack.projector();
    eventually("the projector has begun", || async {
        let (facts, commands) = positions(&stack).await;
        (facts > 0 && commands > 0).then_some(())
    })
    .await;
    // Slow: for two windows the server gets a twentieth of the time, so that a batch of the usual
    // size takes several seconds to write. Both consumers must still move in each window.
    let throttle = stack.mongo_mut().throttle(0.05).expect("throttle");
    let slow_until = Instant::now() + 2 * WINDOW + Duration::from_secs(1);
    drains_with_progress(&stack, &projector, ends, Some(slow_until)).await;
    drop(throttle);
    // Frozen: longer than the driver's own checks of the server wait (10 s), with writes in
    // flight; then everything drains, with progress in every window again.
    stack.mongo_mut().pause().expect("SIGSTOP");
    tokio::time::sleep(Duration::from_secs(20)).await;
    stack.mongo_mut().resume().expect("SIGCONT");
    drains_with_progress(&stack, &projector, ends, None).await;
    stack.all_projected(ends.0 + ends.1, &[&projector]).await;
    assert!(projector.is_running(), "the projector kept running");
}
