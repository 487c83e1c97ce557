//! A simulator process: it takes regions through leases, runs each in a task of its own, renews
//! the leases, reports its load, and balances regions with the other processes.
//!
//! Balancing: a process reports its regions, what each holds (players, NPCs, items) and its
//! slowest recent tick to the `node_load` bucket, and decides from everyone's reports with
//! [`placement`]: regions are weighed by what they hold, players first. A free region (no
//! lease: never taken, released, or its owner's lease expired) is taken by the process carrying
//! the least load of those that could take it: each reports its cap (`SIM_MAX_REGIONS`) and the
//! regions it is pinned to (`SIM_REGIONS`), and one at its cap or pinned to other regions is not
//! waited for. A process clearly more loaded than the least loaded other that is not
//! overloaded, or one whose ticks run slower than `overloaded_tick_ms` while another's run under
//! half that with no more load, lets one region go (after a last snapshot), and the least loaded
//! process takes it on its next round. An overloaded process takes no region.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Store;
use chrono::Utc;
use futures::StreamExt;
use nats_topology::lease::{Held, LeaseError, Leases, NodeLoad, RegionCensus};
use nats_topology::topology::{
    AVATAR_REGIONS, FACTS, NODE_LOAD, PLAYER_PROGRESS, REGION_LEASES, REGION_SNAPSHOTS,
};
use schemas::RegionId;
use tokio::sync::{RwLock, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::placement::{self, Policy, Why};
#[cfg(feature = "failpoints")]
use crate::runner::Failpoint;
use crate::runner::{self, Inspect, RegionLoad, RegionState, Shared};
use crate::settings::Settings;

/// Why a process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// NATS cannot be reached.
    #[error("cannot connect to NATS at {url}: {why}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Why not.
        why: String,
    },
    /// A bucket is missing: the topology was not set up.
    #[error("bucket {bucket} is missing ({why}); run `nats-topology ensure` first")]
    Bucket {
        /// The bucket.
        bucket: &'static str,
        /// The error.
        why: String,
    },
}

struct Owned {
    held: Held,
    renewed: Instant,
    stop: watch::Sender<bool>,
    inspect: mpsc::Sender<Inspect>,
    load: Arc<std::sync::Mutex<RegionLoad>>,
    task: JoinHandle<()>,
}

/// The operators' handle on a running process: which regions it runs, and their state.
#[derive(Clone)]
pub struct View {
    node: String,
    regions: Arc<RwLock<BTreeMap<RegionId, mpsc::Sender<Inspect>>>>,
    metrics: Metrics,
}

impl View {
    /// This process's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The regions it runs.
    pub async fn regions(&self) -> Vec<RegionId> {
        self.regions.read().await.keys().cloned().collect()
    }

    /// A region's state, if this process runs it.
    pub async fn state(&self, region: &RegionId) -> Option<RegionState> {
        let ask = self.regions.read().await.get(region)?.clone();
        let (tx, rx) = oneshot::channel();
        ask.send(Inspect::State(tx)).await.ok()?;
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .ok()?
            .ok()
    }

    /// The metrics, as Prometheus text.
    pub fn metrics(&self) -> String {
        self.metrics.render()
    }
}

/// A running simulator process.
pub struct Node {
    shared: Arc<Shared>,
    leases: Leases,
    load_bucket: Store,
    lease_ttl: Duration,
    owned: HashMap<RegionId, Owned>,
    released: HashMap<RegionId, Instant>,
    view: View,
}

impl Node {
    /// Connects to NATS and opens the buckets; takes no region yet.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let (client, js) = nats_topology::publish::connect(
            &settings.nats_url,
            &settings.node_id,
            &settings.nats_credentials,
        )
        .await
        .map_err(|e| StartError::Connect {
            url: settings.nats_url.clone(),
            why: e.to_string(),
        })?;
        let bucket = |name: &'static str| {
            let js = js.clone();
            async move {
                js.get_key_value(name)
                    .await
                    .map_err(|e| StartError::Bucket {
                        bucket: name,
                        why: e.to_string(),
                    })
            }
        };
        let leases = bucket(REGION_LEASES).await?;
        let snapshots = bucket(REGION_SNAPSHOTS).await?;
        let load_bucket = bucket(NODE_LOAD).await?;
        let progress = bucket(PLAYER_PROGRESS).await?;
        let avatars = bucket(AVATAR_REGIONS).await?;
        let lease_ttl = leases
            .status()
            .await
            .map(|s| s.max_age())
            .unwrap_or(Duration::from_secs(15));
        let metrics = Metrics::new();
        let node = settings.node_id.clone();
        let shared = Arc::new(Shared {
            client,
            js,
            world: Arc::new(settings.world.clone()),
            balance: Arc::new(settings.balance.clone()),
            metrics: metrics.clone(),
            snapshots,
            progress,
            avatars,
            #[cfg(feature = "failpoints")]
            failpoint: Failpoint::from_env(),
            settings: Arc::new(settings),
        });
        Ok(Self {
            leases: Leases::new(leases, node.clone()),
            load_bucket,
            lease_ttl,
            owned: HashMap::new(),
            released: HashMap::new(),
            view: View {
                node,
                regions: Arc::default(),
                metrics,
            },
            shared,
        })
    }

    /// The operators' view of this process.
    pub fn view(&self) -> View {
        self.view.clone()
    }

    fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Runs until `shutdown` completes, then stops every region (each snapshotted) and lets
    /// their leases go.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut renew = tokio::time::interval(self.settings().lease_renew);
        let mut balance = tokio::time::interval(self.settings().balance_every);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        balance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = std::pin::pin!(shutdown);
        let head = tokio::spawn(report_facts_head(self.shared.clone()));
        info!(node = %self.view.node, "simulator started");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = renew.tick() => self.renew().await,
                _ = balance.tick() => self.balance().await,
            }
        }
        let regions: Vec<RegionId> = self.owned.keys().cloned().collect();
        for region in regions {
            self.give_up(&region).await;
        }
        head.abort();
        let _ = self.load_bucket.delete(&self.view.node).await;
        info!(node = %self.view.node, "simulator stopped");
    }

    /// Renews every lease, all at once and each within one renewal period, so a bus that
    /// hangs cannot hold a renewal past the fence. A lease found taken, or not renewed for so
    /// long that it may have expired, stops its region at once: two owners must never tick one
    /// region.
    async fn renew(&mut self) {
        let every = self.settings().lease_renew;
        let fence = self.lease_ttl.saturating_sub(every * 2).max(every);
        let finished: Vec<RegionId> = self
            .owned
            .iter()
            .filter(|(_, o)| o.task.is_finished())
            .map(|(r, _)| r.clone())
            .collect();
        for region in finished {
            error!(region = %region, "region task ended; letting the region go");
            self.give_up(&region).await;
        }
        let leases = &self.leases;
        let renewals = self.owned.iter_mut().map(|(region, owned)| async move {
            let renewed = tokio::time::timeout(every, leases.renew(&mut owned.held))
                .await
                .unwrap_or_else(|_| Err(LeaseError::Bucket("no answer in time".into())));
            if renewed.is_ok() {
                owned.renewed = Instant::now();
            }
            (region.clone(), renewed, owned.renewed.elapsed())
        });
        for (region, renewed, since) in futures::future::join_all(renewals).await {
            match renewed {
                Ok(()) => {}
                Err(LeaseError::Lost(_)) => {
                    error!(region = %region, "lease lost to another process; region stopped");
                    self.abandon(&region, "lost").await;
                }
                Err(LeaseError::Bucket(e)) => {
                    warn!(region = %region, error = %e, "lease not renewed");
                    if since >= fence {
                        error!(region = %region, "lease may have expired; region stopped");
                        self.abandon(&region, "expired").await;
                    }
                }
            }
        }
    }

    /// One round of balancing. Every bucket operation is bounded by the renewal period: the
    /// renewals run on the same loop and must not wait behind a bus that hangs.
    async fn balance(&mut self) {
        let every = self.settings().lease_renew;
        let reported = tokio::time::timeout(every, async {
            let mine = self.report_load().await;
            (mine, self.others().await)
        })
        .await;
        let Ok((mine, others)) = reported else {
            warn!("the load bucket did not answer; no balancing this round");
            return;
        };
        let now = Instant::now();
        let quiet = self.settings().balance_every * 3;
        self.released
            .retain(|_, at| now.duration_since(*at) < quiet);

        let count = self.owned.len();
        let policy = Policy::new(self.settings().overloaded_tick_ms);
        let mut nodes: Vec<placement::Node> = others
            .iter()
            .map(|o| placement::Node::from_report(o, &policy.costs))
            .collect();
        nodes.push(placement::Node::from_report(&mine, &policy.costs));
        let me = self.view.node.clone();

        // Give a region away when clearly busier than another process, or slow.
        let free = self
            .shared
            .world
            .regions
            .iter()
            .filter(|r| !nodes.iter().any(|n| n.regions.contains_key(&r.id)))
            .count();
        if let Some(give) = placement::decide(&me, &nodes, free, &policy) {
            let weight = nodes
                .last()
                .and_then(|n| n.regions.get(&give.region).copied())
                .unwrap_or(0);
            info!(
                region = %give.region,
                to = %give.to,
                weight,
                overloaded = give.why == Why::SlowTicks,
                "giving a region away"
            );
            self.give_up(&give.region).await;
            self.released.insert(give.region, Instant::now());
            return;
        }

        // Take free regions while under the cap and not busier than the others that could take
        // them.
        let cap = self.settings().max_regions.unwrap_or(usize::MAX);
        if count >= cap {
            return;
        }
        let candidates: Vec<RegionId> = self
            .shared
            .world
            .regions
            .iter()
            .map(|r| r.id.clone())
            .filter(|r| self.settings().may_run(r))
            .filter(|r| !self.owned.contains_key(r) && !self.released.contains_key(r))
            .filter(|r| placement::may_take(&me, r, &nodes, &policy))
            .collect();
        // Alone, take everything; with others, one region a round, so all get a share.
        let mut room = if others.is_empty() { cap - count } else { 1 };
        for region in candidates {
            if room == 0 {
                break;
            }
            // A lease created but not heard of in time is never renewed, and expires.
            match tokio::time::timeout(every, self.leases.acquire(region.as_str())).await {
                Ok(Ok(Some(held))) => {
                    self.launch(region, held).await;
                    room -= 1;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => warn!(region = %region, error = %e, "cannot take a lease"),
                Err(_) => {
                    warn!(region = %region, "the lease bucket did not answer in time");
                    break;
                }
            }
        }
    }

    async fn report_load(&mut self) -> NodeLoad {
        let mut load = NodeLoad {
            node: self.view.node.clone(),
            regions: self.owned.keys().cloned().collect(),
            players: 0,
            entities: 0,
            tick_ms: 0.0,
            reported_at: Utc::now(),
            census: Vec::with_capacity(self.owned.len()),
            // So that the others do not leave a free region to a node that will not take it.
            max_regions: self
                .settings()
                .max_regions
                .map(|cap| u64::try_from(cap).unwrap_or(u64::MAX)),
            allowed_regions: self.settings().allowed_regions.clone(),
        };
        load.regions.sort();
        for (region, owned) in &self.owned {
            let l = {
                let mut shared = owned.load.lock().unwrap_or_else(|e| e.into_inner());
                let l = *shared;
                // The slowest tick is "since the last report".
                shared.slowest_tick_ms = 0.0;
                l
            };
            load.players += l.players;
            load.entities += l.entities;
            load.tick_ms = load.tick_ms.max(l.slowest_tick_ms);
            load.census.push(RegionCensus {
                region: region.clone(),
                players: l.players,
                npcs: l.npcs,
                items: l.items,
            });
        }
        self.shared.metrics.regions.set(self.owned.len() as i64);
        if let Ok(body) = serde_json::to_vec(&load)
            && let Err(e) = self.load_bucket.put(&self.view.node, body.into()).await
        {
            warn!(error = %e, "cannot report load");
        }
        load
    }

    async fn others(&self) -> Vec<NodeLoad> {
        let mut reports = Vec::new();
        let mut newest = None;
        let Ok(mut keys) = self.load_bucket.keys().await else {
            return Vec::new();
        };
        while let Some(Ok(key)) = keys.next().await {
            let Ok(Some(entry)) = self.load_bucket.entry(&key).await else {
                continue;
            };
            // When the server stored it: one clock for every node's report, this one's too.
            newest = newest.max(Some(entry.created));
            if key == self.view.node {
                continue;
            }
            if let Ok(load) = NodeLoad::decode(&entry.value) {
                reports.push((load, entry.created));
            }
        }
        // Three rounds without a report, while this node's own is fresh: that node has stopped.
        placement::recent(reports, newest, self.settings().balance_every * 3)
    }

    async fn launch(&mut self, region: RegionId, held: Held) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (inspect_tx, inspect_rx) = mpsc::channel(8);
        let load = Arc::new(std::sync::Mutex::new(RegionLoad::default()));
        let load_tx = load.clone();
        let shared = self.shared.clone();
        let id = region.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = runner::run(shared, id.clone(), stop_rx, inspect_rx, load_tx).await {
                error!(region = %id, error = %e, "region failed");
            }
        });
        info!(region = %region, "region taken");
        self.shared
            .metrics
            .lease_changes
            .with_label_values(&[region.as_str(), "acquired"])
            .inc();
        self.view
            .regions
            .write()
            .await
            .insert(region.clone(), inspect_tx.clone());
        self.owned.insert(
            region,
            Owned {
                held,
                renewed: Instant::now(),
                stop: stop_tx,
                inspect: inspect_tx,
                load,
                task,
            },
        );
    }

    /// Stops a region in good order (a last snapshot) and releases its lease.
    async fn give_up(&mut self, region: &RegionId) {
        let Some(owned) = self.owned.remove(region) else {
            return;
        };
        self.view.regions.write().await.remove(region);
        let _ = owned.stop.send(true);
        drop(owned.inspect);
        let mut task = owned.task;
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        if let Err(e) = self.leases.release(&owned.held).await {
            warn!(region = %region, error = %e, "lease not released; it will expire");
        }
        self.shared
            .metrics
            .lease_changes
            .with_label_values(&[region.as_str(), "released"])
            .inc();
    }

    /// Stops a region at once, without a snapshot or a release: it is no longer ours.
    async fn abandon(&mut self, region: &RegionId, why: &str) {
        if let Some(owned) = self.owned.remove(region) {
            owned.task.abort();
            self.view.regions.write().await.remove(region);
            self.shared
                .metrics
                .lease_changes
                .with_label_values(&[region.as_str(), why])
                .inc();
        }
    }
}

/// Reads, every second, how far `FACTS` goes (the gateway's facts too, not only this
/// process's) into `sim_facts_stream_sequence`: the head the projector must reach, measured by
/// a process that is not the projector, so operators see facts wait while the projector is
/// stopped or frozen. Each read is bounded; a read that fails leaves the number as it was.
async fn report_facts_head(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let read = tokio::time::timeout(Duration::from_secs(1), shared.js.get_stream(FACTS)).await;
        match read {
            Ok(Ok(stream)) => {
                let last = stream.cached_info().state.last_sequence;
                let last = i64::try_from(last).unwrap_or(i64::MAX);
                let head = &shared.metrics.facts_sequence;
                if last > head.get() {
                    head.set(last);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "FACTS not readable"),
            Err(_) => tracing::debug!("FACTS did not answer in time"),
        }
    }
}
