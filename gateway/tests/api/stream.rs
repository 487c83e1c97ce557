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

/// Publishes until someone listens on `channel` (the stream subscribes as it opens).
async fn when_subscribed(app: &TestApp, channel: &str) {
    eventually(
        Duration::from_secs(5),
        "the stream's subscription",
        || async {
            let mut redis = app.state.redis();
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut redis)
                .await
                .expect("numsub");
            counts.first().is_some_and(|(_, n)| *n > 0)
        },
    )
    .await;
}

#[tokio::test]
async fn the_stream_forwards_the_players_and_its_regions_facts() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("vic").await;
    app.put_in_world(&player_id, "vic", "north-east").await;
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
