//! Register, log in, log out, tokens and sessions.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_player_registers_logs_in_sees_itself_and_logs_out() {
    let app = spawn_app().await;
    let registered = app.register("Alice_1").await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let player_id = registered.json::<Value>().await.expect("json")["player_id"]
        .as_str()
        .expect("id")
        .to_owned();

    let login = app.log_in("alice_1", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    let body: Value = login.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["player_id"], player_id.as_str());
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("token");

    let me: Value = app.get_json("/v1/players/me", Some(token)).await;
    assert_eq!(me["player_id"], player_id.as_str());
    assert_eq!(me["username"], "Alice_1");
    assert_eq!(me["role"], "player");
    assert_eq!(me["online"], false);
    assert_eq!(me["position"], Value::Null);

    app.log_out(token).await;
    app.assert_revoked(token).await;
}

#[tokio::test]
async fn registering_records_a_fact_without_the_password() {
    let app = spawn_app().await;
    let (player_id, _) = app.player("bob").await;
    let facts = app.js.get_stream("FACTS").await.expect("FACTS");
    let mut found = None;
    for seq in 1..=facts.cached_info().state.last_sequence {
        let message = facts.get_raw_message(seq).await.expect("fact");
        let env = schemas::Envelope::<schemas::Fact>::decode(&message.payload).expect("decodes");
        if let schemas::Fact::AccountRegistered(f) = &env.payload
            && f.username == "bob"
        {
            assert_eq!(message.subject.as_str(), "fact._global.account_registered");
            let text = String::from_utf8_lossy(&message.payload).to_string();
            assert!(
                !text.contains(PASSWORD) && !text.contains("argon2"),
                "{text}"
            );
            found = Some(f.player.to_string());
        }
    }
    assert_eq!(found.as_deref(), Some(player_id.as_str()));
}

#[tokio::test]
async fn bad_registrations_name_each_bad_field_and_store_nothing() {
    let app = spawn_app().await;
    let before = app.accounts().await; // the bootstrap admin
    let facts_before = app.messages_in("FACTS").await; // its registration and role
    let long = "a".repeat(33);
    let long_password = "p".repeat(129);
    let cases = [
        (
            json!({"username": "ab", "password": PASSWORD}),
            vec![("username", "length")],
        ),
        (
            json!({"username": long, "password": PASSWORD}),
            vec![("username", "length")],
        ),
        (
            json!({"username": "bad name!", "password": PASSWORD}),
            vec![("username", "charset")],
        ),
        (
            json!({"username": "good_name", "password": "short"}),
            vec![("password", "length")],
        ),
        (
            json!({"username": "good_name", "password": long_password}),
            vec![("password", "length")],
        ),
        (
            json!({"password": PASSWORD}),
            vec![("username", "required")],
        ),
        (
            json!({"username": 7, "password": ["x"]}),
            vec![("username", "invalid"), ("password", "invalid")],
        ),
        (
            json!({"username": "good_name", "password": PASSWORD, "role": "admin"}),
            vec![("role", "unknown_field")],
        ),
        (json!([1, 2]), vec![("", "not_an_object")]),
    ];
    for (body, expected) in cases {
        let error = error_of(
            app.post_json("/v1/auth/register", &body, None).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error["code"], "invalid_request", "{body}");
        assert_details(&error, &expected, &body.to_string());
    }
    assert_eq!(app.accounts().await, before);
    assert_eq!(app.messages_in("FACTS").await, facts_before);
}

#[tokio::test]
async fn a_taken_username_is_a_conflict_whatever_its_case() {
    let app = spawn_app().await;
    assert_eq!(app.register("carol").await.status(), StatusCode::CREATED);
    let error = error_of(app.register("CAROL").await, StatusCode::CONFLICT).await;
    assert_eq!(error["code"], "username_taken");
    let error = error_of(app.register("root").await, StatusCode::CONFLICT).await;
    assert_eq!(
        error["code"], "username_taken",
        "the bootstrap admin exists"
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused_alike() {
    let app = spawn_app().await;
    app.player("dave").await;
    for body in [
        json!({"username": "dave", "password": "not the password"}),
        json!({"username": "nobody", "password": PASSWORD}),
    ] {
        let error = error_of(
            app.post_json("/v1/auth/login", &body, None).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(error["code"], "bad_credentials");
    }
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_refused() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("erin").await;
    let player: schemas::PlayerId = player_id.parse().expect("id");

    let forged = gateway::auth::Tokens::new(
        &secrecy::SecretString::from("another-secret-another-secret-another"),
        "game-gateway",
        "game-clients",
        std::time::Duration::from_secs(60),
    )
    .issue(
        player,
        "made-up",
        gateway::auth::Role::Admin,
        gateway::auth::now_secs(),
    )
    .expect("token");
    let issued_at = |sid: &str, at: u64| {
        app.state
            .tokens()
            .issue(player, sid, gateway::auth::Role::Player, at)
            .expect("token")
    };
    let expired = issued_at("made-up", gateway::auth::now_secs() - 7200);
    let unknown_session = issued_at("never-started", gateway::auth::now_secs());

    for (token, code) in [
        (None, "unauthorized"),
        (Some("garbage"), "unauthorized"),
        (Some(forged.as_str()), "unauthorized"),
        (Some(expired.as_str()), "token_expired"),
        (Some(unknown_session.as_str()), "token_revoked"),
    ] {
        let error = error_of(
            app.get("/v1/players/me", token).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(error["code"], code, "{token:?}");
    }
    assert_eq!(
        app.get("/v1/players/me", Some(&token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_bootstrap_admin_logs_in_with_the_admin_role() {
    let app = spawn_app().await;
    let token = app.login("root", PASSWORD).await;
    let me: Value = app.get_json("/v1/players/me", Some(&token)).await;
    assert_eq!(me["role"], "admin");
}

#[tokio::test]
async fn logins_and_logouts_are_recorded_with_their_request() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("nia").await;
    let logout = app
        .http
        .post(app.url("/v1/auth/logout"))
        .bearer_auth(&token)
        .header("x-request-id", "logout-req-1")
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    let facts = app.facts_about(&player_id).await;
    let kinds: Vec<&str> = facts
        .iter()
        .map(|(f, _)| f.payload.kind().as_str())
        .collect();
    assert_eq!(kinds, ["account_registered", "logged_in", "logged_out"]);
    let (schemas::Fact::LoggedIn(login), schemas::Fact::LoggedOut(out)) =
        (&facts[1].0.payload, &facts[2].0.payload)
    else {
        unreachable!()
    };
    assert_eq!(login.session, out.session, "the session the token carried");
    assert!(login.expires_at > chrono::Utc::now());
    let header = |i: usize, name: &str| {
        facts[i]
            .1
            .get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    // The gateway's own request id, which the client cannot choose.
    let logout_request = header(2, "Request-Id");
    assert!(
        logout_request.parse::<uuid::Uuid>().is_ok(),
        "{logout_request}"
    );
    assert_eq!(header(1, "Client-Ip"), "127.0.0.1");
    assert!(!header(1, "Request-Id").is_empty());
}

#[tokio::test]
async fn without_nats_no_one_logs_in_and_no_session_is_left_behind() {
    let mut app = spawn_app().await;
    let registered = app.register("oak").await;
    let player_id = registered.json::<Value>().await.expect("json")["player_id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.nats.stop();
    let credentials = json!({"username": "oak", "password": PASSWORD});
    let refused = error_of(
        app.post_json("/v1/auth/login", &credentials, None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(refused["code"], "unavailable");
    let sessions = app.sessions_of(&player_id).await;
    assert!(sessions.is_empty(), "{sessions:?}");
    let mut redis = app.state.redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("session:*")
        .query_async(&mut redis)
        .await
        .expect("keys");
    assert!(keys.is_empty(), "{keys:?}");

    app.nats.restart().expect("NATS back");
    eventually_within(Duration::from_secs(20), "logins work again", || async {
        app.post_json("/v1/auth/login", &credentials, None)
            .await
            .status()
            == StatusCode::OK
    })
    .await;
}

/// Whether the account of `username` is marked recorded.
async fn recorded(app: &TestApp, username: &str) -> Option<bool> {
    app.db()
        .collection::<mongodb::bson::Document>("accounts")
        .find_one(mongodb::bson::doc! {"username_key": username})
        .await
        .expect("find")
        .and_then(|a| a.get_bool("recorded").ok())
}

/// Registers `username` with `password`: the answer's status and player id, if any.
async fn register_outcome(app: &TestApp, username: &str, password: &str) -> (StatusCode, String) {
    let response = app.register_with(username, password).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let id = body["player_id"].as_str().unwrap_or_default().to_owned();
    (status, id)
}

/// Stops NATS and registers `username`, which the gateway answers 503: a registration cut short.
async fn register_without_nats(app: &mut TestApp, username: &str) {
    app.nats.stop();
    app.nats_gone().await;
    let (status, _) = register_outcome(app, username, PASSWORD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_registration_cut_short_by_nats_is_completed_by_registering_again() {
    let mut app = spawn_app().await;
    register_without_nats(&mut app, "elm").await;
    assert_eq!(
        recorded(&app, "elm").await,
        Some(false),
        "the account waits"
    );
    // The name stays taken for anyone else, and nobody logs in with it yet.
    let (status, _) = register_outcome(&app, "elm", "another-password").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let login = json!({"username": "elm", "password": PASSWORD});
    let refused = app.post_json("/v1/auth/login", &login, None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    app.nats.restart().expect("NATS back");
    let player_id = eventually_within(
        Duration::from_secs(20),
        "the registration goes through",
        || async {
            let (status, id) = register_outcome(&app, "elm", PASSWORD).await;
            (status == StatusCode::CREATED).then_some(id)
        },
    )
    .await;
    assert_eq!(recorded(&app, "elm").await, Some(true));
    let facts = app.facts_about(&player_id).await;
    let kinds: Vec<&str> = facts
        .iter()
        .map(|(f, _)| f.payload.kind().as_str())
        .collect();
    assert_eq!(kinds, ["account_registered"], "recorded once");
    assert!(!app.login("elm", PASSWORD).await.is_empty());
    // Once recorded, the name is simply taken.
    let (status, _) = register_outcome(&app, "elm", PASSWORD).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_login_records_an_account_whose_registration_was_cut_short() {
    let mut app = spawn_app().await;
    register_without_nats(&mut app, "ash").await;

    app.nats.restart().expect("NATS back");
    let login = json!({"username": "ash", "password": PASSWORD});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let body: Value = loop {
        let response = app.post_json("/v1/auth/login", &login, None).await;
        if response.status() == StatusCode::OK {
            break response.json().await.expect("json");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "logins never worked again: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let player_id = body["player_id"].as_str().expect("id");
    assert_eq!(recorded(&app, "ash").await, Some(true));
    let facts = app.facts_about(player_id).await;
    let kinds: Vec<&str> = facts
        .iter()
        .map(|(f, _)| f.payload.kind().as_str())
        .collect();
    assert_eq!(kinds, ["account_registered", "logged_in"]);
}

#[tokio::test]
async fn logins_beyond_the_password_queue_are_answered_503_counted_and_let_through_later() {
    // One worker and room for one more: of a burst of logins, the rest find the queue full.
    // (The account's budget for attempts in flight is raised: it would answer 429 first.)
    let limits = loose_limits_but(&[(
        "login_failures_per_account",
        "{ rate_per_sec = 1000.0, burst = 1000 }",
    )]);
    let app = spawn_app_with(&format!(
        "{limits}\n[auth]\npassword_workers = 1\npassword_queue = 1\n"
    ))
    .await;
    app.player("queued").await;
    let burst = (0..32).map(|_| app.log_in("queued", PASSWORD));
    let answers = futures::future::join_all(burst).await;
    let mut refused = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(
                    answer.headers().get("retry-after").map(|v| v.as_bytes()),
                    Some(&b"1"[..])
                );
                let body: Value = answer.json().await.expect("json");
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
            }
            other => panic!("a login of the burst answered {other}"),
        }
    }
    assert!(
        refused > 0,
        "32 logins at once, and none found the queue full"
    );
    let metrics = app.get("/metrics", None).await.text().await.expect("text");
    assert!(
        metrics.contains(&format!("gateway_password_queue_full_total {refused}")),
        "{refused} refused: {metrics}"
    );
    // The workers go on: the same login, alone, gets in.
    app.login("queued", PASSWORD).await;
}
