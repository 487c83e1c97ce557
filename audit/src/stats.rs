//! Counts of the log's events by kind, region or hour, per stream.

use std::collections::BTreeMap;

use async_nats::jetstream::Context;
use serde_json::{Value, json};

use crate::error::AuditError;
use crate::log;
use crate::select::{LogStream, Selection};

/// What events are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The event's kind.
    Kind,
    /// Its region (`_global` for none).
    Region,
    /// The hour it happened in (UTC).
    Hour,
}

/// The counts: a row per key, a count per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// key -> (commands, facts)
    pub rows: BTreeMap<String, (u64, u64)>,
}

impl Counts {
    /// As JSON: `[{"key", "commands", "facts"}]` in key order.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|(k, (c, f))| json!({"key": k, "commands": c, "facts": f}))
                .collect(),
        )
    }

    /// As a table with a total line.
    pub fn to_table(&self, by: By) -> String {
        let head = match by {
            By::Kind => "kind",
            By::Region => "region",
            By::Hour => "hour (UTC)",
        };
        let width = self
            .rows
            .keys()
            .map(String::len)
            .chain([head.len(), 5])
            .max()
            .unwrap_or(5);
        let mut out = format!("{head:<width$}  {:>10}  {:>10}\n", "commands", "facts");
        let (mut tc, mut tf) = (0, 0);
        for (k, (c, f)) in &self.rows {
            out.push_str(&format!("{k:<width$}  {c:>10}  {f:>10}\n"));
            tc += c;
            tf += f;
        }
        out.push_str(&format!("{:<width$}  {tc:>10}  {tf:>10}\n", "total"));
        out
    }
}

/// Counts the selection's events by `by`.
pub async fn count(js: &Context, selection: &Selection, by: By) -> Result<Counts, AuditError> {
    let mut counts = Counts::default();
    log::read(
        js,
        selection,
        |_| {},
        |event| {
            let key = match by {
                By::Kind => event.kind.clone(),
                By::Region => event.region().unwrap_or("_global").to_owned(),
                By::Hour => event.occurred_at().format("%Y-%m-%dT%H:00Z").to_string(),
            };
            let row = counts.rows.entry(key).or_default();
            match event.stream {
                LogStream::Commands => row.0 += 1,
                LogStream::Facts => row.1 += 1,
            }
            Ok(())
        },
    )
    .await?;
    Ok(counts)
}
