//! `POST /v1/commands`: validation, routing, publishing, idempotency, NATS faults.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn stored_command(app: &TestApp, seq: u64) -> async_nats::jetstream::message::StreamMessage {
    app.js
        .get_stream("COMMANDS")
        .await
        .expect("COMMANDS")
        .get_raw_message(seq)
        .await
        .expect("stored")
}

/// The subject the command an answer names was stored on.
async fn stored_subject(app: &TestApp, answer: reqwest::Response) -> String {
    let seq = answer.json::<Value>().await.expect("json")["stream_seq"]
        .as_u64()
        .expect("seq");
    stored_command(app, seq).await.subject.to_string()
}

#[tokio::test]
async fn a_valid_command_is_stored_on_its_region_subject_and_answered_202() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("fay").await;
    app.put_in_world(&player_id, "fay", "north-east").await;

    let response = app
        .http
        .post(app.url("/v1/commands"))
        .bearer_auth(&token)
        .header("x-request-id", "req-42")
        .json(&json!({"type": "move", "x": 1500.5, "y": 1200}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let body: Value = response.json().await.expect("json");
    let seq = body["stream_seq"].as_u64().expect("seq");

    let stored = stored_command(&app, seq).await;
    assert_eq!(stored.subject.as_str(), "cmd.normal.north-east.move");
    assert_eq!(
        stored.headers.get("Client-Request-Id").map(|v| v.as_str()),
        Some("req-42")
    );
    assert_eq!(
        stored.headers.get("Client-Ip").map(|v| v.as_str()),
        Some("127.0.0.1")
    );
    let env = schemas::Envelope::<schemas::Command>::decode(&stored.payload).expect("decodes");
    assert_eq!(env.id.to_string(), body["command_id"].as_str().expect("id"));
    assert_eq!(
        env.actor,
        schemas::Actor::Player {
            id: player_id.parse().expect("id")
        }
    );
    assert_eq!(
        env.payload,
        schemas::Command::Move(schemas::command::Move {
            x: 1500.5,
            y: 1200.0
        })
    );

    let attack = app
        .command(
            &token,
            &json!({"type": "attack", "target": schemas::EntityId::new()}),
        )
        .await;
    assert_eq!(
        stored_subject(&app, attack).await,
        "cmd.high.north-east.attack"
    );
}

#[tokio::test]
async fn spawn_goes_to_the_named_region_or_the_one_with_most_room() {
    let app = spawn_app().await;
    let (_, token) = app.player("gus").await;
    let mut redis = app.state.redis();
    let () = redis::cmd("HSET")
        .arg(schemas::read_model::key::POPULATION)
        .arg(&[
            "south-west",
            "400",
            "south-east",
            "10",
            "north-west",
            "300",
            "north-east",
            "200",
        ])
        .query_async(&mut redis)
        .await
        .expect("population");

    let picked = app.command(&token, &json!({"type": "spawn"})).await;
    assert_eq!(picked.status(), StatusCode::ACCEPTED);
    assert_eq!(
        stored_subject(&app, picked).await,
        "cmd.normal.south-east.spawn"
    );

    let named = app
        .command(&token, &json!({"type": "spawn", "region": "north-west"}))
        .await;
    assert_eq!(
        stored_subject(&app, named).await,
        "cmd.normal.north-west.spawn"
    );
}

#[tokio::test]
async fn a_spawn_of_an_avatar_in_the_world_goes_to_its_region_whatever_it_names() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("gwen").await;
    placed_by_a_simulator(&app, &player_id, Some("south-west")).await;
    // Its region refuses it as already spawned; the region named would have placed a second
    // avatar, leaving the first where no command reaches it.
    for body in [
        json!({"type": "spawn", "region": "north-east"}),
        json!({"type": "spawn"}),
    ] {
        let spawn = app.command(&token, &body).await;
        assert_eq!(spawn.status(), StatusCode::ACCEPTED);
        assert_eq!(
            stored_subject(&app, spawn).await,
            "cmd.normal.south-west.spawn"
        );
    }
    // Once it has left, the region named is where it goes.
    placed_by_a_simulator(&app, &player_id, None).await;
    let spawn = app
        .command(&token, &json!({"type": "spawn", "region": "north-east"}))
        .await;
    assert_eq!(
        stored_subject(&app, spawn).await,
        "cmd.normal.north-east.spawn"
    );
}

#[tokio::test]
async fn a_player_not_in_the_world_must_spawn_first() {
    let app = spawn_app().await;
    let (_, token) = app.player("hal").await;
    must_spawn_first(&app, &token).await;
    assert_eq!(app.messages_in("COMMANDS").await, 0);
}

/// A `chat` from `token`'s player is refused: the avatar is not in the world.
async fn must_spawn_first(app: &TestApp, token: &str) {
    let error = error_of(
        app.command(token, &json!({"type": "chat", "text": "hello"}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(error["code"], "not_in_world");
}

/// Writes `player_id`'s `avatar_regions` entry as a simulator does.
async fn placed_by_a_simulator(app: &TestApp, player_id: &str, region: Option<&str>) {
    let entry =
        nats_topology::avatars::AvatarRegion::at(region.map(|r| r.parse().expect("a region id")));
    let player = player_id.parse().expect("a player id");
    nats_topology::avatars::record(app.state.avatars(), player, &entry)
        .await
        .expect("an avatar_regions entry");
}

#[tokio::test]
async fn a_placed_avatar_is_routed_by_the_simulators_entry_without_the_read_models() {
    let mut app = spawn_app().await;
    let (player_id, token) = app.player("ida").await;
    // The read models are behind: they still have the avatar in the north-east ...
    app.put_in_world(&player_id, "ida", "north-east").await;
    // ... where a simulator has since put it in the south-west.
    placed_by_a_simulator(&app, &player_id, Some("south-west")).await;

    // MongoDB answers nothing meanwhile: a command must not wait for it.
    app.mongo_mut().pause().expect("SIGSTOP");
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        app.command(&token, &json!({"type": "move", "x": 10.0, "y": 20.0})),
    )
    .await;
    app.mongo_mut().resume().expect("SIGCONT");
    let answer = answer.expect("answered without MongoDB");
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    assert_eq!(
        stored_subject(&app, answer).await,
        "cmd.normal.south-west.move"
    );

    // An entry that says the avatar left: spawn first, whatever the read models say.
    placed_by_a_simulator(&app, &player_id, None).await;
    must_spawn_first(&app, &token).await;
}

#[tokio::test]
async fn invalid_commands_name_each_bad_field_and_publish_nothing() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("ida").await;
    app.put_in_world(&player_id, "ida", "south-west").await;
    let long = "x".repeat(501);
    let cases = [
        (json!({"x": 1, "y": 2}), vec![("type", "required")]),
        (
            json!({"type": "teleport"}),
            vec![("type", "unknown_command")],
        ),
        (
            json!({"type": "kick", "player": schemas::PlayerId::new(), "reason": "x"}),
            vec![("type", "unknown_command")],
        ),
        (
            // The simulators' own blow over a border is not a client's to send.
            json!({
                "type": "strike", "from_region": "north-west", "attacker": schemas::EntityId::new(),
                "position": {"x": 999.0, "y": 1500.0}, "target": schemas::EntityId::new(),
                "amount": 9999,
            }),
            vec![("type", "unknown_command")],
        ),
        (
            // Nor is the experience a region grants for a kill over its border.
            json!({
                "type": "reward", "from_region": "north-west", "entity": schemas::EntityId::new(),
                "amount": 1000000,
            }),
            vec![("type", "unknown_command")],
        ),
        (
            json!({"type": "move", "x": "far", "y": null}),
            vec![("x", "invalid"), ("y", "required")],
        ),
        (
            json!({"type": "move", "x": -5, "y": 99999}),
            vec![("x", "out_of_world"), ("y", "out_of_world")],
        ),
        (
            json!({"type": "move", "x": 1, "y": 2, "z": 3}),
            vec![("z", "unknown_field")],
        ),
        (
            json!({"type": "attack", "target": "goblin"}),
            vec![("target", "invalid")],
        ),
        (
            json!({"type": "chat", "text": ""}),
            vec![("text", "length")],
        ),
        (
            json!({"type": "chat", "text": long}),
            vec![("text", "length")],
        ),
        (
            json!({"type": "chat", "text": "hi", "channel": "shout"}),
            vec![("channel", "invalid")],
        ),
        (
            json!({"type": "spawn", "region": "atlantis"}),
            vec![("region", "unknown_region")],
        ),
        (json!({"type": "pickup"}), vec![("item", "required")]),
        (json!("move"), vec![("", "not_an_object")]),
    ];
    for (body, expected) in cases {
        let error = error_of(app.command(&token, &body).await, StatusCode::BAD_REQUEST).await;
        assert_details(&error, &expected, &body.to_string());
    }
    assert_eq!(app.messages_in("COMMANDS").await, 0);
}

#[tokio::test]
async fn chat_lines_with_nothing_to_see_or_bidi_controls_are_refused() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("ivy").await;
    app.put_in_world(&player_id, "ivy", "south-west").await;
    for (text, code) in [
        ("\u{200B}\u{2060}\u{FEFF}", "invisible"),
        ("\u{00AD}", "invisible"),
        ("\u{0301}\u{0308}", "invisible"),
        ("pay me \u{202E}won 001\u{202C}", "bidi_control"),
        ("\u{2067}hidden\u{2069}", "bidi_control"),
    ] {
        let body = json!({"type": "chat", "text": text});
        let error = error_of(app.command(&token, &body).await, StatusCode::BAD_REQUEST).await;
        assert_details(&error, &[("text", code)], &format!("{text:?}"));
    }
    assert_eq!(app.messages_in("COMMANDS").await, 0);
    let fine =
        json!({"type": "chat", "text": "caf\u{0065}\u{0301} \u{05E9}\u{05DC}\u{05D5}\u{05DD}"});
    assert_eq!(
        app.command(&token, &fine).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn bodies_must_be_json_and_small() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("jan").await;
    app.put_in_world(&player_id, "jan", "south-west").await;
    let send = |content_type: &'static str, body: Vec<u8>| {
        app.http
            .post(app.url("/v1/commands"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let error = error_of(
        send("text/plain", b"{\"type\":\"leave\"}".to_vec())
            .await
            .expect("send"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_eq!(error["code"], "unsupported_media_type");
    let error = error_of(
        send("application/json", b"{\"type\":".to_vec())
            .await
            .expect("send"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error["code"], "malformed_json");
    let huge = format!(
        "{{\"type\":\"chat\",\"text\":\"{}\"}}",
        "a".repeat(64 * 1024)
    );
    let error = error_of(
        send("application/json", huge.into_bytes())
            .await
            .expect("send"),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(error["code"], "payload_too_large");
    assert_eq!(app.messages_in("COMMANDS").await, 0);
}

#[tokio::test]
async fn an_idempotency_key_stores_a_command_once_and_answers_the_same() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("kim").await;
    app.put_in_world(&player_id, "kim", "south-west").await;
    let send = |body: Value, key: &'static str| {
        app.http
            .post(app.url("/v1/commands"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first: Value = send(json!({"type": "move", "x": 5, "y": 5}), "k-1")
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let again = send(json!({"type": "move", "x": 5, "y": 5}), "k-1")
        .await
        .expect("send");
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    assert_eq!(app.messages_in("COMMANDS").await, 1);

    let error = error_of(
        send(json!({"type": "move", "x": 6, "y": 5}), "k-1")
            .await
            .expect("send"),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(error["code"], "idempotency_conflict");
    let other = send(json!({"type": "move", "x": 6, "y": 5}), "k-2")
        .await
        .expect("send");
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    assert_eq!(app.messages_in("COMMANDS").await, 2);

    let error = error_of(
        app.http
            .post(app.url("/v1/commands"))
            .bearer_auth(&token)
            .header("idempotency-key", "")
            .json(&json!({"type": "leave"}))
            .send()
            .await
            .expect("send"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        details(&error),
        vec![("Idempotency-Key".to_owned(), "invalid".to_owned())]
    );
}

#[tokio::test]
async fn with_nats_down_commands_get_503_fast_and_flow_again_after() {
    let mut app = spawn_app().await;
    let (player_id, token) = app.player("lee").await;
    app.put_in_world(&player_id, "lee", "south-west").await;
    let command = json!({"type": "move", "x": 5, "y": 5});

    app.nats.stop();
    app.nats_gone().await;
    let started = Instant::now();
    let error = error_of(
        app.command(&token, &command).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(error["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "503 without waiting on the bus"
    );

    app.nats.restart().expect("NATS back");
    let status = test_servers::poll::poll(Duration::from_secs(20), || async {
        let status = app.command(&token, &command).await.status();
        (status == StatusCode::ACCEPTED).then_some(status)
    })
    .await
    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "commands flow once NATS is back"
    );
}

/// Stands in for a region simulator: answers each command with one fact (a rejection when
/// `reject`), stores it in FACTS and notifies the command's outcome inbox, as the simulator does.
fn fake_simulator(app: &TestApp, reject: bool) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    use schemas::fact::{Moved, Rejected};
    use schemas::{Actor, Command, Envelope, Fact, Position, RejectReason};

    let js = app.js.clone();
    let client = app.client.clone();
    tokio::spawn(async move {
        let stream = js.get_stream("COMMANDS").await.expect("COMMANDS");
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        while let Some(Ok(message)) = messages.next().await {
            let command = Envelope::<Command>::decode(&message.payload).expect("a command");
            let Actor::Player { id } = command.actor.clone() else {
                continue;
            };
            let fact = if reject {
                Fact::Rejected(Rejected {
                    command: command.payload.kind(),
                    reason: RejectReason::OutOfRange,
                    message: "too far".into(),
                })
            } else {
                Fact::Moved(Moved {
                    entity: id.into(),
                    position: Position::new(5.0, 5.0),
                    arrived: false,
                })
            };
            let env = Envelope::caused_by(
                &command,
                0,
                Actor::System {
                    service: "region-sim".into(),
                },
                command.region.clone(),
                fact,
            );
            nats_topology::publish(&js, nats_topology::Outgoing::fact(&env).expect("fact"))
                .await
                .expect("stored");
            if let Some(inbox) = message
                .headers
                .as_ref()
                .and_then(|h| h.get(nats_topology::outcome::OUTCOME_INBOX))
            {
                let outcome = nats_topology::outcome::Outcome {
                    command_id: command.id,
                    facts: vec![
                        serde_json::from_slice(&env.encode().expect("encode")).expect("json"),
                    ],
                    seqs: vec![],
                };
                client
                    .publish(
                        inbox.as_str().to_owned(),
                        serde_json::to_vec(&outcome).expect("json").into(),
                    )
                    .await
                    .expect("notify");
            }
            message.ack().await.expect("ack");
        }
    })
}

#[tokio::test]
async fn waiting_answers_with_the_outcome_applied_or_rejected() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("nia").await;
    app.put_in_world(&player_id, "nia", "south-west").await;
    let simulator = fake_simulator(&app, false);

    let applied = app
        .post_json(
            "/v1/commands?wait=true",
            &json!({"type": "move", "x": 5, "y": 5}),
            Some(&token),
        )
        .await;
    assert_eq!(applied.status(), StatusCode::OK);
    let body: Value = applied.json().await.expect("json");
    assert_eq!(body["status"], "applied");
    assert_eq!(body["facts"][0]["kind"], "moved");
    assert_eq!(body["facts"][0]["correlation_id"], body["command_id"]);
    simulator.abort();

    let rejecting = fake_simulator(&app, true);
    let rejected = app
        .post_json(
            "/v1/commands?wait=true&wait_ms=5000",
            &json!({"type": "move", "x": 900, "y": 900}),
            Some(&token),
        )
        .await;
    let body: Value = rejected.json().await.expect("json");
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["reason"], "out_of_range");
    rejecting.abort();
    assert_eq!(app.state.outcomes().waiting(), 0);
}

#[tokio::test]
async fn without_an_outcome_in_time_the_answer_is_202() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("oli").await;
    app.put_in_world(&player_id, "oli", "south-west").await;
    let started = Instant::now();
    let response = app
        .post_json(
            "/v1/commands?wait=true&wait_ms=300",
            &json!({"type": "leave"}),
            Some(&token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let body: Value = response.json().await.expect("json");
    assert!(body["stream_seq"].as_u64().is_some());
    assert_eq!(app.state.outcomes().waiting(), 0, "the waiter is forgotten");
}

#[tokio::test]
async fn bad_wait_parameters_are_refused_before_anything_is_published() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("pam").await;
    app.put_in_world(&player_id, "pam", "south-west").await;
    for (query, expected) in [
        ("?wait=maybe", vec![("wait", "invalid")]),
        ("?wait=true&wait_ms=0", vec![("wait_ms", "range")]),
        ("?wait=true&wait_ms=10001", vec![("wait_ms", "range")]),
        ("?wait=true&wait_ms=soon", vec![("wait_ms", "range")]),
        ("?wiat=true", vec![("wiat", "unknown_parameter")]),
    ] {
        let error = app.refused_command_query(&token, query).await;
        assert_details(&error, &expected, query);
    }
    assert_eq!(app.messages_in("COMMANDS").await, 0);
}
