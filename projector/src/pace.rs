//! How the projector paces its writes to MongoDB, so that it catches up after any pause.
//!
//! - **One write at a time, taken in turn.** The facts projection, the commands audit and a
//!   rebuild share one [`Lane`]: a fair (first come, first served) semaphore, so none of them
//!   can starve another, and this process never hands the server two bulk writes at once.
//! - **A write is never abandoned while the server may still be running it.** It runs to its
//!   end on a task of its own, which holds the lane until then; the caller waits for it (keeping
//!   its messages from redelivery meanwhile) and only then retries, so a retry never lands on
//!   top of the attempt before it. Abandoning a slow write and sending it again is what froze
//!   the projection on SecantusDB: the server went on with the abandoned writes, every new
//!   attempt was slower than the last, and none finished (see the README's "The projector").
//! - **Batches fit the time a write should take** ([`Pace`]): halved (or cut to what fits) when
//!   a write is slower than the target or fails, grown back by a quarter when full batches are
//!   written in less than half of it.
//! - **Retries back off** ([`Backoff`]): exponentially, with jitter, up to a ceiling.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The projector's writes to MongoDB, one at a time (or `writers` at a time), in turn.
#[derive(Debug, Clone)]
pub struct Lane {
    permits: Arc<Semaphore>,
}

impl Lane {
    /// A lane that lets `writers` writes run at once (at least one).
    pub fn new(writers: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(writers.max(1))),
        }
    }

    /// Starts `write` on a task of its own once the lane is free. The task holds the lane until
    /// the write has ended, whatever becomes of the caller: dropping the returned [`Running`]
    /// does not stop the write, so nothing else is written over it while it runs.
    pub fn spawn<T: Send + 'static>(
        &self,
        write: impl Future<Output = T> + Send + 'static,
    ) -> Running<T> {
        let permits = Arc::clone(&self.permits);
        let queued = Instant::now();
        let handle = tokio::spawn(async move {
            // The semaphore is never closed, so this waits for a permit and never fails.
            let _permit = permits.acquire_owned().await;
            let started = Instant::now();
            let out = write.await;
            (out, started.elapsed())
        });
        Running { handle, queued }
    }
}

/// A write started on the [`Lane`]; awaiting it gives the write's result and how long the write
/// itself took (not counting the wait for the lane).
#[derive(Debug)]
pub struct Running<T> {
    handle: JoinHandle<(T, Duration)>,
    queued: Instant,
}

/// A write's task ended without a result: it panicked (a bug, logged by the runtime).
#[derive(Debug, thiserror::Error)]
#[error("the write's task failed: {0}")]
pub struct Lost(#[from] tokio::task::JoinError);

impl<T> Running<T> {
    /// How long since the write was handed to the lane.
    pub fn waited(&self) -> Duration {
        self.queued.elapsed()
    }
}

impl<T> Future for Running<T> {
    type Output = Result<(T, Duration), Lost>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.handle).poll(cx).map(|r| r.map_err(Lost))
    }
}

/// The size of the next batch: as large as fits in the target time of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct Pace {
    limit: usize,
    max: usize,
    target: Duration,
}

impl Pace {
    /// Starts at `max` events per batch, aiming at writes of `target`.
    pub fn new(max: usize, target: Duration) -> Self {
        let max = max.max(1);
        Self {
            limit: max,
            max,
            target,
        }
    }

    /// Events to take in the next batch, from 1 to the maximum.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A write of `events` took `took`: slower than the target shrinks the next batch to what
    /// would have fitted (at most half of this one); a full batch in under half the target
    /// grows it by a quarter.
    pub fn wrote(&mut self, events: usize, took: Duration) {
        if took > self.target {
            let fits = (events as f64 * self.target.as_secs_f64() / took.as_secs_f64()) as usize;
            self.limit = fits.min(self.limit / 2).max(1);
        } else if events >= self.limit && took < self.target / 2 {
            self.limit = (self.limit + self.limit.div_ceil(4)).min(self.max);
        }
    }

    /// A write failed: the next batch is half as large.
    pub fn failed(&mut self) {
        self.limit = (self.limit / 2).max(1);
    }
}

/// Delays between retries: from `first`, doubling up to `ceiling`, each drawn at random from
/// its upper half so that retries of several writers do not fall in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// Retries every 100 ms at first, every 5 s at most.
    pub fn new() -> Self {
        Self::between(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Retries from `first` up to `ceiling`.
    pub fn between(first: Duration, ceiling: Duration) -> Self {
        Self {
            next: first,
            ceiling,
        }
    }

    /// The delay before the next retry.
    pub fn delay(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        full / 2 + full.mul_f64(fastrand::f64() / 2.0)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const TARGET: Duration = Duration::from_secs(1);

    #[test]
    fn a_slow_write_shrinks_the_next_batch_to_what_fits() {
        let mut pace = Pace::new(256, TARGET);
        pace.wrote(256, Duration::from_secs(4));
        assert_eq!(pace.limit(), 64);
        // Only a little slow: still at most half.
        pace.wrote(64, Duration::from_millis(1100));
        assert_eq!(pace.limit(), 32);
    }

    #[test]
    fn fast_full_batches_grow_back_to_the_maximum_and_no_further() {
        let mut pace = Pace::new(256, TARGET);
        for _ in 0..3 {
            pace.failed();
        }
        assert_eq!(pace.limit(), 32);
        let mut seen = vec![pace.limit()];
        for _ in 0..20 {
            pace.wrote(pace.limit(), Duration::from_millis(100));
            seen.push(pace.limit());
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(pace.limit(), 256);
    }

    #[test]
    fn a_batch_that_was_not_full_or_not_fast_enough_leaves_the_size_alone() {
        let mut pace = Pace::new(256, TARGET);
        pace.failed();
        pace.wrote(10, Duration::from_millis(10));
        pace.wrote(128, Duration::from_millis(700));
        assert_eq!(pace.limit(), 128);
    }

    #[test]
    fn the_batch_never_shrinks_below_one() {
        let mut pace = Pace::new(4, TARGET);
        for _ in 0..10 {
            pace.failed();
            pace.wrote(1, Duration::from_secs(60));
        }
        assert_eq!(pace.limit(), 1);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_ceiling() {
        let mut b = Backoff::between(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.delay()).collect();
        let ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, c) in delays.iter().zip(ceilings) {
            let c = Duration::from_millis(c);
            assert!(*d >= c / 2 && *d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
        }
    }

    #[tokio::test]
    async fn writes_on_one_lane_never_overlap_and_go_in_turn() {
        let lane = Lane::new(1);
        let running = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut writes = Vec::new();
        for i in 0..6 {
            let running = Arc::clone(&running);
            let order = Arc::clone(&order);
            writes.push(lane.spawn(async move {
                assert_eq!(
                    running.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two writes at once"
                );
                tokio::task::yield_now().await;
                order.lock().map(|mut o| o.push(i)).ok();
                running.fetch_sub(1, Ordering::SeqCst);
            }));
            tokio::task::yield_now().await;
        }
        for w in writes {
            w.await.expect("the write ran");
        }
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_write_whose_caller_gave_up_still_holds_the_lane_until_it_ends() {
        let lane = Lane::new(1);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = lane.spawn(async move {
            let _ = released.await;
            "first"
        });
        drop(first);
        let second = lane.spawn(async { "second" });
        let mut second = std::pin::pin!(second);
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "the second write waits for the first"
        );
        tokio::task::yield_now().await;
        assert!(futures::poll!(second.as_mut()).is_pending());
        let _ = release.send(());
        let (out, _) = second.await.expect("the second write ran");
        assert_eq!(out, "second");
    }
}
