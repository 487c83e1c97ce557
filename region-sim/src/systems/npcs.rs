//! NPC behaviour: chasing, striking, giving up, wandering.

use schemas::{EntityKind, Position};
use shipyard::{AddComponent, Delete, Get, IntoIter, UniqueView, View, ViewMut, World};

use super::Produced;
use crate::combat::{npc_strike, roll};
use crate::components::{Combat, Health, Ident, Key, Moving, Npc, Pos, Rules, Spatial};

/// Its name, in the `system` label of the metrics.
pub const NAME: &str = "npcs";

/// NPC behaviour: an NPC with a living player within its aggro radius goes after the nearest,
/// strikes when in range and off cooldown, and gives up when the player gets away; an idle NPC
/// wanders about its home. `rng` draws the wandering and the damage.
pub fn run(world: &mut World, now_ms: i64, rng: &mut fastrand::Rng) -> Produced {
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
    Produced {
        facts,
        moved: Vec::new(),
    }
}
