//! The live stream over a WebSocket.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use schemas::read_model::channel;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

pub(crate) async fn open(
    app: &TestApp,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    open_at(&app.base, token).await
}

/// Opens a stream on the gateway at `base`.
async fn open_at(base: &str, token: &str) -> Socket {
    try_open_at(base, token).await.expect("connect")
}

async fn try_open_at(
    base: &str,
    token: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!(
        "{}/v1/stream?access_token={token}",
        base.replacen("http", "ws", 1)
    );
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(socket, _)| socket)
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
    eventually_within(
        Duration::from_secs(5),
        "the stream's subscription",
        || async { listeners(app, channel).await > 0 },
    )
    .await;
}

/// Waits until nobody listens on `channel`.
async fn when_unsubscribed(app: &TestApp, channel: &str) {
    eventually_within(
        Duration::from_secs(5),
        "the stream to let go of a channel",
        || async { listeners(app, channel).await == 0 },
    )
    .await;
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame.
pub(crate) async fn next_text(socket: &mut Socket) -> String {
    loop {
        if let Message::Text(text) = next_frame(socket).await {
            return text.to_string();
        }
    }
}

/// The next frame the gateway sends, within 5 s.
async fn next_frame(socket: &mut Socket) -> Message {
    tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a frame in time")
        .expect("the stream is open")
        .expect("a frame")
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
    when_subscribed(&app, &channel::region("north-east")).await;
    when_subscribed(&app, &channel::player(&player_id)).await;

    publish(&app, &channel::region("north-east"), r#"{"kind":"moved"}"#).await;
    publish(
        &app,
        &channel::region("south-west"),
        r#"{"kind":"elsewhere"}"#,
    )
    .await;
    publish(&app, &channel::player(&player_id), r#"{"kind":"damaged"}"#).await;
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
async fn a_burst_of_facts_arrives_whole_in_order_and_each_once() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("bea").await;
    app.put_in_world_at(&player_id, "bea", "north-east", (1500.0, 1500.0))
        .await;
    let mut socket = open(&app, &token).await;
    let region = channel::region("north-east");
    let own = channel::player(&player_id);
    when_subscribed(&app, &region).await;
    when_subscribed(&app, &own).await;

    // A projector's batch at once, more than one send's worth: every tenth fact is about the
    // player, so it comes on both channels; half way through, the avatar walks near north-west,
    // and the stream takes that region in too.
    let me = schemas::EntityId::from(player_id.parse::<schemas::PlayerId>().expect("id"));
    let walked = fact_in(
        "north-east",
        schemas::Fact::Moved(schemas::fact::Moved {
            entity: me,
            position: schemas::Position::new(1010.0, 1500.0),
            arrived: true,
        }),
    );
    let sent = 150;
    let mut expected = Vec::new();
    let mut batch = redis::pipe();
    for i in 0..sent {
        let text = format!(r#"{{"id":"fact-{i}","kind":"moved"}}"#);
        batch.cmd("PUBLISH").arg(&region).arg(&text).ignore();
        if i % 10 == 0 {
            batch.cmd("PUBLISH").arg(&own).arg(&text).ignore();
        }
        expected.push(text);
        if i == sent / 2 {
            batch.cmd("PUBLISH").arg(&own).arg(&walked).ignore();
            expected.push(walked.clone());
        }
    }
    let mut redis = app.state.redis();
    let () = batch.query_async(&mut redis).await.expect("published");
    // The last one marks the end; anything after it would be a repeat.
    publish(&app, &region, r#"{"id":"end","kind":"moved"}"#).await;

    let mut seen = Vec::new();
    loop {
        let text = next_text(&mut socket).await;
        if text.contains(r#""end""#) {
            break;
        }
        seen.push(text);
    }
    assert_eq!(seen, expected);
    when_subscribed(&app, &channel::region("north-west")).await;
    publish(&app, &channel::region("north-west"), r#"{"kind":"across"}"#).await;
    assert_eq!(next_text(&mut socket).await, r#"{"kind":"across"}"#);
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
    let channel = channel::player(&player_id);
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
async fn a_client_that_stops_reading_gives_up_its_stream_and_its_place() {
    let app = spawn_app_with(&format!(
        "{LOOSE_LIMITS}[stream]\nmax_per_player = 1\nsend_timeout_ms = 200\n"
    ))
    .await;
    let (player_id, token) = app.player("wil").await;
    // Opened, then never read: its socket's buffers fill and a send to it waits.
    let _silent = open(&app, &token).await;
    let channel = channel::player(&player_id);
    when_subscribed(&app, &channel).await;
    let error = refused_with_429(&app.base, &token).await;
    assert_eq!(error["code"], "too_many_streams", "{error}");

    let big = "x".repeat(64 * 1024);
    let publisher = {
        let app_redis = app.state.redis();
        let channel = channel.clone();
        tokio::spawn(async move {
            let mut redis = app_redis;
            // About 25 MiB, more than the socket's buffers hold.
            for _ in 0..400 {
                let _: Result<u64, _> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&big)
                    .query_async(&mut redis)
                    .await;
            }
        })
    };
    // The gateway closes it on its own clock, and the player may open another.
    eventually_within(Duration::from_secs(30), "room for a stream", || async {
        try_open_at(&app.base, &token).await.is_ok()
    })
    .await;
    publisher.await.expect("published");
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
        when_subscribed(&app, &channel::player(&player_id)).await;
    }
    assert_eq!(
        listeners(&app, &channel::region("north-east")).await,
        1,
        "one Redis subscription carries the region to both streams"
    );
    publish(
        &app,
        &channel::region("north-east"),
        r#"{"kind":"chat_said"}"#,
    )
    .await;
    for socket in &mut sockets {
        assert_eq!(next_text(socket).await, r#"{"kind":"chat_said"}"#);
    }
    drop(sockets);
    when_unsubscribed(&app, &channel::region("north-east")).await;
}

#[tokio::test]
async fn a_stream_sees_across_a_border_and_follows_its_player_over_it() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("zed").await;
    // 10 from the border with south-east, far from the northern regions.
    app.put_in_world_at(&player_id, "zed", "south-west", (990.0, 300.0))
        .await;
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, &channel::region("south-west")).await;
    when_subscribed(&app, &channel::region("south-east")).await;
    assert_eq!(listeners(&app, &channel::region("north-west")).await, 0);

    publish(&app, &channel::region("south-east"), r#"{"kind":"across"}"#).await;
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
    publish(&app, &channel::player(&player_id), &moved).await;
    assert_eq!(next_text(&mut socket).await, moved);
    when_unsubscribed(&app, &channel::region("south-west")).await;
    publish(&app, &channel::region("south-west"), r#"{"kind":"behind"}"#).await;
    publish(&app, &channel::region("south-east"), r#"{"kind":"here"}"#).await;
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
    publish(&app, &channel::player(&player_id), &left).await;
    assert_eq!(next_text(&mut socket).await, left);
    when_unsubscribed(&app, &channel::region("south-east")).await;
    assert_eq!(listeners(&app, &channel::player(&player_id)).await, 1);
}

/// The close frame the gateway ends `socket` with, within `within`: its code and reason.
pub(crate) async fn closed_within(socket: &mut Socket, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no close frame within {within:?}"));
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the stream broke without a close frame: {e}"),
            None => panic!("the stream ended without a close frame"),
        }
    }
}

/// The session id a player's only login made.
async fn session_of(app: &TestApp, player_id: &str) -> String {
    let sessions = app.sessions_of(player_id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    sessions[0].clone()
}

/// The gateway ends a stream whose session ended with this close code.
pub(crate) const SESSION_ENDED: u16 = 4001;

/// No backstop check within a test: only the announcement can end a stream.
const NO_BACKSTOP: &str = "[stream]\nsession_check_ms = 600000\n";

#[tokio::test]
async fn a_logout_through_one_gateway_ends_the_stream_on_another() {
    let app = spawn_app_with(&format!("{LOOSE_LIMITS}{NO_BACKSTOP}")).await;
    let other = app.another_gateway().await;
    let (player_id, token) = app.player("una").await;
    let mut socket = open_at(&other.base, &token).await;
    when_subscribed(&app, &channel::player(&player_id)).await;

    app.log_out(&token).await;
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(1)).await;
    assert_eq!(code, SESSION_ENDED, "{reason}");
    assert!(reason.contains("session ended"), "{reason}");
}

#[tokio::test]
async fn a_role_change_ends_the_players_streams() {
    let app = spawn_app_with(&format!("{LOOSE_LIMITS}{NO_BACKSTOP}")).await;
    let (player_id, token) = app.player("vera").await;
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, &channel::player(&player_id)).await;

    let admin = app.login("root", PASSWORD).await;
    let changed = app.change_role(&admin, &player_id, "moderator").await;
    assert_eq!(changed.status(), StatusCode::OK);
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(1)).await;
    assert_eq!(code, SESSION_ENDED, "{reason}");
}

#[tokio::test]
async fn a_stream_ends_when_its_session_expires() {
    let app = spawn_app_with(&format!(
        "{LOOSE_LIMITS}{NO_BACKSTOP}[auth]\ntoken_ttl_secs = 2\n"
    ))
    .await;
    let (player_id, token) = app.player("wanda").await;
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, &channel::player(&player_id)).await;
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(3)).await;
    assert_eq!(code, SESSION_ENDED, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

#[tokio::test]
async fn a_session_ended_behind_the_gateways_back_ends_its_stream_within_a_second() {
    // No announcement: a session deleted in Redis by hand (or by a path that does not announce)
    // is found by the periodic check.
    let app = spawn_app().await;
    let (player_id, token) = app.player("xena").await;
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, &channel::player(&player_id)).await;

    let sid = session_of(&app, &player_id).await;
    let mut redis = app.state.redis();
    let deleted: u64 = redis::cmd("DEL")
        .arg(format!("session:{{{player_id}}}:{sid}"))
        .query_async(&mut redis)
        .await
        .expect("del");
    assert_eq!(deleted, 1);
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(1)).await;
    assert_eq!(code, SESSION_ENDED, "{reason}");
}

#[tokio::test]
async fn a_client_sending_more_than_a_few_kib_is_closed_and_the_gateway_stays_up() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let app = spawn_app().await;
    let (player_id, token) = app.player("yara").await;
    let channel = channel::player(&player_id);

    // One message far above the limit, in one frame.
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, &channel).await;
    socket
        .send(Message::text("x".repeat(64 * 1024)))
        .await
        .expect("send");
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(2)).await;
    assert_eq!(code, 1009, "{reason}");
    when_unsubscribed(&app, &channel).await;

    // One message above the limit in small frames, never finished.
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, &channel).await;
    let piece = "y".repeat(1024);
    socket
        .send(Message::Frame(Frame::message(
            piece.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .expect("send");
    for _ in 0..16 {
        if socket
            .send(Message::Frame(Frame::message(
                piece.clone(),
                OpCode::Data(Data::Continue),
                false,
            )))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(2)).await;
    assert_eq!(code, 1009, "{reason}");

    // The gateway is up and streams on.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let mut socket = open(&app, &token).await;
    when_subscribed(&app, &channel).await;
    publish(&app, &channel, r#"{"kind":"still_here"}"#).await;
    assert_eq!(next_text(&mut socket).await, r#"{"kind":"still_here"}"#);

    // A message of the limit itself (more than the read buffer once its header is counted) is
    // read and dropped. The pong proves the gateway read past it; the stream goes on.
    let at_limit = "z".repeat(gateway::stream::MAX_INCOMING);
    socket.send(Message::text(at_limit)).await.expect("send");
    socket
        .send(Message::Ping(b"after".to_vec().into()))
        .await
        .expect("send");
    loop {
        if let Message::Pong(payload) = next_frame(&mut socket).await {
            assert_eq!(&payload[..], b"after");
            break;
        }
    }
    publish(&app, &channel, r#"{"kind":"still_streaming"}"#).await;
    assert_eq!(
        next_text(&mut socket).await,
        r#"{"kind":"still_streaming"}"#
    );
}

/// Whether opening a stream is refused before the upgrade with 429 and the error shape.
async fn refused_with_429(base: &str, token: &str) -> Value {
    match try_open_at(base, token).await {
        Ok(_) => panic!("the stream was opened"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body = response.body().as_deref().unwrap_or_default();
            let body: Value = serde_json::from_slice(body).expect("a JSON error body");
            assert!(response.headers().contains_key("x-request-id"));
            body["error"].clone()
        }
        Err(other) => panic!("expected an HTTP 429, got {other}"),
    }
}

#[tokio::test]
async fn a_player_and_an_address_get_only_so_many_streams_at_once() {
    let app = spawn_app_with(&format!(
        "{LOOSE_LIMITS}[stream]\nmax_per_player = 2\nmax_per_ip = 3\n"
    ))
    .await;
    let (_, token) = app.player("zoe").await;
    let mut first = vec![open(&app, &token).await, open(&app, &token).await];
    let error = refused_with_429(&app.base, &token).await;
    assert_eq!(error["code"], "too_many_streams", "{error}");

    // Another player from the same address: one more, then the address is full.
    let (_, other) = app.player("zack").await;
    let _third = open(&app, &other).await;
    let error = refused_with_429(&app.base, &other).await;
    assert_eq!(error["code"], "too_many_streams", "{error}");

    // A stream that ends makes room.
    first
        .pop()
        .expect("a socket")
        .close(None)
        .await
        .expect("close");
    eventually_within(Duration::from_secs(5), "room for a stream", || async {
        try_open_at(&app.base, &token).await.is_ok()
    })
    .await;
}
