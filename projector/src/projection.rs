//! Applying a batch of facts to the read models (and the audit trail).
//!
//! The documents a batch touches are read once (or taken from those the writer remembers, see
//! [`Writer`]), the batch's facts are folded into them in stream order (see [`crate::models`]),
//! and each changed document is written once, so that a write of an older state never lands
//! over a newer one: read and written in one transaction where the server has them, otherwise
//! guarded by the document's `seq`; another writer met on the way (a conflict, a duplicate key,
//! a changed writer's entry) has the batch read and folded again. The audit entries,
//! unique on the event id, follow, where a duplicate key means "already there". Any other
//! failure of one write is reported with the facts behind it.

use std::collections::{BTreeMap, BTreeSet};

use futures::TryStreamExt;
use moka::sync::Cache;
use mongodb::bson::{self, Document, doc};
use mongodb::error::TRANSIENT_TRANSACTION_ERROR;
use mongodb::options::{WriteConcern, WriteModel};
use mongodb::{Client, ClientSession, Database, Namespace};
use schemas::read_model::collection::{AUDIT, PLAYERS, PROGRESS, SESSIONS, WORLD};
use schemas::read_model::{
    DocumentError, EntityDoc, PlayerDoc, SessionDoc, from_document, to_document,
};
use schemas::{EntityId, PlayerId};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::models::{
    Stored, entities_of, fold_entity, fold_player, fold_session, players_of, sessions_of,
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
            audit: Some(AUDIT.into()),
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

/// The shard key each collection takes in a sharded MongoDB cluster: a hash of `_id` for all
/// four (the README's "MongoDB at scale" says why). Every write of the projector names its
/// document by `_id` (a filter with `_id` equal to it, or an insert carrying it), so each write
/// goes to one shard, and an upsert is allowed at all (a sharded upsert must name the key). A
/// rebuild shards its fresh collections with whatever key the live ones have.
pub const SHARD_KEYS: &[(&str, &str)] = &[
    (PLAYERS, "_id"),
    (WORLD, "_id"),
    (SESSIONS, "_id"),
    (AUDIT, "_id"),
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

/// The documents of `ids` that are stored, by id; those that cannot be read, with why.
struct Loaded<T> {
    docs: Vec<T>,
    unreadable: BTreeMap<String, String>,
}

/// Reads the stored documents of `ids`, inside `session`'s transaction when there is one.
async fn load<T: DeserializeOwned>(
    db: &Database,
    collection: &str,
    ids: Vec<String>,
    session: Option<&mut ClientSession>,
) -> Result<Loaded<T>, mongodb::error::Error> {
    let mut loaded = Loaded {
        docs: Vec::new(),
        unreadable: BTreeMap::new(),
    };
    if ids.is_empty() {
        return Ok(loaded);
    }
    let coll = db.collection::<Document>(collection);
    let filter = doc! {"_id": {"$in": ids}};
    let docs: Vec<Document> = match session {
        Some(session) => {
            let mut cursor = coll.find(filter).session(&mut *session).await?;
            cursor.stream(session).try_collect().await?
        }
        None => coll.find(filter).await?.try_collect().await?,
    };
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

/// What keeps a write of an older state from landing over a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The write's filter: only over an older `seq`. For servers without transactions.
    Seq,
    /// The transaction the documents were read in (or, for those remembered, the writer's
    /// entry was checked in, see [`Writer`]): a document written by anyone else since then is
    /// a write conflict, and the whole batch is read and folded again. The filter
    /// names the document alone, which SecantusDB finds by its primary key; a `seq` range
    /// beside it sends every write through the query planner (about half the write rate with
    /// the read models' secondary indexes).
    Transaction,
}

/// The write of one read-model document at `seq`, kept from overwriting a newer state by
/// `guard`.
///
/// In a transaction, a document that was not there when the batch read it is inserted (on
/// SecantusDB an insert costs a tenth of an upsert): another writer's copy, there now, is a
/// duplicate key that aborts the transaction, and the batch is read again. Outside one, every
/// document is an upsert guarded by `seq`: an insert could not tell "already written" from "an
/// older copy another writer made meanwhile".
fn guarded(
    namespace: Namespace,
    id: String,
    seq: u64,
    document: Document,
    existed: bool,
    guard: Guard,
) -> WriteModel {
    use mongodb::options::{InsertOneModel, ReplaceOneModel};
    match guard {
        Guard::Transaction if !existed => WriteModel::InsertOne(
            InsertOneModel::builder()
                .namespace(namespace)
                .document(document)
                .build(),
        ),
        Guard::Transaction => WriteModel::ReplaceOne(
            ReplaceOneModel::builder()
                .namespace(namespace)
                .filter(doc! {"_id": id})
                .replacement(document)
                .build(),
        ),
        Guard::Seq => WriteModel::ReplaceOne(
            ReplaceOneModel::builder()
                .namespace(namespace)
                // Every document is written with its `seq`, so "older than this" is the whole
                // guard; a plain range (no `$or`) keeps it an index lookup on SecantusDB too (an
                // `$or` there made each write about 50 times slower). A newer document makes
                // the upsert an insert of an existing id: a duplicate key, and the batch is
                // read again (see `guarded_by_seq`).
                .filter(doc! {"_id": id, "seq": {"$lt": seq as i64}})
                .replacement(document)
                .upsert(true)
                .build(),
        ),
    }
}

/// The documents a batch of facts touches.
struct Touched {
    players: BTreeSet<PlayerId>,
    entities: BTreeSet<EntityId>,
    sessions: BTreeSet<String>,
}

impl Touched {
    fn of(facts: &[Stored]) -> Self {
        let mut touched = Self {
            players: BTreeSet::new(),
            entities: BTreeSet::new(),
            sessions: BTreeSet::new(),
        };
        for f in facts {
            touched.players.extend(players_of(&f.env.payload));
            touched.entities.extend(entities_of(&f.env.payload));
            touched.sessions.extend(sessions_of(&f.env.payload));
        }
        touched
    }
}

/// Writes and the facts behind each of them (by index in the batch), to name them when a write
/// is refused.
#[derive(Default)]
struct Writes {
    models: Vec<WriteModel>,
    behind: Vec<Vec<usize>>,
    /// How many of them replace a document that was there before the batch (in a
    /// transaction, each must match one).
    replacements: i64,
}

/// The read-model writes of a batch, what they change, and the documents after it.
struct Folded {
    writes: Writes,
    changed: Changed,
    current: Current,
}

/// The documents a batch touches, by id: `None` where there is none.
#[derive(Default)]
struct Current {
    players: BTreeMap<PlayerId, Option<PlayerDoc>>,
    entities: BTreeMap<EntityId, Option<EntityDoc>>,
    sessions: BTreeMap<String, Option<SessionDoc>>,
}

/// Reads the documents `facts` touch that `known` does not hold (in `session`'s transaction,
/// when there is one), folds the facts into them in stream order, and returns a write of each
/// changed document.
async fn fold(
    db: &Database,
    names: &Names,
    facts: &[Stored],
    touched: &Touched,
    known: Current,
    mut session: Option<&mut ClientSession>,
) -> Result<Folded, WriteError> {
    let guard = if session.is_some() {
        Guard::Transaction
    } else {
        Guard::Seq
    };
    let Current {
        mut players,
        mut entities,
        mut sessions,
    } = known;
    fn unknown<K: Ord + ToString, D>(known: &BTreeMap<K, D>, ids: &BTreeSet<K>) -> Vec<String> {
        ids.iter()
            .filter(|id| !known.contains_key(*id))
            .map(ToString::to_string)
            .collect()
    }
    let loaded = load::<PlayerDoc>(
        db,
        &names.players,
        unknown(&players, &touched.players),
        session.as_deref_mut(),
    )
    .await?;
    let unreadable_players = loaded.unreadable;
    for p in &touched.players {
        players.entry(*p).or_insert(None);
    }
    for d in loaded.docs {
        players.insert(d.id, Some(d));
    }
    let loaded = load::<EntityDoc>(
        db,
        &names.world,
        unknown(&entities, &touched.entities),
        session.as_deref_mut(),
    )
    .await?;
    let unreadable_entities = loaded.unreadable;
    for e in &touched.entities {
        entities.entry(*e).or_insert(None);
    }
    for d in loaded.docs {
        entities.insert(d.id, Some(d));
    }
    let loaded = load::<SessionDoc>(
        db,
        &names.sessions,
        unknown(&sessions, &touched.sessions),
        session,
    )
    .await?;
    let unreadable_sessions = loaded.unreadable;
    for s in &touched.sessions {
        sessions.entry(s.clone()).or_insert(None);
    }
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
    let mut writes = Writes::default();
    // A document that cannot be encoded names the facts folded into it as unwritable.
    let mut add = |encoded: Result<Document, DocumentError>,
                   model: &dyn Fn(Document) -> WriteModel,
                   idx: &[usize]| match encoded {
        Ok(d) => {
            let model = model(d);
            if matches!(model, WriteModel::ReplaceOne(_)) {
                writes.replacements += 1;
            }
            writes.models.push(model);
            writes.behind.push(idx.to_vec());
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
                &|doc| guarded(ns(&names.players), p.to_string(), d.seq, doc, there, guard),
                idx,
            );
        }
    }
    for (e, idx) in &entity_facts {
        if let Some(Some(d)) = entities.get(e) {
            let there = entities_there.contains(e);
            add(
                to_document(d),
                &|doc| guarded(ns(&names.world), e.to_string(), d.seq, doc, there, guard),
                idx,
            );
        }
    }
    for (id, idx) in &session_facts {
        if let Some(Some(d)) = sessions.get(id) {
            let there = sessions_there.contains(id);
            add(
                to_document(d),
                &|doc| guarded(ns(&names.sessions), id.clone(), d.seq, doc, there, guard),
                idx,
            );
        }
    }
    if !unwritable.is_empty() {
        return Err(unwritable_error(unwritable));
    }
    // What the server holds once the batch is written: the documents that were there and those
    // written. One the fold made up without a change to write (a blow struck by a player who
    // has no document, say) is not there: none.
    fn stored<K: Ord, D>(
        docs: BTreeMap<K, Option<D>>,
        there: &BTreeSet<K>,
        written: &BTreeMap<K, Vec<usize>>,
    ) -> BTreeMap<K, Option<D>> {
        docs.into_iter()
            .map(|(k, d)| {
                let kept = there.contains(&k) || written.contains_key(&k);
                (k, d.filter(|_| kept))
            })
            .collect()
    }
    Ok(Folded {
        writes,
        changed,
        current: Current {
            players: stored(players, &players_there, &player_facts),
            entities: stored(entities, &entities_there, &entity_facts),
            sessions: stored(sessions, &sessions_there, &session_facts),
        },
    })
}

/// The audit entries of `facts` (one per fact, in order), when `names` writes the audit.
fn audit_entries(names: &Names, facts: &[Stored]) -> Result<Vec<Document>, WriteError> {
    if names.audit.is_none() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::with_capacity(facts.len());
    let mut unwritable = BTreeMap::new();
    for (i, f) in facts.iter().enumerate() {
        match trail::fact_entry(f) {
            Ok(doc) => entries.push(doc),
            Err(e) => {
                unwritable.insert(i, e.to_string());
            }
        }
    }
    if !unwritable.is_empty() {
        return Err(unwritable_error(unwritable));
    }
    Ok(entries)
}

/// How many times a batch is read, folded and written again at once when its transaction meets
/// another writer, or finds the projection not as it read it, before the batch waits like any
/// failed write.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Folds `facts` (in stream order) into the read models named by `names` and writes them, then
/// the audit entries, then the projection's position, each acknowledged by the journal.
///
/// Where the server has transactions (a replica set, a sharded cluster, SecantusDB), the
/// documents are read (those the writer does not remember) and written in one transaction.
/// Elsewhere (a standalone `mongod`) they
/// are read, then written in one bulk write guarded by `seq`. Run again, a batch changes
/// nothing: every fold skips what a document already holds, and the audit entries are there.
pub async fn apply(
    client: &Client,
    db: &Database,
    names: &Names,
    facts: &[Stored],
    writer: &mut Writer,
) -> Result<Changed, WriteError> {
    let touched = Touched::of(facts);
    let audit = audit_entries(names, facts)?;
    let transactions = writer.has_transactions(db).await?;
    let mut attempt = 0;
    let changed = loop {
        attempt += 1;
        let outcome = if transactions {
            in_transaction(client, db, names, facts, &touched, writer).await
        } else {
            guarded_by_seq(client, db, names, facts, &touched).await
        };
        match outcome {
            Ok(changed) => break changed,
            Err(Failed::Conflict(e)) if attempt >= CONFLICT_ATTEMPTS => {
                writer.forget();
                return Err(WriteError::Unavailable(e));
            }
            Err(Failed::Conflict(e)) => {
                // Two writers at once: a projector that lost its lease and the one that took
                // it, for a moment, or one that should not be running.
                writer.forget_documents();
                warn!(attempt, error = %e, "another writer changed the batch's documents; reading them again");
            }
            Err(Failed::Stale) if attempt >= CONFLICT_ATTEMPTS => {
                // Read afresh each time and still not what the server holds: something else
                // removes what the batch reads (a rebuild's switch-over, an operator), and
                // trying again at once would only keep the server busy.
                writer.forget();
                return Err(WriteError::Unavailable(mongodb::error::Error::from(
                    std::io::Error::other(format!(
                        "the projection changed under the batch {attempt} times in a row"
                    )),
                )));
            }
            Err(Failed::Stale) => {
                writer.forget_documents();
                tracing::info!(
                    writer = writer.name,
                    "the projection changed since this writer's last batch; reading its documents again"
                );
            }
            Err(Failed::Other(e)) => {
                // Whatever went wrong, the next attempt asks the server afresh what it runs
                // (it may have become, or stopped being, a replica set) in a new session.
                writer.forget();
                return Err(e);
            }
        }
    };
    if let Some(collection) = &names.audit {
        insert(db, collection, audit).await?;
    }
    if let Some(last) = facts.last() {
        mark(db, &names.players, last.seq).await?;
    }
    Ok(changed)
}

/// The session a projection writes its transactions in, registered in [`PROGRESS`] under the
/// projection's name.
///
/// A process killed between a transaction's writes and its commit leaves the transaction open
/// on the server, holding its documents until the server's transaction lifetime ends (60 s on
/// `mongod` and SecantusDB): every write of them meets a conflict until then. So the next
/// writer of the same name ends the session registered before it (`killSessions`, which aborts
/// its transaction) before it registers its own, and writes on at once.
///
/// The writer also remembers the documents its last transactions read or wrote ([`Known`]), so
/// that a batch reads from the server only those it has not met (reading a document costs
/// SecantusDB about half of what writing it does). They are what the server holds only while
/// nobody else writes the projection and every commit of this writer lasted. So every
/// transaction first counts itself in the writer's entry in [`PROGRESS`] (`writes`, and
/// `tenure`: this writer's random id), which also fixes the transaction's snapshot, and sees
/// the entry as it was: if it is not as this writer's last commit left it (another projector
/// wrote meanwhile, a rebuild [`disown`]ed the documents, a commit the server acknowledged was
/// lost in a crash), the writer forgets all it remembers, and a batch that relied on any of it
/// is aborted and read again. Two writers' transactions at once both change the entry and meet
/// as a write conflict. A replacement of a document read or remembered as there that matches
/// none aborts the batch the same way. Remembered documents are used only in transactions:
/// without them the check and the writes cannot be made one step.
pub struct Writer {
    name: String,
    session: Option<ClientSession>,
    /// Whether the server runs transactions, asked once and forgotten with the session.
    transactions: Option<bool>,
    /// The documents as this writer's last transactions left them.
    known: Known,
    /// This writer's id in its entry in [`PROGRESS`].
    tenure: String,
    /// The entry's count of writes after this writer's last commit, and the database and
    /// collections it wrote: what `known` holds is of those, as they were then.
    last: Option<(i64, String)>,
}

/// How many documents of each read model a writer remembers, unless told otherwise.
pub const KNOWN_DOCUMENTS: u64 = 50_000;

impl Writer {
    /// A writer named `name`: one per projection (its collections), so that a writer ends only
    /// the session its predecessor left, and knows when another wrote the projection. It
    /// remembers up to [`KNOWN_DOCUMENTS`] documents of each read model.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            session: None,
            transactions: None,
            known: Known::new(KNOWN_DOCUMENTS),
            tenure: schemas::EventId::new().to_string(),
            last: None,
        }
    }

    /// The same writer remembering up to `documents` documents of each read model (none: every
    /// batch reads all it touches from the server).
    pub fn remembering(mut self, documents: u64) -> Self {
        self.known = Known::new(documents);
        self
    }

    /// Forgets the documents this writer remembers: the next batch reads all it touches.
    pub fn forget_documents(&mut self) {
        self.known.forget();
        self.last = None;
    }

    /// Drops the session (which aborts a transaction the driver still holds open on it), what
    /// the server was found to run and the documents remembered; the next use asks, registers
    /// and reads again.
    fn forget(&mut self) {
        self.session = None;
        self.transactions = None;
        self.forget_documents();
    }

    /// Whether the server runs multi-document transactions: a replica-set member or a `mongos`
    /// does, a standalone server does not. (The driver cannot tell: it judges by the protocol
    /// version alone.) Asked on first use only: a `hello` costs about 1 % of a batch.
    async fn has_transactions(&mut self, db: &Database) -> Result<bool, mongodb::error::Error> {
        if let Some(known) = self.transactions {
            return Ok(known);
        }
        let hello = db.run_command(doc! {"hello": 1}).await?;
        if hello.get_bool("isreplicaset") == Ok(true) {
            // A member of a replica set not yet (or no longer) configured: it takes no writes.
            return Err(std::io::Error::other("a replica-set member without its set").into());
        }
        let known = hello.contains_key("setName") || hello.get_str("msg") == Ok("isdbgrid");
        if !known {
            tracing::info!(
                writer = self.name,
                "the server runs no transactions: each document is written guarded by its seq"
            );
        }
        Ok(*self.transactions.insert(known))
    }

    /// The session, started and registered on first use.
    async fn session(
        &mut self,
        client: &Client,
        db: &Database,
    ) -> Result<&mut ClientSession, mongodb::error::Error> {
        let session = match self.session.take() {
            Some(session) => session,
            None => self.register(client, db).await?,
        };
        Ok(self.session.insert(session))
    }

    async fn register(
        &self,
        client: &Client,
        db: &Database,
    ) -> Result<ClientSession, mongodb::error::Error> {
        let progress = db.collection::<Document>(PROGRESS);
        let key = writer_key(&self.name);
        let before = progress.find_one(doc! {"_id": &key}).await?;
        if let Some(lsid) = before.as_ref().and_then(|d| d.get_document("lsid").ok()) {
            let killed = client
                .database("admin")
                .run_command(doc! {"killSessions": [lsid.clone()]})
                .await;
            if let Err(e) = killed {
                // Not fatal: a transaction it left open ends with the server's lifetime for
                // them, and until then its documents are conflicts, retried.
                warn!(writer = self.name, error = %e, "cannot end the session of the writer before");
            }
        }
        let session = client.start_session().await?;
        progress
            .update_one(
                doc! {"_id": &key},
                doc! {"$set": {"lsid": session.id().clone(), "at": bson::DateTime::now()}},
            )
            .upsert(true)
            .write_concern(WriteConcern::builder().journal(true).build())
            .await?;
        Ok(session)
    }
}

/// The `_id` of a writer's entry in [`PROGRESS`].
fn writer_key(name: &str) -> String {
    format!("writer:{name}")
}

/// Tells every writer named `name` that the projection's documents were changed by someone else
/// (a rebuild dropping or replacing its collections): each, wherever it runs, forgets what it
/// remembers at its next transaction.
pub async fn disown(db: &Database, name: &str) -> Result<(), mongodb::error::Error> {
    db.collection::<Document>(PROGRESS)
        .update_one(
            doc! {"_id": writer_key(name)},
            doc! {
                "$set": {"tenure": schemas::EventId::new().to_string()},
                "$inc": {"writes": 1_i64},
            },
        )
        .upsert(true)
        .write_concern(WriteConcern::builder().journal(true).build())
        .await?;
    Ok(())
}

/// Counts a transaction of the writer `name` (whose id is `tenure`) in its entry in
/// [`PROGRESS`], in the transaction on `session`, and returns the entry as it was before:
/// its count of writes and the id of the writer that last changed it (none before the first).
/// The count always changes, so two writers' transactions at once meet as a write conflict.
async fn count_write(
    db: &Database,
    name: &str,
    tenure: &str,
    session: &mut ClientSession,
) -> Result<Option<(i64, String)>, mongodb::error::Error> {
    let before = db
        .collection::<Document>(PROGRESS)
        .find_one_and_update(
            doc! {"_id": writer_key(name)},
            doc! {"$set": {"tenure": tenure}, "$inc": {"writes": 1_i64}},
        )
        .upsert(true)
        .return_document(mongodb::options::ReturnDocument::Before)
        .session(session)
        .await?;
    Ok(before.map(|d| {
        let writes = integer(&d, "writes").unwrap_or(0);
        (writes, d.get_str("tenure").unwrap_or_default().to_owned())
    }))
}

/// Read-model documents by id, up to a number of each kind (moka's policy decides which go).
struct Known {
    players: Option<Cache<PlayerId, PlayerDoc>>,
    entities: Option<Cache<EntityId, EntityDoc>>,
    sessions: Option<Cache<String, SessionDoc>>,
}

impl Known {
    fn new(capacity: u64) -> Self {
        Self {
            players: (capacity > 0).then(|| Cache::new(capacity)),
            entities: (capacity > 0).then(|| Cache::new(capacity)),
            sessions: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    /// The remembered documents among those `touched`.
    fn of(&self, touched: &Touched) -> Current {
        fn found<K, D>(cache: Option<&Cache<K, D>>, ids: &BTreeSet<K>) -> BTreeMap<K, Option<D>>
        where
            K: Clone + Ord + std::hash::Hash + Eq + Send + Sync + 'static,
            D: Clone + Send + Sync + 'static,
        {
            let Some(cache) = cache else {
                return BTreeMap::new();
            };
            ids.iter()
                .filter_map(|id| Some((id.clone(), Some(cache.get(id)?))))
                .collect()
        }
        Current {
            players: found(self.players.as_ref(), &touched.players),
            entities: found(self.entities.as_ref(), &touched.entities),
            sessions: found(self.sessions.as_ref(), &touched.sessions),
        }
    }

    /// Remembers the documents as a committed batch left them on the server; one it left with
    /// none is forgotten, to be read again.
    fn remember(&self, current: Current) {
        fn keep<K, D>(cache: Option<&Cache<K, D>>, docs: BTreeMap<K, Option<D>>)
        where
            K: Clone + Ord + std::hash::Hash + Eq + Send + Sync + 'static,
            D: Clone + Send + Sync + 'static,
        {
            let Some(cache) = cache else {
                return;
            };
            for (id, doc) in docs {
                match doc {
                    Some(doc) => cache.insert(id, doc),
                    None => cache.invalidate(&id),
                }
            }
        }
        keep(self.players.as_ref(), current.players);
        keep(self.entities.as_ref(), current.entities);
        keep(self.sessions.as_ref(), current.sessions);
    }

    fn forget(&self) {
        if let Some(c) = &self.players {
            c.invalidate_all();
        }
        if let Some(c) = &self.entities {
            c.invalidate_all();
        }
        if let Some(c) = &self.sessions {
            c.invalidate_all();
        }
    }
}

/// One attempt in a transaction on `writer`'s session: reads, folds, writes, commits.
async fn in_transaction(
    client: &Client,
    db: &Database,
    names: &Names,
    facts: &[Stored],
    touched: &Touched,
    writer: &mut Writer,
) -> Result<Changed, Failed> {
    // What is remembered is of the collections last written: none of another's.
    let scope = format!(
        "{}.{}.{}.{}",
        db.name(),
        names.players,
        names.world,
        names.sessions
    );
    if writer.last.as_ref().is_some_and(|(_, s)| *s != scope) {
        writer.forget_documents();
    }
    let mut known = writer.known.of(touched);
    let relies =
        !(known.players.is_empty() && known.entities.is_empty() && known.sessions.is_empty());
    let expected = writer.last.as_ref().map(|(writes, _)| *writes);
    let tenure = writer.tenure.clone();
    let name = writer.name.clone();
    let session = writer
        .session(client, db)
        .await
        .map_err(|e| Failed::Other(e.into()))?;
    let started = session
        .start_transaction()
        .write_concern(WriteConcern::builder().journal(true).build())
        .await;
    if let Err(e) = started {
        // The session is in a state this process cannot see into (a write panicked mid-
        // transaction, say): the next attempt registers a new one, ending this one.
        writer.forget();
        return Err(Failed::Other(e.into()));
    }
    let before = match count_write(db, &name, &tenure, session).await {
        Ok(before) => before,
        Err(e) => {
            let _ = session.abort_transaction().await;
            return Err(if is_conflict(&e) {
                Failed::Conflict(e)
            } else {
                Failed::Other(e.into())
            });
        }
    };
    let writes = before.as_ref().map_or(0, |(writes, _)| *writes);
    let as_left = expected == Some(writes) && before.is_some_and(|(_, t)| t == tenure);
    if !as_left && relies {
        let _ = session.abort_transaction().await;
        return Err(Failed::Stale);
    }
    if !as_left {
        // Nothing remembered is used by this batch; nothing of it may be used after it either.
        known = Current::default();
    }
    let outcome = transaction(client, db, names, facts, touched, known, session).await;
    if !as_left {
        writer.forget_documents();
    }
    let (changed, current) = outcome?;
    writer.known.remember(current);
    writer.last = Some((writes + 1, scope));
    Ok(changed)
}

/// One attempt without a transaction: reads, folds, and writes each document by an upsert
/// guarded by its `seq`. A duplicate key there is a newer document, or another writer's copy
/// created between this write's look and its insert, which may be older: either way the batch
/// is read and folded again (the fold then skips what is already there).
async fn guarded_by_seq(
    client: &Client,
    db: &Database,
    names: &Names,
    facts: &[Stored],
    touched: &Touched,
) -> Result<Changed, Failed> {
    let folded = fold(db, names, facts, touched, Current::default(), None)
        .await
        .map_err(Failed::Other)?;
    match write(client, folded.writes.models, &folded.writes.behind).await {
        Ok(None) => Ok(folded.changed),
        Ok(Some(duplicates)) => Err(Failed::Conflict(duplicates)),
        Err(e) => Err(Failed::Other(e)),
    }
}

/// Why a transaction did not commit.
enum Failed {
    /// Another writer touched the same documents: read and fold again.
    Conflict(mongodb::error::Error),
    /// What this writer remembers, or a document it read as there, is not what the server
    /// holds (another writer wrote the projection since its last batch, a rebuild replaced it,
    /// a commit was lost): forget it all, read and fold again.
    Stale,
    /// Anything else.
    Other(WriteError),
}

/// One attempt: reads, folds and writes the read models in the transaction started on
/// `session`, and commits it; aborts it on any failure.
async fn transaction(
    client: &Client,
    db: &Database,
    names: &Names,
    facts: &[Stored],
    touched: &Touched,
    known: Current,
    session: &mut ClientSession,
) -> Result<(Changed, Current), Failed> {
    let outcome = async {
        let folded = fold(db, names, facts, touched, known, Some(&mut *session))
            .await
            .map_err(|e| match e {
                // A read in a transaction another writer's conflict or a killed session ended.
                WriteError::Unavailable(e) if is_conflict(&e) => Failed::Conflict(e),
                e => Failed::Other(e),
            })?;
        if !folded.writes.models.is_empty() {
            let written = client
                .bulk_write(folded.writes.models)
                .ordered(false)
                .session(&mut *session)
                .await;
            match written {
                Err(e) => return Err(refused_in_transaction(e, &folded.writes.behind)),
                // A document read, or remembered, as there is gone: whatever removed it, what
                // was folded is not what the server holds.
                Ok(w) if w.matched_count < folded.writes.replacements => return Err(Failed::Stale),
                Ok(_) => {}
            }
        }
        session.commit_transaction().await.map_err(|e| {
            if is_conflict(&e) {
                Failed::Conflict(e)
            } else {
                Failed::Other(e.into())
            }
        })?;
        Ok((folded.changed, folded.current))
    }
    .await;
    if outcome.is_err() {
        // The server has usually aborted it already; this ends it on the client's side too.
        let _ = session.abort_transaction().await;
    }
    outcome
}

/// A failed write in a transaction: the transaction is aborted, so nothing of it is written.
/// Another writer's document (a duplicate key, a write conflict) is a conflict to read again;
/// any other refusal names the facts behind it.
fn refused_in_transaction(e: mongodb::error::Error, behind: &[Vec<usize>]) -> Failed {
    /// A duplicate key, a write conflict, and what a write after the transaction's abort is
    /// answered.
    const CONFLICTS: [i32; 3] = [DUPLICATE_KEY, 112, 251];
    // A refusal first: it aborted the transaction, so later writes of the same bulk write may
    // carry the transient label without being the cause.
    if let mongodb::error::ErrorKind::BulkWrite(bulk) = &*e.kind {
        let refused = refusals(
            bulk.write_errors
                .iter()
                .map(|(i, w)| (*i, w.code, w.message.as_str())),
            &CONFLICTS,
            |i| behind.get(i).cloned().unwrap_or_default(),
        );
        if let Err(refused) = refused {
            return Failed::Other(refused);
        }
        if !bulk.write_errors.is_empty() {
            return Failed::Conflict(e);
        }
    }
    if is_conflict(&e) {
        return Failed::Conflict(e);
    }
    Failed::Other(WriteError::Unavailable(e))
}

/// Whether a failure in a transaction is another writer's doing (a write conflict, a killed
/// session), to be read again at once, rather than the server out of reach, to be waited for.
/// The driver labels both transient.
fn is_conflict(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    /// What a server answers while it cannot take writes: host or network trouble, not (or no
    /// longer) the primary, stepping down, shutting down.
    const AWAY: [i32; 10] = [6, 7, 89, 91, 189, 9001, 10107, 11600, 11602, 13435];
    // The error, and the errors it wraps (a bulk write cut short carries the I/O error inside).
    let mut causes = std::iter::successors(Some(e), |e| {
        std::error::Error::source(*e)?.downcast_ref::<mongodb::error::Error>()
    });
    let away = causes.any(|e| match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(c) => AWAY.contains(&c.code),
        _ => false,
    });
    e.contains_label(TRANSIENT_TRANSACTION_ERROR) && !away
}

fn unwritable_error(unwritable: BTreeMap<usize, String>) -> WriteError {
    let reason = unwritable.values().next().cloned().unwrap_or_default();
    WriteError::Unwritable {
        facts: unwritable.into_keys().collect(),
        reason,
    }
}

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

/// How far `projection` is written in stream order, as [`mark`] recorded it (0 before any).
pub async fn position(db: &Database, projection: &str) -> Result<u64, mongodb::error::Error> {
    let entry = db
        .collection::<Document>(PROGRESS)
        .find_one(doc! {"_id": projection})
        .await?;
    Ok(entry
        .and_then(|e| integer(&e, "seq"))
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0))
}

/// The integer `key` of `doc`, stored as a 32- or a 64-bit one (the server keeps what it was
/// given, and `$inc` or `$max` keep a 32-bit one so).
pub fn integer(doc: &Document, key: &str) -> Option<i64> {
    doc.get_i64(key)
        .ok()
        .or_else(|| doc.get_i32(key).ok().map(i64::from))
}

/// One unordered bulk write, journaled, outside a transaction. `Some` (the error) when any write
/// met a duplicate key.
pub async fn write(
    client: &Client,
    models: Vec<WriteModel>,
    behind: &[Vec<usize>],
) -> Result<Option<mongodb::error::Error>, WriteError> {
    if models.is_empty() {
        return Ok(None);
    }
    let result = client
        .bulk_write(models)
        .ordered(false)
        .write_concern(WriteConcern::builder().journal(true).build())
        .await;
    let Err(e) = result else {
        return Ok(None);
    };
    let mongodb::error::ErrorKind::BulkWrite(bulk) = &*e.kind else {
        return Err(WriteError::Unavailable(e));
    };
    if !bulk.write_concern_errors.is_empty() {
        return Err(WriteError::Unavailable(e));
    }
    refusals(
        bulk.write_errors
            .iter()
            .map(|(i, w)| (*i, w.code, w.message.as_str())),
        &[DUPLICATE_KEY],
        |i| behind.get(i).cloned().unwrap_or_default(),
    )?;
    let duplicates = bulk.write_errors.values().any(|w| w.code == DUPLICATE_KEY);
    Ok(duplicates.then_some(e))
}

/// MongoDB's code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// Inserts `entries` (one per fact of the batch, in order) into `collection` in one unordered
/// `insert`, journaled; duplicate keys are "already written". (SecantusDB takes many inserts
/// about 1.8 times as fast in one `insert` as in a client bulk write.)
pub async fn insert(
    db: &Database,
    collection: &str,
    entries: Vec<Document>,
) -> Result<(), WriteError> {
    if entries.is_empty() {
        return Ok(());
    }
    let result = db
        .collection::<Document>(collection)
        .insert_many(entries)
        .ordered(false)
        .write_concern(WriteConcern::builder().journal(true).build())
        .await;
    let Err(e) = result else {
        return Ok(());
    };
    let mongodb::error::ErrorKind::InsertMany(failed) = &*e.kind else {
        return Err(WriteError::Unavailable(e));
    };
    if failed.write_concern_error.is_some() {
        return Err(WriteError::Unavailable(e));
    }
    // One entry per fact: the entry's position is the fact's.
    refusals(
        failed
            .write_errors
            .iter()
            .flatten()
            .map(|w| (w.index, w.code, w.message.as_str())),
        &[DUPLICATE_KEY],
        |i| vec![i],
    )
}

/// The refusals among the per-write errors of an unordered write (position, code, message):
/// every error whose code is not one the caller handles (`handled`), as one error naming the
/// facts `behind` those writes.
fn refusals<'a>(
    errors: impl Iterator<Item = (usize, i32, &'a str)>,
    handled: &[i32],
    behind: impl Fn(usize) -> Vec<usize>,
) -> Result<(), WriteError> {
    let refused: Vec<_> = errors
        .filter(|(_, code, _)| !handled.contains(code))
        .collect();
    let Some((_, _, reason)) = refused.first() else {
        return Ok(());
    };
    Err(WriteError::Refused {
        reason: (*reason).to_owned(),
        facts: refused.iter().flat_map(|(i, _, _)| behind(*i)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::Bson;

    #[test]
    fn an_integer_is_read_as_either_width_and_nothing_else() {
        let d = doc! {"a": 7_i32, "b": 9_000_000_000_i64, "c": 1.5, "d": "7"};
        assert_eq!(integer(&d, "a"), Some(7));
        assert_eq!(integer(&d, "b"), Some(9_000_000_000));
        assert_eq!(integer(&d, "c"), None);
        assert_eq!(integer(&d, "d"), None);
        assert_eq!(integer(&d, "missing"), None);
    }

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
                for guard in [Guard::Seq, Guard::Transaction] {
                    let write = guarded(
                        namespace(coll),
                        "p-1".to_owned(),
                        7,
                        doc! {"_id": "p-1", "seq": 7_i64},
                        existed,
                        guard,
                    );
                    assert_eq!(key_of(&write), Ok(Bson::String("p-1".into())), "{coll}");
                }
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
