//! Each server starts, answers a real client, survives a restart with its port, and is gone
//! when dropped.

use futures::StreamExt;
use mongodb::bson::doc;
use test_servers::Server;

#[tokio::test]
async fn nats_starts_with_jetstream_and_stops_when_dropped() {
    let nats = Server::start_nats().expect("nats-server starts");
    let port = nats.port();
    let client = async_nats_free_check(port);
    assert!(client, "nats answers INFO");
    drop(nats);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is free after drop"
    );
}

/// Speaks enough of the NATS protocol to see the server enabled JetStream.
fn async_nats_free_check(port: u16) -> bool {
    use std::io::{BufRead, BufReader};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("INFO line");
    line.starts_with("INFO ") && line.contains("\"jetstream\":true")
}

/// A client connection to the Redis server `redis`.
async fn connect(redis: &Server) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

#[tokio::test]
async fn redis_answers_a_real_client_and_comes_back_after_restart() {
    let mut redis = Server::start_redis().expect("redis-server starts");
    let mut conn = connect(&redis).await;
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(v, "v");

    let port = redis.port();
    redis.stop();
    assert!(!redis.is_running());
    redis.restart().expect("restart");
    assert_eq!(redis.port(), port);
    let mut conn = connect(&redis).await;
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn mongo_compatible_server_keeps_journaled_writes_across_a_crash() {
    let mut mongo = Server::start_mongo().expect("secantusd starts");
    let options = mongodb::options::ClientOptions::parse(mongo.url())
        .await
        .expect("uri");
    let client = mongodb::Client::with_options(options.clone()).expect("client");
    // Only a journaled write (j: true) is on disk when acknowledged: with the default write
    // concern SecantusDB, like mongod, can lose the last writes to a crash.
    let journaled = mongodb::options::WriteConcern::builder()
        .journal(true)
        .build();
    let players = client
        .database("game")
        .collection_with_options::<mongodb::bson::Document>(
            "players",
            mongodb::options::CollectionOptions::builder()
                .write_concern(journaled)
                .build(),
        );
    players
        .insert_one(doc! {"_id": "p1", "hp": 100})
        .await
        .expect("insert");

    mongo.stop();
    mongo.restart().expect("restart");
    let client = mongodb::Client::with_options(options).expect("client");
    let players = client
        .database("game")
        .collection::<mongodb::bson::Document>("players");
    let found: Vec<_> = players
        .find(doc! {})
        .await
        .expect("find")
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("documents");
    assert_eq!(found, vec![doc! {"_id": "p1", "hp": 100}]);
}

#[test]
fn servers_in_parallel_get_their_own_ports_and_directories() {
    let a = Server::start_nats().expect("first");
    let b = Server::start_nats().expect("second");
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
}

#[tokio::test]
async fn a_paused_server_answers_nothing_until_resumed_and_a_throttled_one_answers_late() {
    let mut redis = Server::start_redis().expect("redis-server starts");
    let mut conn = connect(&redis).await;
    let ping = |mut conn: redis::aio::MultiplexedConnection| async move {
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    redis.pause().expect("SIGSTOP");
    let mut frozen = tokio::spawn(ping(conn.clone()));
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut frozen).await;
    assert!(early.is_err(), "a paused server answered");
    redis.resume().expect("SIGCONT");
    assert_eq!(frozen.await.expect("task").expect("PING"), "PONG");

    let throttle = redis.throttle(0.2).expect("throttle");
    for _ in 0..5 {
        assert_eq!(ping(conn.clone()).await.expect("PING"), "PONG");
    }
    drop(throttle);
    assert_eq!(ping(conn.clone()).await.expect("PING"), "PONG");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("SET after the throttle");
}
