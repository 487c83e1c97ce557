//! The operators' questions to a running region, answered between two ticks.

use schemas::RegionId;
use serde::Serialize;
use tokio::sync::oneshot;

use super::Running;

/// A question to a running region, answered between two ticks.
pub enum Inspect {
    /// Its entities and items as they are.
    State(oneshot::Sender<RegionState>),
}

/// A region's state as the operators' view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RegionState {
    /// The region.
    pub region: RegionId,
    /// Avatars and NPCs.
    pub entities: Vec<schemas::EntityState>,
    /// Items on the ground.
    pub items: Vec<Item>,
    /// The last `FACTS` sequence of the region stored or folded.
    pub facts_seq: u64,
}

/// An item on the ground.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Its id.
    pub id: schemas::EntityId,
    /// Its kind.
    pub kind: String,
    /// Where it lies.
    pub position: schemas::Position,
}

impl Running {
    pub(super) fn answer(&self, question: Inspect) {
        match question {
            Inspect::State(reply) => {
                let _ = reply.send(RegionState {
                    region: self.id.clone(),
                    entities: self.region.entities().into_values().collect(),
                    items: self
                        .region
                        .items()
                        .into_iter()
                        .map(|(id, (kind, position))| Item { id, kind, position })
                        .collect(),
                    facts_seq: self.facts_seq,
                });
            }
        }
    }
}
