//! Projection rebuild jobs, as kept in the `rebuild_jobs` bucket (key: the job id).
//!
//! The gateway writes a job as `pending` when an admin asks for a rebuild; a projector takes it
//! (compare-and-set on the key's revision, so only one does), moves it to `running` and keeps its
//! progress up to date, and ends it `done` or `failed`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a rebuild stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Asked for; no projector has taken it yet.
    Pending,
    /// A projector is rebuilding.
    Running,
    /// Rebuilt and switched over.
    Done,
    /// Gave up; `error` says why.
    Failed,
}

/// A rebuild job and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebuildJob {
    /// Its id.
    pub job_id: String,
    /// Where it stands.
    pub state: JobState,
    /// Who asked for it (a player id).
    pub requested_by: String,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// When its progress was last written.
    pub updated_at: DateTime<Utc>,
    /// Facts folded so far.
    pub facts_done: u64,
    /// Facts to fold (the `FACTS` stream's last sequence when the job started).
    pub facts_total: u64,
    /// Facts per second, recently.
    pub rate_per_sec: f64,
    /// Seconds left at that rate, when known.
    pub eta_secs: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl RebuildJob {
    /// A new job, waiting for a projector to take it, asked for by `requested_by`.
    pub fn pending(requested_by: impl Into<String>) -> Self {
        let now = Utc::now();
        Self {
            job_id: schemas::EventId::new().as_uuid().simple().to_string(),
            state: JobState::Pending,
            requested_by: requested_by.into(),
            requested_at: now,
            updated_at: now,
            facts_done: 0,
            facts_total: 0,
            rate_per_sec: 0.0,
            eta_secs: None,
            error: None,
        }
    }

    /// The job as the bucket stores it: JSON.
    pub fn to_bytes(&self) -> Result<bytes::Bytes, serde_json::Error> {
        serde_json::to_vec(self).map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::{JobState, RebuildJob};

    #[test]
    fn a_job_reads_back_as_it_was_stored() {
        let mut job = RebuildJob::pending("projector rebuild");
        job.state = JobState::Running;
        job.facts_done = u64::MAX;
        job.rate_per_sec = 1234.5;
        job.error = Some("a \"quoted\"\u{200b} reason".into());
        let back: RebuildJob =
            serde_json::from_slice(&job.to_bytes().expect("encodes")).expect("reads back");
        assert_eq!(back.job_id, job.job_id);
        assert_eq!(back.state, JobState::Running);
        assert_eq!(back.facts_done, u64::MAX);
        assert_eq!(back.rate_per_sec, 1234.5);
        assert_eq!(back.error, job.error);
    }
}
