//! How a waiting gateway learns a command's outcome without listening to every fact.
//!
//! A gateway that waits for an outcome (`POST /v1/commands?wait=true`) puts its own inbox
//! subject in the command's [`OUTCOME_INBOX`] header. After the region simulator has stored the
//! command's facts in `FACTS`, it publishes one [`Outcome`] (the command id and those facts) to
//! that inbox on core NATS. The facts in `FACTS` are the record; the outcome is only a
//! notification, so one that is lost costs the client a 202 instead of a 200, never data.

use schemas::{EventId, Fact, RejectReason};
use serde::{Deserialize, Serialize};

/// The header naming the inbox to notify.
pub const OUTCOME_INBOX: &str = "Outcome-Inbox";

/// The prefix of every gateway's inbox: `outcome.<gateway id>`.
pub const OUTCOME_PREFIX: &str = "outcome";

/// The inbox subject of one gateway.
pub fn inbox(gateway_id: &str) -> String {
    format!("{OUTCOME_PREFIX}.{gateway_id}")
}

/// The longest gateway id an inbox may carry.
pub const MAX_INBOX_ID: usize = 128;

/// Whether `subject` is a gateway's inbox, `outcome.<gateway id>` with one plain token for the
/// id. The subject comes from a command's header, which whoever may publish a command writes: a
/// simulator notifies nothing else, as it may publish where gateways may not (leases, facts).
pub fn is_inbox(subject: &str) -> bool {
    subject
        .strip_prefix(OUTCOME_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|id| {
            (1..=MAX_INBOX_ID).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
        })
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The command.
    pub command_id: EventId,
    /// Its facts, as stored in `FACTS` (each an encoded envelope, as JSON).
    pub facts: Vec<serde_json::Value>,
    /// The `FACTS` sequence of each fact, in the same order (empty from a simulator that did
    /// not send them).
    #[serde(default)]
    pub seqs: Vec<u64>,
}

impl Outcome {
    /// `Some(reason)` when the command was rejected, `None` when it was applied.
    pub fn rejection(&self) -> Option<(RejectReason, String)> {
        self.facts.iter().find_map(|env| {
            let payload = env.get("payload")?;
            match serde_json::from_value::<Fact>(payload.clone()).ok()? {
                Fact::Rejected(r) => Some((r.reason, r.message)),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use schemas::fact::Rejected;
    use schemas::{Actor, CommandKind, Envelope};

    use super::*;

    #[test]
    fn only_a_gateways_inbox_is_an_inbox() {
        assert!(is_inbox(&inbox("gateway-1")));
        assert!(is_inbox(&inbox(&"g".repeat(MAX_INBOX_ID))));
        for forged in [
            "",
            "outcome",
            "outcome.",
            "outcome.a.b",
            "outcome.*",
            "outcome.>",
            "outcome.a b",
            "outcome.a\u{200b}",
            "outcome.a\n",
            "outcomes.a",
            "$KV.region_leases.west",
            "$KV.player_progress.0190b3d2-5e2f-7a11-8000-000000000000",
            "fact.west.moved",
            "cmd.high.west.attack",
            "_INBOX.x",
        ] {
            assert!(!is_inbox(forged), "{forged:?}");
        }
        assert!(!is_inbox(&inbox(&"g".repeat(MAX_INBOX_ID + 1))));
    }

    #[test]
    fn a_rejected_fact_makes_a_rejected_outcome() {
        let fact = Fact::Rejected(Rejected {
            command: CommandKind::Pickup,
            reason: RejectReason::ItemGone,
            message: "someone was faster".into(),
        });
        let env = Envelope::new(
            Actor::System {
                service: "region-sim".into(),
            },
            None,
            fact,
        );
        let json = serde_json::from_slice(&env.encode().expect("encode")).expect("json");
        let outcome = Outcome {
            command_id: env.id,
            facts: vec![json],
            seqs: vec![7],
        };
        assert_eq!(
            outcome.rejection().map(|r| r.0),
            Some(RejectReason::ItemGone)
        );
        assert_eq!(
            Outcome {
                command_id: env.id,
                facts: vec![],
                seqs: vec![],
            }
            .rejection(),
            None
        );
    }
}
