//! One live projection per deployment, through the `projector_lease` bucket.
//!
//! A projector takes the `live` lease before it projects, renews it while it runs, and lets it go
//! when it stops; a second projector stands by until the lease is free (let go, or expired with a
//! dead owner) and then takes over. Two live projections at once would be harmless for the order
//! of facts (one batch is outstanding at a time) but not for a rebuild, which pauses only the
//! projection of its own process before it renames collections over the live ones.
//!
//! A projector that loses its lease, or cannot renew it before it could have expired, stops
//! projecting at once and stands by again: the bucket may be away only for a NATS leader
//! election, and the process is then the standby the deployment needs.

use std::future::Future;
use std::time::{Duration, Instant};

use nats_topology::lease::{Held, LeaseError, Leases};
use nats_topology::topology::PROJECTOR_LEASE;
use tracing::{error, info, warn};

use crate::Context;

/// The key of the live projection's lease.
pub const LIVE: &str = "live";

/// A projector that may take the live projection's lease.
pub struct Standby {
    leases: Leases,
    ttl: Duration,
    node: String,
}

/// The lease, once held.
pub struct Lease {
    standby: Standby,
    held: Held,
}

impl Standby {
    /// Opens the lease bucket for this process, named `node`.
    pub async fn open(ctx: &Context, node: &str) -> Result<Self, async_nats::Error> {
        let store = ctx.js.get_key_value(PROJECTOR_LEASE).await?;
        let ttl = store.status().await?.max_age();
        Ok(Self {
            leases: Leases::new(store, node),
            ttl,
            node: node.to_owned(),
        })
    }

    /// Waits until this process holds the live projection's lease; `None` when `shutdown`
    /// completes first.
    pub async fn take(self, shutdown: impl Future<Output = ()>) -> Option<Lease> {
        let node = self.node.as_str();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut told = false;
        loop {
            match self.leases.acquire(LIVE).await {
                Ok(Some(held)) => {
                    info!(node, "took the live projection");
                    return Some(Lease {
                        standby: self,
                        held,
                    });
                }
                Ok(None) if !told => {
                    // Held by another projector, or still by this one when it has just given
                    // up a lease it could not renew, until that lease expires.
                    info!(node, "the live projection's lease is held; standing by");
                    told = true;
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "cannot reach the lease bucket"),
            }
            tokio::select! {
                () = &mut shutdown => return None,
                () = tokio::time::sleep(renewal(self.ttl)) => {}
            }
        }
    }
}

fn renewal(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(100))
}

/// How [`Lease::keep`] ended.
pub enum Kept {
    /// The stop was asked for: stop the projection, then [`Lease::release`] the lease.
    Stopping(Lease),
    /// The lease was lost, or not renewed for so long that it may have expired: the projection
    /// must stop at once, and the process may stand by again.
    Lost(Standby),
}

impl Lease {
    /// Keeps the lease until `shutdown` completes, or until it is lost or cannot be renewed for
    /// so long that it may have expired.
    pub async fn keep(mut self, shutdown: impl Future<Output = ()>) -> Kept {
        let every = renewal(self.standby.ttl);
        let fence = self.standby.ttl.saturating_sub(every * 2).max(every);
        let mut renewed = Instant::now();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Kept::Stopping(self),
                () = tokio::time::sleep(every) => {}
            }
            let attempt = tokio::time::timeout(every, self.standby.leases.renew(&mut self.held))
                .await
                .unwrap_or_else(|_| Err(LeaseError::Bucket("no answer in time".into())));
            match attempt {
                Ok(()) => renewed = Instant::now(),
                Err(LeaseError::Lost(_)) => {
                    error!("the live projection's lease was taken by another projector");
                    return Kept::Lost(self.standby);
                }
                Err(LeaseError::Bucket(e)) => {
                    warn!(error = %e, "lease not renewed");
                    if renewed.elapsed() >= fence {
                        error!("the live projection's lease may have expired");
                        return Kept::Lost(self.standby);
                    }
                }
            }
        }
    }

    /// Lets the lease go, so a standing-by projector takes over at once.
    pub async fn release(self) {
        if let Err(e) = self.standby.leases.release(&self.held).await {
            warn!(error = %e, "lease not released; it will expire");
        }
    }
}
