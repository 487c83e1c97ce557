//! What a region publishes that must be stored before its tick goes on: its facts (with the
//! request id and client address of the command each answers) and the follow-up commands they
//! call for in neighbouring regions. Each is retried with the same ids until stored, so a retry
//! never stores one twice. Dead letters too, but in one attempt: see [`Running::dead_letter`].

use async_nats::jetstream::{self, AckKind};
use nats_topology::dlq::{DeadLetter, dead_letter};
use nats_topology::headers::{CLIENT_IP, REQUEST_ID};
use nats_topology::publish::{Outgoing, publish_all};
use schemas::{Command, Envelope, Fact};
use tracing::{error, warn};

use super::{Backoff, Running};

impl Running {
    /// Stores the facts in order, retrying (with the same ids, so nothing is stored twice) until
    /// every one is; the `FACTS` sequence of each (0 for one that cannot be encoded and is left
    /// out).
    pub(super) async fn publish_facts(
        &mut self,
        facts: &[(&Envelope<Fact>, Option<&jetstream::Message>)],
    ) -> Vec<u64> {
        if facts.is_empty() {
            return Vec::new();
        }
        let mut outgoing = Vec::with_capacity(facts.len());
        let mut sent = Vec::with_capacity(facts.len());
        let mut kinds = Vec::with_capacity(facts.len());
        for (i, (env, cause)) in facts.iter().enumerate() {
            let mut message = match Outgoing::fact(env) {
                Ok(m) => m,
                Err(e) => {
                    error!(region = %self.id, fact = %env.id, error = %e, "a fact cannot be encoded; left out");
                    continue;
                }
            };
            if let Some(headers) = cause.and_then(|m| m.headers.as_ref()) {
                for name in [REQUEST_ID, CLIENT_IP] {
                    if let Some(value) = headers.get(name) {
                        message = message.header(name, value.as_str());
                    }
                }
            }
            outgoing.push(message);
            sent.push(i);
            kinds.push(env.payload.kind());
        }
        let stored_at = self.publish_until_stored(outgoing, "publish_facts").await;
        let mut seqs = vec![0; facts.len()];
        for (i, seq) in sent.into_iter().zip(stored_at) {
            seqs[i] = seq;
            self.facts_seq = self.facts_seq.max(seq);
        }
        let m = &self.shared.metrics;
        // Process-wide: the regions of this process store into the one stream. Two regions
        // racing here may leave the lower of two close numbers for a moment; the next fact
        // corrects it.
        let seq = i64::try_from(self.facts_seq).unwrap_or(i64::MAX);
        if seq > m.facts_sequence.get() {
            m.facts_sequence.set(seq);
        }
        for kind in kinds {
            m.facts
                .with_label_values(&[self.id.as_str(), kind.as_str()])
                .inc();
        }
        seqs
    }

    pub(super) async fn publish_commands(&self, commands: &[Envelope<Command>]) {
        let outgoing: Vec<_> = commands
            .iter()
            .filter_map(|c| match Outgoing::command(c) {
                Ok(m) => Some(m),
                Err(e) => {
                    error!(region = %self.id, command = %c.id, error = %e, "a command for a neighbour cannot be encoded");
                    None
                }
            })
            .collect();
        if !outgoing.is_empty() {
            self.publish_until_stored(outgoing, "publish_follow_ups")
                .await;
        }
    }

    /// Publishes in order until every message is stored; the stream sequence of each (0 for one
    /// the stream refuses for good, left out with an error in the log).
    async fn publish_until_stored(&self, mut outgoing: Vec<Outgoing>, what: &str) -> Vec<u64> {
        let mut backoff = Backoff::new();
        let mut seqs = Vec::with_capacity(outgoing.len());
        loop {
            let results = publish_all(&self.shared.js, outgoing.clone()).await;
            let first_failed = results.iter().position(Result::is_err);
            // A message stored before is recognised by its id, and acknowledged with the
            // sequence it was stored at.
            seqs.extend(
                results[..first_failed.unwrap_or(results.len())]
                    .iter()
                    .flatten()
                    .map(|ack| ack.sequence),
            );
            let Some(first) = first_failed else {
                return seqs;
            };
            let Some(Err(e)) = results.get(first) else {
                unreachable!("the first failure is a failure");
            };
            if refused_for_good(e) {
                // Waiting would not change the answer, and everything behind it would wait too
                // (a region recovering would never tick): it is left out.
                error!(region = %self.id, subject = %outgoing[first].subject, error = %e, "{what}: the stream refuses this message for good; left out");
                seqs.push(0);
                outgoing.drain(..=first);
                if outgoing.is_empty() {
                    return seqs;
                }
                continue;
            }
            self.bus_error(what, e);
            // From the first failure on, in order again; those already stored are recognised
            // by their ids and stored once.
            outgoing.drain(..first);
            backoff.wait().await;
        }
    }

    /// Stores `message`'s dead letter and ends its delivery; `false` when `DLQ` did not take it,
    /// and the caller hands the command back ([`Running::hand_back`]).
    ///
    /// One attempt, not a wait until stored: a `DLQ` that refuses (full, and it discards new
    /// letters) or does not answer would otherwise stop the region's tick for every player in
    /// it.
    pub(super) async fn dead_letter(&self, message: &jetstream::Message, why: &str) -> bool {
        warn!(region = %self.id, subject = %message.subject, reason = why, "command dead-lettered");
        let letter = match DeadLetter::from_delivery(message, why) {
            Ok(l) => l,
            Err(e) => {
                error!(region = %self.id, error = %e, "cannot describe a dead letter");
                return false;
            }
        };
        if let Err(e) = dead_letter(&self.shared.js, &letter).await {
            self.bus_error("dead_letter", &e);
            return false;
        }
        // Stored in DLQ: this delivery is over for good.
        if let Err(e) = message.ack_with(AckKind::Term).await {
            self.bus_error("ack", &e);
        }
        true
    }

    /// Hands back a command whose dead letter was not stored, to be delivered again after the
    /// consumer's `ack_wait` and dead-lettered then. Once its deliveries run out, JetStream's
    /// advisory has the dead-letter listener store it whenever `DLQ` has room. It stays in
    /// `COMMANDS` meanwhile, so nothing is lost either way, and the letter's id keeps it stored
    /// once.
    pub(super) async fn hand_back(&self, message: &jetstream::Message) {
        let later = AckKind::Nak(Some(self.shared.settings.ack_wait));
        if let Err(e) = message.ack_with(later).await {
            // Not acknowledged either way: it comes back once `ack_wait` has passed.
            self.bus_error("nak", &e);
        }
    }
}

/// Whether a publish was refused for what the message is, not for the state of the bus: larger
/// than the server or the stream takes.
fn refused_for_good(e: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::PublishErrorKind;
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => true,
        PublishErrorKind::Other => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
            .is_some_and(|js| js.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM),
        _ => false,
    }
}
