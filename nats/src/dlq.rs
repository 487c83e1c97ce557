//! Dead letters: a message that cannot be processed is moved to the `DLQ` stream with headers
//! saying where it came from, why it was given up on and how many attempts were made, so that
//! nothing accepted is ever silently dropped. Admins list dead letters and redrive them to their
//! origin subject.
//!
//! A dead letter is published on `dlq.<origin stream, lower case>.<origin subject>` with the
//! `Nats-Msg-Id` `dlq:<origin stream>:<origin sequence>`: the same message dead-lettered twice (by
//! its consumer and by the advisory listener, or by a consumer that crashed before acking) is
//! stored once.

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::headers::{self, *};
use crate::publish::{Outgoing, publish};

/// The first token of every dead letter's subject.
pub const DLQ_PREFIX: &str = "dlq";

/// A message given up on, with where it came from and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The stream it came from (`COMMANDS`, `FACTS`, ...).
    pub origin_stream: String,
    /// The subject it was published on; a redrive publishes it there again.
    pub origin_subject: String,
    /// Its sequence in the origin stream.
    pub origin_seq: u64,
    /// Its own `Nats-Msg-Id`, if it had one.
    pub origin_msg_id: Option<String>,
    /// The consumer that gave up on it, if one did.
    pub consumer: Option<String>,
    /// Why it was given up on.
    pub reason: String,
    /// How many deliveries were attempted.
    pub attempts: u64,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
    /// Its original headers, less `Nats-Msg-Id` (kept in `origin_msg_id`).
    pub headers: HeaderMap,
    /// Its original body, byte for byte.
    pub payload: Bytes,
}

/// A `DLQ` message whose headers do not describe a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dead letter: {0}")]
pub struct NotADeadLetter(pub String);

impl DeadLetter {
    /// A dead letter for a message a consumer is giving up on.
    pub fn from_delivery(
        message: &jetstream::Message,
        reason: &str,
    ) -> Result<Self, NotADeadLetter> {
        let info = message
            .info()
            .map_err(|e| NotADeadLetter(format!("no JetStream metadata: {e}")))?;
        let original = message.headers.clone().unwrap_or_default();
        Ok(Self::new(
            info.stream,
            message.subject.as_str(),
            info.stream_sequence,
            Some(info.consumer),
            reason,
            u64::try_from(info.delivered).unwrap_or(0),
            original,
            message.payload.clone(),
        ))
    }

    /// A dead letter from its parts; `headers` are the message's own.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        origin_stream: &str,
        origin_subject: &str,
        origin_seq: u64,
        consumer: Option<&str>,
        reason: &str,
        attempts: u64,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Self {
        let origin_msg_id = headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned());
        headers = without(&headers, async_nats::header::NATS_MESSAGE_ID.as_ref());
        Self {
            origin_stream: origin_stream.to_owned(),
            origin_subject: origin_subject.to_owned(),
            origin_seq,
            origin_msg_id,
            consumer: consumer.map(str::to_owned),
            reason: headers::value(reason),
            attempts,
            at: Utc::now(),
            headers,
            payload,
        }
    }

    /// The subject it is stored under in `DLQ`.
    pub fn subject(&self) -> String {
        format!(
            "{DLQ_PREFIX}.{}.{}",
            self.origin_stream.to_lowercase(),
            self.origin_subject
        )
    }

    /// Its `Nats-Msg-Id` in `DLQ`: one dead letter per origin message.
    pub fn msg_id(&self) -> String {
        format!("dlq:{}:{}", self.origin_stream, self.origin_seq)
    }

    /// The message to publish to `DLQ`.
    pub fn to_outgoing(&self) -> Outgoing {
        let mut out = Outgoing::new(self.subject(), self.msg_id(), self.payload.clone());
        for (name, values) in self.headers.iter() {
            for value in values {
                out.headers.append(name.clone(), value.clone());
            }
        }
        out = out
            .header(DLQ_ORIGIN_STREAM, &self.origin_stream)
            .header(DLQ_ORIGIN_SUBJECT, &self.origin_subject)
            .header(DLQ_ORIGIN_SEQ, &self.origin_seq.to_string())
            .header(DLQ_REASON, &self.reason)
            .header(DLQ_ATTEMPTS, &self.attempts.to_string())
            .header(
                DLQ_AT,
                &self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            );
        if let Some(id) = &self.origin_msg_id {
            out = out.header(DLQ_ORIGIN_MSG_ID, id);
        }
        if let Some(consumer) = &self.consumer {
            out = out.header(DLQ_CONSUMER, consumer);
        }
        out
    }

    /// Reads a dead letter back from a `DLQ` message's headers and body.
    pub fn parse(headers: &HeaderMap, payload: Bytes) -> Result<Self, NotADeadLetter> {
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let need =
            |name: &str| get(name).ok_or_else(|| NotADeadLetter(format!("no {name} header")));
        let number = |name: &str| {
            need(name)?
                .parse::<u64>()
                .map_err(|_| NotADeadLetter(format!("{name} is not a number")))
        };
        let at = DateTime::parse_from_rfc3339(&need(DLQ_AT)?)
            .map_err(|_| NotADeadLetter(format!("{DLQ_AT} is not RFC 3339")))?
            .with_timezone(&Utc);
        let mut original = headers.clone();
        for name in [
            async_nats::header::NATS_MESSAGE_ID.as_ref(),
            DLQ_ORIGIN_STREAM,
            DLQ_ORIGIN_SUBJECT,
            DLQ_ORIGIN_SEQ,
            DLQ_ORIGIN_MSG_ID,
            DLQ_CONSUMER,
            DLQ_REASON,
            DLQ_ATTEMPTS,
            DLQ_AT,
        ] {
            original = without(&original, name);
        }
        Ok(Self {
            origin_stream: need(DLQ_ORIGIN_STREAM)?,
            origin_subject: need(DLQ_ORIGIN_SUBJECT)?,
            origin_seq: number(DLQ_ORIGIN_SEQ)?,
            origin_msg_id: get(DLQ_ORIGIN_MSG_ID),
            consumer: get(DLQ_CONSUMER),
            reason: need(DLQ_REASON)?,
            attempts: number(DLQ_ATTEMPTS)?,
            at,
            headers: original,
            payload,
        })
    }
}

/// A copy of `headers` without `name`.
fn without(headers: &HeaderMap, name: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (key, values) in headers.iter() {
        if AsRef::<str>::as_ref(key) != name {
            for value in values {
                out.append(key.clone(), value.clone());
            }
        }
    }
    out
}

/// Stores a dead letter in `DLQ` and waits for JetStream to acknowledge it. Only then may the
/// caller acknowledge the original message.
pub async fn dead_letter(js: &Context, letter: &DeadLetter) -> Result<PublishAck, PublishError> {
    publish(js, letter.to_outgoing()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_survives_its_headers() {
        let mut original = HeaderMap::new();
        original.insert(async_nats::header::NATS_MESSAGE_ID, "cmd-1");
        original.insert(REQUEST_ID, "req-9");
        let letter = DeadLetter::new(
            "COMMANDS",
            "cmd.high.north-1.attack",
            42,
            Some("region-north-1"),
            "handler failed:\nboom",
            5,
            original,
            Bytes::from_static(b"{\"x\":1}"),
        );
        assert_eq!(letter.subject(), "dlq.commands.cmd.high.north-1.attack");
        assert_eq!(letter.msg_id(), "dlq:COMMANDS:42");
        assert_eq!(letter.origin_msg_id.as_deref(), Some("cmd-1"));
        assert_eq!(letter.reason, "handler failed: boom");

        let out = letter.to_outgoing();
        let parsed = DeadLetter::parse(&out.headers, out.payload.clone()).expect("parses");
        assert_eq!(parsed.at.timestamp_millis(), letter.at.timestamp_millis());
        assert_eq!(
            DeadLetter {
                at: letter.at,
                ..parsed
            },
            letter
        );
    }

    #[test]
    fn headers_without_dead_letter_fields_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(DLQ_ORIGIN_STREAM, "COMMANDS");
        assert!(DeadLetter::parse(&headers, Bytes::new()).is_err());
    }
}
