//! Reading a selection of the log: an ordered consumer per stream (created and removed by the
//! server as the reader comes and goes; nothing durable is left behind), with the region and
//! kind filters as its subjects and starting at `--since` or `--from-seq`. A replay ends at
//! each stream's last sequence as of its start, unless it follows the log; with both streams,
//! events come merged by the time they were stored.

use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::context::GetStreamErrorKind;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::AuditError;
use crate::event::Event;
use crate::select::{LogStream, Selection};

/// What a read came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events handed out.
    pub events: u64,
    /// Events read but left out by the player or correlation filter.
    pub skipped: u64,
    /// Messages that were not events of the log (they do not decode).
    pub undecodable: u64,
}

/// How far a read is: messages read of those there were at its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Read so far.
    pub done: u64,
    /// To read (known at the start; grows when following).
    pub total: u64,
}

/// Events a reader hands on at once.
const BATCH: usize = 256;

/// How long a replay waits for the next message before the log's end before it gives up.
const SILENCE: Duration = Duration::from_secs(30);

enum Item {
    Event(Box<Event>),
    Undecodable,
    Failed(AuditError),
}

/// The messages waiting for a reader of `stream` with this selection, and the stream's last
/// sequence: where a replay that does not follow ends.
async fn extent(js: &Context, stream: LogStream) -> Result<u64, AuditError> {
    let mut s = js
        .get_stream(stream.name())
        .await
        .map_err(|e| match e.kind() {
            GetStreamErrorKind::JetStream(j)
                if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                AuditError::NoStream(stream.name().into())
            }
            _ => AuditError::Read {
                stream: stream.name().into(),
                why: e.to_string(),
            },
        })?;
    let info = s.info().await.map_err(|e| AuditError::Read {
        stream: stream.name().into(),
        why: e.to_string(),
    })?;
    Ok(info.state.last_sequence)
}

async fn read_one(
    js: Context,
    stream: LogStream,
    selection: Selection,
    last: u64,
    out: mpsc::Sender<Vec<Item>>,
    totals: mpsc::UnboundedSender<u64>,
) {
    let fail = |why: String| {
        Item::Failed(AuditError::Read {
            stream: stream.name().into(),
            why,
        })
    };
    if !selection.follow && (last == 0 || selection.from_seq.is_some_and(|f| f > last)) {
        let _ = totals.send(0);
        return;
    }
    let deliver_policy = match (selection.from_seq, selection.since) {
        (Some(seq), _) => DeliverPolicy::ByStartSequence {
            start_sequence: seq.max(1),
        },
        (None, Some(since)) => DeliverPolicy::ByStartTime { start_time: since },
        (None, None) => DeliverPolicy::All,
    };
    let subjects = stream.subjects(&selection.regions, &selection.kinds);
    let config = OrderedConfig {
        filter_subjects: subjects,
        deliver_policy,
        ..Default::default()
    };
    let consumer = match js.get_stream(stream.name()).await {
        Ok(s) => s.create_consumer(config).await,
        Err(e) => {
            let _ = totals.send(0);
            let _ = out.send(vec![fail(e.to_string())]).await;
            return;
        }
    };
    let mut consumer = match consumer {
        Ok(c) => c,
        Err(e) => {
            let _ = totals.send(0);
            let _ = out.send(vec![fail(e.to_string())]).await;
            return;
        }
    };
    let pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(0);
    let _ = totals.send(pending);
    if pending == 0 && !selection.follow {
        return;
    }
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => {
            let _ = out.send(vec![fail(e.to_string())]).await;
            return;
        }
    };
    // Events go out in batches (a channel hop each is a measurable share of a replay), and at
    // once whenever the reader has caught up with the stream.
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
    loop {
        let next = if selection.follow {
            messages.next().await
        } else {
            // A replay never waits for new events; a silent server is an error, not the end.
            match tokio::time::timeout(SILENCE, messages.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let why = format!(
                        "no message for {} s before the log's end",
                        SILENCE.as_secs()
                    );
                    let _ = out.send(vec![fail(why)]).await;
                    return;
                }
            }
        };
        let message = match next {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                batch.push(fail(e.to_string()));
                break;
            }
        };
        let Ok(info) = message.info() else {
            batch.push(Item::Undecodable);
            continue;
        };
        let (seq, left) = (info.stream_sequence, info.pending);
        let beyond_seq = selection.to_seq.is_some_and(|to| seq > to);
        let beyond_time = selection.until.is_some_and(|until| info.published > until);
        if beyond_seq || beyond_time {
            break;
        }
        batch.push(match Event::from_message(stream, &message) {
            Ok(event) => Item::Event(Box::new(event)),
            Err(_) => Item::Undecodable,
        });
        let end = !selection.follow && (seq >= last || left == 0);
        if end {
            break;
        }
        if (batch.len() >= BATCH || left == 0)
            && out
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .await
                .is_err()
        {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = out.send(batch).await;
    }
}

/// Reads the selection and hands every event to `each`, in stream order (both streams merged
/// by when they were stored), reporting progress as it goes. Checks that NATS has the streams
/// first. Stops at the first error of `each`.
pub async fn read(
    js: &Context,
    selection: &Selection,
    mut progress: impl FnMut(Progress),
    mut each: impl FnMut(Event) -> Result<(), AuditError>,
) -> Result<Summary, AuditError> {
    let mut readers = Vec::new();
    let (totals_tx, mut totals_rx) = mpsc::unbounded_channel();
    for stream in &selection.streams {
        let last = extent(js, *stream).await?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(read_one(
            js.clone(),
            *stream,
            selection.clone(),
            last,
            tx,
            totals_tx.clone(),
        ));
        readers.push((rx, std::collections::VecDeque::<Item>::new(), false));
    }
    drop(totals_tx);
    let mut state = Progress::default();
    let mut summary = Summary::default();
    let mut waiting_totals = selection.streams.len();
    loop {
        while waiting_totals > 0 {
            match totals_rx.try_recv() {
                Ok(n) => {
                    state.total += n;
                    waiting_totals -= 1;
                }
                Err(_) => break,
            }
        }
        // Every reader that has none in hand takes its next batch.
        for (rx, queue, done) in readers.iter_mut() {
            if queue.is_empty() && !*done {
                match rx.recv().await {
                    Some(batch) => queue.extend(batch),
                    None => *done = true,
                }
            }
        }
        // The earliest stored of the heads goes next.
        let next = readers
            .iter()
            .enumerate()
            .filter_map(|(i, (_, queue, _))| match queue.front() {
                Some(Item::Event(e)) => Some((i, Some((e.stored_at, e.stream)))),
                Some(_) => Some((i, None)),
                None => None,
            })
            .min_by_key(|(_, key)| *key)
            .map(|(i, _)| i);
        let Some(i) = next else {
            if readers.iter().all(|(_, q, done)| *done && q.is_empty()) {
                break;
            }
            continue;
        };
        let Some(item) = readers[i].1.pop_front() else {
            continue;
        };
        state.done += 1;
        match item {
            Item::Failed(e) => return Err(e),
            Item::Undecodable => summary.undecodable += 1,
            Item::Event(event) => {
                let wanted = selection.player.is_none_or(|p| event.concerns(p))
                    && selection
                        .correlation
                        .is_none_or(|c| event.correlation_id == c.to_string());
                if wanted {
                    summary.events += 1;
                    each(*event)?;
                } else {
                    summary.skipped += 1;
                }
            }
        }
        if state.done.is_multiple_of(1024) {
            progress(state);
        }
    }
    state.total = state.total.max(state.done);
    progress(state);
    Ok(summary)
}
