//! A region's world and how facts change it.
//!
//! Every change of recorded state goes through [`apply`]: a command's handler and a tick's
//! systems decide facts, and those facts are folded in here, exactly as a process recovering the
//! region folds the facts it reads back from `FACTS`. So the state a region runs with and the
//! state its log rebuilds are the same by construction. What a fact does to an entity's recorded
//! state (position, hit points, level, experience, inventory, life) is the shared fold's,
//! [`EntityState::apply`], the same the projector and the analysts' replay use; only what the
//! log does not record (walks under way, cooldowns, item slots, NPCs' targets) is kept here.

use std::sync::Arc;

use schemas::fold::{Applied, InventoryItem};
use schemas::{EntityKind, EntityState, Fact, Position, RegionConfig, WorldConfig};
use shipyard::{Get, UniqueViewMut, View, ViewMut, World};

use crate::balance::Balance;
use crate::components::{
    Clock, Combat, Elsewhere, Health, Ident, Index, Inventory, Item, Key, Moving, Npc, Pos,
    Progress, Returning, Rules, Slot, Slots, Spatial,
};

/// A new, empty world for `region`: its uniques set up, its item slots laid out, no entity yet.
pub fn new_world(
    region: RegionConfig,
    world: Arc<WorldConfig>,
    balance: Arc<Balance>,
    hysteresis: f64,
) -> World {
    let w = World::new();
    let slots = balance
        .items
        .iter()
        .enumerate()
        .flat_map(|(kind, k)| (0..k.per_region).map(move |_| kind))
        .map(|kind| Slot {
            kind,
            generation: 0,
            item: None,
            due_ms: None,
        })
        .collect();
    w.add_unique(Spatial::new(&region));
    w.add_unique(Index::default());
    w.add_unique(Clock::default());
    w.add_unique(Slots(slots));
    w.add_unique(Returning::default());
    w.add_unique(Elsewhere::default());
    w.add_unique(Rules {
        region,
        world,
        balance,
        hysteresis,
    });
    w
}

/// The ECS key of a game entity (or item), if the region holds it.
pub fn key_of(world: &World, id: schemas::EntityId) -> Option<Key> {
    world
        .get_unique::<&Index>()
        .ok()
        .and_then(|index| index.0.get(&id).copied())
}

/// The recorded state of an entity the region holds.
pub fn entity_state(world: &World, key: Key) -> Option<EntityState> {
    world.run(
        |ident: View<Ident>,
         pos: View<Pos>,
         moving: View<Moving>,
         health: View<Health>,
         progress: View<Progress>,
         inventory: View<Inventory>| {
            let ident = ident.get(key).ok()?;
            let health = health.get(key).ok()?;
            let progress = progress.get(key).ok()?;
            Some(EntityState {
                id: ident.id,
                kind: ident.kind,
                player: ident.player,
                position: pos.get(key).ok()?.0,
                destination: moving.get(key).ok().map(|m| m.to),
                hp: health.hp,
                max_hp: health.max_hp,
                level: progress.level,
                xp: progress.xp,
                inventory: inventory.get(key).map(|i| i.0.clone()).unwrap_or_default(),
                alive: health.alive,
            })
        },
    )
}

/// Folds one fact, which happened at `at_ms`, into the world.
pub fn apply(world: &mut World, fact: &Fact, at_ms: i64) {
    match fact {
        Fact::Spawned(f) => insert(world, &f.state, None, at_ms),
        Fact::HandedOffIn(f) => insert(world, &f.state, None, at_ms),
        Fact::NpcSpawned(f) => insert(world, &f.state, Some(&f.npc_kind), at_ms),
        Fact::MovementStarted(f) => {
            if let Some(key) = fold_recorded(world, f.entity, fact) {
                let speed = speed_of(world, key);
                world.add_component(
                    key,
                    Moving {
                        from: f.from,
                        to: f.destination,
                        started_ms: at_ms,
                        speed,
                    },
                );
            }
        }
        Fact::Moved(f) => {
            if let Some(key) = fold_recorded(world, f.entity, fact) {
                if f.arrived {
                    world.delete_component::<Moving>(key);
                } else if let Ok(mut m) = world.get::<&mut Moving>(key) {
                    m.from = f.position;
                    m.started_ms = at_ms;
                }
            }
        }
        Fact::Damaged(f) => {
            fold_recorded(world, f.target, fact);
            with_key(world, f.attacker, |w, key| {
                if let Ok(mut c) = w.get::<&mut Combat>(key) {
                    c.last_attack_ms = Some(at_ms);
                }
            });
        }
        Fact::Died(f) => {
            if let Some(key) = fold_recorded(world, f.entity, fact) {
                died(world, key, at_ms);
            }
        }
        Fact::NpcDied(f) => {
            if let Some(key) = fold_recorded(world, f.npc, fact) {
                died(world, key, at_ms);
            }
        }
        Fact::Respawned(f) => {
            if let Some(key) = fold_recorded(world, f.entity, fact) {
                world.delete_component::<Moving>(key);
                if let Ok(mut c) = world.get::<&mut Combat>(key) {
                    c.died_at_ms = None;
                }
            }
        }
        Fact::XpGained(f) => {
            fold_recorded(world, f.entity, fact);
        }
        Fact::ItemSpawned(f) => {
            if key_of(world, f.item).is_some() {
                return;
            }
            let slot = world.run(
                |mut slots: UniqueViewMut<Slots>, rules: shipyard::UniqueView<Rules>| {
                    let region = rules.region.id.clone();
                    let slot = slots.0.iter().enumerate().position(|(i, s)| {
                        s.item.is_none()
                            && item_id(&region, i, &f.item_kind, s.generation + 1) == f.item
                    })?;
                    let s = &mut slots.0[slot];
                    s.generation += 1;
                    s.item = Some(f.item);
                    s.due_ms = None;
                    Some(slot)
                },
            );
            let key = world.add_entity((
                Pos(f.position),
                Item {
                    id: f.item,
                    kind: f.item_kind.clone(),
                    slot: slot.unwrap_or(usize::MAX),
                },
            ));
            index(world, f.item, key, f.position, false);
        }
        Fact::ItemPicked(f) => {
            if let Some(key) = key_of(world, f.item.item) {
                let slot = world.get::<&Item>(key).map(|i| i.slot).ok();
                remove(world, f.item.item, key);
                if let Some(slot) = slot {
                    world.run(
                        |mut slots: UniqueViewMut<Slots>, rules: shipyard::UniqueView<Rules>| {
                            if let Some(s) = slots.0.get_mut(slot) {
                                let secs = rules
                                    .balance
                                    .items
                                    .get(s.kind)
                                    .map_or(0.0, |k| k.respawn_secs);
                                s.item = None;
                                s.due_ms = Some(at_ms + (secs * 1000.0) as i64);
                            }
                        },
                    );
                }
            }
            fold_recorded(world, f.entity, fact);
        }
        Fact::Left(f) => {
            if let Some(key) = key_of(world, f.entity) {
                remove(world, f.entity, key);
            }
        }
        Fact::HandedOffOut(f) => {
            if let Some(key) = key_of(world, f.state.id) {
                remove(world, f.state.id, key);
            }
        }
        Fact::StruckAcross(f) => with_key(world, f.attacker, |w, key| {
            if let Ok(mut c) = w.get::<&mut Combat>(key) {
                c.last_attack_ms = Some(at_ms);
            }
        }),
        Fact::ChatSaid(_)
        | Fact::Rejected(_)
        | Fact::RewardSent(_)
        | Fact::AccountRegistered(_)
        | Fact::LoggedIn(_)
        | Fact::LoggedOut(_)
        | Fact::RoleChanged(_) => {}
    }
}

/// Folds `fact` into the recorded state of entity `id` with the shared fold and writes the
/// result back into its components; the entity's key, when the region holds it.
fn fold_recorded(world: &mut World, id: schemas::EntityId, fact: &Fact) -> Option<Key> {
    let key = key_of(world, id)?;
    let mut state = entity_state(world, key)?;
    if state.apply(fact) == Applied::Updated {
        set_position(world, key, state.position);
        world.run(
            |mut health: ViewMut<Health>,
             mut progress: ViewMut<Progress>,
             mut inventory: ViewMut<Inventory>| {
                if let Ok(mut h) = (&mut health).get(key) {
                    h.hp = state.hp;
                    h.max_hp = state.max_hp;
                    h.alive = state.alive;
                }
                if let Ok(mut p) = (&mut progress).get(key) {
                    p.level = state.level;
                    p.xp = state.xp;
                }
                if let Ok(mut inv) = (&mut inventory).get(key)
                    && inv.0 != state.inventory
                {
                    inv.0 = std::mem::take(&mut state.inventory);
                }
            },
        );
    }
    Some(key)
}

/// The id the item filling slot number `slot` for the `generation`-th time gets: derived from
/// the region, the slot (whose place in the list the balance config fixes) and the generation,
/// so a process replaying the region's facts recognises it.
pub fn item_id(
    region: &schemas::RegionId,
    slot: usize,
    kind: &str,
    generation: u64,
) -> schemas::EntityId {
    schemas::EntityId::named(region, &format!("item:{kind}:{slot}"), generation)
}

fn with_key(world: &mut World, id: schemas::EntityId, f: impl FnOnce(&mut World, Key)) {
    if let Some(key) = key_of(world, id) {
        f(world, key);
    }
}

fn speed_of(world: &World, key: Key) -> f64 {
    world.run(
        |npc: View<Npc>, rules: shipyard::UniqueView<Rules>| match npc.get(key) {
            Ok(npc) => rules.balance.npcs.get(npc.kind).map_or(0.0, |k| k.speed),
            Err(_) => rules.balance.player_speed,
        },
    )
}

/// Moves an entity (or item) and keeps the grid in step.
pub fn set_position(world: &mut World, key: Key, p: Position) {
    world.run(
        |ident: View<Ident>, mut pos: ViewMut<Pos>, mut grid: UniqueViewMut<Spatial>| {
            if let Ok(mut current) = (&mut pos).get(key) {
                current.0 = p;
                let player = (&ident)
                    .get(key)
                    .is_ok_and(|i| i.kind == EntityKind::Player);
                grid.place(key, p, player);
            }
        },
    );
}

/// What the log does not record of a death: the walk stops, the respawn clock starts, an NPC
/// forgets its target.
fn died(world: &mut World, key: Key, at_ms: i64) {
    world.delete_component::<Moving>(key);
    if let Ok(mut c) = world.get::<&mut Combat>(key) {
        c.died_at_ms = Some(at_ms);
    }
    if let Ok(mut npc) = world.get::<&mut Npc>(key) {
        npc.target = None;
    }
}

fn insert(world: &mut World, state: &EntityState, npc_kind: Option<&str>, at_ms: i64) {
    if let Some(old) = key_of(world, state.id) {
        remove(world, state.id, old);
    }
    let speed = {
        let rules = world.get_unique::<&Rules>();
        match (&rules, npc_kind) {
            (Ok(r), Some(kind)) => r
                .balance
                .npcs
                .iter()
                .find(|k| k.kind == kind)
                .map_or(0.0, |k| k.speed),
            (Ok(r), None) => r.balance.player_speed,
            (Err(_), _) => 0.0,
        }
    };
    let key = world.add_entity((
        Ident {
            id: state.id,
            kind: state.kind,
            player: state.player,
        },
        Pos(state.position),
        Health {
            hp: state.hp,
            max_hp: state.max_hp,
            alive: state.alive,
        },
        Progress {
            level: state.level,
            xp: state.xp,
        },
        Combat {
            last_attack_ms: None,
            died_at_ms: (!state.alive).then_some(at_ms),
        },
        Inventory(state.inventory.clone()),
    ));
    if let Some(to) = state.destination {
        world.add_component(
            key,
            Moving {
                from: state.position,
                to,
                started_ms: at_ms,
                speed,
            },
        );
    }
    if state.kind == EntityKind::Npc {
        let kind = world
            .get_unique::<&Rules>()
            .ok()
            .and_then(|r| {
                r.balance
                    .npcs
                    .iter()
                    .position(|k| Some(k.kind.as_str()) == npc_kind)
            })
            .unwrap_or(0);
        world.add_component(
            key,
            Npc {
                kind,
                home: state.position,
                target: None,
                next_wander_ms: at_ms,
            },
        );
    }
    index(
        world,
        state.id,
        key,
        state.position,
        state.kind == EntityKind::Player,
    );
}

pub(crate) fn index(world: &mut World, id: schemas::EntityId, key: Key, p: Position, player: bool) {
    world.run(
        |mut index: UniqueViewMut<Index>, mut grid: UniqueViewMut<Spatial>| {
            index.0.insert(id, key);
            grid.place(key, p, player);
        },
    );
}

fn remove(world: &mut World, id: schemas::EntityId, key: Key) {
    world.run(
        |mut index: UniqueViewMut<Index>, mut grid: UniqueViewMut<Spatial>| {
            index.0.remove(&id);
            grid.remove(key);
        },
    );
    world.delete_entity(key);
}

/// The item lying in the region under `key`, as a player would carry it.
pub fn item_on_ground(world: &World, key: Key) -> Option<(InventoryItem, Position)> {
    let item = world.get::<&Item>(key).ok()?;
    let pos = world.get::<&Pos>(key).ok()?;
    Some((
        InventoryItem {
            item: item.id,
            item_kind: item.kind.clone(),
        },
        pos.0,
    ))
}
