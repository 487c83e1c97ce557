//! The dead-letter listener: a message that exhausts its deliveries (or that a consumer
//! terminates) is moved to `DLQ` instead of vanishing.
//!
//! JetStream announces both with advisories on core NATS subjects, which nobody may be listening
//! to at that moment. The `ADVISORIES` stream keeps them, and this listener reads them through a
//! durable consumer, so an advisory is handled even when it was raised while every listener was
//! down. For each one it fetches the original message from its stream by sequence and stores it
//! in `DLQ` (with the reason and the number of deliveries); the advisory is acknowledged only
//! after `DLQ` has acknowledged the dead letter. Any number of listeners may run: they share the
//! consumer, and the dead letter's id makes a repeat a no-op.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{AckKind, Context, Message};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tracing::{info, warn};

use crate::dlq::{DeadLetter, dead_letter};
use crate::topology::{ADVISORIES, DLQ, DLQ_LISTENER, dlq_listener_consumer};

/// How long before a failed advisory is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The fields of a max-deliveries or terminated advisory that matter here.
#[derive(Debug, Deserialize)]
struct Advisory {
    #[serde(rename = "type")]
    kind: String,
    stream: String,
    consumer: String,
    stream_seq: u64,
    #[serde(default)]
    deliveries: u64,
    #[serde(default)]
    reason: Option<String>,
}

/// Why the listener stopped.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter listener: {0}")]
pub struct ListenerError(#[from] async_nats::Error);

/// Moves every exhausted or terminated message to `DLQ` until `shutdown` completes.
pub async fn run_dead_letter_listener(
    js: Context,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenerError> {
    let stream = js
        .get_stream(ADVISORIES)
        .await
        .map_err(async_nats::Error::from)?;
    let consumer = stream
        .get_or_create_consumer(DLQ_LISTENER, dlq_listener_consumer())
        .await
        .map_err(async_nats::Error::from)?;
    let mut messages = consumer.messages().await.map_err(async_nats::Error::from)?;
    info!(consumer = DLQ_LISTENER, "dead-letter listener started");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = messages.next() => match next {
                None => break,
                Some(Err(e)) => warn!(error = %e, "advisory consumer error"),
                Some(Ok(message)) => handle(&js, message).await,
            },
        }
    }
    info!(consumer = DLQ_LISTENER, "dead-letter listener stopped");
    Ok(())
}

async fn handle(js: &Context, message: Message) {
    let advisory: Advisory = match serde_json::from_slice(&message.payload) {
        Ok(a) => a,
        Err(e) => {
            warn!(subject = %message.subject, error = %e, "not an advisory; skipped");
            ack(&message, AckKind::Ack).await;
            return;
        }
    };
    if advisory.stream == DLQ || advisory.stream == ADVISORIES {
        // Never dead-letter a dead letter: that could loop. Dead letters stay in DLQ.
        warn!(stream = %advisory.stream, seq = advisory.stream_seq, "advisory about the dead-letter streams; left alone");
        ack(&message, AckKind::Ack).await;
        return;
    }
    let letter = letter_for(js, &advisory).await;
    match dead_letter(js, &letter).await {
        Ok(_) => {
            info!(
                stream = %advisory.stream,
                seq = advisory.stream_seq,
                consumer = %advisory.consumer,
                reason = %letter.reason,
                "dead-lettered"
            );
            ack(&message, AckKind::Ack).await;
        }
        Err(e) => {
            warn!(stream = %advisory.stream, seq = advisory.stream_seq, error = %e, "cannot store dead letter; will retry");
            ack(&message, AckKind::Nak(Some(RETRY_DELAY))).await;
        }
    }
}

async fn letter_for(js: &Context, advisory: &Advisory) -> DeadLetter {
    let why = if advisory.kind.ends_with("terminated") {
        match advisory.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(reason) => format!("terminated by the consumer: {reason}"),
            None => "terminated by the consumer".to_owned(),
        }
    } else {
        format!("exhausted its {} deliveries", advisory.deliveries)
    };
    let original = match js.get_stream(&advisory.stream).await {
        Ok(stream) => stream
            .get_raw_message(advisory.stream_seq)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (subject, headers, payload, reason) = match original {
        Ok(m) => (m.subject.to_string(), m.headers, m.payload, why),
        Err(e) => (
            String::from("unknown"),
            HeaderMap::new(),
            Bytes::new(),
            format!("{why}; the message could not be read back from its stream: {e}"),
        ),
    };
    DeadLetter::new(
        &advisory.stream,
        &subject,
        advisory.stream_seq,
        Some(&advisory.consumer),
        &reason,
        advisory.deliveries,
        headers,
        payload,
    )
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        warn!(error = %e, "cannot acknowledge advisory; it will be redelivered");
    }
}
