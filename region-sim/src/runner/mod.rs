//! Running one region on the bus: recover it, then tick.
//!
//! Recovery restores the region's latest snapshot and folds the facts stored after it, sends
//! again the hand-offs those facts call for, and seeds a region that has never run. Each tick
//! then takes the region's waiting commands (high priority first, then normal, then low, within a
//! budget that keeps a share for low), applies them in that order, runs the systems, stores the
//! facts (pipelined, every acknowledgement awaited, retried with the same ids until stored), sends
//! the hand-offs and outcomes, and only then acknowledges the commands. A process that dies at any
//! point leaves either unstored facts (and unacknowledged commands, applied again by the next
//! owner) or stored facts (which the next owner folds, so the redelivered commands are
//! recognised as applied): never a lost or doubled effect.
//!
//! - [`run`] here: the region's loop (ticks, lag reports, questions, the stop).
//! - `recovery`: the snapshot, the facts after it, the resends and the seed; the consumers.
//! - `tick`: taking the waiting commands, and one tick in the order that makes a crash harmless.
//! - `outbox`: facts, follow-up commands and dead letters, each published until stored.
//! - `players`: what is kept of players beside the log: their progress between visits and the
//!   region each avatar is in.
//! - `outcomes`: what a tick tells: outcomes to waiting clients, command counts, live positions.
//! - `snapshots`: storing the region's snapshot.
//! - `load`, `inspect`: what the process and its operators learn of a running region.
//! - `failpoint` (only with the `failpoints` feature): where the crash tests make it die.

#[cfg(feature = "failpoints")]
mod failpoint;
mod inspect;
mod load;
mod outbox;
mod outcomes;
mod players;
mod recovery;
mod snapshots;
mod tick;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::kv::Store;
use schemas::{Priority, RegionId, WorldConfig};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, info, warn};

use crate::admission::Admission;
use crate::balance::Balance;
use crate::metrics::Metrics;
use crate::region::Region;
use crate::settings::Settings;

#[cfg(feature = "failpoints")]
pub(crate) use failpoint::handler as failpoint_handler;
#[cfg(feature = "failpoints")]
pub use failpoint::{FAILING_CHAT, Failpoint, SLOW_TICK};
pub use inspect::{Inspect, Item, RegionState};
pub use load::RegionLoad;

/// What every region task of a process shares.
pub struct Shared {
    /// The NATS connection.
    pub client: async_nats::Client,
    /// JetStream on it.
    pub js: Context,
    /// The process's settings.
    pub settings: Arc<Settings>,
    /// The region config.
    pub world: Arc<WorldConfig>,
    /// The game balance.
    pub balance: Arc<Balance>,
    /// The metrics.
    pub metrics: Metrics,
    /// The `region_snapshots` bucket.
    pub snapshots: Store,
    /// The `player_progress` bucket.
    pub progress: Store,
    /// The `avatar_regions` bucket.
    pub avatars: Store,
    /// A fault to inject, for the fault tests (`SIM_FAILPOINT`).
    #[cfg(feature = "failpoints")]
    pub failpoint: Option<Failpoint>,
}

/// Why a region stopped running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The bus failed where no retry makes sense (a stream or consumer is missing).
    #[error("{0}")]
    Bus(String),
}

fn bus(e: impl std::fmt::Display) -> RunError {
    RunError::Bus(e.to_string())
}

/// The consumer name of a region's commands of one priority.
pub fn consumer_name(region: &RegionId, priority: Priority) -> String {
    format!("region-{region}-{priority}")
}

/// The priorities a region takes commands of, each from a consumer of its own, highest first.
pub const PRIORITIES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

/// A region being run: its world and what its tick needs of the bus.
struct Running {
    shared: Arc<Shared>,
    region: Region,
    admission: Admission,
    id: RegionId,
    consumers: Vec<(Priority, PullConsumer)>,
    facts_seq: u64,
    last_snapshot: Instant,
    load: Arc<std::sync::Mutex<RegionLoad>>,
    slowest: f64,
}

/// Recovers `region` and ticks it until `stop` turns true (then snapshots it and returns).
/// Keeps its load in `load`; answers `inspect` between ticks.
pub async fn run(
    shared: Arc<Shared>,
    id: RegionId,
    mut stop: watch::Receiver<bool>,
    mut inspect: mpsc::Receiver<Inspect>,
    load: Arc<std::sync::Mutex<RegionLoad>>,
) -> Result<(), RunError> {
    shared.metrics.region_started(id.as_str());
    let mut running = Running::recover(shared.clone(), id.clone(), load).await?;
    let mut interval = tokio::time::interval(shared.settings.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lag_every = tokio::time::interval(Duration::from_secs(1));
    let mut tick_no: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = lag_every.tick() => {
                running.report_lag().await;
                continue;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    running.snapshot().await;
                    info!(region = %id, "region stopped");
                    return Ok(());
                }
                continue;
            }
            Some(question) = inspect.recv() => {
                running.answer(question);
                continue;
            }
        }
        tick_no += 1;
        running
            .tick()
            .instrument(tracing::debug_span!("tick", region = %id, tick = tick_no))
            .await?;
    }
}

impl Running {
    fn bus_error(&self, operation: &str, error: &dyn std::fmt::Display) {
        warn!(region = %self.id, operation, error = %error, "bus error; retrying");
        self.shared
            .metrics
            .bus_errors
            .with_label_values(&[self.id.as_str(), operation])
            .inc();
    }
}

/// The wait between two attempts at what the bus must take before the tick goes on: from
/// 50 ms, doubling, at most 2 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(50))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }
}
