//! The read-model documents and how facts change them. Pure: the live projection and a rebuild
//! both fold facts through here, so they agree document for document.
//!
//! Every document carries `seq`, the `FACTS` sequence of the last fact folded into it; a fact at
//! or below it has been folded already and changes nothing, so a redelivered or replayed fact
//! never changes a document twice and never rolls it back.

use chrono::{DateTime, Utc};
use schemas::fold::{PlayerState, WorldEntity};
pub use schemas::fold::{entities_of, players_of, sessions_of};
use schemas::{EntityId, Envelope, Fact, PlayerId};
use serde::{Deserialize, Serialize};

/// A document of the `players` collection (what `GET /v1/players/me` serves): the shared
/// fold's [`PlayerState`] and the `FACTS` sequence of the last fact folded in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerDoc {
    /// The player.
    #[serde(rename = "_id")]
    pub id: PlayerId,
    /// The player as the log tells it.
    #[serde(flatten)]
    pub state: PlayerState,
    /// The `FACTS` sequence of the last fact folded in.
    pub seq: u64,
}

/// A document of the `world` collection: the shared fold's [`WorldEntity`] (an avatar, an NPC
/// or an item on the ground) and the `FACTS` sequence of the last fact folded in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityDoc {
    /// The entity.
    #[serde(rename = "_id")]
    pub id: EntityId,
    /// The entity as the log tells it.
    #[serde(flatten)]
    pub state: WorldEntity,
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

/// Folds a stored fact into a player's document (`None` until the player is first concerned)
/// with the shared fold, unless the document has it already. Returns whether it changed.
pub fn fold_player(doc: &mut Option<PlayerDoc>, player: PlayerId, fact: &Stored) -> bool {
    if doc.as_ref().is_some_and(|d| d.seq >= fact.seq) {
        return false;
    }
    let before = doc.as_ref().map(|d| d.seq);
    let mut state = doc.take().map(|d| d.state);
    let changed = PlayerState::fold(&mut state, player, &fact.env);
    *doc = state.map(|state| PlayerDoc {
        id: player,
        state,
        seq: if changed {
            fact.seq
        } else {
            before.unwrap_or(0)
        },
    });
    changed
}

/// Folds a stored fact into a world document with the shared fold (`username` names avatars),
/// unless the document has it already. Returns whether it changed.
pub fn fold_entity(
    doc: &mut Option<EntityDoc>,
    id: EntityId,
    fact: &Stored,
    username: Option<&str>,
) -> bool {
    if doc.as_ref().is_some_and(|d| d.seq >= fact.seq) {
        return false;
    }
    let before = doc.as_ref().map(|d| d.seq);
    let mut state = doc.take().map(|d| d.state);
    let changed = WorldEntity::fold(&mut state, id, &fact.env, username);
    *doc = state.map(|state| EntityDoc {
        id,
        state,
        seq: if changed {
            fact.seq
        } else {
            before.unwrap_or(0)
        },
    });
    changed
}
