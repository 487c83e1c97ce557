//! One event of the log as analysts see it: the envelope in today's shape, where and when it was
//! stored, and the request id and client address it came with.
//!
//! Reading is as light as the log allows: an envelope already in today's schema version is kept
//! as the bytes the log holds, and only its frame (id, kind, version, time, actor, region,
//! correlation) is read; the payload is handed on as its JSON text. An envelope of an older
//! version is decoded with the services' own decoder, which upcasts it, and written again in
//! today's shape. The typed envelope ([`Event::fact`], [`Event::command`]) is decoded when a
//! filter or a fold needs it.

use std::borrow::Cow;
use std::ops::Range;
use std::str::FromStr;

use async_nats::jetstream;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use nats_topology::headers::{self, CLIENT_IP, CLIENT_REQUEST_ID, REQUEST_ID};
use schemas::{Actor, Command, CommandKind, Envelope, Fact, FactKind};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::select::LogStream;

/// The frame of an envelope, borrowed from its bytes.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    schema_version: u16,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    actor: Actor,
    #[serde(default, borrow)]
    region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    correlation_id: Cow<'a, str>,
    #[serde(default, borrow)]
    causation_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: &'a RawValue,
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
    /// The envelope as JSON, in today's shape.
    pub json: Bytes,
    /// The event's id.
    pub id: String,
    /// Its kind (`move`, `damaged`, ...).
    pub kind: String,
    /// Its schema version (today's).
    pub schema_version: u16,
    /// When it happened, as the envelope writes it (RFC 3339).
    pub occurred_at_text: String,
    /// Who.
    pub actor: Actor,
    /// Its region, if it has one.
    pub region: Option<String>,
    /// The command behind it.
    pub correlation_id: String,
    /// What caused it.
    pub causation_id: Option<String>,
    /// Where the payload's JSON lies in `json`.
    payload: Range<usize>,
    /// The gateway's request id, when a client's request is behind it.
    pub request_id: Option<String>,
    /// The request id the client sent, when it sent one.
    pub client_request_id: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
}

/// Today's version of a kind of `stream`, or `None` for a kind it does not have.
fn current_version(stream: LogStream, kind: &str) -> Option<u16> {
    match stream {
        LogStream::Commands => CommandKind::from_str(kind)
            .ok()
            .map(CommandKind::schema_version),
        LogStream::Facts => FactKind::from_str(kind).ok().map(FactKind::schema_version),
    }
}

/// `bytes` written again in today's shape: decoded (which upcasts) and encoded.
fn upcast(stream: LogStream, bytes: &[u8]) -> Result<Bytes, String> {
    let encoded = match stream {
        LogStream::Commands => Envelope::<Command>::decode(bytes)
            .map_err(|e| e.to_string())?
            .encode(),
        LogStream::Facts => Envelope::<Fact>::decode(bytes)
            .map_err(|e| e.to_string())?
            .encode(),
    };
    encoded.map(Bytes::from).map_err(|e| e.to_string())
}

impl Event {
    /// Reads a message of `stream`; `Err` with why when it is not an event of the log.
    pub fn from_message(stream: LogStream, message: &jetstream::Message) -> Result<Self, String> {
        let stored = &message.payload;
        let frame: Frame<'_> =
            serde_json::from_slice(stored).map_err(|e| format!("not an envelope: {e}"))?;
        let current = current_version(stream, &frame.kind)
            .ok_or_else(|| format!("no {} of kind {:?}", stream.name(), frame.kind))?;
        if frame.schema_version != current {
            // Rare: an envelope of an older version, upcast and read again.
            let json = upcast(stream, stored)?;
            return Self::from_json(stream, message, json);
        }
        Self::with_frame(stream, message, stored.clone(), frame)
    }

    fn from_json(
        stream: LogStream,
        message: &jetstream::Message,
        json: Bytes,
    ) -> Result<Self, String> {
        // The frame borrows from `json`; it is read again from the same bytes below.
        let copy = json.clone();
        let frame: Frame<'_> =
            serde_json::from_slice(&copy).map_err(|e| format!("not an envelope: {e}"))?;
        Self::with_frame(stream, message, json, frame)
    }

    fn with_frame(
        stream: LogStream,
        message: &jetstream::Message,
        json: Bytes,
        frame: Frame<'_>,
    ) -> Result<Self, String> {
        let info = message
            .info()
            .map_err(|e| format!("no JetStream metadata: {e}"))?;
        let start = frame.payload.get().as_ptr() as usize - json.as_ptr() as usize;
        let payload = start..start + frame.payload.get().len();
        Ok(Self {
            stream,
            seq: info.stream_sequence,
            subject: message.subject.to_string(),
            stored_at: info.published,
            id: frame.id.into_owned(),
            kind: frame.kind.into_owned(),
            schema_version: frame.schema_version,
            occurred_at_text: frame.occurred_at.into_owned(),
            actor: frame.actor,
            region: frame.region.map(Cow::into_owned),
            correlation_id: frame.correlation_id.into_owned(),
            causation_id: frame.causation_id.map(Cow::into_owned),
            payload,
            request_id: headers::read(message, REQUEST_ID),
            client_request_id: headers::read(message, CLIENT_REQUEST_ID),
            client_ip: headers::read(message, CLIENT_IP),
            json,
        })
    }

    /// The payload's JSON text, as the log holds it.
    pub fn payload_text(&self) -> &str {
        std::str::from_utf8(&self.json[self.payload.clone()]).unwrap_or("null")
    }

    /// The payload, parsed.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::from_str(self.payload_text()).unwrap_or_default()
    }

    /// The whole envelope, parsed.
    pub fn envelope(&self) -> serde_json::Value {
        serde_json::from_slice(&self.json).unwrap_or_default()
    }

    /// The fact, decoded (`None` for a command, or one that does not decode).
    pub fn fact(&self) -> Option<Envelope<Fact>> {
        (self.stream == LogStream::Facts)
            .then(|| Envelope::<Fact>::decode(&self.json).ok())
            .flatten()
    }

    /// The command, decoded (`None` for a fact, or one that does not decode).
    pub fn command(&self) -> Option<Envelope<Command>> {
        (self.stream == LogStream::Commands)
            .then(|| Envelope::<Command>::decode(&self.json).ok())
            .flatten()
    }

    /// The region, if the event has one.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// When it happened, as the envelope says.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&self.occurred_at_text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    /// The actor's kind (`player`, `admin`, `system`) and id (a player id, or a service name).
    pub fn actor_parts(&self) -> (&'static str, String) {
        match &self.actor {
            Actor::Player { id } => ("player", id.to_string()),
            Actor::Admin { id } => ("admin", id.to_string()),
            Actor::System { service } => ("system", service.clone()),
        }
    }

    /// Whether the event is by or about `player`: its actor, or (a fact) a player it concerns,
    /// or the blows it struck and the deaths it dealt.
    pub fn concerns(&self, player: schemas::PlayerId) -> bool {
        if matches!(&self.actor, Actor::Player { id } | Actor::Admin { id } if *id == player) {
            return true;
        }
        let Some(env) = self.fact() else {
            return false;
        };
        let me = schemas::EntityId::from(player);
        schemas::fold::players_of(&env.payload).contains(&player)
            || match &env.payload {
                Fact::Damaged(f) => f.attacker == me,
                Fact::Died(f) => f.killer == Some(me),
                Fact::NpcDied(f) => f.killer == Some(me),
                _ => false,
            }
    }
}
