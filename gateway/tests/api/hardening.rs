//! What a caller cannot get away with: tokens bound to their session, roles decided on the
//! server, limits that hold against floods of bad tokens and guessed passwords, and query
//! parameters that cannot break a route.

use gateway::auth::{Role, now_secs};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// The bootstrap admin's player id.
async fn root_id(app: &TestApp) -> schemas::PlayerId {
    app.db
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
    refused(app.post_json("/v1/commands", &command, Some(&as_ben)).await).await;
    refused(admin_dlq(&app, &as_root).await).await;
    let error = error_of(admin_dlq(&app, &ann_as_admin).await, StatusCode::FORBIDDEN).await;
    assert_eq!(error["code"], "forbidden", "the role is the session's");

    // The real token works, and so the session is confirmed in the gateway's memory; while
    // Redis is away, that memory is tied to the player as well.
    assert_eq!(
        app.get("/v1/players/me", Some(&ann_token)).await.status(),
        StatusCode::OK
    );
    app.redis.stop();
    refused(app.get("/v1/players/me", Some(&as_ben)).await).await;
    let error = error_of(admin_dlq(&app, &ann_as_admin).await, StatusCode::FORBIDDEN).await;
    assert_eq!(error["code"], "forbidden", "the role is the session's");
    assert_eq!(
        app.get("/v1/players/me", Some(&ann_token)).await.status(),
        StatusCode::OK
    );
}
