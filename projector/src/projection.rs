//! Applying a batch of facts to the read models (and the audit trail) in one bulk write.
//!
//! The documents a batch touches are read once, the batch's facts are folded into them in stream
//! order (see [`crate::models`]), and each changed document is written once, guarded by its
//! `seq` so that a write of an older state never lands over a newer one. The audit entries go in
//! the same bulk write, unique on the event id. Duplicate-key answers mean "already there" and
//! are not errors; any other failure of one write is reported with the facts behind it.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::{WriteConcern, WriteModel};
use mongodb::{Client, Database, Namespace};
use schemas::{EntityId, PlayerId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::models::{
    EntityDoc, PlayerDoc, SessionDoc, Stored, entities_of, fold_entity, fold_player, fold_session,
    players_of, sessions_of,
};
use crate::trail;

/// The names of the collections a projection writes: the live ones, or a rebuild's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Players.
    pub players: String,
    /// World entities.
    pub world: String,
    /// Logins and logouts.
    pub sessions: String,
    /// The audit trail, if this projection writes it (a rebuild does not).
    pub audit: Option<String>,
}

impl Names {
    /// The live collections: `players`, `world`, `sessions`, `audit`.
    pub fn live() -> Self {
        Self {
            players: PLAYERS.into(),
            world: WORLD.into(),
            sessions: SESSIONS.into(),
            audit: Some(trail::AUDIT.into()),
        }
    }

    /// The collections of a rebuild, beside the live ones.
    pub fn rebuild(job: &str) -> Self {
        Self {
            players: format!("{PLAYERS}__rebuild_{job}"),
            world: format!("{WORLD}__rebuild_{job}"),
            sessions: format!("{SESSIONS}__rebuild_{job}"),
            audit: None,
        }
    }
}

/// The players read model.
pub const PLAYERS: &str = "players";
/// The world read model.
pub const WORLD: &str = "world";
/// The sessions read model.
pub const SESSIONS: &str = "sessions";

/// The shard key each collection takes in a sharded MongoDB cluster: a hash of `_id` for all
/// four (the README's "MongoDB at scale" says why). Every write of the projector names its
/// document by `_id` (a filter with `_id` equal to it, or an insert carrying it), so each write
/// goes to one shard, and an upsert is allowed at all (a sharded upsert must name the key). A
/// rebuild shards its fresh collections with whatever key the live ones have.
pub const SHARD_KEYS: &[(&str, &str)] = &[
    (PLAYERS, "_id"),
    (WORLD, "_id"),
    (SESSIONS, "_id"),
    (trail::AUDIT, "_id"),
];

/// What a batch changed, for the caches and the live stream.
#[derive(Debug, Default)]
pub struct Changed {
    /// Players whose documents changed.
    pub players: BTreeSet<PlayerId>,
    /// Regions whose entities changed.
    pub regions: BTreeSet<String>,
    /// Whether any avatar came, went or changed region (the population may have changed).
    pub population: bool,
}

/// Why a batch could not be written, and so what becomes of it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// MongoDB could not be reached or failed as a whole: the batch is retried once this
    /// attempt has ended.
    #[error("MongoDB: {0}")]
    Unavailable(#[from] mongodb::error::Error),
    /// Some writes were refused; these facts (by their index in the batch) are behind them.
    /// Retried a few times, then those facts are dead-lettered.
    #[error("{} writes refused: {reason}", facts.len())]
    Refused {
        /// The facts behind the refused writes.
        facts: BTreeSet<usize>,
        /// The first reason given.
        reason: String,
    },
    /// The data, not the database: these facts (by their index in the batch) make a document
    /// that cannot be written, or touch a stored one that cannot be read. Nothing was written;
    /// retrying cannot help, so they are dead-lettered at once and the rest goes on.
    #[error("{} facts cannot be written: {reason}", facts.len())]
    Unwritable {
        /// The facts.
        facts: BTreeSet<usize>,
        /// Why, for the first of them.
        reason: String,
    },
}

/// A document that cannot be turned into BSON, or read back from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

/// A document written with ids as strings: through JSON, since BSON's own serializer would
/// write the ids as binary UUIDs.
pub fn to_document(value: &impl Serialize) -> Result<Document, DocumentError> {
    let json = serde_json::to_value(value)
        .map_err(|e| DocumentError(format!("cannot encode a document: {e}")))?;
    bson::to_document(&json).map_err(|e| DocumentError(format!("cannot encode a document: {e}")))
}

/// A stored document read back (through JSON, for the same reason).
pub fn from_document<T: DeserializeOwned>(doc: Document) -> Result<T, DocumentError> {
    serde_json::from_value(Bson::Document(doc).into_relaxed_extjson())
        .map_err(|e| DocumentError(format!("cannot read a document: {e}")))
}

/// The documents of `ids` that are stored, by id; those that cannot be read, with why.
struct Loaded<T> {
    docs: Vec<T>,
    unreadable: BTreeMap<String, String>,
}

async fn load<T: DeserializeOwned>(
    db: &Database,
    collection: &str,
    ids: Vec<String>,
) -> Result<Loaded<T>, mongodb::error::Error> {
    let mut loaded = Loaded {
        docs: Vec::new(),
        unreadable: BTreeMap::new(),
    };
    if ids.is_empty() {
        return Ok(loaded);
    }
    let docs: Vec<Document> = db
        .collection::<Document>(collection)
        .find(doc! {"_id": {"$in": ids}})
        .await?
        .try_collect()
        .await?;
    for d in docs {
        let id = d.get_str("_id").map(str::to_owned).unwrap_or_default();
        match from_document(d) {
            Ok(t) => loaded.docs.push(t),
            Err(e) => {
                loaded
                    .unreadable
                    .insert(id.clone(), format!("{collection} {id}: {e}"));
            }
        }
    }
    Ok(loaded)
}

/// The write of one read-model document at `seq`. A document that was not there when the batch
/// read its documents is inserted; one that was is replaced, only over an older `seq`. (On
/// SecantusDB an insert costs a tenth of an upsert, and a replacement two thirds of a `$set`.)
fn guarded(
    namespace: Namespace,
    id: String,
    seq: u64,
    document: Document,
    existed: bool,
) -> WriteModel {
    if !existed {
        // Already there (a retried attempt landed after all): a duplicate key, "already
        // written".
        return WriteModel::InsertOne(
            mongodb::options::InsertOneModel::builder()
                .namespace(namespace)
                .document(document)
                .build(),
        );
    }
    WriteModel::ReplaceOne(
        mongodb::options::ReplaceOneModel::builder()
            .namespace(namespace)
            // Every document is written with its `seq`, so "older than this" is the whole guard;
            // a plain range (no `$or`) keeps it an index lookup on SecantusDB too (an `$or`
            // there made each write about 50 times slower). A newer document makes the upsert
            // an insert of an existing id: a duplicate key, "already written".
            .filter(doc! {"_id": id, "seq": {"$lt": seq as i64}})
            .replacement(document)
            .upsert(true)
            .build(),
    )
}

/// Folds `facts` (in stream order) into the read models named by `names` and writes them, with
/// the audit entries, in one bulk write acknowledged by the journal.
pub async fn apply(
    client: &Client,
    db: &Database,
    names: &Names,
    facts: &[Stored],
) -> Result<Changed, WriteError> {
    let mut player_ids = BTreeSet::new();
    let mut entity_ids = BTreeSet::new();
    for f in facts {
        player_ids.extend(players_of(&f.env.payload));
        entity_ids.extend(entities_of(&f.env.payload));
    }
    let mut players: BTreeMap<PlayerId, Option<PlayerDoc>> =
        player_ids.iter().map(|p| (*p, None)).collect();
    let loaded = load::<PlayerDoc>(
        db,
        &names.players,
        player_ids.iter().map(ToString::to_string).collect(),
    )
    .await?;
    let unreadable_players = loaded.unreadable;
    for d in loaded.docs {
        players.insert(d.id, Some(d));
    }
    let mut entities: BTreeMap<EntityId, Option<EntityDoc>> =
        entity_ids.iter().map(|e| (*e, None)).collect();
    let loaded = load::<EntityDoc>(
        db,
        &names.world,
        entity_ids.iter().map(ToString::to_string).collect(),
    )
    .await?;
    let unreadable_entities = loaded.unreadable;
    for d in loaded.docs {
        entities.insert(d.id, Some(d));
    }
    let session_ids: BTreeSet<String> = facts
        .iter()
        .flat_map(|f| sessions_of(&f.env.payload))
        .collect();
    let mut sessions: BTreeMap<String, Option<SessionDoc>> =
        session_ids.iter().map(|s| (s.clone(), None)).collect();
    let loaded = load::<SessionDoc>(db, &names.sessions, session_ids.into_iter().collect()).await?;
    let unreadable_sessions = loaded.unreadable;
    for d in loaded.docs {
        sessions.insert(d.id.clone(), Some(d));
    }
    // A fact whose stored documents cannot be read cannot be folded into them: it goes to the
    // dead letters with why, before anything of the batch is written.
    let mut unwritable: BTreeMap<usize, String> = BTreeMap::new();
    for (i, f) in facts.iter().enumerate() {
        let why = players_of(&f.env.payload)
            .iter()
            .find_map(|p| unreadable_players.get(&p.to_string()))
            .or_else(|| {
                entities_of(&f.env.payload)
                    .iter()
                    .find_map(|e| unreadable_entities.get(&e.to_string()))
            })
            .or_else(|| {
                sessions_of(&f.env.payload)
                    .iter()
                    .find_map(|s| unreadable_sessions.get(s))
            });
        if let Some(why) = why {
            unwritable.insert(i, format!("a stored document cannot be read: {why}"));
        }
    }
    if !unwritable.is_empty() {
        return Err(unwritable_error(unwritable));
    }

    // Which documents were there before this batch: those are replaced, the rest inserted.
    fn there<K: Clone + Ord, D>(docs: &BTreeMap<K, Option<D>>) -> BTreeSet<K> {
        docs.iter()
            .filter(|(_, d)| d.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }
    let (players_there, entities_there, sessions_there) =
        (there(&players), there(&entities), there(&sessions));
    let mut changed = Changed::default();
    // Which facts each changed document carries, to name them if its write is refused.
    let mut player_facts: BTreeMap<PlayerId, Vec<usize>> = BTreeMap::new();
    let mut entity_facts: BTreeMap<EntityId, Vec<usize>> = BTreeMap::new();
    let mut session_facts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, f) in facts.iter().enumerate() {
        for session in sessions_of(&f.env.payload) {
            let doc = sessions.entry(session.clone()).or_insert(None);
            if fold_session(doc, &session, f) {
                session_facts.entry(session).or_default().push(i);
            }
        }
        for p in players_of(&f.env.payload) {
            let doc = players.entry(p).or_insert(None);
            let (online, region) = doc
                .as_ref()
                .map(|d| (d.state.online, d.state.region.clone()))
                .unwrap_or((false, None));
            if fold_player(doc, p, f) {
                player_facts.entry(p).or_default().push(i);
                changed.players.insert(p);
                if doc
                    .as_ref()
                    .map(|d| (d.state.online, d.state.region.clone()))
                    != Some((online, region))
                {
                    changed.population = true;
                }
            }
        }
        for e in entities_of(&f.env.payload) {
            let username = players
                .get(&PlayerId::from_uuid(*e.as_uuid()))
                .and_then(|d| d.as_ref())
                .map(|d| d.state.username.clone());
            let doc = entities.entry(e).or_insert(None);
            let before = doc.as_ref().and_then(|d| d.state.region.clone());
            if fold_entity(doc, e, f, username.as_deref()) {
                entity_facts.entry(e).or_default().push(i);
                if let Some(r) = before {
                    changed.regions.insert(r.to_string());
                }
                if let Some(r) = doc.as_ref().and_then(|d| d.state.region.clone()) {
                    changed.regions.insert(r.to_string());
                }
            }
        }
    }

    let ns = |coll: &str| Namespace::new(db.name(), coll);
    let mut models = Vec::new();
    let mut behind: Vec<Vec<usize>> = Vec::new();
    // A document that cannot be encoded names the facts folded into it as unwritable.
    let mut add = |encoded: Result<Document, DocumentError>,
                   model: &dyn Fn(Document) -> WriteModel,
                   idx: &[usize]| match encoded {
        Ok(d) => {
            models.push(model(d));
            behind.push(idx.to_vec());
        }
        Err(e) => {
            for i in idx {
                unwritable.entry(*i).or_insert_with(|| e.to_string());
            }
        }
    };
    for (p, idx) in &player_facts {
        if let Some(Some(d)) = players.get(p) {
            let there = players_there.contains(p);
            add(
                to_document(d),
                &|doc| guarded(ns(&names.players), p.to_string(), d.seq, doc, there),
                idx,
            );
        }
    }
    for (e, idx) in &entity_facts {
        if let Some(Some(d)) = entities.get(e) {
            let there = entities_there.contains(e);
            add(
                to_document(d),
                &|doc| guarded(ns(&names.world), e.to_string(), d.seq, doc, there),
                idx,
            );
        }
    }
    for (id, idx) in &session_facts {
        if let Some(Some(d)) = sessions.get(id) {
            let there = sessions_there.contains(id);
            add(
                to_document(d),
                &|doc| guarded(ns(&names.sessions), id.clone(), d.seq, doc, there),
                idx,
            );
        }
    }
    if let Some(audit) = &names.audit {
        for (i, f) in facts.iter().enumerate() {
            add(
                trail::fact_entry(f),
                &|doc| {
                    WriteModel::InsertOne(
                        mongodb::options::InsertOneModel::builder()
                            .namespace(ns(audit))
                            .document(doc)
                            .build(),
                    )
                },
                &[i],
            );
        }
    }
    if !unwritable.is_empty() {
        return Err(unwritable_error(unwritable));
    }
    write(client, models, &behind).await?;
    if let Some(last) = facts.last() {
        mark(db, &names.players, last.seq).await?;
    }
    Ok(changed)
}

fn unwritable_error(unwritable: BTreeMap<usize, String>) -> WriteError {
    let reason = unwritable.values().next().cloned().unwrap_or_default();
    WriteError::Unwritable {
        facts: unwritable.into_keys().collect(),
        reason,
    }
}

/// The collection where each projection records how far it has written.
pub const PROGRESS: &str = "projector_progress";

/// Records that `projection` has written everything up to `seq`, with `j: true`.
///
/// Also the batch's durability barrier: SecantusDB 0.7 acknowledges a client bulk write without
/// journaling it even when asked to (seen here: a `kill -9` right after lost it), while a
/// journaled write to one collection flushes everything written before it. So a batch is
/// acknowledged on the bus only after this write, on `mongod` and on SecantusDB alike.
pub async fn mark(db: &Database, projection: &str, seq: u64) -> Result<(), WriteError> {
    db.collection::<Document>(PROGRESS)
        .update_one(
            doc! {"_id": projection},
            doc! {"$max": {"seq": seq as i64}, "$set": {"at": bson::DateTime::now()}},
        )
        .upsert(true)
        .write_concern(WriteConcern::builder().journal(true).build())
        .await?;
    Ok(())
}

/// One unordered bulk write, journaled; duplicate keys are "already written".
pub async fn write(
    client: &Client,
    models: Vec<WriteModel>,
    behind: &[Vec<usize>],
) -> Result<(), WriteError> {
    if models.is_empty() {
        return Ok(());
    }
    let result = client
        .bulk_write(models)
        .ordered(false)
        .write_concern(WriteConcern::builder().journal(true).build())
        .await;
    let Err(e) = result else {
        return Ok(());
    };
    let mongodb::error::ErrorKind::BulkWrite(bulk) = &*e.kind else {
        return Err(WriteError::Unavailable(e));
    };
    if !bulk.write_concern_errors.is_empty() {
        return Err(WriteError::Unavailable(e));
    }
    let refused: Vec<_> = bulk
        .write_errors
        .iter()
        .filter(|(_, w)| w.code != 11000)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let reason = refused
        .first()
        .map(|(_, w)| w.message.clone())
        .unwrap_or_default();
    let facts = refused
        .iter()
        .flat_map(|(i, _)| behind.get(**i).cloned().unwrap_or_default())
        .collect();
    Err(WriteError::Refused { facts, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(coll: &str) -> Namespace {
        Namespace::new("game", coll)
    }

    /// The document a write goes to, by the shard key: `Err` when the write does not name it.
    fn key_of(write: &WriteModel) -> Result<Bson, String> {
        match write {
            WriteModel::InsertOne(m) => m.document.get("_id").cloned(),
            WriteModel::ReplaceOne(m) => m.filter.get("_id").cloned(),
            other => return Err(format!("a write the projector does not make: {other:?}")),
        }
        .filter(|id| matches!(id, Bson::String(_)))
        .ok_or_else(|| format!("{write:?} does not name its document by _id"))
    }

    #[test]
    fn every_write_names_its_document_by_the_shard_key() {
        for (coll, key) in SHARD_KEYS {
            assert_eq!(*key, "_id", "{coll}");
            for existed in [false, true] {
                let write = guarded(
                    namespace(coll),
                    "p-1".to_owned(),
                    7,
                    doc! {"_id": "p-1", "seq": 7_i64},
                    existed,
                );
                assert_eq!(key_of(&write), Ok(Bson::String("p-1".into())), "{coll}");
            }
        }
        let audit = trail::entry(
            &serde_json::json!({"id": "0193-event", "actor": {"id": "p-1"}}),
            &trail::Origin::default(),
            0,
        )
        .expect("an audit document");
        assert_eq!(audit.get_str("_id"), Ok("0193-event"));
        let names = Names::live();
        let written = [
            names.players,
            names.world,
            names.sessions,
            names.audit.expect("the live projection writes the audit"),
        ];
        for coll in written {
            assert!(
                SHARD_KEYS.iter().any(|(c, _)| *c == coll),
                "{coll} has no shard key"
            );
        }
    }
}
