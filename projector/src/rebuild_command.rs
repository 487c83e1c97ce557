//! `projector rebuild`: records a pending rebuild job (as the gateway's admin route does) for the
//! running projector to take, and shows its progress with a progress bar until it ends.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use nats_topology::jobs::{JobState, RebuildJob};
use nats_topology::topology::REBUILD_JOBS;

use crate::settings::Settings;

/// Why `projector rebuild` could not see a rebuild through.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// NATS cannot be reached.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// The jobs bucket is missing: the topology was never ensured.
    #[error("no {REBUILD_JOBS} bucket ({0}); run `nats-topology ensure` first")]
    NoBucket(#[source] async_nats::jetstream::context::KeyValueError),
    /// The job cannot be encoded.
    #[error("cannot encode the job: {0}")]
    Encode(#[source] serde_json::Error),
    /// The job cannot be written to the bucket.
    #[error("cannot record the job: {0}")]
    Record(#[source] async_nats::jetstream::kv::CreateError),
    /// The projector took the job and reported it failed, with its reason.
    #[error("{0}")]
    Failed(String),
}

/// Asks for a rebuild and follows it to its end; `Err` when it failed or cannot be followed.
pub async fn request_and_follow(settings: &Settings) -> Result<(), FollowError> {
    let (_client, js) = nats_topology::publish::connect(
        &settings.nats_url,
        "projector-rebuild",
        &settings.nats_credentials,
    )
    .await?;
    let jobs = js
        .get_key_value(REBUILD_JOBS)
        .await
        .map_err(FollowError::NoBucket)?;
    let job = RebuildJob::pending("projector rebuild");
    jobs.create(&job.job_id, job.to_bytes().map_err(FollowError::Encode)?)
        .await
        .map_err(FollowError::Record)?;
    eprintln!("rebuild job {} requested", job.job_id);
    let bar = ProgressBar::new(0);
    // The template is a constant; were it ever refused, the default bar still shows progress.
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} facts ({msg})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let asked = Instant::now();
    let mut warned = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(Some(bytes)) = jobs.get(&job.job_id).await else {
            continue;
        };
        let Ok(now) = serde_json::from_slice::<RebuildJob>(&bytes) else {
            continue;
        };
        bar.set_length(now.facts_total);
        bar.set_position(now.facts_done);
        bar.set_message(format!(
            "{:.0}/s, {}",
            now.rate_per_sec,
            now.eta_secs
                .map_or("ETA unknown".into(), |s| format!("ETA {s} s"))
        ));
        match now.state {
            JobState::Pending if !warned && asked.elapsed() > Duration::from_secs(10) => {
                warned = true;
                bar.suspend(|| {
                    eprintln!(
                        "no projector has taken the job yet: is one running against this NATS?"
                    );
                });
            }
            JobState::Pending | JobState::Running => {}
            JobState::Done => {
                bar.finish_and_clear();
                eprintln!(
                    "rebuild job {} done: {} facts folded, the read models are switched over",
                    job.job_id, now.facts_done
                );
                return Ok(());
            }
            JobState::Failed => {
                bar.abandon();
                return Err(FollowError::Failed(
                    now.error.unwrap_or_else(|| "failed".into()),
                ));
            }
        }
    }
}
