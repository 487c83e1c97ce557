//! How facts change the read-model documents ([`schemas::read_model`]). Pure: the live
//! projection and a rebuild both fold facts through here, so they agree document for document.
//!
//! A fact at or below a document's `seq` has been folded into it already and changes nothing,
//! so a redelivered or replayed fact never changes a document twice and never rolls it back.

use schemas::fold::{PlayerState, WorldEntity};
pub use schemas::fold::{entities_of, players_of, sessions_of};
use schemas::read_model::{EntityDoc, PlayerDoc, SessionDoc};
use schemas::{EntityId, Envelope, Fact, PlayerId};

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
    let (folded, changed) = stamped(doc.take().map(|d| (d.state, d.seq)), fact.seq, |state| {
        PlayerState::fold(state, player, &fact.env)
    });
    *doc = folded.map(|(state, seq)| PlayerDoc {
        id: player,
        state,
        seq,
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
    let (folded, changed) = stamped(doc.take().map(|d| (d.state, d.seq)), fact.seq, |state| {
        WorldEntity::fold(state, id, &fact.env, username)
    });
    *doc = folded.map(|(state, seq)| EntityDoc { id, state, seq });
    changed
}

/// A document's state and `seq` after the fact at `seq`: unchanged when the document has that
/// fact already; else `fold`ed, and stamped with the fact's `seq` when the fold changed it.
fn stamped<S>(
    doc: Option<(S, u64)>,
    seq: u64,
    fold: impl FnOnce(&mut Option<S>) -> bool,
) -> (Option<(S, u64)>, bool) {
    if let Some((_, had)) = &doc
        && *had >= seq
    {
        return (doc, false);
    }
    let before = doc.as_ref().map_or(0, |(_, s)| *s);
    let mut state = doc.map(|(state, _)| state);
    let changed = fold(&mut state);
    let stamp = if changed { seq } else { before };
    (state.map(|state| (state, stamp)), changed)
}
