//! The streams and KV buckets of the game backend, declared once, with their limits.
//!
//! | name | holds | retention |
//! |---|---|---|
//! | `COMMANDS` | `cmd.<priority>.<region>.<kind>`: every validated command | 7 days; full means new publishes are refused, never old commands dropped |
//! | `FACTS` | `fact.<region>.<kind>`: the event log | forever; no message may be deleted or purged |
//! | `DLQ` | `dlq.<origin stream>.<origin subject>`: dead letters with their headers | 30 days |
//! | `ADVISORIES` | JetStream's max-deliveries and terminated advisories | 30 days; read by the dead-letter listener |
//! | KV `region_leases` | which simulator owns which region | a key lives 15 s unless renewed |
//! | KV `region_snapshots` | a region's state with the `FACTS` sequence it covers | last 3 per region |
//! | KV `node_load` | each simulator's load, for balancing | a key lives 30 s unless renewed |
//! | KV `rebuild_jobs` | projection rebuilds and their progress | 7 days |

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};

/// The stream of commands.
pub const COMMANDS: &str = "COMMANDS";
/// The stream of facts: the event log.
pub const FACTS: &str = "FACTS";
/// The stream of dead letters.
pub const DLQ: &str = "DLQ";
/// The stream that keeps JetStream's advisories about messages that exhausted their deliveries
/// or were terminated, so the dead-letter listener never misses one.
pub const ADVISORIES: &str = "ADVISORIES";
/// The KV bucket of region leases.
pub const REGION_LEASES: &str = "region_leases";
/// The KV bucket of region snapshots.
pub const REGION_SNAPSHOTS: &str = "region_snapshots";
/// The KV bucket of simulator load reports.
pub const NODE_LOAD: &str = "node_load";
/// The KV bucket of projection rebuild jobs.
pub const REBUILD_JOBS: &str = "rebuild_jobs";
/// The KV bucket of the live projection's lease: one projector projects at a time.
pub const PROJECTOR_LEASE: &str = "projector_lease";
/// The KV bucket of what each player's avatar had when it last left the world.
pub const PLAYER_PROGRESS: &str = "player_progress";
/// The KV bucket of the region each player's avatar is in, as the simulators last decided it:
/// what gateways route commands by.
pub const AVATAR_REGIONS: &str = "avatar_regions";

/// The durable consumer on `ADVISORIES` that the dead-letter listeners share.
pub const DLQ_LISTENER: &str = "dlq-listener";

/// The advisory subjects `ADVISORIES` captures.
pub const ADVISORY_SUBJECTS: [&str; 2] = [
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
];

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const MIB: i64 = 1024 * 1024;
const GIB: i64 = 1024 * MIB;

/// Limits that differ between deployments; everything else is fixed by the design.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Copies of every stream and bucket: 1 on one node, 3 in a cluster.
    pub replicas: usize,
    /// How long a command is kept (it is applied within seconds; the audit trail keeps it for ever).
    pub commands_max_age: Duration,
    /// How many bytes of commands are kept before new ones are refused.
    pub commands_max_bytes: i64,
    /// How many bytes of facts are kept before new ones are refused (-1: no limit).
    pub facts_max_bytes: i64,
    /// How long a dead letter is kept.
    pub dlq_max_age: Duration,
    /// The window in which a repeated `Nats-Msg-Id` is stored once.
    pub duplicate_window: Duration,
    /// How long a region lease lives without renewal.
    pub lease_ttl: Duration,
    /// The largest snapshot a region may write.
    pub snapshot_max_bytes: i32,
}

impl Settings {
    /// One node (development, tests).
    pub fn local() -> Self {
        Self {
            replicas: 1,
            commands_max_age: 7 * DAY,
            commands_max_bytes: 8 * GIB,
            facts_max_bytes: -1,
            dlq_max_age: 30 * DAY,
            duplicate_window: Duration::from_secs(10 * 60),
            lease_ttl: Duration::from_secs(15),
            snapshot_max_bytes: 8 * MIB as i32,
        }
    }

    /// A three-node cluster: every stream and bucket on three nodes.
    pub fn cluster() -> Self {
        Self {
            replicas: 3,
            ..Self::local()
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::local()
    }
}

/// Everything [`ensure`](fn@crate::ensure) creates: streams and KV buckets.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The streams.
    pub streams: Vec<Config>,
    /// The KV buckets.
    pub buckets: Vec<kv::Config>,
}

impl Topology {
    /// The topology for the given settings.
    pub fn new(s: &Settings) -> Self {
        let stream = |name: &str, subjects: &[&str], description: &str| Config {
            name: name.to_owned(),
            description: Some(description.to_owned()),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: s.replicas,
            duplicate_window: s.duplicate_window,
            // A full stream refuses new messages: what was accepted is never dropped to make room.
            discard: DiscardPolicy::New,
            allow_direct: true,
            ..Default::default()
        };
        let streams = vec![
            Config {
                max_age: s.commands_max_age,
                max_bytes: s.commands_max_bytes,
                max_message_size: 64 * 1024,
                ..stream(
                    COMMANDS,
                    &["cmd.>"],
                    "Validated commands, by priority, region and kind.",
                )
            },
            Config {
                max_bytes: s.facts_max_bytes,
                max_message_size: MIB as i32,
                deny_delete: true,
                deny_purge: true,
                ..stream(
                    FACTS,
                    &["fact.>"],
                    "The event log: every fact, in order, for ever.",
                )
            },
            Config {
                max_age: s.dlq_max_age,
                max_bytes: 4 * GIB,
                ..stream(
                    DLQ,
                    &["dlq.>"],
                    "Dead letters, with origin, reason and attempts in their headers.",
                )
            },
            Config {
                max_age: s.dlq_max_age,
                max_bytes: 256 * MIB,
                ..stream(
                    ADVISORIES,
                    &ADVISORY_SUBJECTS,
                    "JetStream advisories of messages that exhausted their deliveries or were terminated.",
                )
            },
        ];
        let bucket = |name: &str, description: &str| kv::Config {
            bucket: name.to_owned(),
            description: description.to_owned(),
            storage: StorageType::File,
            num_replicas: s.replicas,
            history: 1,
            ..Default::default()
        };
        let buckets = vec![
            kv::Config {
                max_age: s.lease_ttl,
                ..bucket(
                    REGION_LEASES,
                    "Which simulator owns which region; renewed while alive.",
                )
            },
            kv::Config {
                max_age: s.lease_ttl,
                ..bucket(
                    PROJECTOR_LEASE,
                    "Which projector runs the live projection; renewed while alive.",
                )
            },
            kv::Config {
                history: 3,
                max_value_size: s.snapshot_max_bytes,
                ..bucket(
                    REGION_SNAPSHOTS,
                    "Region snapshots, with the FACTS sequence each covers.",
                )
            },
            kv::Config {
                max_age: Duration::from_secs(30),
                ..bucket(
                    NODE_LOAD,
                    "Each simulator's load (players, entities, tick time), for balancing.",
                )
            },
            kv::Config {
                max_age: 7 * DAY,
                ..bucket(REBUILD_JOBS, "Projection rebuild jobs and their progress.")
            },
            bucket(
                PLAYER_PROGRESS,
                "Each player's level, experience and inventory as the avatar last left the world.",
            ),
            bucket(
                AVATAR_REGIONS,
                "The region each player's avatar is in, written before the fact that put it there.",
            ),
        ];
        Self { streams, buckets }
    }
}

/// The consumer of the dead-letter listeners: explicit acks, and never given up on (an advisory
/// that cannot be handled yet is retried until it can).
pub fn dlq_listener_consumer() -> pull::Config {
    pull::Config {
        durable_name: Some(DLQ_LISTENER.to_owned()),
        description: Some("Moves exhausted and terminated messages to DLQ.".to_owned()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_keeps_three_copies_of_everything() {
        let topology = Topology::new(&Settings::cluster());
        assert!(topology.streams.iter().all(|s| s.num_replicas == 3));
        assert!(topology.buckets.iter().all(|b| b.num_replicas == 3));
    }

    #[test]
    fn the_event_log_is_append_only_and_kept_for_ever() {
        let topology = Topology::new(&Settings::local());
        let facts = topology
            .streams
            .iter()
            .find(|s| s.name == FACTS)
            .expect("FACTS");
        assert!(facts.deny_delete && facts.deny_purge);
        assert_eq!(facts.max_age, Duration::ZERO);
        assert!(
            topology
                .streams
                .iter()
                .all(|s| s.discard == DiscardPolicy::New)
        );
    }
}
