//! One tick of a running region: take the waiting commands within the budget, apply them and
//! run the systems, then keep what players carry, store the facts, send what they call for,
//! dead-letter what cannot be applied, and only then acknowledge the commands.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::Utc;
use futures::StreamExt;
use schemas::{Command, Envelope, EventId, Priority};
use tracing::debug;

use super::{RunError, Running};
use crate::metrics::DeadLetterReason;

/// The longest a tick waits for its fetches of commands: a fetch answers at once when the bus
/// is well, so this only bounds a lost answer.
const FETCH_DEADLINE: Duration = Duration::from_secs(2);

impl Running {
    /// Takes the waiting commands: high first, then normal, then low, keeping a share of the
    /// budget for low whenever the budget would otherwise run out before it.
    async fn take(&self) -> Vec<(Priority, jetstream::Message)> {
        let budget = self.shared.settings.tick_budget;
        let low_share = ((budget as f64) * self.shared.settings.low_priority_share).ceil() as usize;
        let mut taken = Vec::new();
        // A fetch asks the consumer's leader once and waits for its answer with no timer of
        // its own: an answer lost with a NATS node would hold the tick, and the region, for
        // ever. So the fetches of a tick share one deadline. What a fetch cut short did not
        // bring comes again after the ack wait, so after such a loss a player's later command
        // may be applied before an earlier one.
        let deadline = tokio::time::Instant::now() + FETCH_DEADLINE;
        for (priority, consumer) in &self.consumers {
            let room = budget - taken.len();
            let want = match priority {
                Priority::Low => room,
                _ => room.saturating_sub(low_share),
            };
            if want == 0 {
                continue;
            }
            let fetch = consumer.fetch().max_messages(want).messages();
            let batch = match tokio::time::timeout_at(deadline, fetch).await {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    self.bus_error("fetch", &e);
                    continue;
                }
                Err(_) => {
                    self.bus_error("fetch", &"no answer before the deadline");
                    continue;
                }
            };
            let mut batch = std::pin::pin!(batch);
            loop {
                match tokio::time::timeout_at(deadline, batch.next()).await {
                    Ok(Some(Ok(m))) => taken.push((*priority, m)),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        self.bus_error("fetch", &e);
                        break;
                    }
                    Err(_) => {
                        self.bus_error("fetch", &"the batch did not end before the deadline");
                        break;
                    }
                }
            }
        }
        taken
    }

    /// One tick, in the order that makes a crash at any point harmless: the commands taken and
    /// admitted, applied with the systems, what players carry kept, the facts stored, the
    /// follow-ups and outcomes sent, the dead letters stored (or handed back), and only then the
    /// acknowledgements.
    pub(super) async fn tick(&mut self) -> Result<(), RunError> {
        let started = Instant::now();
        let taken = self.take().await;
        let mut commands = Vec::with_capacity(taken.len());
        let mut messages = Vec::with_capacity(taken.len());
        let mut dead = Vec::new();
        for (_, message) in taken {
            // The bus is not trusted: a command from a client or from another simulator passes
            // the same bounds before anything applies it.
            match Envelope::<Command>::decode(&message.payload) {
                Ok(env) => match crate::admission::Admission::on_its_subject(
                    message.subject.as_str(),
                    &env,
                )
                .and_then(|()| self.admission.admit(&env))
                {
                    Ok(()) => {
                        commands.push(env);
                        messages.push(message);
                    }
                    Err(why) => dead.push((message, why, DeadLetterReason::Inadmissible)),
                },
                Err(e) => dead.push((
                    message,
                    format!("the command does not decode: {e}"),
                    DeadLetterReason::Undecodable,
                )),
            }
        }
        let claimed = self.prepare_spawns(&commands).await;
        let now_ms = Utc::now().timestamp_millis();
        let out = self.region.tick(&commands, now_ms);
        // What avatars that left take with them is kept before their `left` is stored: a
        // spawn that follows the stored fact always finds it.
        self.keep_progress(&out.facts).await;
        // Where the avatars are, before the facts that put them there are stored: a command a
        // player sends after being told an outcome is routed where that outcome put it.
        self.keep_avatar_regions(&out.facts, claimed).await;
        #[cfg(feature = "failpoints")]
        super::failpoint::slow_tick(self.shared.failpoint).await;

        // Facts first, with the request id and client address of the command they answer.
        let index: HashMap<EventId, usize> = commands
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        let mut cause_of = vec![None; out.facts.len()];
        for (id, range) in &out.outcomes {
            let cause = index.get(id).copied();
            for slot in &mut cause_of[range.clone()] {
                *slot = cause;
            }
        }
        let facts: Vec<_> = out
            .facts
            .iter()
            .zip(&cause_of)
            .map(|(f, cause)| (f, cause.and_then(|i| messages.get(i))))
            .collect();
        let seqs = self.publish_facts(&facts).await;
        #[cfg(feature = "failpoints")]
        super::failpoint::facts_stored(self.shared.failpoint, &self.id, &out);
        self.publish_commands(&out.follow_ups).await;
        self.notify_outcomes(&out, &seqs, &index, &messages).await;

        // Dead letters: commands that do not decode, and those whose handler failed.
        let failed: HashSet<EventId> = out.failed.iter().map(|(id, _)| *id).collect();
        for (id, why) in &out.failed {
            if let Some(&i) = index.get(id) {
                dead.push((
                    messages[i].clone(),
                    why.clone(),
                    DeadLetterReason::HandlerFailed,
                ));
            }
        }
        // After one letter `DLQ` did not take, the rest are handed back untried: a `DLQ` that
        // does not answer costs the tick one request's timeout, not one per letter.
        let mut dlq_failed = false;
        for (message, why, reason) in &dead {
            if !dlq_failed && self.dead_letter(message, why).await {
                self.shared
                    .metrics
                    .dead_letters
                    .with_label_values(&[self.id.as_str(), "commands", reason.as_str()])
                    .inc();
            } else {
                dlq_failed = true;
                self.hand_back(message).await;
            }
        }
        for (i, message) in messages.iter().enumerate() {
            if failed.contains(&commands[i].id) {
                continue;
            }
            if let Err(e) = message.ack().await {
                // Not fatal: the command comes back and is recognised as applied.
                self.bus_error("ack", &e);
            }
        }
        self.count(&out, &commands, dead.len());
        self.broadcast(&out).await;

        let took = started.elapsed();
        self.shared
            .metrics
            .tick_seconds
            .with_label_values(&[self.id.as_str()])
            .observe(took.as_secs_f64());
        for (part, took) in &out.took {
            self.shared
                .metrics
                .system_seconds
                .with_label_values(&[self.id.as_str(), part])
                .observe(took.as_secs_f64());
        }
        if took > self.shared.settings.tick {
            self.shared
                .metrics
                .tick_overruns
                .with_label_values(&[self.id.as_str()])
                .inc();
        }
        self.slowest = self.slowest.max(took.as_secs_f64() * 1000.0);
        self.publish_load();
        if self.last_snapshot.elapsed() >= self.shared.settings.snapshot_every {
            self.snapshot().await;
        }
        debug!(
            commands = commands.len(),
            facts = out.facts.len(),
            took_us = took.as_micros() as u64,
            "tick"
        );
        Ok(())
    }
}
