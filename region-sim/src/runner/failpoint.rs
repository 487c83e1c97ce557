//! Places to make the process die abruptly, run slow, or fail a handler, for the tests that
//! prove nothing is lost then. Compiled only with the `failpoints` feature (the tests turn it
//! on); a release build has none of it. A process built with it still runs normally unless
//! `SIM_FAILPOINT` names one.

use std::sync::OnceLock;
use std::time::Duration;

use schemas::{Command, Envelope, RegionId};
use tracing::error;

use crate::region::TickOutput;

/// A place to make the process die abruptly, for the tests that prove nothing is lost then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// Abort right after a tick that applied commands has stored its facts, before its
    /// hand-offs are sent and its commands acknowledged.
    AbortAfterFacts,
    /// Abort right after storing a fact that calls for a command in a neighbouring region (a
    /// hand-off's `handed_off_out`, a blow's `struck_across`, a kill's `reward_sent`), before
    /// that command is sent.
    AbortAfterHandOffFact,
    /// Make every tick take [`SLOW_TICK`] longer, as a process on an overloaded machine would.
    SlowTicks,
    /// Make the handler of a chat saying [`FAILING_CHAT`] fail (panic), as a handler with a
    /// defect would.
    FailChat,
}

/// The chat line whose handler fails under [`Failpoint::FailChat`].
pub const FAILING_CHAT: &str = "failpoint: fail this chat";

/// How much longer a tick takes under [`Failpoint::SlowTicks`].
pub const SLOW_TICK: Duration = Duration::from_millis(40);

impl Failpoint {
    /// Reads `SIM_FAILPOINT` (`abort-after-facts`, `abort-after-hand-off-fact`, `slow-ticks`,
    /// `fail-chat`).
    pub fn from_env() -> Option<Self> {
        match std::env::var("SIM_FAILPOINT").ok()?.as_str() {
            "abort-after-facts" => Some(Self::AbortAfterFacts),
            "abort-after-hand-off-fact" => Some(Self::AbortAfterHandOffFact),
            "slow-ticks" => Some(Self::SlowTicks),
            "fail-chat" => Some(Self::FailChat),
            _ => None,
        }
    }
}

/// Under [`Failpoint::SlowTicks`], the time a tick spends on an overloaded machine.
pub(super) async fn slow_tick(failpoint: Option<Failpoint>) {
    if failpoint == Some(Failpoint::SlowTicks) {
        tokio::time::sleep(SLOW_TICK).await;
    }
}

/// Once a tick's facts are stored: the two aborts, when their moment has come.
pub(super) fn facts_stored(failpoint: Option<Failpoint>, region: &RegionId, out: &TickOutput) {
    if !out.outcomes.is_empty() && failpoint == Some(Failpoint::AbortAfterFacts) {
        error!(region = %region, "failpoint abort-after-facts");
        std::process::abort();
    }
    if !out.follow_ups.is_empty() && failpoint == Some(Failpoint::AbortAfterHandOffFact) {
        error!(region = %region, "failpoint abort-after-hand-off-fact");
        std::process::abort();
    }
}

/// Under [`Failpoint::FailChat`], fails the handler of `cmd` when it is a chat saying
/// [`FAILING_CHAT`]; each time is logged, so a test can count how often the handler ran.
pub(crate) fn handler(cmd: &Envelope<Command>) {
    static FAILPOINT: OnceLock<Option<Failpoint>> = OnceLock::new();
    if let Command::Chat(chat) = &cmd.payload
        && chat.text == FAILING_CHAT
        && *FAILPOINT.get_or_init(Failpoint::from_env) == Some(Failpoint::FailChat)
    {
        error!(command = %cmd.id, "failpoint fail-chat: the chat handler runs and fails");
        panic!("the chat handler failed at its failpoint");
    }
}
