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
