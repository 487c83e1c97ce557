//! Rate limits, per client IP and per player, shared by every gateway through Redis.
//!
//! The rule is the generic cell rate algorithm (GCRA): one Redis key per limited thing holds the
//! theoretical arrival time of the next request, updated by one atomic script with Redis's own
//! clock, so every gateway sees one limit. When Redis does not answer within
//! [`REDIS_BUDGET`], each gateway limits on its own with the same rule in memory (the `governor`
//! crate), says so in the `gateway_rate_limiter_fallback` metric and in the log, and goes back
//! to Redis as soon as it answers again.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::metrics::Metrics;
use crate::settings::{Rate, RateLimits};

/// How long a rate-limit check may wait for Redis before the local limiter decides.
pub const REDIS_BUDGET: Duration = Duration::from_millis(100);

/// The GCRA step for every key at once, atomically: allowed (1, 0) only when every key allows,
/// and then all of them count the request; refused (0, milliseconds until all would allow), and
/// then none counts it. ARGV holds an interval and a tolerance (ms) per key.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if now < allow_at and allow_at - now > wait then wait = allow_at - now end
  tats[i] = new_tat
end
if wait > 0 then
  return {0, wait}
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tats[i], 'PX', math.max(1, tats[i] - now))
end
return {1, 0}
"#;

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
}

impl Rule {
    /// The name in metrics and Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AuthPerIp => "auth_per_ip",
            Rule::ApiPerIp => "api_per_ip",
            Rule::CommandsPerPlayer => "commands_per_player",
            Rule::ReadsPerPlayer => "reads_per_player",
        }
    }

    fn rate(self, limits: &RateLimits) -> Rate {
        match self {
            Rule::AuthPerIp => limits.auth_per_ip,
            Rule::ApiPerIp => limits.api_per_ip,
            Rule::CommandsPerPlayer => limits.commands_per_player,
            Rule::ReadsPerPlayer => limits.reads_per_player,
        }
    }
}

const RULES: [Rule; 4] = [
    Rule::AuthPerIp,
    Rule::ApiPerIp,
    Rule::CommandsPerPlayer,
    Rule::ReadsPerPlayer,
];

/// The limiter every request passes.
#[derive(Clone)]
pub struct Limiter {
    limits: RateLimits,
    script: redis::Script,
    local: Arc<Vec<(Rule, DefaultKeyedRateLimiter<String>)>>,
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
    pub fn new(limits: RateLimits, metrics: Metrics) -> Self {
        let local = RULES
            .iter()
            .map(|rule| {
                let rate = rule.rate(&limits);
                let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(interval(rate))
                    .map_or(Quota::per_second(burst), |q| q.allow_burst(burst));
                (*rule, RateLimiter::keyed(quota))
            })
            .collect();
        Self {
            limits,
            script: redis::Script::new(GCRA),
            local: Arc::new(local),
            falling_back: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// `Ok` when the request may go on, `Err(wait)` when it must come back after `wait`.
    pub async fn check(
        &self,
        redis: &mut redis::aio::ConnectionManager,
        rule: Rule,
        key: &str,
    ) -> Result<(), Duration> {
        self.check_all(redis, &[(rule, key)]).await
    }

    /// Counts one request against several limits in one round trip to Redis: `Ok` when every
    /// limit allows it (and then every one counts it), `Err(wait)` otherwise.
    pub async fn check_all(
        &self,
        redis: &mut redis::aio::ConnectionManager,
        limits: &[(Rule, &str)],
    ) -> Result<(), Duration> {
        let mut invocation = self.script.prepare_invoke();
        for (rule, key) in limits {
            let rate = rule.rate(&self.limits);
            let interval_ms = (interval(rate).as_secs_f64() * 1000.0).ceil().max(1.0) as u64;
            invocation
                .key(format!("rl:{}:{key}", rule.as_str()))
                .arg(interval_ms)
                .arg(interval_ms * u64::from(rate.burst));
        }
        let answer =
            tokio::time::timeout(REDIS_BUDGET, invocation.invoke_async::<(u8, u64)>(redis)).await;
        let decided = match answer {
            Ok(Ok((1, _))) => Ok(()),
            Ok(Ok((_, wait_ms))) => Err(Duration::from_millis(wait_ms.max(1))),
            Ok(Err(e)) => return self.all_locally(limits, &e.to_string()),
            Err(_) => return self.all_locally(limits, "no answer in time"),
        };
        if self.falling_back.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again: rate limits are shared again");
            self.metrics.set_limiter_fallback(false);
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
        let Some((_, limiter)) = self.local.iter().find(|(r, _)| *r == rule) else {
            return Ok(());
        };
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            self.metrics.rate_limited(rule.as_str());
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    /// Whether the local fallback is in use right now.
    pub fn is_falling_back(&self) -> bool {
        self.falling_back.load(Ordering::Relaxed)
    }
}
