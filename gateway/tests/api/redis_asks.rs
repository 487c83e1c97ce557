//! The shared Redis round trip, on its own against a real Redis: many asks in one script call,
//! each decided as if it were alone. Each test runs against one `redis-server` and against a
//! Redis Cluster of three masters, where the keys of one ask lie in several slots and the ask is
//! answered in parts.

use std::time::Duration;

use gateway::auth::{Role, SessionState};
use gateway::redis_asks::{Ask, BUDGET, Gate, Limit, SessionCheck};
use redis::AsyncCommands;
use test_servers::Server;

async fn connect(url: &str) -> service::redis::Redis {
    let patience = service::redis::Patience {
        connect: Duration::from_millis(500),
        response: Duration::from_millis(500),
        retries: 0,
    };
    service::redis::Redis::connect(url, Some(patience))
        .await
        .expect("redis")
}

/// Runs the test function `$name(url)` against one `redis-server` and against a three-master
/// Redis Cluster.
macro_rules! on_one_server_and_a_cluster {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_one_server() {
                let server = test_servers::Server::start_redis().expect("redis-server");
                super::$name(&server.url()).await;
            }

            #[tokio::test]
            async fn on_a_cluster() {
                let cluster = test_servers::RedisCluster::start().expect("Redis Cluster");
                super::$name(&cluster.url()).await;
            }
        }
    };
}

on_one_server_and_a_cluster!(asks_sent_together_are_each_answered_as_if_alone);
on_one_server_and_a_cluster!(limits_are_counted_all_together_or_not_at_all);
on_one_server_and_a_cluster!(limits_before_the_session_count_whatever_its_state);

/// One request a second with a burst of two.
fn limit(key: &str) -> Limit {
    Limit {
        key: key.to_owned(),
        interval_ms: 1000,
        tolerance_ms: 2000,
    }
}

fn ask(session: &str, view: &str, limits: &[&str]) -> Ask {
    Ask {
        session: Some(SessionCheck {
            key: session.to_owned(),
            owner: "ann".to_owned(),
        }),
        view: Some(view.to_owned()),
        limits: limits.iter().map(|k| limit(k)).collect(),
        ..Ask::default()
    }
}

async fn asks_sent_together_are_each_answered_as_if_alone(url: &str) {
    let mut redis = connect(url).await;
    let () = redis.set("session:live", "ann admin").await.expect("set");
    let () = redis
        .set("player:a", r#"{"region":"north"}"#)
        .await
        .expect("set");
    let gate = Gate::start(redis.clone());

    // Many asks at once, so most go in shared calls: each answer still matches its own ask.
    let asks = (0..200).map(|i| {
        let gate = gate.clone();
        async move {
            let live = i % 2 == 0;
            let session = if live { "session:live" } else { "session:gone" };
            let answer = gate
                .ask(ask(session, "player:a", &[&format!("rl:p:{i}")]))
                .await
                .expect("answered");
            (i, live, answer)
        }
    });
    for (i, live, answer) in futures::future::join_all(asks).await {
        let expected = if live {
            SessionState::Live(Role::Admin)
        } else {
            SessionState::Ended
        };
        assert_eq!(answer.session, Some(expected), "ask {i}");
        assert_eq!(answer.wait, None, "ask {i}: within its limit");
        assert_eq!(answer.view.as_deref(), Some(r#"{"region":"north"}"#));
    }
    // A request with an ended session counts against no limit.
    let counted: Vec<Option<String>> = redis.mget(&["rl:p:0", "rl:p:1"]).await.expect("mget");
    assert!(counted[0].is_some(), "a live session's request is counted");
    assert_eq!(counted[1], None, "an ended session's request is not");

    // A session is only its own player's: for another, it is not theirs and counts nothing.
    let mut of_ben = ask("session:live", "player:a", &["rl:ben"]);
    if let Some(session) = of_ben.session.as_mut() {
        session.owner = "ben".to_owned();
    }
    let answer = gate.ask(of_ben).await.expect("answered");
    assert_eq!(answer.session, Some(SessionState::NotTheirs));
    let counted: Option<String> = redis.get("rl:ben").await.expect("get");
    assert_eq!(
        counted, None,
        "a request on another player's session is not counted"
    );
}

async fn limits_are_counted_all_together_or_not_at_all(url: &str) {
    let redis = connect(url).await;
    let gate = Gate::start(redis.clone());
    let no_session = |limits: &[&str]| Ask {
        limits: limits.iter().map(|k| limit(k)).collect(),
        ..Ask::default()
    };

    // The shared limit allows a burst of two, and then refuses.
    for _ in 0..2 {
        let answer = gate
            .ask(no_session(&["rl:ip", "rl:a"]))
            .await
            .expect("answered");
        assert_eq!(answer.session, None, "an ask without a session");
        assert_eq!(answer.wait, None);
        assert_eq!(answer.view, None);
    }
    let refused = gate
        .ask(no_session(&["rl:ip", "rl:b"]))
        .await
        .expect("answered");
    let wait = refused.wait.expect("over the shared limit");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );

    // The refused request did not count against `rl:b`: alone it still has its whole burst.
    for _ in 0..2 {
        let answer = gate.ask(no_session(&["rl:b"])).await.expect("answered");
        assert_eq!(answer.wait, None);
    }
    assert!(
        gate.ask(no_session(&["rl:b"]))
            .await
            .expect("answered")
            .wait
            .is_some()
    );
}

async fn limits_before_the_session_count_whatever_its_state(url: &str) {
    let mut redis = connect(url).await;
    let gate = Gate::start(redis.clone());
    let ended = || Ask {
        limits_before_session: vec![limit("rl:ip")],
        ..ask("session:gone", "player:x", &["rl:player"])
    };
    // The IP's burst of two is spent by requests whose session has ended...
    for _ in 0..2 {
        let answer = gate.ask(ended()).await.expect("answered");
        assert_eq!(answer.session, Some(SessionState::Ended));
        assert_eq!(answer.wait, None);
    }
    assert!(gate.ask(ended()).await.expect("answered").wait.is_some());
    // ... and not the player's, which only a live session counts.
    let counted: Option<String> = redis.get("rl:player").await.expect("get");
    assert_eq!(counted, None);
}

#[tokio::test]
async fn without_redis_an_ask_is_unanswered_within_the_budget_and_answered_again_after() {
    let mut server = Server::start_redis().expect("redis-server");
    let redis = connect(&server.url()).await;
    let gate = Gate::start(redis);
    let probe = || ask("session:x", "player:x", &["rl:x"]);
    assert!(gate.ask(probe()).await.is_ok());

    server.stop();
    let started = tokio::time::Instant::now();
    let unanswered = gate.ask(probe()).await;
    assert!(unanswered.is_err(), "{unanswered:?}");
    assert!(
        started.elapsed() < BUDGET + Duration::from_secs(1),
        "gave up after {:?}",
        started.elapsed()
    );

    server.restart().expect("Redis back");
    let answer = test_servers::poll::eventually_within(
        Duration::from_secs(10),
        "the gate answers again",
        || async { gate.ask(probe()).await.ok() },
    )
    .await;
    assert_eq!(
        answer.session,
        Some(SessionState::Ended),
        "the restarted Redis holds no session"
    );
}

on_one_server_and_a_cluster!(a_role_change_during_a_login_leaves_no_session_with_the_old_role);

/// A login reads the role generation, then the account; a role change stored between that read
/// and the session's start must not let the session live with the old role.
async fn a_role_change_during_a_login_leaves_no_session_with_the_old_role(url: &str) {
    let mut redis = connect(url).await;
    let sessions = gateway::auth::Sessions::default();
    let player = schemas::PlayerId::new();

    // Nothing moved: the session starts, in the player's slot.
    let read = sessions
        .role_generation(&mut redis, "ann")
        .await
        .expect("generation");
    let started = sessions
        .start(
            &mut redis,
            &read,
            "s1",
            player,
            Role::Player,
            Duration::from_secs(60),
        )
        .await
        .expect("start");
    assert!(started);
    assert_eq!(
        sessions.of(&mut redis, player).await.expect("sessions"),
        ["s1"]
    );

    // A role change moves the generation after the login read it: the login starts nothing.
    let read = sessions
        .role_generation(&mut redis, "ann")
        .await
        .expect("generation");
    sessions.fence_role(&mut redis, "ann").await.expect("fence");
    let started = sessions
        .start(
            &mut redis,
            &read,
            "s2",
            player,
            Role::Player,
            Duration::from_secs(60),
        )
        .await
        .expect("start");
    assert!(!started, "the login must read the account again");
    let left: Option<String> = redis
        .get(format!("session:{{{player}}}:s2"))
        .await
        .expect("get");
    assert_eq!(left, None, "no session is left behind");
    assert_eq!(
        sessions.of(&mut redis, player).await.expect("sessions"),
        ["s1"]
    );
}

/// The node of `cluster` that holds `key`: the one that answers for it rather than redirecting.
async fn owner(cluster: &test_servers::RedisCluster, key: &str) -> usize {
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut plain = redis::Client::open(node.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("node");
        let here: redis::RedisResult<Option<String>> = plain.get(key).await;
        if here.is_ok() {
            return i;
        }
    }
    panic!("no node holds {key}")
}

#[tokio::test]
async fn on_a_cluster_an_ask_that_fails_half_way_gives_back_what_it_counted() {
    let mut cluster = test_servers::RedisCluster::start().expect("Redis Cluster");
    let redis = connect(&cluster.url()).await;
    let gate = Gate::start(redis.clone());
    // The address's limit and the player's session on two different nodes.
    let ip = "rl:api_per_ip:{127.0.0.1}";
    let mut n = 0;
    let session = loop {
        let session = format!("session:{{p{n}}}:s");
        if owner(&cluster, &session).await != owner(&cluster, ip).await {
            break session;
        }
        n += 1;
    };
    let down = owner(&cluster, &session).await;
    cluster.nodes[down].stop();
    // A minute a request: the count would stay a minute unless given back.
    let slow = Limit {
        key: ip.to_owned(),
        interval_ms: 60_000,
        tolerance_ms: 120_000,
    };
    let ask = Ask {
        limits_before_session: vec![slow],
        ..ask(&session, &format!("player:{{p{n}}}"), &[])
    };
    // The address's limit counts, then the session's node does not answer: the ask fails, and
    // the count is given back, as a script that did not run would have counted nothing.
    // (The first may fail before anything counts, as the client finds the node gone.)
    for _ in 0..3 {
        assert!(gate.ask(ask.clone()).await.is_err());
    }
    test_servers::poll::eventually_within(
        Duration::from_secs(10),
        "the address's count is given back",
        || {
            let mut redis = redis.clone();
            async move {
                let held: Option<String> = redis.get(ip).await.expect("get");
                held.is_none()
            }
        },
    )
    .await;
}

#[tokio::test]
async fn one_url_of_a_cluster_node_is_taken_as_the_cluster() {
    let cluster = test_servers::RedisCluster::start().expect("Redis Cluster");
    let redis = connect(&cluster.nodes[1].url()).await;
    assert!(redis.is_cluster(), "a cluster node's URL alone");
    let server = Server::start_redis().expect("redis-server");
    assert!(!connect(&server.url()).await.is_cluster());
}
