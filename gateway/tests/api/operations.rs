//! Request ids, unknown routes, health, readiness, metrics and rate limits.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn every_answer_has_a_request_id_and_errors_carry_it() {
    let app = spawn_app().await;
    let response = app.get("/v1/nowhere", None).await;
    let error = error_of(response, StatusCode::NOT_FOUND).await;
    assert_eq!(error["code"], "not_found");

    let echoed = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("send");
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let replaced = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id!")
        .send()
        .await
        .expect("send");
    assert_ne!(replaced.headers()["x-request-id"], "bad id!");

    let error = error_of(
        app.get("/v1/commands", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    assert_eq!(error["code"], "method_not_allowed");
}

#[tokio::test]
async fn readiness_follows_the_dependencies() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK);

    app.redis.stop();
    let not_ready = app.get("/readyz", None).await;
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = not_ready.json().await.expect("json");
    assert_eq!(body["redis"], "unreachable");
    assert_eq!(body["nats"], "ok");
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_and_rejections() {
    let app = spawn_app().await;
    app.get("/v1/players/me", None).await;
    let text = app.get("/metrics", None).await.text().await.expect("text");
    assert!(
        text.contains(
            "gateway_http_requests_total{method=\"GET\",route=\"/v1/players/me\",status=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("gateway_auth_rejections_total{reason=\"missing_token\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gateway_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

const TIGHT_AUTH: &str = r#"
[rate_limits]
auth_per_ip = { rate_per_sec = 0.5, burst = 3 }
api_per_ip = { rate_per_sec = 1000.0, burst = 1000 }
commands_per_player = { rate_per_sec = 1.0, burst = 2 }
reads_per_player = { rate_per_sec = 1000.0, burst = 1000 }
"#;

#[tokio::test]
async fn a_flood_of_logins_gets_429_with_retry_after() {
    let app = spawn_app_with(TIGHT_AUTH).await;
    let body = json!({"username": "nobody", "password": "whatever-password"});
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = app.post_json("/v1/auth/login", &body, None).await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!((1..=2).contains(&retry), "{retry}");
            let error = error_of(response, StatusCode::TOO_MANY_REQUESTS).await;
            assert_eq!(error["code"], "rate_limited");
        }
    }
    assert_eq!(statuses[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);
}

#[tokio::test]
async fn a_player_flooding_commands_is_limited_alone() {
    let app = spawn_app_with(TIGHT_AUTH).await;
    let (a, token_a) = app.player("flooder").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // let the auth limit refill for the second login
    let (b, token_b) = app.player("calm").await;
    app.put_in_world(&a, "flooder", "south-west").await;
    app.put_in_world(&b, "calm", "south-west").await;
    let command = json!({"type": "chat", "text": "hi"});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            app.post_json("/v1/commands", &command, Some(&token_a))
                .await
                .status(),
        );
    }
    assert_eq!(statuses[..2], [StatusCode::ACCEPTED; 2]);
    assert!(
        statuses[2..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        app.post_json("/v1/commands", &command, Some(&token_b))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.messages_in("COMMANDS").await, 3);
}

#[tokio::test]
async fn with_redis_down_limits_fall_back_and_active_players_keep_playing() {
    let mut app = spawn_app_with(TIGHT_AUTH).await;
    let (player, token) = app.player("mia").await;
    app.put_in_world(&player, "mia", "south-west").await;
    let command = json!({"type": "chat", "text": "still here"});
    assert_eq!(
        app.post_json("/v1/commands", &command, Some(&token))
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    app.redis.stop();
    let during = app.post_json("/v1/commands", &command, Some(&token)).await;
    assert_eq!(
        during.status(),
        StatusCode::ACCEPTED,
        "a confirmed session keeps playing"
    );
    assert!(app.state.limiter_falling_back());
    // Reads too: the view comes from the read model when Redis gives no answer.
    let me = app.get("/v1/players/me", Some(&token)).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["region"], "south-west");
    let text = app.get("/metrics", None).await.text().await.expect("text");
    assert!(text.contains("gateway_rate_limiter_fallback 1"), "{text}");
    // The local limiter still limits: its burst of 2 is soon spent.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            app.post_json("/v1/commands", &command, Some(&token))
                .await
                .status(),
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    app.redis.restart().expect("Redis back");
    eventually(Duration::from_secs(10), "shared limits again", || async {
        app.get("/v1/players/me", Some(&token)).await;
        !app.state.limiter_falling_back()
    })
    .await;
}

#[tokio::test]
async fn the_openapi_document_names_only_routes_that_exist() {
    let app = spawn_app().await;
    let document: Value = app
        .get("/openapi.json", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    let command = &document["components"]["schemas"]["Command"];
    assert!(command.to_string().contains("\"move\""), "{command}");
    for operation in gateway::openapi::OPERATIONS {
        assert!(
            document["paths"][operation.path][operation.method].is_object(),
            "{} {}",
            operation.method,
            operation.path
        );
        let path = operation
            .path
            .replace("{id}", "south-west")
            .replace("{job_id}", "x");
        let method = reqwest::Method::from_bytes(operation.method.to_uppercase().as_bytes())
            .expect("method");
        let response = app
            .http
            .request(method, app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .expect("send");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let unrouted =
            status == StatusCode::METHOD_NOT_ALLOWED || body["error"]["code"] == "not_found";
        assert!(
            !unrouted,
            "{} {} is documented but not routed ({status})",
            operation.method, operation.path
        );
    }
}
