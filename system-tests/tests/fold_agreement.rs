//! The one fold, three ways: random command sequences drive a region (players spawning,
//! walking, fighting, picking up, leaving; wolves hunting them), and afterwards the simulator's
//! state, the shared fold of the facts it stored, and the projector's documents of those facts
//! all say the same of every avatar and every item. No servers: the region runs in memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use projector::models::{Stored, entities_of, fold_entity, fold_player, players_of};
use proptest::prelude::*;
use region_sim::{Balance, Region, RegionSettings};
use schemas::command::{Attack, Chat, Leave, Move, Pickup, Respawn, Spawn};
use schemas::fold::Applied;
use schemas::read_model::{EntityDoc, PlayerDoc};
use schemas::{
    Actor, Command, EntityId, EntityKind, EntityState, Envelope, Fact, PlayerId, WorldConfig,
};

/// Strong wolves worth a level and more, so that deaths, respawns, experience and the hit
/// points a level brings all happen; potions to pick up. A key the rules gain comes from the
/// shipped file.
const BALANCE: &str = r#"
player_speed = 10.0
player_base_hp = 100
player_hp_per_level = 10
respawn_secs = 1.0
xp_per_level = 100
max_level = 5
pickup_range = 60.0
inventory_slots = 2

[attack]
range = 60.0
cooldown_ms = 100
damage_min = 30
damage_max = 40

[[npc]]
kind = "wolf"
per_region = 2
hp = 50
damage_min = 10
damage_max = 20
speed = 4.0
aggro_radius = 15.0
wander_radius = 5.0
xp = 150
respawn_secs = 2.0

[[item]]
kind = "potion"
per_region = 3
respawn_secs = 2.0
"#;

/// What a player does in a step; targets are picked among what the region holds then.
#[derive(Debug, Clone)]
enum Act {
    Spawn,
    Move(f64, f64),
    Attack(usize),
    Pickup(usize),
    Respawn,
    Leave,
    Chat,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        2 => Just(Act::Spawn),
        3 => (0.0..40.0f64, 0.0..40.0f64).prop_map(|(x, y)| Act::Move(x, y)),
        4 => any::<usize>().prop_map(Act::Attack),
        2 => any::<usize>().prop_map(Act::Pickup),
        2 => Just(Act::Respawn),
        1 => Just(Act::Leave),
        1 => Just(Act::Chat),
    ]
}

/// Steps: how long after the one before, and who does what.
fn steps() -> impl Strategy<Value = Vec<(i64, Vec<(usize, Act)>)>> {
    prop::collection::vec(
        (
            50i64..3_000,
            prop::collection::vec((0usize..4, act()), 0..4),
        ),
        1..40,
    )
}

fn region() -> Region {
    // One region of 40 x 40, the room the steps move in, for eight players.
    let regions = test_servers::regions::region("west", (0.0, 0.0), (40.0, 40.0), 8, &[]);
    let world = Arc::new(WorldConfig::from_toml(&regions).expect("regions"));
    let config = world.regions[0].clone();
    let balance =
        Balance::from_toml(&test_servers::balance::shipped_with(BALANCE)).expect("balance");
    Region::new(
        config,
        world,
        Arc::new(balance),
        RegionSettings {
            hysteresis: 2.0,
            applied_memory: 10_000,
        },
    )
}

/// Runs the steps and returns the region and every fact it stored, in order.
fn play(players: &[PlayerId], steps: &[(i64, Vec<(usize, Act)>)]) -> (Region, Vec<Envelope<Fact>>) {
    let mut r = region();
    let mut now = 1_000_000;
    let mut facts = r.seed(now);
    for (dt, acts) in steps {
        now += dt;
        let targets: Vec<EntityId> = r.entities().keys().copied().collect();
        let items: Vec<EntityId> = r.items().keys().copied().collect();
        let commands: Vec<Envelope<Command>> = acts
            .iter()
            .map(|(who, act)| {
                let payload = match act {
                    Act::Spawn => Command::Spawn(Spawn { region: None }),
                    Act::Move(x, y) => Command::Move(Move { x: *x, y: *y }),
                    Act::Attack(i) => Command::Attack(Attack {
                        target: targets
                            .get(i % targets.len().max(1))
                            .copied()
                            .unwrap_or_else(EntityId::new),
                    }),
                    Act::Pickup(i) => Command::Pickup(Pickup {
                        item: items
                            .get(i % items.len().max(1))
                            .copied()
                            .unwrap_or_else(EntityId::new),
                    }),
                    Act::Respawn => Command::Respawn(Respawn {}),
                    Act::Leave => Command::Leave(Leave {}),
                    Act::Chat => Command::Chat(Chat {
                        text: "hi".into(),
                        channel: None,
                    }),
                };
                Envelope::new(Actor::Player { id: players[*who] }, None, payload)
            })
            .collect();
        facts.extend(r.tick(&commands, now).facts);
    }
    // Every walk under way ends, so that positions are what the log records.
    for _ in 0..3 {
        now += 60_000;
        facts.extend(r.tick(&[], now).facts);
    }
    (r, facts)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn the_simulator_the_shared_fold_and_the_projector_agree(steps in steps()) {
        let players: Vec<PlayerId> = (0..4).map(|_| PlayerId::new()).collect();
        let (region, facts) = play(&players, &steps);
        let simulator = region.entities();

        // The shared fold of what was stored.
        let mut folded: BTreeMap<EntityId, EntityState> = BTreeMap::new();
        for f in &facts {
            if let Some(state) = EntityState::created_by(&f.payload) {
                folded.insert(state.id, state);
            }
            folded.retain(|_, state| state.apply(&f.payload) != Applied::Removed);
        }
        // The projector's documents of it.
        let mut player_docs: BTreeMap<PlayerId, Option<PlayerDoc>> = BTreeMap::new();
        let mut world_docs: BTreeMap<EntityId, Option<EntityDoc>> = BTreeMap::new();
        for (i, env) in facts.iter().enumerate() {
            let stored = Stored { seq: i as u64 + 1, env: env.clone(), client_ip: None, request_id: None };
            for p in players_of(&env.payload) {
                fold_player(player_docs.entry(p).or_insert(None), p, &stored);
            }
            for e in entities_of(&env.payload) {
                fold_entity(world_docs.entry(e).or_insert(None), e, &stored, None);
            }
        }

        // Where the gateways route each player: the last place a fact put its avatar.
        let mut routed: BTreeMap<PlayerId, Option<schemas::RegionId>> = BTreeMap::new();
        for f in &facts {
            if let Some((player, region)) = schemas::fold::avatar_region(f) {
                routed.insert(player, region);
            }
        }

        for (id, sim) in simulator.iter().filter(|(_, s)| s.kind == EntityKind::Player) {
            prop_assert_eq!(folded.get(id), Some(sim), "the fold of the log is the simulator's state");
            prop_assert_eq!(
                routed.get(&sim.player.expect("an avatar's player")).cloned().flatten().map(|r| r.to_string()),
                Some("west".to_owned()),
                "commands are routed where the avatar is"
            );
            let player = sim.player.expect("an avatar's player");
            let doc = player_docs.get(&player).and_then(Option::as_ref).expect("a player document");
            prop_assert!(doc.state.online);
            prop_assert_eq!(doc.state.region.as_ref().map(|r| r.as_str()), Some("west"));
            prop_assert_eq!(doc.state.position, Some(sim.position));
            prop_assert_eq!(doc.state.destination, sim.destination);
            prop_assert_eq!(doc.state.hp, Some(sim.hp));
            prop_assert_eq!(doc.state.max_hp, Some(sim.max_hp));
            prop_assert_eq!(doc.state.level, sim.level);
            prop_assert_eq!(doc.state.xp, sim.xp);
            prop_assert_eq!(&doc.state.inventory, &sim.inventory);
            let world = world_docs.get(id).and_then(Option::as_ref).expect("a world document");
            prop_assert_eq!(world.state.position, sim.position);
            prop_assert_eq!(world.state.hp, Some(sim.hp));
            prop_assert_eq!(world.state.max_hp, Some(sim.max_hp));
            prop_assert_eq!(world.state.alive, Some(sim.alive));
            prop_assert!(world.state.region.is_some());
        }
        // Those who left are gone everywhere, and offline.
        for player in &players {
            let id = EntityId::from(*player);
            if simulator.contains_key(&id) {
                continue;
            }
            prop_assert!(!folded.contains_key(&id));
            prop_assert!(
                routed.get(player).is_none_or(Option::is_none),
                "no command is routed to an avatar that left"
            );
            if let Some(Some(doc)) = player_docs.get(player) {
                prop_assert!(!doc.state.online);
            }
        }
        // Items on the ground are where every reading puts them.
        let on_ground: BTreeMap<EntityId, schemas::Position> = world_docs
            .iter()
            .filter_map(|(id, d)| d.as_ref().map(|d| (id, d)))
            .filter(|(_, d)| d.state.kind == "item" && d.state.region.is_some())
            .map(|(id, d)| (*id, d.state.position))
            .collect();
        let simulated: BTreeMap<EntityId, schemas::Position> =
            region.items().into_iter().map(|(id, (_, p))| (id, p)).collect();
        prop_assert_eq!(on_ground, simulated);
    }
}
