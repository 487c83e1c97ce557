//! The gateway's work per command, without the network: check the token, parse and validate the
//! body, build the envelope, its subject and its bytes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::auth::{Role, Tokens, now_secs};
use schemas::{Actor, Command, Envelope, Origin, PlayerId, WorldConfig};
use secrecy::SecretString;

fn request_path(c: &mut Criterion) {
    let world_toml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/regions.toml"
    ))
    .expect("regions");
    let ctx = WorldConfig::from_toml(&world_toml)
        .expect("valid")
        .validation_context();
    let tokens = Tokens::new(
        &SecretString::from("bench-secret-bench-secret-bench-secret"),
        "game-gateway",
        "game-clients",
        Duration::from_secs(3600),
    );
    let player = PlayerId::new();
    let token = tokens
        .issue(player, "session", Role::Player, now_secs())
        .expect("token");
    let body = br#"{"type":"move","x":1500.5,"y":1200}"#;
    let chat =
        br#"{"type":"chat","text":"well met, traveller; the road north is safe","channel":"say"}"#;
    let region = Some(schemas::RegionId::new("north-east").expect("id"));

    let mut group = c.benchmark_group("request_path");
    group.bench_function("check_token", |b| {
        b.iter(|| tokens.check(black_box(&token)).expect("valid"))
    });
    group.bench_function("parse_validate_move", |b| {
        b.iter(|| Command::parse(black_box(body), Origin::Player, &ctx).expect("valid"))
    });
    group.bench_function("parse_validate_chat", |b| {
        b.iter(|| Command::parse(black_box(chat), Origin::Player, &ctx).expect("valid"))
    });
    group.bench_function("envelope_subject_bytes", |b| {
        let command = Command::parse(body, Origin::Player, &ctx).expect("valid");
        b.iter(|| {
            let env = Envelope::new(
                Actor::Player { id: player },
                region.clone(),
                black_box(command.clone()),
            );
            nats_topology::Outgoing::command(&env).expect("message")
        })
    });
    group.bench_function("whole_path_move", |b| {
        b.iter(|| {
            let claims = tokens.check(black_box(&token)).expect("valid");
            let command = Command::parse(black_box(body), Origin::Player, &ctx).expect("valid");
            let env = Envelope::new(Actor::Player { id: claims.sub }, region.clone(), command);
            nats_topology::Outgoing::command(&env).expect("message")
        })
    });
    group.finish();
}

criterion_group!(benches, request_path);
criterion_main!(benches);
