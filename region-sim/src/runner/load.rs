//! How busy a running region is: what it holds and its slowest tick, for the process's load
//! reports, and how many commands wait in its consumers, for the metrics.

use super::Running;

/// How busy a region is, for load reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegionLoad {
    /// Avatars.
    pub players: u64,
    /// Avatars, NPCs and items.
    pub entities: u64,
    /// NPCs.
    pub npcs: u64,
    /// Items lying in the region.
    pub items: u64,
    /// The slowest tick since the last report, in milliseconds.
    pub slowest_tick_ms: f64,
}

impl Running {
    pub(super) async fn report_lag(&self) {
        for (priority, consumer) in &self.consumers {
            let mut consumer = consumer.clone();
            if let Ok(info) = consumer.info().await {
                self.shared
                    .metrics
                    .lag
                    .with_label_values(&[self.id.as_str(), priority.as_str()])
                    .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            }
        }
    }

    pub(super) fn publish_load(&mut self) {
        let (players, npcs, items) = self.region.census();
        let slowest = self.slowest;
        let mut load = self.load.lock().unwrap_or_else(|e| e.into_inner());
        load.players = players;
        load.npcs = npcs;
        load.items = items;
        load.entities = players + npcs + items;
        load.slowest_tick_ms = load.slowest_tick_ms.max(slowest);
        self.slowest = 0.0;
    }
}
