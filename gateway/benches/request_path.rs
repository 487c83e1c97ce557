//! The gateway's work per command, without the network: check the token, parse and validate the
//! body, build the envelope, its subject and its bytes. And a login's password check, on the
//! password workers.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::auth::{Passwords, Role, Tokens, now_secs, passwords};
use schemas::{Actor, Command, Envelope, Origin, PlayerId, WorldConfig};
use secrecy::SecretString;

// The gateway's own allocator (see `src/main.rs`): what a hash's 19 MiB costs to take and give
// back depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// A password hashed and verified as a registration and a login do it: on a password worker, with
/// the shipped Argon2id parameters (19 MiB, two passes).
fn password_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let refused = prometheus::IntCounter::new("refused", "refused").expect("counter");
    let passwords = Passwords::start(1, passwords::QUEUE, refused).expect("workers");
    let password = || SecretString::from("correct horse battery staple");
    let hash = runtime
        .block_on(passwords.hash(password()))
        .expect("hashed");

    let mut group = c.benchmark_group("passwords");
    group.sample_size(30);
    group.bench_function("verify", |b| {
        b.iter(|| {
            let matches = runtime.block_on(passwords.verify(password(), Some(hash.clone())));
            assert!(matches.expect("checked"));
        })
    });
    group.bench_function("hash", |b| {
        b.iter(|| {
            runtime
                .block_on(passwords.hash(password()))
                .expect("hashed")
        })
    });
    group.finish();
}

criterion_group!(benches, request_path, password_check);
criterion_main!(benches);
