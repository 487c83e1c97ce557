//! Proof that MongoDB's audit trail is the log, whole and unaltered: every command and fact of
//! the range is in `audit` with the same content (a SHA-256 of each event, as the log has it
//! and as the audit keeps it), nothing is in `audit` for that range that the log lacks, and
//! every command has an outcome (a fact it caused) or a dead letter. An event missing from the
//! audit because it was dead-lettered is reported as such, with the reason, and is no gap.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_nats::jetstream::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use nats_topology::headers::{DLQ_ORIGIN_MSG_ID, DLQ_ORIGIN_SEQ, DLQ_ORIGIN_STREAM, DLQ_REASON};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use schemas::read_model::collection::AUDIT;

use crate::error::AuditError;
use crate::event::Event;
use crate::log;
use crate::select::{LogStream, Selection};

/// One event the audit does not hold as the log does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// `COMMANDS` or `FACTS`.
    pub stream: String,
    /// The sequence in that stream.
    pub seq: u64,
    /// The event's id.
    pub id: String,
    /// What is wrong, or what became of it.
    pub why: String,
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Commands checked.
    pub commands: u64,
    /// Facts checked.
    pub facts: u64,
    /// In the log, not in the audit.
    pub missing: Vec<Gap>,
    /// In both, with other content.
    pub altered: Vec<Gap>,
    /// In the audit for the range, not in the log.
    pub extra: Vec<Gap>,
    /// Commands with neither a fact they caused nor a dead letter.
    pub without_outcome: Vec<Gap>,
    /// Not in the audit because they were dead-lettered (not gaps).
    pub dead_lettered: Vec<Gap>,
}

impl Report {
    /// Whether the audit is complete and unaltered.
    pub fn clean(&self) -> bool {
        self.missing.is_empty()
            && self.altered.is_empty()
            && self.extra.is_empty()
            && self.without_outcome.is_empty()
    }
}

/// The content of an event that the audit must keep, in one canonical form (JSON with sorted
/// keys, the time in milliseconds), and its SHA-256.
pub fn digest(envelope: &Value, occurred_ms: i64, stream: &str, seq: u64, subject: &str) -> String {
    let canonical = json!({
        "id": envelope.get("id"),
        "kind": envelope.get("kind"),
        "schema_version": envelope.get("schema_version"),
        "occurred_at_ms": occurred_ms,
        "actor": envelope.get("actor"),
        "region": envelope.get("region").cloned().unwrap_or(Value::Null),
        "correlation_id": envelope.get("correlation_id"),
        "causation_id": envelope.get("causation_id").cloned().unwrap_or(Value::Null),
        "payload": envelope.get("payload"),
        "stream": stream,
        "seq": seq,
        "subject": subject,
    });
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digest of an audit document, read back the way [`digest`] reads the log.
pub fn audit_digest(document: &Document) -> String {
    let occurred_ms = document
        .get_datetime("occurred_at")
        .map(|d| d.timestamp_millis())
        .unwrap_or(i64::MIN);
    let mut envelope = Bson::Document(document.clone()).into_relaxed_extjson();
    if let Value::Object(m) = &mut envelope
        && let Some(id) = m.remove("_id")
    {
        m.insert("id".into(), id);
    }
    let stream = document.get_str("stream").unwrap_or_default();
    let seq = stored_seq(document);
    let subject = document.get_str("subject").unwrap_or_default();
    digest(&envelope, occurred_ms, stream, seq, subject)
}

/// An audit document's `seq`, stored as a 64- or a 32-bit integer; 0 when it has none.
fn stored_seq(document: &Document) -> u64 {
    document
        .get_i64("seq")
        .map(|s| s as u64)
        .or_else(|_| document.get_i32("seq").map(|s| s as u64))
        .unwrap_or(0)
}

fn event_digest(e: &Event) -> String {
    digest(
        &e.envelope(),
        e.occurred_at().timestamp_millis(),
        e.stream.name(),
        e.seq,
        &e.subject,
    )
}

/// What the dead letters say of each stream's events: the reason, by origin stream and
/// sequence, and the ids of dead-lettered commands.
async fn dead_letters(
    js: &Context,
) -> Result<(HashMap<(String, u64), String>, BTreeSet<String>), AuditError> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    use futures::StreamExt;

    let mut by_origin = HashMap::new();
    let mut commands = BTreeSet::new();
    let Ok(mut stream) = js.get_stream(nats_topology::topology::DLQ).await else {
        return Ok((by_origin, commands));
    };
    let read_error = |why: String| AuditError::Read {
        stream: "DLQ".into(),
        why,
    };
    let last = stream
        .info()
        .await
        .map_err(|e| read_error(e.to_string()))?
        .state
        .last_sequence;
    if last == 0 {
        return Ok((by_origin, commands));
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: "dlq.>".into(),
            ..Default::default()
        })
        .await
        .map_err(|e| read_error(e.to_string()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| read_error(e.to_string()))?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| read_error(e.to_string()))?;
        let header = |name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let origin = header(DLQ_ORIGIN_STREAM).unwrap_or_default();
        if let Some(seq) = header(DLQ_ORIGIN_SEQ).and_then(|s| s.parse().ok()) {
            by_origin.insert(
                (origin.clone(), seq),
                header(DLQ_REASON).unwrap_or_default(),
            );
        }
        if origin == nats_topology::topology::COMMANDS
            && let Some(id) = header(DLQ_ORIGIN_MSG_ID)
        {
            commands.insert(id);
        }
        let info = m.info().map_err(|e| read_error(e.to_string()))?;
        if info.stream_sequence >= last || info.pending == 0 {
            break;
        }
    }
    Ok((by_origin, commands))
}

/// Verifies the audit trail in `db` against the log from `since` (or from the start).
pub async fn verify(
    js: &Context,
    db: &mongodb::Database,
    mongo_url: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Report, AuditError> {
    let mongo_error = |e: mongodb::error::Error| AuditError::Mongo {
        url: mongo_url.to_owned(),
        why: e.to_string(),
    };
    let selection = Selection {
        streams: vec![LogStream::Commands, LogStream::Facts],
        since,
        ..Selection::default()
    };
    // (stream, seq) -> (id, digest), and what outcomes need.
    let mut log: BTreeMap<(LogStream, u64), (String, String)> = BTreeMap::new();
    let mut commands: Vec<(u64, String)> = Vec::new();
    let mut caused: BTreeSet<String> = BTreeSet::new();
    log::read(
        js,
        &selection,
        |_| {},
        |event| {
            let id = event.id.clone();
            match event.stream {
                LogStream::Commands => commands.push((event.seq, id.clone())),
                LogStream::Facts => {
                    if let Some(cause) = &event.causation_id {
                        caused.insert(cause.clone());
                    }
                }
            }
            log.insert((event.stream, event.seq), (id, event_digest(&event)));
            Ok(())
        },
    )
    .await?;
    let (letters, dead_commands) = dead_letters(js).await?;

    let audit = db.collection::<Document>(AUDIT);
    let mut report = Report::default();
    let ids: Vec<String> = log.values().map(|(id, _)| id.clone()).collect();
    let mut stored: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(1000) {
        let mut cursor = audit
            .find(doc! {"_id": {"$in": chunk.to_vec()}})
            .await
            .map_err(mongo_error)?;
        while let Some(d) = cursor.try_next().await.map_err(mongo_error)? {
            if let Ok(id) = d.get_str("_id") {
                stored.insert(id.to_owned(), audit_digest(&d));
            }
        }
    }
    for ((stream, seq), (id, digest)) in &log {
        match stream {
            LogStream::Commands => report.commands += 1,
            LogStream::Facts => report.facts += 1,
        }
        let gap = |why: &str| Gap {
            stream: stream.name().into(),
            seq: *seq,
            id: id.clone(),
            why: why.into(),
        };
        match stored.get(id) {
            None => match letters.get(&(stream.name().to_owned(), *seq)) {
                Some(reason) => report.dead_lettered.push(gap(reason)),
                None => report.missing.push(gap("not in the audit trail")),
            },
            Some(d) if d != digest => report
                .altered
                .push(gap("the audit holds other content than the log")),
            Some(_) => {}
        }
    }
    // What the audit holds for the range that the log lacks.
    let log_ids: BTreeSet<&str> = log.values().map(|(id, _)| id.as_str()).collect();
    for stream in [LogStream::Commands, LogStream::Facts] {
        let in_log: BTreeSet<u64> = log
            .keys()
            .filter(|(s, _)| *s == stream)
            .map(|(_, seq)| *seq)
            .collect();
        let (Some(first), Some(last)) = (in_log.first(), in_log.last()) else {
            continue;
        };
        let mut cursor = audit
            .find(doc! {
                "stream": stream.name(),
                "seq": {"$gte": *first as i64, "$lte": *last as i64},
            })
            .projection(doc! {"_id": 1, "seq": 1})
            .await
            .map_err(mongo_error)?;
        while let Some(d) = cursor.try_next().await.map_err(mongo_error)? {
            let seq = stored_seq(&d);
            let id = d.get_str("_id").unwrap_or_default();
            if !log_ids.contains(id) {
                report.extra.push(Gap {
                    stream: stream.name().into(),
                    seq,
                    id: id.to_owned(),
                    why: "in the audit trail, not in the log".into(),
                });
            }
        }
    }
    for (seq, id) in commands {
        if !caused.contains(&id) && !dead_commands.contains(&id) {
            report.without_outcome.push(Gap {
                stream: LogStream::Commands.name().into(),
                seq,
                id,
                why: "no fact answers it and it is not a dead letter".into(),
            });
        }
    }
    Ok(report)
}
