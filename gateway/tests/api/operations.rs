//! Request ids, unknown routes, health, readiness, metrics and rate limits.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// The request id the gateway answers a request sent with `id` with.
async fn request_id_answered(app: &TestApp, id: &str) -> reqwest::header::HeaderValue {
    let response = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", id)
        .send()
        .await
        .expect("send");
    response.headers()["x-request-id"].clone()
}

#[tokio::test]
async fn every_answer_has_a_request_id_and_errors_carry_it() {
    let app = spawn_app().await;
    let response = app.get("/v1/nowhere", None).await;
    let error = error_of(response, StatusCode::NOT_FOUND).await;
    assert_eq!(error["code"], "not_found");

    assert_eq!(request_id_answered(&app, "abc-123").await, "abc-123");
    assert_ne!(request_id_answered(&app, "bad id!").await, "bad id!");

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

    app.redis_mut().stop();
    // A probe's answer stands for a second.
    let not_ready = eventually_within(Duration::from_secs(10), "not ready", || async {
        let answer = app.get("/readyz", None).await;
        (answer.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(answer)
    })
    .await;
    let body: Value = not_ready.json().await.expect("json");
    assert_eq!(body["redis"], "unreachable");
    assert_eq!(body["nats"], "ok");
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_flood_of_readiness_checks_asks_the_dependencies_once_a_second() {
    let app = spawn_app().await;
    let pings = || async {
        let mut redis = app.state.redis();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut redis)
            .await
            .expect("info");
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = pings().await;
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..200).map(|_| app.get("/readyz", None))).await;
    let took = started.elapsed();
    assert!(answers.iter().all(|a| a.status() == StatusCode::OK));
    let asked = pings().await - before;
    // One probe per second the flood lasted, and one more at each end.
    let most = took.as_secs() + 2;
    assert!(asked <= most, "{asked} pings in {took:?}");
}

#[tokio::test]
async fn made_up_methods_share_one_label_in_the_metrics() {
    let app = spawn_app().await;
    // Any token is a method to HTTP: one series per name would grow without bound.
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("FLOOD{i}").as_bytes()).expect("token");
        let answer = app
            .http
            .request(method, app.url("/healthz"))
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let text = app.get("/metrics", None).await.text().await.expect("text");
    assert!(!text.contains("FLOOD"), "{text}");
    assert!(
        text.contains(
            "gateway_http_requests_total{method=\"other\",route=\"/healthz\",status=\"405\"} 20"
        ),
        "{text}"
    );
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
    // At zero from the start, so an alert on its rate finds it.
    assert!(
        text.contains("gateway_password_queue_full_total 0"),
        "{text}"
    );
}

/// Loose limits but for logins per IP (a burst of 3, then one each two seconds) and commands per
/// player (a burst of 2, then one a second).
fn tight_auth() -> String {
    loose_limits_but(&[
        ("auth_per_ip", "{ rate_per_sec = 0.5, burst = 3 }"),
        ("commands_per_player", "{ rate_per_sec = 1.0, burst = 2 }"),
    ])
}

#[tokio::test]
async fn a_flood_of_logins_gets_429_with_retry_after() {
    let app = spawn_app_with(&tight_auth()).await;
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

/// Logs in as nobody, with `from` as the `X-Forwarded-For` header.
async fn login_from(app: &TestApp, from: &str) -> StatusCode {
    let body = json!({"username": "nobody", "password": "whatever-password"});
    app.http
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", from)
        .json(&body)
        .send()
        .await
        .expect("request")
        .status()
}

/// Five such logins in a row.
async fn login_statuses(app: &TestApp, from: &str) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(login_from(app, from).await);
    }
    statuses
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit() {
    // The test client connects from 127.0.0.1, which plays the proxy here.
    let app = spawn_app_with_env(&tight_auth(), &[("GATEWAY_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let limited = [StatusCode::TOO_MANY_REQUESTS; 2];
    let first = login_statuses(&app, "203.0.113.1").await;
    assert_eq!(first[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(first[3..], limited);
    // Another client behind the same proxy is not punished for the first one's flood, and a
    // client naming someone else left of the proxy's entry does not change who it is.
    let second = login_statuses(&app, "203.0.113.1, 203.0.113.2").await;
    assert_eq!(second[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(second[3..], limited);
}

#[tokio::test]
async fn an_ipv6_client_cannot_escape_its_limit_by_moving_within_its_64() {
    let app = spawn_app_with_env(&tight_auth(), &[("GATEWAY_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let mut statuses = Vec::new();
    for n in 1..=5 {
        statuses.push(login_from(&app, &format!("2001:db8:1:2::{n:x}")).await);
    }
    assert_eq!(statuses[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // The next /64 is someone else.
    assert_eq!(
        login_from(&app, "2001:db8:1:3::1").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_client_cannot_escape_its_limit_by_naming_another_address() {
    let app = spawn_app_with(&tight_auth()).await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(login_from(&app, &format!("198.51.100.{n}")).await);
    }
    assert_eq!(statuses[..3], [StatusCode::UNAUTHORIZED; 3]);
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);
}

#[tokio::test]
async fn a_player_flooding_commands_is_limited_alone() {
    // Only the commands are tight here: both players log in from the same address.
    let app = spawn_app_with(&loose_limits_but(&[(
        "commands_per_player",
        "{ rate_per_sec = 1.0, burst = 2 }",
    )]))
    .await;
    let (a, token_a) = app.player("flooder").await;
    let (b, token_b) = app.player("calm").await;
    app.put_in_world(&a, "flooder", "south-west").await;
    app.put_in_world(&b, "calm", "south-west").await;
    let command = json!({"type": "chat", "text": "hi"});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.command(&token_a, &command).await.status());
    }
    assert_eq!(statuses[..2], [StatusCode::ACCEPTED; 2]);
    assert!(
        statuses[2..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(
        app.command(&token_b, &command).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.messages_in("COMMANDS").await, 3);
}

#[tokio::test]
async fn with_redis_down_limits_fall_back_and_active_players_keep_playing() {
    let mut app = spawn_app_with(&tight_auth()).await;
    let (player, token) = app.player("mia").await;
    app.put_in_world(&player, "mia", "south-west").await;
    let command = json!({"type": "chat", "text": "still here"});
    assert_eq!(
        app.command(&token, &command).await.status(),
        StatusCode::ACCEPTED
    );

    app.redis_mut().stop();
    let during = app.command(&token, &command).await;
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
        statuses.push(app.command(&token, &command).await.status());
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    app.redis_mut().restart().expect("Redis back");
    eventually_within(Duration::from_secs(10), "shared limits again", || async {
        app.get("/v1/players/me", Some(&token)).await;
        !app.state.limiter_falling_back()
    })
    .await;
}

#[tokio::test]
async fn the_openapi_document_names_only_routes_that_exist() {
    let app = spawn_app().await;
    let document: Value = app.get_json("/openapi.json", None).await;
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

/// Sends `request` as raw bytes on a fresh connection: the status, the headers (lower-cased
/// names) and the body of the answer.
async fn raw(app: &TestApp, request: &[u8]) -> (u16, HashMap<String, String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if let Some((head, body)) = split_head(&answer)
                && let Some(length) = content_length(head)
                && body.len() >= length
            {
                break;
            }
        }
    });
    read.await.expect("an answer in time");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn split_head(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((std::str::from_utf8(&bytes[..end]).ok()?, &bytes[end + 4..]))
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// An error answered on a raw connection, checked for the contract's shape: its `error`
/// object, or what is wrong with it.
fn raw_error_of(
    (status, headers, body): &(u16, HashMap<String, String>, String),
    expected: u16,
) -> Result<Value, String> {
    if *status != expected {
        return Err(format!("status {status}, not {expected}: {body:?}"));
    }
    let request_id = headers
        .get("x-request-id")
        .ok_or_else(|| format!("no x-request-id in {headers:?}"))?;
    if !headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err(format!("not JSON: {headers:?} {body:?}"));
    }
    let body: Value = serde_json::from_str(body).map_err(|_| format!("not JSON: {body:?}"))?;
    let error = body["error"].clone();
    let shaped = error["code"].is_string()
        && error["message"].is_string()
        && error["details"].is_array()
        && error["request_id"] == request_id.as_str();
    shaped
        .then_some(error)
        .ok_or_else(|| format!("not the error shape: {body}"))
}

#[tokio::test]
async fn errors_of_the_http_layer_have_the_error_shape() {
    let app = spawn_app().await;
    let (_, token) = app.player("hal").await;
    let with_token = |line: &str| {
        format!("{line}\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n")
            .into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a header value with a control character",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-bad: a\x01b\r\n\r\n".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "a request line that is not HTTP",
            b"NOT HTTP AT ALL\r\n\r\n".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "a header name with a space",
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nbad name: x\r\n\r\n".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "a raw path that is not UTF-8",
            b"GET /v1/regions/\xff\xfe HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "a percent-encoded path that is not UTF-8",
            with_token("GET /v1/regions/%FF%FE HTTP/1.1"),
            400,
            "invalid_request",
        ),
        (
            "a query that is not UTF-8",
            with_token("GET /v1/regions/south-west/entities?x=%FF HTTP/1.1"),
            400,
            "invalid_request",
        ),
        (
            "a body that is not JSON",
            format!(
                "POST /v1/commands HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 3\r\nconnection: close\r\n\r\n{{x}}"
            )
            .into_bytes(),
            400,
            "malformed_json",
        ),
        (
            "more headers than the server reads",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\n{}\r\n",
                (0..200).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a URI longer than the server reads",
            format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
            "uri_too_long",
        ),
        (
            "a WebSocket upgrade over HTTP/1.0, which has none",
            format!(
                "GET /v1/stream HTTP/1.0\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .into_bytes(),
            426,
            "invalid_request",
        ),
        (
            "an unknown route",
            b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            404,
            "not_found",
        ),
        (
            "a method the route does not take",
            b"DELETE /v1/commands HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
    ];
    let mut wrong = Vec::new();
    for (context, request, status, code) in cases {
        let answer = raw(&app, &request).await;
        match raw_error_of(&answer, status) {
            Ok(error) if error["code"] == code && error["message"] != "the request failed" => {}
            Ok(error) => wrong.push(format!("{context}: {error}")),
            Err(why) => wrong.push(format!("{context}: {why}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_clients_request_id_is_echoed_but_the_audit_goes_by_the_gateways() {
    let app = spawn_app().await;
    let (player_id, token) = app.player("ray").await;
    app.put_in_world(&player_id, "ray", "south-west").await;
    let stream = app.js.get_stream("COMMANDS").await.expect("COMMANDS");
    let send = |request_id: Option<&'static str>| {
        let mut request = app
            .http
            .post(app.url("/v1/commands"))
            .bearer_auth(&token)
            .json(&json!({"type": "chat", "text": "hello"}));
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        async {
            let response = request.send().await.expect("send");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let echoed = response.headers()["x-request-id"]
                .to_str()
                .expect("ascii")
                .to_owned();
            let seq = response.json::<Value>().await.expect("json")["stream_seq"]
                .as_u64()
                .expect("seq");
            let stored = stream.get_raw_message(seq).await.expect("stored");
            let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
            (echoed, header("Request-Id"), header("Client-Request-Id"))
        }
    };

    // Two requests claiming one id: each is echoed what it sent, and recorded under an id of
    // the gateway's own, different for each, with the client's beside it.
    let (echoed, first, client) = send(Some("req-42")).await;
    assert_eq!(echoed, "req-42");
    assert_eq!(client.as_deref(), Some("req-42"));
    let first = first.expect("the gateway's request id");
    assert!(first.parse::<uuid::Uuid>().is_ok(), "{first}");
    let (_, second, _) = send(Some("req-42")).await;
    assert_ne!(
        Some(first),
        second,
        "the audit cannot be made to mix requests"
    );

    // Without one of the client's, the gateway's is the one answered, and nothing stands beside it.
    let (echoed, own, client) = send(None).await;
    assert_eq!(Some(echoed), own);
    assert_eq!(client, None);
}
