//! The components of a region's shipyard world, and the uniques every system shares: the
//! spatial grid, the index from game ids to ECS ids, the clock and the rules.

use std::collections::HashMap;
use std::sync::Arc;

use schemas::fold::InventoryItem;
use schemas::{EntityKind, PlayerId, Position, RegionConfig, WorldConfig};
use serde::{Deserialize, Serialize};
use shipyard::{Component, Unique};

use crate::balance::Balance;
use crate::spatial::Grid;

/// The ECS's own handle of an entity (its game id is in [`Ident`]).
pub type Key = shipyard::EntityId;

/// Who an entity is: a player's avatar or an NPC.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Ident {
    /// Its game id.
    pub id: schemas::EntityId,
    /// Player or NPC.
    pub kind: EntityKind,
    /// The owning player, for avatars.
    pub player: Option<PlayerId>,
}

/// Where an entity (or an item on the ground) is.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Pos(pub Position);

/// A walk under way: from where, to where, since when, how fast. The position at any moment
/// follows from these, so a walk replayed from its fact ends where the live one did.
#[derive(Component, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Moving {
    /// Where the walk started.
    pub from: Position,
    /// Where it ends.
    pub to: Position,
    /// When it started, in Unix milliseconds.
    pub started_ms: i64,
    /// World units per second.
    pub speed: f64,
}

impl Moving {
    /// Where the walker is at `now_ms`, and whether it has arrived.
    pub fn at(&self, now_ms: i64) -> (Position, bool) {
        let dist = self.from.distance(&self.to);
        let travelled = self.speed * (now_ms - self.started_ms).max(0) as f64 / 1000.0;
        if dist <= f64::EPSILON || travelled >= dist {
            return (self.to, true);
        }
        let f = travelled / dist;
        (
            Position::new(
                self.from.x + (self.to.x - self.from.x) * f,
                self.from.y + (self.to.y - self.from.y) * f,
            ),
            false,
        )
    }
}

/// Hit points and life.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Health {
    /// Current hit points.
    pub hp: u32,
    /// Maximum hit points.
    pub max_hp: u32,
    /// Whether it is alive.
    pub alive: bool,
}

/// Level and experience.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Level, from 1.
    pub level: u32,
    /// Total experience.
    pub xp: u64,
}

/// Combat timers, in Unix milliseconds: the last attack (for the cooldown) and the death (for
/// the respawn time).
#[derive(Component, Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Combat {
    /// When it last struck.
    pub last_attack_ms: Option<i64>,
    /// When it died, while it is dead.
    pub died_at_ms: Option<i64>,
}

/// What an entity carries.
#[derive(Component, Debug, Clone, PartialEq, Default)]
pub struct Inventory(pub Vec<InventoryItem>);

/// An NPC's mind: its kind, its home, whom it is after, when it next wanders.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Npc {
    /// Its kind, as an index into the balance's NPC kinds.
    pub kind: usize,
    /// Where it spawns and around which it wanders.
    pub home: Position,
    /// The player it is after.
    pub target: Option<Key>,
    /// When it next picks a place to wander to.
    pub next_wander_ms: i64,
}

/// An item lying on the ground.
#[derive(Component, Debug, Clone, PartialEq)]
pub struct Item {
    /// Its game id (kept when picked up).
    pub id: schemas::EntityId,
    /// Its kind, as named in the balance config.
    pub kind: String,
    /// The item slot of the region it belongs to (a picked item's slot refills later).
    pub slot: usize,
}

/// The region's grids: one of everything with a position (avatars, NPCs, items), and one of
/// the avatars alone, which is what NPCs look for (avatars are few next to NPCs, so an NPC
/// looking around pays for the avatars near it, not for the crowd of NPCs).
#[derive(Unique, Debug)]
pub struct Spatial {
    /// Everything.
    pub all: Grid<Key>,
    /// Avatars only.
    pub players: Grid<Key>,
}

impl Spatial {
    /// Empty grids over `region`.
    pub fn new(region: &RegionConfig) -> Self {
        Self {
            all: Grid::new(region.bounds, region.cell_size),
            players: Grid::new(region.bounds, region.cell_size),
        }
    }

    /// Puts `key` at `p` (or moves it there).
    pub fn place(&mut self, key: Key, p: Position, player: bool) {
        self.all.insert(key, p);
        if player {
            self.players.insert(key, p);
        }
    }

    /// Takes `key` out.
    pub fn remove(&mut self, key: Key) {
        self.all.remove(key);
        self.players.remove(key);
    }
}

/// From game ids to ECS ids, for entities and items.
#[derive(Unique, Debug, Default)]
pub struct Index(pub HashMap<schemas::EntityId, Key>);

/// The region's clock: the time of the tick being run, in Unix milliseconds.
#[derive(Unique, Debug, Clone, Copy, Default)]
pub struct Clock(pub i64);

/// Everything fixed about a region: its config, the world's, the balance, the border rules.
#[derive(Unique, Debug, Clone)]
pub struct Rules {
    /// This region.
    pub region: RegionConfig,
    /// The whole world (to know where a border crossing leads).
    pub world: Arc<WorldConfig>,
    /// The game balance.
    pub balance: Arc<Balance>,
    /// How far past its border an entity must go before it is handed over, so one pacing on
    /// the line does not bounce between regions.
    pub hysteresis: f64,
}

impl Rules {
    /// Whether `p` is still this region's: inside its bounds, or past them by no more than
    /// the hysteresis.
    pub fn keeps(&self, p: &Position) -> bool {
        let b = &self.region.bounds;
        let h = self.hysteresis;
        p.x >= b.min.x - h && p.x < b.max.x + h && p.y >= b.min.y - h && p.y < b.max.y + h
    }

    /// `p` moved inside this region's bounds (by a hair short of the far edges).
    pub fn clamp(&self, p: Position) -> Position {
        let b = &self.region.bounds;
        let inset = 1e-6;
        Position::new(
            p.x.clamp(b.min.x, b.max.x - inset),
            p.y.clamp(b.min.y, b.max.y - inset),
        )
    }
}

/// One item slot of a region: which kind it holds, how often it has been filled, and when it
/// fills again after being emptied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// The item kind, as an index into the balance's item kinds.
    pub kind: usize,
    /// How many items it has held so far.
    pub generation: u64,
    /// The item lying in it now, if any.
    pub item: Option<schemas::EntityId>,
    /// When it fills again, while empty.
    pub due_ms: Option<i64>,
}

/// Every item slot of the region.
#[derive(Unique, Debug, Clone, Default)]
pub struct Slots(pub Vec<Slot>);

/// The progress of avatars about to spawn, as they left the world last (looked up by the runner
/// before the tick that applies their `spawn`; used once, then gone). Not state: the `spawned`
/// fact carries what was used.
#[derive(Unique, Debug, Default)]
pub struct Returning(pub HashMap<PlayerId, schemas::fact::Progress>);

/// Players about to spawn whose avatars `avatar_regions` places in another region, or on their
/// way into this one by a hand-off (looked up by the runner before the tick, like
/// [`Returning`]): their `spawn` is refused here, so that an avatar is in one region only,
/// however many spawns its player sends at once.
#[derive(Unique, Debug, Default)]
pub struct Elsewhere(pub HashMap<PlayerId, schemas::RegionId>);
