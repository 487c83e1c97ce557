//! What the simulators write in the `region_leases` and `node_load` buckets, and what the gateway
//! and the admins read from them.
//!
//! `region_leases`: key = region id, value = [`Lease`]. A lease is taken and renewed with
//! compare-and-set on the key's revision and expires with the bucket's max age when its owner
//! stops renewing it. `node_load`: key = node id, value = [`NodeLoad`], rewritten periodically.

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
