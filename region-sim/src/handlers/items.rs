//! Items: picking one up from the ground, within reach and with room to carry it.

use schemas::command::Pickup;
use schemas::fact::ItemPicked;
use schemas::{Fact, RejectReason};

use crate::components::Key;
use crate::decide::{Decision, Facts, reject};
use crate::ecs_fold::{entity_state, item_on_ground, key_of};

impl Facts<'_> {
    pub(super) fn pickup(&mut self, key: Key, me: schemas::EntityId, p: &Pickup) -> Decision {
        if !self.alive(key) {
            return reject(RejectReason::Dead, "the dead do not pick things up");
        }
        let Some(item_key) = key_of(self.world, p.item) else {
            return reject(
                RejectReason::ItemGone,
                "no such item lies here (someone may have picked it up first)",
            );
        };
        let Some((item, at)) = item_on_ground(self.world, item_key) else {
            return reject(RejectReason::InvalidTarget, "that is not an item");
        };
        let rules = self.rules();
        let distance = self.position(key).distance(&at);
        if distance > rules.balance.pickup_range {
            return reject(
                RejectReason::OutOfRange,
                format!(
                    "the item is {distance:.1} away; you reach {}",
                    rules.balance.pickup_range
                ),
            );
        }
        let carried = entity_state(self.world, key).map_or(0, |s| s.inventory.len());
        if carried >= rules.balance.inventory_slots as usize {
            return reject(RejectReason::InventoryFull, "your inventory is full");
        }
        self.emit(Fact::ItemPicked(ItemPicked { entity: me, item }));
        Ok(())
    }
}
