//! Waiting for a condition in a test: poll it until it holds, with a deadline, never a fixed
//! sleep.
//!
//! ```no_run
//! # async fn example(count: impl Fn() -> u64) {
//! use test_servers::poll::eventually;
//! eventually("three facts are stored", || async { count() == 3 }).await;
//! let n = eventually("something is stored", || async { Some(count()).filter(|n| *n > 0) }).await;
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long [`eventually`] waits before it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a condition is asked again.
pub const EVERY: Duration = Duration::from_millis(50);

/// What a check answers: `true` or `Some(value)` once the condition holds.
pub trait Check {
    /// What the wait gives back once the condition holds.
    type Value;
    /// `Some` once the condition holds.
    fn holds(self) -> Option<Self::Value>;
}

impl Check for bool {
    type Value = ();
    fn holds(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn holds(self) -> Option<T> {
        self
    }
}

/// Asks `check` every [`EVERY`] until it holds, for [`PATIENCE`] at most, and fails the test
/// naming `what` when it never does. Gives back what the check gave.
pub async fn eventually<C, F, Fut>(what: &str, check: F) -> C::Value
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    eventually_within(PATIENCE, what, check).await
}

/// [`eventually`], waiting `within` at most.
pub async fn eventually_within<C, F, Fut>(within: Duration, what: &str, check: F) -> C::Value
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    match poll(within, check).await {
        Some(value) => value,
        None => panic!("timed out after {within:?} waiting until {what}"),
    }
}

/// Asks `check` every [`EVERY`] until it holds, for `within` at most; `None` when it never did,
/// for a caller that has more to say when it fails.
pub async fn poll<C, F, Fut>(within: Duration, mut check: F) -> Option<C::Value>
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await.holds() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn gives_back_what_the_check_found_once_it_holds() {
        let asked = AtomicU32::new(0);
        let found = eventually("the third ask", || async {
            let n = asked.fetch_add(1, Ordering::SeqCst) + 1;
            (n >= 3).then_some(n)
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_having_asked_again() {
        let asked = AtomicU32::new(0);
        let found = poll(Duration::from_millis(200), || async {
            asked.fetch_add(1, Ordering::SeqCst);
            false
        })
        .await;
        assert_eq!(found, None);
        // At once, then every EVERY until the deadline, and once at it.
        assert!(asked.load(Ordering::SeqCst) >= 3, "{asked:?}");
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 100ms waiting until nothing happens")]
    async fn fails_naming_what_it_waited_for() {
        eventually_within(Duration::from_millis(100), "nothing happens", || async {
            false
        })
        .await;
    }
}
