//! The fold: how facts change an entity's state. Deciding what a command does belongs to the
//! region simulator; applying what was decided is here, once, so that the simulator's recovery,
//! the projector and the analysts' replay all agree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fact::Fact;
use crate::geometry::Position;
use crate::ids::{EntityId, PlayerId};
use crate::validation::{FieldError, ValidationContext};

/// What kind of thing an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A player's avatar.
    Player,
    /// A non-player character.
    Npc,
}

/// An item carried in an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryItem {
    /// The item's entity id (it keeps it when picked up).
    pub item: EntityId,
    /// What it is, as named in the game balance config.
    pub item_kind: String,
}

/// Everything about a living entity that facts record: enough to hand it to another region or
/// to rebuild it after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityState {
    /// Its id.
    pub id: EntityId,
    /// Player or NPC.
    pub kind: EntityKind,
    /// The owning player, for avatars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player: Option<PlayerId>,
    /// Where it is.
    pub position: Position,
    /// Where it is walking to, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Position>,
    /// Current hit points.
    pub hp: u32,
    /// Maximum hit points.
    pub max_hp: u32,
    /// Level, from 1.
    pub level: u32,
    /// Total experience.
    pub xp: u64,
    /// What it carries.
    #[serde(default)]
    pub inventory: Vec<InventoryItem>,
    /// Whether it is alive.
    pub alive: bool,
}

/// What a fact did to one entity's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The fact is not about this entity (or changes nothing of it).
    Unrelated,
    /// The state changed.
    Updated,
    /// The entity is no longer here: it left the world or crossed into another region.
    Removed,
}

impl EntityState {
    /// The entity that a fact brings into a region (spawn, NPC spawn, hand-off in), if any.
    pub fn created_by(fact: &Fact) -> Option<EntityState> {
        match fact {
            Fact::Spawned(f) => Some(f.state.clone()),
            Fact::NpcSpawned(f) => Some(f.state.clone()),
            Fact::HandedOffIn(f) => Some(f.state.clone()),
            _ => None,
        }
    }

    /// Folds one fact into this entity's state.
    ///
    /// Facts carry resulting values (the new hp, the new position), so applying the same fact
    /// twice gives the same state as applying it once.
    pub fn apply(&mut self, fact: &Fact) -> Applied {
        let me = self.id;
        match fact {
            Fact::Spawned(f) if f.state.id == me => *self = f.state.clone(),
            Fact::NpcSpawned(f) if f.state.id == me => *self = f.state.clone(),
            Fact::HandedOffIn(f) if f.state.id == me => *self = f.state.clone(),
            Fact::MovementStarted(f) if f.entity == me => {
                self.position = f.from;
                self.destination = Some(f.destination);
            }
            Fact::Moved(f) if f.entity == me => {
                self.position = f.position;
                if f.arrived {
                    self.destination = None;
                }
            }
            Fact::Damaged(f) if f.target == me => self.hp = f.hp,
            Fact::Died(f) if f.entity == me => self.die(f.position),
            Fact::NpcDied(f) if f.npc == me => self.die(f.position),
            Fact::Respawned(f) if f.entity == me => {
                self.alive = true;
                self.hp = f.hp;
                self.position = f.position;
                self.destination = None;
            }
            Fact::XpGained(f) if f.entity == me => {
                self.xp = f.xp;
                self.level = f.level;
                self.max_hp = f.max_hp;
            }
            Fact::ItemPicked(f) if f.entity == me => {
                if !self.inventory.iter().any(|i| i.item == f.item.item) {
                    self.inventory.push(f.item.clone());
                }
            }
            Fact::Left(f) if f.entity == me => return Applied::Removed,
            Fact::HandedOffOut(f) if f.state.id == me => return Applied::Removed,
            _ => return Applied::Unrelated,
        }
        Applied::Updated
    }

    fn die(&mut self, at: Position) {
        self.alive = false;
        self.hp = 0;
        self.position = at;
        self.destination = None;
    }

    /// Records every way this state is impossible (hp above max, outside the world, ...), with
    /// field names under `prefix`.
    pub fn check(&self, ctx: &ValidationContext, prefix: &str, errors: &mut Vec<FieldError>) {
        let field = |name: &str| format!("{prefix}.{name}");
        if !ctx.world.contains(&self.position) {
            errors.push(FieldError::new(
                field("position"),
                "out_of_world",
                "must be inside the world",
            ));
        }
        if let Some(dest) = &self.destination
            && !ctx.world.contains(dest)
        {
            errors.push(FieldError::new(
                field("destination"),
                "out_of_world",
                "must be inside the world",
            ));
        }
        if self.hp > self.max_hp {
            errors.push(FieldError::new(
                field("hp"),
                "range",
                "must not exceed max_hp",
            ));
        }
        if self.level == 0 {
            errors.push(FieldError::new(
                field("level"),
                "range",
                "must be at least 1",
            ));
        }
        if (self.kind == EntityKind::Player) != self.player.is_some() {
            errors.push(FieldError::new(
                field("player"),
                "invalid",
                "is set for players and only for players",
            ));
        }
        if let Some(player) = self.player
            && EntityId::from(player) != self.id
        {
            errors.push(FieldError::new(
                field("player"),
                "invalid",
                "must be the avatar's own id",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::{
        Damaged, ItemPicked, LeaveReason, Left, Moved, MovementStarted, Respawned, Spawned,
    };

    fn avatar() -> EntityState {
        let player = PlayerId::new();
        EntityState {
            id: player.into(),
            kind: EntityKind::Player,
            player: Some(player),
            position: Position::new(1.0, 1.0),
            destination: None,
            hp: 100,
            max_hp: 100,
            level: 1,
            xp: 0,
            inventory: vec![],
            alive: true,
        }
    }

    #[test]
    fn folding_facts_gives_their_resulting_state() {
        let start = avatar();
        let me = start.id;
        let dest = Position::new(5.0, 5.0);
        let item = InventoryItem {
            item: EntityId::new(),
            item_kind: "potion".into(),
        };
        let facts = [
            Fact::Spawned(Spawned {
                state: start.clone(),
            }),
            Fact::MovementStarted(MovementStarted {
                entity: me,
                from: start.position,
                destination: dest,
            }),
            Fact::Moved(Moved {
                entity: me,
                position: dest,
                arrived: true,
            }),
            Fact::Damaged(Damaged {
                attacker: EntityId::new(),
                target: me,
                amount: 30,
                hp: 70,
            }),
            Fact::ItemPicked(ItemPicked {
                entity: me,
                item: item.clone(),
            }),
        ];
        let mut state = EntityState::created_by(&facts[0]).expect("spawn creates");
        for fact in &facts[1..] {
            assert_eq!(state.apply(fact), Applied::Updated);
        }
        assert_eq!(state.position, dest);
        assert_eq!(state.destination, None);
        assert_eq!(state.hp, 70);
        assert_eq!(state.inventory, vec![item]);
    }

    #[test]
    fn applying_a_fact_twice_is_applying_it_once() {
        let mut once = avatar();
        let item = InventoryItem {
            item: EntityId::new(),
            item_kind: "sword".into(),
        };
        let fact = Fact::ItemPicked(ItemPicked {
            entity: once.id,
            item,
        });
        once.apply(&fact);
        let mut twice = once.clone();
        twice.apply(&fact);
        assert_eq!(once, twice);
    }

    #[test]
    fn facts_about_others_change_nothing_and_leaving_removes() {
        let mut state = avatar();
        let before = state.clone();
        let other = Fact::Respawned(Respawned {
            entity: EntityId::new(),
            position: Position::new(0.0, 0.0),
            hp: 1,
        });
        assert_eq!(state.apply(&other), Applied::Unrelated);
        assert_eq!(state, before);
        let left = Fact::Left(Left {
            entity: state.id,
            reason: LeaveReason::Requested,
            position: state.position,
            progress: None,
        });
        assert_eq!(state.apply(&left), Applied::Removed);
    }
}
