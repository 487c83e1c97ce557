//! Rebuilding the read models from the first fact, with no downtime.
//!
//! A rebuild folds every fact of `FACTS` into fresh collections beside the live ones
//! (`players__rebuild_<job>`, `world__rebuild_<job>`) while the live projection keeps serving.
//! Once it has caught up with the stream it pauses the live projection between two batches,
//! folds the last few facts, and renames the fresh collections over the live ones (MongoDB's
//! `renameCollection` with `dropTarget`, atomic for each collection): readers see the old
//! documents until the rename and the rebuilt ones after it, and the old collections are gone.
//! The live projection then resumes; facts it had fetched but not yet written are folded into the
//! rebuilt collections again, which changes nothing (their `seq` guards).
//!
//! Jobs come from the `rebuild_jobs` bucket (the gateway's `POST /admin/projections/rebuild` and
//! `projector rebuild` write them): a projector takes a pending job by compare-and-set, so only
//! one runs it, and keeps its progress there.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Store;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Document, doc};
use nats_topology::jobs::{JobState, RebuildJob};
use nats_topology::topology::{FACTS, REBUILD_JOBS};
use tracing::{error, info, warn};

use crate::Context;
use crate::live::{ensure_indexes, facts_from, stored};
use crate::models::Stored;
use crate::pace::Pace;
use crate::projection::{self, Names, WriteError};
use schemas::read_model::collection::{PLAYERS, SESSIONS, WORLD};

/// Facts folded per bulk write during a rebuild, at most (fewer while writes are slow).
pub const REBUILD_BATCH: usize = 1000;

/// How far a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Facts folded.
    pub done: u64,
    /// Facts to fold (the stream's last sequence, as last looked at).
    pub total: u64,
    /// Facts per second so far.
    pub rate: f64,
}

impl Progress {
    /// Seconds left at the current rate, when known.
    pub fn eta_secs(&self) -> Option<u64> {
        (self.rate > 0.0)
            .then(|| (self.total.saturating_sub(self.done) as f64 / self.rate).ceil() as u64)
    }
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// NATS failed.
    #[error("NATS: {0}")]
    Nats(#[source] async_nats::Error),
    /// MongoDB failed.
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A batch of the rebuilt read models could not be written.
    #[error("writing the rebuilt read models: {0}")]
    Write(#[from] WriteError),
    /// The task writing a batch ended without a result.
    #[error(transparent)]
    Lost(#[from] crate::pace::Lost),
}

fn nats(e: impl Into<async_nats::Error>) -> RebuildError {
    RebuildError::Nats(e.into())
}

async fn last_sequence(ctx: &Context) -> Result<u64, RebuildError> {
    let mut stream = ctx.js.get_stream(FACTS).await.map_err(nats)?;
    Ok(stream.info().await.map_err(nats)?.state.last_sequence)
}

/// Writes a batch of the rebuild, on the lane in turn with the live projection, sized by `pace`.
/// Facts whose data cannot be written are left out, as the live projection dead-letters them.
async fn write(
    ctx: &Context,
    names: &Names,
    batch: &mut Vec<Stored>,
    pace: &mut Pace,
) -> Result<(), RebuildError> {
    loop {
        let (client, db, names_, facts) = (
            ctx.mongo.clone(),
            ctx.db.clone(),
            names.clone(),
            batch.clone(),
        );
        let writer = ctx.rebuild_writer.clone();
        let (result, took) = ctx
            .lane
            .spawn(async move {
                let mut writer = writer.lock().await;
                projection::apply(&client, &db, &names_, &facts, &mut writer).await
            })
            .await?;
        match result {
            Ok(_) => {
                pace.wrote(batch.len(), took);
                batch.clear();
                return Ok(());
            }
            Err(WriteError::Unwritable { facts, reason }) => {
                warn!(
                    facts = facts.len(),
                    reason, "rebuild leaves out facts it cannot write"
                );
                let mut i = 0;
                batch.retain(|_| {
                    i += 1;
                    !facts.contains(&(i - 1))
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A rebuild's fold so far: how far it got, at what pace, and whom to tell.
struct Folding<'a, F> {
    ctx: &'a Context,
    names: &'a Names,
    pace: Pace,
    progress: Progress,
    started: Instant,
    on_progress: F,
    /// The last sequence folded (0 before the first).
    folded: u64,
}

impl<F: FnMut(Progress) + Send> Folding<'_, F> {
    /// Folds the facts after the last one folded, up to `to` (a sequence, inclusive).
    async fn up_to(&mut self, to: u64) -> Result<(), RebuildError> {
        self.progress.total = to;
        let from = self.folded + 1;
        if from > to {
            return Ok(());
        }
        let (ctx, names) = (self.ctx, self.names);
        let mut messages = facts_from(ctx, from).await.map_err(nats)?;
        let mut batch: Vec<Stored> = Vec::with_capacity(self.pace.limit());
        let mut reported = Instant::now();
        while let Some(message) = messages.next().await {
            let message = message.map_err(nats)?;
            let seq = message.info().map_err(nats)?.stream_sequence;
            if seq > to {
                break;
            }
            // A fact that does not decode is the live projection's to dead-letter.
            if let Ok(fact) = stored(&message) {
                batch.push(fact);
            }
            self.progress.done = seq;
            if batch.len() >= self.pace.limit() || seq >= to {
                write(ctx, names, &mut batch, &mut self.pace).await?;
                self.progress.rate =
                    self.progress.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
                if reported.elapsed() >= Duration::from_millis(500) || seq >= to {
                    reported = Instant::now();
                    (self.on_progress)(self.progress);
                }
            }
            if seq >= to {
                break;
            }
        }
        if !batch.is_empty() {
            write(ctx, names, &mut batch, &mut self.pace).await?;
        }
        self.folded = to;
        Ok(())
    }
}

/// On a sharded cluster, shards the fresh collections as the live ones are sharded, before
/// anything is written to them, so the rename at the end leaves the read models sharded as they
/// were (a collection created by writing to it is not sharded, and would replace a sharded one).
/// Elsewhere (a replica set, SecantusDB) nothing is done. On a sharded cluster the projector's
/// user needs to read `config.collections` and to shard collections (`clusterManager`).
async fn shard_like_the_live_ones(ctx: &Context, names: &Names) -> Result<(), RebuildError> {
    let admin = ctx.mongo.database("admin");
    // Only a mongos routes to shards; anywhere else there is nothing to do, and nothing is
    // asked of `config` (which a user with rights on the game's database alone may not read).
    let hello = admin.run_command(doc! {"hello": 1}).await?;
    if hello.get_str("msg") != Ok("isdbgrid") {
        return Ok(());
    }
    let db = ctx.db.name();
    let live: Vec<String> = [PLAYERS, WORLD, SESSIONS]
        .iter()
        .map(|c| format!("{db}.{c}"))
        .collect();
    let sharded: Vec<Document> = ctx
        .mongo
        .database("config")
        .collection::<Document>("collections")
        .find(doc! {"_id": {"$in": live}})
        .await?
        .try_collect()
        .await?;
    for command in shard_commands(db, names, &sharded) {
        admin.run_command(command).await?;
    }
    Ok(())
}

/// The `shardCollection` commands that shard a rebuild's collections as the live ones are:
/// `sharded` holds the `config.collections` entries of the live read models (a sharded
/// cluster's record of each sharded collection and its key). A live collection with no entry,
/// a dropped one, or an unsplittable one (MongoDB 8 lists unsharded collections it has moved
/// that way) is not sharded, and neither is its fresh copy.
pub fn shard_commands(db: &str, names: &Names, sharded: &[Document]) -> Vec<Document> {
    [
        (&names.players, PLAYERS),
        (&names.world, WORLD),
        (&names.sessions, SESSIONS),
    ]
    .into_iter()
    .filter_map(|(fresh, live)| {
        let namespace = format!("{db}.{live}");
        let entry = sharded.iter().find(|d| {
            d.get_str("_id") == Ok(namespace.as_str())
                && !d.get_bool("dropped").unwrap_or(false)
                && !d.get_bool("unsplittable").unwrap_or(false)
        })?;
        let key = entry.get_document("key").ok()?;
        Some(doc! {
            "shardCollection": format!("{db}.{fresh}"),
            "key": key.clone(),
            "unique": entry.get_bool("unique").unwrap_or(false),
        })
    })
    .collect()
}

/// The name of the writer of rebuilds (see [`crate::projection::Writer`]).
pub const WRITER: &str = "rebuild";

/// Rebuilds the read models for job `job`, reporting progress as it goes; returns the facts
/// folded. The live collections are replaced at the end.
pub async fn rebuild(
    ctx: &Context,
    job: &str,
    mut on_progress: impl FnMut(Progress) + Send,
) -> Result<u64, RebuildError> {
    let names = Names::rebuild(job);
    for name in [&names.players, &names.world, &names.sessions] {
        ctx.db
            .collection::<mongodb::bson::Document>(name)
            .drop()
            .await?;
    }
    // What any writer of rebuilds remembers is of collections dropped now.
    projection::disown(&ctx.db, WRITER).await?;
    ctx.rebuild_writer.lock().await.forget_documents();
    ensure_indexes(&ctx.db, &names).await?;
    shard_like_the_live_ones(ctx, &names).await?;
    let progress = Progress {
        done: 0,
        total: last_sequence(ctx).await?,
        rate: 0.0,
    };
    on_progress(progress);
    let mut folding = Folding {
        ctx,
        names: &names,
        pace: Pace::new(REBUILD_BATCH, ctx.settings.target_write),
        progress,
        started: Instant::now(),
        on_progress,
        folded: 0,
    };
    // Up to the stream's end as it was, then after it as long as the stream keeps growing
    // faster than a batch; all while the live projection serves.
    loop {
        let target = last_sequence(ctx).await?;
        if target <= folding.folded + REBUILD_BATCH as u64 && folding.folded > 0 {
            break;
        }
        folding.up_to(target).await?;
        if target == 0 {
            break;
        }
    }
    // The switch: the live projection pauses between two batches; the last facts are folded,
    // and the rebuilt collections take the live ones' names.
    let paused = Instant::now();
    let guard = ctx.live_lock.lock().await;
    let target = last_sequence(ctx).await?;
    folding.up_to(target).await?;
    // The live projection's writers, here and in any projector, forget what they remember of
    // the collections about to be replaced: told before the renames, and again after them, for
    // a writer elsewhere that read the old collections in between.
    projection::disown(&ctx.db, crate::live::FACTS_CONSUMER).await?;
    ctx.live_writer.lock().await.forget_documents();
    let db = ctx.db.name().to_owned();
    for (from, to) in [
        (&names.players, PLAYERS),
        (&names.world, WORLD),
        (&names.sessions, SESSIONS),
    ] {
        ctx.mongo
            .database("admin")
            .run_command(doc! {
                "renameCollection": format!("{db}.{from}"),
                "to": format!("{db}.{to}"),
                "dropTarget": true,
            })
            .await?;
    }
    if let Err(e) = projection::disown(&ctx.db, crate::live::FACTS_CONSUMER).await {
        // The switch is made, and this process's live writer forgot what it remembered; a
        // projector elsewhere that read the old collections since the first telling may go on
        // from what it remembers of them.
        warn!(job, error = %e, "cannot tell the live writers again that the read models changed");
    }
    drop(guard);
    info!(
        job,
        facts = target,
        paused_ms = paused.elapsed().as_millis() as u64,
        "read models switched over"
    );
    folding.progress.done = target;
    (folding.on_progress)(folding.progress);
    if let Some(mut redis) = ctx.redis.clone() {
        // Cached entity queries carry the old version; player views expire within seconds.
        let bumps = regions(ctx)
            .await
            .into_iter()
            .map(|region| redis::Cmd::incr(schemas::read_model::key::world_version(region), 1))
            .collect();
        let _ = redis.in_order(vec![bumps]).await;
    }
    Ok(target)
}

async fn regions(ctx: &Context) -> Vec<String> {
    ctx.db
        .collection::<mongodb::bson::Document>(WORLD)
        .distinct("region", doc! {"region": {"$ne": null}})
        .await
        .map(|values| {
            values
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn write_job(jobs: &Store, job: &RebuildJob) {
    let written = match job.to_bytes() {
        Ok(bytes) => jobs
            .put(&job.job_id, bytes)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        warn!(job = %job.job_id, error = %e, "cannot record rebuild progress");
    }
}

/// Takes pending rebuild jobs and runs them, until `stop` turns true.
///
/// Only the projector holding the live projection's lease runs this, so a job still `running`
/// when it starts was left by a projector that stopped (killed, or its lease lost): its first
/// look takes such a job again. A rebuild starts by dropping its own collections, so what the
/// interrupted run wrote is not kept.
pub async fn take_jobs(
    ctx: std::sync::Arc<Context>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let jobs = ctx.js.get_key_value(REBUILD_JOBS).await?;
    let mut first_look = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return Ok(()),
        }
        let Ok(mut keys) = jobs.keys().await else {
            continue;
        };
        let mut pending = Vec::new();
        while let Some(Ok(key)) = keys.next().await {
            pending.push(key);
        }
        let interrupted_too = std::mem::take(&mut first_look);
        for key in pending {
            let Ok(Some(entry)) = jobs.entry(&key).await else {
                continue;
            };
            let Ok(mut job) = serde_json::from_slice::<RebuildJob>(&entry.value) else {
                continue;
            };
            match job.state {
                JobState::Pending => {}
                JobState::Running if interrupted_too => {
                    warn!(job = %job.job_id, "a rebuild interrupted when its projector stopped; running it again");
                }
                _ => continue,
            }
            job.state = JobState::Running;
            job.updated_at = Utc::now();
            let Ok(bytes) = job.to_bytes() else {
                continue;
            };
            // Compare-and-set: of several projectors, one takes it.
            if jobs.update(&key, bytes, entry.revision).await.is_err() {
                continue;
            }
            info!(job = %job.job_id, "rebuild started");
            let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
            let reporter = {
                let jobs = jobs.clone();
                let metrics = ctx.metrics.clone();
                let mut job = job.clone();
                tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        let p = *rx.borrow_and_update();
                        metrics
                            .rebuild_done
                            .set(i64::try_from(p.done).unwrap_or(i64::MAX));
                        metrics
                            .rebuild_total
                            .set(i64::try_from(p.total).unwrap_or(i64::MAX));
                        metrics.rebuild_rate.set(p.rate);
                        job.facts_done = p.done;
                        job.facts_total = p.total;
                        job.rate_per_sec = p.rate;
                        job.eta_secs = p.eta_secs();
                        job.updated_at = Utc::now();
                        write_job(&jobs, &job).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                })
            };
            let result = rebuild(&ctx, &job.job_id, |p| {
                let _ = tx.send(p);
            })
            .await;
            drop(tx);
            let _ = reporter.await;
            match result {
                Ok(facts) => {
                    job.state = JobState::Done;
                    job.facts_done = facts;
                    job.facts_total = facts;
                    job.eta_secs = Some(0);
                    info!(job = %job.job_id, facts, "rebuild done");
                }
                Err(e) => {
                    job.state = JobState::Failed;
                    job.error = Some(e.to_string());
                    error!(job = %job.job_id, error = %e, "rebuild failed");
                }
            }
            if let Ok(Some(current)) = jobs.entry(&key).await
                && let Ok(latest) = serde_json::from_slice::<RebuildJob>(&current.value)
            {
                job.rate_per_sec = latest.rate_per_sec;
            }
            job.updated_at = Utc::now();
            write_job(&jobs, &job).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_shards_its_collections_as_the_live_ones_are() {
        let names = Names::rebuild("j1");
        assert!(shard_commands("game", &names, &[]).is_empty());
        let sharded = [
            doc! {"_id": "game.players", "key": {"_id": "hashed"}, "unique": false},
            doc! {"_id": "game.world", "key": {"_id": "hashed"}},
            doc! {"_id": "game.sessions", "key": {"_id": "hashed"}, "dropped": true},
            doc! {"_id": "game.sessions", "key": {"_id": 1}, "unsplittable": true},
            doc! {"_id": "other.players", "key": {"region": 1}},
            doc! {"_id": "game.audit", "key": {"_id": "hashed"}},
        ];
        assert_eq!(
            shard_commands("game", &names, &sharded),
            [
                doc! {
                    "shardCollection": "game.players__rebuild_j1",
                    "key": {"_id": "hashed"},
                    "unique": false,
                },
                doc! {
                    "shardCollection": "game.world__rebuild_j1",
                    "key": {"_id": "hashed"},
                    "unique": false,
                },
            ]
        );
        // A live collection sharded on a key of its own keeps it.
        let own = [doc! {"_id": "game.sessions", "key": {"player": 1, "_id": 1}, "unique": true}];
        assert_eq!(
            shard_commands("game", &names, &own),
            [doc! {
                "shardCollection": "game.sessions__rebuild_j1",
                "key": {"player": 1, "_id": 1},
                "unique": true,
            }]
        );
    }
}
