//! One live projection per deployment, through the `projector_lease` bucket.
//!
//! A projector takes the `live` lease before it projects, renews it while it runs, and lets it go
//! when it stops; a second projector stands by until the lease is free (let go, or expired with a
//! dead owner) and then takes over. Two live projections at once would be harmless for the order
//! of facts (one batch is outstanding at a time) but not for a rebuild, which pauses only the
//! projection of its own process before it renames collections over the live ones.

use std::future::Future;
use std::time::{Duration, Instant};

use nats_topology::lease::{Held, LeaseError, Leases};
use nats_topology::topology::PROJECTOR_LEASE;
use tracing::{error, info, warn};

use crate::Context;

/// The key of the live projection's lease.
pub const LIVE: &str = "live";

/// The lease, once held.
pub struct Lease {
    leases: Leases,
    held: Held,
    ttl: Duration,
}

/// Waits until this process, named `node`, holds the live projection's lease; `None` when
/// `shutdown` completes first.
pub async fn take(
    ctx: &Context,
    node: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<Option<Lease>, async_nats::Error> {
    let store = ctx.js.get_key_value(PROJECTOR_LEASE).await?;
    let ttl = store.status().await?.max_age();
    let leases = Leases::new(store, node);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut told = false;
    loop {
        match leases.acquire(LIVE).await {
            Ok(Some(held)) => {
                info!(node, "took the live projection");
                return Ok(Some(Lease { leases, held, ttl }));
            }
            Ok(None) if !told => {
                info!(
                    node,
                    "another projector runs the live projection; standing by"
                );
                told = true;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot reach the lease bucket"),
        }
        tokio::select! {
            () = &mut shutdown => return Ok(None),
            () = tokio::time::sleep(renewal(ttl)) => {}
        }
    }
}

fn renewal(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(100))
}

impl Lease {
    /// Keeps the lease until `shutdown` completes (`true`: stop the projection, then
    /// [`Lease::release`] it), or until it is lost or cannot be renewed for so long that it may
    /// have expired (`false`): the projection must stop at once then.
    pub async fn keep(&mut self, shutdown: impl Future<Output = ()>) -> bool {
        let every = renewal(self.ttl);
        let fence = self.ttl.saturating_sub(every * 2).max(every);
        let mut renewed = Instant::now();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return true,
                () = tokio::time::sleep(every) => {}
            }
            let attempt = tokio::time::timeout(every, self.leases.renew(&mut self.held))
                .await
                .unwrap_or_else(|_| Err(LeaseError::Bucket("no answer in time".into())));
            match attempt {
                Ok(()) => renewed = Instant::now(),
                Err(LeaseError::Lost(_)) => {
                    error!("the live projection's lease was taken by another projector");
                    return false;
                }
                Err(LeaseError::Bucket(e)) => {
                    warn!(error = %e, "lease not renewed");
                    if renewed.elapsed() >= fence {
                        error!("the live projection's lease may have expired");
                        return false;
                    }
                }
            }
        }
    }

    /// Lets the lease go, so a standing-by projector takes over at once.
    pub async fn release(self) {
        if let Err(e) = self.leases.release(&self.held).await {
            warn!(error = %e, "lease not released; it will expire");
        }
    }
}
