//! The systems a tick runs after the commands: movement, border crossings, NPC behaviour, and
//! what comes back on its own (NPCs, items). Each takes the region's world and the tick's time
//! and returns the facts it decided, already folded in; NPC walking is live state, not facts.

use schemas::fact::{HandedOffOut, ItemSpawned, Moved, NpcSpawned};
use schemas::{EntityKind, EntityState, Fact, Position, RegionId};
use shipyard::{
    AddComponent, Delete, Get, IntoIter, UniqueView, UniqueViewMut, View, ViewMut, World,
};

use crate::components::{Combat, Health, Ident, Key, Moving, Npc, Pos, Rules, Slots, Spatial};
use crate::ecs_fold::{self, entity_state, item_id};
use crate::handlers::{npc_strike, roll};

/// What a tick's systems produced.
#[derive(Debug, Default)]
pub struct Produced {
    /// Facts for the event log, in the order they were decided.
    pub facts: Vec<Fact>,
    /// Entities whose position changed this tick (live state, for broadcast).
    pub moved: Vec<(schemas::EntityId, Position)>,
}

/// Advances every walk to `now_ms`. Avatars that arrive get a [`Fact::Moved`]; NPCs' walks are
/// live state only.
pub fn movement(world: &mut World, now_ms: i64) -> Produced {
    let mut arrived_players = Vec::new();
    let mut moved = Vec::new();
    world.run(
        |ident: View<Ident>,
         mut pos: ViewMut<Pos>,
         mut moving: ViewMut<Moving>,
         mut grid: UniqueViewMut<Spatial>| {
            let mut arrived_npcs = Vec::new();
            for (key, (ident, pos, walk)) in (&ident, &mut pos, &moving).iter().with_id() {
                let (p, arrived) = walk.at(now_ms);
                if p != pos.0 {
                    pos.0 = p;
                    grid.place(key, p, ident.kind == EntityKind::Player);
                    moved.push((ident.id, p));
                }
                if arrived {
                    match ident.kind {
                        EntityKind::Player => arrived_players.push((ident.id, p)),
                        EntityKind::Npc => arrived_npcs.push(key),
                    }
                }
            }
            for key in arrived_npcs {
                moving.delete(key);
            }
        },
    );
    let mut facts = Vec::with_capacity(arrived_players.len());
    for (entity, position) in arrived_players {
        let fact = Fact::Moved(Moved {
            entity,
            position,
            arrived: true,
        });
        ecs_fold::apply(world, &fact, now_ms);
        facts.push(fact);
    }
    Produced { facts, moved }
}

/// Hands over every avatar that has gone past the border by more than the hysteresis: a
/// [`Fact::HandedOffOut`] naming the region it is now in. (The runtime sends that region the
/// `accept_hand_off` command the fact calls for.)
pub fn border_crossings(world: &mut World, now_ms: i64) -> Vec<Fact> {
    let leaving: Vec<(Key, RegionId)> = world.run(
        |ident: View<Ident>, pos: View<Pos>, rules: UniqueView<Rules>| {
            (&ident, &pos)
                .iter()
                .with_id()
                .filter(|(_, (i, p))| i.kind == EntityKind::Player && !rules.keeps(&p.0))
                .filter_map(|(key, (_, p))| {
                    let to = rules.world.region_at(&p.0)?;
                    (to.id != rules.region.id).then(|| (key, to.id.clone()))
                })
                .collect()
        },
    );
    let mut facts = Vec::with_capacity(leaving.len());
    for (key, to_region) in leaving {
        if let Some(state) = entity_state(world, key) {
            let fact = Fact::HandedOffOut(HandedOffOut { state, to_region });
            ecs_fold::apply(world, &fact, now_ms);
            facts.push(fact);
        }
    }
    facts
}

/// NPC behaviour: an NPC with a living player within its aggro radius goes after the nearest,
/// strikes when in range and off cooldown, and gives up when the player gets away; an idle NPC
/// wanders about its home. `rng` draws the wandering and the damage.
pub fn npcs(world: &mut World, now_ms: i64, rng: &mut fastrand::Rng) -> Vec<Fact> {
    enum Act {
        Strike(Key, Key, u32),
    }
    let mut acts = Vec::new();
    world.run(
        |ident: View<Ident>,
         pos: View<Pos>,
         health: View<Health>,
         combat: View<Combat>,
         mut npc: ViewMut<Npc>,
         mut moving: ViewMut<Moving>,
         grid: UniqueView<Spatial>,
         rules: UniqueView<Rules>| {
            let attack = &rules.balance.attack;
            let keys: Vec<Key> = (&npc, &health)
                .iter()
                .with_id()
                .filter(|(_, (_, h))| h.alive)
                .map(|(k, _)| k)
                .collect();
            for key in keys {
                let Ok(here) = (&pos).get(key).map(|p| p.0) else {
                    continue;
                };
                let Ok(mut mind) = (&mut npc).get(key) else {
                    continue;
                };
                let Some(kind) = rules.balance.npcs.get(mind.kind) else {
                    continue;
                };
                let live_player = |k: Key| {
                    (&ident)
                        .get(k)
                        .map(|i| i.kind == EntityKind::Player)
                        .unwrap_or(false)
                        && (&health).get(k).map(|h| h.alive).unwrap_or(false)
                };
                // Keep the current target while it is alive and not too far; else look around.
                let target = mind.target.filter(|t| {
                    live_player(*t)
                        && (&pos)
                            .get(*t)
                            .map(|p| p.0.distance(&here) <= kind.aggro_radius * 1.5)
                            .unwrap_or(false)
                });
                let target = target.or_else(|| {
                    let mut best: Option<(Key, f64)> = None;
                    grid.players
                        .for_each_near(&here, kind.aggro_radius, |k, p| {
                            if live_player(k) {
                                let d = p.distance(&here);
                                if best.is_none_or(|(_, bd)| d < bd) {
                                    best = Some((k, d));
                                }
                            }
                        });
                    best.map(|(k, _)| k)
                });
                mind.target = target;
                match target {
                    Some(t) => {
                        let Ok(there) = (&pos).get(t).map(|p| p.0) else {
                            continue;
                        };
                        if there.distance(&here) <= attack.range {
                            moving.delete(key);
                            let ready = (&combat)
                                .get(key)
                                .ok()
                                .and_then(|c| c.last_attack_ms)
                                .is_none_or(|last| now_ms - last >= attack.cooldown_ms as i64);
                            if ready {
                                let amount = roll(rng.u64(..), kind.damage_min, kind.damage_max);
                                acts.push(Act::Strike(key, t, amount));
                            }
                        } else {
                            moving.add_component_unchecked(
                                key,
                                Moving {
                                    from: here,
                                    to: there,
                                    started_ms: now_ms,
                                    speed: kind.speed,
                                },
                            );
                        }
                    }
                    None if (&moving).get(key).is_err() && now_ms >= mind.next_wander_ms => {
                        let r = kind.wander_radius;
                        let to = rules.clamp(Position::new(
                            mind.home.x + (rng.f64() * 2.0 - 1.0) * r,
                            mind.home.y + (rng.f64() * 2.0 - 1.0) * r,
                        ));
                        mind.next_wander_ms = now_ms + 2_000 + rng.i64(0..6_000);
                        moving.add_component_unchecked(
                            key,
                            Moving {
                                from: here,
                                to,
                                started_ms: now_ms,
                                speed: kind.speed,
                            },
                        );
                    }
                    None => {}
                }
            }
        },
    );
    let mut facts = Vec::new();
    for act in acts {
        match act {
            Act::Strike(attacker, target, amount) => {
                let alive = world
                    .get::<&Health>(target)
                    .map(|h| h.alive)
                    .unwrap_or(false);
                if alive {
                    facts.extend(npc_strike(world, now_ms, attacker, target, amount));
                }
            }
        }
    }
    facts
}

/// Brings back what returns on its own: dead NPCs once their kind's respawn time has passed
/// (at home, whole), and items in emptied slots once theirs has.
pub fn respawns(world: &mut World, now_ms: i64, rng: &mut fastrand::Rng) -> Vec<Fact> {
    let mut facts = Vec::new();
    let npcs: Vec<(EntityState, String, Position)> = world
        .run(
            |npc: View<Npc>,
             health: View<Health>,
             combat: View<Combat>,
             rules: UniqueView<Rules>| {
                (&npc, &health, &combat)
                    .iter()
                    .with_id()
                    .filter(|(_, (_, h, _))| !h.alive)
                    .filter_map(|(key, (n, _, c))| {
                        let kind = rules.balance.npcs.get(n.kind)?;
                        let due = c.died_at_ms? + (kind.respawn_secs * 1000.0) as i64;
                        (now_ms >= due).then_some((key, kind.kind.clone(), n.home))
                    })
                    .collect::<Vec<_>>()
            },
        )
        .into_iter()
        .filter_map(|(key, kind, home)| Some((entity_state(world, key)?, kind, home)))
        .collect();
    for (mut state, npc_kind, home) in npcs {
        state.alive = true;
        state.hp = state.max_hp;
        state.position = home;
        state.destination = None;
        let fact = Fact::NpcSpawned(NpcSpawned { state, npc_kind });
        ecs_fold::apply(world, &fact, now_ms);
        facts.push(fact);
    }
    let items: Vec<Fact> = world.run(|slots: UniqueView<Slots>, rules: UniqueView<Rules>| {
        slots
            .0
            .iter()
            .enumerate()
            .filter(|(_, s)| s.item.is_none() && s.due_ms.is_some_and(|due| now_ms >= due))
            .filter_map(|(i, s)| {
                let kind = rules.balance.items.get(s.kind)?;
                Some(Fact::ItemSpawned(ItemSpawned {
                    item: item_id(&rules.region.id, i, &kind.kind, s.generation + 1),
                    item_kind: kind.kind.clone(),
                    position: random_point(&rules, rng),
                }))
            })
            .collect()
    });
    for fact in items {
        ecs_fold::apply(world, &fact, now_ms);
        facts.push(fact);
    }
    facts
}

/// Fills a region that has never run: every NPC the balance asks for that it does not hold,
/// and every item slot never filled. Does nothing on a region that has (so it is safe to call
/// after every recovery).
pub fn seed(world: &mut World, now_ms: i64, rng: &mut fastrand::Rng) -> Vec<Fact> {
    let rules = match world.get_unique::<&Rules>() {
        Ok(r) => r.clone(),
        Err(_) => return Vec::new(),
    };
    let mut facts = Vec::new();
    for kind in &rules.balance.npcs {
        for i in 0..u64::from(kind.per_region) {
            let id = schemas::EntityId::named(&rules.region.id, &format!("npc:{}", kind.kind), i);
            if ecs_fold::key_of(world, id).is_some() {
                continue;
            }
            facts.push(Fact::NpcSpawned(NpcSpawned {
                state: EntityState {
                    id,
                    kind: EntityKind::Npc,
                    player: None,
                    position: random_point(&rules, rng),
                    destination: None,
                    hp: kind.hp,
                    max_hp: kind.hp,
                    level: 1,
                    xp: 0,
                    inventory: vec![],
                    alive: true,
                },
                npc_kind: kind.kind.clone(),
            }));
        }
    }
    let never_filled: Vec<(usize, usize)> = world
        .get_unique::<&Slots>()
        .map(|s| {
            s.0.iter()
                .enumerate()
                .filter(|(_, s)| s.generation == 0 && s.item.is_none())
                .map(|(i, s)| (i, s.kind))
                .collect()
        })
        .unwrap_or_default();
    for (slot, kind) in never_filled {
        let Some(kind) = rules.balance.items.get(kind) else {
            continue;
        };
        facts.push(Fact::ItemSpawned(ItemSpawned {
            item: item_id(&rules.region.id, slot, &kind.kind, 1),
            item_kind: kind.kind.clone(),
            position: random_point(&rules, rng),
        }));
    }
    for fact in &facts {
        ecs_fold::apply(world, fact, now_ms);
    }
    facts
}

fn random_point(rules: &Rules, rng: &mut fastrand::Rng) -> Position {
    let b = rules.region.bounds;
    rules.clamp(Position::new(
        b.min.x + rng.f64() * (b.max.x - b.min.x),
        b.min.y + rng.f64() * (b.max.y - b.min.y),
    ))
}
