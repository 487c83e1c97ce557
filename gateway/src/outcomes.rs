//! Waiting for a command's outcome (`?wait=true`): one subscription per gateway, on its own
//! inbox (see `nats_topology::outcome`), shared by every waiting request.
//!
//! A request registers its command id before the command is published, so an outcome that comes
//! back at once is not missed; dropping the [`Waiter`] (on time-out or when the client goes away)
//! forgets the registration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nats_topology::outcome::Outcome;
use schemas::EventId;
use tokio::sync::oneshot;

/// The registry of waiting requests.
#[derive(Debug)]
pub struct Outcomes {
    inbox: String,
    waiting: Mutex<HashMap<EventId, oneshot::Sender<Outcome>>>,
}

/// One request's wait for one command.
#[derive(Debug)]
pub struct Waiter {
    outcomes: Arc<Outcomes>,
    command: EventId,
    receiver: oneshot::Receiver<Outcome>,
}

impl Outcomes {
    /// Subscribes to this gateway's inbox and dispatches what arrives until the connection ends.
    pub async fn start(
        client: &async_nats::Client,
        gateway_id: &str,
    ) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let inbox = nats_topology::outcome::inbox(gateway_id);
        let mut subscription = client.subscribe(inbox.clone()).await?;
        let outcomes = Arc::new(Self {
            inbox,
            waiting: Mutex::new(HashMap::new()),
        });
        let dispatcher = Arc::clone(&outcomes);
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                match serde_json::from_slice::<Outcome>(&message.payload) {
                    Ok(outcome) => dispatcher.deliver(outcome),
                    Err(e) => tracing::warn!(error = %e, "not an outcome; ignored"),
                }
            }
        });
        Ok(outcomes)
    }

    /// The subject commands name in their `Outcome-Inbox` header.
    pub fn inbox(&self) -> &str {
        &self.inbox
    }

    /// Starts waiting for `command`'s outcome.
    pub fn register(self: &Arc<Self>, command: EventId) -> Waiter {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(command, sender);
        }
        Waiter {
            outcomes: Arc::clone(self),
            command,
            receiver,
        }
    }

    fn deliver(&self, outcome: Outcome) {
        let sender = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&outcome.command_id));
        if let Some(sender) = sender {
            let _ = sender.send(outcome);
        }
    }

    /// How many requests are waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().map_or(0, |w| w.len())
    }
}

impl Waiter {
    /// The outcome, or `None` when it did not come within `limit`.
    pub async fn wait(mut self, limit: Duration) -> Option<Outcome> {
        tokio::time::timeout(limit, &mut self.receiver)
            .await
            .ok()?
            .ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.outcomes.waiting.lock() {
            waiting.remove(&self.command);
        }
    }
}
