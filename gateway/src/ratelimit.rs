//! Rate limits, per client IP, per player and on failed logins per account, shared by every
//! gateway through Redis.
//!
//! The rule is the generic cell rate algorithm (GCRA): one Redis key per limited thing holds the
//! theoretical arrival time of the next request, updated atomically by the [`crate::redis_asks`] script
//! with Redis's own clock, so every gateway sees one limit. When Redis does not answer within
//! [`crate::redis_asks::BUDGET`], each gateway limits on its own with the same rule in memory (the
//! `governor` crate), says so in the `gateway_rate_limiter_fallback` metric and in the log, and
//! goes back to Redis as soon as it answers again.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::metrics::Metrics;
use crate::redis_asks::{Ask, Gate, Limit, Unanswered};
use crate::settings::{Rate, RateLimits};

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Register and log in, per IP.
    AuthPerIp,
    /// Any route, per IP.
    ApiPerIp,
    /// Commands, per player.
    CommandsPerPlayer,
    /// Reads, per player.
    ReadsPerPlayer,
    /// Failed logins, per account (see [`Limiter::refund`]).
    LoginFailuresPerAccount,
}

impl Rule {
    /// The name in metrics and Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AuthPerIp => "auth_per_ip",
            Rule::ApiPerIp => "api_per_ip",
            Rule::CommandsPerPlayer => "commands_per_player",
            Rule::ReadsPerPlayer => "reads_per_player",
            Rule::LoginFailuresPerAccount => "login_failures_per_account",
        }
    }

    fn rate(self, limits: &RateLimits) -> Rate {
        match self {
            Rule::AuthPerIp => limits.auth_per_ip,
            Rule::ApiPerIp => limits.api_per_ip,
            Rule::CommandsPerPlayer => limits.commands_per_player,
            Rule::ReadsPerPlayer => limits.reads_per_player,
            Rule::LoginFailuresPerAccount => limits.login_failures_per_account,
        }
    }
}

const RULES: [Rule; 5] = [
    Rule::AuthPerIp,
    Rule::ApiPerIp,
    Rule::CommandsPerPlayer,
    Rule::ReadsPerPlayer,
    Rule::LoginFailuresPerAccount,
];

/// How many keys a local limiter holds before it first forgets those it would treat as new
/// anyway: every made-up username or address while Redis is away adds one.
const LOCAL_KEYS: usize = 10_000;

/// One rule's limiter for while Redis is away.
struct Local {
    rule: Rule,
    limiter: DefaultKeyedRateLimiter<String>,
    /// How many keys it holds when it next forgets the idle ones: twice what the last sweep
    /// kept (at least [`LOCAL_KEYS`]), so that keys all still within their limits are not swept
    /// again at every request.
    sweep_at: AtomicUsize,
}

impl Local {
    /// Forgets the idle keys once there are enough of them to be worth a pass over the map.
    fn sweep_when_due(&self) {
        if self.limiter.len() < self.sweep_at.load(Ordering::Relaxed) {
            return;
        }
        self.limiter.retain_recent();
        let kept = self.limiter.len();
        self.sweep_at
            .store(LOCAL_KEYS.max(kept.saturating_mul(2)), Ordering::Relaxed);
    }
}

/// Forgets the keys of `limiter` whose budgets are whole again (no longer limited), and gives
/// back the memory they held.
fn forget_the_idle(limiter: &DefaultKeyedRateLimiter<String>) {
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

/// The limiter every request passes.
#[derive(Clone)]
pub struct Limiter {
    limits: RateLimits,
    gate: Gate,
    local: Arc<Vec<Local>>,
    falling_back: Arc<AtomicBool>,
    metrics: Metrics,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn interval(rate: Rate) -> Duration {
    Duration::from_secs_f64(1.0 / rate.rate_per_sec)
}

impl Limiter {
    /// A limiter for these rules.
    pub fn new(limits: RateLimits, gate: Gate, metrics: Metrics) -> Self {
        let local = RULES
            .iter()
            .map(|rule| {
                let rate = rule.rate(&limits);
                let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(interval(rate))
                    .map_or(Quota::per_second(burst), |q| q.allow_burst(burst));
                Local {
                    rule: *rule,
                    limiter: RateLimiter::keyed(quota),
                    sweep_at: AtomicUsize::new(LOCAL_KEYS),
                }
            })
            .collect();
        Self {
            limits,
            gate,
            local: Arc::new(local),
            falling_back: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// The limit `key` counts against under `rule`, as the gate script takes it.
    pub fn limit(&self, rule: Rule, key: &str) -> Limit {
        let rate = rule.rate(&self.limits);
        let interval_ms = (interval(rate).as_secs_f64() * 1000.0).ceil().max(1.0) as u64;
        Limit {
            key: format!("rl:{}:{}", rule.as_str(), service::redis::tag(key)),
            interval_ms,
            tolerance_ms: interval_ms * u64::from(rate.burst),
        }
    }

    /// Counts one request against several limits in one round trip to Redis: `Ok` when every
    /// limit allows it (and then every one counts it), `Err(wait)` otherwise.
    pub async fn check_all(&self, limits: &[(Rule, &str)]) -> Result<(), Duration> {
        let ask = Ask {
            limits: limits.iter().map(|(r, k)| self.limit(*r, k)).collect(),
            ..Ask::default()
        };
        let answer = self.gate.ask(ask).await.map(|a| a.wait);
        self.decide(limits, answer)
    }

    /// The decision on `limits` once Redis has answered (`Ok(None)`: counted; `Ok(Some(wait))`:
    /// over), or locally when it has not.
    pub fn decide(
        &self,
        limits: &[(Rule, &str)],
        answer: Result<Option<Duration>, Unanswered>,
    ) -> Result<(), Duration> {
        let decided = match answer {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(wait.max(Duration::from_millis(1))),
            Err(e) => return self.all_locally(limits, &e.0),
        };
        if self.falling_back.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again: rate limits are shared again");
            self.metrics.set_limiter_fallback(false);
            for local in self.local.iter() {
                forget_the_idle(&local.limiter);
                local.sweep_at.store(LOCAL_KEYS, Ordering::Relaxed);
            }
        }
        if decided.is_err() {
            for (rule, _) in limits {
                self.metrics.rate_limited(rule.as_str());
            }
        }
        decided
    }

    fn all_locally(&self, limits: &[(Rule, &str)], why: &str) -> Result<(), Duration> {
        let mut wait = None;
        for (rule, key) in limits {
            if let Err(w) = self.locally(*rule, key, why) {
                wait = Some(wait.map_or(w, |longest: Duration| longest.max(w)));
            }
        }
        wait.map_or(Ok(()), Err)
    }

    fn locally(&self, rule: Rule, key: &str, why: &str) -> Result<(), Duration> {
        if !self.falling_back.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = why,
                "Redis unreachable: rate limits fall back to this gateway's own"
            );
            self.metrics.set_limiter_fallback(true);
        }
        self.metrics.dependency_error("redis");
        let Some(local) = self.local.iter().find(|l| l.rule == rule) else {
            return Ok(());
        };
        local.sweep_when_due();
        local
            .limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| {
                self.metrics.rate_limited(rule.as_str());
                not_until.wait_time_from(DefaultClock::default().now())
            })
    }

    /// Gives back a request counted against `rule` for `key`: a limit on failures counts every
    /// attempt first (so that attempts in flight at once cannot overrun it) and gives back those
    /// that did not fail. Nothing is given back while Redis is unreachable (the local fallback
    /// keeps what it counted).
    pub async fn refund(
        &self,
        redis: &mut service::redis::Redis,
        rule: Rule,
        key: &str,
    ) -> Result<(), redis::RedisError> {
        crate::redis_asks::refund(redis, &self.limit(rule, key)).await
    }

    /// Whether the local fallback is in use right now.
    pub fn is_falling_back(&self) -> bool {
        self.falling_back.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn local(quota: Quota) -> Local {
        Local {
            rule: Rule::AuthPerIp,
            limiter: RateLimiter::keyed(quota),
            sweep_at: AtomicUsize::new(LOCAL_KEYS),
        }
    }

    #[test]
    fn a_local_limiter_forgets_idle_keys_once_it_holds_many() {
        // A key's budget is whole again a millisecond after its one request.
        let fast = local(Quota::with_period(Duration::from_millis(1)).expect("a period"));
        for i in 1..LOCAL_KEYS {
            let _ = fast.limiter.check_key(&format!("made-up-{i}"));
            fast.sweep_when_due();
        }
        assert_eq!(
            fast.limiter.len(),
            LOCAL_KEYS - 1,
            "not swept below the mark"
        );
        // Once those are idle, the key that reaches the mark sweeps them away.
        let idle_from = Instant::now() + Duration::from_millis(5);
        while Instant::now() < idle_from {
            std::hint::spin_loop();
        }
        let _ = fast.limiter.check_key(&"the last".to_owned());
        fast.sweep_when_due();
        assert!(fast.limiter.len() <= 1, "{} keys kept", fast.limiter.len());
        assert_eq!(fast.sweep_at.load(Ordering::Relaxed), LOCAL_KEYS);
    }

    #[test]
    fn keys_still_within_their_limits_are_kept_and_not_swept_again_at_once() {
        let slow = local(Quota::per_hour(NonZeroU32::MIN));
        for i in 0..LOCAL_KEYS {
            assert!(slow.limiter.check_key(&format!("player-{i}")).is_ok());
        }
        slow.sweep_when_due();
        assert_eq!(slow.limiter.len(), LOCAL_KEYS, "every one still limited");
        assert!(slow.limiter.check_key(&"player-0".to_owned()).is_err());
        // The next sweep waits until the map has doubled.
        assert_eq!(slow.sweep_at.load(Ordering::Relaxed), 2 * LOCAL_KEYS);
    }
}
