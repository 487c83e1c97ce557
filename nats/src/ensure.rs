//! Creating the topology idempotently: what is missing is created, what drifted is updated,
//! what matches is left alone. Every service calls it at start-up; whichever starts first wins
//! and the others find everything in place.

use std::fmt;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::Config;
use async_nats::jetstream::{Context, kv};

use crate::topology::Topology;

/// What `ensure` did to one stream or bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It was missing and was created.
    Created,
    /// It existed with other limits; these fields were brought back to the declared values.
    Updated(Vec<&'static str>),
    /// It was as declared.
    Unchanged,
}

/// What `ensure` did, one line per stream and bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Stream or bucket name (buckets as `KV name`), and what happened to it.
    pub entries: Vec<(String, Change)>,
}

impl Report {
    /// Whether nothing had to change.
    pub fn unchanged(&self) -> bool {
        self.entries.iter().all(|(_, c)| *c == Change::Unchanged)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, change) in &self.entries {
            match change {
                Change::Created => writeln!(f, "{name}: created")?,
                Change::Updated(fields) => writeln!(f, "{name}: updated {}", fields.join(", "))?,
                Change::Unchanged => writeln!(f, "{name}: as declared")?,
            }
        }
        Ok(())
    }
}

/// Why the topology could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    /// The server refused or did not answer.
    #[error("{name}: {source}")]
    Server {
        /// The stream or bucket.
        name: String,
        /// What the server said.
        #[source]
        source: async_nats::Error,
    },
    /// A field differs that JetStream cannot change in place; an operator has to migrate it.
    #[error("{name}: {field} differs from the declared value and cannot be changed in place")]
    Immutable {
        /// The stream or bucket.
        name: String,
        /// The field.
        field: &'static str,
    },
}

/// Fields JetStream cannot change on an existing stream.
const IMMUTABLE: [&str; 2] = ["storage", "retention"];

/// Creates what is missing and updates what drifted.
pub async fn ensure(js: &Context, topology: &Topology) -> Result<Report, EnsureError> {
    let mut report = Report::default();
    for declared in &topology.streams {
        let change = ensure_stream(js, declared).await?;
        report.entries.push((declared.name.clone(), change));
    }
    for declared in &topology.buckets {
        let change = ensure_bucket(js, declared).await?;
        report
            .entries
            .push((format!("KV {}", declared.bucket), change));
    }
    Ok(report)
}

fn server_error(name: &str, source: impl Into<async_nats::Error>) -> EnsureError {
    EnsureError::Server {
        name: name.to_owned(),
        source: source.into(),
    }
}

/// The current config of a stream, or `None` when there is no such stream.
async fn current_config(js: &Context, name: &str) -> Result<Option<Config>, EnsureError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
            Ok(None)
        }
        Err(e) => Err(server_error(name, e)),
    }
}

async fn ensure_stream(js: &Context, declared: &Config) -> Result<Change, EnsureError> {
    let name = declared.name.as_str();
    let Some(actual) = current_config(js, name).await? else {
        js.create_stream(declared.clone())
            .await
            .map_err(|e| server_error(name, e))?;
        return Ok(Change::Created);
    };
    let Some(drift) = repairable(name, stream_drift(declared, &actual))? else {
        return Ok(Change::Unchanged);
    };
    js.update_stream(declared.clone())
        .await
        .map_err(|e| server_error(name, e))?;
    Ok(Change::Updated(drift))
}

async fn ensure_bucket(js: &Context, declared: &kv::Config) -> Result<Change, EnsureError> {
    let name = declared.bucket.as_str();
    let Some(actual) = current_config(js, &format!("KV_{name}")).await? else {
        js.create_key_value(declared.clone())
            .await
            .map_err(|e| server_error(name, e))?;
        return Ok(Change::Created);
    };
    let Some(drift) = repairable(name, bucket_drift(declared, &actual))? else {
        return Ok(Change::Unchanged);
    };
    js.update_key_value(declared.clone())
        .await
        .map_err(|e| server_error(name, e))?;
    Ok(Change::Updated(drift))
}

/// `None` when nothing drifted, the drifted fields when an update can repair them, and an error
/// when one of them cannot be changed in place.
fn repairable(
    name: &str,
    drift: Vec<&'static str>,
) -> Result<Option<Vec<&'static str>>, EnsureError> {
    if let Some(field) = drift.iter().find(|f| IMMUTABLE.contains(f)) {
        return Err(EnsureError::Immutable {
            name: name.to_owned(),
            field,
        });
    }
    Ok((!drift.is_empty()).then_some(drift))
}

/// The managed fields in which `actual` differs from `declared`.
pub fn stream_drift(declared: &Config, actual: &Config) -> Vec<&'static str> {
    let mut subjects = (declared.subjects.clone(), actual.subjects.clone());
    subjects.0.sort();
    subjects.1.sort();
    let checks = [
        ("subjects", subjects.0 != subjects.1),
        ("description", declared.description != actual.description),
        ("retention", declared.retention != actual.retention),
        ("storage", declared.storage != actual.storage),
        (
            "num_replicas",
            declared.num_replicas.max(1) != actual.num_replicas.max(1),
        ),
        ("max_age", declared.max_age != actual.max_age),
        (
            "max_bytes",
            limit(declared.max_bytes) != limit(actual.max_bytes),
        ),
        (
            "max_messages",
            limit(declared.max_messages) != limit(actual.max_messages),
        ),
        (
            "max_message_size",
            limit(declared.max_message_size.into()) != limit(actual.max_message_size.into()),
        ),
        (
            "duplicate_window",
            declared.duplicate_window != actual.duplicate_window,
        ),
        ("discard", declared.discard != actual.discard),
        ("deny_delete", declared.deny_delete != actual.deny_delete),
        ("deny_purge", declared.deny_purge != actual.deny_purge),
        ("allow_direct", declared.allow_direct != actual.allow_direct),
    ];
    checks
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(f, _)| f)
        .collect()
}

/// The managed fields in which a bucket's stream differs from the declared bucket.
pub fn bucket_drift(declared: &kv::Config, actual: &Config) -> Vec<&'static str> {
    let checks = [
        (
            "description",
            Some(declared.description.as_str()) != actual.description.as_deref(),
        ),
        ("storage", declared.storage != actual.storage),
        (
            "num_replicas",
            declared.num_replicas.max(1) != actual.num_replicas.max(1),
        ),
        ("max_age", declared.max_age != actual.max_age),
        (
            "max_bytes",
            limit(declared.max_bytes) != limit(actual.max_bytes),
        ),
        (
            "history",
            declared.history.max(1) != actual.max_messages_per_subject,
        ),
        (
            "max_value_size",
            limit(declared.max_value_size.into()) != limit(actual.max_message_size.into()),
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(f, _)| f)
        .collect()
}

/// JetStream writes "no limit" as -1 and accepts 0 for it too.
fn limit(value: i64) -> i64 {
    if value <= 0 { -1 } else { value }
}
