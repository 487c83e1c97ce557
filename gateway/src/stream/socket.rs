//! The per-connection loop of a live stream: the facts of its channels out (each once), the
//! client's frames in (read and dropped), following the avatar across regions, and the close
//! frame that ends it: its session's end, the gateway's stop, a client too slow or too loud.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use schemas::read_model::channel;
use schemas::{Envelope, Fact, PlayerId};
use tokio::sync::mpsc;

use super::hub::{Delivery, Joined};
use super::interest::Interest;
use super::session_end::SessionEnd;
use super::{GOING_AWAY, PROTOCOL_ERROR, SESSION_ENDED, TOO_BIG, TOO_SLOW};
use crate::AppState;

/// How long a close frame may take to go out before the connection is dropped without it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Sink = futures::stream::SplitSink<WebSocket, Message>;
type Incoming = futures::stream::SplitStream<WebSocket>;

pub(super) async fn pump(
    socket: WebSocket,
    state: AppState,
    joined: Joined,
    interest: Interest,
    queue: mpsc::WeakSender<Delivery>,
    queued: mpsc::Receiver<Delivery>,
    mut end: SessionEnd,
) {
    let (mut sink, mut incoming) = socket.split();
    let player = interest.player();
    // The session's end wins over whatever the stream is doing, a send to a client that does
    // not read included.
    let close = tokio::select! {
        reason = end.ended() => {
            tracing::info!(%player, reason, "stream ends with its session");
            Some(close_frame(SESSION_ENDED, reason))
        }
        () = state.stopping().cancelled() => {
            tracing::info!(%player, "stream ends as the gateway stops");
            Some(close_frame(GOING_AWAY, "gateway stopping"))
        }
        close = forward(&mut sink, &mut incoming, &state, joined, interest, queue, queued) => close,
    };
    if let Some(frame) = close {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

/// At most this many queued facts go out with one flush.
const BURST: usize = 64;

/// Sends the stream's facts until the stream ends; the close frame to end it with, if any.
///
/// The facts queued when one arrives go out together, with one flush: the projector publishes a
/// batch at a time, so a stream's facts come in bursts, and a flush per fact (and the read of the
/// client's frames that followed it) was a system call per fact.
async fn forward(
    sink: &mut Sink,
    incoming: &mut Incoming,
    state: &AppState,
    mut joined: Joined,
    mut interest: Interest,
    queue: mpsc::WeakSender<Delivery>,
    mut queued: mpsc::Receiver<Delivery>,
) -> Option<CloseFrame> {
    let player = interest.player();
    let own = channel::player(player);
    let mut recent = Recent::default();
    let mut burst = Vec::with_capacity(BURST);
    loop {
        tokio::select! {
            next = queued.recv() => {
                // The hub dropped this client: it fell behind, or Redis went away.
                let Some(first) = next else {
                    return Some(close_frame(TOO_SLOW, "too slow or stream ended"));
                };
                let mut next = Some(first);
                while let Some(delivery) = next.take() {
                    if *delivery.channel == *own
                        && let Ok(fact) = Envelope::<Fact>::decode(delivery.text.as_bytes())
                        && interest.follow(&state.settings().world, &fact)
                    {
                        // What came before the move goes out before the stream moves.
                        if let Err(close) = send(sink, &mut burst, state, player).await {
                            return close;
                        }
                        if !retarget(&mut joined, &interest, &queue).await {
                            return None;
                        }
                    }
                    // A fact about the player in a region it listens to comes on two channels:
                    // once is enough.
                    if recent.first_time(&delivery.text) {
                        burst.push(Ok(Message::Text(Utf8Bytes::from(delivery.text.as_ref()))));
                    }
                    if burst.len() < BURST {
                        next = queued.try_recv().ok();
                    }
                }
                if let Err(close) = send(sink, &mut burst, state, player).await {
                    return close;
                }
            }
            from_client = incoming.next() => match from_client {
                None | Some(Ok(Message::Close(_))) => return None,
                Some(Err(e)) => return refusal(e),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends the facts of `burst` (emptying it) with one flush; the stream's end (with the close
/// frame to end it with, if any) when they could not all go out.
///
/// While a send waits, nothing else on the stream runs, the hub's "too slow" included: a client
/// that stops reading is closed on its own clock, `stream.send_timeout_ms` for the burst.
async fn send(
    sink: &mut Sink,
    burst: &mut Vec<Result<Message, axum::Error>>,
    state: &AppState,
    player: PlayerId,
) -> Result<(), Option<CloseFrame>> {
    if burst.is_empty() {
        return Ok(());
    }
    let timeout = state.settings().stream_send_timeout;
    let mut out = futures::stream::iter(burst.drain(..));
    match tokio::time::timeout(timeout, sink.send_all(&mut out)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => {
            tracing::info!(%player, "a stream's client stopped reading");
            Err(Some(close_frame(TOO_SLOW, "too slow or stream ended")))
        }
    }
}

/// The close frame for what a client sent that could not be read: 1009 when it was too big,
/// 1002 when it broke the protocol, none when the connection itself failed.
fn refusal(error: axum::Error) -> Option<CloseFrame> {
    let error = error.into_inner().downcast::<tungstenite::Error>().ok()?;
    match *error {
        tungstenite::Error::Capacity(_) => {
            Some(close_frame(TOO_BIG, "message too big for a stream"))
        }
        tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => {
            Some(close_frame(PROTOCOL_ERROR, "protocol error"))
        }
        _ => None,
    }
}

/// Moves a stream to the channels of its interest; `false` when the stream has ended.
async fn retarget(
    joined: &mut Joined,
    interest: &Interest,
    queue: &mpsc::WeakSender<Delivery>,
) -> bool {
    let next = interest.channels();
    let added: BTreeSet<String> = next.difference(&joined.channels).cloned().collect();
    let removed: BTreeSet<String> = joined.channels.difference(&next).cloned().collect();
    if !added.is_empty() {
        // No queue: the hub dropped this client already.
        let Some(queue) = queue.upgrade() else {
            return false;
        };
        if let Err(e) = joined.hub.join(joined.conn, &added, &queue).await {
            tracing::warn!(error = %e, "a stream could not follow its player");
            return false;
        }
    }
    joined.hub.leave(joined.conn, &removed).await;
    tracing::debug!(channels = ?next, "stream follows its player");
    joined.channels = next;
    true
}

/// The ids of the last facts sent on one connection, to send each once.
#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<String>,
    seen: std::collections::HashSet<String>,
}

impl Recent {
    const KEEP: usize = 1024;

    /// Whether a message is seen for the first time (messages without an id always are).
    fn first_time(&mut self, text: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Id {
            id: Option<String>,
        }
        let Some(id) = serde_json::from_str::<Id>(text).ok().and_then(|m| m.id) else {
            return true;
        };
        if !self.seen.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_arriving_on_two_channels_is_sent_once() {
        let mut recent = Recent::default();
        let fact = r#"{"id": "0193", "kind": "damaged"}"#;
        assert!(recent.first_time(fact));
        assert!(!recent.first_time(fact));
        assert!(recent.first_time(r#"{"id": "0194", "kind": "moved"}"#));
        // Live positions carry no id; each is sent.
        let positions = r#"{"kind": "positions", "entities": []}"#;
        assert!(recent.first_time(positions) && recent.first_time(positions));
    }
}
