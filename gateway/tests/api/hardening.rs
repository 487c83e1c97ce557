//! What a caller cannot get away with: tokens bound to their session, roles decided on the
//! server, limits that hold against floods of bad tokens and guessed passwords, and query
//! parameters that cannot break a route.

use futures::StreamExt;
use gateway::auth::{Role, now_secs};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// The bootstrap admin's player id.
async fn root_id(app: &TestApp) -> schemas::PlayerId {
    app.db()
        .collection::<mongodb::bson::Document>("accounts")
        .find_one(mongodb::bson::doc! {"username_key": "root"})
        .await
        .expect("find")
        .and_then(|a| a.get_str("_id").ok().map(str::to_owned))
        .expect("the bootstrap admin")
        .parse()
        .expect("id")
}

async fn admin_dlq(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/admin/dlq"))
        .bearer_auth(token)
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_token_holds_only_for_the_player_and_role_of_its_session() {
    let mut app = spawn_app().await;
    let (ann_id, ann_token) = app.player("ann").await;
    let (ben_id, _) = app.player("ben").await;
    let (ann, ben): (schemas::PlayerId, schemas::PlayerId) =
        (ann_id.parse().expect("id"), ben_id.parse().expect("id"));
    let root = root_id(&app).await;
    let sid = app.state.tokens().check(&ann_token).expect("valid").sid;
    // Tokens signed with the gateway's own key, naming ann's live session.
    let sign = |player, role| {
        app.state
            .tokens()
            .issue(player, &sid, role, now_secs())
            .expect("token")
    };
    let as_ben = sign(ben, Role::Player);
    let as_root = sign(root, Role::Admin);
    let ann_as_admin = sign(ann, Role::Admin);

    let refused = |response: reqwest::Response| error_of(response, StatusCode::UNAUTHORIZED);
    refused(app.get("/v1/players/me", Some(&as_ben)).await).await;
    let command = json!({"type": "spawn", "region": "south-west"});
    refused(app.command(&as_ben, &command).await).await;
    refused(admin_dlq(&app, &as_root).await).await;
    let error = error_of(admin_dlq(&app, &ann_as_admin).await, StatusCode::FORBIDDEN).await;
    assert_eq!(error["code"], "forbidden", "the role is the session's");

    // The real token works, and so the session is confirmed in the gateway's memory; while
    // Redis is away, that memory is tied to the player as well.
    assert_eq!(
        app.get("/v1/players/me", Some(&ann_token)).await.status(),
        StatusCode::OK
    );
    app.redis_mut().stop();
    refused(app.get("/v1/players/me", Some(&as_ben)).await).await;
    let error = error_of(admin_dlq(&app, &ann_as_admin).await, StatusCode::FORBIDDEN).await;
    assert_eq!(error["code"], "forbidden", "the role is the session's");
    assert_eq!(
        app.get("/v1/players/me", Some(&ann_token)).await.status(),
        StatusCode::OK
    );
}

/// Logs `username` in again and again until `stop` is set (and once more after): every token
/// a login answered with.
async fn log_in_until(
    app: &TestApp,
    username: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<String> {
    let mut tokens = Vec::new();
    loop {
        let stopping = stop.load(std::sync::atomic::Ordering::SeqCst);
        tokens.push(app.login(username, PASSWORD).await);
        if stopping {
            return tokens;
        }
    }
}

#[tokio::test]
async fn a_role_change_wins_over_every_login_that_has_not_answered() {
    let app = spawn_app().await;
    let (ivy, _) = app.player("ivy").await;
    let root = app.login("root", PASSWORD).await;
    let set_role = |role: &'static str| {
        let request = app
            .http
            .put(app.url(&format!("/admin/players/{ivy}/role")))
            .bearer_auth(&root)
            .header("x-api-key", ADMIN_KEY)
            .json(&json!({"role": role}));
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), StatusCode::OK, "{role}");
        }
    };
    let answered = std::sync::atomic::AtomicUsize::new(0);
    for round in 0..3 {
        set_role("admin").await;
        // Logins keep coming while the admin demotes ivy: some read the account before the
        // change and store their session after it.
        let stop = std::sync::atomic::AtomicBool::new(false);
        answered.store(0, std::sync::atomic::Ordering::SeqCst);
        let logins = futures::future::join_all((0..6).map(|_| async {
            let tokens = log_in_until(&app, "ivy", &stop).await;
            answered.fetch_add(tokens.len(), std::sync::atomic::Ordering::SeqCst);
            tokens
        }));
        let demote = async {
            // Logins that answer keep answering while they run; wait for the first.
            eventually_within(
                std::time::Duration::from_secs(10),
                "logins to be under way",
                || async { admin_dlq(&app, &root).await.status() == StatusCode::OK },
            )
            .await;
            set_role("player").await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let (tokens, ()) = futures::join!(logins, demote);
        for token in tokens.iter().flatten() {
            let status = admin_dlq(&app, token).await.status();
            assert_ne!(
                status,
                StatusCode::OK,
                "round {round}: a login overlapping the demotion kept the admin role"
            );
        }
    }
}

#[tokio::test]
async fn a_token_is_not_taken_before_its_not_before_time() {
    let app = spawn_app().await;
    let (_, token) = app.player("nell").await;
    let claims = app.state.tokens().check(&token).expect("valid");
    let with_nbf = |nbf: u64| {
        let mut claims = serde_json::to_value(&claims).expect("json");
        claims["nbf"] = json!(nbf);
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            // The JWT_SECRET spawn_app gives the gateway.
            &jsonwebtoken::EncodingKey::from_secret(b"test-secret-test-secret-test-secret"),
        )
        .expect("token")
    };
    let error = error_of(
        app.get("/v1/players/me", Some(&with_nbf(now_secs() + 3600)))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(error["code"], "unauthorized");
    assert_eq!(
        app.get("/v1/players/me", Some(&with_nbf(now_secs() - 10)))
            .await
            .status(),
        StatusCode::OK
    );
}

/// The median time `check` takes, over `runs` runs.
fn median_time(runs: usize, mut check: impl FnMut() -> bool) -> std::time::Duration {
    let mut times: Vec<std::time::Duration> = (0..runs)
        .map(|_| {
            let started = std::time::Instant::now();
            std::hint::black_box(check());
            started.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

#[test]
fn the_api_key_check_takes_as_long_whatever_the_length_guessed() {
    // A long key makes a comparison that stops at the lengths easy to see.
    let size = 1 << 18;
    let keys = [secrecy::SecretString::from("k".repeat(size))];
    let same_length = vec![b'x'; size];
    let one_longer = vec![b'x'; size + 1];
    let check = |given: &[u8]| gateway::auth::api_key_matches(given, &keys);
    assert!(!check(&same_length) && !check(&one_longer));
    let (mut same, mut longer) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        same.push(median_time(5, || check(&same_length)));
        longer.push(median_time(5, || check(&one_longer)));
    }
    same.sort();
    longer.sort();
    let (same, longer) = (same[2].as_secs_f64(), longer[2].as_secs_f64());
    let ratio = same.max(longer) / same.min(longer).max(1e-9);
    assert!(
        ratio < 3.0,
        "a guess of the key's length took {same:.6} s, one a byte longer {longer:.6} s"
    );
}

/// Loose limits but for the per-IP one: a burst of 4, then one a second.
fn tight_per_ip() -> String {
    loose_limits_but(&[("api_per_ip", "{ rate_per_sec = 1.0, burst = 4 }")])
}

/// The statuses of `n` commands sent with `token`, one after the other.
async fn command_statuses(app: &TestApp, token: &str, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let response = app.command(token, &json!({"type": "leave"})).await;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            let error = error_of(response, status).await;
            assert_eq!(error["code"], "rate_limited");
        }
        statuses.push(status);
    }
    statuses
}

#[tokio::test]
async fn a_flood_of_bad_tokens_on_commands_is_limited_per_ip() {
    let app = spawn_app_with(&tight_per_ip()).await;
    let (player, token) = app.player("flo").await;
    let garbage = "not-a-token";
    let statuses = command_statuses(&app, garbage, 8).await;
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "an invalid token: {statuses:?}"
    );

    // A revoked token: its session ended (as a logout ends it).
    let sid = app.state.tokens().check(&token).expect("valid").sid;
    app.state
        .sessions()
        .end(&mut app.state.redis(), player.parse().expect("id"), &sid)
        .await
        .expect("ended");
    // Wait for a little of the budget to come back, then flood again.
    eventually_within(
        std::time::Duration::from_secs(10),
        "the per-IP budget to refill",
        || async { command_statuses(&app, garbage, 1).await[0] == StatusCode::UNAUTHORIZED },
    )
    .await;
    let statuses = command_statuses(&app, &token, 8).await;
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "a revoked token: {statuses:?}"
    );
}

#[tokio::test]
async fn commands_the_gate_turns_away_do_not_reach_nats() {
    let app = spawn_app_with(&loose_limits_but(&[(
        "commands_per_player",
        "{ rate_per_sec = 1.0, burst = 4 }",
    )]))
    .await;
    let (player, token) = app.player("ria").await;
    app.put_in_world_at(&player, "ria", "north-east", (1500.0, 1500.0))
        .await;
    // Every read of avatar_regions, as NATS receives it: of one key, of many at once, or of
    // what the bucket holds past the gateway's copy.
    let reads = "$JS.API.DIRECT.GET.>";
    let bucket = "$JS.API.DIRECT.GET.KV_avatar_regions";
    let mut heard = app.client.subscribe(reads).await.expect("subscribe");
    app.client.flush().await.expect("flush");

    let sent = 20;
    let statuses = command_statuses(&app, &token, sent).await;
    let admitted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert!(
        (4..sent).contains(&admitted),
        "a burst of 4, then refusals: {statuses:?}"
    );
    // The last read was answered before its command was; what NATS took after it comes after it
    // here.
    let end = "$JS.API.DIRECT.GET.end";
    app.client.publish(end, "".into()).await.expect("publish");
    let mut count = 0;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), heard.next())
            .await
            .expect("the end is heard")
            .expect("the subscription");
        if message.subject.as_str() == end {
            break;
        }
        if message.subject.as_str() == bucket || message.subject.starts_with(&format!("{bucket}."))
        {
            count += 1;
        }
    }
    // At most one for each admitted command (fewer when commands share a read), and one for the
    // first refusal, asked beside Redis before the gate said no; none for the refusals after it.
    // (A read that waited past its budget, on a busy machine, may never have been sent: fewer is
    // no failure.)
    assert!(count > 0, "the reads are heard");
    assert!(count <= admitted + 1, "{count} reads: {statuses:?}");
}

/// Loose limits but for failed logins per account: a burst of 5, then one a second.
fn tight_login_failures() -> String {
    loose_limits_but(&[(
        "login_failures_per_account",
        "{ rate_per_sec = 1.0, burst = 5 }",
    )])
}

async fn login_status(app: &TestApp, username: &str, password: &str) -> StatusCode {
    let response = app.log_in(username, password).await;
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(response.headers().contains_key("retry-after"));
        let error = error_of(response, status).await;
        assert_eq!(error["code"], "rate_limited");
    }
    status
}

#[tokio::test]
async fn wrong_passwords_for_one_account_are_limited_until_its_budget_refills() {
    let app = spawn_app_with(&tight_login_failures()).await;
    app.player("gus").await;
    app.player("hal").await;
    // Correct passwords spend nothing.
    for _ in 0..8 {
        assert_eq!(login_status(&app, "gus", PASSWORD).await, StatusCode::OK);
    }
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(login_status(&app, "gus", "not-the-password").await);
    }
    let answered = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        answered <= 8 && answered + refused == 30,
        "{answered} wrong passwords answered, {refused} refused: {statuses:?}"
    );
    // While the budget is spent even the right password is refused; other accounts are not.
    assert_eq!(
        login_status(&app, "gus", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(login_status(&app, "hal", PASSWORD).await, StatusCode::OK);
    // An account that does not exist is limited alike: the answer does not tell.
    let mut unknown = Vec::new();
    for _ in 0..8 {
        unknown.push(login_status(&app, "nobody_here", PASSWORD).await);
    }
    assert!(
        unknown.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{unknown:?}"
    );
    // The budget refills.
    eventually_within(
        std::time::Duration::from_secs(10),
        "gus to log in again",
        || async { login_status(&app, "gus", PASSWORD).await == StatusCode::OK },
    )
    .await;
}

#[tokio::test]
async fn absurd_numbers_in_query_parameters_are_refused_with_the_error_shape() {
    let app = spawn_app().await;
    let root = app.login("root", PASSWORD).await;
    let (player, token) = app.player("max").await;
    app.put_in_world(&player, "max", "south-west").await;
    let huge = "18446744073709551615";
    let cases: Vec<(String, &str)> = [
        "after=18446744073709551615",
        "after=18446744073709551616",
        "after=9007199254740992",
        "after=-1",
        "after=1.5",
        "limit=18446744073709551615",
        "limit=-1",
        "limit=0",
    ]
    .iter()
    .map(|q| {
        (
            format!("/admin/dlq?{q}"),
            q.split('=').next().unwrap_or_default(),
        )
    })
    .collect();
    for (path, field) in cases {
        let response = app
            .http
            .get(app.url(&path))
            .bearer_auth(&root)
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .expect("an answer");
        let error = error_of(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(details(&error)[0].0, field, "{path}");
    }
    for query in [
        format!("wait=true&wait_ms={huge}"),
        "wait=true&wait_ms=0".to_owned(),
        "wait=true&wait_ms=-1".to_owned(),
        "wait=true&wait_ms=1e9".to_owned(),
    ] {
        let error = app
            .refused_command_query(&token, &format!("?{query}"))
            .await;
        assert_eq!(details(&error)[0].0, "wait_ms", "{query}");
    }
    for query in [
        "x=1e309&y=1",
        "x=NaN&y=1",
        "x=-1e308&y=1",
        "x=1&y=inf",
        "x=1&y=18446744073709551616",
        "x=1&y=1&radius=1e308",
        "x=1&y=1&radius=-0",
        "x=1&y=1&radius=0",
    ] {
        let error = app.refused_entity_query(&token, &format!("?{query}")).await;
        let field = details(&error)[0].0.clone();
        assert!(["x", "y", "radius"].contains(&field.as_str()), "{query}");
    }
}
