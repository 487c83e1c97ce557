//! The gateway on a Redis Cluster of three masters, as `ops/up --cluster` runs it: sessions,
//! cached views, rate limits, idempotency keys and the live stream all work, with no call
//! refused for keys in several slots (`CROSSSLOT`) and no fallback to the gateway's own limits.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::StatusCode;
use schemas::read_model::{channel, key};
use serde_json::{Value, json};
use test_servers::RedisCluster;

use crate::helpers::*;
use crate::stream::{SESSION_ENDED, closed_within, next_text, open};

/// A gateway whose `REDIS_URL` names the cluster's three seeds.
async fn on(cluster: &RedisCluster, config: &str) -> TestApp {
    let url = cluster.url();
    let app = spawn_app_with_env(config, &[("REDIS_URL", url.as_str())]).await;
    assert!(
        app.state.redis().is_cluster(),
        "the gateway took {url} as a cluster"
    );
    app
}

/// A plain connection to one node of the cluster (no redirections followed).
async fn node(cluster: &RedisCluster, i: usize) -> redis::aio::MultiplexedConnection {
    redis::Client::open(cluster.nodes[i].url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("node")
}

/// How many connections listen on `channel`, over every node.
async fn listeners(cluster: &RedisCluster, channel: &str) -> u64 {
    let mut total = 0;
    for i in 0..cluster.nodes.len() {
        let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut node(cluster, i).await)
            .await
            .expect("numsub");
        total += counts.first().map_or(0, |(_, n)| *n);
    }
    total
}

/// Every key in the cluster, over every node.
async fn keys(cluster: &RedisCluster, pattern: &str) -> Vec<String> {
    let mut all = Vec::new();
    for i in 0..cluster.nodes.len() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut node(cluster, i).await)
            .await
            .expect("keys");
        all.extend(keys);
    }
    all
}

/// No call to Redis failed (a `CROSSSLOT` refusal would count), so no rate limit fell back to
/// the gateway's own.
async fn assert_no_redis_error(app: &TestApp) {
    let text = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gateway_dependency_errors_total{dependency=\"redis\"}"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        text.lines().any(|l| l == "gateway_rate_limiter_fallback 0"),
        "the limits never fell back"
    );
}

#[tokio::test]
async fn a_player_plays_from_login_to_logout_on_a_redis_cluster() {
    let cluster = RedisCluster::start().expect("Redis Cluster");
    let app = on(&cluster, LOOSE_LIMITS).await;
    let (player_id, token) = app.player("nora").await;

    // Readiness pings every master.
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK, "{:?}", ready.text().await);
    // The region reads' versions are read in one MGET over several slots.
    let mut redis = app.state.redis();
    for (region, version) in [("north-east", 3u64), ("north-west", 5), ("south-east", 7)] {
        let _: () = redis
            .set(format!("world:version:{region}"), version)
            .await
            .expect("set");
    }
    let versions: Vec<Option<u64>> = redis
        .mget(&[
            "world:version:north-east",
            "world:version:nowhere",
            "world:version:north-west",
            "world:version:south-east",
        ])
        .await
        .expect("mget");
    assert_eq!(versions, [Some(3), None, Some(5), Some(7)]);

    // The session and the player's keys lie together, in the player's slot.
    let sessions = keys(&cluster, "session:*").await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(
        sessions[0].starts_with(&format!("session:{{{player_id}}}:")),
        "{sessions:?}"
    );

    // A read fills the cached view from the read model; the next is served from it.
    app.put_in_world(&player_id, "nora", "north-east").await;
    for _ in 0..2 {
        let me = app.get("/v1/players/me", Some(&token)).await;
        assert_eq!(me.status(), StatusCode::OK);
        let me: Value = me.json().await.expect("json");
        assert_eq!(me["player_id"], player_id.as_str());
    }
    assert_eq!(
        keys(&cluster, &key::player_view(&player_id)).await.len(),
        1,
        "the view is cached under the player's tag"
    );

    // Commands pass the gate (session, view and limits of two slots) and the idempotency key.
    let send = |key: &'static str| {
        app.http
            .post(app.url("/v1/commands"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({"type": "move", "x": 5, "y": 5}))
            .send()
    };
    let first = send("k-1").await.expect("send");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    let again: Value = send("k-1").await.expect("send").json().await.expect("json");
    assert_eq!(again, first, "the same key answers the same");
    assert_eq!(app.messages_in("COMMANDS").await, 1);

    // The live stream hears what is published on any node: the cluster carries it.
    let mut socket = open(&app, &token).await;
    let channel = channel::player(&player_id);
    eventually_within(
        Duration::from_secs(5),
        "the stream's subscription",
        || async { listeners(&cluster, &channel).await > 0 },
    )
    .await;
    for i in 0..cluster.nodes.len() {
        let text = format!(r#"{{"from_node":{i}}}"#);
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(&text)
            .query_async(&mut node(&cluster, i).await)
            .await
            .expect("publish");
        assert_eq!(next_text(&mut socket).await, text);
    }

    // A logout ends the session (its keys, in one slot) and the stream.
    app.log_out(&token).await;
    app.assert_revoked(&token).await;
    assert!(keys(&cluster, "session:*").await.is_empty());
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(5)).await;
    assert_eq!(
        code, SESSION_ENDED,
        "the stream ended with the session: {reason}"
    );

    assert_no_redis_error(&app).await;
}

#[tokio::test]
async fn a_role_change_ends_sessions_and_limits_hold_on_a_redis_cluster() {
    let cluster = RedisCluster::start().expect("Redis Cluster");
    let tight = loose_limits_but(&[("reads_per_player", "{ rate_per_sec = 0.1, burst = 3 }")]);
    let app = on(&cluster, &tight).await;
    let (player_id, token) = app.player("olga").await;
    let (_, other) = app.player("pia").await;

    // A player's reads are limited by the cluster, and only that player's.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.get("/v1/players/me", Some(&token)).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(
        app.get("/v1/players/me", Some(&other)).await.status(),
        StatusCode::OK
    );
    assert_no_redis_error(&app).await;

    // A role change ends every session the player had; a new login starts one.
    let admin = app.login("root", PASSWORD).await;
    let changed = app.change_role(&admin, &player_id, "moderator").await;
    assert_eq!(changed.status(), StatusCode::OK);
    app.assert_revoked(&token).await;
    // The new login's session is the player's only one: the old one is gone from its slot.
    let _again = app.login("olga", PASSWORD).await;
    let sessions = keys(&cluster, &format!("session:{{{player_id}}}:*")).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
}
