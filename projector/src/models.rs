//! The read-model documents and how facts change them. Pure: the live projection and a rebuild
//! both fold facts through here, so they agree document for document.
//!
//! Every document carries `seq`, the `FACTS` sequence of the last fact folded into it; a fact at
//! or below it has been folded already and changes nothing, so a redelivered or replayed fact
//! never changes a document twice and never rolls it back.

use chrono::{DateTime, Utc};
use schemas::fold::InventoryItem;
use schemas::{EntityId, EntityKind, EntityState, Envelope, Fact, PlayerId, Position, RegionId};
use serde::{Deserialize, Serialize};

/// A document of the `players` collection (what `GET /v1/players/me` serves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerDoc {
    /// The player.
    #[serde(rename = "_id")]
    pub id: PlayerId,
    /// The username.
    pub username: String,
    /// `player`, `moderator` or `admin`.
    pub role: String,
    /// The region the avatar is in (or last was).
    pub region: Option<RegionId>,
    /// Where the avatar is (or last was).
    pub position: Option<Position>,
    /// Hit points, once spawned.
    pub hp: Option<u32>,
    /// Maximum hit points, once spawned.
    pub max_hp: Option<u32>,
    /// Level.
    pub level: u32,
    /// Experience.
    pub xp: u64,
    /// What the avatar carries.
    pub inventory: Vec<InventoryItem>,
    /// Whether the avatar is in the world.
    pub online: bool,
    /// When a fact last concerned the player.
    pub last_seen: Option<DateTime<Utc>>,
    /// The `FACTS` sequence of the last fact folded in.
    pub seq: u64,
}

/// A document of the `world` collection: an avatar, an NPC or an item on the ground.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityDoc {
    /// The entity.
    #[serde(rename = "_id")]
    pub id: EntityId,
    /// The region it is in; `None` once it has left the world, crossed into another region's
    /// document, or (an item) been picked up. Queries by region never see those.
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
    /// The `FACTS` sequence of the last fact folded in.
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
    /// The `FACTS` sequence of the last fact folded in.
    pub seq: u64,
}

/// The sessions a fact is about.
pub fn sessions_of(fact: &Fact) -> Vec<String> {
    match fact {
        Fact::LoggedIn(f) => vec![f.session.clone()],
        Fact::LoggedOut(f) => vec![f.session.clone()],
        _ => vec![],
    }
}

/// Folds a stored fact into a session's document. Returns whether the document changed.
pub fn fold_session(doc: &mut Option<SessionDoc>, session: &str, fact: &Stored) -> bool {
    if doc.as_ref().is_some_and(|d| d.seq >= fact.seq) {
        return false;
    }
    let env = &fact.env;
    let player = match &env.payload {
        Fact::LoggedIn(f) if f.session == session => f.player,
        Fact::LoggedOut(f) if f.session == session => f.player,
        _ => return false,
    };
    let d = doc.get_or_insert_with(|| SessionDoc {
        id: session.to_owned(),
        player,
        started_at: None,
        expires_at: None,
        ended_at: None,
        client_ip: None,
        request_id: None,
        seq: 0,
    });
    match &env.payload {
        Fact::LoggedIn(f) => {
            d.started_at = Some(env.occurred_at);
            d.expires_at = Some(f.expires_at);
            d.client_ip.clone_from(&fact.client_ip);
            d.request_id.clone_from(&fact.request_id);
        }
        // Ended by a logout, or by a role change, unless it had lapsed already.
        _ => {
            if d.expires_at.is_none_or(|at| env.occurred_at < at) {
                d.ended_at = Some(env.occurred_at);
            }
        }
    }
    d.seq = fact.seq;
    true
}

/// A fact with its place in the log.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its `FACTS` sequence.
    pub seq: u64,
    /// The fact.
    pub env: Envelope<Fact>,
    /// The client address of the request behind it, if any.
    pub client_ip: Option<String>,
    /// The request id behind it, if any.
    pub request_id: Option<String>,
}

/// The players a fact is about (whose documents it may change).
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
        // Changes no document; the attacker hears that the blow went out.
        Fact::StruckAcross(f) => vec![from_entity(&f.attacker)],
        // Changes no document here; the player's region grants the experience.
        Fact::RewardSent(f) => vec![from_entity(&f.entity)],
        Fact::ItemSpawned(_) | Fact::NpcSpawned(_) | Fact::NpcDied(_) | Fact::Rejected(_) => vec![],
    }
}

/// The world entities (and items) a fact is about.
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

fn with_state(doc: &mut PlayerDoc, state: &EntityState, region: Option<RegionId>) {
    doc.region = region;
    doc.position = Some(state.position);
    doc.hp = Some(state.hp);
    doc.max_hp = Some(state.max_hp);
    doc.level = state.level;
    doc.xp = state.xp;
    doc.inventory = state.inventory.clone();
    doc.online = true;
}

/// Folds a stored fact into a player's document (`None` until the player registers). Returns
/// whether the document changed.
pub fn fold_player(doc: &mut Option<PlayerDoc>, player: PlayerId, fact: &Stored) -> bool {
    if doc.as_ref().is_some_and(|d| d.seq >= fact.seq) {
        return false;
    }
    let me = EntityId::from(player);
    let env = &fact.env;
    if let Fact::AccountRegistered(f) = &env.payload {
        if f.player == player {
            match doc {
                Some(d) => d.username = f.username.clone(),
                None => {
                    *doc = Some(PlayerDoc {
                        id: player,
                        username: f.username.clone(),
                        role: "player".into(),
                        region: None,
                        position: None,
                        hp: None,
                        max_hp: None,
                        level: 1,
                        xp: 0,
                        inventory: vec![],
                        online: false,
                        last_seen: Some(env.occurred_at),
                        seq: fact.seq,
                    })
                }
            }
        }
        if let Some(d) = doc {
            d.seq = fact.seq;
        }
        return true;
    }
    // A player the projection has not seen register (facts of an account made before the
    // projection existed are still folded: its username is filled in when known).
    let d = doc.get_or_insert_with(|| PlayerDoc {
        id: player,
        username: String::new(),
        role: "player".into(),
        region: None,
        position: None,
        hp: None,
        max_hp: None,
        level: 1,
        xp: 0,
        inventory: vec![],
        online: false,
        last_seen: None,
        seq: 0,
    });
    match &env.payload {
        Fact::Spawned(f) if f.state.id == me => with_state(d, &f.state, env.region.clone()),
        Fact::HandedOffIn(f) if f.state.id == me => with_state(d, &f.state, env.region.clone()),
        // Routed to the new region at once: its commands queue there behind the hand-off.
        Fact::HandedOffOut(f) if f.state.id == me => d.region = Some(f.to_region.clone()),
        Fact::MovementStarted(f) if f.entity == me => d.position = Some(f.from),
        Fact::Moved(f) if f.entity == me => d.position = Some(f.position),
        Fact::Damaged(f) if f.target == me => d.hp = Some(f.hp),
        Fact::Died(f) if f.entity == me => {
            d.hp = Some(0);
            d.position = Some(f.position);
        }
        Fact::Respawned(f) if f.entity == me => {
            d.hp = Some(f.hp);
            d.position = Some(f.position);
        }
        Fact::XpGained(f) if f.entity == me => {
            d.xp = f.xp;
            d.level = f.level;
            d.max_hp = Some(f.max_hp);
        }
        Fact::ItemPicked(f) if f.entity == me => {
            if !d.inventory.iter().any(|i| i.item == f.item.item) {
                d.inventory.push(f.item.clone());
            }
        }
        Fact::Left(f) if f.entity == me => {
            d.online = false;
            d.position = Some(f.position);
        }
        Fact::ChatSaid(f) if f.entity == me => {}
        Fact::LoggedIn(f) if f.player == player => {}
        Fact::LoggedOut(f) if f.player == player => {}
        Fact::RoleChanged(f) if f.player == player => d.role = f.role.clone(),
        _ => return false,
    }
    d.last_seen = Some(env.occurred_at);
    d.seq = fact.seq;
    true
}

fn kind_name(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Player => "player",
        EntityKind::Npc => "npc",
    }
}

fn from_state(
    state: &EntityState,
    region: Option<RegionId>,
    name: Option<String>,
    seq: u64,
) -> EntityDoc {
    EntityDoc {
        id: state.id,
        region,
        kind: kind_name(state.kind).into(),
        position: state.position,
        name,
        hp: Some(state.hp),
        max_hp: Some(state.max_hp),
        alive: Some(state.alive),
        seq,
    }
}

/// Folds a stored fact into a world document; `username` names avatars. Returns whether the
/// document changed.
pub fn fold_entity(
    doc: &mut Option<EntityDoc>,
    id: EntityId,
    fact: &Stored,
    username: Option<&str>,
) -> bool {
    if doc.as_ref().is_some_and(|d| d.seq >= fact.seq) {
        return false;
    }
    let env = &fact.env;
    let seq = fact.seq;
    let name = |d: &Option<EntityDoc>| {
        username
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .or_else(|| d.as_ref().and_then(|d| d.name.clone()))
    };
    match &env.payload {
        Fact::Spawned(f) if f.state.id == id => {
            *doc = Some(from_state(&f.state, env.region.clone(), name(doc), seq));
            return true;
        }
        Fact::HandedOffIn(f) if f.state.id == id => {
            *doc = Some(from_state(&f.state, env.region.clone(), name(doc), seq));
            return true;
        }
        Fact::NpcSpawned(f) if f.state.id == id => {
            *doc = Some(from_state(
                &f.state,
                env.region.clone(),
                Some(f.npc_kind.clone()),
                seq,
            ));
            return true;
        }
        Fact::ItemSpawned(f) if f.item == id => {
            *doc = Some(EntityDoc {
                id,
                region: env.region.clone(),
                kind: "item".into(),
                position: f.position,
                name: Some(f.item_kind.clone()),
                hp: None,
                max_hp: None,
                alive: None,
                seq,
            });
            return true;
        }
        _ => {}
    }
    let Some(d) = doc else {
        return false;
    };
    match &env.payload {
        Fact::MovementStarted(f) if f.entity == id => d.position = f.from,
        Fact::Moved(f) if f.entity == id => d.position = f.position,
        Fact::Damaged(f) if f.target == id => d.hp = Some(f.hp),
        Fact::Died(f) if f.entity == id => {
            d.hp = Some(0);
            d.alive = Some(false);
            d.position = f.position;
        }
        Fact::NpcDied(f) if f.npc == id => {
            d.hp = Some(0);
            d.alive = Some(false);
            d.position = f.position;
        }
        Fact::Respawned(f) if f.entity == id => {
            d.hp = Some(f.hp);
            d.alive = Some(true);
            d.position = f.position;
        }
        Fact::XpGained(f) if f.entity == id => d.max_hp = Some(f.max_hp),
        Fact::ItemPicked(f) if f.item.item == id => d.region = None,
        Fact::Left(f) if f.entity == id => {
            d.region = None;
            d.position = f.position;
        }
        Fact::HandedOffOut(f) if f.state.id == id => d.region = None,
        _ => return false,
    }
    d.seq = seq;
    true
}
