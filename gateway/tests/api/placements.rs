//! Where the simulators put avatars, as the gateway looks it up: from its copy of
//! `avatar_regions`, never behind what was written before the lookup was asked.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv::Store;
use gateway::placements::Placements;
use nats_topology::avatars::{self, AvatarRegion};
use prometheus::IntCounterVec;
use schemas::{PlayerId, RegionId};
use test_servers::poll::eventually_within;
use test_servers::stack::Stack;

/// A secured NATS with the topology, and the admin's `avatar_regions`.
async fn secured() -> (Stack, Store) {
    let stack = Stack::builder().secured().start().await;
    let admins = avatar_regions(&stack.js).await;
    (stack, admins)
}

/// The lookups of a gateway on its own connection to `stack`, with the count of what answered
/// them, once a watch feeds its copy.
async fn start(stack: &Stack) -> (Placements, IntCounterVec) {
    let env: HashMap<_, _> = stack.env_for("gateway").into_iter().collect();
    let credentials = nats_topology::Credentials::user(&env["NATS_USER"], &env["NATS_PASSWORD"]);
    let (client, js) = nats_topology::connect(&env["NATS_URL"], "gateway", &credentials)
        .await
        .expect("the gateway connects");
    let answered = gateway::metrics::Metrics::new().avatar_lookups();
    let placements = Placements::start(client, avatar_regions(&js).await, answered.clone());
    copying(&placements).await;
    (placements, answered)
}

/// As [`start`], on a stack of its own.
async fn placements() -> (Stack, Store, Placements, IntCounterVec) {
    let (stack, admins) = secured().await;
    let (placements, answered) = start(&stack).await;
    (stack, admins, placements, answered)
}

/// The answer to the first lookup of `player` that the copy gives (not the bucket, which answers
/// when the copy lags).
async fn from_the_copy(
    placements: &Placements,
    answered: &IntCounterVec,
    player: PlayerId,
) -> Option<AvatarRegion> {
    from_the_copy_within(Duration::from_secs(10), placements, answered, player).await
}

/// As [`from_the_copy`], waiting up to `within` for the copy.
async fn from_the_copy_within(
    within: Duration,
    placements: &Placements,
    answered: &IntCounterVec,
    player: PlayerId,
) -> Option<AvatarRegion> {
    let copy = answered.with_label_values(&["copy"]);
    eventually_within(within, "the copy to answer", || async {
        let before = copy.get();
        let answer = looked_up(placements, player).await;
        (copy.get() == before + 1).then_some(answer)
    })
    .await
}

/// Checks that the copy answers each of `players` with its entry.
async fn each_from_the_copy(
    placements: &Placements,
    answered: &IntCounterVec,
    players: &[(PlayerId, AvatarRegion)],
) {
    for (player, entry) in players {
        assert_eq!(
            from_the_copy(placements, answered, *player).await.as_ref(),
            Some(entry),
            "{player}"
        );
    }
}

async fn avatar_regions(js: &async_nats::jetstream::Context) -> Store {
    js.get_key_value(nats_topology::topology::AVATAR_REGIONS)
        .await
        .expect("avatar_regions")
}

/// Waits until a watch feeds the copy, so that lookups are answered from it.
async fn copying(placements: &Placements) {
    eventually_within(
        Duration::from_secs(10),
        "the copy to follow the bucket",
        || async { placements.copying() },
    )
    .await;
}

fn region(name: &str) -> Option<RegionId> {
    Some(RegionId::new(name).expect("a region id"))
}

/// `count` new players, each placed in one of the four regions in turn, as a simulator would.
async fn placed(bucket: &Store, count: usize) -> Vec<(PlayerId, AvatarRegion)> {
    let regions = ["north-east", "north-west", "south-east", "south-west"];
    let mut players = Vec::new();
    for i in 0..count {
        let entry = AvatarRegion::at(region(regions[i % regions.len()]));
        let player = PlayerId::new();
        avatars::record(bucket, player, &entry)
            .await
            .expect("recorded");
        players.push((player, entry));
    }
    players
}

async fn looked_up(placements: &Placements, player: PlayerId) -> Option<AvatarRegion> {
    placements.lookup(player).await.expect("an answer")
}

#[tokio::test]
async fn a_lookup_sees_every_entry_written_before_it_was_asked() {
    let (_stack, bucket, placements, answered) = placements().await;
    let players: Vec<PlayerId> = (0..3).map(|_| PlayerId::new()).collect();
    for player in &players {
        assert_eq!(looked_up(&placements, *player).await, None, "nothing yet");
    }
    // Each write is looked up at once, as a command sent on an outcome would be.
    let entries = [
        AvatarRegion::at(region("north-east")),
        AvatarRegion::arriving_in(RegionId::new("south-west").expect("a region id")),
        AvatarRegion::at(None),
        AvatarRegion::at(region("north-west")),
    ];
    for round in 0..40 {
        let player = players[round % players.len()];
        let entry = &entries[round % entries.len()];
        avatars::record(&bucket, player, entry)
            .await
            .expect("recorded");
        assert_eq!(
            looked_up(&placements, player).await.as_ref(),
            Some(entry),
            "round {round}"
        );
    }
    // Deleted, unreadable, and a key that names no player: none is an entry.
    bucket
        .delete(players[0].to_string())
        .await
        .expect("deleted");
    assert_eq!(looked_up(&placements, players[0]).await, None);
    bucket
        .put(players[1].to_string(), "{\"region\":7}".into())
        .await
        .expect("put");
    bucket.put("not-a-player", "{}".into()).await.expect("put");
    assert_eq!(looked_up(&placements, players[1]).await, None);
    avatars::record(&bucket, players[0], &entries[0])
        .await
        .expect("recorded");
    assert_eq!(
        looked_up(&placements, players[0]).await,
        Some(entries[0].clone())
    );

    // Many players written, then all looked up at once: each sees its own.
    let crowd = placed(&bucket, 300).await;
    let answers =
        futures::future::join_all(crowd.iter().map(|(player, _)| placements.lookup(*player))).await;
    for ((player, entry), answer) in crowd.iter().zip(answers) {
        assert_eq!(answer.expect("an answer").as_ref(), Some(entry), "{player}");
    }
    // Every lookup was answered, and the copy answered some: what the rounds above checked is
    // the copy's answer, not only the bucket's (which answers when the copy has not answered
    // within 50 ms).
    let by = |what: &str| answered.with_label_values(&[what]).get();
    assert_eq!(by("copy") + by("bucket"), 3 + 40 + 3 + 300);
    assert!(by("copy") > 0, "the copy answered nothing");
}

#[tokio::test]
async fn entries_written_before_the_gateway_started_are_in_its_copy() {
    let (stack, bucket) = secured().await;
    let players = placed(&bucket, 20).await;
    let (left, never) = (PlayerId::new(), PlayerId::new());
    avatars::record(&bucket, left, &players[0].1)
        .await
        .expect("recorded");
    bucket.delete(left.to_string()).await.expect("deleted");

    let (placements, answered) = start(&stack).await;
    each_from_the_copy(&placements, &answered, &players).await;
    assert_eq!(from_the_copy(&placements, &answered, left).await, None);
    assert_eq!(from_the_copy(&placements, &answered, never).await, None);
}

#[tokio::test]
async fn a_bucket_purged_or_made_anew_is_copied_again() {
    let (stack, bucket, placements, answered) = placements().await;
    let (gone, kept) = (PlayerId::new(), PlayerId::new());
    let east = AvatarRegion::at(region("north-east"));
    avatars::record(&bucket, gone, &east)
        .await
        .expect("recorded");
    assert_eq!(looked_up(&placements, gone).await, Some(east.clone()));

    // The stream purged behind the gateway's back: no watch hears of it.
    let stream = stack
        .js
        .get_stream("KV_avatar_regions")
        .await
        .expect("the bucket's stream");
    stream.purge().await.expect("purged");
    eventually_within(Duration::from_secs(30), "the purge to be seen", || async {
        looked_up(&placements, gone).await.is_none()
    })
    .await;
    copying(&placements).await;
    assert_eq!(from_the_copy(&placements, &answered, gone).await, None);

    // Made anew, its sequences start again below what the copy had seen.
    stack
        .js
        .delete_key_value(nats_topology::topology::AVATAR_REGIONS)
        .await
        .expect("deleted");
    nats_topology::ensure(
        &stack.js,
        &nats_topology::Topology::new(&nats_topology::Settings::local()),
    )
    .await
    .expect("made anew");
    let bucket = avatar_regions(&stack.js).await;
    let west = AvatarRegion::at(region("south-west"));
    avatars::record(&bucket, kept, &west)
        .await
        .expect("recorded");
    eventually_within(
        Duration::from_secs(30),
        "the new bucket to be copied",
        || async { placements.lookup(kept).await.ok().flatten() == Some(west.clone()) },
    )
    .await;
    copying(&placements).await;
    // The new bucket's entries are in the copy, and a write is seen at once, as before.
    assert_eq!(
        from_the_copy(&placements, &answered, kept).await,
        Some(west)
    );
    assert_eq!(from_the_copy(&placements, &answered, gone).await, None);
    avatars::record(&bucket, gone, &east)
        .await
        .expect("recorded");
    assert_eq!(looked_up(&placements, gone).await, Some(east));
}

#[tokio::test]
async fn the_copy_follows_the_bucket_again_after_nats_restarts() {
    let (mut stack, bucket, placements, answered) = placements().await;
    let before = placed(&bucket, 5).await;
    each_from_the_copy(&placements, &answered, &before).await;

    stack.nats.restart().expect("NATS back");
    let moved = AvatarRegion::at(region("south-east"));
    let (first, _) = before[0];
    eventually_within(
        Duration::from_secs(30),
        "a write after the restart",
        || async { avatars::record(&bucket, first, &moved).await.is_ok() },
    )
    .await;
    let after = placed(&bucket, 5).await;

    // Whatever answers once NATS is back, no answer is older than a write made before it.
    let now = after
        .iter()
        .cloned()
        .chain(before.iter().skip(1).cloned())
        .chain([(first, moved)]);
    for (player, entry) in now {
        let answer = eventually_within(Duration::from_secs(30), "an answer", || async {
            placements.lookup(player).await.ok()
        })
        .await;
        assert_eq!(answer.as_ref(), Some(&entry), "{player}");
        // And the copy takes up answering again: the watch outlived the restart or was begun
        // anew (an ordered consumer that lost its server may take over 10 s to be made again).
        assert_eq!(
            from_the_copy_within(Duration::from_secs(30), &placements, &answered, player)
                .await
                .as_ref(),
            Some(&entry),
            "{player}"
        );
    }
}

#[tokio::test]
async fn lookups_are_answered_by_the_bucket_while_the_copy_lags() {
    use futures::TryStreamExt;

    let (stack, bucket, placements, answered) = placements().await;
    let by = |what: &str| answered.with_label_values(&[what]).get();
    // The copy's watch held back by NATS itself: its consumer paused, so the copy stays behind
    // every write below without its watch failing.
    let stream = stack
        .js
        .get_stream("KV_avatar_regions")
        .await
        .expect("the bucket's stream");
    let watches: Vec<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .expect("the consumers");
    assert_eq!(watches.len(), 1, "one watch: {watches:?}");
    let until = chrono::Utc::now() + chrono::Duration::seconds(60);
    stream
        .pause_consumer(&watches[0], until)
        .await
        .expect("paused");

    let players = placed(&bucket, 10).await;
    let copied = by("copy");
    for (player, entry) in &players {
        let before = by("bucket");
        assert_eq!(
            looked_up(&placements, *player).await.as_ref(),
            Some(entry),
            "{player}"
        );
        assert_eq!(by("bucket"), before + 1, "answered by the bucket");
    }
    assert_eq!(by("copy"), copied, "the copy answered while it lagged");

    // Let go, the copy catches up and answers again.
    stream.resume_consumer(&watches[0]).await.expect("resumed");
    each_from_the_copy(&placements, &answered, &players).await;
}
