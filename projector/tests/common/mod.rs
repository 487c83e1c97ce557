//! What the projector's integration tests share: real servers, a projector process, facts and
//! waits with a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command as Process;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use nats_topology::publish::{Outgoing, publish_all};
use projector::models::{
    Stored, entities_of, fold_entity, fold_player, fold_session, players_of, sessions_of,
};
use schemas::fact::{AccountRegistered, Damaged, ItemSpawned, LoggedIn, Moved, Spawned};
use schemas::read_model::from_document;
use schemas::read_model::{EntityDoc, PlayerDoc, SessionDoc};
use schemas::{
    Actor, EntityId, EntityKind, EntityState, Envelope, Fact, PlayerId, Position, RegionId,
};
use test_servers::Service;

/// The read models by id: players, world entities, sessions.
pub type Models = (
    BTreeMap<PlayerId, PlayerDoc>,
    BTreeMap<EntityId, EntityDoc>,
    BTreeMap<String, SessionDoc>,
);

/// The projector's servers (NATS with leases that lapse in 3 s, MongoDB, Redis), and the
/// projectors a test starts on them.
pub struct Stack {
    servers: test_servers::Stack,
    /// When set, the projectors use this Redis Cluster instead of the stack's Redis.
    pub redis_cluster: Option<test_servers::RedisCluster>,
}

test_servers::stands_on!(Stack, servers);

impl Stack {
    /// The servers, with the projectors' lease lapsing after 3 s.
    pub async fn start() -> Self {
        Self::start_with_lease(Duration::from_secs(3)).await
    }

    /// As [`Stack::start`], with the projectors' lease lapsing after `ttl`: a test that
    /// freezes NATS for longer than 3 s keeps its projector live.
    pub async fn start_with_lease(ttl: Duration) -> Self {
        Self {
            servers: test_servers::Stack::builder()
                .mongo()
                .redis()
                .lease_ttl(ttl)
                .start()
                .await,
            redis_cluster: None,
        }
    }

    /// As [`Stack::start`], with a Redis Cluster of three masters for the projectors.
    pub async fn start_on_a_redis_cluster() -> Self {
        let mut stack = Self::start().await;
        stack.redis_cluster = Some(test_servers::RedisCluster::start().expect("Redis Cluster"));
        stack
    }

    /// The `REDIS_URL` the projectors get.
    pub fn redis_url(&self) -> String {
        self.redis_cluster
            .as_ref()
            .map_or_else(|| self.redis().url(), test_servers::RedisCluster::url)
    }

    pub fn projector(&self) -> Projector {
        self.projector_with(&self.mongo().url())
    }

    pub fn projector_with(&self, mongodb_uri: &str) -> Projector {
        self.projector_configured(mongodb_uri, &[])
    }

    /// A projector whose `config/projector.toml` has `changes` (whole `key = value` lines)
    /// replacing the lines of the same keys.
    pub fn projector_configured(&self, mongodb_uri: &str, changes: &[&str]) -> Projector {
        let port = test_servers::free_port().expect("port");
        let log = self.path(&format!("projector-{port}.log"));
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/projector.toml");
        let text = std::fs::read_to_string(shipped).expect("the shipped projector.toml");
        let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !changes.iter().any(|c| key(c) == key(l)))
            .map(str::to_owned)
            .collect();
        lines.extend(changes.iter().map(|c| (*c).to_owned()));
        let config = self.path(&format!("projector-{port}.toml"));
        std::fs::write(&config, lines.join("\n")).expect("config");
        let mut command = Process::new(env!("CARGO_BIN_EXE_projector"));
        command
            .env("PROJECTOR_CONFIG", &config)
            .env("NATS_URL", self.nats.url())
            .env("MONGODB_URI", mongodb_uri)
            .env("REDIS_URL", self.redis_url())
            .env("PROJECTOR_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info");
        Projector {
            service: Service::start(command, log).expect("projector binary"),
            addr: format!("127.0.0.1:{port}"),
        }
    }

    pub async fn publish(&self, facts: &[Envelope<Fact>]) {
        let out: Vec<_> = facts
            .iter()
            .map(|f| Outgoing::fact(f).expect("encode"))
            .collect();
        for r in publish_all(&self.js, out).await {
            r.expect("stored");
        }
    }

    pub async fn docs<T: serde::de::DeserializeOwned>(&self, collection: &str) -> Vec<T> {
        docs_in(self.db(), collection).await
    }

    pub async fn audit_count(&self) -> u64 {
        self.db()
            .collection::<Document>("audit")
            .count_documents(doc! {})
            .await
            .expect("count")
    }

    /// What folding every stored fact gives, computed here from the stream itself.
    pub async fn expected(&self) -> Models {
        let stream = self.js.get_stream("FACTS").await.expect("stream");
        let mut consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: "fact.>".into(),
                ..Default::default()
            })
            .await
            .expect("consumer");
        let pending = consumer.info().await.expect("info").num_pending;
        let mut players: BTreeMap<PlayerId, Option<PlayerDoc>> = BTreeMap::new();
        let mut entities: BTreeMap<EntityId, Option<EntityDoc>> = BTreeMap::new();
        let mut sessions: BTreeMap<String, Option<SessionDoc>> = BTreeMap::new();
        if pending > 0 {
            let mut messages = consumer.messages().await.expect("messages");
            while let Some(m) = messages.next().await {
                let m = m.expect("message");
                let info = m.info().expect("info");
                let (seq, left) = (info.stream_sequence, info.pending);
                if let Ok(env) = Envelope::<Fact>::decode(&m.payload) {
                    let f = Stored {
                        seq,
                        env,
                        client_ip: None,
                        request_id: None,
                    };
                    for p in players_of(&f.env.payload) {
                        fold_player(players.entry(p).or_insert(None), p, &f);
                    }
                    for id in sessions_of(&f.env.payload) {
                        fold_session(sessions.entry(id.clone()).or_insert(None), &id, &f);
                    }
                    for e in entities_of(&f.env.payload) {
                        let username = players
                            .get(&PlayerId::from_uuid(*e.as_uuid()))
                            .and_then(|d| d.as_ref())
                            .map(|d| d.state.username.clone());
                        fold_entity(
                            entities.entry(e).or_insert(None),
                            e,
                            &f,
                            username.as_deref(),
                        );
                    }
                }
                if left == 0 {
                    break;
                }
            }
        }
        (
            players
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            entities
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            sessions
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
        )
    }

    /// The collections a rebuild writes before it switches over, left behind.
    pub async fn rebuild_collections(&self) -> Vec<String> {
        let names = self
            .db()
            .list_collection_names()
            .await
            .expect("collections");
        names
            .into_iter()
            .filter(|n| n.contains("__rebuild_"))
            .collect()
    }

    pub async fn projected(&self) -> Models {
        projected_in(self.db()).await
    }
}

/// Every document of `collection` in `db`.
pub async fn docs_in<T: serde::de::DeserializeOwned>(
    db: &mongodb::Database,
    collection: &str,
) -> Vec<T> {
    let docs: Vec<Document> = db
        .collection::<Document>(collection)
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("docs");
    docs.into_iter()
        .map(|d| from_document(d).expect("a read-model document"))
        .collect()
}

/// The read models stored in `db`.
pub async fn projected_in(db: &mongodb::Database) -> Models {
    (
        docs_in::<PlayerDoc>(db, "players")
            .await
            .into_iter()
            .map(|d| (d.id, d))
            .collect(),
        docs_in::<EntityDoc>(db, "world")
            .await
            .into_iter()
            .map(|d| (d.id, d))
            .collect(),
        docs_in::<SessionDoc>(db, "sessions")
            .await
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect(),
    )
}

/// A projector process: a [`Service`] (its log, killed when dropped) that serves its health and
/// metrics at `addr`.
pub struct Projector {
    service: Service,
    /// Where its health and metrics are served.
    pub addr: String,
}

impl Projector {
    /// The value of the metric `name` (with its labels, as Prometheus prints them), when served.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

impl std::ops::Deref for Projector {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

impl std::ops::DerefMut for Projector {
    fn deref_mut(&mut self) -> &mut Service {
        &mut self.service
    }
}

pub use test_servers::poll::eventually;

pub fn west() -> RegionId {
    "west".parse().expect("region")
}

pub fn sim() -> Actor {
    Actor::System {
        service: "region-sim".into(),
    }
}

pub fn fact(region: Option<RegionId>, payload: Fact) -> Envelope<Fact> {
    Envelope::new(sim(), region, payload)
}

pub fn avatar(player: PlayerId, at: Position, hp: u32) -> EntityState {
    EntityState {
        id: player.into(),
        kind: EntityKind::Player,
        player: Some(player),
        position: at,
        destination: None,
        hp,
        max_hp: 100,
        level: 1,
        xp: 0,
        inventory: vec![],
        alive: true,
    }
}

/// A little history: `n` players register, log in, spawn, walk and are hurt; an item appears.
pub fn history(n: usize) -> Vec<Envelope<Fact>> {
    let mut out = vec![fact(
        Some(west()),
        Fact::ItemSpawned(ItemSpawned {
            item: EntityId::new(),
            item_kind: "potion".into(),
            position: Position::new(3.0, 4.0),
        }),
    )];
    for i in 0..n {
        let p = PlayerId::new();
        out.push(fact(
            None,
            Fact::AccountRegistered(AccountRegistered {
                player: p,
                username: format!("player{i}"),
            }),
        ));
        out.push(fact(
            None,
            Fact::LoggedIn(LoggedIn {
                player: p,
                session: schemas::EventId::new().to_string(),
                expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            }),
        ));
        out.push(fact(
            Some(west()),
            Fact::Spawned(Spawned {
                state: avatar(p, Position::new(1.0, 1.0), 100),
            }),
        ));
        for step in 0..5 {
            out.push(fact(
                Some(west()),
                Fact::Moved(Moved {
                    entity: p.into(),
                    position: Position::new(2.0 + step as f64, 1.0),
                    arrived: step == 4,
                }),
            ));
            out.push(fact(
                Some(west()),
                Fact::Damaged(Damaged {
                    attacker: EntityId::new(),
                    target: p.into(),
                    amount: 3,
                    hp: 100 - 3 * (step + 1),
                }),
            ));
        }
    }
    out
}

impl Stack {
    /// Waits until the audit trail holds `audited` events and the read models equal the fold
    /// of the log; fails showing what `projectors` last logged.
    pub async fn all_projected(&self, audited: u64, projectors: &[&Projector]) {
        eventually("every event is audited", || async {
            (self.audit_count_retrying().await == audited).then_some(())
        })
        .await;
        self.converges(projectors).await;
    }

    /// Waits until the read models equal the fold of the log; fails naming the documents that
    /// differ and what `projectors` last logged.
    pub async fn converges(&self, projectors: &[&Projector]) {
        let expected = self.expected().await;
        let equal = test_servers::poll::poll(test_servers::poll::PATIENCE, || async {
            (self.projected().await == expected).then_some(())
        })
        .await;
        if equal.is_some() {
            return;
        }
        let (players, entities, sessions) = self.projected().await;
        let mut differences = differences_of("player", &expected.0, &players);
        differences.extend(differences_of("entity", &expected.1, &entities));
        differences.extend(differences_of("session", &expected.2, &sessions));
        let logs: Vec<Vec<String>> = projectors.iter().map(|p| p.log_tail(40)).collect();
        panic!(
            "the read models never equalled the fold of the log: {differences:#?}\nthe projectors' last lines: {logs:#?}"
        );
    }

    pub async fn audit_count_retrying(&self) -> u64 {
        self.db()
            .collection::<Document>("audit")
            .count_documents(doc! {})
            .await
            .unwrap_or(0)
    }
}

/// The documents of `projected` that are not what `expected` holds, each named `kind` and shown
/// both ways.
fn differences_of<K: Ord + std::fmt::Debug, D: PartialEq + std::fmt::Debug>(
    kind: &str,
    expected: &BTreeMap<K, D>,
    projected: &BTreeMap<K, D>,
) -> Vec<String> {
    let ids: std::collections::BTreeSet<&K> = expected.keys().chain(projected.keys()).collect();
    ids.into_iter()
        .filter(|id| expected.get(id) != projected.get(id))
        .map(|id| {
            format!(
                "{kind} {id:?}: expected {:?}, projected {:?}",
                expected.get(id),
                projected.get(id)
            )
        })
        .collect()
}
