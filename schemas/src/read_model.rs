//! The read models, written once for both sides: the documents the projector writes and the
//! gateway serves, the MongoDB collections that hold them, and the Redis keys and channels that
//! go with them.
//!
//! Every document carries `seq`, the `FACTS` sequence of the last fact folded into it; a fact at
//! or below it has been folded already and changes nothing, so a redelivered or replayed fact
//! never changes a document twice and never rolls it back.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fold::{InventoryItem, PlayerState, WorldEntity};
use crate::geometry::Position;
use crate::ids::{EntityId, PlayerId, RegionId};

/// The MongoDB collections of the read models and of the projector's own records.
pub mod collection {
    /// One [`PlayerDoc`](super::PlayerDoc) per player.
    pub const PLAYERS: &str = "players";
    /// One [`EntityDoc`](super::EntityDoc) per avatar, NPC and item on the ground.
    pub const WORLD: &str = "world";
    /// One [`SessionDoc`](super::SessionDoc) per login.
    pub const SESSIONS: &str = "sessions";
    /// One entry per stored fact and command: the audit trail.
    pub const AUDIT: &str = "audit";
    /// How far each projection has written, and the session each writes its transactions in.
    pub const PROGRESS: &str = "projector_progress";
}

/// The Redis keys the projector writes and the gateway reads. (A key is never a channel's
/// name: see [`channel`](super::channel).)
pub mod key {
    use std::fmt::Display;

    /// The live projection's position: the highest `FACTS` sequence up to which every fact is
    /// in the read models (and their caches are refreshed). The projector only raises it; reads
    /// given `?min_seq=` wait for it.
    pub const PROJECTION_POSITION: &str = "projection:facts:position";

    /// A hash of region id to the avatars in it, recounted by the projector.
    pub const POPULATION: &str = "world:population";

    /// The cached view of `player` (the [`PlayerView`](super::PlayerView) as JSON): the gateway
    /// fills it, the projector deletes it when the player changes. The player's id is its hash
    /// tag, the one its session and rate-limit keys share, so a Redis Cluster keeps them in one
    /// slot and the gateway reads them with one script.
    pub fn player_view(player: impl Display) -> String {
        format!("player:{{{player}}}")
    }

    /// A counter the projector raises whenever something in `region` changed: the gateway's
    /// cached answers of what is near a point name the versions they were read at.
    pub fn world_version(region: impl Display) -> String {
        format!("world:version:{region}")
    }
}

/// The Redis pub/sub channels of the live stream: the projector (and the simulators' position
/// updates, through it) publishes, the gateway's WebSockets listen. Each starts with `live:`,
/// so no channel is spelled like a key.
pub mod channel {
    use std::fmt::Display;

    /// What happens in `region`, for everyone watching it.
    pub fn region(region: impl Display) -> String {
        format!("live:region:{region}")
    }

    /// What concerns `player` alone, wherever their avatar is.
    pub fn player(player: impl Display) -> String {
        format!("live:player:{player}")
    }
}

/// A document of the `players` collection: the shared fold's [`PlayerState`] and the `FACTS`
/// sequence of the last fact folded in. `GET /v1/players/me` serves it as a [`PlayerView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerDoc {
    /// The player.
    #[serde(rename = "_id")]
    pub id: PlayerId,
    /// The player as the log tells it.
    #[serde(flatten)]
    pub state: PlayerState,
    /// The `FACTS` sequence of the last fact folded in (0 when a document repaired by hand has
    /// none: every fact is then newer).
    #[serde(default)]
    pub seq: u64,
}

/// A document of the `world` collection: the shared fold's [`WorldEntity`] (an avatar, an NPC
/// or an item on the ground) and the `FACTS` sequence of the last fact folded in. The region
/// reads serve it as an [`EntityView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityDoc {
    /// The entity.
    #[serde(rename = "_id")]
    pub id: EntityId,
    /// The entity as the log tells it.
    #[serde(flatten)]
    pub state: WorldEntity,
    /// The `FACTS` sequence of the last fact folded in (0 when a document repaired by hand has
    /// none: every fact is then newer).
    #[serde(default)]
    pub seq: u64,
}

/// A document of the `sessions` collection: one login and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDoc {
    /// The session (the token's `sid`).
    #[serde(rename = "_id")]
    pub id: String,
    /// Whose.
    pub player: PlayerId,
    /// When the player logged in.
    pub started_at: Option<DateTime<Utc>>,
    /// When it lapses unless ended sooner.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the player logged out, if they did.
    pub ended_at: Option<DateTime<Utc>>,
    /// The client address the login came from.
    pub client_ip: Option<String>,
    /// The request id of the login.
    pub request_id: Option<String>,
    /// The `FACTS` sequence of the last fact folded in (0 when a document repaired by hand has
    /// none: every fact is then newer).
    #[serde(default)]
    pub seq: u64,
}

/// A document as it is stored: ids as strings, so through JSON, since BSON's own serializer
/// would write them as binary UUIDs.
pub fn to_document(value: &impl Serialize) -> Result<bson::Document, DocumentError> {
    let json = serde_json::to_value(value)
        .map_err(|e| DocumentError(format!("cannot encode a document: {e}")))?;
    bson::to_document(&json).map_err(|e| DocumentError(format!("cannot encode a document: {e}")))
}

/// A stored document read back (through JSON, for the same reason).
pub fn from_document<T: DeserializeOwned>(doc: bson::Document) -> Result<T, DocumentError> {
    serde_json::from_value(bson::Bson::Document(doc).into_relaxed_extjson())
        .map_err(|e| DocumentError(format!("cannot read a document: {e}")))
}

/// A document that cannot be turned into BSON, or read back from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

/// A player as `GET /v1/players/me` shows it. It exists from registration on; before the first
/// spawn it has no region and no position, and is offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlayerView {
    /// The player.
    pub player_id: PlayerId,
    /// The username.
    pub username: String,
    /// `player`, `moderator` or `admin`.
    pub role: String,
    /// The region the avatar is in, if it is in the world.
    #[serde(default)]
    pub region: Option<RegionId>,
    /// Where the avatar is, if it is in the world.
    #[serde(default)]
    pub position: Option<Position>,
    /// Where the avatar is walking to, while it walks.
    #[serde(default)]
    pub destination: Option<Position>,
    /// Current hit points, once spawned.
    #[serde(default)]
    pub hp: Option<u32>,
    /// Maximum hit points, once spawned.
    #[serde(default)]
    pub max_hp: Option<u32>,
    /// Level, from 1.
    pub level: u32,
    /// Total experience.
    pub xp: u64,
    /// What the avatar carries.
    #[serde(default)]
    pub inventory: Vec<InventoryItem>,
    /// Whether the avatar is in the world now.
    pub online: bool,
}

impl PlayerView {
    /// A player who has registered and never entered the world.
    pub fn registered(player_id: PlayerId, username: String, role: String) -> Self {
        Self {
            player_id,
            username,
            role,
            region: None,
            position: None,
            destination: None,
            hp: None,
            max_hp: None,
            level: 1,
            xp: 0,
            inventory: Vec::new(),
            online: false,
        }
    }
}

/// Something in the world as the `world` read model holds it: a player's avatar, an NPC or an
/// item on the ground, with its position (indexed by region and coordinates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EntityView {
    /// The entity.
    pub entity_id: EntityId,
    /// The region it is in.
    pub region: RegionId,
    /// `player`, `npc` or `item`.
    pub kind: String,
    /// Where it is.
    pub position: Position,
    /// Its name: the username, the NPC kind or the item kind.
    #[serde(default)]
    pub name: Option<String>,
    /// Current hit points (players and NPCs).
    #[serde(default)]
    pub hp: Option<u32>,
    /// Maximum hit points (players and NPCs).
    #[serde(default)]
    pub max_hp: Option<u32>,
}

impl From<PlayerDoc> for PlayerView {
    fn from(doc: PlayerDoc) -> Self {
        let PlayerState {
            username,
            role,
            region,
            position,
            destination,
            hp,
            max_hp,
            level,
            xp,
            inventory,
            online,
            last_seen: _,
        } = doc.state;
        Self {
            player_id: doc.id,
            username,
            role,
            region,
            position,
            destination,
            hp,
            max_hp,
            level,
            xp,
            inventory,
            online,
        }
    }
}

impl TryFrom<EntityDoc> for EntityView {
    type Error = DocumentError;

    /// Fails for an entity no longer in any region (one that left the world, or an item picked
    /// up): the region reads never ask for those.
    fn try_from(doc: EntityDoc) -> Result<Self, DocumentError> {
        let WorldEntity {
            region,
            kind,
            position,
            name,
            hp,
            max_hp,
            alive: _,
        } = doc.state;
        let region = region.ok_or_else(|| DocumentError(format!("{} is in no region", doc.id)))?;
        Ok(Self {
            entity_id: doc.id,
            region,
            kind,
            position,
            name,
            hp,
            max_hp,
        })
    }
}
