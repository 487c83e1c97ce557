//! The shipped users and their permissions (`nats/config/users.conf`) on a real `nats-server`
//! started from `local.conf`: nobody connects without a password, and each role publishes what
//! its work needs and nothing else. A refused publish is never stored.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::context::ContextBuilder;
use nats_topology::topology::{AVATAR_REGIONS, COMMANDS, DLQ, FACTS};
use nats_topology::{Credentials, Settings, Topology};
use test_servers::{NatsUsers, Server};

struct Secured {
    nats: Server,
    users: NatsUsers,
    admin: Context,
}

impl Secured {
    async fn start() -> Self {
        let (nats, users) = Server::start_secured().expect("a secured nats-server");
        let admin = Self::context_for(&nats, &users, "admin").await;
        nats_topology::ensure(&admin, &Topology::new(&Settings::local()))
            .await
            .expect("the admin creates the topology");
        Self { nats, users, admin }
    }

    async fn context_for(nats: &Server, users: &NatsUsers, user: &str) -> Context {
        let credentials = Credentials::user(user, users.password(user).unwrap_or_default());
        let (client, _) = nats_topology::connect(&nats.url(), user, &credentials)
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"));
        // A refused publish is never acknowledged: do not wait long for it.
        ContextBuilder::new()
            .timeout(Duration::from_secs(1))
            .build(client)
    }

    async fn as_user(&self, user: &str) -> Context {
        Self::context_for(&self.nats, &self.users, user).await
    }

    async fn stored(&self, stream: &str) -> u64 {
        let mut stream = self.admin.get_stream(stream).await.expect("stream");
        stream.info().await.expect("info").state.messages
    }

    /// Whether `js` may publish on `subject` (into `stream`): acknowledged and stored, or
    /// refused and not stored.
    async fn may_publish(&self, js: &Context, stream: &str, subject: &str) -> bool {
        let before = self.stored(stream).await;
        let acked = match js.publish(subject.to_owned(), "{}".into()).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        let after = self.stored(stream).await;
        assert_eq!(
            acked,
            after == before + 1,
            "{subject}: acknowledged exactly when stored"
        );
        acked
    }
}

#[tokio::test]
async fn nobody_connects_without_the_password_of_a_user() {
    let s = Secured::start().await;
    let url = s.nats.url();
    let anonymous = nats_topology::connect(&url, "anonymous", &Credentials::default()).await;
    assert!(anonymous.is_err(), "a connection with no user");
    let wrong = Credentials::user("gateway", "not-the-password");
    let wrong = nats_topology::connect(&url, "intruder", &wrong).await;
    assert!(wrong.is_err(), "a wrong password");
}

#[tokio::test]
async fn a_gateway_cannot_publish_a_regions_fact_nor_a_system_command_a_simulator_can() {
    let s = Secured::start().await;
    let gateway = s.as_user("gateway").await;
    assert!(
        s.may_publish(&gateway, COMMANDS, "cmd.normal.west.move")
            .await
    );
    assert!(
        s.may_publish(&gateway, FACTS, "fact._global.account_registered")
            .await,
        "accounts and sessions are the gateway's facts"
    );
    assert!(
        !s.may_publish(&gateway, FACTS, "fact.west.xp_gained").await,
        "what happens in the world is the simulators' to say"
    );
    assert!(
        !s.may_publish(&gateway, DLQ, "dlq.facts.fact.west.moved")
            .await
    );
    // A redrive reads the original of a dead command back from COMMANDS.
    let stored = gateway
        .get_stream(COMMANDS)
        .await
        .expect("COMMANDS")
        .get_raw_message(1)
        .await
        .expect("the gateway reads a stored command");
    assert_eq!(stored.subject.as_str(), "cmd.normal.west.move");

    let simulator = s.as_user("simulator").await;
    assert!(
        s.may_publish(&simulator, FACTS, "fact.west.xp_gained")
            .await
    );
    assert!(
        s.may_publish(&simulator, COMMANDS, "cmd.normal.east.accept_hand_off")
            .await
    );
    assert!(
        !s.may_publish(&simulator, COMMANDS, "cmd.normal.west.move")
            .await,
        "a simulator sends no player's commands"
    );
    assert!(
        !s.may_publish(&simulator, FACTS, "fact._global.role_changed")
            .await,
        "nor account facts"
    );
    assert!(
        s.may_publish(&simulator, DLQ, "dlq.commands.cmd.normal.west.move")
            .await
    );
    // A spawn claims the player's `avatar_regions` entry: read, then written by its revision.
    let avatars = simulator
        .get_key_value(AVATAR_REGIONS)
        .await
        .expect("avatar_regions");
    let created = avatars
        .create("player-1", r#"{"region":null}"#.into())
        .await
        .expect("the simulator creates an entry");
    let entry = avatars
        .entry("player-1")
        .await
        .expect("the simulator reads an entry")
        .expect("there");
    assert_eq!(entry.revision, created);
    avatars
        .update("player-1", r#"{"region":"west"}"#.into(), entry.revision)
        .await
        .expect("the simulator writes it by revision");
    // The server says so in its log, which the end-to-end tests read to prove that no service
    // was ever refused.
    assert!(
        s.nats
            .log()
            .contains(r#"Publish Violation - Subject "fact.west.xp_gained""#),
        "{}",
        s.nats.log()
    );
}

#[tokio::test]
async fn the_projector_and_the_analyst_read_the_log_and_write_nothing_to_it() {
    let s = Secured::start().await;
    for user in ["projector", "analyst", "dlq"] {
        let js = s.as_user(user).await;
        assert!(
            !s.may_publish(&js, FACTS, "fact.west.moved").await,
            "{user}"
        );
        assert!(
            !s.may_publish(&js, COMMANDS, "cmd.high.west.kick").await,
            "{user}"
        );
    }
    // The analyst reads the log from the first fact.
    let gateway = s.as_user("gateway").await;
    assert!(
        s.may_publish(&gateway, FACTS, "fact._global.logged_in")
            .await
    );
    let analyst = s.as_user("analyst").await;
    let stream = analyst
        .get_stream(FACTS)
        .await
        .expect("the analyst sees FACTS");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "fact.>".into(),
            ..Default::default()
        })
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut messages),
    )
    .await
    .expect("a fact within 10 s")
    .expect("a message")
    .expect("no error");
    assert_eq!(first.subject.as_str(), "fact._global.logged_in");
}
