//! What a tick tells once its facts are stored: the outcome of each command to the client
//! waiting for it, the counts of commands by outcome, and the live positions of what moved.

use std::collections::HashMap;

use async_nats::jetstream;
use chrono::Utc;
use nats_topology::outcome::{OUTCOME_INBOX, Outcome, is_inbox};
use schemas::{Command, Envelope, EventId, Fact};
use serde::Serialize;

use super::Running;
use crate::region::TickOutput;

impl Running {
    pub(super) async fn notify_outcomes(
        &self,
        out: &TickOutput,
        seqs: &[u64],
        index: &HashMap<EventId, usize>,
        messages: &[jetstream::Message],
    ) {
        for (command_id, range) in &out.outcomes {
            let Some(&i) = index.get(command_id) else {
                continue;
            };
            let Some(inbox) = messages[i]
                .headers
                .as_ref()
                .and_then(|h| h.get(OUTCOME_INBOX))
                .map(|v| v.as_str().to_owned())
            else {
                continue;
            };
            if !is_inbox(&inbox) {
                // Written by whoever sent the command: published to, it could renew a lease,
                // overwrite a player's progress or add to the log with this simulator's rights.
                tracing::warn!(command = %command_id, inbox, "an outcome inbox that is no gateway's; not notified");
                continue;
            }
            let facts = out.facts[range.clone()]
                .iter()
                .filter_map(|f| f.encode().ok())
                .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
                .collect();
            let outcome = Outcome {
                command_id: *command_id,
                facts,
                seqs: seqs.get(range.clone()).unwrap_or_default().to_vec(),
            };
            if let Ok(body) = serde_json::to_vec(&outcome)
                && let Err(e) = self.shared.client.publish(inbox, body.into()).await
            {
                // Only a notification: the facts are stored, the client gets a 202.
                self.bus_error("outcome", &e);
            }
        }
    }

    pub(super) fn count(&self, out: &TickOutput, commands: &[Envelope<Command>], dead: usize) {
        let m = &self.shared.metrics;
        let region = self.id.as_str();
        for (command_id, range) in &out.outcomes {
            let Some(cmd) = commands.iter().find(|c| c.id == *command_id) else {
                continue;
            };
            let kind = cmd.payload.kind().as_str();
            let waited = (Utc::now() - cmd.occurred_at).to_std().unwrap_or_default();
            m.command_to_fact_seconds
                .with_label_values(&[region])
                .observe(waited.as_secs_f64());
            let rejected = out.facts[range.clone()]
                .iter()
                .find_map(|f| match &f.payload {
                    Fact::Rejected(r) => Some(r.reason),
                    _ => None,
                });
            match rejected {
                Some(reason) => {
                    m.commands
                        .with_label_values(&[region, kind, "rejected"])
                        .inc();
                    m.rejections
                        .with_label_values(&[region, reason.as_str()])
                        .inc();
                }
                None => m
                    .commands
                    .with_label_values(&[region, kind, "applied"])
                    .inc(),
            }
        }
        if !out.duplicates.is_empty() {
            m.commands
                .with_label_values(&[region, "any", "duplicate"])
                .inc_by(out.duplicates.len() as u64);
        }
        if dead > 0 {
            m.commands
                .with_label_values(&[region, "any", "dead_lettered"])
                .inc_by(dead as u64);
        }
        let (players, entities) = self.region.population();
        m.players.with_label_values(&[region]).set(players as i64);
        m.entities.with_label_values(&[region]).set(entities as i64);
    }

    /// Live positions for the broadcast bridge: `live.<region>`, core NATS, one message a tick
    /// with everything that moved. Not stored: the log records arrivals, not every step.
    pub(super) async fn broadcast(&self, out: &TickOutput) {
        if out.moved.is_empty() {
            return;
        }
        #[derive(Serialize)]
        struct Step {
            id: schemas::EntityId,
            x: f64,
            y: f64,
        }
        let steps: Vec<Step> = out
            .moved
            .iter()
            .map(|(id, p)| Step {
                id: *id,
                x: p.x,
                y: p.y,
            })
            .collect();
        if let Ok(body) = serde_json::to_vec(&steps)
            && let Err(e) = self
                .shared
                .client
                .publish(format!("live.{}", self.id), body.into())
                .await
        {
            self.bus_error("live", &e);
        }
    }
}
