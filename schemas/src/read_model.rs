//! The read models the projector writes and the gateway serves, as their documents are shaped.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fold::InventoryItem;
use crate::geometry::Position;
use crate::ids::{PlayerId, RegionId};

/// The Redis key of the live projection's position: the highest `FACTS` sequence up to which
/// every fact is in the read models (and their caches are refreshed). The projector only raises
/// it; reads given `?min_seq=` wait for it.
pub const PROJECTION_POSITION_KEY: &str = "projection:facts:position";

/// The Redis key caching `player`'s view (the [`PlayerView`] as JSON): the gateway fills it, the
/// projector deletes it when the player changes. The player's id is its hash tag, the one its
/// session and rate-limit keys share, so a Redis Cluster keeps them in one slot and the gateway
/// reads them with one script.
pub fn player_view_key(player: impl std::fmt::Display) -> String {
    format!("player:{{{player}}}")
}

/// A player as `GET /v1/players/me` shows it. It exists from registration on; before the first
/// spawn it has no region and no position, and is offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlayerView {
    /// The player (`_id` in MongoDB).
    #[serde(alias = "_id")]
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
    /// The entity (`_id` in MongoDB).
    #[serde(alias = "_id")]
    pub entity_id: crate::ids::EntityId,
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
