//! The topology, publishing and dead-lettering against a real `nats-server`.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, AckKind, Context};
use bytes::Bytes;
use futures::StreamExt;
use nats_topology::dlq::DeadLetter;
use nats_topology::headers::REQUEST_ID;
use nats_topology::topology::{ADVISORIES, COMMANDS, DLQ, FACTS};
use nats_topology::{Change, EnsureError, Outgoing, Settings, Topology};
use schemas::command::Move;
use schemas::{Actor, Command, Envelope, PlayerId, RegionId};
use test_servers::Server;
use test_servers::poll::eventually_within;
use test_servers::stack::messages_in;

async fn connect(nats: &Server) -> Context {
    let (_client, js) = nats_topology::connect(&nats.url(), "test", &Default::default())
        .await
        .expect("connect");
    js
}

async fn ready() -> (Server, Context) {
    let nats = Server::start_nats().expect("nats-server");
    let js = connect(&nats).await;
    nats_topology::ensure(&js, &Topology::new(&Settings::local()))
        .await
        .expect("ensure");
    (nats, js)
}

/// The configuration `stream` is stored with now.
async fn config_of(js: &Context, stream: &str) -> jetstream::stream::Config {
    js.get_stream(stream)
        .await
        .expect(stream)
        .cached_info()
        .config
        .clone()
}

async fn dead_letters(js: &Context) -> Vec<DeadLetter> {
    let stream = js.get_stream(DLQ).await.expect("DLQ");
    let count = stream.cached_info().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=count {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(DeadLetter::parse(&m.headers, m.payload).expect("a dead letter"));
        }
    }
    out
}

fn command(region: &str) -> Envelope<Command> {
    Envelope::new(
        Actor::Player {
            id: PlayerId::new(),
        },
        Some(RegionId::new(region).expect("region")),
        Command::Move(Move { x: 1.0, y: 2.0 }),
    )
}

#[tokio::test]
async fn ensure_twice_leaves_the_same_topology() {
    let nats = Server::start_nats().expect("nats-server");
    let js = connect(&nats).await;
    let topology = Topology::new(&Settings::local());

    let first = nats_topology::ensure(&js, &topology)
        .await
        .expect("first ensure");
    assert!(
        first.entries.iter().all(|(_, c)| *c == Change::Created),
        "{first}"
    );
    assert_eq!(
        first.entries.len(),
        topology.streams.len() + topology.buckets.len()
    );
    let before = config_of(&js, FACTS).await;

    let second = nats_topology::ensure(&js, &topology)
        .await
        .expect("second ensure");
    assert!(second.unchanged(), "{second}");
    let after = config_of(&js, FACTS).await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn ensure_repairs_drift_and_refuses_what_cannot_change() {
    let (_nats, js) = ready().await;
    let mut commands = config_of(&js, COMMANDS).await;
    commands.max_age = Duration::from_secs(60);
    commands.duplicate_window = Duration::from_secs(30);
    js.update_stream(commands).await.expect("drift");

    let report = nats_topology::ensure(&js, &Topology::new(&Settings::local()))
        .await
        .expect("ensure");
    let change = report
        .entries
        .iter()
        .find(|(n, _)| n == COMMANDS)
        .map(|(_, c)| c.clone());
    assert_eq!(
        change,
        Some(Change::Updated(vec!["max_age", "duplicate_window"]))
    );
    let config = config_of(&js, COMMANDS).await;
    assert_eq!(config.max_age, Settings::local().commands_max_age);

    let mut in_memory = Topology::new(&Settings::local());
    for stream in &mut in_memory.streams {
        stream.storage = StorageType::Memory;
    }
    let err = nats_topology::ensure(&js, &in_memory)
        .await
        .expect_err("storage cannot change");
    assert!(
        matches!(
            err,
            EnsureError::Immutable {
                field: "storage",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_same_msg_id_is_stored_once() {
    let (_nats, js) = ready().await;
    let env = command("north-1");
    let message = Outgoing::command(&env).expect("message");
    let first = nats_topology::publish(&js, message.clone())
        .await
        .expect("first");
    let second = nats_topology::publish(&js, message).await.expect("second");
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    assert_eq!(messages_in(&js, COMMANDS).await, 1);

    let stored = js
        .get_stream(COMMANDS)
        .await
        .expect("stream")
        .get_raw_message(first.sequence)
        .await
        .expect("msg");
    assert_eq!(stored.subject.as_str(), "cmd.normal.north-1.move");
    assert_eq!(
        Envelope::<Command>::decode(&stored.payload).expect("decodes"),
        env
    );
}

#[tokio::test]
async fn a_batch_larger_than_the_ack_window_is_stored_in_order() {
    let (_nats, js) = ready().await;
    let batch: Vec<_> = (0..3 * nats_topology::publish::MAX_ACK_INFLIGHT)
        .map(|i| {
            Outgoing::new(
                "fact._global.account_registered",
                format!("m-{i}"),
                format!("{i}"),
            )
        })
        .collect();
    let acks = nats_topology::publish_all(&js, batch).await;
    let sequences: Vec<u64> = acks
        .into_iter()
        .map(|a| a.expect("stored").sequence)
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gaps"
    );
    let facts = js.get_stream(FACTS).await.expect("FACTS");
    let last = facts
        .get_raw_message(sequences[sequences.len() - 1])
        .await
        .expect("last");
    assert_eq!(last.payload, Bytes::from((sequences.len() - 1).to_string()));
}

/// Delivers the next message of `consumer` and answers it with `ack`, `times` times.
async fn deliver_and(js: &Context, consumer: &str, max_deliver: i64, ack: AckKind, times: usize) {
    let stream = js.get_stream(COMMANDS).await.expect("COMMANDS");
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            consumer,
            pull::Config {
                durable_name: Some(consumer.to_owned()),
                ack_policy: AckPolicy::Explicit,
                max_deliver,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    for _ in 0..times {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a delivery")
            .expect("stream open")
            .expect("message");
        message.ack_with(ack).await.expect("answer");
    }
}

fn listen(js: &Context) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let js = js.clone();
    tokio::spawn(async move {
        nats_topology::run_dead_letter_listener(js, async {
            let _ = stopped.await;
        })
        .await
        .expect("listener");
    });
    stop
}

#[tokio::test]
async fn a_message_that_exhausts_its_deliveries_lands_in_dlq_with_its_headers() {
    let (_nats, js) = ready().await;
    let _listener = listen(&js);
    let env = command("north-1");
    let ack = nats_topology::publish(
        &js,
        Outgoing::command(&env)
            .expect("message")
            .header(REQUEST_ID, "req-7"),
    )
    .await
    .expect("published");

    deliver_and(&js, "region-north-1", 3, AckKind::Nak(None), 3).await;

    let letters = eventually_within(Duration::from_secs(10), "a dead letter", || async {
        Some(dead_letters(&js).await).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.origin_stream, COMMANDS);
    assert_eq!(letter.origin_subject, "cmd.normal.north-1.move");
    assert_eq!(letter.origin_seq, ack.sequence);
    assert_eq!(letter.origin_msg_id, Some(env.id.to_string()));
    assert_eq!(letter.consumer.as_deref(), Some("region-north-1"));
    assert_eq!(letter.attempts, 3);
    assert!(
        letter.reason.contains("exhausted its 3 deliveries"),
        "{}",
        letter.reason
    );
    assert_eq!(
        letter.headers.get(REQUEST_ID).map(|v| v.as_str()),
        Some("req-7")
    );
    assert_eq!(
        Envelope::<Command>::decode(&letter.payload).expect("intact"),
        env
    );
    eventually_within(
        Duration::from_secs(10),
        "the advisory acknowledged",
        || async {
            let advisories = js.get_stream(ADVISORIES).await.expect("ADVISORIES");
            let info = advisories
                .consumer_info(nats_topology::topology::DLQ_LISTENER)
                .await
                .expect("listener");
            (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_terminated_message_lands_in_dlq_with_the_reason() {
    let (_nats, js) = ready().await;
    let _listener = listen(&js);
    nats_topology::publish(&js, Outgoing::command(&command("south")).expect("message"))
        .await
        .expect("published");

    deliver_and(&js, "region-south", -1, AckKind::Term, 1).await;

    let letters = eventually_within(Duration::from_secs(10), "a dead letter", || async {
        Some(dead_letters(&js).await).filter(|l| !l.is_empty())
    })
    .await;
    assert!(
        letters[0].reason.starts_with("terminated by the consumer"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].origin_subject, "cmd.normal.south.move");
}

#[tokio::test]
async fn an_advisory_raised_while_no_listener_runs_is_not_lost() {
    let (_nats, js) = ready().await;
    nats_topology::publish(&js, Outgoing::command(&command("east")).expect("message"))
        .await
        .expect("published");
    deliver_and(&js, "region-east", 1, AckKind::Nak(None), 1).await;
    eventually_within(Duration::from_secs(10), "the advisory kept", || async {
        (messages_in(&js, ADVISORIES).await > 0).then_some(())
    })
    .await;
    assert_eq!(messages_in(&js, DLQ).await, 0);

    let _listener = listen(&js);
    let letters = eventually_within(Duration::from_secs(10), "a dead letter", || async {
        Some(dead_letters(&js).await).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(letters[0].origin_subject, "cmd.normal.east.move");
}

#[tokio::test]
async fn a_message_dead_lettered_twice_is_stored_once() {
    let (_nats, js) = ready().await;
    let letter = DeadLetter::new(
        COMMANDS,
        "cmd.low.north-1.chat",
        9,
        Some("region-north-1"),
        "poison: not an envelope",
        1,
        async_nats::HeaderMap::new(),
        Bytes::from_static(b"\xff\xfe"),
    );
    let first = nats_topology::dead_letter(&js, &letter)
        .await
        .expect("first");
    let second = nats_topology::dead_letter(&js, &letter)
        .await
        .expect("second");
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    assert_eq!(dead_letters(&js).await.len(), 1);
}

#[tokio::test]
async fn many_players_are_looked_up_in_avatar_regions_at_once_as_one_by_one() {
    use nats_topology::avatars::{self, AvatarRegion, LookupManyError, MOST_AT_ONCE};

    let nats = Server::start_nats().expect("nats-server");
    let (client, js) = nats_topology::connect(&nats.url(), "test", &Default::default())
        .await
        .expect("connect");
    nats_topology::ensure(&js, &Topology::new(&Settings::local()))
        .await
        .expect("ensure");
    let bucket = js
        .get_key_value(nats_topology::topology::AVATAR_REGIONS)
        .await
        .expect("avatar_regions");
    let players: Vec<PlayerId> = (0..6).map(|_| PlayerId::new()).collect();

    // An empty bucket: nobody has an entry.
    let answers = avatars::lookup_many(&client, &bucket, &players)
        .await
        .expect("answers");
    assert_eq!(answers.len(), players.len());
    assert!(answers.values().all(Option::is_none), "{answers:?}");

    let west = RegionId::new("west").expect("a region id");
    let east = RegionId::new("east").expect("a region id");
    let entries = [
        AvatarRegion::at(Some(west.clone())),
        AvatarRegion::arriving_in(east.clone()),
        AvatarRegion::at(None),
    ];
    for (player, entry) in players.iter().zip(&entries) {
        avatars::record(&bucket, *player, entry)
            .await
            .expect("recorded");
    }
    // Moved, then moved again: the last entry counts.
    avatars::record(&bucket, players[0], &AvatarRegion::at(Some(east.clone())))
        .await
        .expect("recorded");
    // Deleted, unreadable, never written.
    avatars::record(&bucket, players[3], &entries[0])
        .await
        .expect("recorded");
    bucket
        .delete(players[3].to_string())
        .await
        .expect("deleted");
    bucket
        .put(
            players[4].to_string(),
            Bytes::from_static(b"{\"region\":7}"),
        )
        .await
        .expect("put");

    // The same player twice, and one the bucket never heard of.
    let mut asked = players.clone();
    asked.push(players[1]);
    let answers = avatars::lookup_many(&client, &bucket, &asked)
        .await
        .expect("answers");
    assert_eq!(answers.len(), players.len());
    for player in &players {
        let one = avatars::lookup(&bucket, *player).await.expect("a lookup");
        assert_eq!(answers[player], one, "{player}");
    }
    assert_eq!(answers[&players[0]], Some(AvatarRegion::at(Some(east))));
    assert_eq!(answers[&players[1]], Some(entries[1].clone()));
    assert_eq!(answers[&players[2]], Some(AvatarRegion::at(None)));
    assert_eq!(answers[&players[3]], None);
    assert_eq!(answers[&players[4]], None);
    assert_eq!(answers[&players[5]], None);

    // As many as one lookup takes, every one with an entry: all of them come back.
    let crowd: Vec<PlayerId> = (0..MOST_AT_ONCE).map(|_| PlayerId::new()).collect();
    for player in &crowd {
        avatars::record(&bucket, *player, &AvatarRegion::at(Some(west.clone())))
            .await
            .expect("recorded");
    }
    let answers = avatars::lookup_many(&client, &bucket, &crowd)
        .await
        .expect("answers");
    assert_eq!(answers.len(), MOST_AT_ONCE);
    assert!(
        answers
            .values()
            .all(|a| a.as_ref().and_then(|a| a.region.as_ref()) == Some(&west)),
        "{answers:?}"
    );
    // One more is refused before anything is sent.
    let mut over = crowd.clone();
    over.push(PlayerId::new());
    assert!(matches!(
        avatars::lookup_many(&client, &bucket, &over).await,
        Err(LookupManyError::TooMany(n)) if n == MOST_AT_ONCE + 1
    ));
    // Nothing to ask: nothing sent, nothing answered.
    let none = avatars::lookup_many(&client, &bucket, &[])
        .await
        .expect("answers");
    assert!(none.is_empty());

    // A bucket that is gone answers no lookup, and says so at once.
    js.delete_key_value(nats_topology::topology::AVATAR_REGIONS)
        .await
        .expect("deleted");
    let gone = tokio::time::timeout(
        Duration::from_secs(5),
        avatars::lookup_many(&client, &bucket, &players),
    )
    .await
    .expect("an answer in time");
    assert!(matches!(gone, Err(LookupManyError::Refused(_))), "{gone:?}");
}
