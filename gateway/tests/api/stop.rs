//! Stopping the gateway: the live streams are closed with 1001 (going away), the requests in
//! flight get their answers, and nothing holds the stop beyond the drain deadline.

use std::time::Duration;

use gateway::RunError;
use gateway::stream::GOING_AWAY;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::stream::{closed_within, open};

/// What `run_until_stopped` returned, within `within`.
async fn stopped_within(
    stopping: tokio::task::JoinHandle<Result<(), RunError>>,
    within: Duration,
) -> Result<(), RunError> {
    tokio::time::timeout(within, stopping)
        .await
        .unwrap_or_else(|_| panic!("the gateway did not stop within {within:?}"))
        .expect("the serving task ends")
}

/// Sends `leave` for `token`, waiting `wait_ms` for its outcome, on a task of its own.
fn leave_waiting(
    app: &TestApp,
    token: String,
    wait_ms: u32,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let url = app.url(&format!("/v1/commands?wait=true&wait_ms={wait_ms}"));
    let http = app.http.clone();
    tokio::spawn(async move {
        http.post(url)
            .bearer_auth(token)
            .json(&json!({"type": "leave"}))
            .send()
            .await
    })
}

/// Waits until `n` commands wait for their outcomes on the gateway.
async fn waiting(app: &TestApp, n: usize) {
    eventually_within(
        Duration::from_secs(5),
        "the command to wait for its outcome",
        || async { app.state.outcomes().waiting() == n },
    )
    .await;
}

#[tokio::test]
async fn an_open_stream_is_closed_going_away_when_the_gateway_stops() {
    let mut app = spawn_app().await;
    let (_, token) = app.player("wren").await;
    let mut socket = open(&app, &token).await;

    let stopping = app.stop();
    let stopped = stopped_within(stopping, Duration::from_secs(5)).await;
    assert!(stopped.is_ok(), "{stopped:?}");
    assert!(
        app.state.open_streams().is_empty(),
        "the gateway stopped before its streams ended"
    );
    let (code, reason) = closed_within(&mut socket, Duration::from_secs(2)).await;
    assert_eq!(code, GOING_AWAY);
    assert_eq!(reason, "gateway stopping");
}

#[tokio::test]
async fn a_command_waiting_when_the_stop_begins_still_gets_its_answer() {
    let mut app = spawn_app().await;
    let (player_id, token) = app.player("yale").await;
    app.put_in_world(&player_id, "yale", "south-west").await;
    let answer = leave_waiting(&app, token, 1000);
    waiting(&app, 1).await;

    let stopping = app.stop();
    // No simulator answers: the wait runs out and the command is accepted.
    let answer = answer
        .await
        .expect("the client task ends")
        .expect("an answer, not a dropped connection");
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let body: Value = answer.json().await.expect("json");
    assert!(body["stream_seq"].as_u64().is_some(), "{body}");
    let stopped = stopped_within(stopping, Duration::from_secs(5)).await;
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn a_request_that_outlasts_the_drain_deadline_does_not_hold_the_stop() {
    let mut app = spawn_app_with_env(LOOSE_LIMITS, &[("GATEWAY_DRAIN_DEADLINE_MS", "300")]).await;
    let (player_id, token) = app.player("zora").await;
    app.put_in_world(&player_id, "zora", "south-west").await;
    let _held = leave_waiting(&app, token, 10000);
    waiting(&app, 1).await;

    let stopping = app.stop();
    // The wait would last 10 s; the gateway gives it 300 ms.
    let stopped = stopped_within(stopping, Duration::from_secs(3)).await;
    assert!(matches!(stopped, Err(RunError::Drain(_))), "{stopped:?}");
}
