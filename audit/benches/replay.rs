//! Replay throughput: the `audit` replay to JSONL and to Parquet next to a bare ordered consumer
//! reading the same stream, in the same run, on the same server.
//!
//! ```text
//! cargo bench -p audit --bench replay                   # 1 000 000 facts
//! cargo bench -p audit --bench replay -- --facts 100000
//! ```
//!
//! It starts its own NATS, stores the facts (avatars spawning, walking, hurting each other and
//! chatting, as busy regions write them), then reads them three ways, one after the other:
//!
//! - bare: an ordered consumer counting the messages: the least any reader does;
//! - jsonl: `audit replay --format jsonl` into a file (decoding, upcasting, writing);
//! - parquet: `audit replay --format parquet` into a file.

use std::time::Instant;

use audit::select::{LogStream, Selection};
use audit::sink::{Format, Output, Target};
use futures::StreamExt;
use nats_topology::publish::{Outgoing, publish_all};
use schemas::fact::{ChatSaid, Damaged, Moved};
use schemas::{Actor, EntityId, Envelope, Fact, PlayerId, Position, RegionId};
use test_servers::Stack;

fn fact(k: usize, players: &[PlayerId], region: &RegionId) -> Envelope<Fact> {
    let p = players[k % players.len()];
    let payload = match k % 3 {
        0 => Fact::Moved(Moved {
            entity: p.into(),
            position: Position::new((k % 997) as f64, (k % 991) as f64),
            arrived: true,
        }),
        1 => Fact::Damaged(Damaged {
            attacker: EntityId::new(),
            target: p.into(),
            amount: 3,
            hp: 100 - (k % 90) as u32,
        }),
        _ => Fact::ChatSaid(ChatSaid {
            entity: p.into(),
            channel: schemas::command::ChatChannel::Say,
            text: format!("line {k}"),
            position: Position::new(1.0, 2.0),
        }),
    };
    Envelope::new(
        Actor::System {
            service: "region-sim".into(),
        },
        Some(region.clone()),
        payload,
    )
}

fn line(name: &str, n: u64, took: std::time::Duration) -> f64 {
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "{name:<8} {n:>9} events in {:>7.2} s: {rate:>9.0} events/s",
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
        .unwrap_or(1_000_000usize);
    let servers = Stack::nats_only().await;
    let js = &servers.js;
    let region: RegionId = "south-west".parse().expect("region");
    let players: Vec<PlayerId> = (0..500).map(|_| PlayerId::new()).collect();
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let out: Vec<Outgoing> = chunk
            .iter()
            .map(|k| Outgoing::fact(&fact(*k, &players, &region)).expect("encode"))
            .collect();
        for r in publish_all(js, out).await {
            r.expect("stored");
        }
    }
    println!(
        "stored {n} facts in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Bare: an ordered consumer that only counts.
    let started = Instant::now();
    let stream = js.get_stream("FACTS").await.expect("stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "fact.>".into(),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut read = 0u64;
    while let Some(m) = messages.next().await {
        let m = m.expect("message");
        read += 1;
        if m.info().map(|i| i.pending).unwrap_or(0) == 0 {
            break;
        }
    }
    drop(messages);
    let bare = line("bare", read, started.elapsed());

    let selection = Selection {
        streams: vec![LogStream::Facts],
        ..Selection::default()
    };
    let mut rates = Vec::new();
    for (name, format) in [("jsonl", Format::Jsonl), ("parquet", Format::Parquet)] {
        let path = servers.path(&format!("replay.{name}"));
        let started = Instant::now();
        let target = Target::open(&Output::File(path.clone())).expect("output");
        let mut sink = audit::sink::sink(format, target).expect("sink");
        let summary = audit::log::read(js, &selection, |_| {}, |e| sink.write(&e))
            .await
            .expect("replay");
        sink.finish().expect("written");
        let rate = line(name, summary.events, started.elapsed());
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "         {:.1} MiB written",
            size as f64 / (1024.0 * 1024.0)
        );
        rates.push((name, rate));
    }
    for (name, rate) in rates {
        println!("{name} / bare = {:.2}", rate / bare);
    }
}
