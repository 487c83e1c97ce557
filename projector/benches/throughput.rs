//! Projection throughput: facts projected per second (read models, audit trail, Redis) next to
//! the raw `mongodb` driver's bulk-write rate on the same server in the same run, and the
//! rebuild's facts per second.
//!
//! ```text
//! cargo bench -p projector --bench throughput                 # 20 000 facts
//! cargo bench -p projector --bench throughput -- --facts 5000
//! ```
//!
//! It starts its own NATS, Redis and SecantusDB, stores the facts in `FACTS` first (a mix of
//! 500 avatars spawning, walking and being hurt, as a busy region writes them), then runs three
//! phases one after the other:
//!
//! - raw: the driver alone writes one document per fact (an upsert by id, in client bulk writes of
//!   256 models, journaled): the least any projection of these facts has to do;
//! - projection: the live projection, from the first fact to the last acknowledged;
//! - rebuild: a rebuild of the read models from the first fact, switch-over included.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::options::{UpdateOneModel, WriteConcern, WriteModel};
use nats_topology::publish::{Outgoing, publish_all};
use nats_topology::topology::{Settings as TopologySettings, Topology};
use projector::settings::Settings;
use projector::{Context, live, rebuild};
use schemas::fact::{AccountRegistered, Damaged, Moved, Spawned};
use schemas::{
    Actor, EntityId, EntityKind, EntityState, Envelope, Fact, PlayerId, Position, RegionId,
};
use test_servers::Server;

fn facts(n: usize) -> Vec<Envelope<Fact>> {
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
                state: EntityState {
                    id: (*p).into(),
                    kind: EntityKind::Player,
                    player: Some(*p),
                    position: Position::new(500.0, 500.0),
                    destination: None,
                    hp: 100,
                    max_hp: 100,
                    level: 1,
                    xp: 0,
                    inventory: vec![],
                    alive: true,
                },
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

fn line(name: &str, n: usize, took: Duration) -> f64 {
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "{name:<12} {n:>7} facts in {:>6.2} s: {rate:>9.0} facts/s",
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
    let nats = Server::start().expect("nats-server");
    let mongo = Server::start_mongo().expect("secantusd");
    let redis = Server::start_redis().expect("redis-server");
    let env: HashMap<&str, String> = HashMap::from([
        ("NATS_URL", nats.url()),
        ("MONGODB_URI", mongo.url()),
        ("REDIS_URL", redis.url()),
        ("PROJECTOR_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let ctx = Context::connect(Settings::load(|k| env.get(k).cloned()).expect("settings"))
        .await
        .expect("connect");
    nats_topology::ensure(&ctx.js, &Topology::new(&TopologySettings::local()))
        .await
        .expect("topology");
    let facts = facts(n);
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
    for chunk in facts.chunks(256) {
        let models: Vec<WriteModel> = chunk
            .iter()
            .map(|f| {
                WriteModel::UpdateOne(
                    UpdateOneModel::builder()
                        .namespace(ns.clone())
                        .filter(doc! {"_id": f.id.to_string()})
                        .update(doc! {"$set": {"kind": f.payload.kind().as_str(), "at": f.occurred_at.timestamp_millis()}})
                        .upsert(true)
                        .build(),
                )
            })
            .collect();
        ctx.mongo
            .bulk_write(models)
            .ordered(false)
            .write_concern(WriteConcern::builder().journal(true).build())
            .await
            .expect("raw bulk write");
    }
    let raw = line("raw", n, started.elapsed());

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
    let projected = line("projection", n, started.elapsed());
    let _ = stop.send(true);
    let _ = task.await;

    let started = Instant::now();
    let folded = rebuild::rebuild(&ctx, "bench", |_| {})
        .await
        .expect("rebuild");
    let rebuilt = line("rebuild", folded as usize, started.elapsed());

    println!(
        "projection / raw = {:.2}; rebuild / raw = {:.2}",
        projected / raw,
        rebuilt / raw
    );
}
