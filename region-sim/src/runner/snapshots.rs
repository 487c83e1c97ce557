//! Storing a running region's snapshot: every `snapshot_secs`, and once more when it stops.

use std::time::Instant;

use chrono::Utc;
use tracing::warn;

use super::Running;

impl Running {
    pub(super) async fn snapshot(&mut self) {
        let now = Utc::now().timestamp_millis();
        let snapshot = self.region.snapshot(self.facts_seq, now);
        self.last_snapshot = Instant::now();
        let region = self.id.as_str();
        let result = match serde_json::to_vec(&snapshot) {
            Ok(bytes) => self
                .shared
                .snapshots
                .put(region, bytes.into())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(_) => {
                self.shared
                    .metrics
                    .snapshots
                    .with_label_values(&[region, "ok"])
                    .inc();
            }
            Err(e) => {
                // The previous snapshot and the log still recover the region, only slower.
                warn!(region, error = %e, "snapshot not stored");
                self.shared
                    .metrics
                    .snapshots
                    .with_label_values(&[region, "failed"])
                    .inc();
            }
        }
    }
}
