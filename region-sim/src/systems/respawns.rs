//! Respawns: what comes back on its own, NPCs and items.

use schemas::fact::{ItemSpawned, NpcSpawned};
use schemas::{EntityState, Fact, Position};
use shipyard::{IntoIter, UniqueView, View, World};

use super::{Produced, random_point};
use crate::components::{Combat, Health, Npc, Rules, Slots};
use crate::ecs_fold::{self, entity_state, item_id};

/// Its name, in the `system` label of the metrics.
pub const NAME: &str = "respawns";

/// Brings back what returns on its own: dead NPCs once their kind's respawn time has passed
/// (at home, whole), and items in emptied slots once theirs has.
pub fn run(world: &mut World, now_ms: i64, rng: &mut fastrand::Rng) -> Produced {
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
    Produced {
        facts,
        moved: Vec::new(),
    }
}
