//! The simulator on a real `nats-server`, as separate processes that the tests kill: priority
//! order, first-wins conflicts, redeliveries, poison commands, a process killed mid-tick and
//! replaced, a hand-off whose source dies half-way, lease takeover, rebalancing by weight and by
//! load, and a process fencing itself off when its leases are lost or cannot be renewed.

use std::collections::BTreeMap;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use nats_topology::avatars::AvatarRegion;
use nats_topology::publish::{Outgoing, publish};
use nats_topology::topology::{AVATAR_REGIONS, COMMANDS, DLQ, FACTS, REGION_LEASES};
use region_sim::application::DRAIN_DEADLINE;
use region_sim::runner::{PRIORITIES, consumer_name};
use region_sim::{Application, Settings};
use schemas::command::{AcceptHandOff, Attack, Chat, Move, Pickup, Spawn};
use schemas::{
    Actor, Command, EntityId, EntityKind, EntityState, Envelope, EventId, Fact, FactSubject,
    PlayerId, Position, RegionId, Scope,
};
use serde_json::Value;
use test_servers::poll::eventually;
use test_servers::{Service, Stack, regions};

/// No NPCs (their wandering is live state, which would make states differ by design); one item
/// that everyone can reach. Every number the tests rely on is stated; a key the rules gain comes
/// from the shipped file.
const BALANCE: &str = r#"
player_speed = 40.0
player_base_hp = 100
player_hp_per_level = 10
respawn_secs = 1.0
xp_per_level = 100
max_level = 100
pickup_range = 500.0
inventory_slots = 10
npc = []

[attack]
range = 3.0
cooldown_ms = 500
damage_min = 5
damage_max = 9

[[item]]
kind = "potion"
per_region = 1
respawn_secs = 3600.0
"#;

const SIM: &str = r#"
addr = "127.0.0.1:0"
tick_hz = 20
tick_budget = 256
low_priority_share = 0.1
snapshot_secs = 1
hysteresis = 2.0
applied_memory = 10000
max_regions = 0

[leases]
renew_ms = 300

[commands]
ack_wait_secs = 2
max_deliver = 3

[balancing]
every_secs = 1
overloaded_tick_ms = 1000.0
"#;

/// The simulators' NATS (with leases that lapse in 3 s) and their config files.
struct Bus {
    servers: Stack,
}

test_servers::stands_on!(Bus, servers);

impl Bus {
    async fn start() -> Self {
        let servers = Stack::builder()
            .lease_ttl(Duration::from_secs(3))
            .start()
            .await;
        for (name, text) in [
            ("regions.toml", regions::west_and_east(50)),
            ("balance.toml", test_servers::balance::shipped_with(BALANCE)),
            ("sim.toml", SIM.to_owned()),
        ] {
            std::fs::write(servers.path(name), text).expect("write config");
        }
        Self { servers }
    }

    /// Starts a simulator process named `node`, with extra environment.
    async fn sim(&self, node: &str, env: &[(&str, &str)]) -> Sim {
        let port = test_servers::free_port().expect("port");
        let log = self.path(&format!("{node}-{port}.log"));
        let mut process = Process::new(env!("CARGO_BIN_EXE_region-sim"));
        process
            .env("SIM_NODE_ID", node)
            .env("SIM_ADDR", format!("127.0.0.1:{port}"))
            .env("NATS_URL", self.nats.url())
            .env("SIM_CONFIG", self.path("sim.toml"))
            .env("REGIONS_CONFIG", self.path("regions.toml"))
            .env("BALANCE_CONFIG", self.path("balance.toml"))
            .env("RUST_LOG", "info");
        for (k, v) in env {
            process.env(k, v);
        }
        let sim = Sim {
            service: Service::start(process, log).expect("region-sim binary"),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        eventually("the simulator answers", || async {
            sim.http
                .get(format!("{}/healthz", sim.base))
                .send()
                .await
                .is_ok()
        })
        .await;
        sim
    }

    async fn send(&self, region: &str, player: PlayerId, payload: Command) -> Envelope<Command> {
        let env = Envelope::new(
            Actor::Player { id: player },
            Some(region_id(region)),
            payload,
        );
        publish(&self.js, Outgoing::command(&env).expect("encode"))
            .await
            .expect("stored");
        env
    }

    /// Every fact of `region`, in stream order.
    async fn facts(&self, region: &str) -> Vec<Envelope<Fact>> {
        stream_of(
            &self.js,
            FACTS,
            &FactSubject::filter(&Scope::Region(region_id(region))),
        )
        .await
        .into_iter()
        .map(|m| Envelope::<Fact>::decode(&m.payload).expect("a fact"))
        .collect()
    }

    /// How many facts of `kind` `region` has stored.
    async fn count(&self, region: &str, kind: &str) -> usize {
        self.facts(region)
            .await
            .iter()
            .filter(|f| f.payload.kind().as_str() == kind)
            .count()
    }

    /// The facts answering `command`.
    async fn outcome(&self, region: &str, command: EventId) -> Vec<Fact> {
        self.facts(region)
            .await
            .into_iter()
            .filter(|f| f.causation_id == Some(command))
            .map(|f| f.payload)
            .collect()
    }

    async fn wait_outcome(&self, region: &str, command: EventId) -> Vec<Fact> {
        eventually("the command's outcome is stored", || async {
            let found = self.outcome(region, command).await;
            (!found.is_empty()).then_some(found)
        })
        .await
    }

    /// Waits until every command given to `region` is acknowledged: none is waiting, none is
    /// out unacknowledged. From then on no redelivery can come, so what was applied twice would
    /// show in the facts already.
    async fn settled(&self, region: &str) {
        let region = region_id(region);
        eventually("every command of the region is acknowledged", || async {
            let Ok(stream) = self.js.get_stream(COMMANDS).await else {
                return false;
            };
            for priority in PRIORITIES {
                let Ok(info) = stream.consumer_info(consumer_name(&region, priority)).await else {
                    return false;
                };
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// The dead letters in `DLQ`, in order, once there are `n` of them.
    async fn dead_letters(&self, n: usize) -> Vec<nats_topology::DeadLetter> {
        let letters = eventually("the commands are in the DLQ", || async {
            let letters = stream_of(&self.js, DLQ, "dlq.>").await;
            (letters.len() >= n).then_some(letters)
        })
        .await;
        letters
            .into_iter()
            .map(|m| {
                nats_topology::DeadLetter::parse(
                    &m.headers.clone().unwrap_or_default(),
                    m.payload.clone(),
                )
                .expect("a dead letter")
            })
            .collect()
    }

    async fn owner(&self, region: &str) -> Option<String> {
        let kv = self.js.get_key_value(REGION_LEASES).await.expect("bucket");
        let bytes = kv.get(region).await.expect("get")?;
        let lease: Value = serde_json::from_slice(&bytes).expect("lease json");
        lease["node"].as_str().map(str::to_owned)
    }
}

async fn stream_of(js: &Context, stream: &str, filter: &str) -> Vec<jetstream::Message> {
    let stream = js.get_stream(stream).await.expect("stream");
    let mut consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let pending = consumer.info().await.expect("info").num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return out;
    }
    let mut messages = consumer.messages().await.expect("messages");
    while let Some(m) = messages.next().await {
        let m = m.expect("message");
        let left = m.info().expect("info").pending;
        out.push(m);
        if left == 0 {
            break;
        }
    }
    out
}

/// A simulator process: a [`Service`] (its log, killed when dropped) that answers HTTP at
/// `base`.
struct Sim {
    service: Service,
    base: String,
    http: reqwest::Client,
}

impl std::ops::Deref for Sim {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

impl std::ops::DerefMut for Sim {
    fn deref_mut(&mut self) -> &mut Service {
        &mut self.service
    }
}

impl Sim {
    async fn regions(&self) -> Vec<String> {
        let Ok(response) = self.http.get(format!("{}/regions", self.base)).send().await else {
            return Vec::new();
        };
        let body: Value = response.json().await.unwrap_or_default();
        body["regions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The entities of `region` as this process holds them, by id.
    async fn entities(&self, region: &str) -> Option<BTreeMap<String, Value>> {
        let response = self
            .http
            .get(format!("{}/regions/{region}", self.base))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        Some(
            body["entities"]
                .as_array()?
                .iter()
                .map(|e| (e["id"].as_str().unwrap_or_default().to_owned(), e.clone()))
                .collect(),
        )
    }
}

fn region_id(id: &str) -> RegionId {
    id.parse().expect("region id")
}

/// Waits (30 s at most) until the process has exited, and checks that it died at `failpoint`.
async fn died_at(sim: &mut Sim, failpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.exited().is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until the process dies at {failpoint}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = sim.log();
    assert!(
        log.contains(&format!("failpoint {failpoint}")),
        "log: {log}"
    );
}

/// A process running west that dies once it has stored the first half of a hand-off to the
/// east, and a process running east.
async fn west_dying_half_way(bus: &Bus) -> (Sim, Sim) {
    let west = bus
        .sim(
            "sim-west",
            &[
                ("SIM_REGIONS", "west"),
                ("SIM_FAILPOINT", "abort-after-hand-off-fact"),
            ],
        )
        .await;
    let east = bus.sim("sim-east", &[("SIM_REGIONS", "east")]).await;
    (west, east)
}

/// Waits until every command of `sent` is answered and acknowledged (so no redelivery is still
/// to come), and checks that each was applied once.
async fn applied_once(bus: &Bus, region: &str, sent: &[Envelope<Command>]) {
    for cmd in sent {
        bus.wait_outcome(region, cmd.id).await;
    }
    bus.settled(region).await;
    let facts = bus.facts(region).await;
    for cmd in sent {
        let n = facts
            .iter()
            .filter(|f| f.causation_id == Some(cmd.id))
            .count();
        assert_eq!(n, 1, "command {:?} has {n} facts", cmd.payload.kind());
    }
}

/// Waits until every one of `players` stands still in `heir`'s west, and checks that its state
/// is what the log folds to.
async fn heir_agrees_with_the_log(bus: &Bus, heir: &Sim, players: &[PlayerId]) {
    let live = eventually("every avatar has arrived", || async {
        let live = heir.entities("west").await.unwrap_or_default();
        (live.len() == players.len() && live.values().all(|e| e.get("destination").is_none()))
            .then_some(live)
    })
    .await;
    assert_eq!(live, folded(bus, "west").await);
}

/// The state the log gives for `region`: every avatar's recorded state, folded from its facts.
async fn folded(bus: &Bus, region: &str) -> BTreeMap<String, Value> {
    let mut states: BTreeMap<EntityId, schemas::EntityState> = BTreeMap::new();
    for env in bus.facts(region).await {
        if let Some(state) = schemas::EntityState::created_by(&env.payload) {
            states.insert(state.id, state);
            continue;
        }
        let mut gone = Vec::new();
        for (id, state) in states.iter_mut() {
            if state.apply(&env.payload) == schemas::fold::Applied::Removed {
                gone.push(*id);
            }
        }
        for id in gone {
            states.remove(&id);
        }
    }
    states
        .into_iter()
        .map(|(id, s)| (id.to_string(), serde_json::to_value(s).expect("json")))
        .collect()
}

fn spawn() -> Command {
    Command::Spawn(Spawn { region: None })
}

fn chat(text: &str) -> Command {
    Command::Chat(Chat {
        text: text.into(),
        channel: None,
    })
}

/// Where `avatar_regions` says `player`'s avatar is: `None` for no entry.
async fn avatar_region(js: &Context, player: PlayerId) -> Option<AvatarRegion> {
    let bucket = js.get_key_value(AVATAR_REGIONS).await.expect("bucket");
    let bytes = bucket.get(player.to_string()).await.expect("get")?;
    Some(AvatarRegion::decode(&bytes).expect("an entry"))
}

#[tokio::test]
async fn two_spawns_sent_at_once_to_two_regions_place_one_avatar() {
    let bus = Bus::start().await;
    // Both stored before a simulator runs, so that the two regions take them in their first
    // ticks, side by side.
    let a = PlayerId::new();
    let spawns = [
        ("west", bus.send("west", a, spawn()).await),
        ("east", bus.send("east", a, spawn()).await),
    ];
    let _sim = bus.sim("sim-a", &[]).await;
    let mut placed = Vec::new();
    for (region, command) in &spawns {
        match &bus.wait_outcome(region, command.id).await[..] {
            [Fact::Spawned(_)] => placed.push(*region),
            [Fact::Rejected(r)] => {
                assert_eq!(r.reason, schemas::RejectReason::AlreadySpawned, "{r:?}")
            }
            other => panic!("{region}: {other:?}"),
        }
    }
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(
        avatar_region(&bus.js, a).await,
        Some(AvatarRegion::at(Some(region_id(placed[0]))))
    );
}

#[tokio::test]
async fn a_spawn_refused_for_a_full_region_leaves_the_player_free_to_spawn_elsewhere() {
    let bus = Bus::start().await;
    std::fs::write(bus.path("regions.toml"), regions::west_and_east(1)).expect("regions");
    let _sim = bus.sim("sim-a", &[]).await;
    let first = bus.send("west", PlayerId::new(), spawn()).await;
    assert!(matches!(
        bus.wait_outcome("west", first.id).await[..],
        [Fact::Spawned(_)]
    ));
    let b = PlayerId::new();
    let full = bus.send("west", b, spawn()).await;
    assert!(matches!(
        &bus.wait_outcome("west", full.id).await[..],
        [Fact::Rejected(r)] if r.reason == schemas::RejectReason::RegionFull
    ));
    assert_eq!(
        avatar_region(&bus.js, b).await,
        Some(AvatarRegion::at(None)),
        "west's claim given back"
    );
    let elsewhere = bus.send("east", b, spawn()).await;
    assert!(matches!(
        bus.wait_outcome("east", elsewhere.id).await[..],
        [Fact::Spawned(_)]
    ));
}

#[tokio::test]
async fn a_stale_claim_of_a_full_region_does_not_keep_the_player_out_of_the_world() {
    let bus = Bus::start().await;
    std::fs::write(bus.path("regions.toml"), regions::west_and_east(1)).expect("regions");
    let _sim = bus.sim("sim-a", &[]).await;
    let first = bus.send("west", PlayerId::new(), spawn()).await;
    bus.wait_outcome("west", first.id).await;
    // West, full, named by a claim whose spawn was never stored (its simulator died, say).
    let b = PlayerId::new();
    let bucket = bus.js.get_key_value(AVATAR_REGIONS).await.expect("bucket");
    let claim = AvatarRegion::at(Some(region_id("west")));
    bucket
        .put(b.to_string(), claim.encode().into())
        .await
        .expect("put");
    // Refused while a command behind the claim could still come; once none can (ack_wait 2 s
    // times 3 deliveries), the refusal gives the entry back.
    eventually("west gives the stale claim back", || async {
        let full = bus.send("west", b, spawn()).await;
        assert!(matches!(
            &bus.wait_outcome("west", full.id).await[..],
            [Fact::Rejected(r)] if r.reason == schemas::RejectReason::RegionFull
        ));
        avatar_region(&bus.js, b).await == Some(AvatarRegion::at(None))
    })
    .await;
    let elsewhere = bus.send("east", b, spawn()).await;
    assert!(matches!(
        bus.wait_outcome("east", elsewhere.id).await[..],
        [Fact::Spawned(_)]
    ));
}

#[tokio::test]
async fn a_spawn_while_the_avatar_is_on_its_way_in_by_a_hand_off_places_no_second_avatar() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    // West has handed b's avatar off to east, which has not taken it in yet: its accept waits
    // in COMMANDS (east's simulator is being taken over, say).
    let b = PlayerId::new();
    let bucket = bus.js.get_key_value(AVATAR_REGIONS).await.expect("bucket");
    let arriving = AvatarRegion::arriving_in(region_id("east"));
    bucket
        .put(b.to_string(), arriving.encode().into())
        .await
        .expect("put");
    let spawned = bus.send("east", b, spawn()).await;
    match &bus.wait_outcome("east", spawned.id).await[..] {
        [Fact::Rejected(r)]
            if r.reason == schemas::RejectReason::AlreadySpawned
                && r.message.contains("on its way into east") => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(avatar_region(&bus.js, b).await, Some(arriving));
    assert_eq!(bus.count("east", "spawned").await, 0);
    // An arrival that never comes (its accept dead-lettered) does not keep the player out for
    // ever: once no command behind it can come (ack_wait 2 s times 3 deliveries), a spawn
    // places the avatar.
    eventually(
        "a spawn places the avatar once the arrival is stale",
        || async {
            let again = bus.send("east", b, spawn()).await;
            matches!(
                bus.wait_outcome("east", again.id).await[..],
                [Fact::Spawned(_)]
            )
        },
    )
    .await;
    assert_eq!(
        avatar_region(&bus.js, b).await,
        Some(AvatarRegion::at(Some(region_id("east"))))
    );
}

#[tokio::test]
async fn a_spawn_refused_because_the_avatar_is_here_leaves_the_entry_naming_here() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    let a = PlayerId::new();
    let first = bus.send("west", a, spawn()).await;
    bus.wait_outcome("west", first.id).await;
    // An avatar placed before the bucket had entries: none names its region.
    let bucket = bus.js.get_key_value(AVATAR_REGIONS).await.expect("bucket");
    bucket.delete(a.to_string()).await.expect("delete");
    let again = bus.send("west", a, spawn()).await;
    assert!(matches!(
        &bus.wait_outcome("west", again.id).await[..],
        [Fact::Rejected(r)] if r.reason == schemas::RejectReason::AlreadySpawned
    ));
    assert_eq!(
        avatar_region(&bus.js, a).await,
        Some(AvatarRegion::at(Some(region_id("west"))))
    );
}

#[tokio::test]
async fn a_tick_applies_high_priority_first_then_normal_then_low() {
    let bus = Bus::start().await;
    let a = PlayerId::new();
    // Stored before any simulator runs, in the reverse of their priority order: the first
    // tick takes them together.
    let said = bus.send("west", a, chat("first in the stream")).await;
    let spawned = bus.send("west", a, spawn()).await;
    let attack = bus
        .send(
            "west",
            a,
            Command::Attack(Attack {
                target: EntityId::new(),
            }),
        )
        .await;
    let _sim = bus.sim("sim-a", &[]).await;
    bus.wait_outcome("west", said.id).await;
    let order: Vec<EventId> = bus
        .facts("west")
        .await
        .into_iter()
        .filter_map(|f| f.causation_id)
        .filter(|c| [said.id, spawned.id, attack.id].contains(c))
        .collect();
    assert_eq!(order, vec![attack.id, spawned.id, said.id]);
    let attacked = bus.outcome("west", attack.id).await;
    assert!(
        matches!(&attacked[..], [Fact::Rejected(r)] if r.reason == schemas::RejectReason::NotSpawned),
        "{attacked:?}"
    );
}

#[tokio::test]
async fn the_metrics_show_how_long_each_system_of_a_tick_took() {
    let bus = Bus::start().await;
    let sim = bus.sim("sim-a", &[]).await;
    let parts = std::iter::once("commands").chain(region_sim::systems::TICK.iter().map(|s| s.name));
    let parts: Vec<&str> = parts.collect();
    eventually("every part of the tick has been timed", || async {
        let text = sim
            .http
            .get(format!("{}/metrics", sim.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let timed = |part: &str| {
            let series = format!(r#"{{region="west",system="{part}"}}"#);
            text.lines()
                .filter_map(|l| l.strip_prefix("sim_system_duration_seconds_count"))
                .filter_map(|l| l.strip_prefix(series.as_str()))
                .any(|count| count.trim().parse::<u64>().is_ok_and(|n| n > 0))
        };
        parts.iter().all(|part| timed(part)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn of_two_pickups_of_one_item_the_first_in_the_stream_wins() {
    let bus = Bus::start().await;
    let sim = bus.sim("sim-a", &[]).await;
    let (a, b) = (PlayerId::new(), PlayerId::new());
    let sa = bus.send("west", a, spawn()).await;
    let sb = bus.send("west", b, spawn()).await;
    bus.wait_outcome("west", sa.id).await;
    bus.wait_outcome("west", sb.id).await;
    let item = bus
        .facts("west")
        .await
        .into_iter()
        .find_map(|f| match f.payload {
            Fact::ItemSpawned(i) => Some(i.item),
            _ => None,
        })
        .expect("the region seeded its item");
    let first = bus.send("west", b, Command::Pickup(Pickup { item })).await;
    let second = bus.send("west", a, Command::Pickup(Pickup { item })).await;
    let won = bus.wait_outcome("west", first.id).await;
    let lost = bus.wait_outcome("west", second.id).await;
    assert!(
        matches!(&won[..], [Fact::ItemPicked(p)] if p.entity == b.into()),
        "{won:?}"
    );
    assert!(
        matches!(&lost[..], [Fact::Rejected(r)] if r.reason == schemas::RejectReason::ItemGone),
        "{lost:?}"
    );
    let entities = sim.entities("west").await.expect("state");
    assert_eq!(
        entities[&b.to_string()]["inventory"][0]["item"],
        item.to_string()
    );
    assert_eq!(entities[&a.to_string()]["inventory"], Value::Array(vec![]));
}

#[tokio::test]
async fn a_command_delivered_twice_is_applied_once() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    let a = PlayerId::new();
    bus.wait_outcome("west", bus.send("west", a, spawn()).await.id)
        .await;
    // The same command stored twice (as a redelivery would bring it back): the bus's own
    // de-duplication is bypassed by giving the copy another message id.
    let said = Envelope::new(
        Actor::Player { id: a },
        Some(region_id("west")),
        chat("once"),
    );
    let body = said.encode().expect("encode");
    let subject = said.subject().expect("subject").to_string();
    for copy in 0..2 {
        publish(
            &bus.js,
            Outgoing::new(subject.clone(), format!("copy-{copy}"), body.clone()),
        )
        .await
        .expect("stored");
    }
    let marker = bus.send("west", a, chat("after")).await;
    bus.wait_outcome("west", marker.id).await;
    let facts = bus.outcome("west", said.id).await;
    assert_eq!(facts.len(), 1, "{facts:?}");
}

#[tokio::test]
async fn an_outcome_goes_to_a_gateways_inbox_and_nowhere_else() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    let mut inbox = bus
        .js
        .client()
        .subscribe(nats_topology::outcome::inbox("gateway-1"))
        .await
        .expect("subscribed");
    let a = PlayerId::new();
    bus.wait_outcome("west", bus.send("west", a, spawn()).await.id)
        .await;
    // Whoever may send a command writes its inbox header: one naming the region's own log (or
    // a lease, or a player's progress) would have the simulator write there with its rights.
    let mut sent = Vec::new();
    for inbox in [
        "fact.west.forged",
        "outcome.a.b",
        "outcome.>",
        "outcome.gateway-1",
    ] {
        let said = Envelope::new(
            Actor::Player { id: a },
            Some(region_id("west")),
            chat(inbox),
        );
        let message = Outgoing::command(&said)
            .expect("encode")
            .header(nats_topology::outcome::OUTCOME_INBOX, inbox);
        publish(&bus.js, message).await.expect("stored");
        sent.push(said.id);
    }
    let notified = tokio::time::timeout(Duration::from_secs(30), inbox.next())
        .await
        .expect("notified in time")
        .expect("a message");
    let outcome: nats_topology::outcome::Outcome =
        serde_json::from_slice(&notified.payload).expect("an outcome");
    assert_eq!(outcome.command_id, sent[3]);
    for id in &sent {
        bus.wait_outcome("west", *id).await;
    }
    let forged = stream_of(&bus.js, FACTS, "fact.west.forged").await;
    assert!(
        forged.is_empty(),
        "the simulator wrote into the log: {forged:?}"
    );
    // Every message of the region's log is still a fact (`facts` decodes each), and each chat
    // was said once.
    assert_eq!(bus.count("west", "chat_said").await, 4);
}

#[tokio::test]
async fn a_poison_command_goes_to_the_dead_letters_and_the_region_keeps_ticking() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    publish(
        &bus.js,
        Outgoing::new("cmd.normal.west.move", "poison-1", &b"{not a command"[..]),
    )
    .await
    .expect("stored");
    let a = PlayerId::new();
    let spawned = bus.send("west", a, spawn()).await;
    assert!(matches!(
        bus.wait_outcome("west", spawned.id).await[..],
        [Fact::Spawned(_)]
    ));
    let letters = bus.dead_letters(1).await;
    assert_eq!(letters[0].origin_subject, "cmd.normal.west.move");
    let reason = &letters[0].reason;
    assert!(reason.contains("does not decode"), "{reason}");
    assert_eq!(&letters[0].payload[..], b"{not a command");
}

/// Sets how many letters `DLQ` keeps (`-1`: no limit); it discards new ones beyond that.
async fn limit_dead_letters(js: &Context, max_messages: i64) {
    let mut stream = js.get_stream(DLQ).await.expect("DLQ");
    let mut config = stream.info().await.expect("info").config.clone();
    config.max_messages = max_messages;
    js.update_stream(config).await.expect("DLQ updated");
}

/// Leaves `DLQ` full (one letter at most, and it holds one), and runs the dead-letter listener
/// that production runs beside the simulators (`nats-topology`): it stores what runs out of
/// deliveries.
async fn fill_dead_letters(js: &Context) -> tokio::task::JoinHandle<()> {
    limit_dead_letters(js, 1).await;
    let filler = nats_topology::DeadLetter::new(
        COMMANDS,
        "cmd.normal.east.chat",
        1_000_000,
        Some("region-east"),
        "an earlier letter",
        1,
        async_nats::HeaderMap::new(),
        bytes::Bytes::from_static(b"{}"),
    );
    nats_topology::dlq::dead_letter(js, &filler)
        .await
        .expect("the one letter DLQ keeps");
    let listener = nats_topology::run_dead_letter_listener(js.clone(), std::future::pending());
    tokio::spawn(async move {
        let _ = listener.await;
    })
}

#[tokio::test]
async fn a_full_dead_letter_queue_neither_stops_the_region_nor_loses_the_letter() {
    let bus = Bus::start().await;
    let listener = fill_dead_letters(&bus.js).await;
    let _sim = bus.sim("sim-a", &[]).await;
    let poison = publish(
        &bus.js,
        Outgoing::new("cmd.normal.west.move", "poison-1", &b"{not a command"[..]),
    )
    .await
    .expect("stored")
    .sequence;

    // The region goes on ticking behind the letter DLQ refuses.
    let a = PlayerId::new();
    let spawned = bus.send("west", a, spawn()).await;
    assert!(matches!(
        bus.wait_outcome("west", spawned.id).await[..],
        [Fact::Spawned(_)]
    ));
    let said = bus.send("west", a, chat("still here")).await;
    assert!(matches!(
        bus.wait_outcome("west", said.id).await[..],
        [Fact::ChatSaid(_)]
    ));
    let letters = stream_of(&bus.js, DLQ, "dlq.>").await;
    assert_eq!(letters.len(), 1, "DLQ still holds the filler alone");

    // Room again: the poison command, never acknowledged meanwhile, is dead-lettered once.
    limit_dead_letters(&bus.js, -1).await;
    let letters = bus.dead_letters(2).await;
    let ours: Vec<_> = letters
        .iter()
        .filter(|l| l.origin_subject == "cmd.normal.west.move")
        .collect();
    assert_eq!(ours.len(), 1, "{letters:?}");
    assert_eq!(ours[0].origin_seq, poison);
    assert_eq!(&ours[0].payload[..], b"{not a command");
    bus.settled("west").await;
    listener.abort();
}

#[tokio::test]
async fn a_command_whose_handler_failed_is_reported_failed_again_without_running_again() {
    let bus = Bus::start().await;
    let listener = fill_dead_letters(&bus.js).await;
    let sim = bus.sim("sim-a", &[("SIM_FAILPOINT", "fail-chat")]).await;
    let a = PlayerId::new();
    bus.wait_outcome("west", bus.send("west", a, spawn()).await.id)
        .await;
    let failing = bus
        .send("west", a, chat(region_sim::runner::FAILING_CHAT))
        .await;
    let ran = "the chat handler runs and fails";
    // `DLQ` refuses its letter, so it is handed back and delivered again after `ack_wait`.
    eventually(
        "the command is delivered again and reported failed again",
        || async {
            let log = sim.log();
            log.matches("command dead-lettered").count() >= 2
        },
    )
    .await;
    assert_eq!(sim.log().matches(ran).count(), 1, "{}", sim.log());

    // Room again: its letter is stored once, and its handler never ran again.
    limit_dead_letters(&bus.js, -1).await;
    let letters = bus.dead_letters(2).await;
    let ours: Vec<_> = letters
        .iter()
        .filter(|l| Envelope::<Command>::decode(&l.payload).is_ok_and(|c| c.id == failing.id))
        .collect();
    assert_eq!(ours.len(), 1, "{letters:?}");
    let marker = bus.send("west", a, chat("after")).await;
    bus.wait_outcome("west", marker.id).await;
    assert!(bus.outcome("west", failing.id).await.is_empty());
    assert_eq!(sim.log().matches(ran).count(), 1, "{}", sim.log());
    listener.abort();
}

#[tokio::test]
async fn a_command_stored_on_another_commands_subject_is_dead_lettered_and_never_applied() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    let a = PlayerId::new();
    bus.wait_outcome("west", bus.send("west", a, spawn()).await.id)
        .await;
    // A player's chat inside a subject a simulator may publish (a blow from a neighbour), and
    // in the high lane.
    let said = Envelope::new(
        Actor::Player { id: a },
        Some(region_id("west")),
        chat("in a strike's clothes"),
    );
    publish(
        &bus.js,
        Outgoing::new(
            "cmd.high.west.strike",
            "forged-1",
            said.encode().expect("encode"),
        ),
    )
    .await
    .expect("stored");
    let marker = bus.send("west", a, chat("after")).await;
    bus.wait_outcome("west", marker.id).await;
    let letters = bus.dead_letters(1).await;
    let reason = &letters[0].reason;
    assert!(
        reason.contains("stored on cmd.high.west.strike, not on cmd.low.west.chat"),
        "{reason}"
    );
    assert!(
        bus.outcome("west", said.id).await.is_empty(),
        "never applied"
    );
}

#[tokio::test]
async fn a_fact_in_a_regions_log_naming_another_region_is_not_folded_into_it() {
    let bus = Bus::start().await;
    // Before any simulator runs, west's log holds an arrival that names east, and one of its
    // own.
    let arrival = |region: &str| {
        let player = PlayerId::new();
        let state = schemas::EntityState::newcomer(player, Position::new(50.0, 50.0), 100);
        Envelope::new(
            Actor::System {
                service: "region-sim".into(),
            },
            Some(region_id(region)),
            Fact::Spawned(schemas::fact::Spawned { state }),
        )
    };
    let (forged, own) = (arrival("east"), arrival("west"));
    let mut message = Outgoing::fact(&forged).expect("encode");
    message.subject = "fact.west.spawned".into();
    publish(&bus.js, message).await.expect("stored");
    publish(&bus.js, Outgoing::fact(&own).expect("encode"))
        .await
        .expect("stored");

    let sim = bus.sim("sim-a", &[]).await;
    let own_id = own_entity(&own);
    let live = eventually("west is recovered from its log", || async {
        sim.entities("west")
            .await
            .filter(|e| e.contains_key(&own_id))
    })
    .await;
    assert!(!live.contains_key(&own_entity(&forged)), "{live:?}");
}

#[tokio::test]
async fn a_fact_in_a_regions_log_placing_an_entity_outside_the_world_is_folded_at_its_edge() {
    let bus = Bus::start().await;
    let system = || Actor::System {
        service: "region-sim".into(),
    };
    let far = Position::new(-1e300, -1e300);
    let spawned = |player, position| {
        let state = schemas::EntityState::newcomer(player, position, 100);
        Envelope::new(
            system(),
            Some(region_id("west")),
            Fact::Spawned(schemas::fact::Spawned { state }),
        )
    };
    // West's log, on west's own subjects: an arrival, then a step of it far outside the world,
    // and an arrival out there.
    let a = PlayerId::new();
    let (own, outside) = (
        spawned(a, Position::new(50.0, 50.0)),
        spawned(PlayerId::new(), far),
    );
    let own_id = own_entity(&own);
    let step = Envelope::new(
        system(),
        Some(region_id("west")),
        Fact::Moved(schemas::fact::Moved {
            entity: own_id.parse().expect("an entity id"),
            position: far,
            arrived: true,
        }),
    );
    for fact in [&own, &step, &outside] {
        publish(&bus.js, Outgoing::fact(fact).expect("encode"))
            .await
            .expect("stored");
    }

    let sim = bus.sim("sim-a", &[]).await;
    let live = eventually("west is recovered from its log", || async {
        sim.entities("west")
            .await
            .filter(|e| e.contains_key(&own_id))
    })
    .await;
    // Both are there, at the world's corner nearest to where the log put them.
    for id in [&own_id, &own_entity(&outside)] {
        let position = &live[id]["position"];
        assert_eq!(
            (position["x"].as_f64(), position["y"].as_f64()),
            (Some(0.0), Some(0.0)),
            "{id}: {position}"
        );
    }
    // And the avatar walks from there (a walk from -1e300 was NaN).
    let walk = bus
        .send("west", a, Command::Move(Move { x: 10.0, y: 10.0 }))
        .await;
    let started = bus.wait_outcome("west", walk.id).await;
    assert!(
        matches!(&started[..], [Fact::MovementStarted(m)] if m.from == Position::new(0.0, 0.0)),
        "{started:?}"
    );
}

fn own_entity(env: &Envelope<Fact>) -> String {
    match &env.payload {
        Fact::Spawned(s) => s.state.id.to_string(),
        other => panic!("not an arrival: {other:?}"),
    }
}

#[tokio::test]
async fn a_follow_up_the_commands_stream_refuses_for_good_does_not_stop_the_region() {
    let bus = Bus::start().await;
    // West's log says an avatar left for east carrying an item whose name is larger than any
    // command COMMANDS takes: the hand-off a recovering west sends again is refused for good.
    let player = PlayerId::new();
    let mut state = schemas::EntityState::newcomer(player, Position::new(99.0, 50.0), 100);
    state.inventory = vec![schemas::fold::InventoryItem {
        item: EntityId::new(),
        item_kind: "x".repeat(70_000),
    }];
    let left = Envelope::new(
        Actor::System {
            service: "region-sim".into(),
        },
        Some(region_id("west")),
        Fact::HandedOffOut(schemas::fact::HandedOffOut {
            state,
            to_region: region_id("east"),
        }),
    );
    publish(&bus.js, Outgoing::fact(&left).expect("encode"))
        .await
        .expect("stored");

    let sim = bus.sim("sim-a", &[]).await;
    let spawned = bus.send("west", PlayerId::new(), spawn()).await;
    assert!(matches!(
        bus.wait_outcome("west", spawned.id).await[..],
        [Fact::Spawned(_)]
    ));
    let log = sim.service.log();
    assert!(
        log.contains("the stream refuses this message for good"),
        "{log}"
    );
}

#[tokio::test]
async fn a_command_from_the_bus_with_absurd_values_is_dead_lettered_and_never_applied() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    // A hand-off such as only a simulator sends, claiming what no avatar can have.
    let p = PlayerId::new();
    let absurd = Envelope::new(
        Actor::System {
            service: "region-sim".into(),
        },
        Some(region_id("west")),
        Command::AcceptHandOff(AcceptHandOff {
            from_region: region_id("east"),
            state: EntityState {
                id: p.into(),
                kind: EntityKind::Player,
                player: Some(p),
                position: Position::new(50.0, 50.0),
                destination: None,
                hp: 100,
                max_hp: 100,
                level: 1,
                xp: u64::MAX,
                inventory: vec![],
                alive: true,
            },
        }),
    );
    publish(&bus.js, Outgoing::command(&absurd).expect("encode"))
        .await
        .expect("stored");
    // The same from a player: only simulators hand entities over.
    let mut forged = absurd.clone();
    forged.id = EventId::new();
    forged.actor = Actor::Player { id: p };
    if let Command::AcceptHandOff(h) = &mut forged.payload {
        h.state.xp = 0;
    }
    publish(&bus.js, Outgoing::command(&forged).expect("encode"))
        .await
        .expect("stored");
    let letters = bus.dead_letters(2).await;
    assert_eq!(letters.len(), 2);
    let reasons: Vec<&String> = letters.iter().map(|l| &l.reason).collect();
    assert!(reasons[0].contains("state.xp"), "{}", reasons[0]);
    assert!(reasons[1].contains("may not send"), "{}", reasons[1]);
    // The region goes on, and neither was applied.
    let a = PlayerId::new();
    let spawned = bus.send("west", a, spawn()).await;
    bus.wait_outcome("west", spawned.id).await;
    let facts = bus.facts("west").await;
    assert!(
        facts
            .iter()
            .all(|f| f.causation_id != Some(absurd.id) && f.causation_id != Some(forged.id)),
        "nothing was applied"
    );
}

#[tokio::test]
async fn a_process_killed_after_storing_facts_is_replaced_with_no_effect_lost_or_doubled() {
    let bus = Bus::start().await;
    let mut doomed = bus
        .sim("sim-a", &[("SIM_FAILPOINT", "abort-after-facts")])
        .await;
    let players: Vec<PlayerId> = (0..3).map(|_| PlayerId::new()).collect();
    let mut sent = Vec::new();
    for p in &players {
        sent.push(bus.send("west", *p, spawn()).await);
    }
    died_at(&mut doomed, "abort-after-facts").await;
    for (i, p) in players.iter().enumerate() {
        sent.push(bus.send("west", *p, chat(&format!("line {i}"))).await);
        sent.push(
            bus.send(
                "west",
                *p,
                Command::Move(Move {
                    x: 10.0 + i as f64,
                    y: 10.0,
                }),
            )
            .await,
        );
    }
    // Its lease expires; the next process takes the region over, restores it, and is given the
    // commands the first never acknowledged.
    let heir = bus.sim("sim-b", &[]).await;
    eventually("the heir owns the region", || async {
        bus.owner("west").await.as_deref() == Some("sim-b")
    })
    .await;
    applied_once(&bus, "west", &sent).await;
    heir_agrees_with_the_log(&bus, &heir, &players).await;
}

#[tokio::test]
async fn a_process_killed_at_any_moment_is_replaced_by_one_with_the_same_state() {
    let bus = Bus::start().await;
    let mut first = bus.sim("sim-a", &[]).await;
    let players: Vec<PlayerId> = (0..4).map(|_| PlayerId::new()).collect();
    let mut sent = Vec::new();
    for p in &players {
        sent.push(bus.send("west", *p, spawn()).await);
    }
    for round in 0..30 {
        for (i, p) in players.iter().enumerate() {
            let x = 5.0 + ((round * 7 + i * 13) % 90) as f64;
            sent.push(
                bus.send("west", *p, Command::Move(Move { x, y: 50.0 }))
                    .await,
            );
        }
        if round == 15 {
            first.kill();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let heir = bus.sim("sim-b", &[]).await;
    applied_once(&bus, "west", &sent).await;
    heir_agrees_with_the_log(&bus, &heir, &players).await;
}

#[tokio::test]
async fn a_hand_off_completes_when_its_source_dies_half_way() {
    let bus = Bus::start().await;
    let (mut west, east) = west_dying_half_way(&bus).await;
    let a = PlayerId::new();
    bus.wait_outcome("west", bus.send("west", a, spawn()).await.id)
        .await;
    bus.send("west", a, Command::Move(Move { x: 150.0, y: 50.0 }))
        .await;
    // West stores the hand-off's first half and dies before telling east.
    died_at(&mut west, "abort-after-hand-off-fact").await;
    assert_eq!(bus.count("west", "handed_off_out").await, 1);
    assert!(east.entities("east").await.unwrap_or_default().is_empty());
    // Its heir finds the hand-off in the log and finishes it.
    let heir = bus.sim("sim-west-2", &[("SIM_REGIONS", "west")]).await;
    let me = a.to_string();
    eventually("the avatar arrives in the east", || async {
        east.entities("east")
            .await
            .is_some_and(|e| e.get(&me).is_some_and(|s| s["position"]["x"] == 150.0))
    })
    .await;
    eventually("the heir runs the west", || async {
        heir.entities("west").await.is_some()
    })
    .await;
    assert!(
        !heir
            .entities("west")
            .await
            .unwrap_or_default()
            .contains_key(&me)
    );
    assert_eq!(bus.count("east", "handed_off_in").await, 1);
    // Once only, also once every command on both sides is acknowledged (no redelivery left).
    bus.settled("west").await;
    bus.settled("east").await;
    assert_eq!(bus.count("east", "handed_off_in").await, 1);
    assert_eq!(bus.count("west", "handed_off_out").await, 1);
}

#[tokio::test]
async fn a_dead_owners_regions_are_taken_over_and_a_newcomer_gets_its_share() {
    let bus = Bus::start().await;
    let mut first = bus.sim("sim-a", &[]).await;
    eventually("the only process runs both regions", || async {
        first.regions().await.len() == 2
    })
    .await;
    let second = bus.sim("sim-b", &[]).await;
    // Two against none: the first gives one away and the newcomer takes it.
    eventually("the regions are shared", || async {
        first.regions().await.len() == 1 && second.regions().await.len() == 1
    })
    .await;
    let moved = second.regions().await.remove(0);
    assert_eq!(bus.owner(&moved).await.as_deref(), Some("sim-b"));
    let a = PlayerId::new();
    let spawned = bus.send(&moved, a, spawn()).await;
    assert!(matches!(
        bus.wait_outcome(&moved, spawned.id).await[..],
        [Fact::Spawned(_)]
    ));
    // The first dies; its lease expires and the survivor takes its region over.
    let kept = first.regions().await.remove(0);
    first.kill();
    eventually("the survivor runs both regions", || async {
        second.regions().await.len() == 2
    })
    .await;
    assert_eq!(bus.owner(&kept).await.as_deref(), Some("sim-b"));
    let b = PlayerId::new();
    let spawned = bus.send(&kept, b, spawn()).await;
    assert!(matches!(
        bus.wait_outcome(&kept, spawned.id).await[..],
        [Fact::Spawned(_)]
    ));
}

#[tokio::test]
async fn a_process_stopped_in_good_order_lets_its_regions_go_at_once() {
    let bus = Bus::start().await;
    let mut first = bus.sim("sim-a", &[("SIM_REGIONS", "west")]).await;
    eventually("it runs the west", || async {
        bus.owner("west").await.is_some()
    })
    .await;
    first.terminate();
    let status = first.wait().expect("the first simulator stopped");
    assert!(status.success(), "{status}: {}", first.log());
    assert_eq!(
        bus.owner("west").await,
        None,
        "the lease was released, not left to expire"
    );
    let second = bus.sim("sim-b", &[("SIM_REGIONS", "west")]).await;
    eventually("the next process runs the west", || async {
        second.regions().await == vec!["west".to_owned()]
    })
    .await;
}

#[tokio::test]
async fn built_as_a_library_it_runs_a_region_and_stops_it_and_its_http_side() {
    let bus = Bus::start().await;
    let env: BTreeMap<&str, String> = BTreeMap::from([
        ("SIM_NODE_ID", "sim-lib".to_owned()),
        ("SIM_ADDR", "127.0.0.1:0".to_owned()),
        ("SIM_REGIONS", "west".to_owned()),
        ("NATS_URL", bus.nats.url()),
        ("SIM_CONFIG", path_text(&bus.path("sim.toml"))),
        ("REGIONS_CONFIG", path_text(&bus.path("regions.toml"))),
        ("BALANCE_CONFIG", path_text(&bus.path("balance.toml"))),
    ]);
    let settings = Settings::load(|key| env.get(key).cloned()).expect("settings");
    let app = Application::build(settings).await.expect("built");
    let healthz = format!("http://{}/healthz", app.local_addr().expect("bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    eventually("it runs the west and answers", || async {
        let answers = reqwest::get(&healthz)
            .await
            .is_ok_and(|r| r.status().is_success());
        answers && bus.owner("west").await.is_some()
    })
    .await;
    stop.send(()).expect("still running");
    tokio::time::timeout(DRAIN_DEADLINE + Duration::from_secs(20), running)
        .await
        .expect("it ends within the drain deadline after its regions")
        .expect("the task ends");
    assert_eq!(bus.owner("west").await, None, "the lease was released");
    assert!(
        reqwest::get(&healthz).await.is_err(),
        "the HTTP side stopped"
    );
}

fn path_text(path: &std::path::Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[tokio::test]
async fn a_process_whose_lease_is_taken_stops_that_region_at_once() {
    let bus = Bus::start().await;
    let sim = bus.sim("sim-a", &[("SIM_REGIONS", "west")]).await;
    eventually("it runs the west", || async {
        sim.regions().await == vec!["west".to_owned()]
    })
    .await;
    // Another process's lease over ours, as when ours expired unnoticed and was taken over.
    let kv = bus.js.get_key_value(REGION_LEASES).await.expect("bucket");
    let now = chrono::Utc::now();
    let intruder = nats_topology::lease::Lease {
        node: "sim-intruder".into(),
        acquired_at: now,
        renewed_at: now,
    };
    kv.put("west", serde_json::to_vec(&intruder).expect("lease").into())
        .await
        .expect("put");
    eventually("it stops the west", || async {
        sim.regions().await.is_empty()
    })
    .await;
    assert!(
        sim.log().contains("lease lost to another process"),
        "{}",
        sim.log()
    );
    assert_eq!(bus.owner("west").await.as_deref(), Some("sim-intruder"));

    // Once the region is free again it is taken back, restored, and plays on.
    kv.delete("west").await.expect("delete");
    eventually("it runs the west again", || async {
        sim.regions().await == vec!["west".to_owned()]
    })
    .await;
    let spawned = bus.send("west", PlayerId::new(), spawn()).await;
    assert!(matches!(
        bus.wait_outcome("west", spawned.id).await[..],
        [Fact::Spawned(_)]
    ));
}

#[tokio::test]
async fn a_process_cut_off_from_nats_stops_its_regions_and_takes_them_back_after() {
    let mut bus = Bus::start().await;
    let player = PlayerId::new();
    let sim = bus.sim("sim-a", &[]).await;
    eventually("it runs both regions", || async {
        sim.regions().await.len() == 2
    })
    .await;
    let spawned = bus.send("west", player, spawn()).await;
    bus.wait_outcome("west", spawned.id).await;

    // Without the bus its leases cannot be renewed: it stops ticking before they could expire
    // and be taken by another process.
    bus.nats.stop();
    eventually("it stops both regions", || async {
        sim.regions().await.is_empty()
    })
    .await;
    assert!(
        sim.log().contains("lease may have expired; region stopped"),
        "{}",
        sim.log()
    );

    bus.nats.restart().expect("nats-server back");
    eventually("it runs both regions again", || async {
        sim.regions().await.len() == 2
    })
    .await;
    // The avatar is still there, and commands are applied again.
    let said = bus.send("west", player, chat("still here")).await;
    assert!(matches!(
        bus.wait_outcome("west", said.id).await[..],
        [Fact::ChatSaid(_)]
    ));
}

#[tokio::test]
async fn an_overloaded_process_gives_a_region_to_a_calm_one_and_none_bounces_back() {
    let bus = Bus::start().await;
    // Three regions, and a threshold the slowed ticks exceed and normal ones stay far below.
    let three = [
        regions::west_and_east(50),
        regions::region("north", (0.0, 100.0), (200.0, 200.0), 50, &[]),
    ]
    .concat();
    std::fs::write(bus.path("three.toml"), three).expect("regions");
    std::fs::write(
        bus.path("touchy.toml"),
        SIM.replace("overloaded_tick_ms = 1000.0", "overloaded_tick_ms = 25.0"),
    )
    .expect("sim config");
    let (regions, sim) = (bus.path("three.toml"), bus.path("touchy.toml"));
    let config = [
        ("REGIONS_CONFIG", regions.to_str().expect("path")),
        ("SIM_CONFIG", sim.to_str().expect("path")),
    ];
    let slow_env = [config[0], config[1], ("SIM_FAILPOINT", "slow-ticks")];
    let slow = bus.sim("sim-slow", &slow_env).await;
    eventually("the slow process, alone, runs all three", || async {
        slow.regions().await.len() == 3
    })
    .await;
    let calm = bus.sim("sim-calm", &config).await;
    // Counting alone would stop at two and one; the slow ticks move one more region.
    eventually(
        "the calm process runs two regions, the slow one one",
        || async { slow.regions().await.len() == 1 && calm.regions().await.len() == 2 },
    )
    .await;
    let gave_when_overloaded = slow
        .log()
        .lines()
        .any(|line| line.contains("giving a region away") && line.contains(r#""overloaded":true"#));
    assert!(gave_when_overloaded, "{}", slow.log());
    // It stays so: the calm process does not give a region back to an overloaded one.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(slow.regions().await.len(), 1);
        assert_eq!(calm.regions().await.len(), 2);
    }
}

#[tokio::test]
async fn a_blow_over_the_border_lands_once_when_its_source_dies_half_way() {
    let bus = Bus::start().await;
    let (mut west, east) = west_dying_half_way(&bus).await;
    let (a, b) = (PlayerId::new(), PlayerId::new());
    bus.wait_outcome("west", bus.send("west", a, spawn()).await.id)
        .await;
    bus.wait_outcome("east", bus.send("east", b, spawn()).await.id)
        .await;
    // Face to face over the border, 1.5 apart (attacks reach 3).
    bus.send("west", a, Command::Move(Move { x: 99.5, y: 50.0 }))
        .await;
    bus.send("east", b, Command::Move(Move { x: 101.0, y: 50.0 }))
        .await;
    let (a_id, b_id) = (a.to_string(), b.to_string());
    eventually("both stand at the border", || async {
        let at = |region: &'static str, id: &str, x: f64| {
            let (sim, id) = (if region == "west" { &west } else { &east }, id.to_owned());
            async move {
                sim.entities(region)
                    .await
                    .is_some_and(|e| e.get(&id).is_some_and(|s| s["position"]["x"] == x))
            }
        };
        at("west", &a_id, 99.5).await && at("east", &b_id, 101.0).await
    })
    .await;

    let attack = bus
        .send(
            "west",
            a,
            Command::Attack(Attack {
                target: EntityId::from(b),
            }),
        )
        .await;
    // West stores the blow and dies before sending it over.
    died_at(&mut west, "abort-after-hand-off-fact").await;
    let blows = bus.outcome("west", attack.id).await;
    assert!(matches!(blows[..], [Fact::StruckAcross(_)]), "{blows:?}");
    // Its heir finds the blow in the log and sends it; the east decides the hit, once.
    let _heir = bus.sim("sim-west-2", &[("SIM_REGIONS", "west")]).await;
    let hits = |facts: Vec<Envelope<Fact>>| -> Vec<(EventId, schemas::fact::Damaged)> {
        facts
            .into_iter()
            .filter_map(|f| match f.payload {
                Fact::Damaged(d) => Some((f.correlation_id, d)),
                _ => None,
            })
            .collect()
    };
    eventually("the blow lands in the east", || async {
        let found = hits(bus.facts("east").await);
        (!found.is_empty()).then_some(())
    })
    .await;
    bus.settled("west").await;
    bus.settled("east").await;
    let landed = hits(bus.facts("east").await);
    assert_eq!(landed.len(), 1, "{landed:?}");
    let (correlation, damaged) = &landed[0];
    assert_eq!(*correlation, attack.id, "the hit answers the attack");
    assert_eq!(
        (damaged.attacker, damaged.target),
        (EntityId::from(a), EntityId::from(b))
    );
    let Some(Fact::StruckAcross(blow)) = blows.first() else {
        unreachable!()
    };
    assert_eq!(damaged.hp, 100 - blow.amount);
}

#[tokio::test]
async fn an_avatar_keeps_what_it_carries_when_it_leaves_and_spawns_elsewhere() {
    let bus = Bus::start().await;
    let _sim = bus.sim("sim-a", &[]).await;
    let player = PlayerId::new();
    bus.wait_outcome("west", bus.send("west", player, spawn()).await.id)
        .await;
    let item = eventually("the west's potion lies there", || async {
        bus.facts("west")
            .await
            .into_iter()
            .find_map(|f| match f.payload {
                Fact::ItemSpawned(i) => Some(i.item),
                _ => None,
            })
    })
    .await;
    let picked = bus
        .send("west", player, Command::Pickup(Pickup { item }))
        .await;
    assert!(matches!(
        bus.wait_outcome("west", picked.id).await[..],
        [Fact::ItemPicked(_)]
    ));
    let left = bus
        .send("west", player, Command::Leave(schemas::command::Leave {}))
        .await;
    bus.wait_outcome("west", left.id).await;

    let back = bus.send("east", player, spawn()).await;
    let spawned = bus.wait_outcome("east", back.id).await;
    let [Fact::Spawned(s)] = &spawned[..] else {
        panic!("{spawned:?}")
    };
    assert_eq!(s.state.inventory.len(), 1);
    assert_eq!(s.state.inventory[0].item, item);
}

#[tokio::test]
async fn players_crowding_one_process_move_regions_until_the_load_evens_out_and_none_bounces() {
    let bus = Bus::start().await;
    // Nine regions side by side, no neighbours: an empty one weighs 41 (40 + its item).
    let nine: String = (0..9)
        .map(|i| {
            let x = f64::from(i) * 100.0;
            regions::region(&format!("r{i}"), (x, 0.0), (x + 100.0, 100.0), 50, &[])
        })
        .collect();
    std::fs::write(bus.path("nine.toml"), nine).expect("regions");
    let regions = bus.path("nine.toml");
    let env = [("REGIONS_CONFIG", regions.to_str().expect("path"))];
    let a = bus.sim("sim-a", &env).await;
    eventually("the first process runs all nine", || async {
        a.regions().await.len() == 9
    })
    .await;
    let b = bus.sim("sim-b", &env).await;
    let c = bus.sim("sim-c", &env).await;
    eventually("empty regions are shared three by three", || async {
        a.regions().await.len() == 3 && b.regions().await.len() == 3 && c.regions().await.len() == 3
    })
    .await;

    // Crowd two of the first process's regions: 12 players in one, 4 in another.
    let crowded = a.regions().await;
    let mut sent = Vec::new();
    for (region, players) in [(&crowded[0], 12), (&crowded[1], 4)] {
        for _ in 0..players {
            sent.push((
                region.clone(),
                bus.send(region, PlayerId::new(), spawn()).await,
            ));
        }
    }
    for (region, env) in &sent {
        bus.wait_outcome(region, env.id).await;
    }

    // Watch the owners until they have not changed for five balancing rounds.
    let kv = bus.js.get_key_value(REGION_LEASES).await.expect("bucket");
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut still_since = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "the regions never settled: {owners:?}"
        );
        let mut changed = false;
        for i in 0..9 {
            let region = format!("r{i}");
            let Some(bytes) = kv.get(&region).await.expect("get") else {
                continue;
            };
            let lease: Value = serde_json::from_slice(&bytes).expect("lease");
            let node = lease["node"].as_str().expect("node").to_owned();
            let history = owners.entry(region.clone()).or_default();
            if history.last() != Some(&node) {
                assert!(
                    !history.contains(&node),
                    "{region} went back to {node} after {history:?}"
                );
                history.push(node);
                changed = true;
            }
        }
        if changed {
            still_since = Instant::now();
        } else if still_since.elapsed() > Duration::from_secs(5)
            && owners.values().map(|h| h.len()).sum::<usize>() > 9
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Weighed as the simulators weigh them: 40 a region, 1 its item, 20 a player.
    let weight = |region: &str| 41 + 20 * sent.iter().filter(|(r, _)| r == region).count() as u64;
    let mut loads = Vec::new();
    for sim in [&a, &b, &c] {
        loads.push(sim.regions().await.iter().map(|r| weight(r)).sum::<u64>());
    }
    let moved = owners.values().filter(|h| h.len() > 1).count();
    println!("crowded: {moved} regions moved; loads {loads:?} (was [443, 123, 123])");
    assert!(moved >= 1, "{owners:?}");
    let (max, min) = (
        loads.iter().max().expect("3"),
        loads.iter().min().expect("3"),
    );
    assert!(*max < 443 && max - min < 443 - 123, "{loads:?}");
    // The crowded region stays where it is, alone or nearly: moving it would flip the load.
    assert!(a.regions().await.contains(&crowded[0]));
}
