//! Owning regions through the `region_leases` bucket: a lease is created only where none is
//! (compare-and-set), renewed by revision while the owner lives, deleted by revision when it lets
//! go, and expires with the bucket's age limit when the owner dies.

use async_nats::jetstream::kv::Store;
use bytes::Bytes;
use chrono::Utc;
use nats_topology::lease::Lease;
use schemas::RegionId;

/// A lease this process holds: the bucket revision it was last written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The region.
    pub region: RegionId,
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
    Lost(RegionId),
    /// The bucket could not be reached.
    #[error("lease bucket: {0}")]
    Bucket(String),
}

/// The leases of one process.
#[derive(Clone)]
pub struct Leases {
    store: Store,
    node: String,
}

fn encode(lease: &Lease) -> Bytes {
    Bytes::from(serde_json::to_vec(lease).unwrap_or_default())
}

impl Leases {
    /// The leases of `node` in `store` (the `region_leases` bucket).
    pub fn new(store: Store, node: impl Into<String>) -> Self {
        Self {
            store,
            node: node.into(),
        }
    }

    /// Takes `region` if nobody holds it; `Ok(None)` when somebody does.
    pub async fn acquire(&self, region: &RegionId) -> Result<Option<Held>, LeaseError> {
        let now = Utc::now();
        let lease = Lease {
            node: self.node.clone(),
            acquired_at: now,
            renewed_at: now,
        };
        match self.store.create(region.as_str(), encode(&lease)).await {
            Ok(revision) => Ok(Some(Held {
                region: region.clone(),
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
            .update(held.region.as_str(), encode(&lease), held.revision)
            .await
        {
            Ok(revision) => {
                held.revision = revision;
                held.lease = lease;
                Ok(())
            }
            Err(e) if e.kind() == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Lost(held.region.clone()))
            }
            Err(e) => Err(LeaseError::Bucket(e.to_string())),
        }
    }

    /// Lets a held lease go, so another process may take the region at once.
    pub async fn release(&self, held: &Held) -> Result<(), LeaseError> {
        self.store
            .delete_expect_revision(held.region.as_str(), Some(held.revision))
            .await
            .map_err(|e| LeaseError::Bucket(e.to_string()))
    }

    /// Who holds `region` now, if anyone.
    pub async fn owner(&self, region: &RegionId) -> Result<Option<Lease>, LeaseError> {
        let value = self
            .store
            .get(region.as_str())
            .await
            .map_err(|e| LeaseError::Bucket(e.to_string()))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }
}
