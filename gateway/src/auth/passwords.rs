//! Passwords: Argon2id hashes with a fresh salt, and a decoy hash so that a login takes as long
//! whether or not the account exists.
//!
//! A hash takes tens of milliseconds of a core on purpose, so it runs where it cannot take the
//! cores from the game: on [`Passwords`]' workers, threads of their own, few of them, at a lower
//! CPU priority than the rest of the machine's work (nice +10 on Linux). A burst of logins then
//! queues for the workers and slows logins, while the commands, the live streams and the other
//! servers on the machine keep their share of the cores. (On tokio's blocking threads, as many
//! hashes ran at once as logins came in, at full priority: see the README's Benchmarks for what
//! that cost the commands' latency.)

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use prometheus::IntCounter;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ApiError, Code};

/// How many hashes may wait for a worker unless `[auth] password_queue` says otherwise. Beyond
/// it a login or a registration is answered 503 with `Retry-After`, rather than holding its
/// connection while every worker is busy.
pub const QUEUE: usize = 256;

/// How much lower than the process the workers run: added to the nice value (Linux).
pub const NICENESS: i32 = 10;

/// A hash of a password nobody has, verified when the username is unknown so that a login
/// takes as long whether or not the account exists.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2Ym1Tl0wHk2LJyA7Y1bJ1+7iWwNb4kXuZc0e2b2zs6A";

type Job = Box<dyn FnOnce() + Send>;

/// The password workers; cheap to clone. They stop once every clone is dropped.
#[derive(Debug, Clone)]
pub struct Passwords {
    jobs: SyncSender<Job>,
    /// Counts what a full queue refused.
    refused: IntCounter,
}

impl Passwords {
    /// Starts `workers` threads (at least one), with room for `queue` hashes waiting; what a
    /// full queue refuses is counted in `refused`.
    pub fn start(workers: usize, queue: usize, refused: IntCounter) -> std::io::Result<Self> {
        let (jobs, waiting) = std::sync::mpsc::sync_channel::<Job>(queue);
        let waiting = Arc::new(Mutex::new(waiting));
        for i in 0..workers.max(1) {
            let waiting = Arc::clone(&waiting);
            std::thread::Builder::new()
                .name(format!("passwords-{i}"))
                .spawn(move || work(&waiting))?;
        }
        Ok(Self { jobs, refused })
    }

    /// Hashes a password with Argon2id and a fresh salt.
    pub async fn hash(&self, password: SecretString) -> Result<String, ApiError> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await?
        .map_err(ApiError::internal)
    }

    /// Whether `password` matches `hash` (or, with no hash, spends the same time and says no).
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, ApiError> {
        self.run(move || {
            let known = hash.is_some();
            // A stored hash that does not parse, or asks for costs no hash of this gateway has,
            // never matches; the decoy is verified instead, so the answer takes as long.
            let usable = hash.filter(|h| PasswordHash::new(h).is_ok_and(|p| within_costs(&p)));
            if known && usable.is_none() {
                tracing::error!("a stored password hash is damaged or asks for absurd costs");
            }
            let checked = usable.as_deref().unwrap_or(DECOY_HASH);
            let Ok(parsed) = PasswordHash::new(checked) else {
                return false;
            };
            let matches = Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok();
            usable.is_some() && matches
        })
        .await
    }

    /// Runs `work` on a worker; 503 when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (its client hung up): nobody to tell.
            let _ = answer.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.refused.inc();
                tracing::warn!("every password worker is busy and the queue is full");
                return Err(ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        Code::Unavailable,
                        "too many passwords are being checked at once; try again shortly",
                    )
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::internal("the password workers have stopped"));
            }
        }
        // Dropped unanswered only if the job panicked (logged by the worker).
        answered.await.map_err(ApiError::internal)
    }
}

/// Whether `hash` asks for at most 4 times the memory and the work of the shipped parameters
/// (19 MiB, two passes), which every hash this gateway makes has. Only a damaged or planted
/// document asks for more, and verifying it must not take more than a login's share of the
/// gateway's memory (or abort the process when that cannot be had: `argon2` takes the memory in
/// one allocation) or hold a worker for days.
fn within_costs(hash: &PasswordHash<'_>) -> bool {
    const MOST_BLOCKS: u64 = 4 * Params::DEFAULT_M_COST as u64;
    const MOST_WORK: u64 = MOST_BLOCKS * Params::DEFAULT_T_COST as u64;
    Params::try_from(hash).is_ok_and(|params| {
        let blocks = params.block_count() as u64;
        blocks <= MOST_BLOCKS && blocks * u64::from(params.t_cost()) <= MOST_WORK
    })
}

/// A worker: lowers its own priority, then runs jobs until every sender is gone. A job that
/// panics is logged and the worker goes on.
fn work(waiting: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            // Only a panic while holding the lock poisons it, and no job runs under it.
            let Ok(waiting) = waiting.lock() else { return };
            waiting.recv()
        };
        let Ok(job) = job else { return };
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password job panicked");
        }
    }
}

/// Adds [`NICENESS`] to this thread's nice value. On Linux a nice value belongs to a thread, so
/// the rest of the process keeps its own.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let me = Some(rustix::thread::gettid());
    let lowered = rustix::process::getpriority_process(me)
        .and_then(|nice| rustix::process::setpriority_process(me, (nice + NICENESS).min(19)));
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "a password worker runs at the process's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("refused", "refused").expect("a counter")
    }

    #[tokio::test]
    async fn damaged_or_absurd_stored_hashes_never_match_and_cost_a_decoy_check_at_most() {
        let passwords = Passwords::start(1, QUEUE, counter()).expect("workers");
        let good = passwords
            .hash(SecretString::from("correct horse"))
            .await
            .expect("hash");
        let (head, output) = good.rsplit_once('$').expect("an output");
        let mut flipped = output.to_owned();
        let first = if flipped.starts_with('A') { "B" } else { "A" };
        flipped.replace_range(..1, first);
        let shipped = "m=19456,t=2,p=1";
        assert!(good.contains(shipped), "{good}");
        for bad in [
            format!("{head}${flipped}"),
            head.to_owned(),
            good.replace("argon2id", "scrypt"),
            good.replace("v=19", "v=18"),
            good.replace(shipped, "m=19455,t=2,p=1"),
            good.replace(shipped, "m=19456,t=2,p=1,x=5"),
            good.replace(shipped, "m=19456,t=2,p=16777215"),
            // Beyond the bound: without it the first aborts the process (4 TiB asked for in one
            // allocation) and the third holds the worker for days.
            good.replace(shipped, "m=4294967295,t=2,p=1"),
            good.replace(shipped, "m=77828,t=1,p=1"),
            good.replace(shipped, "m=19456,t=4294967295,p=1"),
            good.replace(shipped, "m=19456,t=9,p=1"),
        ] {
            let matches = passwords
                .verify(SecretString::from("correct horse"), Some(bad.clone()))
                .await
                .expect("checked");
            assert!(!matches, "{bad}");
        }
        let matches = passwords
            .verify(SecretString::from("correct horse"), Some(good.clone()))
            .await
            .expect("checked");
        assert!(matches, "the shipped costs are within the bound");
        // The bound itself, on costs not worth computing here.
        for (costs, within) in [
            ("m=77824,t=2,p=1", true),
            ("m=38912,t=4,p=1", true),
            ("m=77828,t=1,p=1", false),
            ("m=77824,t=3,p=1", false),
            ("m=38912,t=5,p=1", false),
        ] {
            let hash = good.replace(shipped, costs);
            let parsed = PasswordHash::new(&hash).expect("parses");
            assert_eq!(within_costs(&parsed), within, "{costs}");
        }
    }

    #[test]
    fn the_decoy_hash_is_a_real_argon2_hash() {
        // Were it malformed, a login for an unknown user would return at once and tell.
        let parsed = PasswordHash::new(DECOY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let passwords = Passwords::start(1, QUEUE, counter()).expect("workers");
        let hash = passwords
            .hash(SecretString::from("correct horse"))
            .await
            .expect("hash");
        assert!(
            passwords
                .verify(SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !passwords
                .verify(SecretString::from("wrong horse"), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !passwords
                .verify(SecretString::from("correct horse"), None)
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_answered_503_and_the_workers_go_on() {
        let refused = counter();
        let passwords = Passwords::start(1, 1, refused.clone()).expect("workers");
        // The worker holds a job until told to let go ...
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let passwords = passwords.clone();
            async move {
                passwords
                    .run(move || {
                        let _ = started.send(());
                        held.recv().is_ok()
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || has_started.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("task")
            .expect("the worker took the job");
        // ... and one more job waits: the queue is full.
        let (ran, has_run) = std::sync::mpsc::channel::<()>();
        passwords
            .jobs
            .try_send(Box::new(move || {
                let _ = ran.send(());
            }))
            .expect("room for one");

        let counted = refused;
        let refused = passwords
            .run(|| 3)
            .await
            .expect_err("a full queue is refused");
        assert_eq!(refused.code, Code::Unavailable);
        assert_eq!(refused.retry_after, Some(1));
        assert_eq!(counted.get(), 1, "counted");

        release.send(()).expect("the worker holds the job");
        assert!(busy.await.expect("task").expect("answered"));
        tokio::task::spawn_blocking(move || has_run.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("task")
            .expect("the waiting job ran");
        assert_eq!(passwords.run(|| 4).await.expect("room again"), 4);
    }

    #[tokio::test]
    async fn a_job_that_panics_leaves_the_worker_running() {
        let passwords = Passwords::start(1, QUEUE, counter()).expect("workers");
        let lost = passwords
            .run(|| -> u8 { panic!("a job that panics") })
            .await;
        assert_eq!(lost.expect_err("no answer").code, Code::Internal);
        assert_eq!(passwords.run(|| 7).await.expect("the worker goes on"), 7);
    }

    #[tokio::test]
    async fn with_no_worker_left_a_password_is_answered_500_and_not_counted_as_refused() {
        // No worker holds the other end: what is left once every worker has gone.
        let (jobs, waiting) = std::sync::mpsc::sync_channel::<Job>(1);
        drop(waiting);
        let refused = counter();
        let passwords = Passwords {
            jobs,
            refused: refused.clone(),
        };
        let stopped = passwords
            .verify(SecretString::from("correct horse"), None)
            .await
            .expect_err("nobody to verify it");
        assert_eq!(stopped.code, Code::Internal);
        assert_eq!(stopped.retry_after, None, "retrying will not help");
        assert!(
            !stopped.message.contains("worker"),
            "the cause is logged, not told: {}",
            stopped.message
        );
        assert_eq!(refused.get(), 0, "not a full queue");
        let stopped = passwords
            .hash(SecretString::from("correct horse"))
            .await
            .expect_err("nobody to hash it");
        assert_eq!(stopped.code, Code::Internal);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_workers_run_below_the_process_priority() {
        let nice_here =
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("nice");
        let passwords = Passwords::start(1, QUEUE, counter()).expect("workers");
        let nice_there = passwords
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .expect("answered")
            .expect("nice");
        assert_eq!(nice_there, (nice_here + NICENESS).min(19));
    }
}
