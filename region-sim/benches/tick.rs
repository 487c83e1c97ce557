//! One tick of a region at 1 000, 10 000 and 50 000 entities: the shipped region and balance
//! (1 000 x 1 000, 25-unit cells), scaled so that 80 % of the entities are NPCs (wandering,
//! chasing and striking), 10 % items and 10 % avatars. Each tick carries a command mix of 5 %
//! of the avatars: 60 % moves, 20 % attacks, 10 % chat, 10 % pickups, the most-used kinds.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use region_sim::{Balance, Region, RegionSettings};
use schemas::command::{Attack, Chat, Move, Pickup, Spawn};
use schemas::{Actor, Command, EntityId, EntityKind, Envelope, PlayerId, WorldConfig};

const TICK_MS: i64 = 50;

fn region(entities: u32) -> (Region, Vec<PlayerId>) {
    let world = Arc::new(
        WorldConfig::from_toml(include_str!("../../config/regions.toml")).expect("regions"),
    );
    let mut balance =
        Balance::from_toml(include_str!("../../config/balance.toml")).expect("balance");
    let npcs = entities * 8 / 10;
    let per_kind = npcs / balance.npcs.len() as u32;
    for kind in &mut balance.npcs {
        kind.per_region = per_kind;
    }
    let items = entities / 10;
    let per_item = items / balance.items.len() as u32;
    for kind in &mut balance.items {
        kind.per_region = per_item;
    }
    let mut config = world.regions[0].clone();
    config.capacity = entities;
    let mut region = Region::new(
        config,
        world,
        Arc::new(balance),
        RegionSettings {
            hysteresis: 2.0,
            applied_memory: 10_000,
        },
    );
    region.seed(0);
    let players: Vec<PlayerId> = (0..entities / 10).map(|_| PlayerId::new()).collect();
    let spawns: Vec<_> = players
        .iter()
        .map(|p| cmd(*p, Command::Spawn(Spawn { region: None })))
        .collect();
    region.tick(&spawns, TICK_MS);
    // Spread the avatars out, then let the world settle for a few seconds.
    let moves: Vec<_> = players
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let x = (i * 7919 % 997) as f64;
            let y = (i * 104_729 % 991) as f64;
            cmd(*p, Command::Move(Move { x, y }))
        })
        .collect();
    region.tick(&moves, 2 * TICK_MS);
    for t in 3..200 {
        region.tick(&[], t * TICK_MS);
    }
    (region, players)
}

fn cmd(player: PlayerId, payload: Command) -> Envelope<Command> {
    Envelope::new(Actor::Player { id: player }, None, payload)
}

fn mix(
    players: &[PlayerId],
    npcs: &[EntityId],
    items: &[EntityId],
    round: usize,
) -> Vec<Envelope<Command>> {
    let n = (players.len() / 20).max(1);
    (0..n)
        .map(|i| {
            let k = round * n + i;
            let player = players[k % players.len()];
            let payload = match k % 10 {
                0..=5 => Command::Move(Move {
                    x: (k * 31 % 997) as f64,
                    y: (k * 17 % 991) as f64,
                }),
                6 | 7 => Command::Attack(Attack {
                    target: npcs[k % npcs.len()],
                }),
                8 => Command::Chat(Chat {
                    text: "anyone up for the bandit camp?".into(),
                    channel: None,
                }),
                _ => Command::Pickup(Pickup {
                    item: items[k % items.len()],
                }),
            };
            cmd(player, payload)
        })
        .collect()
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group.sample_size(20);
    for n in [1_000u32, 10_000, 50_000] {
        let (mut region, players) = region(n);
        let npcs: Vec<EntityId> = region
            .entities()
            .into_iter()
            .filter(|(_, s)| s.kind == EntityKind::Npc)
            .map(|(id, _)| id)
            .collect();
        let items: Vec<EntityId> = region.items().into_keys().collect();
        let mut round = 0;
        let mut now = 200 * TICK_MS;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || {
                    round += 1;
                    mix(&players, &npcs, &items, round)
                },
                |commands| {
                    now += TICK_MS;
                    black_box(region.tick(&commands, now))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
