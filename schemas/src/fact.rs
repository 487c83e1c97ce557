//! Facts: what happened. The `FACTS` stream of these is the event log.
//!
//! A fact carries the state that resulted (the new position, the new hp), so state is rebuilt by
//! folding facts in stream order (see [`crate::fold`]) without re-running any game rule.
//! Rejections are facts too: a command that could not be applied ends as [`Fact::Rejected`] with a
//! reason, so every accepted command has an outcome in the log.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::command::{ChatChannel, CommandKind, UnknownKind};
use crate::fold::{EntityState, InventoryItem};
use crate::geometry::Position;
use crate::ids::{EntityId, PlayerId, RegionId};

/// Declares the fact kinds: the [`Fact`] enum, [`FactKind`], and each kind's wire name and
/// current schema version, in one table.
macro_rules! facts {
    ($(
        $(#[$doc:meta])*
        $variant:ident($payload:ident) = $kind:literal, version $version:literal;
    )*) => {
        /// A fact, tagged by `type` on the wire.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "type")]
        pub enum Fact {
            $( $(#[$doc])* #[serde(rename = $kind)] $variant($payload), )*
        }

        /// The kind of a fact, as named in its `type` and its subject.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum FactKind {
            $( $(#[$doc])* #[serde(rename = $kind)] $variant, )*
        }

        impl FactKind {
            /// Every fact kind.
            pub const ALL: &[FactKind] = &[$(FactKind::$variant),*];

            /// The wire name (`moved`, `damaged`, ...).
            pub const fn as_str(self) -> &'static str {
                match self { $(FactKind::$variant => $kind,)* }
            }

            /// The schema version written today; older ones are upcast on decoding.
            pub const fn schema_version(self) -> u16 {
                match self { $(FactKind::$variant => $version,)* }
            }
        }

        impl FromStr for FactKind {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($kind => Ok(FactKind::$variant),)*
                    _ => Err(UnknownKind(s.to_owned())),
                }
            }
        }

        impl Fact {
            /// The fact's kind.
            pub const fn kind(&self) -> FactKind {
                match self { $(Fact::$variant(_) => FactKind::$variant,)* }
            }

            /// Decodes the fields of a payload of a known kind (without its `type`).
            pub(crate) fn from_fields(kind: FactKind, map: Map<String, Value>) -> Result<Self, serde_json::Error> {
                match kind {
                    $(FactKind::$variant => serde_json::from_value::<$payload>(Value::Object(map)).map(Fact::$variant),)*
                }
            }
        }
    };
}

impl fmt::Display for FactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

facts! {
    /// A player account was created (never carries the password or its hash).
    AccountRegistered(AccountRegistered) = "account_registered", version 1;
    /// A player logged in: a session began.
    LoggedIn(LoggedIn) = "logged_in", version 1;
    /// A player logged out: the session ended before its time.
    LoggedOut(LoggedOut) = "logged_out", version 1;
    /// An admin gave a player another role.
    RoleChanged(RoleChanged) = "role_changed", version 1;
    /// A player's avatar entered the world.
    Spawned(Spawned) = "spawned", version 1;
    /// An entity set off towards a destination.
    MovementStarted(MovementStarted) = "movement_started", version 1;
    /// An entity is now at a position (on arrival, on stopping, and at the simulator's cadence).
    Moved(Moved) = "moved", version 1;
    /// An entity was hurt.
    Damaged(Damaged) = "damaged", version 1;
    /// A player's avatar died.
    Died(Died) = "died", version 1;
    /// A dead avatar came back.
    Respawned(Respawned) = "respawned", version 1;
    /// An entity earned experience (and maybe a level).
    XpGained(XpGained) = "xp_gained", version 1;
    /// An item appeared on the ground.
    ItemSpawned(ItemSpawned) = "item_spawned", version 1;
    /// An entity picked up an item; the item is gone from the ground.
    ItemPicked(ItemPicked) = "item_picked", version 1;
    /// Somebody said something.
    ChatSaid(ChatSaid) = "chat_said", version 1;
    /// An avatar left the world.
    Left(Left) = "left", version 2;
    /// An entity crossed the border and was handed to the neighbouring region.
    HandedOffOut(HandedOffOut) = "handed_off_out", version 1;
    /// An entity arrived from a neighbouring region, with all its state.
    HandedOffIn(HandedOffIn) = "handed_off_in", version 1;
    /// An NPC appeared.
    NpcSpawned(NpcSpawned) = "npc_spawned", version 1;
    /// An NPC died.
    NpcDied(NpcDied) = "npc_died", version 1;
    /// A command could not be applied; the reason says why.
    Rejected(Rejected) = "rejected", version 1;
    /// An attack went over the border; the target's region decides the hit.
    StruckAcross(StruckAcross) = "struck_across", version 1;
    /// An NPC was slain by a player standing across the border; the experience goes to the
    /// player's region.
    RewardSent(RewardSent) = "reward_sent", version 1;
}

/// A player account was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRegistered {
    /// The new account.
    pub player: PlayerId,
    /// Its username.
    pub username: String,
}

/// A player logged in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggedIn {
    /// Who.
    pub player: PlayerId,
    /// The session's id (the token's `sid`).
    pub session: String,
    /// When the session lapses unless ended sooner.
    pub expires_at: DateTime<Utc>,
}

/// A player logged out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggedOut {
    /// Who.
    pub player: PlayerId,
    /// The session that ended.
    pub session: String,
}

/// A player's role changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChanged {
    /// Whose.
    pub player: PlayerId,
    /// The new role: `player`, `moderator` or `admin`.
    pub role: String,
}

/// A player's avatar entered the world, with its whole state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spawned {
    /// The avatar as it now is.
    pub state: EntityState,
}

/// An entity set off towards a destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementStarted {
    /// Who moves.
    pub entity: EntityId,
    /// Where it is now.
    pub from: Position,
    /// Where it is going.
    pub destination: Position,
}

/// An entity is now at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Moved {
    /// Who moved.
    pub entity: EntityId,
    /// Where it is now.
    pub position: Position,
    /// Whether it has reached its destination (and stopped).
    pub arrived: bool,
}

/// An entity was hurt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Damaged {
    /// Who struck.
    pub attacker: EntityId,
    /// Who was hurt.
    pub target: EntityId,
    /// How much hp it lost.
    pub amount: u32,
    /// The target's hp afterwards.
    pub hp: u32,
}

/// A player's avatar died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Died {
    /// Who died.
    pub entity: EntityId,
    /// Who killed it, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killer: Option<EntityId>,
    /// Where.
    pub position: Position,
}

/// A dead avatar came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Respawned {
    /// Who came back.
    pub entity: EntityId,
    /// Where.
    pub position: Position,
    /// With how much hp.
    pub hp: u32,
}

/// An entity earned experience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XpGained {
    /// Who earned it.
    pub entity: EntityId,
    /// How much was earned.
    pub amount: u64,
    /// The total experience afterwards.
    pub xp: u64,
    /// The level afterwards.
    pub level: u32,
    /// The maximum hp afterwards (it grows with the level).
    pub max_hp: u32,
}

/// An item appeared on the ground.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemSpawned {
    /// The item.
    pub item: EntityId,
    /// What it is, as named in the game balance config.
    pub item_kind: String,
    /// Where it lies.
    pub position: Position,
}

/// An entity picked up an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemPicked {
    /// Who picked it up.
    pub entity: EntityId,
    /// What was picked up.
    pub item: InventoryItem,
}

/// Somebody said something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatSaid {
    /// The speaker.
    pub entity: EntityId,
    /// Who hears it.
    pub channel: ChatChannel,
    /// What was said.
    pub text: String,
    /// Where the speaker stood (for `say`, who is near enough to hear).
    pub position: Position,
}

/// Why an avatar left the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The player asked to leave.
    Requested,
    /// An admin kicked the player.
    Kicked,
    /// The player logged out or was idle too long.
    Disconnected,
}

/// An avatar left the world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Left {
    /// Who left.
    pub entity: EntityId,
    /// Why.
    pub reason: LeaveReason,
    /// Where it was.
    pub position: Position,
    /// What it takes with it, to have again when it spawns (version 2; unknown for facts
    /// written in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// What an avatar keeps between one stay in the world and the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Its level.
    pub level: u32,
    /// Its experience.
    pub xp: u64,
    /// What it carries.
    pub inventory: Vec<InventoryItem>,
}

/// An entity crossed the border and was handed to a neighbouring region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandedOffOut {
    /// The entity, as it was when it left.
    pub state: EntityState,
    /// The region it went to.
    pub to_region: RegionId,
}

/// An entity arrived from a neighbouring region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandedOffIn {
    /// The entity, as it is now.
    pub state: EntityState,
    /// The region it came from.
    pub from_region: RegionId,
}

/// An NPC appeared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NpcSpawned {
    /// The NPC as it now is.
    pub state: EntityState,
    /// What it is, as named in the game balance config.
    pub npc_kind: String,
}

/// An NPC died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NpcDied {
    /// The NPC.
    pub npc: EntityId,
    /// Who killed it, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killer: Option<EntityId>,
    /// Where.
    pub position: Position,
}

/// An entity attacked one standing across the border. Its attack cooldown starts now; the
/// region the target is in answers the `strike` this sends with the damage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StruckAcross {
    /// Who strikes.
    pub attacker: EntityId,
    /// Who is struck.
    pub target: EntityId,
    /// The damage drawn for the blow.
    pub amount: u32,
    /// Where the attacker stands.
    pub position: Position,
    /// The neighbouring regions within reach, each asked to deliver the blow; the one the
    /// target is in does.
    pub to_regions: Vec<RegionId>,
}

/// A player standing in a neighbouring region slew an NPC here. The experience it was worth is
/// sent to the player's region in a `reward`, and granted there (`xp_gained`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardSent {
    /// The player who slew it.
    pub entity: EntityId,
    /// The NPC slain.
    pub npc: EntityId,
    /// The experience it was worth.
    pub amount: u64,
    /// The region the player stands in.
    pub to_region: RegionId,
}

/// Why a command was not applied. Stable snake_case codes, for clients and analysts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The sender has no avatar in the world.
    NotSpawned,
    /// The sender's avatar is already in the world.
    AlreadySpawned,
    /// The sender's avatar is dead.
    Dead,
    /// `respawn` from an avatar that is alive.
    NotDead,
    /// `respawn` before the respawn time has passed.
    RespawnNotReady,
    /// The target or item does not exist (here).
    TargetNotFound,
    /// The target is already dead.
    TargetDead,
    /// The target cannot be attacked (oneself, an item).
    InvalidTarget,
    /// The target or item is beyond reach.
    OutOfRange,
    /// The attack is still cooling down.
    OnCooldown,
    /// Someone else picked the item up first.
    ItemGone,
    /// The inventory is full.
    InventoryFull,
    /// The region is at capacity.
    RegionFull,
    /// The destination cannot be reached from here.
    Unreachable,
    /// The region does not own the entity any more (it was handed off).
    NotInRegion,
}

impl RejectReason {
    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotSpawned => "not_spawned",
            Self::AlreadySpawned => "already_spawned",
            Self::Dead => "dead",
            Self::NotDead => "not_dead",
            Self::RespawnNotReady => "respawn_not_ready",
            Self::TargetNotFound => "target_not_found",
            Self::TargetDead => "target_dead",
            Self::InvalidTarget => "invalid_target",
            Self::OutOfRange => "out_of_range",
            Self::OnCooldown => "on_cooldown",
            Self::ItemGone => "item_gone",
            Self::InventoryFull => "inventory_full",
            Self::RegionFull => "region_full",
            Self::Unreachable => "unreachable",
            Self::NotInRegion => "not_in_region",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command could not be applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rejected {
    /// The kind of the command (its id is the fact's correlation id).
    pub command: CommandKind,
    /// Why, as a code.
    pub reason: RejectReason,
    /// Why, for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in FactKind::ALL {
            assert_eq!(kind.as_str().parse::<FactKind>(), Ok(*kind));
            let json = serde_json::to_value(kind).expect("serialize");
            assert_eq!(json, Value::String(kind.as_str().to_owned()));
        }
        assert!("teleported".parse::<FactKind>().is_err());
    }

    #[test]
    fn reject_reason_codes_match_their_json() {
        for reason in [
            RejectReason::ItemGone,
            RejectReason::OnCooldown,
            RejectReason::NotInRegion,
        ] {
            let json = serde_json::to_value(reason).expect("serialize");
            assert_eq!(json, Value::String(reason.as_str().to_owned()));
        }
    }
}
