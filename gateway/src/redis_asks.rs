//! The Redis round trip a request begins with, shared between requests.
//!
//! A command asks Redis three things before anything else: is the session live (and the token's
//! player's, and with which role), are the player
//! and its IP within their rate limits, and where is the avatar (the cached player view). Other
//! routes ask for their rate limits. Each such question is an [`Ask`]; a task of its own collects
//! the asks that come in while earlier ones are with Redis, and answers all of them with one
//! script call. Under load a call carries many asks, so Redis runs one script instead of three
//! commands per request, and the gateway makes one call instead of three.
//!
//! Each ask stays atomic on its own: its rate limits are counted together or not at all, and not
//! at all when its session has ended, except those it counts before the session is looked at
//! (the client's IP), which a flood of bad tokens meets too. An ask that gets no answer within
//! [`BUDGET`] fails with [`Unanswered`]; the caller then decides without Redis (see
//! [`crate::ratelimit`], [`crate::auth::Sessions::answered`] and [`crate::players::resolve`]).
//!
//! Every key of a call is named in `KEYS`. On a standalone Redis one call answers a whole batch.
//! A Redis Cluster runs a script only on keys of one slot, so there each ask is answered apart,
//! in parts that each lie in one slot (see [`answer_apart`]): a player's session, cached view
//! and limits carry the player's hash tag and make one part, the client's address's limits
//! another.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use redis::AsyncCommands;
use service::redis::{Redis, slot};

use crate::auth::SessionState;

/// How long an ask may wait for Redis before its caller decides without it.
pub const BUDGET: Duration = Duration::from_millis(100);

/// Asks queued for Redis at most; more wait for room, within [`BUDGET`].
const QUEUE: usize = 4096;

/// Asks in one script call at most.
const MAX_BATCH: usize = 128;

/// Script calls with Redis at once. While they are out, new asks gather for the next one.
const IN_FLIGHT: usize = 2;

/// For each ask, in order: `ARGV` holds whether it names a session (0/1), whether it names a
/// cached view (0/1), its number of limits counted before the session is looked at, its number
/// of limits counted only for a live session, the player the session must belong to (when it
/// names one), then an interval and a tolerance (ms) per limit, the first kind first; `KEYS`
/// holds the session key, the view key and the limit keys it names, in the same order. The
/// answer per ask is `{live, wait, view, role}`: `live` 1 when the session holds the named player
/// (or no session was named), 0 when there is no such session, 2 when it holds another player;
/// `wait` 0 when the request was counted, or the milliseconds until it would be (see
/// [`Answer::wait`]); `view` the cached text or nil; `role` the role the session was started
/// with (empty for a session stored as the bare player id, before sessions held roles).
///
/// The limits are the generic cell rate algorithm (GCRA) on Redis's own clock, so every gateway
/// sees one limit. Times are whole milliseconds, handed to Redis as `%d` text: Lua numbers are
/// doubles, which Redis would print with the far slower `%.17g`.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
-- Counts a request against the n limits whose keys start at KEYS[k] and whose interval and
-- tolerance start at ARGV[a]: against all of them, or against none and answers the wait.
local function count(k, a, n)
  local wait, tats = 0, {}
  for i = 0, n - 1 do
    local interval, tolerance = tonumber(ARGV[a + 2 * i]), tonumber(ARGV[a + 2 * i + 1])
    local tat = tonumber(redis.call('GET', KEYS[k + i]) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval
    local allow_at = new_tat - tolerance
    if allow_at - now > wait then wait = allow_at - now end
    tats[i] = new_tat
  end
  if wait == 0 then
    for i = 0, n - 1 do
      local ttl = math.max(1, tats[i] - now)
      redis.call('SET', KEYS[k + i], string.format('%d', tats[i]), 'PX', string.format('%d', ttl))
    end
  end
  return wait
end
local answers = {}
local k, a = 1, 2
for r = 1, tonumber(ARGV[1]) do
  local has_session, has_view = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local n_before, n = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local live, role = 1, ''
  if has_session == 1 then
    local owner = ARGV[a]
    a = a + 1
    local held = redis.call('GET', KEYS[k])
    k = k + 1
    if not held then
      live = 0
    elseif held == owner then
      role = ''
    elseif string.sub(held, 1, #owner + 1) == owner .. ' ' then
      role = string.sub(held, #owner + 2)
    else
      live = 2
    end
  end
  local view = false
  if has_view == 1 then
    view = redis.call('GET', KEYS[k])
    k = k + 1
  end
  local wait = count(k, a, n_before)
  k = k + n_before
  a = a + 2 * n_before
  if live == 1 and wait == 0 then
    wait = count(k, a, n)
  end
  k = k + n
  a = a + 2 * n
  answers[r] = {live, wait, view, role}
end
return answers
"#;

/// Gives back one request a limit counted: its theoretical arrival time moves back by one
/// interval (and the key goes once that is past). `KEYS[1]`: the limit's key; `ARGV[1]`: its
/// interval in milliseconds.
static REFUND: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local tat = tonumber(held) - tonumber(ARGV[1])
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', tat - now))
end
return 1
"#,
    )
});

/// Gives back one request `limit` counted (see [`REFUND`]).
pub async fn refund(redis: &mut Redis, limit: &Limit) -> redis::RedisResult<()> {
    let _: u8 = REFUND
        .key(&limit.key)
        .arg(limit.interval_ms)
        .invoke_async(redis)
        .await?;
    Ok(())
}

/// One rate limit an ask counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The Redis key holding the limit's next theoretical arrival time.
    pub key: String,
    /// The time one request takes up, in milliseconds.
    pub interval_ms: u64,
    /// How far ahead of now the limit may run (the burst), in milliseconds.
    pub tolerance_ms: u64,
}

/// A session to look up, and the player whose it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCheck {
    /// The session's key.
    pub key: String,
    /// The player the token names: the session is live for this player only.
    pub owner: String,
}

/// What a request wants from Redis before it goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ask {
    /// The session to check.
    pub session: Option<SessionCheck>,
    /// The key of a cached view to read.
    pub view: Option<String>,
    /// Limits counted before the session is looked at (all or none), whatever its state: the
    /// client's IP, so that a flood of revoked or forged tokens is limited too.
    pub limits_before_session: Vec<Limit>,
    /// Limits counted (all or none) only when the session is live and the named player's, and
    /// the limits before it allowed the request.
    pub limits: Vec<Limit>,
}

/// Redis's answer to an [`Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The state of the session the ask named (`None` when it named none).
    pub session: Option<SessionState>,
    /// `None` when the request was counted (against the limits before the session, and against
    /// the others too when the session is live and the named player's); otherwise how long until
    /// the limits that refused it would allow it. Limits of one kind are counted all or none;
    /// those before the session count a request the others refuse.
    pub wait: Option<Duration>,
    /// The cached view, if the ask named one and Redis holds it.
    pub view: Option<String>,
}

/// Redis gave no answer in time: why, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Redis gave no answer: {0}")]
pub struct Unanswered(pub String);

type Reply = oneshot::Sender<Result<Answer, Unanswered>>;

/// The shared round trip; cheap to clone.
#[derive(Debug, Clone)]
pub struct Gate {
    asks: mpsc::Sender<(Ask, Reply)>,
}

impl Gate {
    /// Starts the task that answers asks through `redis`. It ends when every clone of the gate
    /// is dropped.
    pub fn start(redis: Redis) -> Self {
        let (asks, queue) = mpsc::channel(QUEUE);
        tokio::spawn(answer_asks(queue, redis));
        Self { asks }
    }

    /// Redis's answer to `ask`, or [`Unanswered`] after [`BUDGET`].
    pub async fn ask(&self, ask: Ask) -> Result<Answer, Unanswered> {
        let (reply, answer) = oneshot::channel();
        let asked = async {
            self.asks
                .send((ask, reply))
                .await
                .map_err(|_| Unanswered("the gate has stopped".to_owned()))?;
            answer
                .await
                .map_err(|_| Unanswered("the gate has stopped".to_owned()))?
        };
        tokio::time::timeout(BUDGET, asked)
            .await
            .unwrap_or_else(|_| Err(Unanswered("no answer in time".to_owned())))
    }
}

async fn answer_asks(mut queue: mpsc::Receiver<(Ask, Reply)>, redis: Redis) {
    let script = redis::Script::new(SCRIPT);
    let calls = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for room first: asks that come in meanwhile gather for this call.
        let Ok(permit) = Arc::clone(&calls).acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (script, mut redis) = (script.clone(), redis.clone());
        tokio::spawn(async move {
            if redis.is_cluster() {
                // Each ask on a task of its own, never cut off half-counted: one that outlasts
                // the budget still finishes, giving back what a refusal or an error leaves
                // counted; only its answer is given up on.
                let asks = batch.iter().map(|(ask, _)| {
                    let (script, mut redis, ask) = (script.clone(), redis.clone(), ask.clone());
                    tokio::spawn(async move { answer_apart(&script, &mut redis, &ask).await })
                });
                let asks: Vec<_> = asks.collect();
                let answers = tokio::time::timeout(BUDGET, futures::future::join_all(asks)).await;
                drop(permit);
                let Ok(answers) = answers else {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(Unanswered("no answer in time".to_owned())));
                    }
                    return;
                };
                for ((_, reply), answer) in batch.into_iter().zip(answers) {
                    let answer = match answer {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(e)) => Err(Unanswered(e.to_string())),
                        Err(e) => Err(Unanswered(e.to_string())),
                    };
                    let _ = reply.send(answer);
                }
                return;
            }
            let answers = tokio::time::timeout(BUDGET, call(&script, &mut redis, &batch)).await;
            let answers = match answers {
                Ok(Ok(answers)) if answers.len() == batch.len() => Ok(answers),
                Ok(Ok(answers)) => Err(Unanswered(format!(
                    "{} answers to {} asks",
                    answers.len(),
                    batch.len()
                ))),
                Ok(Err(e)) => Err(Unanswered(e.to_string())),
                Err(_) => Err(Unanswered("no answer in time".to_owned())),
            };
            drop(permit);
            match answers {
                Ok(answers) => {
                    for ((_, reply), answer) in batch.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(e) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// The answer to `ask` on a Redis Cluster, from parts that each lie in one slot, as one script
/// call would answer it on a standalone Redis:
///
/// 1. the limits before the session, each slot's in a call of its own, all at once;
/// 2. the session, the cached view and the other limits in the session's slot (the player's,
///    which shares its tag), in one call, the limits counted only if step 1 counted;
/// 3. the other limits in other slots, if any, counted only when the session is live and all
///    before counted.
///
/// Limits of one kind count all or none: when a part refuses, the parts of that kind that
/// counted are given back ([`refund`]). When a call fails, every count already made is given
/// back and the ask fails, as a script that did not run counts nothing. Between the parts
/// another gateway may see a count that is then given back: all or none, but not at one instant
/// as on a single server.
async fn answer_apart(
    script: &redis::Script,
    redis: &mut Redis,
    ask: &Ask,
) -> redis::RedisResult<Answer> {
    let mut counted = Vec::new();
    let answered = answer_counting(script, redis, ask, &mut counted).await;
    if answered.is_err() {
        // Best effort: a refund that fails leaves a count the limit's interval wears off.
        let _ = give_back(redis, &counted).await;
    }
    answered
}

/// [`answer_apart`]'s parts, noting in `counted` every limit that has counted the request and
/// is not given back.
async fn answer_counting(
    script: &redis::Script,
    redis: &mut Redis,
    ask: &Ask,
    counted: &mut Vec<Limit>,
) -> redis::RedisResult<Answer> {
    let before = count_apart(script, redis, &ask.limits_before_session, counted).await?;
    let home = ask
        .session
        .as_ref()
        .map(|s| slot(&s.key))
        .or_else(|| ask.view.as_deref().map(slot));
    let (near, far): (Vec<Limit>, Vec<Limit>) = if before.is_none() {
        ask.limits
            .iter()
            .cloned()
            .partition(|l| home.is_some_and(|h| slot(&l.key) == h))
    } else {
        (Vec::new(), Vec::new())
    };
    let view_near = ask.view.clone().filter(|v| home == Some(slot(v)));
    let main = Ask {
        session: ask.session.clone(),
        view: view_near.clone(),
        limits_before_session: Vec::new(),
        limits: near.clone(),
    };
    let answered = if main == Ask::default() {
        None
    } else {
        call_one(script, redis, &main).await?
    };
    let session = answered.as_ref().and_then(|a| a.session);
    let live = ask.session.is_none() || matches!(session, Some(SessionState::Live(_)));
    let near_wait = answered.as_ref().and_then(|a| a.wait);
    if live && near_wait.is_none() {
        counted.extend(near.iter().cloned());
    }
    let mut wait = before.or(near_wait);
    if wait.is_none() && live && !far.is_empty() {
        wait = count_apart(script, redis, &far, counted).await?;
        if wait.is_some() {
            give_back(redis, &near).await?;
            counted.retain(|l| !near.contains(l));
        }
    }
    let view = match (&ask.view, view_near) {
        (Some(key), None) => redis.get(key).await?,
        _ => answered.and_then(|a| a.view),
    };
    Ok(Answer {
        session,
        wait,
        view,
    })
}

/// Counts a request against `limits`, all or none, each slot's in a call of its own: `None`
/// when every one counted it (and then they are added to `counted`), or the longest wait of
/// those that refused (and then those that counted have given it back). When a call fails,
/// those that counted are added to `counted`, for the caller to give back.
async fn count_apart(
    script: &redis::Script,
    redis: &mut Redis,
    limits: &[Limit],
    counted: &mut Vec<Limit>,
) -> redis::RedisResult<Option<Duration>> {
    let mut by_slot: Vec<(redis::cluster_routing::Slot, Vec<Limit>)> = Vec::new();
    for limit in limits {
        let at = slot(&limit.key);
        match by_slot.iter_mut().find(|(s, _)| *s == at) {
            Some((_, group)) => group.push(limit.clone()),
            None => by_slot.push((at, vec![limit.clone()])),
        }
    }
    let answers = futures::future::join_all(by_slot.iter().map(|(_, group)| {
        let mut redis = redis.clone();
        let ask = Ask {
            limits_before_session: group.clone(),
            ..Ask::default()
        };
        async move {
            let answer = call_one(script, &mut redis, &ask).await?;
            Ok::<_, redis::RedisError>(answer.and_then(|a| a.wait))
        }
    }))
    .await;
    let mut longest = None;
    let mut failed = None;
    let mut these = Vec::new();
    for ((_, group), answer) in by_slot.into_iter().zip(answers) {
        match answer {
            Ok(None) => these.extend(group),
            Ok(Some(wait)) => longest = longest.max(Some(wait)),
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        counted.extend(these);
        return Err(e);
    }
    if longest.is_some() {
        give_back(redis, &these).await?;
    } else {
        counted.extend(these);
    }
    Ok(longest)
}

async fn give_back(redis: &mut Redis, limits: &[Limit]) -> redis::RedisResult<()> {
    futures::future::try_join_all(limits.iter().map(|limit| {
        let mut redis = redis.clone();
        async move { refund(&mut redis, limit).await }
    }))
    .await?;
    Ok(())
}

/// The script's answer to one ask whose keys lie in one slot.
async fn call_one(
    script: &redis::Script,
    redis: &mut Redis,
    ask: &Ask,
) -> redis::RedisResult<Option<Answer>> {
    Ok(invoke(script, redis, std::slice::from_ref(ask))
        .await?
        .pop())
}

async fn call(
    script: &redis::Script,
    redis: &mut Redis,
    batch: &[(Ask, Reply)],
) -> redis::RedisResult<Vec<Answer>> {
    let asks: Vec<&Ask> = batch.iter().map(|(ask, _)| ask).collect();
    invoke(script, redis, &asks).await
}

/// One script call answering `asks`.
async fn invoke<A: std::borrow::Borrow<Ask>>(
    script: &redis::Script,
    redis: &mut Redis,
    asks: &[A],
) -> redis::RedisResult<Vec<Answer>> {
    let mut invocation = script.prepare_invoke();
    invocation.arg(asks.len());
    for ask in asks {
        let ask = ask.borrow();
        invocation
            .arg(u8::from(ask.session.is_some()))
            .arg(u8::from(ask.view.is_some()))
            .arg(ask.limits_before_session.len())
            .arg(ask.limits.len());
        if let Some(session) = &ask.session {
            invocation.key(&session.key).arg(&session.owner);
        }
        if let Some(view) = &ask.view {
            invocation.key(view);
        }
        for limit in ask.limits_before_session.iter().chain(&ask.limits) {
            invocation
                .key(&limit.key)
                .arg(limit.interval_ms)
                .arg(limit.tolerance_ms);
        }
    }
    let answers: Vec<(u8, u64, Option<String>, String)> = invocation.invoke_async(redis).await?;
    Ok(answers
        .into_iter()
        .enumerate()
        .map(|(i, (live, wait_ms, view, role))| Answer {
            session: asks
                .get(i)
                .and_then(|ask| ask.borrow().session.as_ref())
                .map(|_| SessionState::from_gate(live, &role)),
            wait: (wait_ms > 0).then(|| Duration::from_millis(wait_ms)),
            view,
        })
        .collect())
}
