//! Projection throughput: facts projected per second (read models, audit trail, Redis) next to
//! the raw `mongodb` driver's bulk-write rate on the same server in the same run, while catching
//! up on a backlog and while facts keep coming, and the rebuild's facts per second.
//!
//! ```text
//! cargo bench -p projector --bench throughput                 # 20 000 facts
//! cargo bench -p projector --bench throughput -- --facts 5000
//! PROJECTOR_CONFIG=other.toml cargo bench -p projector --bench throughput  # other settings
//! ```
//!
//! It starts its own NATS, Redis and SecantusDB, stores the facts in `FACTS` first (a mix of
//! 500 avatars spawning, walking and being hurt, as a busy region writes them), then runs these
//! phases one after the other:
//!
//! - raw: the driver alone writes one document per fact (an upsert by id, in client bulk writes of
//!   256 models, journaled, as `ops/bench` measures its ceiling): the least any projection of
//!   these facts has to do;
//! - projection: the live projection catching up on the stored facts, from the first fact to the
//!   last acknowledged;
//! - rebuild: a rebuild of the read models from the first fact, switch-over included;
//! - catch-up: as many facts and as many chat commands stored with no projector running, then
//!   both consumers (read models and audit, commands' audit) draining them at once;
//! - live: as many again published while both consumers run, from the first publish to the last
//!   acknowledgement.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use game_bench::ceilings::{RAW_BATCH, raw_upserts, write_journaled};
use nats_topology::publish::{Outgoing, publish_all};
use nats_topology::topology::{Settings as TopologySettings, Topology};
use projector::settings::Settings;
use projector::{Context, live, rebuild};
use schemas::command::Chat;
use schemas::fact::{AccountRegistered, Damaged, Moved, Spawned};
use schemas::{
    Actor, Command, EntityId, EntityState, Envelope, Fact, PlayerId, Position, RegionId,
};
use test_servers::Server;

fn facts_of(n: usize) -> Vec<Envelope<Fact>> {
    let region: RegionId = "south-west".parse().expect("region");
    let players: Vec<PlayerId> = (0..500).map(|_| PlayerId::new()).collect();
    let sim = Actor::System {
        service: "region-sim".into(),
    };
    let mut out = Vec::with_capacity(n);
    for (i, p) in players.iter().enumerate() {
        out.push(Envelope::new(
            sim.clone(),
            None,
            Fact::AccountRegistered(AccountRegistered {
                player: *p,
                username: format!("player{i}"),
            }),
        ));
        out.push(Envelope::new(
            sim.clone(),
            Some(region.clone()),
            Fact::Spawned(Spawned {
                state: EntityState::newcomer(*p, Position::new(500.0, 500.0), 100),
            }),
        ));
    }
    let mut k = 0usize;
    while out.len() < n {
        let p = players[k % players.len()];
        let payload = if k.is_multiple_of(3) {
            Fact::Damaged(Damaged {
                attacker: EntityId::new(),
                target: p.into(),
                amount: 1,
                hp: 100 - (k / players.len() % 100) as u32,
            })
        } else {
            Fact::Moved(Moved {
                entity: p.into(),
                position: Position::new((k % 997) as f64, (k % 991) as f64),
                arrived: true,
            })
        };
        out.push(Envelope::new(sim.clone(), Some(region.clone()), payload));
        k += 1;
    }
    out.truncate(n);
    out
}

fn commands(n: usize) -> Vec<Envelope<Command>> {
    let region: RegionId = "south-west".parse().expect("region");
    let players: Vec<PlayerId> = (0..500).map(|_| PlayerId::new()).collect();
    (0..n)
        .map(|i| {
            Envelope::new(
                Actor::Player {
                    id: players[i % players.len()],
                },
                Some(region.clone()),
                Command::Chat(Chat {
                    text: format!("line {i}"),
                    channel: None,
                }),
            )
        })
        .collect()
}

async fn store(ctx: &Context, facts: &[Envelope<Fact>], commands: &[Envelope<Command>]) {
    // Interleaved, as a running game stores them.
    let mut facts = facts.iter().map(|f| Outgoing::fact(f).expect("encode"));
    let mut commands = commands
        .iter()
        .map(|c| Outgoing::command(c).expect("encode"));
    let mut out = std::iter::from_fn(|| match (facts.next(), commands.next()) {
        (None, None) => None,
        (f, c) => Some(f.into_iter().chain(c)),
    })
    .flatten()
    .peekable();
    while out.peek().is_some() {
        let chunk: Vec<Outgoing> = out.by_ref().take(500).collect();
        for r in publish_all(&ctx.js, chunk).await {
            r.expect("stored");
        }
    }
}

async fn last_sequence(ctx: &Context, stream: &str) -> u64 {
    let mut stream = ctx.js.get_stream(stream).await.expect("stream");
    stream.info().await.expect("info").state.last_sequence
}

/// How far `FACTS` and `COMMANDS` go now.
async fn stream_ends(ctx: &Context) -> (u64, u64) {
    (
        last_sequence(ctx, "FACTS").await,
        last_sequence(ctx, "COMMANDS").await,
    )
}

/// Waits until both consumers have acknowledged up to `ends` (see [`stream_ends`]); the time
/// from `started` to the facts' end and to the commands' end.
async fn both_drained(ctx: &Context, ends: (u64, u64), started: Instant) -> (Duration, Duration) {
    drained(ctx, "FACTS", live::FACTS_CONSUMER, ends.0).await;
    let facts_took = started.elapsed();
    drained(ctx, "COMMANDS", live::COMMANDS_CONSUMER, ends.1).await;
    (facts_took, started.elapsed())
}

/// Waits until `consumer` on `stream` has acknowledged everything up to `last`.
async fn drained(ctx: &Context, stream: &str, consumer: &str, last: u64) {
    let stream = ctx.js.get_stream(stream).await.expect("stream");
    loop {
        if let Ok(info) = stream.consumer_info(consumer).await
            && info.ack_floor.stream_sequence >= last
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs both consumers until `stop` turns true.
fn consumers(
    ctx: &std::sync::Arc<Context>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<(), async_nats::Error>>> {
    vec![
        tokio::spawn(live::project_facts(
            std::sync::Arc::clone(ctx),
            stop.clone(),
        )),
        tokio::spawn(live::audit_commands(
            std::sync::Arc::clone(ctx),
            stop.clone(),
        )),
    ]
}

fn line(name: &str, n: usize, what: &str, took: Duration) -> f64 {
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "{name:<12} {n:>7} {what:<8} in {:>6.2} s: {rate:>9.0} {what}/s",
        took.as_secs_f64()
    );
    rate
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = args
        .iter()
        .position(|a| a == "--facts")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000usize);
    let nats = Server::start_nats().expect("nats-server");
    let mongo = Server::start_mongo().expect("secantusd");
    let redis = Server::start_redis().expect("redis-server");
    let mut env: HashMap<&str, String> = HashMap::from([
        ("NATS_URL", nats.url()),
        ("MONGODB_URI", mongo.url()),
        ("REDIS_URL", redis.url()),
        ("PROJECTOR_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    // A copy of config/projector.toml with other settings, to compare them.
    if let Ok(config) = std::env::var("PROJECTOR_CONFIG") {
        env.insert("PROJECTOR_CONFIG", config);
    }
    let ctx = Context::connect(Settings::load(|k| env.get(k).cloned()).expect("settings"))
        .await
        .expect("connect");
    nats_topology::ensure(&ctx.js, &Topology::new(&TopologySettings::local()))
        .await
        .expect("topology");
    let facts = facts_of(n);
    for chunk in facts.chunks(1000) {
        let out: Vec<_> = chunk
            .iter()
            .map(|f| Outgoing::fact(f).expect("encode"))
            .collect();
        for r in publish_all(&ctx.js, out).await {
            r.expect("stored");
        }
    }

    // Raw: one journaled upsert per fact, 256 per client bulk write.
    let ns = mongodb::Namespace::new("bench", "raw");
    let started = Instant::now();
    for chunk in facts.chunks(RAW_BATCH) {
        let models = raw_upserts(
            &ns,
            chunk.iter().map(|f| {
                (
                    f.id.to_string(),
                    f.payload.kind().as_str(),
                    f.occurred_at.timestamp_millis(),
                )
            }),
        );
        write_journaled(&ctx.mongo, models)
            .await
            .expect("raw bulk write");
    }
    let raw = line("raw", n, "facts", started.elapsed());

    // The live projection, from the first fact to the last acknowledged.
    live::ensure_indexes(&ctx.db, &projector::projection::Names::live())
        .await
        .expect("indexes");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(live::project_facts(std::sync::Arc::clone(&ctx), stopped));
    let stream = ctx.js.get_stream("FACTS").await.expect("stream");
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Ok(mut c) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(live::FACTS_CONSUMER)
            .await
            && let Ok(info) = c.info().await
            && info.num_pending == 0
            && info.num_ack_pending == 0
            && info.delivered.stream_sequence >= n as u64
        {
            break;
        }
    }
    let projected = line("projection", n, "facts", started.elapsed());
    let _ = stop.send(true);
    let _ = task.await;

    let started = Instant::now();
    let folded = rebuild::rebuild(&ctx, "bench", |_| {})
        .await
        .expect("rebuild");
    let rebuilt = line("rebuild", folded as usize, "facts", started.elapsed());

    // Catch-up: facts and commands stored while nothing projects, then both consumers at once.
    store(&ctx, &facts_of(n), &commands(n)).await;
    let ends = stream_ends(&ctx).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let tasks = consumers(&ctx, &stopped);
    let (facts_took, commands_took) = both_drained(&ctx, ends, started).await;
    let caught_up = line("catch-up", n, "facts", facts_took);
    line("", n, "commands", commands_took);

    // Live: as many again published while both consumers run.
    let started = Instant::now();
    let publisher = {
        let ctx = std::sync::Arc::clone(&ctx);
        tokio::spawn(async move { store(&ctx, &facts_of(n), &commands(n)).await })
    };
    publisher.await.expect("publisher");
    let ends = stream_ends(&ctx).await;
    let (facts_took, commands_took) = both_drained(&ctx, ends, started).await;
    let lived = line("live", n, "facts", facts_took);
    line("", n, "commands", commands_took);
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }

    println!(
        "projection / raw = {:.2}; catch-up / raw = {:.2}; live / raw = {:.2}; rebuild / raw = {:.2}",
        projected / raw,
        caught_up / raw,
        lived / raw,
        rebuilt / raw
    );
}
