//! The live stream over a WebSocket.

use std::time::Duration;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

async fn open(
    app: &TestApp,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!(
        "{}/v1/stream?access_token={token}",
        app.base.replacen("http", "ws", 1)
    );
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    socket
}

async fn publish(app: &TestApp, channel: &str, text: &str) -> u64 {
    let mut redis = app.state.redis();
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(text)
        .query_async(&mut redis)
        .await
        .expect("publish")
}

/// How many Redis connections listen on `channel`.
async fn listeners(app: &TestApp, channel: &str) -> u64 {
    let mut redis = app.state.redis();
    let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut redis)
        .await
        .expect("numsub");
    counts.first().map_or(0, |(_, n)| *n)
}

/// Waits until someone listens on `channel` (the stream subscribes as it opens).
async fn when_subscribed(app: &TestApp, channel: &str) {
    eventually(
        Duration::from_secs(5),
        "the stream's subscription",
        || async { listeners(app, channel).await > 0 },
    )
    .await;
}

/// Waits until nobody listens on `channel`.
async fn when_unsubscribed(app: &TestApp, channel: &str) {
    eventually(
        Duration::from_secs(5),
        "the stream to let go of a channel",
        || async { listeners(app, channel).await == 0 },
    )
    .await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame.
async fn next_text(socket: &mut Socket) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .expect("the stream is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return text.to_string();
        }
    }
}

/// A fact in `region`, as the projector publishes it.
fn fact_in(region: &str, payload: schemas::Fact) -> String {
    let id = schemas::EventId::new();
    let envelope = schemas::Envelope {
        id,
        occurred_at: chrono::Utc::now(),
        actor: schemas::Actor::System {
            service: "region-sim".into(),
        },
        region: Some(region.parse().expect("region id")),
        correlation_id: id,
        causation_id: None,
        payload,
    };
    String::from_utf8(envelope.encode().expect("encode")).expect("utf-8")
}

#[tokio::test]
async fn the_stream_forwards_the_players_and_its_regions_facts() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("vic").await;
    app.put_in_world_at(&player_id, "vic", "north-east", (1500.0, 1500.0))
        .await;
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, "region:north-east").await;
    when_subscribed(&app, &format!("player:{player_id}")).await;

    publish(&app, "region:north-east", r#"{"kind":"moved"}"#).await;
    publish(&app, "region:south-west", r#"{"kind":"elsewhere"}"#).await;
    publish(
        &app,
        &format!("player:{player_id}"),
        r#"{"kind":"damaged"}"#,
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = next {
            seen.push(text.to_string());
        }
    }
    assert_eq!(seen, vec![r#"{"kind":"moved"}"#, r#"{"kind":"damaged"}"#]);
}

#[tokio::test]
async fn a_stream_without_a_valid_token_is_refused() {
    let app = spawn_app().await;
    let url = format!(
        "{}/v1/stream?access_token=forged",
        app.base.replacen("http", "ws", 1)
    );
    let refused = tokio_tungstenite::connect_async(url)
        .await
        .expect_err("refused");
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("expected an HTTP 401, got {other}"),
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("wes").await;
    let mut socket = open(&app, &token).await;
    let channel = format!("player:{player_id}");
    when_subscribed(&app, &channel).await;

    let big = "x".repeat(2048);
    let sent = 4000;
    for _ in 0..sent {
        publish(&app, &channel, &big).await;
    }
    let mut received = 0;
    let mut closed = false;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        match frame {
            Ok(Message::Text(_)) => received += 1,
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the slow client was disconnected");
    assert!(
        received < sent,
        "the gateway did not queue everything for it ({received} of {sent})"
    );
}

#[tokio::test]
async fn every_stream_shares_one_redis_subscription() {
    let app = spawn_app().await;
    let mut sockets = Vec::new();
    for name in ["xan", "yul"] {
        let (player_id, token) = app.player(name).await;
        app.put_in_world_at(&player_id, name, "north-east", (1500.0, 1500.0))
            .await;
        sockets.push(open(&app, &token).await);
        when_subscribed(&app, &format!("player:{player_id}")).await;
    }
    assert_eq!(
        listeners(&app, "region:north-east").await,
        1,
        "one Redis subscription carries the region to both streams"
    );
    publish(&app, "region:north-east", r#"{"kind":"chat_said"}"#).await;
    for socket in &mut sockets {
        assert_eq!(next_text(socket).await, r#"{"kind":"chat_said"}"#);
    }
    drop(sockets);
    when_unsubscribed(&app, "region:north-east").await;
}

#[tokio::test]
async fn a_stream_sees_across_a_border_and_follows_its_player_over_it() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("zed").await;
    // 10 from the border with south-east, far from the northern regions.
    app.put_in_world_at(&player_id, "zed", "south-west", (990.0, 300.0))
        .await;
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, "region:south-west").await;
    when_subscribed(&app, "region:south-east").await;
    assert_eq!(listeners(&app, "region:north-west").await, 0);

    publish(&app, "region:south-east", r#"{"kind":"across"}"#).await;
    assert_eq!(next_text(&mut socket).await, r#"{"kind":"across"}"#);

    // The avatar is handed to south-east and walks deep into it: south-west is out of sight.
    let me = schemas::EntityId::from(player_id.parse::<schemas::PlayerId>().expect("id"));
    let moved = fact_in(
        "south-east",
        schemas::Fact::Moved(schemas::fact::Moved {
            entity: me,
            position: schemas::Position::new(1500.0, 300.0),
            arrived: true,
        }),
    );
    publish(&app, &format!("player:{player_id}"), &moved).await;
    assert_eq!(next_text(&mut socket).await, moved);
    when_unsubscribed(&app, "region:south-west").await;
    publish(&app, "region:south-west", r#"{"kind":"behind"}"#).await;
    publish(&app, "region:south-east", r#"{"kind":"here"}"#).await;
    assert_eq!(next_text(&mut socket).await, r#"{"kind":"here"}"#);

    // Leaving the world leaves every region; the player's own channel stays.
    let left = fact_in(
        "south-east",
        schemas::Fact::Left(schemas::fact::Left {
            entity: me,
            reason: schemas::fact::LeaveReason::Requested,
            position: schemas::Position::new(1500.0, 300.0),
            progress: None,
        }),
    );
    publish(&app, &format!("player:{player_id}"), &left).await;
    assert_eq!(next_text(&mut socket).await, left);
    when_unsubscribed(&app, "region:south-east").await;
    assert_eq!(listeners(&app, &format!("player:{player_id}")).await, 1);
}
