//! The projector against real NATS, MongoDB-compatible and Redis servers: read models, audit
//! trail and broadcast from facts; redelivery; a process killed mid-batch; MongoDB stopped and
//! restarted; a fact that does not decode.

use std::collections::BTreeMap;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use nats_topology::publish::{Outgoing, publish, publish_all};
use projector::models::Stored;
use projector::projection::{self, Names, Writer};
use schemas::fact::{
    AccountRegistered, Damaged, ItemSpawned, LoggedIn, LoggedOut, RoleChanged, Spawned,
    StruckAcross,
};
use schemas::read_model::from_document;
use schemas::read_model::{EntityDoc, EntityView, PlayerDoc, PlayerView};
use schemas::{Actor, EntityId, Envelope, Fact, PlayerId, Position};
use test_servers::poll::PATIENCE;
use test_servers::{Kind, Server};

mod common;

use common::*;

#[tokio::test]
async fn facts_become_read_models_audit_entries_and_broadcasts() {
    let stack = Stack::start().await;
    let redis = redis::Client::open(stack.redis().url()).expect("redis");
    let mut pubsub = redis.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(schemas::read_model::channel::region("west"))
        .await
        .expect("subscribe");
    let mut con = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let p = PlayerId::new();
    let _: () = redis::cmd("SET")
        .arg(schemas::read_model::key::player_view(p))
        .arg("stale")
        .query_async(&mut con)
        .await
        .expect("set");
    let _projector = stack.projector();
    let mut facts = ada_enters_the_west(p);
    facts.push(fact(
        Some(west()),
        Fact::Damaged(Damaged {
            attacker: EntityId::new(),
            target: p.into(),
            amount: 7,
            hp: 93,
        }),
    ));
    stack.publish(&facts).await;
    let player = eventually("the player is projected", || async {
        stack
            .docs::<PlayerDoc>("players")
            .await
            .into_iter()
            .find(|d| d.id == p && d.state.hp == Some(93))
    })
    .await;
    assert_eq!(player.state.username, "ada");
    assert_eq!(player.state.region, Some(west()));
    assert!(player.state.online);
    assert_eq!(player.state.position, Some(Position::new(10.0, 20.0)));
    // The gateway reads the same document and serves it as its view.
    let raw = stack
        .db()
        .collection::<Document>("players")
        .find_one(doc! {"_id": p.to_string()})
        .await
        .expect("find")
        .expect("doc");
    let view = PlayerView::from(from_document::<PlayerDoc>(raw).expect("a PlayerDoc"));
    assert_eq!((view.player_id, view.hp), (p, Some(93)));
    let entity = stack
        .docs::<EntityDoc>("world")
        .await
        .into_iter()
        .find(|d| d.id == EntityId::from(p))
        .expect("world doc");
    assert_eq!(
        (
            entity.state.name.as_deref(),
            entity.state.kind.as_str(),
            entity.state.hp
        ),
        (Some("ada"), "player", Some(93))
    );
    let gateway_view: Vec<EntityView> = stack
        .db()
        .collection::<Document>("world")
        .find(doc! {"region": "west", "position.x": {"$gte": 0.0, "$lte": 50.0}})
        .await
        .expect("range query")
        .try_collect::<Vec<Document>>()
        .await
        .expect("docs")
        .into_iter()
        .map(|d| {
            let doc = from_document::<EntityDoc>(d).expect("an EntityDoc");
            EntityView::try_from(doc).expect("in a region")
        })
        .collect();
    assert_eq!(gateway_view.len(), 1);
    eventually("every fact is audited", || async {
        (stack.audit_count().await == 3).then_some(())
    })
    .await;
    let audited = stack
        .db()
        .collection::<Document>("audit")
        .find_one(doc! {"_id": facts[2].id.to_string()})
        .await
        .expect("find")
        .expect("audit entry");
    assert_eq!(audited.get_str("kind"), Ok("damaged"));
    assert_eq!(audited.get_str("stream"), Ok("FACTS"));
    assert!(
        audited.get_datetime("occurred_at").is_ok(),
        "a date for time queries"
    );
    refreshed_and_broadcast(&con, &mut pubsub, p).await;
}

/// The bridge's work once `p` spawned in the west: the stale view of `p` is gone, the region's
/// version moved, the population counts `p`, and the region's channel carried the spawn. The
/// bridge runs once a batch is written, so what the read models show may come a moment before.
async fn refreshed_and_broadcast(
    con: &(impl redis::aio::ConnectionLike + Clone),
    pubsub: &mut redis::aio::PubSub,
    p: PlayerId,
) {
    eventually(
        "the stale view is gone, the region's version moved and its population counts p",
        || {
            let mut con = con.clone();
            async move {
                let cached: Option<String> = redis::cmd("GET")
                    .arg(schemas::read_model::key::player_view(p))
                    .query_async(&mut con)
                    .await
                    .expect("get");
                let version: Option<u64> = redis::cmd("GET")
                    .arg("world:version:west")
                    .query_async(&mut con)
                    .await
                    .expect("get");
                let population: BTreeMap<String, u32> = redis::cmd("HGETALL")
                    .arg("world:population")
                    .query_async(&mut con)
                    .await
                    .expect("hgetall");
                cached.is_none() && version.unwrap_or(0) >= 1 && population.get("west") == Some(&1)
            }
        },
    )
    .await;
    let mut messages = pubsub.on_message();
    let first = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("a broadcast")
        .expect("message");
    let body: String = first.get_payload().expect("text");
    assert!(body.contains("\"spawned\""), "{body}");
}

#[tokio::test]
async fn on_a_redis_cluster_caches_are_refreshed_and_facts_broadcast() {
    let stack = Stack::start_on_a_redis_cluster().await;
    let cluster = stack.redis_cluster.as_ref().expect("cluster");
    let mut redis = service::redis::Redis::connect(&stack.redis_url(), None)
        .await
        .expect("cluster");
    assert!(redis.is_cluster());
    // A subscriber on one node hears what the projector publishes, whichever node it sent to.
    let mut pubsub = redis::Client::open(cluster.nodes[2].url())
        .expect("node")
        .get_async_pubsub()
        .await
        .expect("pubsub");
    pubsub
        .subscribe(schemas::read_model::channel::region("west"))
        .await
        .expect("subscribe");
    let p = PlayerId::new();
    let view_key = schemas::read_model::key::player_view(p);
    let _: () = redis::cmd("SET")
        .arg(&view_key)
        .arg("stale")
        .query_async(&mut redis)
        .await
        .expect("set");
    let _projector = stack.projector();
    let facts = ada_enters_the_west(p);
    stack.publish(&facts).await;
    // The position is raised last, after the caches: once it is there, so are they.
    eventually("the projection's position is raised", || async {
        let position: Option<u64> = redis::cmd("GET")
            .arg(schemas::read_model::key::PROJECTION_POSITION)
            .query_async(&mut redis.clone())
            .await
            .expect("get");
        position.filter(|p| *p >= 2)
    })
    .await;
    refreshed_and_broadcast(&redis, &mut pubsub, p).await;
}

/// Ada registers and spawns in the west at (10, 20), with 100 hit points.
fn ada_enters_the_west(p: PlayerId) -> Vec<Envelope<Fact>> {
    vec![
        fact(
            None,
            Fact::AccountRegistered(AccountRegistered {
                player: p,
                username: "ada".into(),
            }),
        ),
        fact(
            Some(west()),
            Fact::Spawned(Spawned {
                state: avatar(p, Position::new(10.0, 20.0), 100),
            }),
        ),
    ]
}

/// The database `name` of `client`, with the read models' indexes in place.
async fn indexed(client: &mongodb::Client, name: &str, names: &Names) -> mongodb::Database {
    let db = client.database(name);
    projector::live::ensure_indexes(&db, names)
        .await
        .expect("indexes");
    db
}

/// SecantusDB as a one-member replica set (which has transactions) or as a standalone server
/// (which has none, like a standalone `mongod`), and a client of it.
async fn read_models_server(kind: Kind) -> (Server, mongodb::Client) {
    let server = Server::start_kind(kind).expect("secantusd");
    let client = mongodb::Client::with_uri_str(server.url())
        .await
        .expect("mongo");
    (server, client)
}

/// One player registered, spawned and hurt `hurts` times: facts 1 to `hurts + 2`.
fn hurt_player(p: PlayerId, hurts: u32) -> Vec<Stored> {
    let stored = |seq, region, payload| Stored {
        seq,
        env: fact(region, payload),
        client_ip: None,
        request_id: None,
    };
    let mut batch = vec![
        stored(
            1,
            None,
            Fact::AccountRegistered(AccountRegistered {
                player: p,
                // A field path, to an update that took the document for an expression.
                username: "$seq".into(),
            }),
        ),
        stored(
            2,
            Some(west()),
            Fact::Spawned(Spawned {
                state: avatar(p, Position::new(1.0, 1.0), 100),
            }),
        ),
    ];
    for i in 1..=hurts {
        batch.push(stored(
            u64::from(i) + 2,
            Some(west()),
            Fact::Damaged(Damaged {
                attacker: EntityId::new(),
                target: p.into(),
                amount: 1,
                hp: 100 - i,
            }),
        ));
    }
    batch
}

async fn applied_twice_or_out_of_date(kind: Kind) {
    let (_server, client) = read_models_server(kind).await;
    let names = Names::live();
    let db = indexed(&client, "game", &names).await;
    let p = PlayerId::new();
    let batch = hurt_player(p, 2);
    let mut writer = Writer::new("test");
    projection::apply(&client, &db, &names, &batch, &mut writer)
        .await
        .expect("first pass");
    let once = projected_in(&db).await;
    // The same batch again (a redelivery), and its first half alone (older than what is stored).
    projection::apply(&client, &db, &names, &batch, &mut writer)
        .await
        .expect("second pass");
    projection::apply(&client, &db, &names, &batch[..3], &mut writer)
        .await
        .expect("stale pass");
    assert_eq!(projected_in(&db).await, once);
    assert_eq!(once.0[&p].state.hp, Some(98));
    assert_eq!(once.0[&p].state.username, "$seq");
    assert_eq!(once.0[&p].seq, 4);
    let audited = db
        .collection::<Document>("audit")
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(audited, 4);
}

#[tokio::test]
async fn a_batch_applied_twice_or_out_of_date_changes_nothing() {
    applied_twice_or_out_of_date(Kind::Mongo).await;
}

#[tokio::test]
async fn without_transactions_a_batch_applied_twice_or_out_of_date_changes_nothing() {
    applied_twice_or_out_of_date(Kind::MongoStandalone).await;
}

/// A writer remembers the documents its batches read or wrote and does not read them again. It
/// reads them again once the projection changed under it: another writer's batches (a
/// projector that held the lease meanwhile), whether its next batch touches what it remembers
/// or not; a commit the server acknowledged and then lost; a rebuild's documents. And it does
/// not take a document the fold made up, and never wrote, for one the server has.
#[tokio::test]
async fn a_writer_reads_again_what_changed_under_what_it_remembers() {
    let (_server, client) = read_models_server(Kind::Mongo).await;
    let names = Names::live();
    let db = indexed(&client, "game", &names).await;
    let (p, q, r) = (PlayerId::new(), PlayerId::new(), PlayerId::new());
    let stored = |seq, region, payload| Stored {
        seq,
        env: fact(region, payload),
        client_ip: None,
        request_id: None,
    };
    let hurt = |seq, player: PlayerId, hp| {
        stored(
            seq,
            Some(west()),
            Fact::Damaged(Damaged {
                attacker: EntityId::new(),
                target: player.into(),
                amount: 1,
                hp,
            }),
        )
    };
    let role = |seq, role: &str| {
        stored(
            seq,
            None,
            Fact::RoleChanged(RoleChanged {
                player: p,
                role: role.into(),
            }),
        )
    };
    let apply = async |batch: &[Stored], writer: &mut Writer| {
        projection::apply(&client, &db, &names, batch, writer)
            .await
            .expect("batch");
    };
    let p_is = async || {
        let (players, _, _) = projected_in(&db).await;
        (players[&p].state.hp, players[&p].state.role.clone())
    };
    let players = db.collection::<Document>("players");
    let entry = doc! {"_id": "writer:live"};
    let progress = db.collection::<Document>("projector_progress");

    let mut first = Writer::new("live");
    apply(&hurt_player(p, 1), &mut first).await; // 1 to 3: hp 99
    let mut other = Writer::new("live");
    apply(&[role(4, "moderator")], &mut other).await;
    // The first takes the lease back; its first batch touches nothing it remembers.
    let q_registers = stored(
        5,
        None,
        Fact::AccountRegistered(AccountRegistered {
            player: q,
            username: "quinn".into(),
        }),
    );
    apply(&[q_registers], &mut first).await;
    apply(&[hurt(6, p, 98)], &mut first).await;
    assert_eq!(
        p_is().await,
        (Some(98), "moderator".into()),
        "the other writer's fact, kept by a batch after one that touched another player"
    );
    apply(&[role(7, "admin")], &mut other).await;
    apply(&[hurt(8, p, 97)], &mut first).await;
    assert_eq!(
        p_is().await,
        (Some(97), "admin".into()),
        "the other writer's fact, kept by the next batch touching the same player"
    );

    // A commit the server acknowledged and lost (SecantusDB journals a transaction only with
    // the next journaled write): the player and the writer's entry are as before it.
    let (p_before, entry_before) = (
        players
            .find_one(doc! {"_id": p.to_string()})
            .await
            .expect("read")
            .expect("the player"),
        progress
            .find_one(entry.clone())
            .await
            .expect("read")
            .expect("the entry"),
    );
    apply(&[hurt(9, p, 96)], &mut first).await;
    players
        .replace_one(doc! {"_id": p.to_string()}, p_before)
        .await
        .expect("the player as before");
    progress
        .replace_one(entry.clone(), entry_before)
        .await
        .expect("the entry as before");
    apply(&[hurt(9, p, 96)], &mut first).await;
    assert_eq!(
        p_is().await,
        (Some(96), "admin".into()),
        "the lost fact, written again when delivered again"
    );

    // A rebuild replaces the collections with documents of its own fold (here: written by
    // hand, hurt more than the log says) and disowns them.
    players
        .update_one(doc! {"_id": p.to_string()}, doc! {"$set": {"hp": 1}})
        .await
        .expect("the rebuild's document");
    projection::disown(&db, "live").await.expect("disowned");
    apply(&[role(10, "moderator")], &mut first).await;
    assert_eq!(
        p_is().await,
        (Some(1), "moderator".into()),
        "folded into the rebuild's document, not the one remembered"
    );

    // A blow struck across a border by a player with no document yet: the fold makes one up,
    // changes nothing and writes nothing; the next fact of that player is written all the same.
    let struck = stored(
        11,
        Some(west()),
        Fact::StruckAcross(StruckAcross {
            attacker: r.into(),
            target: EntityId::new(),
            amount: 1,
            position: Position::new(1.0, 1.0),
            to_regions: vec![],
        }),
    );
    apply(&[struck], &mut first).await;
    apply(&[hurt(12, r, 50)], &mut first).await;
    let (players_now, _, _) = projected_in(&db).await;
    assert_eq!(players_now.get(&r).map(|d| d.state.hp), Some(Some(50)));

    // And it does remember: a write behind its back that leaves its entry alone (nothing in
    // the game writes so) is not read, and the remembered document is written over it.
    players
        .update_one(doc! {"_id": p.to_string()}, doc! {"$set": {"hp": 42}})
        .await
        .expect("a write behind the writer's back");
    apply(&[role(13, "admin")], &mut first).await;
    assert_eq!(
        p_is().await,
        (Some(1), "admin".into()),
        "folded into the document remembered from the last batch, not read again"
    );
}

/// A projector killed between a transaction's writes and its commit leaves the transaction open
/// on the server, holding its documents for the server's transaction lifetime (60 s). The next
/// writer of the same projection ends it and writes at once.
#[tokio::test]
async fn a_writer_ends_the_transaction_its_killed_predecessor_left_open() {
    let (_server, client) = read_models_server(Kind::Mongo).await;
    let names = Names::live();
    let db = indexed(&client, "game", &names).await;
    let p = PlayerId::new();
    let facts = hurt_player(p, 4);
    let mut before = Writer::new("live");
    projection::apply(&client, &db, &names, &facts[..3], &mut before)
        .await
        .expect("the first facts");
    // What the killed process left: its registered session, in a transaction that wrote the
    // player's document and never ended.
    let mut orphan = client.start_session().await.expect("session");
    orphan.start_transaction().await.expect("transaction");
    db.collection::<Document>("players")
        .update_one(doc! {"_id": p.to_string()}, doc! {"$set": {"hp": 1}})
        .session(&mut orphan)
        .await
        .expect("the orphan's write");
    db.collection::<Document>("projector_progress")
        .update_one(
            doc! {"_id": "writer:live"},
            doc! {"$set": {"lsid": orphan.id().clone()}},
        )
        .await
        .expect("the orphan's session, registered");
    // A dropped session would abort its transaction; a killed process cannot.
    std::mem::forget(orphan);
    let mut next = Writer::new("live");
    projection::apply(&client, &db, &names, &facts, &mut next)
        .await
        .expect("the next writer writes at once");
    let (players, _, _) = projected_in(&db).await;
    assert_eq!(players[&p].seq, 6);
    assert_eq!(players[&p].state.hp, Some(96));
}

/// Writers applying the same facts up to different points, all at once (as a projector that
/// lost its lease and the one that took it may, for a moment): whatever order their writes
/// land in, no older state stays over a newer one, and the read models end as the longest
/// batch makes them.
async fn batches_written_at_once(kind: Kind) {
    const WRITERS: usize = 8;
    let (_server, client) = read_models_server(kind).await;
    let names = Names::live();
    let players: Vec<PlayerId> = (0..3).map(|_| PlayerId::new()).collect();
    // Each player's facts, interleaved as one stream, numbered in stream order.
    let mut facts: Vec<Stored> = Vec::new();
    let per_player: Vec<Vec<Stored>> = players.iter().map(|p| hurt_player(*p, 30)).collect();
    for i in 0..per_player[0].len() {
        for of_player in &per_player {
            let mut f = of_player[i].clone();
            f.seq = facts.len() as u64 + 1;
            facts.push(f);
        }
    }
    let expected_db = indexed(&client, "expected", &names).await;
    projection::apply(
        &client,
        &expected_db,
        &names,
        &facts,
        &mut Writer::new("alone"),
    )
    .await
    .expect("the whole batch, alone");
    let expected = projected_in(&expected_db).await;
    for round in 0..6 {
        let db = indexed(&client, &format!("raced{round}"), &names).await;
        // Every other round, documents already there, older than every writer's: each writer
        // replaces them (otherwise each inserts them).
        let replacing = round % 2 == 1;
        if replacing {
            let mut first = Writer::new("first");
            projection::apply(&client, &db, &names, &facts[..facts.len() / 4], &mut first)
                .await
                .expect("the oldest facts");
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                // A writer that read before another wrote must not land over it. Replacing, the
                // longest batch starts first (so the others' writes come after its write);
                // inserting, last (so its insert comes after theirs).
                let rank = if replacing { w } else { WRITERS - 1 - w };
                let upto = facts.len() - rank * facts.len() / (2 * WRITERS);
                let (client, db, names) = (client.clone(), db.clone(), names.clone());
                let batch = facts[..upto].to_vec();
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut writer = Writer::new(format!("writer {w}"));
                    loop {
                        match projection::apply(&client, &db, &names, &batch, &mut writer).await {
                            Ok(_) => return,
                            // Conflicts met more often than it retries at once.
                            Err(projection::WriteError::Unavailable(e))
                                if Instant::now() < deadline =>
                            {
                                eprintln!("writer up to {upto}: {e}; again");
                            }
                            Err(e) => panic!("writer up to {upto}: {e}"),
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
        assert_eq!(projected_in(&db).await, expected, "round {round}");
    }
}

#[tokio::test]
async fn batches_written_at_once_never_leave_an_older_state_over_a_newer_one() {
    batches_written_at_once(Kind::Mongo).await;
}

#[tokio::test]
async fn without_transactions_batches_written_at_once_never_leave_an_older_state() {
    batches_written_at_once(Kind::MongoStandalone).await;
}

#[tokio::test]
async fn a_projector_killed_mid_batch_finishes_exactly_on_its_next_start() {
    let stack = Stack::start().await;
    let facts = history(60);
    let total = facts.len() as u64;
    let mut first = stack.projector();
    stack.publish(&facts).await;
    // Kill it as soon as it has written something, surely before all (it has 700 facts).
    eventually("the first batch is written", || async {
        (stack.audit_count().await > 0).then_some(())
    })
    .await;
    first.kill();
    let written = stack.audit_count().await;
    let second = stack.projector();
    stack.all_projected(total, &[&first, &second]).await;
    assert!(written <= total);
    assert_eq!(stack.audit_count().await, total, "nothing audited twice");
}

#[tokio::test]
async fn mongodb_stopped_and_restarted_loses_and_doubles_nothing() {
    let mut stack = Stack::start().await;
    // Give up on an unreachable server quickly, so the outage shows as failed writes retried.
    let mut projector = stack.projector_with(&format!(
        "{}&serverSelectionTimeoutMS=500",
        stack.mongo().url()
    ));
    let facts = history(20);
    stack.publish(&facts[..50]).await;
    eventually("the first facts are projected", || async {
        (stack.audit_count().await == 50).then_some(())
    })
    .await;
    stack.mongo_mut().stop();
    stack.publish(&facts[50..]).await;
    // The outage is noticed (a failed write, waited for and retried), not taken for a conflict.
    eventually("the projector finds MongoDB unavailable", || async {
        let log = projector.log();
        log.contains("MongoDB unavailable")
    })
    .await;
    stack.mongo_mut().restart().expect("restart secantusd");
    let all = facts.len() as u64;
    let audited = test_servers::poll::poll(PATIENCE, || async {
        (stack.audit_count_retrying().await == all).then_some(())
    })
    .await;
    if audited.is_none() {
        panic!(
            "not every fact audited after the restart; the projector says: {:#?}",
            projector.log_tail(5)
        );
    }
    stack.converges(&[&projector]).await;
    assert!(projector.is_running(), "the projector kept running");
}

#[tokio::test]
async fn facts_delivered_to_a_projector_that_did_not_write_them_are_folded_before_newer_ones() {
    let stack = Stack::start().await;
    let facts = history(2);
    stack.publish(&facts).await;
    // A projector took the first facts and died before it wrote them (or was given them in the
    // moment it was killed): the consumer holds them for it until their acknowledgement is
    // overdue, and meanwhile delivers the newer ones. The first player's account, login, spawn
    // and first step are among those held; its later steps and blows are not.
    let (_, consumer) = live_consumer(&stack).await;
    let held = take(&consumer, 5).await;
    let sequences: Vec<u64> = held
        .iter()
        .map(|m| m.info().expect("info").stream_sequence)
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    let holding = hold(held);
    let mut live = Heard::start(&stack).await;

    let projector = stack.projector();
    stack.all_projected(facts.len() as u64, &[&projector]).await;
    let log = projector.log();
    assert!(log.contains("reading them from the stream"), "{log}");
    // Their own delivery, once overdue, changes nothing, and publishes nothing again.
    holding.abort();
    let expected = stack.projected().await;
    settled(&stack, facts.len() as u64).await;
    assert_eq!(stack.projected().await, expected);
    assert_eq!(stack.audit_count().await, facts.len() as u64);
    let heard = live.until_now(&stack).await;
    for f in &facts {
        if let Some(region) = &f.region {
            let channel = schemas::read_model::channel::region(region);
            assert_eq!(heard.get(&(channel, f.id.to_string())), Some(&1), "{f:?}");
        }
    }
    let repeated: Vec<_> = heard.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "published more than once: {repeated:?}"
    );
}

/// What the projector publishes on the live stream's channels, heard from Redis.
struct Heard {
    pubsub: redis::aio::PubSub,
}

impl Heard {
    const END: &str = "live:end-of-test";

    async fn start(stack: &Stack) -> Self {
        let redis = redis::Client::open(stack.redis().url()).expect("redis");
        let mut pubsub = redis.get_async_pubsub().await.expect("pubsub");
        pubsub.psubscribe("live:*").await.expect("psubscribe");
        Self { pubsub }
    }

    /// How many times each fact (by its id) was heard on each channel, up to now: a message
    /// published now comes after everything published before it.
    async fn until_now(&mut self, stack: &Stack) -> BTreeMap<(String, String), usize> {
        let redis = redis::Client::open(stack.redis().url()).expect("redis");
        let mut con = redis
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(Self::END)
            .arg("{}")
            .query_async(&mut con)
            .await
            .expect("publish");
        let mut heard = BTreeMap::new();
        let mut messages = self.pubsub.on_message();
        loop {
            let message = tokio::time::timeout(PATIENCE, messages.next())
                .await
                .expect("the end of the test is heard")
                .expect("the subscription");
            let channel = message.get_channel_name().to_owned();
            if channel == Self::END {
                return heard;
            }
            let payload: String = message.get_payload().expect("text");
            let fact: Envelope<Fact> = Envelope::decode(payload.as_bytes()).expect("a fact");
            *heard.entry((channel, fact.id.to_string())).or_default() += 1;
        }
    }
}

#[tokio::test]
async fn an_earlier_fact_the_read_models_keep_refusing_is_dead_lettered_once_and_nothing_stalls() {
    let stack = Stack::start().await;
    // The first fact breaks a rule the world's documents must keep.
    let cursed = cursed_item(&stack).await;
    let mut facts = vec![cursed.clone()];
    facts.extend(history(2));
    stack.publish(&facts).await;
    // Held by a projector that died before it wrote them, the refused fact among them: the
    // next projector reads them from the stream to fold them first.
    let (_, consumer) = live_consumer(&stack).await;
    let holding = hold(take(&consumer, 5).await);

    let mut projector = stack.projector();
    let Fact::ItemSpawned(refused) = &cursed.payload else {
        unreachable!()
    };
    let (players, mut entities, sessions) = stack.expected().await;
    entities.remove(&refused.item);
    eventually("every other fact is in the read models", || async {
        (stack.projected().await == (players.clone(), entities.clone(), sessions.clone()))
            .then_some(())
    })
    .await;
    let dlq = stack.js.get_stream("DLQ").await.expect("dlq");
    let letter = refused_letter(&stack, &cursed).await;
    assert_eq!(letter.consumer.as_deref(), Some("projector"));
    assert!(projector.log().contains("reading them from the stream"));

    // Its own delivery, once overdue, is refused again and dead-lettered as the same letter;
    // the consumer goes through to the end.
    holding.abort();
    settled(&stack, facts.len() as u64).await;
    assert_eq!(dlq.clone().info().await.expect("info").state.messages, 1);
    assert_eq!(stack.projected().await, (players, entities, sessions));
    assert!(projector.is_running(), "the projector kept running");
}

/// A batch's worth of facts taken by a projector that died, the next projector started, and
/// MongoDB frozen as the facts after those come to it, so that it waits on the lane for the
/// projection's position (which it logs). All of the facts, the projector, and the task that
/// still holds the first five.
async fn waiting_for_the_position(
    stack: &mut Stack,
) -> (Vec<Envelope<Fact>>, Projector, tokio::task::JoinHandle<()>) {
    let (settings, consumer) = live_consumer(stack).await;
    let mut facts = Vec::new();
    while facts.len() < settings.batch_size + 50 {
        facts.extend(history(1));
    }
    stack.publish(&facts).await;
    // While they wait, the consumer gives the next projector nothing (one batch outstanding
    // at most).
    let held = take(&consumer, settings.batch_size).await;
    let projector = stack.projector();
    logs(&projector, "live projection started").await;
    // The server freezes; then all but the first five are acknowledged (as if written), so
    // the newer facts come, and with them the need to know the projection's position.
    stack.mongo_mut().pause().expect("SIGSTOP MongoDB");
    let (first, rest) = held.split_at(5);
    for m in rest {
        m.double_ack().await.expect("ack");
    }
    let holding = hold(first.to_vec());
    logs(&projector, "a write is still running").await;
    (facts, projector, holding)
}

/// Once the servers answer again: every fact folded (those before the newer ones read from
/// the stream first), each once, and the held ones settled when let go.
async fn folded_once(
    stack: &Stack,
    facts: &[Envelope<Fact>],
    mut projector: Projector,
    holding: tokio::task::JoinHandle<()>,
) {
    stack.all_projected(facts.len() as u64, &[&projector]).await;
    assert!(projector.log().contains("reading them from the stream"));
    holding.abort();
    let expected = stack.projected().await;
    let end = facts.len() as u64;
    settled(stack, end).await;
    assert_eq!(stack.projected().await, expected);
    assert_eq!(stack.audit_count().await, end, "nothing audited twice");
    assert!(projector.is_running(), "the projector kept running");
}

#[tokio::test]
async fn earlier_facts_wait_for_a_frozen_server_to_give_the_position_and_are_folded_first() {
    let mut stack = Stack::start().await;
    let (facts, projector, holding) = waiting_for_the_position(&mut stack).await;
    stack.mongo_mut().resume().expect("SIGCONT MongoDB");
    folded_once(&stack, &facts, projector, holding).await;
}

#[tokio::test]
async fn earlier_facts_wait_for_a_frozen_nats_to_give_them_and_are_folded_first() {
    // A lease longer than the freeze: the projector stays live through it.
    let mut stack = Stack::start_with_lease(Duration::from_secs(60)).await;
    let (facts, projector, holding) = waiting_for_the_position(&mut stack).await;
    // NATS freezes before MongoDB answers: the facts before the batch cannot be read.
    stack.nats.pause().expect("SIGSTOP NATS");
    stack.mongo_mut().resume().expect("SIGCONT MongoDB");
    logs(&projector, "cannot read the earlier facts from FACTS").await;
    stack.nats.resume().expect("SIGCONT NATS");
    folded_once(&stack, &facts, projector, holding).await;
}

#[tokio::test]
async fn a_consumer_far_beyond_the_recorded_position_is_followed_and_said() {
    let stack = Stack::start().await;
    // The read models restored from a backup older than the consumer: it has acknowledged far
    // more facts (more than two batches) than the projection records.
    let (settings, consumer) = live_consumer(&stack).await;
    let mut acknowledged = Vec::new();
    while acknowledged.len() <= 2 * settings.batch_size {
        acknowledged.extend(history(1));
    }
    stack.publish(&acknowledged).await;
    let mut taken = 0;
    while taken < acknowledged.len() {
        let batch = take(
            &consumer,
            settings.batch_size.min(acknowledged.len() - taken),
        )
        .await;
        for m in &batch {
            m.double_ack().await.expect("ack");
        }
        taken += batch.len();
    }

    let projector = stack.projector();
    let later = history(1);
    stack.publish(&later).await;
    eventually("what came after is projected", || async {
        (stack.audit_count().await == later.len() as u64).then_some(())
    })
    .await;
    let log = projector.log();
    assert!(
        log.contains("far beyond the projection's recorded position"),
        "{log}"
    );
    assert!(!log.contains("reading them from the stream"), "{log}");
    let (players, _, _) = stack.projected().await;
    assert_eq!(players.len(), 1, "the later player alone");
}

/// The shipped projector settings, and the live projection's consumer created as a projector
/// with them creates it: a test takes facts from it as a projector would.
async fn live_consumer(
    stack: &Stack,
) -> (
    projector::settings::Settings,
    async_nats::jetstream::consumer::PullConsumer,
) {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/projector.toml");
    let settings = projector::settings::Settings::load(service::config::env_of(&[(
        "PROJECTOR_CONFIG",
        shipped,
    )]))
    .expect("the shipped settings");
    let consumer = stack
        .js
        .get_stream("FACTS")
        .await
        .expect("FACTS")
        .create_consumer(projector::live::durable_config(
            &settings,
            projector::live::FACTS_CONSUMER,
            "fact.>",
        ))
        .await
        .expect("the live projection's consumer");
    (settings, consumer)
}

/// The next `n` facts of the live projection's consumer, taken as a projector that then died
/// holding them would have taken them.
async fn take(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    n: usize,
) -> Vec<async_nats::jetstream::Message> {
    let mut taken = Vec::with_capacity(n);
    while taken.len() < n {
        let batch: Vec<_> = consumer
            .fetch()
            .max_messages(n - taken.len())
            .messages()
            .await
            .expect("fetch")
            .try_collect()
            .await
            .expect("a batch");
        taken.extend(batch);
    }
    taken
}

/// Keeps `held` from being delivered again until the returned task is aborted: for as long as
/// the projector takes to start and project, however slow.
fn hold(held: Vec<async_nats::jetstream::Message>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for m in &held {
                let _ = m.ack_with(async_nats::jetstream::AckKind::Progress).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Waits until the live projection's consumer has every fact up to `end` acknowledged (or
/// terminated) and none outstanding: the facts once held were delivered again and settled.
async fn settled(stack: &Stack, end: u64) {
    eventually("the held facts are delivered again and settled", || async {
        let info = consumer_info(stack).await;
        (info.num_ack_pending == 0 && info.ack_floor.stream_sequence == end).then_some(())
    })
    .await;
}

/// Waits until `projector` has logged `line`.
async fn logs(projector: &Projector, line: &str) {
    eventually(&format!("the projector logs {line:?}"), || async {
        projector.log().contains(line).then_some(())
    })
    .await;
}

/// The live projection's consumer as NATS sees it now.
async fn consumer_info(stack: &Stack) -> async_nats::jetstream::consumer::Info {
    let stream = stack.js.get_stream("FACTS").await.expect("FACTS");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(projector::live::FACTS_CONSUMER)
        .await
        .expect("the consumer");
    consumer.info().await.expect("info").clone()
}

#[tokio::test]
async fn a_projector_asked_to_stop_while_mongodb_is_frozen_stops_within_its_grace_period() {
    let mut stack = Stack::start().await;
    let mut projector = stack.projector();
    let facts = history(20);
    stack.publish(&facts[..50]).await;
    eventually("the first facts are projected", || async {
        (stack.audit_count().await == 50).then_some(())
    })
    .await;
    stack.mongo_mut().pause().expect("SIGSTOP");
    stack.publish(&facts[50..]).await;
    eventually("a write waits for the frozen server", || async {
        let tail = projector.log_tail(50);
        tail.iter()
            .any(|l| l.contains("a write is still running") || l.contains("MongoDB unavailable"))
            .then_some(())
    })
    .await;
    projector.terminate();
    // The grace period is 5 s (config/projector.toml); this bound only keeps a failing test
    // from hanging.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = projector.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIGTERM: {:#?}",
            projector.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    // Nothing of what it left unacknowledged is lost: the next projector writes it.
    stack.mongo_mut().resume().expect("SIGCONT");
    let next = stack.projector();
    stack
        .all_projected(facts.len() as u64, &[&projector, &next])
        .await;
}

#[tokio::test]
async fn a_fact_that_does_not_decode_goes_to_the_dead_letters_and_the_rest_is_projected() {
    let stack = Stack::start().await;
    let _projector = stack.projector();
    publish(
        &stack.js,
        Outgoing::new("fact.west.moved", "bad-1", &b"not json"[..]),
    )
    .await
    .expect("stored");
    let facts = history(1);
    stack.publish(&facts).await;
    eventually("the good facts are projected", || async {
        (stack.audit_count().await == facts.len() as u64).then_some(())
    })
    .await;
    let dlq = stack.js.get_stream("DLQ").await.expect("dlq");
    let messages = eventually("the bad fact is dead-lettered", || {
        let mut dlq = dlq.clone();
        async move {
            let n = dlq.info().await.ok()?.state.messages;
            (n > 0).then_some(n)
        }
    })
    .await;
    assert_eq!(messages, 1);
    let letter = dlq
        .get_last_raw_message_by_subject("dlq.facts.fact.west.moved")
        .await
        .expect("the dead letter");
    assert_eq!(&letter.payload[..], b"not json");

    // A bad fact last of all is handled as well: the projection's recorded position passes it,
    // so that a later batch does not take it for a fact it was not given.
    publish(
        &stack.js,
        Outgoing::new("fact.west.moved", "bad-2", &b"not json either"[..]),
    )
    .await
    .expect("stored");
    let last = facts.len() as u64 + 2;
    eventually("the position passes the last bad fact", || async {
        projection::position(stack.db(), "players").await.ok() == Some(last)
    })
    .await;
}

/// The last dead letter stored on `subject` of `DLQ`.
async fn dead_letter_on(stack: &Stack, subject: &str) -> nats_topology::DeadLetter {
    let raw = stack
        .js
        .get_stream("DLQ")
        .await
        .expect("dlq")
        .get_last_raw_message_by_subject(subject)
        .await
        .unwrap_or_else(|e| panic!("no dead letter on {subject}: {e}"));
    nats_topology::DeadLetter::parse(&raw.headers, raw.payload).expect("a dead letter")
}

#[tokio::test]
async fn a_command_no_simulator_takes_and_none_can_read_goes_to_the_dead_letters() {
    let stack = Stack::start().await;
    let _projector = stack.projector();
    // On subjects no simulator consumes: a region that does not exist, no command's subject.
    for (subject, id) in [
        ("cmd.normal.atlantis.move", "bad-1"),
        ("cmd.bogus", "bad-2"),
    ] {
        publish(
            &stack.js,
            Outgoing::new(subject, id, &b"{not a command"[..]),
        )
        .await
        .expect("stored");
    }
    let said = Envelope::new(
        Actor::Player {
            id: PlayerId::new(),
        },
        Some(west()),
        schemas::Command::Chat(schemas::command::Chat {
            text: "after them".into(),
            channel: None,
        }),
    );
    publish(&stack.js, Outgoing::command(&said).expect("a command"))
        .await
        .expect("stored");
    eventually("the readable command is audited", || async {
        let found = stack
            .db()
            .collection::<Document>("audit")
            .count_documents(doc! {"_id": said.id.to_string()})
            .await
            .ok()?;
        (found == 1).then_some(())
    })
    .await;
    for subject in ["cmd.normal.atlantis.move", "cmd.bogus"] {
        let letter = dead_letter_on(&stack, &format!("dlq.commands.{subject}")).await;
        assert_eq!(letter.origin_stream, "COMMANDS");
        assert_eq!(&letter.payload[..], b"{not a command");
        assert!(
            letter.reason.contains("does not decode"),
            "{}",
            letter.reason
        );
    }
}

#[tokio::test]
async fn a_fact_stored_on_another_regions_subject_goes_to_the_dead_letters() {
    let stack = Stack::start().await;
    let _projector = stack.projector();
    // West's simulator may write west's facts alone: one naming another region, stored on a
    // subject of west's, would be filed in that region.
    let elsewhere = fact(
        Some(schemas::RegionId::new("east").expect("a region id")),
        Fact::ItemSpawned(ItemSpawned {
            item: EntityId::new(),
            item_kind: "sword".into(),
            position: Position::new(5.0, 5.0),
        }),
    );
    publish(
        &stack.js,
        Outgoing::new(
            "fact.west.item_spawned",
            "forged-1",
            elsewhere.encode().expect("encode"),
        ),
    )
    .await
    .expect("stored");
    let facts = history(1);
    stack.publish(&facts).await;
    eventually("the good facts are audited", || async {
        (stack.audit_count().await == facts.len() as u64).then_some(())
    })
    .await;
    let letter = dead_letter_on(&stack, "dlq.facts.fact.west.item_spawned").await;
    assert!(
        letter
            .reason
            .contains("stored on fact.west.item_spawned, not on fact.east.item_spawned"),
        "{}",
        letter.reason
    );
    let filed = stack
        .db()
        .collection::<Document>("world")
        .count_documents(doc! {"_id": elsewhere_item(&elsewhere)})
        .await
        .expect("count");
    assert_eq!(filed, 0, "not in the world");
}

fn elsewhere_item(env: &Envelope<Fact>) -> String {
    match &env.payload {
        Fact::ItemSpawned(i) => i.item.to_string(),
        other => panic!("not an item: {other:?}"),
    }
}

/// An item's spawning that the world's documents refuse: a rule they must keep (no item called
/// "cursed"), set on the stack's `world` collection, which the fact breaks.
async fn cursed_item(stack: &Stack) -> Envelope<Fact> {
    stack
        .db()
        .run_command(doc! {"create": "world", "validator": {"name": {"$ne": "cursed"}}})
        .await
        .expect("a collection with a validator");
    fact(
        Some(west()),
        Fact::ItemSpawned(ItemSpawned {
            item: EntityId::new(),
            item_kind: "cursed".into(),
            position: Position::new(5.0, 5.0),
        }),
    )
}

/// The dead letter of `refused` (see [`cursed_item`]), which says it was refused until its
/// attempts were spent.
async fn refused_letter(stack: &Stack, refused: &Envelope<Fact>) -> nats_topology::DeadLetter {
    let letter = dead_letter_on(stack, "dlq.facts.fact.west.item_spawned").await;
    assert!(
        letter.reason.contains("refused it 5 times"),
        "{}",
        letter.reason
    );
    assert_eq!(
        Envelope::<Fact>::decode(&letter.payload)
            .expect("the fact")
            .id,
        refused.id
    );
    letter
}

#[tokio::test]
async fn a_fact_the_read_models_keep_refusing_goes_to_the_dead_letters_and_the_rest_is_projected() {
    let stack = Stack::start().await;
    let cursed = cursed_item(&stack).await;
    let _projector = stack.projector();
    let mut facts = history(1);
    facts.push(cursed.clone());
    facts.extend(history(1));
    stack.publish(&facts).await;

    let dlq = stack.js.get_stream("DLQ").await.expect("dlq");
    eventually("the refused fact is dead-lettered", || {
        let mut dlq = dlq.clone();
        async move { (dlq.info().await.ok()?.state.messages > 0).then_some(()) }
    })
    .await;
    refused_letter(&stack, &cursed).await;
    // Everything else is projected, and the projector goes on with what comes next.
    stack.publish(&history(1)).await;
    let Fact::ItemSpawned(refused) = &cursed.payload else {
        unreachable!()
    };
    let (players, mut entities, _) = stack.expected().await;
    entities.remove(&refused.item);
    eventually("every other fact is in the read models", || async {
        let (p, e, _) = stack.projected().await;
        (p == players && e == entities).then_some(())
    })
    .await;
    assert_eq!(players.len(), 3);
    assert_eq!(dlq.clone().info().await.expect("info").state.messages, 1);
}

#[tokio::test]
async fn a_fact_whose_numbers_do_not_fit_a_document_goes_to_the_dead_letters_at_once() {
    let stack = Stack::start().await;
    let mut projector = stack.projector();
    // Experience beyond what BSON's 64-bit integers hold: no document can carry it.
    let p = PlayerId::new();
    let mut state = avatar(p, Position::new(1.0, 1.0), 100);
    state.xp = u64::MAX;
    let absurd = fact(Some(west()), Fact::Spawned(Spawned { state }));
    let mut facts = history(1);
    facts.push(absurd.clone());
    facts.extend(history(1));
    stack.publish(&facts).await;
    let dlq = stack.js.get_stream("DLQ").await.expect("dlq");
    let raw = eventually("the absurd fact is dead-lettered", || {
        let dlq = dlq.clone();
        async move {
            dlq.get_last_raw_message_by_subject("dlq.facts.fact.west.spawned")
                .await
                .ok()
        }
    })
    .await;
    let letter =
        nats_topology::DeadLetter::parse(&raw.headers, raw.payload).expect("a dead letter");
    assert!(
        letter.reason.contains("cannot encode"),
        "the reason names the data: {}",
        letter.reason
    );
    assert_eq!(letter.attempts, 1, "dead-lettered at once, not retried");
    assert_eq!(
        Envelope::<Fact>::decode(&letter.payload)
            .expect("the fact")
            .id,
        absurd.id
    );
    // Everything else is projected and audited, and the projector goes on.
    let more = history(1);
    stack.publish(&more).await;
    eventually("every other fact is audited", || async {
        (stack.audit_count().await == (facts.len() - 1 + more.len()) as u64).then_some(())
    })
    .await;
    let (players, entities, sessions) = stack.projected().await;
    assert_eq!(players.len(), 3);
    assert!(!entities.contains_key(&EntityId::from(p)));
    assert_eq!(sessions.len(), 3);
    assert!(projector.is_running(), "the projector kept running");
}

#[tokio::test]
async fn a_rebuild_while_facts_keep_flowing_ends_equal_to_the_live_models() {
    let stack = Stack::start().await;
    let projector = stack.projector();
    let facts = history(40);
    let (early, late) = facts.split_at(200);
    stack.publish(early).await;
    eventually("the first facts are projected", || async {
        (stack.audit_count().await == early.len() as u64).then_some(())
    })
    .await;
    // Facts keep coming while the rebuild runs.
    let js = stack.js.clone();
    let late = late.to_vec();
    let flowing = tokio::spawn(async move {
        for chunk in late.chunks(20) {
            let out: Vec<_> = chunk
                .iter()
                .map(|f| Outgoing::fact(f).expect("encode"))
                .collect();
            for r in publish_all(&js, out).await {
                r.expect("stored");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    // `projector rebuild` asks the running projector and follows it with a progress bar.
    let follow = Process::new(env!("CARGO_BIN_EXE_projector"))
        .arg("rebuild")
        .env("NATS_URL", stack.nats.url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("projector rebuild");
    let output = tokio::task::spawn_blocking(move || follow.wait_with_output())
        .await
        .expect("join")
        .expect("rebuild command");
    let said = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "projector rebuild failed: {said}");
    assert!(said.contains("switched over"), "{said}");
    flowing.await.expect("publisher");
    eventually("everything is projected", || async {
        (stack.audit_count().await == facts.len() as u64).then_some(())
    })
    .await;
    let expected = stack.expected().await;
    eventually(
        "the rebuilt read models equal the fold of the log",
        || async { (stack.projected().await == expected).then_some(()) },
    )
    .await;
    // The job recorded its progress, and the rebuild's own collections are gone.
    let jobs = stack
        .js
        .get_key_value("rebuild_jobs")
        .await
        .expect("bucket");
    let mut keys = jobs.keys().await.expect("keys");
    let key = keys.next().await.expect("a job").expect("key");
    let job: nats_topology::jobs::RebuildJob =
        serde_json::from_slice(&jobs.get(&key).await.expect("get").expect("job"))
            .expect("job json");
    assert_eq!(job.state, nats_topology::jobs::JobState::Done);
    assert!(
        job.facts_total >= early.len() as u64 && job.facts_done == job.facts_total,
        "{job:?}"
    );
    assert_eq!(stack.rebuild_collections().await, Vec::<String>::new());
    let log = projector.log();
    assert!(log.contains("read models switched over"), "{log}");
}

#[tokio::test]
async fn logins_logouts_and_role_changes_become_sessions_and_roles() {
    let stack = Stack::start().await;
    let names = Names::live();
    projector::live::ensure_indexes(stack.db(), &names)
        .await
        .expect("indexes");
    let p = PlayerId::new();
    let (first, second, lapsed) = ("s-first", "s-second", "s-lapsed");
    let now = chrono::Utc::now();
    let stored = |seq, payload, ip: Option<&str>| Stored {
        seq,
        env: Envelope::new(Actor::Player { id: p }, None, payload),
        client_ip: ip.map(str::to_owned),
        request_id: ip.map(|_| format!("req-{seq}")),
    };
    let login = |session: &str, expires_at| {
        Fact::LoggedIn(LoggedIn {
            player: p,
            session: session.into(),
            expires_at,
        })
    };
    let logout = |session: &str| {
        Fact::LoggedOut(LoggedOut {
            player: p,
            session: session.into(),
        })
    };
    let early = vec![
        stored(
            1,
            Fact::AccountRegistered(AccountRegistered {
                player: p,
                username: "cy".into(),
            }),
            None,
        ),
        stored(
            2,
            login(first, now + chrono::Duration::hours(1)),
            Some("10.0.0.7"),
        ),
        stored(3, logout(first), Some("10.0.0.7")),
    ];
    let late = vec![
        stored(
            4,
            login(second, now + chrono::Duration::hours(1)),
            Some("10.0.0.8"),
        ),
        // A session that lapsed before an admin's role change ended the player's sessions.
        stored(
            5,
            login(lapsed, now - chrono::Duration::minutes(1)),
            Some("10.0.0.9"),
        ),
        stored(
            6,
            Fact::RoleChanged(RoleChanged {
                player: p,
                role: "moderator".into(),
            }),
            None,
        ),
        stored(7, logout(second), None),
        stored(8, logout(lapsed), None),
    ];
    let mut writer = Writer::new("test");
    for batch in [&early, &late, &early] {
        projection::apply(stack.db().client(), stack.db(), &names, batch, &mut writer)
            .await
            .expect("batch");
    }
    let (players, _, sessions) = stack.projected().await;
    assert_eq!(players[&p].state.role, "moderator");
    assert_eq!(players[&p].seq, 8);
    let one = &sessions[first];
    assert_eq!(one.player, p);
    assert!(one.started_at.is_some() && one.ended_at.is_some());
    assert_eq!(one.client_ip.as_deref(), Some("10.0.0.7"));
    assert_eq!(
        one.request_id.as_deref(),
        Some("req-2"),
        "the login's request"
    );
    assert!(
        sessions[second].ended_at.is_some(),
        "ended by the role change"
    );
    assert_eq!(sessions[lapsed].ended_at, None, "it had lapsed already");
    assert_eq!(sessions[lapsed].seq, 8);
    assert_eq!(sessions.len(), 3);
    // The same facts again change nothing.
    projection::apply(stack.db().client(), stack.db(), &names, &late, &mut writer)
        .await
        .expect("redelivery");
    assert_eq!(stack.projected().await.2, sessions);
}

#[tokio::test]
async fn a_second_projector_stands_by_and_takes_over_when_the_first_dies() {
    let stack = Stack::start().await;
    let lease = stack
        .js
        .get_key_value("projector_lease")
        .await
        .expect("bucket");
    let owner = || async {
        let bytes = lease.get("live").await.ok().flatten()?;
        serde_json::from_slice::<nats_topology::lease::Lease>(&bytes)
            .ok()
            .map(|l| l.node)
    };
    let mut first = stack.projector();
    let first_node = eventually("the first projector holds the live projection", owner).await;
    let second = stack.projector();
    eventually("the second projector stands by", || async {
        let log = second.log();
        log.contains("standing by").then_some(())
    })
    .await;
    let early = history(2);
    stack.publish(&early).await;
    eventually("the first projector projects", || async {
        (stack.audit_count().await == early.len() as u64).then_some(())
    })
    .await;
    assert_eq!(owner().await.as_deref(), Some(first_node.as_str()));

    // The first dies without a word; its lease expires and the second takes over.
    first.kill();
    let late = history(2);
    stack.publish(&late).await;
    eventually("the second projector projects what came after", || async {
        (stack.audit_count().await == (early.len() + late.len()) as u64).then_some(())
    })
    .await;
    let second_node = owner().await.expect("an owner");
    assert_ne!(second_node, first_node);
    stack.converges(&[&first, &second]).await;
    let log = second.log();
    assert!(log.contains("took the live projection"), "{log}");
}

#[tokio::test]
async fn a_projector_that_loses_its_lease_stands_by_and_projects_again_once_it_is_free() {
    let mut stack = Stack::start().await;
    let lease = stack
        .js
        .get_key_value("projector_lease")
        .await
        .expect("bucket");
    let mut projector = stack.projector();
    let took = |projector: &Projector| projector.log().matches("took the live projection").count();
    eventually("the projector takes the live projection", || async {
        took(&projector) == 1
    })
    .await;
    let mut published = history(2);
    stack.publish(&published).await;
    eventually("the projector projects", || async {
        stack.audit_count().await == published.len() as u64
    })
    .await;

    // NATS stalls past the lease's fence, as while a cluster elects a leader: the projector
    // stops projecting, since the lease may have expired, and stays up to take it again.
    stack.nats.pause().expect("SIGSTOP");
    eventually("the projector stops projecting", || async {
        projector.log().contains("may have expired")
    })
    .await;
    stack.nats.resume().expect("SIGCONT");
    eventually("the projector takes the live projection again", || async {
        took(&projector) == 2
    })
    .await;
    assert!(projector.is_running(), "{}", projector.log());
    let late = history(2);
    stack.publish(&late).await;
    published.extend(late);
    eventually("the projector projects what came after", || async {
        stack.audit_count().await == published.len() as u64
    })
    .await;

    // Another projector takes the lease over: this one stands by until the lease lapses.
    let now = chrono::Utc::now();
    let intruder = nats_topology::lease::Lease {
        node: "projector-intruder".into(),
        acquired_at: now,
        renewed_at: now,
    };
    lease
        .put("live", serde_json::to_vec(&intruder).expect("json").into())
        .await
        .expect("put");
    eventually("the projector gives the projection up", || async {
        projector.log().contains("taken by another projector")
    })
    .await;
    let position = r#"projector_consumer_position{consumer="projector"}"#;
    eventually("a standing-by projector reports no position", || async {
        projector
            .log()
            .contains("standing by until the lease is free")
            && projector.metric(position).await.is_none()
    })
    .await;
    eventually("the projector takes the lapsed lease", || async {
        took(&projector) == 3
    })
    .await;
    let last = history(2);
    stack.publish(&last).await;
    published.extend(last);
    eventually("the projector projects after the takeover", || async {
        stack.audit_count().await == published.len() as u64
    })
    .await;
    eventually("the live projector reports its position again", || async {
        projector.metric(position).await.is_some()
    })
    .await;
    stack.converges(&[&projector]).await;
    assert!(projector.is_running(), "{}", projector.log());
}

#[tokio::test]
async fn a_rebuild_left_running_by_a_projector_that_stopped_is_run_again() {
    use nats_topology::jobs::{JobState, RebuildJob};
    let stack = Stack::start().await;
    stack.publish(&history(2)).await;
    // A job whose projector stopped half way (killed, or its lease lost), leaving part of a
    // rebuilt collection behind.
    let jobs = stack
        .js
        .get_key_value("rebuild_jobs")
        .await
        .expect("bucket");
    let mut job = RebuildJob::pending("admin");
    job.state = JobState::Running;
    jobs.put(&job.job_id, job.to_bytes().expect("json"))
        .await
        .expect("put");
    stack
        .db()
        .collection::<Document>(&Names::rebuild(&job.job_id).players)
        .insert_one(doc! {"_id": "written-by-the-interrupted-run"})
        .await
        .expect("insert");

    let projector = stack.projector();
    eventually("the interrupted rebuild runs again to its end", || async {
        let bytes = jobs.get(&job.job_id).await.ok().flatten()?;
        let now: RebuildJob = serde_json::from_slice(&bytes).ok()?;
        (now.state == JobState::Done).then_some(())
    })
    .await;
    stack.converges(&[&projector]).await;
    assert_eq!(stack.rebuild_collections().await, Vec::<String>::new());
    let log = projector.log();
    assert!(
        log.contains("interrupted when its projector stopped"),
        "{log}"
    );
}
