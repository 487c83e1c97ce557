//! The Parquet file of a replay: typed columns (the stored and occurred times as UTC
//! timestamps, the sequence as an unsigned 64-bit integer), the payload as a JSON string, and
//! the payload fields analysts ask for most as columns of their own (`x`, `y`, `hp`, `target`,
//! `item`, `text`, `amount`); zstd, row groups of 128 Ki rows written 8 Ki rows at a time.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::error::AuditError;
use crate::event::Event;
use crate::sink::{Sink, Target};

/// Rows gathered before they are handed to the writer.
const BATCH_ROWS: usize = 8 * 1024;
/// Rows per row group: large enough for scans of a big log, small enough to stream.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The file's columns.
pub fn schema() -> SchemaRef {
    let utc = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("stored_at", utc(), false),
        Field::new("occurred_at", utc(), false),
        Field::new("region", DataType::Utf8, true),
        Field::new("kind", DataType::Utf8, false),
        Field::new("schema_version", DataType::UInt16, false),
        Field::new("actor_type", DataType::Utf8, false),
        Field::new("actor_id", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("correlation_id", DataType::Utf8, false),
        Field::new("causation_id", DataType::Utf8, true),
        Field::new("request_id", DataType::Utf8, true),
        Field::new("client_ip", DataType::Utf8, true),
        Field::new("x", DataType::Float64, true),
        Field::new("y", DataType::Float64, true),
        Field::new("hp", DataType::UInt32, true),
        Field::new("target", DataType::Utf8, true),
        Field::new("item", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("amount", DataType::UInt64, true),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// Where a payload puts its position: `position`, a state's position, a move's `x` and `y`,
/// or a walk's destination.
fn position(p: &Value) -> Option<(f64, f64)> {
    let point = |v: &Value| Some((v.get("x")?.as_f64()?, v.get("y")?.as_f64()?));
    p.get("position")
        .and_then(point)
        .or_else(|| {
            p.get("state")
                .and_then(|s| s.get("position"))
                .and_then(point)
        })
        .or_else(|| point(p))
        .or_else(|| p.get("destination").and_then(point))
}

fn string(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

struct Columns {
    stream: StringBuilder,
    seq: UInt64Builder,
    subject: StringBuilder,
    stored_at: TimestampMillisecondBuilder,
    occurred_at: TimestampMillisecondBuilder,
    region: StringBuilder,
    kind: StringBuilder,
    schema_version: UInt16Builder,
    actor_type: StringBuilder,
    actor_id: StringBuilder,
    event_id: StringBuilder,
    correlation_id: StringBuilder,
    causation_id: StringBuilder,
    request_id: StringBuilder,
    client_ip: StringBuilder,
    x: Float64Builder,
    y: Float64Builder,
    hp: UInt32Builder,
    target: StringBuilder,
    item: StringBuilder,
    text: StringBuilder,
    amount: UInt64Builder,
    payload: StringBuilder,
    rows: usize,
}

impl Columns {
    fn new() -> Self {
        let utc = || TimestampMillisecondBuilder::new().with_timezone("UTC");
        Self {
            stream: StringBuilder::new(),
            seq: UInt64Builder::new(),
            subject: StringBuilder::new(),
            stored_at: utc(),
            occurred_at: utc(),
            region: StringBuilder::new(),
            kind: StringBuilder::new(),
            schema_version: UInt16Builder::new(),
            actor_type: StringBuilder::new(),
            actor_id: StringBuilder::new(),
            event_id: StringBuilder::new(),
            correlation_id: StringBuilder::new(),
            causation_id: StringBuilder::new(),
            request_id: StringBuilder::new(),
            client_ip: StringBuilder::new(),
            x: Float64Builder::new(),
            y: Float64Builder::new(),
            hp: UInt32Builder::new(),
            target: StringBuilder::new(),
            item: StringBuilder::new(),
            text: StringBuilder::new(),
            amount: UInt64Builder::new(),
            payload: StringBuilder::new(),
            rows: 0,
        }
    }

    fn push(&mut self, e: &Event) {
        let payload = e.payload();
        let p = &payload;
        let (actor_type, actor_id) = e.actor_parts();
        self.stream.append_value(e.stream.name());
        self.seq.append_value(e.seq);
        self.subject.append_value(&e.subject);
        self.stored_at.append_value(e.stored_at.timestamp_millis());
        self.occurred_at
            .append_value(e.occurred_at().timestamp_millis());
        self.region.append_option(e.region());
        self.kind.append_value(&e.kind);
        self.schema_version.append_value(e.schema_version);
        self.actor_type.append_value(actor_type);
        self.actor_id.append_value(actor_id);
        self.event_id.append_value(&e.id);
        self.correlation_id.append_value(&e.correlation_id);
        self.causation_id.append_option(e.causation_id.as_deref());
        self.request_id.append_option(e.request_id.as_deref());
        self.client_ip.append_option(e.client_ip.as_deref());
        let at = position(p);
        self.x.append_option(at.map(|(x, _)| x));
        self.y.append_option(at.map(|(_, y)| y));
        let hp = p
            .get("hp")
            .or_else(|| p.get("state").and_then(|s| s.get("hp")))
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        self.hp.append_option(hp);
        self.target.append_option(string(p.get("target")));
        let item =
            string(p.get("item")).or_else(|| string(p.get("item").and_then(|i| i.get("item"))));
        self.item.append_option(item);
        self.text.append_option(string(p.get("text")));
        self.amount
            .append_option(p.get("amount").and_then(Value::as_u64));
        self.payload.append_value(e.payload_text());
        self.rows += 1;
    }

    fn batch(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.stream.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.subject.finish()),
            Arc::new(self.stored_at.finish()),
            Arc::new(self.occurred_at.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.schema_version.finish()),
            Arc::new(self.actor_type.finish()),
            Arc::new(self.actor_id.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.correlation_id.finish()),
            Arc::new(self.causation_id.finish()),
            Arc::new(self.request_id.finish()),
            Arc::new(self.client_ip.finish()),
            Arc::new(self.x.finish()),
            Arc::new(self.y.finish()),
            Arc::new(self.hp.finish()),
            Arc::new(self.target.finish()),
            Arc::new(self.item.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.amount.finish()),
            Arc::new(self.payload.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// Writes events as Parquet.
pub struct ParquetSink {
    writer: ArrowWriter<Target>,
    schema: SchemaRef,
    columns: Columns,
}

fn output_error(e: impl std::fmt::Display) -> AuditError {
    AuditError::Output {
        path: "the Parquet output".into(),
        why: e.to_string(),
    }
}

impl ParquetSink {
    /// A writer of the schema's columns into `target`.
    pub fn new(target: Target) -> Result<Self, AuditError> {
        let schema = schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer =
            ArrowWriter::try_new(target, schema.clone(), Some(props)).map_err(output_error)?;
        Ok(Self {
            writer,
            schema,
            columns: Columns::new(),
        })
    }

    fn flush_rows(&mut self) -> Result<(), AuditError> {
        if self.columns.rows == 0 {
            return Ok(());
        }
        let batch = self.columns.batch(&self.schema).map_err(output_error)?;
        self.writer.write(&batch).map_err(output_error)
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, event: &Event) -> Result<(), AuditError> {
        self.columns.push(event);
        if self.columns.rows >= BATCH_ROWS {
            self.flush_rows()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), AuditError> {
        self.flush_rows()?;
        let target = self.writer.into_inner().map_err(output_error)?;
        target.commit()
    }
}
