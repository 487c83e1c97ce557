//! Connecting to JetStream and publishing with `Nats-Msg-Id` and awaited acknowledgements.
//!
//! The JetStream context bounds the acknowledgements in flight to [`MAX_ACK_INFLIGHT`]: a burst
//! of publishes waits for room instead of piling up without bound and starving the consumers on
//! the same server. [`publish_all`] pipelines a batch: every message is sent in order without
//! waiting for the one before it to be acknowledged, and each acknowledgement is awaited.

use std::fmt;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{ContextBuilder, PublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use schemas::{Command, Envelope, Fact};
use secrecy::{ExposeSecret, SecretString};

use crate::headers;

/// The most publish acknowledgements one connection awaits at once.
pub const MAX_ACK_INFLIGHT: usize = 1024;

/// How long a JetStream request or acknowledgement may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The JetStream context every service uses: bounded acks in flight, bounded waits.
pub fn context(client: async_nats::Client) -> Context {
    ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .max_ack_inflight(MAX_ACK_INFLIGHT)
        .backpressure_on_inflight(true)
        .build(client)
}

/// Who a service is to NATS: a user and password (`NATS_USER`, `NATS_PASSWORD`), or nobody, on a
/// server that asks for nothing (the tests' own). `nats/config/users.conf` says what each user
/// may do. The password is never printed.
#[derive(Clone, Default)]
pub struct Credentials {
    user: Option<(String, SecretString)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some((user, _)) => write!(f, "Credentials({user}, password redacted)"),
            None => f.write_str("Credentials(none)"),
        }
    }
}

impl Credentials {
    /// A user and its password.
    pub fn user(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: Some((user.into(), SecretString::from(password.into()))),
        }
    }

    /// `NATS_USER` and `NATS_PASSWORD` from `env` (both or neither); `Err` names the variable
    /// that is missing.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, service::SettingsError> {
        let missing = |key| {
            service::bad(
                key,
                "is required with the other of NATS_USER and NATS_PASSWORD",
            )
        };
        match (env("NATS_USER"), env("NATS_PASSWORD")) {
            (Some(user), Some(password)) => Ok(Self::user(user, password)),
            (None, None) => Ok(Self::default()),
            (Some(_), None) => Err(missing("NATS_PASSWORD")),
            (None, Some(_)) => Err(missing("NATS_USER")),
        }
    }

    /// The user, when there is one.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }
}

/// Connects to NATS as `name` (shown in the server's connection list) with `credentials`, and
/// returns the client and its JetStream context. `url` may list several servers separated by
/// commas (the nodes of a cluster).
pub async fn connect(
    url: &str,
    name: &str,
    credentials: &Credentials,
) -> Result<(async_nats::Client, Context), async_nats::ConnectError> {
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut options = async_nats::ConnectOptions::new().name(name);
    if let Some((user, password)) = &credentials.user {
        options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
    }
    let client = options.connect(servers).await?;
    let js = context(client.clone());
    Ok((client, js))
}

/// A message ready for JetStream: subject, id for de-duplication, headers, bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it goes.
    pub subject: String,
    /// Its `Nats-Msg-Id`: the same id published twice within the duplicate window is stored once.
    pub msg_id: String,
    /// Headers besides `Nats-Msg-Id`.
    pub headers: HeaderMap,
    /// The body.
    pub payload: Bytes,
}

/// Why a message could not be built for the bus.
#[derive(Debug, thiserror::Error)]
pub enum OutgoingError {
    /// A command has no region yet, so no subject.
    #[error("the command has no region, so no subject")]
    NoRegion,
    /// The envelope could not be written as JSON.
    #[error("cannot encode the envelope: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Outgoing {
    /// A message with its subject, id and body.
    pub fn new(
        subject: impl Into<String>,
        msg_id: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            subject: subject.into(),
            msg_id: msg_id.into(),
            headers: HeaderMap::new(),
            payload: payload.into(),
        }
    }

    /// A command on its subject, with its id as `Nats-Msg-Id`.
    pub fn command(env: &Envelope<Command>) -> Result<Self, OutgoingError> {
        let subject = env.subject().ok_or(OutgoingError::NoRegion)?;
        Ok(Self::new(
            subject.to_string(),
            env.id.to_string(),
            env.encode()?,
        ))
    }

    /// A fact on its subject, with its id as `Nats-Msg-Id`.
    pub fn fact(env: &Envelope<Fact>) -> Result<Self, OutgoingError> {
        Ok(Self::new(
            env.subject().to_string(),
            env.id.to_string(),
            env.encode()?,
        ))
    }

    /// Adds a header (see [`crate::headers`] for the ones the project uses).
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(name, headers::value(value));
        self
    }

    fn into_publish(self) -> (String, PublishMessage) {
        let message = PublishMessage::build()
            .payload(self.payload)
            .headers(self.headers)
            .message_id(self.msg_id);
        (self.subject, message)
    }
}

/// Publishes one message and waits for JetStream to store it.
pub async fn publish(js: &Context, message: Outgoing) -> Result<PublishAck, PublishError> {
    let (subject, message) = message.into_publish();
    js.send_publish(subject, message).await?.await
}

/// Publishes a batch in order, pipelined, and returns each message's acknowledgement in the
/// batch's order. A duplicate (`PublishAck::duplicate`) means the message was already stored.
pub async fn publish_all(
    js: &Context,
    messages: impl IntoIterator<Item = Outgoing>,
) -> Vec<Result<PublishAck, PublishError>> {
    let mut pending = Vec::new();
    for message in messages {
        let (subject, message) = message.into_publish();
        pending.push(match js.send_publish(subject, message).await {
            // Awaited in a task of its own, so the acknowledgement releases its place in the
            // bounded window as soon as it arrives, while the rest of the batch is still sent.
            Ok(ack) => Pending::Sent(tokio::spawn(ack.into_future())),
            Err(e) => Pending::Failed(e),
        });
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        results.push(match p {
            Pending::Sent(task) => task.await.unwrap_or_else(|e| {
                Err(PublishError::with_source(
                    jetstream::context::PublishErrorKind::Other,
                    e,
                ))
            }),
            Pending::Failed(e) => Err(e),
        });
    }
    results
}

enum Pending {
    Sent(tokio::task::JoinHandle<Result<PublishAck, PublishError>>),
    Failed(PublishError),
}
