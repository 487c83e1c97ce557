//! Movement: every walk advanced to the tick's time.

use schemas::fact::Moved;
use schemas::{EntityKind, Fact};
use shipyard::{Delete, IntoIter, UniqueViewMut, View, ViewMut, World};

use super::Produced;
use crate::components::{Ident, Moving, Pos, Spatial};
use crate::ecs_fold;

/// Its name, in the `system` label of the metrics.
pub const NAME: &str = "movement";

/// Advances every walk to `now_ms`. Avatars that arrive get a [`Fact::Moved`]; NPCs' walks are
/// live state only.
pub fn run(world: &mut World, now_ms: i64, _rng: &mut fastrand::Rng) -> Produced {
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
