//! The rules and systems of one region on a bare world, with no server: every command kind,
//! movement, border crossings, NPCs, respawns, redeliveries, and recovery from facts and from a
//! snapshot.

use std::sync::Arc;

use region_sim::region::follow_ups;
use region_sim::{Balance, Region, RegionSettings, ecs_fold, systems};
use schemas::command::{AcceptHandOff, Attack, Chat, Leave, Move, Pickup, Respawn, Spawn};
use schemas::fact::{Moved, NpcSpawned, Spawned};
use schemas::{
    Actor, Command, EntityId, EntityKind, EntityState, Envelope, EventId, Fact, PlayerId, Position,
    RejectReason, WorldConfig,
};

/// West and east, bordering at x = 100, with room for three players each.
fn world() -> Arc<WorldConfig> {
    Arc::new(WorldConfig::from_toml(&test_servers::regions::west_and_east(3)).expect("regions"))
}

/// A balance with nothing wandering about unless a test asks: `npcs` wolves, `items` potions.
/// Every number the tests rely on is stated; a key the rules gain comes from the shipped file.
fn balance(npcs: u32, items: u32) -> Balance {
    Balance::from_toml(&test_servers::balance::shipped_with(&format!(
        r#"
player_speed = 10.0
player_base_hp = 100
player_hp_per_level = 10
respawn_secs = 5.0
xp_per_level = 100
max_level = 100
pickup_range = 2.0
inventory_slots = 2

[attack]
range = 3.0
cooldown_ms = 1000
damage_min = 30
damage_max = 40

[[npc]]
kind = "wolf"
per_region = {npcs}
hp = 50
damage_min = 5
damage_max = 5
speed = 4.0
aggro_radius = 10.0
wander_radius = 5.0
xp = 150
respawn_secs = 30.0

[[item]]
kind = "potion"
per_region = {items}
respawn_secs = 20.0
"#
    )))
    .expect("test balance")
}

const SETTINGS: RegionSettings = RegionSettings {
    hysteresis: 2.0,
    applied_memory: 1000,
};

fn region(id: &str, npcs: u32, items: u32) -> Region {
    let world = world();
    let config = world
        .regions
        .iter()
        .find(|r| r.id.as_str() == id)
        .expect("region")
        .clone();
    Region::new(config, world, Arc::new(balance(npcs, items)), SETTINGS)
}

fn command(player: PlayerId, payload: Command) -> Envelope<Command> {
    Envelope::new(Actor::Player { id: player }, None, payload)
}

fn spawn(r: &mut Region, now: i64) -> PlayerId {
    let player = PlayerId::new();
    let out = r.tick(
        &[command(player, Command::Spawn(Spawn { region: None }))],
        now,
    );
    assert!(matches!(out.facts[0].payload, Fact::Spawned(_)));
    player
}

/// Puts the avatar of `player` at `p` (as a recorded move would).
fn place(r: &mut Region, player: PlayerId, p: Position, now: i64) {
    let c = command(player, Command::Move(Move { x: p.x, y: p.y }));
    r.tick(&[c], now);
    // Long enough at any speed in these tests.
    r.tick(&[], now + 60_000);
}

fn rejection(out: &region_sim::TickOutput) -> Option<RejectReason> {
    out.facts.iter().find_map(|f| match &f.payload {
        Fact::Rejected(r) => Some(r.reason),
        _ => None,
    })
}

fn me(player: PlayerId) -> EntityId {
    player.into()
}

#[test]
fn spawning_twice_or_into_a_full_region_is_rejected() {
    let mut r = region("west", 0, 0);
    let player = spawn(&mut r, 1_000);
    let again = r.tick(
        &[command(player, Command::Spawn(Spawn { region: None }))],
        1_050,
    );
    assert_eq!(rejection(&again), Some(RejectReason::AlreadySpawned));
    spawn(&mut r, 1_100);
    spawn(&mut r, 1_150);
    let full = r.tick(
        &[command(
            PlayerId::new(),
            Command::Spawn(Spawn { region: None }),
        )],
        1_200,
    );
    assert_eq!(rejection(&full), Some(RejectReason::RegionFull));
    assert_eq!(r.population().0, 3);
}

#[test]
fn commands_without_an_avatar_are_rejected_as_not_spawned() {
    let mut r = region("west", 0, 0);
    let out = r.tick(
        &[command(
            PlayerId::new(),
            Command::Move(Move { x: 5.0, y: 5.0 }),
        )],
        1_000,
    );
    assert_eq!(rejection(&out), Some(RejectReason::NotSpawned));
    assert!(r.entities().is_empty());
}

#[test]
fn movement_keeps_to_the_speed_limit_and_records_the_arrival() {
    let mut r = region("west", 0, 0);
    let player = spawn(&mut r, 0);
    let start = r.entities()[&me(player)].position;
    let dest = Position::new(start.x - 30.0, start.y);
    let out = r.tick(
        &[command(
            player,
            Command::Move(Move {
                x: dest.x,
                y: dest.y,
            }),
        )],
        1_000,
    );
    assert!(matches!(out.facts[0].payload, Fact::MovementStarted(_)));
    // One second at 10 units a second: 10 units along, no further, and no fact yet.
    let out = r.tick(&[], 2_000);
    assert!(
        out.facts.is_empty(),
        "no fact while walking: {:?}",
        out.facts
    );
    let at = r.entities()[&me(player)].position;
    assert!(
        (at.distance(&start) - 10.0).abs() < 1e-9,
        "walked {}",
        at.distance(&start)
    );
    assert_eq!(out.moved, vec![(me(player), at)]);
    let out = r.tick(&[], 4_000);
    assert!(matches!(
        &out.facts[0].payload,
        Fact::Moved(Moved { arrived: true, position, .. }) if *position == dest
    ));
    assert_eq!(r.entities()[&me(player)].destination, None);
}

#[test]
fn attacks_check_range_cooldown_and_targets_and_a_kill_gives_experience() {
    let mut r = region("west", 1, 0);
    r.seed(0);
    let player = spawn(&mut r, 0);
    let (wolf, wolf_state) = r
        .entities()
        .into_iter()
        .find(|(_, s)| s.kind == EntityKind::Npc)
        .expect("a wolf");
    let attack = |target| command(player, Command::Attack(Attack { target }));

    let out = r.tick(&[attack(me(player))], 100);
    assert_eq!(rejection(&out), Some(RejectReason::InvalidTarget));
    let out = r.tick(&[attack(EntityId::new())], 200);
    assert_eq!(rejection(&out), Some(RejectReason::TargetNotFound));

    // Walk up to the wolf; it comes the rest of the way itself.
    let near = r.entities()[&wolf].position;
    place(&mut r, player, Position::new(near.x + 1.5, near.y), 300);
    let mut t = 60_300;
    while r.entities()[&wolf]
        .position
        .distance(&r.entities()[&me(player)].position)
        > 3.0
    {
        t += 100;
        r.tick(&[], t);
        assert!(t < 120_000, "the wolf never came");
    }
    let mut killed = None;
    for _ in 0..10 {
        t += 1_000;
        let out = r.tick(&[attack(wolf)], t);
        assert!(
            rejection(&out).is_none(),
            "attack rejected: {:?}",
            out.facts
        );
        killed = out.facts.iter().find_map(|f| match &f.payload {
            Fact::XpGained(x) => Some(x.clone()),
            _ => None,
        });
        if killed.is_some() {
            break;
        }
        // At once again: still cooling down.
        let out = r.tick(&[attack(wolf)], t + 10);
        assert_eq!(rejection(&out), Some(RejectReason::OnCooldown));
    }
    let xp = killed.expect("the wolf died within ten hits");
    assert_eq!((xp.amount, xp.xp, xp.level, xp.max_hp), (150, 150, 2, 110));
    assert!(!r.entities()[&wolf].alive);
    assert_eq!(wolf_state.max_hp, 50);
    let out = r.tick(&[attack(wolf)], t + 2_000);
    assert_eq!(rejection(&out), Some(RejectReason::TargetDead));
}

#[test]
fn the_first_of_two_pickups_in_stream_order_wins() {
    let mut r = region("west", 0, 1);
    r.seed(0);
    let (item, (_, at)) = r.items().into_iter().next().expect("an item");
    let (a, b) = (spawn(&mut r, 0), spawn(&mut r, 0));
    place(&mut r, a, at, 100);
    place(&mut r, b, at, 100);
    let pick = |p| command(p, Command::Pickup(Pickup { item }));
    let out = r.tick(&[pick(b), pick(a)], 200_000);
    assert!(matches!(&out.facts[0].payload, Fact::ItemPicked(p) if p.entity == me(b)));
    assert!(
        matches!(&out.facts[1].payload, Fact::Rejected(x) if x.reason == RejectReason::ItemGone)
    );
    assert_eq!(out.outcomes.len(), 2);
    assert_eq!(r.entities()[&me(b)].inventory.len(), 1);
    assert!(r.entities()[&me(a)].inventory.is_empty());
    assert!(r.items().is_empty());
}

#[test]
fn pickups_check_reach_and_room() {
    let mut r = region("west", 0, 3);
    r.seed(0);
    let items: Vec<_> = r.items().into_iter().collect();
    let player = spawn(&mut r, 0);
    let (first, (_, at)) = items[0].clone();
    place(&mut r, player, Position::new(at.x + 3.0, at.y), 100);
    let pick = |item| command(player, Command::Pickup(Pickup { item }));
    // The player may have been placed outside the region; clamp is not the test's concern.
    if r.entities().contains_key(&me(player)) {
        let out = r.tick(&[pick(first)], 200_000);
        assert_eq!(rejection(&out), Some(RejectReason::OutOfRange));
    }
    let mut t = 300_000;
    for (item, (_, at)) in &items[..2] {
        place(&mut r, player, *at, t);
        t += 100_000;
        let out = r.tick(&[pick(*item)], t);
        assert!(rejection(&out).is_none(), "{:?}", out.facts);
    }
    let (third, (_, at)) = items[2].clone();
    place(&mut r, player, at, t);
    let out = r.tick(&[pick(third)], t + 100_000);
    assert_eq!(rejection(&out), Some(RejectReason::InventoryFull));
}

#[test]
fn a_redelivered_command_changes_nothing() {
    let mut r = region("west", 0, 0);
    let player = spawn(&mut r, 0);
    let chat = command(
        player,
        Command::Chat(Chat {
            text: "hello".into(),
            channel: None,
        }),
    );
    let first = r.tick(std::slice::from_ref(&chat), 100);
    assert_eq!(first.facts.len(), 1);
    let before = r.entities();
    let again = r.tick(&[chat.clone(), chat.clone()], 200);
    assert!(again.facts.is_empty());
    assert_eq!(again.duplicates, vec![chat.id, chat.id]);
    assert_eq!(r.entities(), before);
}

#[test]
fn the_facts_of_a_command_have_ids_derived_from_it() {
    let mut a = region("west", 0, 0);
    let mut b = region("west", 0, 0);
    let player = PlayerId::new();
    let c = command(player, Command::Spawn(Spawn { region: None }));
    let fa = a.tick(std::slice::from_ref(&c), 100);
    let fb = b.tick(std::slice::from_ref(&c), 100);
    assert_eq!(fa.facts[0].id, fb.facts[0].id);
    assert_eq!(fa.facts[0].correlation_id, c.id);
    assert_eq!(fa.facts[0].causation_id, Some(c.id));
}

#[test]
fn death_waits_out_the_respawn_time() {
    let mut r = region("west", 0, 0);
    let player = spawn(&mut r, 0);
    let out = r.tick(&[command(player, Command::Respawn(Respawn {}))], 100);
    assert_eq!(rejection(&out), Some(RejectReason::NotDead));
    // Kill the avatar as a fact would.
    let mut w = r.snapshot(0, 100);
    let e = w
        .entities
        .iter_mut()
        .find(|e| e.state.id == me(player))
        .expect("avatar");
    e.state.alive = false;
    e.state.hp = 0;
    e.combat.died_at_ms = Some(1_000);
    let mut r = from_snapshot(&w, 0, 0);
    let out = r.tick(
        &[command(player, Command::Move(Move { x: 1.0, y: 1.0 }))],
        2_000,
    );
    assert_eq!(rejection(&out), Some(RejectReason::Dead));
    let out = r.tick(&[command(player, Command::Respawn(Respawn {}))], 2_000);
    assert_eq!(rejection(&out), Some(RejectReason::RespawnNotReady));
    let out = r.tick(&[command(player, Command::Respawn(Respawn {}))], 6_000);
    assert!(matches!(&out.facts[0].payload, Fact::Respawned(x) if x.hp == 100));
    assert!(r.entities()[&me(player)].alive);
}

/// The west restored from `snapshot`, with `npcs` wolves and `items` potions.
fn from_snapshot(snapshot: &region_sim::Snapshot, npcs: u32, items: u32) -> Region {
    Region::restore(
        snapshot,
        config("west"),
        world(),
        Arc::new(balance(npcs, items)),
        SETTINGS,
    )
}

fn config(id: &str) -> schemas::RegionConfig {
    world()
        .regions
        .iter()
        .find(|r| r.id.as_str() == id)
        .expect("region")
        .clone()
}

#[test]
fn wolves_go_after_players_in_reach_and_strike_on_their_cooldown() {
    let mut r = region("west", 1, 0);
    r.seed(0);
    let (wolf, _) = r
        .entities()
        .into_iter()
        .find(|(_, s)| s.kind == EntityKind::Npc)
        .expect("a wolf");
    let player = spawn(&mut r, 0);
    let at = r.entities()[&wolf].position;
    place(&mut r, player, Position::new(at.x + 1.5, at.y), 0);
    let mut damage = Vec::new();
    let mut t = 60_000;
    while damage.len() < 2 && t < 120_000 {
        t += 50;
        let out = r.tick(&[], t);
        damage.extend(out.facts.iter().filter_map(|f| match &f.payload {
            Fact::Damaged(d) if d.attacker == wolf && d.target == me(player) => Some((t, d.hp)),
            _ => None,
        }));
    }
    assert!(
        damage.len() >= 2,
        "the wolf did not strike twice: {damage:?}"
    );
    assert!(
        damage[1].0 - damage[0].0 >= 1_000,
        "cooldown kept: {damage:?}"
    );
    assert_eq!((damage[0].1, damage[1].1), (95, 90));
}

#[test]
fn dead_wolves_and_picked_items_come_back_after_their_time() {
    let mut r = region("west", 0, 1);
    r.seed(0);
    let (item, (_, at)) = r.items().into_iter().next().expect("an item");
    let player = spawn(&mut r, 0);
    place(&mut r, player, at, 0);
    r.tick(
        &[command(player, Command::Pickup(Pickup { item }))],
        100_000,
    );
    assert!(r.items().is_empty());
    let out = r.tick(&[], 110_000);
    assert!(out.facts.is_empty());
    let out = r.tick(&[], 120_000);
    let Some(Fact::ItemSpawned(again)) = out.facts.first().map(|f| &f.payload) else {
        panic!("no item came back: {:?}", out.facts)
    };
    assert_ne!(again.item, item, "a new item, with an id of its own");
    assert_eq!(r.items().len(), 1);
}

#[test]
fn seeding_is_done_once() {
    let mut r = region("west", 3, 2);
    assert_eq!(r.seed(0).len(), 5);
    assert!(r.seed(10).is_empty());
    assert_eq!(r.population(), (0, 5));
}

#[test]
fn a_walk_over_the_border_hands_the_avatar_over_past_the_hysteresis_only() {
    let mut west = region("west", 0, 0);
    let player = spawn(&mut west, 0);
    // 101 is past the border but within the 2-unit hysteresis: still the west's.
    place(&mut west, player, Position::new(101.0, 50.0), 100);
    assert!(west.entities().contains_key(&me(player)));
    place(&mut west, player, Position::new(99.0, 50.0), 200_000);
    let out = west.tick(
        &[command(player, Command::Move(Move { x: 150.0, y: 50.0 }))],
        400_000,
    );
    assert!(out.follow_ups.is_empty());
    // 0.2 s at 10 a second: at 101, within the hysteresis.
    let out = west.tick(&[], 400_200);
    assert!(out.follow_ups.is_empty(), "not yet past the hysteresis");
    let out = west.tick(&[], 400_500);
    assert_eq!(out.follow_ups.len(), 1);
    let Fact::HandedOffOut(gone) = &out.facts[0].payload else {
        panic!("{:?}", out.facts)
    };
    assert_eq!(gone.to_region.as_str(), "east");
    assert!(!west.entities().contains_key(&me(player)));
    let accept = &out.follow_ups[0];
    assert_eq!(accept.region.as_ref().map(|r| r.as_str()), Some("east"));
    assert_eq!(
        follow_ups(&out.facts[0]).first().map(|c| c.id),
        Some(accept.id)
    );

    let mut east = region("east", 0, 0);
    let arrived = east.tick(std::slice::from_ref(accept), 401_000);
    assert!(matches!(arrived.facts[0].payload, Fact::HandedOffIn(_)));
    let there = east.entities()[&me(player)].clone();
    assert_eq!(there.destination, Some(Position::new(150.0, 50.0)));
    // It keeps walking on the other side, without a new command.
    east.tick(&[], 406_000);
    assert_eq!(
        east.entities()[&me(player)].position,
        Position::new(150.0, 50.0)
    );
    // The same hand-off again (a resend after a crash) is not applied twice.
    let again = east.tick(std::slice::from_ref(accept), 407_000);
    assert_eq!(again.duplicates, vec![accept.id]);
    // Commands still routed to the west are rejected there.
    let stale = west.tick(
        &[command(player, Command::Move(Move { x: 1.0, y: 1.0 }))],
        407_000,
    );
    assert_eq!(rejection(&stale), Some(RejectReason::NotSpawned));
}

#[test]
fn a_hand_off_of_an_entity_already_here_is_rejected() {
    let mut east = region("east", 0, 0);
    let player = spawn(&mut east, 0);
    let state = east.entities()[&me(player)].clone();
    let accept = Envelope::new(
        Actor::System {
            service: "region-sim".into(),
        },
        None,
        Command::AcceptHandOff(AcceptHandOff {
            from_region: "west".parse().expect("id"),
            state,
        }),
    );
    let out = east.tick(&[accept], 100);
    assert_eq!(rejection(&out), Some(RejectReason::AlreadySpawned));
}

/// Plays a little game with two avatars and items, returns every fact it stored.
fn play(r: &mut Region) -> (Vec<Envelope<Fact>>, i64) {
    let mut log = r.seed(0);
    let (a, b) = (PlayerId::new(), PlayerId::new());
    let items: Vec<_> = r.items().into_iter().collect();
    let mut t = 0;
    let mut run = |r: &mut Region, cmds: Vec<Envelope<Command>>, t: i64| {
        log.extend(r.tick(&cmds, t).facts);
    };
    run(
        r,
        vec![
            command(a, Command::Spawn(Spawn { region: None })),
            command(b, Command::Spawn(Spawn { region: None })),
        ],
        t,
    );
    for (i, (item, (_, at))) in items.iter().enumerate() {
        let who = if i % 2 == 0 { a } else { b };
        t += 1_000;
        run(
            r,
            vec![command(who, Command::Move(Move { x: at.x, y: at.y }))],
            t,
        );
        t += 200_000;
        run(
            r,
            vec![command(who, Command::Pickup(Pickup { item: *item }))],
            t,
        );
    }
    t += 1_000;
    let at = r.entities()[&me(b)].position;
    run(
        r,
        vec![command(
            a,
            Command::Move(Move {
                x: at.x + 1.0,
                y: at.y,
            }),
        )],
        t,
    );
    t += 200_000;
    for _ in 0..3 {
        run(
            r,
            vec![command(a, Command::Attack(Attack { target: me(b) }))],
            t,
        );
        t += 1_500;
    }
    // Half-way through a walk when the log ends.
    run(
        r,
        vec![command(b, Command::Move(Move { x: 5.0, y: 5.0 }))],
        t,
    );
    t += 500;
    run(r, vec![], t);
    (log, t)
}

#[test]
fn folding_the_log_gives_back_the_live_state() {
    let mut live = region("west", 0, 4);
    let (log, t) = play(&mut live);
    let mut replayed = region("west", 0, 4);
    for env in &log {
        replayed.fold(env);
    }
    // Advance the replayed walk to the same moment.
    replayed.tick(&[], t);
    assert_eq!(replayed.entities(), live.entities());
    assert_eq!(replayed.items(), live.items());
    assert_eq!(
        replayed.applied().ids().collect::<Vec<_>>().len(),
        live.applied().len()
    );
}

#[test]
fn a_snapshot_and_the_facts_after_it_give_back_the_live_state() {
    let mut live = region("west", 0, 4);
    let (log, _) = play(&mut live);
    let half = log.len() / 2;
    let mut first = region("west", 0, 4);
    for env in &log[..half] {
        first.fold(env);
    }
    let snap = first.snapshot(half as u64, log[half - 1].occurred_at.timestamp_millis());
    let json = serde_json::to_vec(&snap).expect("snapshot encodes");
    let snap: region_sim::Snapshot = serde_json::from_slice(&json).expect("and decodes");
    let mut restored = from_snapshot(&snap, 0, 4);
    for env in &log[half..] {
        restored.fold(env);
    }
    let t = log
        .last()
        .map(|e| e.occurred_at.timestamp_millis())
        .unwrap_or(0);
    restored.tick(&[], t + 500);
    live.tick(&[], t + 500);
    assert_eq!(restored.entities(), live.entities());
    assert_eq!(restored.items(), live.items());
    // And a command applied before the snapshot is still known as applied.
    let applied: Vec<_> = live.applied().ids().copied().collect();
    assert!(applied.iter().all(|id| restored.has_applied(id)));
}

#[test]
fn movement_system_on_a_bare_world() {
    let cfg = config("west");
    let mut w = ecs_fold::new_world(cfg, world(), Arc::new(balance(0, 0)), 2.0);
    let player = PlayerId::new();
    let mut s = EntityState {
        id: player.into(),
        kind: EntityKind::Player,
        player: Some(player),
        position: Position::new(10.0, 10.0),
        destination: Some(Position::new(10.0, 40.0)),
        hp: 10,
        max_hp: 10,
        level: 1,
        xp: 0,
        inventory: vec![],
        alive: true,
    };
    ecs_fold::apply(&mut w, &Fact::Spawned(Spawned { state: s.clone() }), 0);
    let mut rng = fastrand::Rng::with_seed(0);
    let produced = systems::movement::run(&mut w, 1_000, &mut rng);
    assert!(produced.facts.is_empty());
    assert_eq!(produced.moved, vec![(s.id, Position::new(10.0, 20.0))]);
    let produced = systems::movement::run(&mut w, 3_000, &mut rng);
    assert_eq!(produced.facts.len(), 1);
    s.position = Position::new(10.0, 40.0);
    s.destination = None;
    let key = ecs_fold::key_of(&w, s.id).expect("in the world");
    assert_eq!(ecs_fold::entity_state(&w, key), Some(s));
}

#[test]
fn an_attack_over_the_border_is_decided_where_the_target_stands() {
    let (mut west, mut east) = (region("west", 0, 0), region("east", 0, 0));
    let attacker = spawn(&mut west, 0);
    let target = spawn(&mut east, 0);
    place(&mut west, attacker, Position::new(99.0, 50.0), 100);
    place(&mut east, target, Position::new(101.0, 50.0), 100);
    let now = 200_000;
    let attack = |at: i64| {
        let mut c = command(attacker, Command::Attack(Attack { target: me(target) }));
        c.occurred_at = chrono::DateTime::from_timestamp_millis(at).expect("time");
        c
    };

    // The west does not hold the target but the east lies within reach: the blow goes there.
    let first = attack(now);
    let out = west.tick(std::slice::from_ref(&first), now);
    let [Fact::StruckAcross(blow)] = &out
        .facts
        .iter()
        .map(|f| f.payload.clone())
        .collect::<Vec<_>>()[..]
    else {
        panic!("{:?}", out.facts)
    };
    assert_eq!(blow.to_regions, vec!["east".parse().expect("id")]);
    let [strike] = &out.follow_ups[..] else {
        panic!("{:?}", out.follow_ups)
    };
    assert_eq!(strike.region.as_ref().map(|r| r.as_str()), Some("east"));
    assert_eq!(strike.correlation_id, first.id, "it answers the attack");
    assert_eq!(
        follow_ups(&out.facts[0])[0].id,
        strike.id,
        "a resend has the same id"
    );

    // The east decides the hit, once, however often the blow arrives.
    let hit = east.tick(std::slice::from_ref(strike), now + 50);
    let Fact::Damaged(damaged) = &hit.facts[0].payload else {
        panic!("{:?}", hit.facts)
    };
    assert_eq!(
        (damaged.attacker, damaged.target),
        (me(attacker), me(target))
    );
    assert_eq!(damaged.hp, 100 - blow.amount);
    let again = east.tick(std::slice::from_ref(strike), now + 60);
    assert_eq!(again.duplicates, vec![strike.id]);
    assert_eq!(east.entities()[&me(target)].hp, 100 - blow.amount);

    // The attacker's cooldown runs in its own region.
    let soon = west.tick(&[attack(now + 100)], now + 100);
    assert_eq!(rejection(&soon), Some(RejectReason::OnCooldown));

    // A target that walked out of reach on its side is missed there.
    place(&mut east, target, Position::new(150.0, 50.0), now + 200);
    let out = west.tick(&[attack(now + 70_000)], now + 70_000);
    let missed = east.tick(&out.follow_ups, now + 70_050);
    assert_eq!(rejection(&missed), Some(RejectReason::OutOfRange));

    // Far from any border there is nowhere to send the blow.
    place(
        &mut west,
        attacker,
        Position::new(50.0, 50.0),
        now + 140_000,
    );
    let out = west.tick(&[attack(now + 300_000)], now + 300_000);
    assert_eq!(rejection(&out), Some(RejectReason::TargetNotFound));
    assert!(out.follow_ups.is_empty());
}

#[test]
fn an_npc_slain_over_the_border_gives_its_experience_in_the_slayers_region() {
    let (mut west, mut east) = (region("west", 0, 0), region("east", 0, 0));
    let slayer = spawn(&mut west, 0);
    place(&mut west, slayer, Position::new(99.0, 50.0), 100);
    // A wolf with one hp left, just over the border.
    let wolf = EntityId::new();
    let state = EntityState {
        id: wolf,
        kind: EntityKind::Npc,
        player: None,
        position: Position::new(101.0, 50.0),
        destination: None,
        hp: 1,
        max_hp: 50,
        level: 1,
        xp: 0,
        inventory: vec![],
        alive: true,
    };
    let system = Actor::System {
        service: "test".into(),
    };
    let spawned = Fact::NpcSpawned(NpcSpawned {
        state,
        npc_kind: "wolf".into(),
    });
    east.fold(&Envelope::new(system, Some(east.id().clone()), spawned));
    let now = 200_000;
    let mut attack = command(slayer, Command::Attack(Attack { target: wolf }));
    attack.occurred_at = chrono::DateTime::from_timestamp_millis(now).expect("time");

    let out = west.tick(std::slice::from_ref(&attack), now);
    let [strike] = &out.follow_ups[..] else {
        panic!("{:?}", out.follow_ups)
    };
    let slain = east.tick(std::slice::from_ref(strike), now + 50);
    let kinds: Vec<&str> = slain
        .facts
        .iter()
        .map(|f| f.payload.kind().as_str())
        .collect();
    assert_eq!(kinds, ["damaged", "npc_died", "reward_sent"]);
    let Fact::RewardSent(sent) = &slain.facts[2].payload else {
        panic!("{:?}", slain.facts)
    };
    assert_eq!(
        (sent.entity, sent.npc, sent.amount, sent.to_region.as_str()),
        (me(slayer), wolf, 150, "west")
    );
    let [reward] = &slain.follow_ups[..] else {
        panic!("{:?}", slain.follow_ups)
    };
    assert_eq!(reward.region.as_ref().map(|r| r.as_str()), Some("west"));
    assert_eq!(reward.correlation_id, attack.id, "it answers the attack");
    assert_eq!(
        follow_ups(&slain.facts[2])[0].id,
        reward.id,
        "a resend has the same id"
    );

    // The slayer's region grants the experience, once however often the reward arrives.
    let granted = west.tick(std::slice::from_ref(reward), now + 100);
    let [Fact::XpGained(xp)] = &granted
        .facts
        .iter()
        .map(|f| f.payload.clone())
        .collect::<Vec<_>>()[..]
    else {
        panic!("{:?}", granted.facts)
    };
    assert_eq!(
        (xp.entity, xp.amount, xp.xp, xp.level),
        (me(slayer), 150, 150, 2)
    );
    let again = west.tick(std::slice::from_ref(reward), now + 150);
    assert_eq!(again.duplicates, vec![reward.id]);
    let slayer_now = &west.entities()[&me(slayer)];
    assert_eq!((slayer_now.xp, slayer_now.level), (150, 2));

    // A slayer who is no longer in that region by the time the reward comes gets nothing there.
    let mut late = reward.clone();
    late.id = EventId::new();
    west.tick(&[command(slayer, Command::Leave(Leave {}))], now + 200);
    let missed = west.tick(&[late], now + 250);
    assert_eq!(rejection(&missed), Some(RejectReason::TargetNotFound));
}

#[test]
fn an_avatar_that_leaves_takes_its_progress_and_has_it_again_when_it_spawns() {
    let mut west = region("west", 0, 1);
    west.seed(0);
    let (item, (_, at)) = west.items().into_iter().next().expect("an item");
    let player = spawn(&mut west, 0);
    place(&mut west, player, at, 100);
    west.tick(
        &[command(player, Command::Pickup(Pickup { item }))],
        200_000,
    );
    let leave = command(player, Command::Leave(Leave {}));
    let out = west.tick(std::slice::from_ref(&leave), 200_100);
    let Fact::Left(left) = &out.facts[0].payload else {
        panic!("{:?}", out.facts)
    };
    let progress = left
        .progress
        .clone()
        .expect("the left fact carries the progress");
    assert_eq!((progress.level, progress.inventory.len()), (1, 1));
    assert_eq!(progress.inventory[0].item, item);

    // In another region, given what the runner found for it: the avatar has it again.
    let mut east = region("east", 0, 0);
    east.returning(player, progress.clone());
    let out = east.tick(
        &[command(player, Command::Spawn(Spawn { region: None }))],
        300_000,
    );
    let Fact::Spawned(back) = &out.facts[0].payload else {
        panic!("{:?}", out.facts)
    };
    assert_eq!(back.state.inventory, progress.inventory);
    // A spawn given nothing starts afresh, and what was given is used once.
    let stranger = spawn(&mut east, 300_100);
    assert!(east.entities()[&me(stranger)].inventory.is_empty());

    // Leaving and spawning in one tick: the spawn has what the leave just took.
    let out = east.tick(
        &[
            command(player, Command::Leave(Leave {})),
            command(player, Command::Spawn(Spawn { region: None })),
        ],
        400_000,
    );
    let Fact::Spawned(again) = &out.facts[1].payload else {
        panic!("{:?}", out.facts)
    };
    assert_eq!(again.state.inventory, progress.inventory);
}

#[test]
fn a_tick_times_the_commands_and_then_each_system_in_order() {
    let mut r = region("west", 2, 1);
    r.seed(0);
    let out = r.tick(&[], 50);
    let parts: Vec<&str> = out.took.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        parts,
        [
            "commands",
            "movement",
            "border_crossings",
            "npcs",
            "respawns"
        ]
    );
    let order: Vec<&str> = systems::TICK.iter().map(|s| s.name).collect();
    assert_eq!(parts[1..], order[..]);
}
