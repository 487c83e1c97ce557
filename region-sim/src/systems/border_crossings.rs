//! Border crossings: avatars that went far enough past the region's border are handed over.

use schemas::fact::HandedOffOut;
use schemas::{EntityKind, Fact, RegionId};
use shipyard::{IntoIter, UniqueView, View, World};

use super::Produced;
use crate::components::{Ident, Key, Pos, Rules};
use crate::ecs_fold::{self, entity_state};

/// Its name, in the `system` label of the metrics.
pub const NAME: &str = "border_crossings";

/// Hands over every avatar that has gone past the border by more than the hysteresis: a
/// [`Fact::HandedOffOut`] naming the region it is now in. (The runtime sends that region the
/// `accept_hand_off` command the fact calls for.)
pub fn run(world: &mut World, now_ms: i64, _rng: &mut fastrand::Rng) -> Produced {
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
    Produced {
        facts,
        moved: Vec::new(),
    }
}
