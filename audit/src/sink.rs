//! Where the events of a replay go, and in which format.
//!
//! A file is written under a temporary name in the same folder (`.NAME.partial-PID`) and renamed
//! over its name only once complete, so an interrupted replay never leaves a file that looks
//! whole; an unfinished one is removed when the writer is dropped. The folder is checked before
//! anything is read from the log.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::AuditError;
use crate::event::Event;

/// The formats a replay writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: the envelope with `stream`, `seq`, `subject`, `stored_at`
    /// and the request headers.
    Jsonl,
    /// RFC 4180 CSV with flat columns and the payload as JSON.
    Csv,
    /// Parquet: typed columns, the most asked-for payload fields as their own, zstd.
    Parquet,
}

/// Where the rows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// A file.
    File(PathBuf),
}

impl Output {
    /// `-` is standard output; anything else a file path.
    pub fn parse(text: &str) -> Self {
        if text == "-" {
            Output::Stdout
        } else {
            Output::File(PathBuf::from(text))
        }
    }

    fn describe(&self) -> String {
        match self {
            Output::Stdout => "standard output".into(),
            Output::File(p) => p.display().to_string(),
        }
    }
}

/// An output being written: standard output, or a temporary file renamed into place by
/// [`Target::commit`] (and removed if dropped before).
pub struct Target {
    writer: Option<BufWriter<Box<dyn Write + Send>>>,
    temp: Option<PathBuf>,
    path: Option<PathBuf>,
    name: String,
}

impl Target {
    /// Opens the output: for a file, creates its temporary file now, so that a folder that
    /// cannot be written is found before the log is read.
    pub fn open(output: &Output) -> Result<Self, AuditError> {
        let name = output.describe();
        match output {
            Output::Stdout => Ok(Self {
                writer: Some(BufWriter::with_capacity(
                    1 << 16,
                    Box::new(std::io::stdout()),
                )),
                temp: None,
                path: None,
                name,
            }),
            Output::File(path) => {
                let file_name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| AuditError::Output {
                        path: name.clone(),
                        why: "it names no file".into(),
                    })?;
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let temp = dir.join(format!(".{file_name}.partial-{}", std::process::id()));
                let file = File::create(&temp).map_err(|e| AuditError::Output {
                    path: name.clone(),
                    why: e.to_string(),
                })?;
                Ok(Self {
                    writer: Some(BufWriter::with_capacity(1 << 20, Box::new(file))),
                    temp: Some(temp),
                    path: Some(path.clone()),
                    name,
                })
            }
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> AuditError {
        AuditError::Output {
            path: self.name.clone(),
            why: e.to_string(),
        }
    }

    /// Flushes and, for a file, renames it into place.
    pub fn commit(mut self) -> Result<(), AuditError> {
        if let Some(mut w) = self.writer.take() {
            w.flush().map_err(|e| self.error(e))?;
            if let Some(temp) = &self.temp {
                let file = w.into_inner().map_err(|e| self.error(e.error()))?;
                drop(file);
                let path = self.path.clone().unwrap_or_default();
                std::fs::rename(temp, &path).map_err(|e| self.error(e))?;
                self.temp = None;
            }
        }
        Ok(())
    }

    /// The path written to, when a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Write for Target {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(std::io::Error::other("the output is closed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // Unfinished: nothing that looks whole is left behind.
        self.writer.take();
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Writes events in one format.
pub trait Sink: Send {
    /// Writes one event.
    fn write(&mut self, event: &Event) -> Result<(), AuditError>;
    /// Writes what is buffered and puts the output in place.
    fn finish(self: Box<Self>) -> Result<(), AuditError>;
}

/// A sink of `format` writing to `target`.
pub fn sink(format: Format, target: Target) -> Result<Box<dyn Sink>, AuditError> {
    Ok(match format {
        Format::Jsonl => Box::new(Jsonl { target }),
        Format::Csv => Box::new(Csv::new(target)),
        Format::Parquet => Box::new(crate::parquet::ParquetSink::new(target)?),
    })
}

/// Writes the JSONL line of an event to `out`: its envelope as the log holds it, with where it
/// was stored and how it came (`stream`, `seq`, `subject`, `stored_at`, `request_id`,
/// `client_request_id`, `client_ip`) added to the object.
pub fn write_json_line(event: &Event, out: &mut impl Write) -> std::io::Result<()> {
    let json = event.json.trim_ascii_end();
    let body = json.strip_suffix(b"}").unwrap_or(json);
    out.write_all(body)?;
    let open = body.trim_ascii_end().ends_with(b"{");
    if !open {
        out.write_all(b",")?;
    }
    let stored_at = event
        .stored_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    write!(
        out,
        "\"stream\":\"{}\",\"seq\":{},\"subject\":",
        event.stream.name(),
        event.seq
    )?;
    serde_json::to_writer(&mut *out, &event.subject)?;
    write!(out, ",\"stored_at\":\"{stored_at}\",\"request_id\":")?;
    serde_json::to_writer(&mut *out, &event.request_id)?;
    out.write_all(b",\"client_request_id\":")?;
    serde_json::to_writer(&mut *out, &event.client_request_id)?;
    out.write_all(b",\"client_ip\":")?;
    serde_json::to_writer(&mut *out, &event.client_ip)?;
    out.write_all(b"}\n")
}

struct Jsonl {
    target: Target,
}

impl Sink for Jsonl {
    fn write(&mut self, event: &Event) -> Result<(), AuditError> {
        write_json_line(event, &mut self.target).map_err(|e| self.target.error(e))
    }

    fn finish(self: Box<Self>) -> Result<(), AuditError> {
        self.target.commit()
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 14] = [
    "stream",
    "seq",
    "subject",
    "occurred_at",
    "region",
    "kind",
    "schema_version",
    "actor_type",
    "actor_id",
    "correlation_id",
    "causation_id",
    "request_id",
    "client_ip",
    "payload",
];

struct Csv {
    writer: csv::Writer<Target>,
    header: bool,
}

impl Csv {
    fn new(target: Target) -> Self {
        Self {
            writer: csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(target),
            header: false,
        }
    }
}

impl Sink for Csv {
    fn write(&mut self, event: &Event) -> Result<(), AuditError> {
        let to_error = |e: csv::Error, w: &csv::Writer<Target>| w.get_ref().error(e);
        if !self.header {
            self.header = true;
            self.writer
                .write_record(CSV_COLUMNS)
                .map_err(|e| to_error(e, &self.writer))?;
        }
        let (actor_type, actor_id) = event.actor_parts();
        let seq = event.seq.to_string();
        let version = event.schema_version.to_string();
        let record: [&str; 14] = [
            event.stream.name(),
            &seq,
            &event.subject,
            &event.occurred_at_text,
            event.region().unwrap_or_default(),
            &event.kind,
            &version,
            actor_type,
            &actor_id,
            &event.correlation_id,
            event.causation_id.as_deref().unwrap_or_default(),
            event.request_id.as_deref().unwrap_or_default(),
            event.client_ip.as_deref().unwrap_or_default(),
            event.payload_text(),
        ];
        self.writer
            .write_record(record)
            .map_err(|e| to_error(e, &self.writer))
    }

    fn finish(mut self: Box<Self>) -> Result<(), AuditError> {
        if !self.header {
            self.writer
                .write_record(CSV_COLUMNS)
                .map_err(|e| self.writer.get_ref().error(e))?;
        }
        let target = self.writer.into_inner().map_err(|e| AuditError::Output {
            path: "the CSV output".into(),
            why: e.error().to_string(),
        })?;
        target.commit()
    }
}
