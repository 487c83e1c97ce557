//! Admin routes: who may call them, roles, dead letters, region assignments.

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn admin_call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// A call to an admin route with the API key, as an admin tool makes it.
async fn with_key(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    admin_call(app, method, path, token, Some(ADMIN_KEY), body).await
}

/// A GET on an admin route with the API key.
async fn admin_get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    with_key(app, reqwest::Method::GET, path, token, None).await
}

/// The JSON body of [`admin_get`].
async fn admin_get_json(app: &TestApp, path: &str, token: &str) -> Value {
    admin_get(app, path, token)
        .await
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn admin_routes_need_the_admin_role_and_the_api_key() {
    let app = spawn_app().await;
    let (_, player) = app.player("tom").await;
    let admin = app.login("root", PASSWORD).await;
    for (caller, token, key, code) in [
        ("a player", &player, Some(ADMIN_KEY), "forbidden"),
        ("an admin without the key", &admin, None, "bad_api_key"),
        (
            "an admin with a wrong key",
            &admin,
            Some("wrong-key-123456"),
            "bad_api_key",
        ),
    ] {
        let error = error_of(
            admin_call(&app, reqwest::Method::GET, "/admin/dlq", token, key, None).await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert_eq!(error["code"], code, "{caller}");
    }
    assert_eq!(
        admin_get(&app, "/admin/dlq", &admin).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn changing_a_role_ends_the_players_sessions() {
    let app = spawn_app().await;
    let (player_id, player_token) = app.player("uma").await;
    let admin = app.login("root", PASSWORD).await;
    let path = format!("/admin/players/{player_id}/role");
    let put = reqwest::Method::PUT;

    for (path, body, expected) in [
        (
            path.as_str(),
            json!({"role": "emperor"}),
            vec![("role", "invalid")],
        ),
        (path.as_str(), json!({}), vec![("role", "required")]),
        (
            path.as_str(),
            json!({"role": "admin", "level": 99}),
            vec![("level", "unknown_field")],
        ),
        (
            "/admin/players/not-an-id/role",
            json!({"role": "admin"}),
            vec![("id", "invalid")],
        ),
    ] {
        let error = error_of(
            with_key(&app, put.clone(), path, &admin, Some(body.clone())).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_details(&error, &expected, &format!("{path} {body}"));
    }
    let unknown = format!("/admin/players/{}/role", schemas::PlayerId::new());
    let body = Some(json!({"role": "admin"}));
    error_of(
        with_key(&app, put, &unknown, &admin, body).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.get("/v1/players/me", Some(&player_token))
            .await
            .status(),
        StatusCode::OK,
        "nothing changed yet"
    );
    let kinds = |facts: Vec<(schemas::Envelope<schemas::Fact>, async_nats::HeaderMap)>| {
        facts
            .iter()
            .map(|(f, _)| f.payload.kind().as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(app.facts_about(&player_id).await),
        ["account_registered", "logged_in"],
        "nothing recorded yet"
    );

    let changed = app.change_role(&admin, &player_id, "moderator").await;
    assert_eq!(changed.status(), StatusCode::OK);
    app.assert_revoked(&player_token).await;
    // The change, and the end of the session it cut short, are in the log, by the admin.
    let facts = app.facts_about(&player_id).await;
    assert_eq!(
        kinds(facts.clone()),
        [
            "account_registered",
            "logged_in",
            "role_changed",
            "logged_out"
        ]
    );
    assert!(matches!(&facts[2].0.payload, schemas::Fact::RoleChanged(r) if r.role == "moderator"));
    assert!(matches!(facts[2].0.actor, schemas::Actor::Admin { .. }));
    let fresh = app.login("uma", PASSWORD).await;
    let me: Value = app.get_json("/v1/players/me", Some(&fresh)).await;
    assert_eq!(me["role"], "moderator");
}

fn dead_command(origin_seq: u64) -> nats_topology::DeadLetter {
    let env = schemas::Envelope::new(
        schemas::Actor::Player {
            id: schemas::PlayerId::new(),
        },
        Some(schemas::RegionId::new("south-west").expect("id")),
        schemas::Command::Leave(schemas::command::Leave {}),
    );
    nats_topology::DeadLetter::new(
        "COMMANDS",
        "cmd.normal.south-west.leave",
        origin_seq,
        Some("region-south-west"),
        "handler failed: test",
        5,
        async_nats::HeaderMap::new(),
        Bytes::from(env.encode().expect("encode")),
    )
}

/// The answer of `POST /admin/dlq/redrive` with `body`.
async fn redriven(app: &TestApp, admin: &str, body: Value) -> Value {
    with_key(
        app,
        reqwest::Method::POST,
        "/admin/dlq/redrive",
        admin,
        Some(body),
    )
    .await
    .json()
    .await
    .expect("json")
}

/// The codes of a redrive's failures, in order.
fn failure_codes(result: &Value) -> Vec<&str> {
    result["failed"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect()
}

/// The dead letter of a command stored in COMMANDS first, as a consumer would have given up on.
async fn stored_dead_command(app: &TestApp) -> nats_topology::DeadLetter {
    let mut letter = dead_command(0);
    let ack = nats_topology::publish(
        &app.js,
        nats_topology::Outgoing::new(
            letter.origin_subject.clone(),
            schemas::EventId::new().to_string(),
            letter.payload.clone(),
        ),
    )
    .await
    .expect("stored");
    letter.origin_seq = ack.sequence;
    letter
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven_to_their_origin() {
    let app = spawn_app().await;
    let admin = app.login("root", PASSWORD).await;
    nats_topology::dead_letter(&app.js, &stored_dead_command(&app).await)
        .await
        .expect("dlq");
    let fact = nats_topology::DeadLetter::new(
        "FACTS",
        "fact.south-west.moved",
        12,
        Some("projector"),
        "cannot write",
        9,
        async_nats::HeaderMap::new(),
        Bytes::from_static(b"{}"),
    );
    nats_topology::dead_letter(&app.js, &fact)
        .await
        .expect("dlq");

    let listed: Value = admin_get_json(&app, "/admin/dlq", &admin).await;
    let letters = listed["dead_letters"].as_array().expect("list");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["origin_stream"], "COMMANDS");
    assert_eq!(letters[0]["reason"], "handler failed: test");
    assert_eq!(letters[0]["attempts"], 5);
    assert_eq!(letters[0]["payload"]["kind"], "leave");
    let page: Value = admin_get_json(&app, "/admin/dlq?after=1&limit=1", &admin).await;
    assert_eq!(page["dead_letters"][0]["origin_stream"], "FACTS");

    let post = reqwest::Method::POST;
    for (body, field) in [
        (json!({}), ""),
        (json!({"seqs": []}), "seqs"),
        (json!({"seqs": [-1]}), "seqs"),
        (json!({"all": false}), "all"),
        (json!({"seqs": [1], "all": true}), ""),
    ] {
        let error = error_of(
            with_key(
                &app,
                post.clone(),
                "/admin/dlq/redrive",
                &admin,
                Some(body.clone()),
            )
            .await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(details(&error)[0].0, field, "{body}");
    }
    for (path, expected) in [
        ("/admin/dlq?limit=0", ("limit", "range")),
        ("/admin/dlq?limit=5&page=2", ("page", "unknown_parameter")),
    ] {
        let error = error_of(admin_get(&app, path, &admin).await, StatusCode::BAD_REQUEST).await;
        assert_details(&error, &[expected], path);
    }

    let result = redriven(&app, &admin, json!({"seqs": [1, 2, 99]})).await;
    assert_eq!(result["redriven"], json!([1]));
    let codes = failure_codes(&result);
    assert_eq!(codes, vec!["redrive_unsupported", "not_found"]);

    let commands = app.js.get_stream("COMMANDS").await.expect("COMMANDS");
    // The original at 1, its redriven copy after it.
    let redriven = commands.get_raw_message(2).await.expect("redriven command");
    assert_eq!(redriven.subject.as_str(), "cmd.normal.south-west.leave");
    assert_eq!(
        redriven
            .headers
            .get("Dlq-Redriven-From")
            .map(|v| v.as_str()),
        Some("1")
    );
    assert_eq!(
        app.messages_in("DLQ").await,
        1,
        "the redriven letter left DLQ; the fact stayed"
    );
}

#[tokio::test]
async fn a_dead_letter_is_redriven_only_as_the_command_it_was() {
    let app = spawn_app().await;
    let admin = app.login("root", PASSWORD).await;
    // Two commands as the gateway stored them, at COMMANDS' sequences 1 and 2.
    let stored = [dead_command(1), dead_command(2)];
    for command in &stored {
        nats_topology::publish(
            &app.js,
            nats_topology::Outgoing::new(
                command.origin_subject.clone(),
                format!("stored-{}", command.origin_seq),
                command.payload.clone(),
            ),
        )
        .await
        .expect("stored");
    }
    // Letters whose origin whoever writes DLQ made up: the gateway would publish them with its
    // own rights.
    let forged = |subject: &str, origin_seq: u64, payload: Bytes| {
        nats_topology::DeadLetter::new(
            "COMMANDS",
            subject,
            origin_seq,
            Some("region-south-west"),
            "handler failed: test",
            5,
            async_nats::HeaderMap::new(),
            payload,
        )
    };
    // (A letter's id is its origin's sequence: each needs its own.)
    let other = dead_command(3).payload;
    let letters = [
        forged("fact._global.role_changed", 7, other.clone()),
        forged("$KV.rebuild_jobs.job-1", 8, other.clone()),
        forged("cmd.high.south-west.leave", 9, other.clone()),
        forged("cmd.normal.south-west.leave", 10, Bytes::from_static(b"{}")),
        // A well-formed command, but not the one COMMANDS holds at that sequence ...
        forged("cmd.normal.south-west.leave", 2, other.clone()),
        // ... or where COMMANDS holds nothing.
        forged("cmd.normal.south-west.leave", 99, other),
    ];
    for letter in &letters {
        nats_topology::dead_letter(&app.js, letter)
            .await
            .expect("dlq");
    }
    let facts_before = app.messages_in("FACTS").await;
    let result = redriven(&app, &admin, json!({"all": true})).await;
    assert_eq!(result["redriven"], json!([]), "{result}");
    let codes = failure_codes(&result);
    assert_eq!(
        codes,
        [
            "not_a_command",
            "not_a_command",
            "not_a_command",
            "not_a_command",
            "not_as_stored",
            "not_as_stored"
        ],
        "{result}"
    );
    assert_eq!(app.messages_in("COMMANDS").await, 2, "nothing published");
    assert_eq!(app.messages_in("DLQ").await, 6, "every letter kept");
    assert_eq!(
        app.messages_in("FACTS").await,
        facts_before,
        "no role change made up"
    );

    // The letter of a command as stored goes back.
    nats_topology::dead_letter(&app.js, &stored[0])
        .await
        .expect("dlq");
    let result = redriven(&app, &admin, json!({"seqs": [7]})).await;
    assert_eq!(result["redriven"], json!([7]), "{result}");
}

#[tokio::test]
async fn a_letter_whose_original_cannot_be_read_is_kept_and_not_redriven() {
    let app = spawn_app().await;
    let admin = app.login("root", PASSWORD).await;
    nats_topology::dead_letter(&app.js, &stored_dead_command(&app).await)
        .await
        .expect("dlq");
    // COMMANDS cannot be read at all: what the letter says cannot be compared with it.
    app.js.delete_stream("COMMANDS").await.expect("deleted");
    let result = redriven(&app, &admin, json!({"seqs": [1]})).await;
    assert_eq!(result["redriven"], json!([]), "{result}");
    assert_eq!(failure_codes(&result), ["unavailable"], "{result}");
    let message = result["failed"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("stream not found"), "{message}");
    assert_eq!(app.messages_in("DLQ").await, 1, "the letter kept");
}

#[tokio::test]
async fn a_redrive_reads_whole_numbers_written_with_a_fraction() {
    // JSON does not tell 1 from 1.0, and the document's `integer` takes both: a client that
    // writes every number with a fraction must be able to redrive.
    let app = spawn_app().await;
    let admin = app.login("root", PASSWORD).await;
    nats_topology::dead_letter(&app.js, &stored_dead_command(&app).await)
        .await
        .expect("dlq");
    let redrive = |body: Value| {
        with_key(
            &app,
            reqwest::Method::POST,
            "/admin/dlq/redrive",
            &admin,
            Some(body),
        )
    };
    let error = error_of(
        redrive(json!({"seqs": [1.5]})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(details(&error)[0].0, "seqs");
    let response = redrive(json!({"seqs": [1.0]})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.expect("json");
    assert_eq!(result["redriven"], json!([1]));
    assert_eq!(app.messages_in("DLQ").await, 0);
}

#[tokio::test]
async fn region_assignments_show_leases_and_node_load() {
    let app = spawn_app().await;
    let admin = app.login("root", PASSWORD).await;
    let now = chrono::Utc::now();
    app.put_lease("south-east", "sim-1").await;
    let loads = app.js.get_key_value("node_load").await.expect("bucket");
    let load = nats_topology::lease::NodeLoad {
        node: "sim-1".into(),
        regions: vec![schemas::RegionId::new("south-east").expect("id")],
        players: 3,
        entities: 40,
        tick_ms: 1.5,
        reported_at: now,
        census: Vec::new(),
        max_regions: None,
        allowed_regions: Vec::new(),
    };
    loads
        .put("sim-1", serde_json::to_vec(&load).expect("json").into())
        .await
        .expect("put");

    let body: Value = admin_get_json(&app, "/admin/regions", &admin).await;
    let south_east = body["regions"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["id"] == "south-east")
        .expect("region")
        .clone();
    assert_eq!(south_east["owner"], "sim-1");
    assert_eq!(body["nodes"][0]["entities"], 40);
}

#[tokio::test]
async fn a_rebuild_is_requested_and_its_progress_read_back() {
    let app = spawn_app().await;
    let admin = app.login("root", PASSWORD).await;
    let (_, player) = app.player("xan").await;
    let post = reqwest::Method::POST;
    error_of(
        with_key(
            &app,
            post.clone(),
            "/admin/projections/rebuild",
            &player,
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    let started = with_key(&app, post, "/admin/projections/rebuild", &admin, None).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let job_id = started.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/admin/projections/rebuild/{job_id}");
    let pending = admin_get_json(&app, &path, &admin).await;
    assert_eq!(pending["state"], "pending");

    // What a projector writes as it goes.
    let jobs = app.js.get_key_value("rebuild_jobs").await.expect("bucket");
    let mut job: nats_topology::jobs::RebuildJob = serde_json::from_value(pending).expect("a job");
    job.state = nats_topology::jobs::JobState::Running;
    job.facts_done = 500;
    job.facts_total = 2000;
    job.rate_per_sec = 250.0;
    job.eta_secs = Some(6);
    jobs.put(&job_id, serde_json::to_vec(&job).expect("json").into())
        .await
        .expect("put");
    let running = admin_get_json(&app, &path, &admin).await;
    assert_eq!(
        (
            running["state"].as_str(),
            running["facts_done"].as_u64(),
            running["eta_secs"].as_u64()
        ),
        (Some("running"), Some(500), Some(6))
    );

    let error = error_of(
        admin_get(&app, "/admin/projections/rebuild/not-a-job", &admin).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        details(&error),
        vec![("job_id".to_owned(), "invalid".to_owned())]
    );
    let unknown = format!("/admin/projections/rebuild/{}", "0".repeat(32));
    error_of(
        admin_get(&app, &unknown, &admin).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
