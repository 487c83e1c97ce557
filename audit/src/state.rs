//! A player, or a region's entities, as they were at a moment: the log folded up to it with the
//! one fold in `schemas` ([`PlayerState`], [`WorldEntity`]), the same the projector's read
//! models are made of; at the present moment it is the read model.

use std::collections::BTreeMap;

use async_nats::jetstream::Context;
use chrono::{DateTime, Utc};
use schemas::fold::{PlayerState, WorldEntity, entities_of, players_of};
use schemas::{EntityId, Fact, PlayerId, RegionId, Scope};
use serde_json::{Value, json};

use crate::error::AuditError;
use crate::log;
use crate::select::{LogStream, Selection};

/// Whose state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// A player: account, role and avatar.
    Player(PlayerId),
    /// Every entity in a region: avatars, NPCs and items on the ground.
    Region(RegionId),
}

fn object(value: impl serde::Serialize) -> serde_json::Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// The state of `whose` at `at`, as JSON: what it was after the last fact stored at or before
/// `at`, with that fact's sequence (`facts_seq`).
pub async fn at(js: &Context, whose: &Whose, at: DateTime<Utc>) -> Result<Value, AuditError> {
    let mut selection = Selection {
        streams: vec![LogStream::Facts],
        until: Some(at),
        ..Selection::default()
    };
    let mut last_seq = 0;
    match whose {
        Whose::Player(player) => {
            selection.player = Some(*player);
            let mut state: Option<PlayerState> = None;
            log::read(
                js,
                &selection,
                |_| {},
                |event| {
                    if let Some(env) = event.fact()
                        && players_of(&env.payload).contains(player)
                        && PlayerState::fold(&mut state, *player, &env)
                    {
                        last_seq = event.seq;
                    }
                    Ok(())
                },
            )
            .await?;
            let mut out = serde_json::Map::new();
            out.insert("player_id".into(), player.to_string().into());
            out.insert("at".into(), at.to_rfc3339().into());
            out.insert("facts_seq".into(), last_seq.into());
            match state {
                Some(s) => out.extend(object(s)),
                None => {
                    out.insert("known".into(), false.into());
                }
            }
            Ok(Value::Object(out))
        }
        Whose::Region(region) => {
            // The region's facts, and the accounts' (to name the avatars).
            selection.regions = vec![Scope::Region(region.clone()), Scope::Global];
            let mut usernames: BTreeMap<PlayerId, String> = BTreeMap::new();
            let mut entities: BTreeMap<EntityId, Option<WorldEntity>> = BTreeMap::new();
            log::read(
                js,
                &selection,
                |_| {},
                |event| {
                    let Some(env) = event.fact() else {
                        return Ok(());
                    };
                    if let Fact::AccountRegistered(f) = &env.payload {
                        usernames.insert(f.player, f.username.clone());
                    }
                    for id in entities_of(&env.payload) {
                        let username = usernames
                            .get(&PlayerId::from_uuid(*id.as_uuid()))
                            .map(String::as_str);
                        if WorldEntity::fold(entities.entry(id).or_insert(None), id, &env, username)
                        {
                            last_seq = event.seq;
                        }
                    }
                    Ok(())
                },
            )
            .await?;
            let here: Vec<Value> = entities
                .into_iter()
                .filter_map(|(id, e)| Some((id, e?)))
                .filter(|(_, e)| e.region.as_ref() == Some(region))
                .map(|(id, e)| {
                    let mut m = serde_json::Map::new();
                    m.insert("entity_id".into(), id.to_string().into());
                    m.extend(object(e));
                    Value::Object(m)
                })
                .collect();
            Ok(json!({
                "region": region.as_str(),
                "at": at.to_rfc3339(),
                "facts_seq": last_seq,
                "entities": here,
            }))
        }
    }
}
