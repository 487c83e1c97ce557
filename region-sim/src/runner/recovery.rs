//! Recovering a region when its process takes it: the latest snapshot, the facts stored after
//! it folded in, the follow-up commands those facts call for sent again, the seed of a region
//! that has never run; then the region's consumers of commands, one per priority.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use chrono::Utc;
use futures::StreamExt;
use nats_topology::topology::{COMMANDS, FACTS};
use schemas::{Command, CommandSubject, Envelope, Fact, FactSubject, Priority, RegionId, Scope};
use tracing::{error, info, warn};

use super::{PRIORITIES, RegionLoad, RunError, Running, Shared, bus, consumer_name};
use crate::admission::Admission;
use crate::region::{Region, RegionSettings, Snapshot};

impl Running {
    pub(super) async fn recover(
        shared: Arc<Shared>,
        id: RegionId,
        load: Arc<std::sync::Mutex<RegionLoad>>,
    ) -> Result<Self, RunError> {
        let started = Instant::now();
        let config = shared
            .world
            .region(&id)
            .cloned()
            .ok_or_else(|| RunError::Bus(format!("{id} is not in the region config")))?;
        let settings = RegionSettings {
            hysteresis: shared.settings.hysteresis,
            applied_memory: shared.settings.applied_memory,
        };
        let admission = Admission::new(
            id.clone(),
            shared.world.validation_context(),
            shared.balance.clone(),
        );
        // A snapshot's place in the log is checked against where the log ends, read after the
        // snapshot: a newer one stored meanwhile by the last owner is within it.
        let stored = shared.snapshots.get(id.as_str()).await;
        let facts_last = shared
            .js
            .get_stream(FACTS)
            .await
            .map_err(bus)?
            .cached_info()
            .state
            .last_sequence;
        let now_ms = Utc::now().timestamp_millis();
        let snapshot = match stored {
            Ok(Some(bytes)) => match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(s) if s.region != id => {
                    warn!(region = %id, "the stored snapshot is another region's; rebuilding from the whole log");
                    None
                }
                Ok(s) => match admission.check_snapshot(&s, facts_last, now_ms) {
                    Ok(()) => Some(s),
                    Err(why) => {
                        error!(region = %id, reason = why, "the stored snapshot is refused; rebuilding from the whole log");
                        None
                    }
                },
                Err(e) => {
                    warn!(region = %id, error = %e, "the stored snapshot is unreadable; rebuilding from the whole log");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => return Err(bus(format!("cannot read the snapshot of {id}: {e}"))),
        };
        let (region, facts_seq) = match &snapshot {
            Some(s) => (
                Region::restore(
                    s,
                    config,
                    shared.world.clone(),
                    shared.balance.clone(),
                    settings,
                ),
                s.facts_seq,
            ),
            None => (
                Region::new(
                    config,
                    shared.world.clone(),
                    shared.balance.clone(),
                    settings,
                ),
                0,
            ),
        };
        let mut running = Self {
            region,
            admission,
            id: id.clone(),
            consumers: Vec::new(),
            facts_seq,
            last_snapshot: Instant::now(),
            load,
            slowest: 0.0,
            shared,
        };
        let (folded, resend) = running.fold_log().await?;
        if !resend.is_empty() {
            info!(region = %id, commands = resend.len(), "sending unfinished hand-offs and blows again");
            running.publish_commands(&resend).await;
        }
        let now = Utc::now().timestamp_millis();
        let seed = running.region.seed(now);
        if !seed.is_empty() {
            let facts: Vec<_> = seed.iter().map(|f| (f, None)).collect();
            running.publish_facts(&facts).await;
        }
        running.consumers = running.open_consumers().await?;
        info!(
            region = %id,
            from_snapshot = snapshot.is_some(),
            facts_folded = folded,
            seeded = seed.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "region recovered"
        );
        running.publish_load();
        Ok(running)
    }

    /// Folds every fact of the region after the snapshot's sequence.
    async fn fold_log(&mut self) -> Result<(usize, Vec<Envelope<Command>>), RunError> {
        let stream = self.shared.js.get_stream(FACTS).await.map_err(bus)?;
        let deliver_policy = if self.facts_seq == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.facts_seq + 1,
            }
        };
        let mut consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: FactSubject::filter(&Scope::Region(self.id.clone())),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(bus)?;
        let pending = consumer.info().await.map_err(bus)?.num_pending;
        let mut resend = Vec::new();
        let mut folded = 0;
        if pending == 0 {
            return Ok((0, resend));
        }
        let mut messages = consumer.messages().await.map_err(bus)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(bus)?;
            let info = message.info().map_err(bus)?;
            let (seq, left) = (info.stream_sequence, info.pending);
            match Envelope::<Fact>::decode(&message.payload) {
                // Read from this region's subjects: a fact whose envelope names another subject
                // (another region, say) is not this region's, whatever subject carried it.
                Ok(env) if env.subject().to_string() != message.subject.as_str() => {
                    error!(region = %self.id, seq, subject = %message.subject, says = %env.subject(), "a stored fact on another's subject; skipped")
                }
                Ok(mut env) => {
                    let moved = self.admission.bring_inside(&mut env.payload);
                    if !moved.is_empty() {
                        warn!(region = %self.id, seq, fields = ?moved, "a stored fact places something outside the world; folded with it brought to the world's edge");
                    }
                    match self.admission.check_fact(&env.payload) {
                        Ok(()) => {
                            resend.extend(self.region.fold(&env));
                            folded += 1;
                        }
                        Err(why) => {
                            error!(region = %self.id, seq, reason = why, "a stored fact breaks the rules; skipped");
                            // Its command is as decided as any: delivered again, it is not
                            // applied a second time.
                            self.region.remember_cause(&env);
                        }
                    }
                }
                Err(e) => {
                    error!(region = %self.id, seq, error = %e, "a stored fact does not decode; skipped")
                }
            }
            self.facts_seq = seq;
            if left == 0 {
                break;
            }
        }
        // A hand-off or blow whose neighbour already answered needs no resend: that is for the
        // neighbour to recognise (the command's id is derived from the fact's), so all are sent.
        Ok((folded, resend))
    }

    async fn open_consumers(&self) -> Result<Vec<(Priority, PullConsumer)>, RunError> {
        let stream = self.shared.js.get_stream(COMMANDS).await.map_err(bus)?;
        let mut consumers = Vec::new();
        for priority in PRIORITIES {
            let name = consumer_name(&self.id, priority);
            let consumer: PullConsumer = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!("{priority} commands of region {}", self.id)),
                    filter_subject: CommandSubject::filter(priority, &self.id),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.shared.settings.ack_wait,
                    max_deliver: self.shared.settings.max_deliver,
                    max_ack_pending: 20_000,
                    deliver_policy: DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| bus(format!("consumer {name}: {e}")))?;
            consumers.push((priority, consumer));
        }
        Ok(consumers)
    }
}
