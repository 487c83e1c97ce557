//! Where the simulators put players' avatars (`avatar_regions`), for many commands at once.
//!
//! Every command asks where its player's avatar is, and the answer must not be behind an outcome
//! the player was told of, whichever gateway told it (a simulator writes the entry before it
//! stores the fact behind it). The gateway keeps a copy of the bucket, fed by a watch of it that
//! begins with each key's last entry, and a task of its own collects the lookups that come in
//! while earlier ones are answered. For each such batch it asks NATS whether the bucket holds
//! anything past what the copy holds (one read, sent after every lookup in the batch was asked
//! for); when it does not, the copy answers the whole batch, and when it does, the copy is waited
//! for and the bucket asked again. Under load NATS answers one small read for many commands,
//! instead of one lookup each. The read is a direct get, as a lookup of one key is: on a
//! replicated stream any replica may answer it.
//!
//! When the copy cannot answer within [`CATCH_UP`] (its watch is starting over, or lags), the
//! batch is read from the bucket itself in one request
//! ([`nats_topology::avatars::lookup_many`]). A batch not answered within [`BUDGET`] fails every
//! lookup in it; the caller then routes by the read models.
//!
//! What a watch need not hear of, a stream made anew or purged, a check every [`CHECK`] notices
//! (the stream's creation time, and fewer messages in it than keys in the copy); the copy then
//! starts over. Until then a gateway may route by entries the bucket lost, or miss entries
//! written to a stream made anew.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use nats_topology::avatars::{AvatarRegion, MOST_AT_ONCE, lookup_many};
use schemas::PlayerId;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::redis_asks::BUDGET;

/// Lookups queued at most; more wait for room.
const QUEUE: usize = 4096;

/// Batches being answered at once. While they are, new lookups gather for the next one.
const IN_FLIGHT: usize = 2;

/// How long the copy may take to answer a batch (its read of the bucket included) before the
/// batch is read from the bucket itself, within what is left of [`BUDGET`].
const CATCH_UP: std::time::Duration = std::time::Duration::from_millis(50);

/// How long to wait before watching the bucket again after its watch failed.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the copy is compared with the bucket's stream, for what no watch tells: the stream
/// made anew, or purged.
const CHECK: std::time::Duration = std::time::Duration::from_secs(1);

type Reply = oneshot::Sender<Result<Option<AvatarRegion>, Unanswered>>;

/// The bucket gave no answer: why, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("avatar_regions gave no answer: {0}")]
pub struct Unanswered(pub String);

/// How far the copy has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    /// Counts the watches begun. A copy that starts over is empty and goes back to sequence 0, so
    /// a batch that found nothing past the copy of one watch is not answered from another's.
    watch: u64,
    /// Whether a watch is feeding the copy.
    following: bool,
    /// The last sequence of the bucket the copy holds.
    seen: u64,
}

/// The gateway's copy of the bucket: one entry per key, as the bucket keeps one message per key.
#[derive(Debug, Default)]
struct Held {
    progress: Progress,
    /// Each player's entry: `None` for one deleted or unreadable.
    entries: HashMap<PlayerId, Option<AvatarRegion>>,
    /// Keys that name no player.
    strangers: std::collections::HashSet<String>,
}

impl Held {
    /// The keys the copy holds an entry (or a deletion) for: each has one message in the bucket
    /// (its last), unless the stream was purged.
    fn keys(&self) -> u64 {
        (self.entries.len() + self.strangers.len()) as u64
    }
}

/// The shared lookups; cheap to clone.
#[derive(Debug, Clone)]
pub struct Placements {
    asks: mpsc::Sender<(PlayerId, Reply)>,
    watched: watch::Receiver<Progress>,
}

impl Placements {
    /// Starts watching `bucket` and the task that answers lookups, through `client` (the
    /// bucket's own connection). Both end when every clone is dropped.
    ///
    /// Each lookup answered is counted in `answered` by what answered it (`copy` or `bucket`).
    pub fn start(
        client: async_nats::Client,
        bucket: Store,
        answered: prometheus::IntCounterVec,
    ) -> Self {
        let (asks, queue) = mpsc::channel(QUEUE);
        let copy = Arc::new(RwLock::new(Held::default()));
        let (progress, watched) = watch::channel(Progress::default());
        tokio::spawn(follow(bucket.clone(), Arc::clone(&copy), progress));
        let lookups = Lookups {
            client,
            bucket,
            copy,
            watched: watched.clone(),
            answered,
        };
        tokio::spawn(answer_lookups(queue, lookups));
        Self { asks, watched }
    }

    /// Whether a watch feeds the copy now, so that lookups are answered from it.
    pub fn copying(&self) -> bool {
        self.watched.borrow().following
    }

    /// What the bucket says of `player`: `None` when it has no (readable) entry for it.
    pub async fn lookup(&self, player: PlayerId) -> Result<Option<AvatarRegion>, Unanswered> {
        let stopped = || Unanswered("the lookups have stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.asks
            .send((player, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Keeps `copy` equal to the bucket, watching it again (from an empty copy) whenever its watch
/// ends or fails, or the stream is found made anew or purged.
async fn follow(bucket: Store, copy: Arc<RwLock<Held>>, progress: watch::Sender<Progress>) {
    let mut watches = 0;
    loop {
        let started = tokio::select! {
            started = start_watch(&bucket) => started,
            () = progress.closed() => return,
        };
        match started {
            Ok((mut entries, created)) => {
                watches += 1;
                set(&copy, &progress, |c| {
                    *c = Held {
                        progress: Progress {
                            watch: watches,
                            following: true,
                            seen: 0,
                        },
                        ..Held::default()
                    };
                });
                // The check runs beside the watch, so that a slow answer delays no entry.
                let (stale, mut found_stale) = mpsc::channel(1);
                let check = tokio::spawn(check_every_while(
                    bucket.clone(),
                    created,
                    Arc::clone(&copy),
                    stale,
                ));
                let _check = AbortOnDrop(check);
                loop {
                    let entry = tokio::select! {
                        entry = entries.next() => entry,
                        Some(why) = found_stale.recv() => {
                            tracing::warn!("watching avatar_regions again: {why}");
                            break;
                        }
                        () = progress.closed() => return,
                    };
                    match entry {
                        Some(Ok(entry)) => set(&copy, &progress, |c| apply(c, &entry)),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the watch of avatar_regions failed");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch avatar_regions"),
        }
        set(&copy, &progress, |c| {
            *c = Held {
                progress: Progress {
                    following: false,
                    ..c.progress
                },
                ..Held::default()
            };
        });
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = progress.closed() => return,
        }
    }
}

/// A watch of every key of `bucket`, beginning with each key's last entry, and when its stream
/// was made.
async fn start_watch(
    bucket: &Store,
) -> Result<
    (
        async_nats::jetstream::kv::Watch,
        chrono::DateTime<chrono::Utc>,
    ),
    String,
> {
    let created = stream_created(bucket).await?;
    let watch = bucket
        .watch_with_history(">")
        .await
        .map_err(|e| e.to_string())?;
    Ok((watch, created))
}

async fn stream_created(bucket: &Store) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let info = bucket.stream.get_info().await.map_err(|e| e.to_string())?;
    Ok(info.created)
}

/// Compares the copy with the bucket's stream every [`CHECK`], and sends why it is stale once it
/// finds it so (see [`stale`]). A check the stream does not answer proves nothing: the next one
/// tries again (a stream that is gone also ends the watch).
async fn check_every_while(
    bucket: Store,
    created: chrono::DateTime<chrono::Utc>,
    copy: Arc<RwLock<Held>>,
    found: mpsc::Sender<String>,
) {
    let mut every = tokio::time::interval(CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match stale(&bucket, created, &copy).await {
            Ok(None) => {}
            Ok(Some(why)) => {
                let _ = found.send(why).await;
                return;
            }
            Err(e) => tracing::warn!(error = %e, "avatar_regions did not say what it holds"),
        }
    }
}

/// Why the copy is stale, if it is: the bucket's stream is not the one it was begun from, or
/// holds fewer messages than the copy has keys. The bucket keeps one message per key (its last),
/// so every key the copy holds has its message in the stream unless the stream was purged. A
/// stream made anew, or purged, need not end the watch: the server sends it no word of either.
async fn stale(
    bucket: &Store,
    created: chrono::DateTime<chrono::Utc>,
    copy: &RwLock<Held>,
) -> Result<Option<String>, async_nats::jetstream::stream::InfoError> {
    // The copy first: every key it holds then has its message in the stream read after.
    let held = copy.read().unwrap_or_else(|e| e.into_inner()).keys();
    let info = bucket.stream.get_info().await?;
    if info.created != created {
        return Ok(Some("its stream was made anew".to_owned()));
    }
    let stored = info.state.messages;
    Ok((stored < held)
        .then(|| format!("its stream holds {stored} messages where the copy holds {held} keys")))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Changes the copy, then tells the batches waiting for it how far it has come.
fn set(copy: &RwLock<Held>, progress: &watch::Sender<Progress>, change: impl FnOnce(&mut Held)) {
    let now = {
        let mut copy = copy.write().unwrap_or_else(|e| e.into_inner());
        change(&mut copy);
        copy.progress
    };
    progress.send_replace(now);
}

/// One entry of the watch, applied to the copy. An entry that is not readable leaves the player
/// without one, as a lookup of it in the bucket would.
fn apply(copy: &mut Held, entry: &async_nats::jetstream::kv::Entry) {
    let Ok(player) = entry.key.parse::<PlayerId>() else {
        tracing::warn!(key = %entry.key, "an avatar_regions key that is no player's; ignored");
        copy.strangers.insert(entry.key.clone());
        copy.progress.seen = copy.progress.seen.max(entry.revision);
        return;
    };
    let read = match entry.operation {
        Operation::Put => AvatarRegion::decode(&entry.value)
            .inspect_err(|e| {
                tracing::warn!(player = %player, error = %e, "an unreadable avatar_regions entry; ignored");
            })
            .ok(),
        Operation::Delete | Operation::Purge => None,
    };
    copy.entries.insert(player, read);
    copy.progress.seen = copy.progress.seen.max(entry.revision);
}

/// What answering a batch needs.
struct Lookups {
    client: async_nats::Client,
    bucket: Store,
    copy: Arc<RwLock<Held>>,
    watched: watch::Receiver<Progress>,
    answered: prometheus::IntCounterVec,
}

async fn answer_lookups(mut queue: mpsc::Receiver<(PlayerId, Reply)>, lookups: Lookups) {
    let lookups = Arc::new(lookups);
    let batches = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for room first: lookups that come in meanwhile gather for this batch.
        let Ok(permit) = Arc::clone(&batches).acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, MOST_AT_ONCE).await == 0 {
            return;
        }
        // Callers that gave up waiting need no answer.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let lookups = Arc::clone(&lookups);
        tokio::spawn(async move {
            let players: Vec<PlayerId> = batch.iter().map(|(player, _)| *player).collect();
            let answers = tokio::time::timeout(BUDGET, answer(&lookups, &players)).await;
            drop(permit);
            let answers = match answers {
                Ok(Ok(answers)) => answers,
                Ok(Err(why)) => return refuse(batch, why),
                Err(_) => return refuse(batch, Unanswered("no answer in time".to_owned())),
            };
            for (player, reply) in batch {
                let _ = reply.send(Ok(answers.get(&player).cloned().flatten()));
            }
        });
    }
}

/// What the bucket holds for `players` now: from the copy once nothing is stored in the bucket
/// past what the copy holds (asked after this was called, and again while entries keep coming);
/// from the bucket itself when the copy has not caught up within [`CATCH_UP`].
async fn answer(
    lookups: &Lookups,
    players: &[PlayerId],
) -> Result<HashMap<PlayerId, Option<AvatarRegion>>, Unanswered> {
    let Lookups {
        client,
        bucket,
        copy,
        answered,
        ..
    } = lookups;
    let mut watched = lookups.watched.clone();
    let before = *watched.borrow_and_update();
    let from_copy = async {
        if !before.following {
            return None;
        }
        let mut seen = before.seen;
        loop {
            let Some(next) = stored_after(bucket, seen).await? else {
                // Nothing past what the copy held when this was asked: it is current.
                let copy = copy.read().unwrap_or_else(|e| e.into_inner());
                return (copy.progress.watch == before.watch && copy.progress.following).then(
                    || {
                        players
                            .iter()
                            .map(|p| (*p, copy.entries.get(p).cloned().flatten()))
                            .collect()
                    },
                );
            };
            let now = watched
                .wait_for(|now| now.watch != before.watch || !now.following || now.seen >= next)
                .await
                .ok()?;
            if now.watch != before.watch || !now.following {
                return None;
            }
            seen = now.seen;
        }
    };
    let count = |by: &str| {
        answered
            .with_label_values(&[by])
            .inc_by(players.len() as u64)
    };
    if let Ok(Some(answers)) = tokio::time::timeout(CATCH_UP, from_copy).await {
        count("copy");
        return Ok(answers);
    }
    let answers = lookup_many(client, bucket, players)
        .await
        .map_err(|e| Unanswered(e.to_string()))?;
    count("bucket");
    Ok(answers)
}

/// The sequence of the bucket's first entry after `seen`, if it holds any: one read, of the
/// kind a lookup of one key is (a direct get).
async fn stored_after(bucket: &Store, seen: u64) -> Option<Option<u64>> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    let every_key = format!("{}>", bucket.prefix);
    match bucket
        .stream
        .direct_get_next_for_subject(every_key, Some(seen + 1))
        .await
    {
        Ok(message) => Some(Some(message.sequence)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Some(None),
        Err(e) => {
            tracing::warn!(error = %e, "avatar_regions did not say what it holds");
            None
        }
    }
}

fn refuse(batch: Vec<(PlayerId, Reply)>, why: Unanswered) {
    for (_, reply) in batch {
        let _ = reply.send(Err(why.clone()));
    }
}
