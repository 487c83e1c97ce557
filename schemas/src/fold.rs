//! The fold: how facts change state. Deciding what a command does belongs to the region
//! simulator; applying what was decided is here, once, so that the simulator's recovery, the
//! projector's read models, the gateway's live stream and the analysts' replay all agree.
//!
//! - [`players_of`], [`entities_of`], [`sessions_of`]: whom a fact concerns.
//! - [`EntityState`]: an entity as a region holds it (the simulator's recorded state).
//! - [`PlayerState`]: a player as the `players` read model shows it: account, role, avatar.
//! - [`WorldEntity`]: something in the world as the `world` read model shows it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::envelope::Envelope;
use crate::fact::Fact;
use crate::geometry::Position;
use crate::ids::{EntityId, PlayerId, RegionId};
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
    /// A player's avatar as it first enters the world: level 1, no experience, nothing carried,
    /// standing `at` with all of its `max_hp`.
    pub fn newcomer(player: PlayerId, at: Position, max_hp: u32) -> Self {
        Self {
            id: player.into(),
            kind: EntityKind::Player,
            player: Some(player),
            position: at,
            destination: None,
            hp: max_hp,
            max_hp,
            level: 1,
            xp: 0,
            inventory: vec![],
            alive: true,
        }
    }

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
                self.hp = self.hp.min(f.max_hp);
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

/// Where a fact leaves a player's avatar, when it changes that: `(player, Some(region))` when
/// it puts the avatar in a region or sends it there (a spawn, a respawn, a hand-off out or in),
/// `(player, None)` when the avatar leaves the world. The region that decides the fact records
/// this before it stores it, and gateways route the player's next command by it, so that a
/// command sent after an outcome goes where that outcome put the avatar. The same rule as the
/// `region` of [`PlayerState`].
pub fn avatar_region(fact: &Envelope<Fact>) -> Option<(PlayerId, Option<RegionId>)> {
    let player_of = |id: &EntityId| PlayerId::from_uuid(*id.as_uuid());
    match &fact.payload {
        Fact::Spawned(f) => Some((f.state.player?, fact.region.clone())),
        Fact::HandedOffIn(f) => Some((f.state.player?, fact.region.clone())),
        Fact::HandedOffOut(f) => Some((f.state.player?, Some(f.to_region.clone()))),
        Fact::Respawned(f) => Some((player_of(&f.entity), fact.region.clone())),
        Fact::Left(f) => Some((player_of(&f.entity), None)),
        _ => None,
    }
}

/// The players a fact concerns (whose state it may change, or who hear of it).
pub fn players_of(fact: &Fact) -> Vec<PlayerId> {
    let from_entity = |id: &EntityId| PlayerId::from_uuid(*id.as_uuid());
    match fact {
        Fact::AccountRegistered(f) => vec![f.player],
        Fact::LoggedIn(f) => vec![f.player],
        Fact::LoggedOut(f) => vec![f.player],
        Fact::RoleChanged(f) => vec![f.player],
        Fact::Spawned(f) => f.state.player.into_iter().collect(),
        Fact::HandedOffIn(f) => f.state.player.into_iter().collect(),
        Fact::HandedOffOut(f) => f.state.player.into_iter().collect(),
        Fact::MovementStarted(f) => vec![from_entity(&f.entity)],
        Fact::Moved(f) => vec![from_entity(&f.entity)],
        Fact::Damaged(f) => vec![from_entity(&f.target)],
        Fact::Died(f) => vec![from_entity(&f.entity)],
        Fact::Respawned(f) => vec![from_entity(&f.entity)],
        Fact::XpGained(f) => vec![from_entity(&f.entity)],
        Fact::ItemPicked(f) => vec![from_entity(&f.entity)],
        Fact::ChatSaid(f) => vec![from_entity(&f.entity)],
        Fact::Left(f) => vec![from_entity(&f.entity)],
        // Changes no state; the attacker hears that the blow went out.
        Fact::StruckAcross(f) => vec![from_entity(&f.attacker)],
        // Changes no state here; the player's region grants the experience.
        Fact::RewardSent(f) => vec![from_entity(&f.entity)],
        Fact::ItemSpawned(_) | Fact::NpcSpawned(_) | Fact::NpcDied(_) | Fact::Rejected(_) => vec![],
    }
}

/// The world entities (items included) a fact concerns.
pub fn entities_of(fact: &Fact) -> Vec<EntityId> {
    match fact {
        Fact::Spawned(f) => vec![f.state.id],
        Fact::HandedOffIn(f) => vec![f.state.id],
        Fact::HandedOffOut(f) => vec![f.state.id],
        Fact::NpcSpawned(f) => vec![f.state.id],
        Fact::MovementStarted(f) => vec![f.entity],
        Fact::Moved(f) => vec![f.entity],
        Fact::Damaged(f) => vec![f.target],
        Fact::Died(f) => vec![f.entity],
        Fact::NpcDied(f) => vec![f.npc],
        Fact::Respawned(f) => vec![f.entity],
        Fact::XpGained(f) => vec![f.entity],
        Fact::ItemSpawned(f) => vec![f.item],
        Fact::ItemPicked(f) => vec![f.item.item],
        Fact::Left(f) => vec![f.entity],
        Fact::AccountRegistered(_)
        | Fact::LoggedIn(_)
        | Fact::LoggedOut(_)
        | Fact::RoleChanged(_)
        | Fact::ChatSaid(_)
        | Fact::Rejected(_)
        | Fact::StruckAcross(_)
        | Fact::RewardSent(_) => vec![],
    }
}

/// The sessions (logins) a fact concerns.
pub fn sessions_of(fact: &Fact) -> Vec<String> {
    match fact {
        Fact::LoggedIn(f) => vec![f.session.clone()],
        Fact::LoggedOut(f) => vec![f.session.clone()],
        _ => vec![],
    }
}

/// A player as the log tells it: the account, its role and its avatar. The `players` read
/// model and the analysts' `audit state --player` are this fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerState {
    /// The username (empty until the registration is folded).
    pub username: String,
    /// `player`, `moderator` or `admin`.
    pub role: String,
    /// The region the avatar is in (or last was).
    pub region: Option<RegionId>,
    /// Where the avatar is (or last was).
    pub position: Option<Position>,
    /// Where the avatar is walking to, if it is walking.
    #[serde(default)]
    pub destination: Option<Position>,
    /// Hit points, once spawned.
    pub hp: Option<u32>,
    /// Maximum hit points, once spawned.
    pub max_hp: Option<u32>,
    /// Level.
    pub level: u32,
    /// Experience.
    pub xp: u64,
    /// What the avatar carries.
    #[serde(default)]
    pub inventory: Vec<InventoryItem>,
    /// Whether the avatar is in the world.
    pub online: bool,
    /// When a fact last concerned the player.
    pub last_seen: Option<DateTime<Utc>>,
}

impl PlayerState {
    /// A player of whom nothing is known yet.
    pub fn unknown() -> Self {
        Self {
            username: String::new(),
            role: "player".into(),
            region: None,
            position: None,
            destination: None,
            hp: None,
            max_hp: None,
            level: 1,
            xp: 0,
            inventory: vec![],
            online: false,
            last_seen: None,
        }
    }

    fn with_avatar(&mut self, state: &EntityState, region: Option<RegionId>) {
        self.region = region;
        self.position = Some(state.position);
        self.destination = state.destination;
        self.hp = Some(state.hp);
        self.max_hp = Some(state.max_hp);
        self.level = state.level;
        self.xp = state.xp;
        self.inventory = state.inventory.clone();
        self.online = true;
    }

    /// Folds a fact into `player`'s state (`None` until the player is first concerned).
    /// Returns whether the state changed. Applying a fact twice changes nothing more.
    pub fn fold(state: &mut Option<PlayerState>, player: PlayerId, fact: &Envelope<Fact>) -> bool {
        let me = EntityId::from(player);
        if let Fact::AccountRegistered(f) = &fact.payload {
            if f.player != player {
                return false;
            }
            match state {
                Some(s) => s.username = f.username.clone(),
                None => {
                    *state = Some(PlayerState {
                        username: f.username.clone(),
                        last_seen: Some(fact.occurred_at),
                        ..Self::unknown()
                    })
                }
            }
            return true;
        }
        // A player whose registration has not been folded (facts of an account made before a
        // projection existed are still folded: its username is filled in when known).
        let s = state.get_or_insert_with(Self::unknown);
        match &fact.payload {
            Fact::Spawned(f) if f.state.id == me => s.with_avatar(&f.state, fact.region.clone()),
            Fact::HandedOffIn(f) if f.state.id == me => {
                s.with_avatar(&f.state, fact.region.clone())
            }
            // Routed to the new region at once: its commands queue there behind the hand-off.
            Fact::HandedOffOut(f) if f.state.id == me => s.region = Some(f.to_region.clone()),
            Fact::MovementStarted(f) if f.entity == me => {
                s.position = Some(f.from);
                s.destination = Some(f.destination);
            }
            Fact::Moved(f) if f.entity == me => {
                s.position = Some(f.position);
                if f.arrived {
                    s.destination = None;
                }
            }
            Fact::Damaged(f) if f.target == me => s.hp = Some(f.hp),
            Fact::Died(f) if f.entity == me => {
                s.hp = Some(0);
                s.position = Some(f.position);
                s.destination = None;
            }
            Fact::Respawned(f) if f.entity == me => {
                s.hp = Some(f.hp);
                s.position = Some(f.position);
                s.destination = None;
            }
            Fact::XpGained(f) if f.entity == me => {
                s.xp = f.xp;
                s.level = f.level;
                s.max_hp = Some(f.max_hp);
                s.hp = s.hp.map(|hp| hp.min(f.max_hp));
            }
            Fact::ItemPicked(f) if f.entity == me => {
                if !s.inventory.iter().any(|i| i.item == f.item.item) {
                    s.inventory.push(f.item.clone());
                }
            }
            Fact::Left(f) if f.entity == me => {
                s.online = false;
                s.position = Some(f.position);
                s.destination = None;
            }
            Fact::ChatSaid(f) if f.entity == me => {}
            Fact::LoggedIn(f) if f.player == player => {}
            Fact::LoggedOut(f) if f.player == player => {}
            Fact::RoleChanged(f) if f.player == player => s.role = f.role.clone(),
            _ => return false,
        }
        // A region tells of the avatar only while it holds it: the avatar is where its last fact
        // happened (a hand-off names the region it goes to instead).
        let in_world = !matches!(
            fact.payload,
            Fact::HandedOffOut(_)
                | Fact::LoggedIn(_)
                | Fact::LoggedOut(_)
                | Fact::RoleChanged(_)
                | Fact::Left(_)
        );
        if in_world && let Some(region) = &fact.region {
            s.region = Some(region.clone());
        }
        s.last_seen = Some(fact.occurred_at);
        true
    }
}

/// Something in the world as the log tells it: an avatar, an NPC or an item on the ground. The
/// `world` read model and `audit state --region` are this fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldEntity {
    /// The region it is in; `None` once it has left the world, crossed into another region or
    /// (an item) been picked up.
    pub region: Option<RegionId>,
    /// `player`, `npc` or `item`.
    pub kind: String,
    /// Where it is.
    pub position: Position,
    /// The username, NPC kind or item kind.
    pub name: Option<String>,
    /// Hit points (avatars and NPCs).
    pub hp: Option<u32>,
    /// Maximum hit points (avatars and NPCs).
    pub max_hp: Option<u32>,
    /// Whether it is alive (avatars and NPCs).
    pub alive: Option<bool>,
}

impl WorldEntity {
    fn from_state(state: &EntityState, region: Option<RegionId>, name: Option<String>) -> Self {
        Self {
            region,
            kind: match state.kind {
                EntityKind::Player => "player",
                EntityKind::Npc => "npc",
            }
            .into(),
            position: state.position,
            name,
            hp: Some(state.hp),
            max_hp: Some(state.max_hp),
            alive: Some(state.alive),
        }
    }

    /// Folds a fact into entity `id`'s state (`None` until a fact brings it into the world);
    /// `username` names an avatar. Returns whether the state changed.
    pub fn fold(
        state: &mut Option<WorldEntity>,
        id: EntityId,
        fact: &Envelope<Fact>,
        username: Option<&str>,
    ) -> bool {
        let name = |s: &Option<WorldEntity>| {
            username
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .or_else(|| s.as_ref().and_then(|s| s.name.clone()))
        };
        let region = fact.region.clone();
        match &fact.payload {
            Fact::Spawned(f) if f.state.id == id => {
                *state = Some(Self::from_state(&f.state, region, name(state)));
                return true;
            }
            Fact::HandedOffIn(f) if f.state.id == id => {
                *state = Some(Self::from_state(&f.state, region, name(state)));
                return true;
            }
            Fact::NpcSpawned(f) if f.state.id == id => {
                *state = Some(Self::from_state(&f.state, region, Some(f.npc_kind.clone())));
                return true;
            }
            Fact::ItemSpawned(f) if f.item == id => {
                *state = Some(WorldEntity {
                    region,
                    kind: "item".into(),
                    position: f.position,
                    name: Some(f.item_kind.clone()),
                    hp: None,
                    max_hp: None,
                    alive: None,
                });
                return true;
            }
            _ => {}
        }
        let Some(s) = state else {
            return false;
        };
        match &fact.payload {
            Fact::MovementStarted(f) if f.entity == id => s.position = f.from,
            Fact::Moved(f) if f.entity == id => s.position = f.position,
            Fact::Damaged(f) if f.target == id => s.hp = Some(f.hp),
            Fact::Died(f) if f.entity == id => {
                s.hp = Some(0);
                s.alive = Some(false);
                s.position = f.position;
            }
            Fact::NpcDied(f) if f.npc == id => {
                s.hp = Some(0);
                s.alive = Some(false);
                s.position = f.position;
            }
            Fact::Respawned(f) if f.entity == id => {
                s.hp = Some(f.hp);
                s.alive = Some(true);
                s.position = f.position;
            }
            Fact::XpGained(f) if f.entity == id => {
                s.max_hp = Some(f.max_hp);
                s.hp = s.hp.map(|hp| hp.min(f.max_hp));
            }
            Fact::ItemPicked(f) if f.item.item == id => s.region = None,
            Fact::Left(f) if f.entity == id => {
                s.region = None;
                s.position = f.position;
            }
            Fact::HandedOffOut(f) if f.state.id == id => s.region = None,
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fact::{
        Damaged, ItemPicked, LeaveReason, Left, Moved, MovementStarted, Respawned, Spawned,
    };

    fn avatar() -> EntityState {
        EntityState::newcomer(PlayerId::new(), Position::new(1.0, 1.0), 100)
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
