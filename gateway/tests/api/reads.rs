//! Regions and entities near a point.

use reqwest::StatusCode;
use schemas::Position;
use schemas::fold::WorldEntity;
use schemas::read_model::{EntityDoc, collection, to_document};
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn regions_show_owner_and_population() {
    let app = spawn_app().await;
    let (_, token) = app.player("quin").await;
    app.put_lease("north-west", "sim-7").await;
    let mut redis = app.state.redis();
    let () = redis::cmd("HSET")
        .arg(schemas::read_model::key::POPULATION)
        .arg("north-west")
        .arg(12)
        .query_async(&mut redis)
        .await
        .expect("hset");

    let all: Value = app.get_json("/v1/regions", Some(&token)).await;
    assert_eq!(all.as_array().map(Vec::len), Some(4));
    let one: Value = app.get_json("/v1/regions/north-west", Some(&token)).await;
    assert_eq!(one["owner"], "sim-7");
    assert_eq!(one["population"], 12);
    assert_eq!(one["capacity"], 500);
    let other: Value = app.get_json("/v1/regions/south-east", Some(&token)).await;
    assert_eq!(other["owner"], Value::Null);

    let error = error_of(
        app.get("/v1/regions/atlantis", Some(&token)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(error["code"], "not_found");
    let error = error_of(
        app.get("/v1/regions/Bad.Id", Some(&token)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        details(&error),
        vec![("id".to_owned(), "invalid".to_owned())]
    );
    error_of(app.get("/v1/regions", None).await, StatusCode::UNAUTHORIZED).await;
}

async fn put_entity(app: &TestApp, region: &str, kind: &str, x: f64, y: f64) -> String {
    let id = schemas::EntityId::new();
    let entity = EntityDoc {
        id,
        state: WorldEntity {
            region: Some(region.parse().expect("a region id")),
            kind: kind.to_owned(),
            position: Position { x, y },
            name: Some(kind.to_owned()),
            hp: None,
            max_hp: None,
            alive: None,
        },
        seq: 1,
    };
    app.db()
        .collection::<mongodb::bson::Document>(collection::WORLD)
        .insert_one(to_document(&entity).expect("a document"))
        .await
        .expect("insert");
    id.to_string()
}

/// What the projector does after writing a region's entities: it moves the region's version on,
/// which ends the cached answers about it.
async fn read_model_moves_on(app: &TestApp, region: &str) {
    let mut redis = app.state.redis();
    let _: u64 = redis::cmd("INCR")
        .arg(schemas::read_model::key::world_version(region))
        .query_async(&mut redis)
        .await
        .expect("incr");
}

#[tokio::test]
async fn entities_near_a_point_are_listed_nearest_first() {
    let app = spawn_app().await;
    let (_, token) = app.player("rae").await;
    let near = put_entity(&app, "south-west", "npc", 105.0, 100.0).await;
    let nearest = put_entity(&app, "south-west", "item", 101.0, 100.0).await;
    put_entity(&app, "south-west", "npc", 140.0, 140.0).await; // in the box, outside the circle
    put_entity(&app, "south-west", "npc", 400.0, 400.0).await;
    put_entity(&app, "south-west", "npc", 100.0, 900.0).await; // in the strip read, far away
    put_entity(&app, "south-east", "npc", 1001.0, 100.0).await;

    let path = "/v1/regions/south-west/entities?x=100&y=100&radius=50";
    let body: Value = app.get_json(path, Some(&token)).await;
    let ids: Vec<&str> = body["entities"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["entity_id"].as_str())
        .collect();
    assert_eq!(ids, vec![nearest.as_str(), near.as_str()]);

    // A cached answer lasts until the region's read model moves on.
    let newcomer = put_entity(&app, "south-west", "npc", 100.0, 100.0).await;
    let cached: Value = app.get_json(path, Some(&token)).await;
    assert_eq!(cached["entities"].as_array().map(Vec::len), Some(2));
    read_model_moves_on(&app, "south-west").await;
    let fresh: Value = app.get_json(path, Some(&token)).await;
    assert_eq!(fresh["entities"][0]["entity_id"], newcomer.as_str());
}

#[tokio::test]
async fn entities_just_across_a_border_are_seen() {
    let app = spawn_app().await;
    let (_, token) = app.player("ivo").await;
    let here = put_entity(&app, "south-west", "npc", 995.0, 100.0).await;
    let across = put_entity(&app, "south-east", "npc", 1003.0, 100.0).await;
    put_entity(&app, "south-east", "npc", 1100.0, 100.0).await; // across, but too far
    let path = "/v1/regions/south-west/entities?x=995&y=100&radius=20";
    let body: Value = app.get_json(path, Some(&token)).await;
    let listed: Vec<(&str, &str)> = body["entities"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| Some((e["entity_id"].as_str()?, e["region"].as_str()?)))
        .collect();
    assert_eq!(
        listed,
        vec![
            (here.as_str(), "south-west"),
            (across.as_str(), "south-east")
        ]
    );
    // A change across the border is not hidden by the cache either.
    let newcomer = put_entity(&app, "south-east", "npc", 1000.0, 100.0).await;
    read_model_moves_on(&app, "south-east").await;
    let fresh: Value = app.get_json(path, Some(&token)).await;
    assert_eq!(fresh["entities"].as_array().map(Vec::len), Some(3));
    assert_eq!(fresh["entities"][1]["entity_id"], newcomer.as_str());
}

#[tokio::test]
async fn entities_near_a_point_are_unavailable_while_the_read_model_is_down() {
    let mut app = spawn_app().await;
    let (_, token) = app.player("vic").await;
    // A circle over a border: one read a region, both refused.
    let path = "/v1/regions/south-west/entities?x=995&y=100&radius=20";
    app.mongo_mut().stop();
    let error = error_of(
        app.get(path, Some(&token)).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(error["code"], "unavailable", "{error}");
    app.mongo_mut().restart().expect("MongoDB back");
    // Back, the reads answer again.
    let across = put_entity(&app, "south-east", "npc", 1003.0, 100.0).await;
    let body: Value = app.get_json(path, Some(&token)).await;
    assert_eq!(body["entities"][0]["entity_id"], across.as_str(), "{body}");
}

#[tokio::test]
async fn a_point_in_another_region_is_answered_through_any_region() {
    // The document can bound x and y by the world, not by the region in the path: a point
    // anywhere in the world is answered, from every region the circle reaches.
    let app = spawn_app().await;
    let (_, token) = app.player("una").await;
    let there = put_entity(&app, "north-east", "npc", 1500.0, 1500.0).await;
    let response = app
        .get(
            "/v1/regions/south-west/entities?x=1500&y=1501&radius=10",
            Some(&token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["entities"][0]["entity_id"], there.as_str());
    assert_eq!(body["entities"][0]["region"], "north-east");
}

#[tokio::test]
async fn a_read_refuses_a_parameter_it_does_not_take() {
    let app = spawn_app().await;
    let (_, token) = app.player("tam").await;
    for path in [
        "/v1/players/me?min_seq=1&sort=name",
        "/v1/regions?min_seq=1&sort=name",
        "/v1/regions/south-west?sort=name",
    ] {
        let response = app.get(path, Some(&token)).await;
        let error = error_of(response, StatusCode::BAD_REQUEST).await;
        assert_details(&error, &[("sort", "unknown_parameter")], path);
    }
}

#[tokio::test]
async fn bad_entity_queries_name_each_bad_parameter() {
    let app = spawn_app().await;
    let (_, token) = app.player("sol").await;
    for (query, expected) in [
        ("", vec![("x", "required"), ("y", "required")]),
        ("?x=abc&y=10", vec![("x", "invalid")]),
        ("?x=10&y=10&radius=0", vec![("radius", "range")]),
        ("?x=10&y=10&radius=1000", vec![("radius", "range")]),
        ("?x=10&y=NaN", vec![("y", "invalid")]),
        ("?x=2500&y=10", vec![("x", "out_of_world")]),
        (
            "?x=-1&y=2000",
            vec![("x", "out_of_world"), ("y", "out_of_world")],
        ),
        ("?x=10&y=10&r=5", vec![("r", "unknown_parameter")]),
    ] {
        let error = app.refused_entity_query(&token, query).await;
        assert_details(&error, &expected, query);
    }
}
