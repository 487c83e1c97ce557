//! Leases, and what the simulators write in the `node_load` bucket.
//!
//! A lease is one key of a KV bucket whose value is a [`Lease`]: created only where none is
//! (compare-and-set), renewed by revision while the owner lives, deleted by revision when it lets
//! go, and expired by the bucket's age limit when the owner dies. `region_leases` holds one per
//! region (key = region id), `projector_lease` the live projection's (key `live`). `node_load`:
//! key = node id, value = [`NodeLoad`], rewritten periodically.

use async_nats::jetstream::kv::Store;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use schemas::RegionId;
use serde::{Deserialize, Serialize};

/// Who owns a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The owning simulator node.
    pub node: String,
    /// When the node took the region.
    pub acquired_at: DateTime<Utc>,
    /// When the node last renewed the lease.
    pub renewed_at: DateTime<Utc>,
}

/// How busy a simulator node is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// The node.
    pub node: String,
    /// The regions it runs.
    pub regions: Vec<RegionId>,
    /// Players in those regions.
    pub players: u64,
    /// Entities in those regions.
    pub entities: u64,
    /// The slowest recent tick, in milliseconds.
    pub tick_ms: f64,
    /// When this was measured.
    pub reported_at: DateTime<Utc>,
    /// What each of its regions holds, so the others can weigh the regions one by one. Nodes
    /// from before balancing by density did not report it: it decodes as empty, and a reader
    /// spreads `players` and `entities` evenly over `regions` instead.
    #[serde(default)]
    pub census: Vec<RegionCensus>,
    /// The most regions it runs (`SIM_MAX_REGIONS`), if capped: at that count it takes no
    /// free region, so the others must not wait for it to. Nodes from before it was reported
    /// did not say: it decodes as uncapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_regions: Option<u64>,
    /// The only regions it runs (`SIM_REGIONS`), if pinned; empty for any. A free region not
    /// in the list is not one it takes. Nodes from before it was reported did not say: it
    /// decodes as empty, any region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_regions: Vec<RegionId>,
}

/// What one region holds: what its cost is weighed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionCensus {
    /// The region.
    pub region: RegionId,
    /// Avatars in it.
    pub players: u64,
    /// NPCs in it, alive or waiting to respawn.
    pub npcs: u64,
    /// Items lying in it.
    pub items: u64,
}

/// The most regions a load report may name; a world has a few hundred at most.
pub const MAX_REPORTED_REGIONS: usize = 100_000;

/// Why a `node_load` document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node load report refused: {0}")]
pub struct BadNodeLoad(pub String);

impl NodeLoad {
    /// Decodes a `node_load` document and refuses one no simulator would write: the bucket is
    /// a boundary like any other. Older reports (without `census`, `max_regions` or
    /// `allowed_regions`) decode.
    pub fn decode(bytes: &[u8]) -> Result<Self, BadNodeLoad> {
        let load: NodeLoad =
            serde_json::from_slice(bytes).map_err(|e| BadNodeLoad(e.to_string()))?;
        load.check()?;
        Ok(load)
    }

    /// The first thing wrong with a report, if any.
    pub fn check(&self) -> Result<(), BadNodeLoad> {
        let bad = |why: &str| Err(BadNodeLoad(why.to_owned()));
        if self.node.is_empty() {
            return bad("no node");
        }
        if !(self.tick_ms.is_finite() && self.tick_ms >= 0.0) {
            return bad("tick_ms must be a finite number, not negative");
        }
        if self.regions.len() > MAX_REPORTED_REGIONS
            || self.census.len() > self.regions.len()
            || self.allowed_regions.len() > MAX_REPORTED_REGIONS
        {
            return bad("too many regions");
        }
        let regions: std::collections::BTreeSet<&RegionId> = self.regions.iter().collect();
        if regions.len() != self.regions.len() {
            return bad("a region is named twice");
        }
        let mut counted = std::collections::BTreeSet::new();
        for c in &self.census {
            if !regions.contains(&c.region) {
                return bad("a census names a region the node does not run");
            }
            if !counted.insert(&c.region) {
                return bad("a region is counted twice");
            }
        }
        Ok(())
    }
}

/// A lease this process holds: the bucket revision it was last written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The key.
    pub key: String,
    /// The key's revision after our last write.
    pub revision: u64,
    /// Our lease as last written.
    pub lease: Lease,
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it (or took it over after ours expired).
    #[error("{0} is held by another process")]
    Lost(String),
    /// The bucket could not be reached.
    #[error("lease bucket: {0}")]
    Bucket(String),
}

/// The leases one process takes in one bucket.
#[derive(Clone)]
pub struct Leases {
    store: Store,
    node: String,
}

fn encode(lease: &Lease) -> Bytes {
    Bytes::from(serde_json::to_vec(lease).unwrap_or_default())
}

impl Leases {
    /// The leases of `node` in `store`.
    pub fn new(store: Store, node: impl Into<String>) -> Self {
        Self {
            store,
            node: node.into(),
        }
    }

    /// Takes `key` if nobody holds it; `Ok(None)` when somebody does.
    pub async fn acquire(&self, key: &str) -> Result<Option<Held>, LeaseError> {
        let now = Utc::now();
        let lease = Lease {
            node: self.node.clone(),
            acquired_at: now,
            renewed_at: now,
        };
        match self.store.create(key, encode(&lease)).await {
            Ok(revision) => Ok(Some(Held {
                key: key.to_owned(),
                revision,
                lease,
            })),
            Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                Ok(None)
            }
            Err(e) => Err(LeaseError::Bucket(e.to_string())),
        }
    }

    /// Renews a held lease; [`LeaseError::Lost`] when it is no longer ours.
    pub async fn renew(&self, held: &mut Held) -> Result<(), LeaseError> {
        let mut lease = held.lease.clone();
        lease.renewed_at = Utc::now();
        match self
            .store
            .update(held.key.as_str(), encode(&lease), held.revision)
            .await
        {
            Ok(revision) => {
                held.revision = revision;
                held.lease = lease;
                Ok(())
            }
            Err(e) if e.kind() == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Lost(held.key.clone()))
            }
            Err(e) => Err(LeaseError::Bucket(e.to_string())),
        }
    }

    /// Lets a held lease go, so another process may take it at once.
    pub async fn release(&self, held: &Held) -> Result<(), LeaseError> {
        self.store
            .delete_expect_revision(held.key.as_str(), Some(held.revision))
            .await
            .map_err(|e| LeaseError::Bucket(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{"node":"sim-1","regions":["west","east"],"players":3,"entities":40,"tick_ms":1.5,"reported_at":"2026-01-01T00:00:00Z"}"#;

    #[test]
    fn a_report_from_before_the_census_still_decodes() {
        let load = NodeLoad::decode(OLD.as_bytes()).expect("an older node's report");
        assert_eq!(load.regions.len(), 2);
        assert!(load.census.is_empty());
    }

    #[test]
    fn a_report_from_before_caps_and_pins_decodes_as_neither() {
        let census = r#","census":[{"region":"west","players":3,"npcs":40,"items":0}]}"#;
        let doc = OLD.trim_end_matches('}').to_owned() + census;
        let load = NodeLoad::decode(doc.as_bytes()).expect("a report with a census only");
        assert_eq!(load.census.len(), 1);
        assert_eq!(load.max_regions, None);
        assert!(load.allowed_regions.is_empty());
    }

    #[test]
    fn a_capped_and_pinned_report_round_trips() {
        let mut load = NodeLoad::decode(OLD.as_bytes()).expect("decodes");
        load.max_regions = Some(2);
        load.allowed_regions = vec![
            RegionId::new("west").expect("id"),
            RegionId::new("north").expect("id"),
        ];
        let bytes = serde_json::to_vec(&load).expect("json");
        assert_eq!(NodeLoad::decode(&bytes).expect("decodes"), load);
    }

    #[test]
    fn a_report_with_its_census_round_trips() {
        let mut load = NodeLoad::decode(OLD.as_bytes()).expect("decodes");
        load.census = vec![RegionCensus {
            region: RegionId::new("west").expect("id"),
            players: 3,
            npcs: 55,
            items: 80,
        }];
        let bytes = serde_json::to_vec(&load).expect("json");
        assert_eq!(NodeLoad::decode(&bytes).expect("decodes"), load);
    }

    #[test]
    fn reports_no_simulator_writes_are_refused() {
        let census = |region: &str| {
            format!(r#","census":[{{"region":"{region}","players":1,"npcs":0,"items":0}}]}}"#)
        };
        let with = |tail: &str| OLD.trim_end_matches('}').to_owned() + tail;
        for (doc, why) in [
            (OLD.replace("1.5", "-1.5"), "tick_ms"),
            (OLD.replace("1.5", "1e400"), "number"),
            (
                OLD.replace("\"players\":3", "\"players\":-3"),
                "invalid value",
            ),
            (OLD.replace("\"sim-1\"", "\"\""), "no node"),
            (OLD.replace("\"east\"", "\"west\""), "twice"),
            (with(&census("north")), "does not run"),
            (
                with(&census("west").replace(
                    "}]",
                    "},{\"region\":\"west\",\"players\":1,\"npcs\":0,\"items\":0}]",
                )),
                "counted twice",
            ),
        ] {
            let err = NodeLoad::decode(doc.as_bytes()).expect_err(why).to_string();
            assert!(err.contains(why), "{why:?} not in {err:?} for {doc}");
        }
        assert!(NodeLoad::decode(with(&census("west")).as_bytes()).is_ok());
    }
}
