//! The live streams open on this gateway: how many each player and each client address holds,
//! capped (`stream.max_per_player`, `stream.max_per_ip`) so that no client can make the gateway
//! hold sockets and queues without bound, and the sessions they were opened with, checked in
//! Redis together every `stream.session_check_ms`.
//!
//! The check is a backstop. Whatever ends a session announces it on Redis
//! ([`crate::stream::announce_ended`]) and an expiry is timed by each stream, so a stream
//! normally ends at once; a session that ends without a word (deleted by hand, by a path that
//! does not announce, or announced while the stream was subscribing) is found here, on every
//! gateway, within one period: one pipelined round trip of `EXISTS` for all the streams of the
//! gateway, however many.
//!
//! The caps count the streams of this gateway: they bound what one gateway holds, which is what
//! a client could exhaust, and they need no shared state that a crashed gateway would leave
//! behind.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use schemas::PlayerId;
use tokio::sync::{Notify, oneshot};

use crate::auth::session_key;
use crate::error::{ApiError, Code};

/// Sessions asked about in one pipelined call at most.
const CHECK_BATCH: usize = 1000;

/// The open streams of the gateway; shared by every stream.
#[derive(Debug)]
pub struct OpenStreams {
    max_per_player: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
    /// Told each time a stream gives its place back.
    released: Notify,
}

#[derive(Debug, Default)]
struct Open {
    per_player: HashMap<PlayerId, usize>,
    per_ip: HashMap<IpAddr, usize>,
    /// Each stream's session (its Redis key), and the signal that ends the stream when the session is gone.
    sessions: HashMap<u64, (String, oneshot::Sender<()>)>,
}

impl OpenStreams {
    /// No stream open yet; the sessions of those that will be are checked in `redis` every
    /// `every`, by a task that ends when the last handle to this is dropped.
    pub fn start(
        max_per_player: usize,
        max_per_ip: usize,
        every: Duration,
        redis: service::redis::Redis,
    ) -> Arc<Self> {
        let streams = Arc::new(Self {
            max_per_player,
            max_per_ip,
            open: Mutex::default(),
            released: Notify::new(),
        });
        tokio::spawn(check_sessions(Arc::downgrade(&streams), redis, every));
        streams
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A panic while holding the lock leaves plain maps behind, still usable.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts stream `conn` of `player` from `ip` in session `sid`, or refuses it (429) when
    /// the player or the address holds as many as it may. The receiver fires when the periodic
    /// check finds the session gone.
    pub fn admit(
        self: &Arc<Self>,
        conn: u64,
        player: PlayerId,
        ip: IpAddr,
        sid: &str,
    ) -> Result<(Admitted, oneshot::Receiver<()>), ApiError> {
        let mut open = self.lock();
        room_for_one("player", open.per_player.get(&player), self.max_per_player)?;
        room_for_one("address", open.per_ip.get(&ip), self.max_per_ip)?;
        *open.per_player.entry(player).or_default() += 1;
        *open.per_ip.entry(ip).or_default() += 1;
        let (gone, when_gone) = oneshot::channel();
        open.sessions.insert(conn, (session_key(player, sid), gone));
        let admitted = Admitted {
            streams: self.clone(),
            conn,
            player,
            ip,
        };
        Ok((admitted, when_gone))
    }

    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every stream has ended (its close frame sent or given up): what a stopping
    /// gateway waits for after the stop told them to end.
    pub async fn all_ended(&self) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the count is read, so a stream ending in between is not missed.
            released.as_mut().enable();
            if self.lock().per_player.is_empty() {
                return;
            }
            released.await;
        }
    }

    fn release(&self, conn: u64, player: PlayerId, ip: IpAddr) {
        {
            let mut open = self.lock();
            open.sessions.remove(&conn);
            decrement(&mut open.per_player, player);
            decrement(&mut open.per_ip, ip);
        }
        self.released.notify_waiters();
    }

    /// Every open stream and its session.
    fn watched(&self) -> Vec<(u64, String)> {
        self.lock()
            .sessions
            .iter()
            .map(|(conn, (key, _))| (*conn, key.clone()))
            .collect()
    }

    /// Ends the streams whose sessions are gone.
    fn end(&self, conns: &[u64]) {
        let mut open = self.lock();
        for conn in conns {
            if let Some((key, gone)) = open.sessions.remove(conn) {
                tracing::info!(conn, session = %key, "a stream's session is gone");
                let _ = gone.send(());
            }
        }
    }
}

/// Refuses one more stream to a holder (`who`: a player, an address) with `open` streams when
/// it may hold `max`.
fn room_for_one(who: &str, open: Option<&usize>, max: usize) -> Result<(), ApiError> {
    if open.copied().unwrap_or(0) >= max {
        return Err(ApiError::new(
            Code::TooManyStreams,
            format!("this {who} has {max} live streams open, as many as it may; close one first"),
        ));
    }
    Ok(())
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: K) {
    if let Entry::Occupied(mut entry) = counts.entry(key) {
        *entry.get_mut() -= 1;
        if *entry.get() == 0 {
            entry.remove();
        }
    }
}

/// A stream's place among the open ones, given back when dropped, however the stream ends.
#[derive(Debug)]
pub struct Admitted {
    streams: Arc<OpenStreams>,
    conn: u64,
    player: PlayerId,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.streams.release(self.conn, self.player, self.ip);
    }
}

/// Every `every`, asks Redis whether the sessions of the open streams exist, and ends the
/// streams of those that do not. Without an answer it waits for the next round: while Redis is
/// away, the streams end anyway (see [`crate::stream::Hub`]).
async fn check_sessions(
    streams: Weak<OpenStreams>,
    mut redis: service::redis::Redis,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(streams) = streams.upgrade() else {
            return;
        };
        let watched = streams.watched();
        for batch in watched.chunks(CHECK_BATCH) {
            let exists: Vec<redis::Cmd> = batch
                .iter()
                .map(|(_, key)| redis::Cmd::exists(key))
                .collect();
            let live: Vec<bool> = match redis.each(exists).await {
                Ok(live) => live,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check the sessions of open streams");
                    break;
                }
            };
            let gone: Vec<u64> = batch
                .iter()
                .zip(live)
                .filter(|(_, live)| !live)
                .map(|((conn, _), _)| *conn)
                .collect();
            streams.end(&gone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams(max_per_player: usize, max_per_ip: usize) -> Arc<OpenStreams> {
        Arc::new(OpenStreams {
            max_per_player,
            max_per_ip,
            open: Mutex::default(),
            released: Notify::new(),
        })
    }

    #[test]
    fn a_player_and_an_address_hold_at_most_their_caps() {
        let streams = streams(2, 3);
        let (ada, bo) = (PlayerId::new(), PlayerId::new());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let first = streams.admit(1, ada, ip, "s1").expect("first");
        let _second = streams.admit(2, ada, ip, "s1").expect("second");
        let refused = streams.admit(3, ada, ip, "s1").expect_err("third");
        assert_eq!(refused.code, Code::TooManyStreams);
        let _bos = streams.admit(4, bo, ip, "s2").expect("another player");
        let refused = streams
            .admit(5, bo, ip, "s2")
            .expect_err("the address is full");
        assert_eq!(refused.code, Code::TooManyStreams);
        assert!(streams.admit(6, bo, [10, 0, 0, 2].into(), "s2").is_ok());

        drop(first);
        assert!(streams.admit(7, ada, [10, 0, 0, 3].into(), "s1").is_ok());
    }

    #[test]
    fn every_stream_gives_its_place_back() {
        let streams = streams(1, 1);
        let player = PlayerId::new();
        let ip: IpAddr = [10, 0, 0, 1].into();
        for conn in 0..3 {
            let admitted = streams.admit(conn, player, ip, "s").expect("room");
            assert_eq!(streams.len(), 1);
            drop(admitted);
        }
        assert!(streams.is_empty());
        let open = streams.lock();
        assert!(open.per_player.is_empty() && open.per_ip.is_empty());
    }

    #[tokio::test]
    async fn waiting_for_every_stream_to_end_returns_when_the_last_one_does() {
        let streams = streams(4, 4);
        let player = PlayerId::new();
        let ip: IpAddr = [10, 0, 0, 1].into();
        streams.all_ended().await;
        let (first, _) = streams.admit(1, player, ip, "s").expect("room");
        let (second, _) = streams.admit(2, player, ip, "s").expect("room");
        // A gone session stops the periodic check, not the stream: it still counts.
        streams.end(&[1]);
        let waiting = tokio::spawn({
            let streams = Arc::clone(&streams);
            async move { streams.all_ended().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one stream is still open");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends with the last stream")
            .expect("the waiting task ends");
    }

    #[test]
    fn a_gone_session_ends_its_streams() {
        let streams = streams(4, 4);
        let player = PlayerId::new();
        let (_a, mut a_gone) = streams
            .admit(1, player, [10, 0, 0, 1].into(), "s1")
            .expect("a");
        let (_b, mut b_gone) = streams
            .admit(2, player, [10, 0, 0, 1].into(), "s2")
            .expect("b");
        streams.end(&[1]);
        assert_eq!(a_gone.try_recv(), Ok(()));
        assert!(b_gone.try_recv().is_err(), "the other session lives");
    }
}
