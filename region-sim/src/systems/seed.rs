//! The seed: what fills a region that has never run. Not one of the tick's systems: the
//! runner calls it once a region is recovered.

use schemas::fact::{ItemSpawned, NpcSpawned};
use schemas::{EntityKind, EntityState, Fact};
use shipyard::World;

use super::random_point;
use crate::components::{Rules, Slots};
use crate::ecs_fold::{self, item_id};

/// Fills a region that has never run: every NPC the balance asks for that it does not hold,
/// and every item slot never filled. Does nothing on a region that has (so it is safe to call
/// after every recovery).
pub fn run(world: &mut World, now_ms: i64, rng: &mut fastrand::Rng) -> Vec<Fact> {
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
