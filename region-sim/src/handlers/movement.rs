//! Walking: a living avatar sets out for a point in the world.

use schemas::Position;
use schemas::fact::MovementStarted;
use schemas::{Fact, RejectReason};

use crate::components::Key;
use crate::decide::{Decision, Facts, reject};

impl Facts<'_> {
    pub(super) fn walk(&mut self, key: Key, me: schemas::EntityId, to: Position) -> Decision {
        if !self.alive(key) {
            return reject(RejectReason::Dead, "the dead do not walk");
        }
        if self.rules().world.region_at(&to).is_none() {
            return reject(RejectReason::Unreachable, "that point is outside the world");
        }
        let from = self.position(key);
        self.emit(Fact::MovementStarted(MovementStarted {
            entity: me,
            from,
            destination: to,
        }));
        Ok(())
    }
}
