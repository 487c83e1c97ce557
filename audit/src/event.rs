//! One event of the log as analysts see it: the envelope in today's shape (older schema
//! versions are upcast on the way, by the same decoder the services use), where and when it was
//! stored, and the request id and client address it came with.

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use nats_topology::headers::{CLIENT_IP, CLIENT_REQUEST_ID, REQUEST_ID};
use schemas::{Actor, Command, Envelope, Fact};
use serde_json::Value;

use crate::select::LogStream;

/// What an event is: a command or a fact, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A command.
    Command(Envelope<Command>),
    /// A fact.
    Fact(Envelope<Fact>),
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The stream it is in.
    pub stream: LogStream,
    /// Its sequence there.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// When the stream stored it.
    pub stored_at: DateTime<Utc>,
    /// The decoded envelope.
    pub body: Body,
    /// The envelope as JSON, in today's shape.
    pub envelope: Value,
    /// The gateway's request id, when a client's request is behind it.
    pub request_id: Option<String>,
    /// The request id the client sent, when it sent one.
    pub client_request_id: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
}

fn header(message: &jetstream::Message, name: &str) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

impl Event {
    /// Reads a message of `stream`; `Err` with why when it is not an event of the log.
    pub fn from_message(stream: LogStream, message: &jetstream::Message) -> Result<Self, String> {
        let info = message
            .info()
            .map_err(|e| format!("no JetStream metadata: {e}"))?;
        let stored_at = info.published;
        let (body, encoded) = match stream {
            LogStream::Commands => {
                let env = Envelope::<Command>::decode(&message.payload)
                    .map_err(|e| format!("the command does not decode: {e}"))?;
                let bytes = env.encode().map_err(|e| e.to_string())?;
                (Body::Command(env), bytes)
            }
            LogStream::Facts => {
                let env = Envelope::<Fact>::decode(&message.payload)
                    .map_err(|e| format!("the fact does not decode: {e}"))?;
                let bytes = env.encode().map_err(|e| e.to_string())?;
                (Body::Fact(env), bytes)
            }
        };
        let envelope = serde_json::from_slice(&encoded).map_err(|e| e.to_string())?;
        Ok(Self {
            stream,
            seq: info.stream_sequence,
            subject: message.subject.to_string(),
            stored_at,
            body,
            envelope,
            request_id: header(message, REQUEST_ID),
            client_request_id: header(message, CLIENT_REQUEST_ID),
            client_ip: header(message, CLIENT_IP),
        })
    }

    /// The envelope's actor.
    pub fn actor(&self) -> &Actor {
        match &self.body {
            Body::Command(e) => &e.actor,
            Body::Fact(e) => &e.actor,
        }
    }

    /// The kind (`move`, `damaged`, ...).
    pub fn kind(&self) -> &'static str {
        match &self.body {
            Body::Command(e) => e.payload.kind().as_str(),
            Body::Fact(e) => e.payload.kind().as_str(),
        }
    }

    /// The region, if the event has one.
    pub fn region(&self) -> Option<&str> {
        match &self.body {
            Body::Command(e) => e.region.as_ref().map(|r| r.as_str()),
            Body::Fact(e) => e.region.as_ref().map(|r| r.as_str()),
        }
    }

    /// When it happened, as the envelope says.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        match &self.body {
            Body::Command(e) => e.occurred_at,
            Body::Fact(e) => e.occurred_at,
        }
    }

    /// The actor's kind (`player`, `admin`, `system`) and id (a player id, or a service name).
    pub fn actor_parts(&self) -> (&'static str, String) {
        match self.actor() {
            Actor::Player { id } => ("player", id.to_string()),
            Actor::Admin { id } => ("admin", id.to_string()),
            Actor::System { service } => ("system", service.clone()),
        }
    }

    /// Whether the event is by or about `player`.
    pub fn concerns(&self, player: schemas::PlayerId) -> bool {
        let by =
            matches!(self.actor(), Actor::Player { id } | Actor::Admin { id } if *id == player);
        let me = schemas::EntityId::from(player);
        by || match &self.body {
            Body::Fact(e) => {
                schemas::fold::players_of(&e.payload).contains(&player)
                    || match &e.payload {
                        // The blows a player strikes and the deaths it deals are about it too.
                        Fact::Damaged(f) => f.attacker == me,
                        Fact::Died(f) => f.killer == Some(me),
                        Fact::NpcDied(f) => f.killer == Some(me),
                        _ => false,
                    }
            }
            Body::Command(_) => false,
        }
    }

    /// The correlation id (the command behind it).
    pub fn correlation_id(&self) -> schemas::EventId {
        match &self.body {
            Body::Command(e) => e.correlation_id,
            Body::Fact(e) => e.correlation_id,
        }
    }

    /// The envelope's payload as JSON.
    pub fn payload(&self) -> &Value {
        &self.envelope["payload"]
    }
}
