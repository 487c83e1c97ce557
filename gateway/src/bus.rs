//! Publishing to JetStream from requests: fast 503s while NATS is down.
//!
//! A request never waits on a bus that is known to be down: while the client is disconnected,
//! or while the circuit breaker is open after [`FAILURES_TO_OPEN`] publishes in a row failed,
//! the answer is 503 at once. After [`OPEN_FOR`] one request is let through to probe.
//!
//! A publish that timed out may still have been stored: its 503 says so, and a retry with the
//! same `Idempotency-Key` reuses the command id, which JetStream stores once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::publish::PublishAck;

use crate::AppState;
use crate::error::ApiError;

/// Failed publishes in a row that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long the breaker stays open before a probe.
pub const OPEN_FOR: Duration = Duration::from_secs(2);
/// How long a publish may wait for JetStream's acknowledgement.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts failures and opens after too many in a row.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<(u32, Option<Instant>)>,
}

impl Breaker {
    /// Whether a publish may be tried now.
    pub fn allows(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        match state.1 {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // Half open: this caller probes; others wait for its outcome.
                state.1 = Some(Instant::now() + OPEN_FOR);
                true
            }
            None => true,
        }
    }

    /// Records a stored publish: closes the breaker.
    pub fn succeeded(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = (0, None);
        }
    }

    /// Records a failed publish.
    pub fn failed(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.0 += 1;
            if state.0 >= FAILURES_TO_OPEN {
                state.1 = Some(Instant::now() + OPEN_FOR);
            }
        }
    }
}

impl AppState {
    /// Publishes one message and waits for JetStream's acknowledgement, or answers 503.
    pub async fn publish(&self, message: nats_topology::Outgoing) -> Result<PublishAck, ApiError> {
        if self.nats().connection_state() != async_nats::connection::State::Connected
            || !self.breaker().allows()
        {
            self.metrics().dependency_error("nats");
            return Err(ApiError::unavailable("the event bus"));
        }
        let outcome =
            tokio::time::timeout(PUBLISH_TIMEOUT, nats_topology::publish(self.js(), message)).await;
        match outcome {
            Ok(Ok(ack)) => {
                self.breaker().succeeded();
                Ok(ack)
            }
            failed => {
                self.breaker().failed();
                self.metrics().dependency_error("nats");
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no acknowledgement in time".to_owned(),
                };
                tracing::warn!(error = %why, "publish failed");
                Err(ApiError {
                    message: "the event bus did not confirm the command; it may or may not be stored: retry with the same Idempotency-Key".to_owned(),
                    ..ApiError::unavailable("the event bus")
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_and_closes_on_success() {
        let breaker = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            breaker.failed();
            assert!(breaker.allows());
        }
        breaker.failed();
        assert!(!breaker.allows());
        breaker.succeeded();
        assert!(breaker.allows());
    }
}
