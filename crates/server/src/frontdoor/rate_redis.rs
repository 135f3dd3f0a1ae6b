//! Rate-limit counters and bans in Redis, shared by every moat replica that names the same
//! server (`rate_limit_state: {redis: URL}` in moat.yaml, or `--rate-state URL`).
//!
//! Key decision: each request is **one `EVALSHA`** of [`SCRIPT`], which checks the ban, counts
//! the fixed window, counts the ban threshold's window and sets the ban in one atomic step on
//! the server, so replicas never race between reading and writing a count. Every key expires
//! on its own. Key names carry a hash of the client key, never the key itself (a header or
//! cookie value is client data), see [`RedisKeys`].
//!
//! When Redis does not answer within the timeout, the call fails: the front door applies the
//! configured failure policy (`on_error`), except for bans this replica has already seen,
//! which it keeps enforcing from memory until they end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat_policy::model::{RateLimitState, RateStateOnError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::rate::{Counted, Hit, RateFuture, RateState, RateStateError};

/// The whole decision for one request, atomically on the server.
///
/// KEYS: 1 the window's counter, 2 the ban threshold window's counter of requests over the
/// limit, 3 the ban. ARGV: 1 now (Unix s, the front door's clock), 2 threshold count,
/// 3 counter TTL (s), 4 ban mode (0 throttle, 1 ban on exceeding, 2 ban past the ban
/// threshold), 5 ban threshold count, 6 its counter's TTL (s), 7 ban duration (s).
/// Returns `{state, until}`: state 0 conform, 1 exceeded, 2 banned; `until` the end of the
/// key's ban (Unix s) when one is known, else 0.
///
/// The ban's value is its end on the front door's clock and is compared with `now`, so replicas
/// (and tests with a moved clock) agree on when it ends; its TTL only collects it.
pub const SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local mode = tonumber(ARGV[4])
if mode > 0 then
  local banned = tonumber(redis.call('GET', KEYS[3]) or '0')
  if banned > now then return {2, banned} end
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if n <= tonumber(ARGV[2]) then return {0, 0} end
if mode == 0 then return {1, 0} end
if mode == 2 then
  local over = redis.call('INCR', KEYS[2])
  if over == 1 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
  if over <= tonumber(ARGV[5]) then return {1, 0} end
end
local untl = now + tonumber(ARGV[7])
local old = tonumber(redis.call('GET', KEYS[3]) or '0')
if untl > old then
  redis.call('SET', KEYS[3], untl, 'EX', tonumber(ARGV[7]) + 60)
  return {1, untl}
end
return {1, old}
";

/// Counter keys outlive their window by this much, so a replica whose clock is a little behind
/// still finds the count its peers made.
const CLOCK_SKEW_SLACK_SEC: u64 = 5;
/// A failing store is logged at most once per this interval (every failure is counted in
/// `moat_rate_state_errors_total`).
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Bans remembered from Redis's answers, enforced while it is down; past this many the ended
/// ones are swept.
const KNOWN_BANS_SWEEP_AT: usize = 4096;
/// How long the start-up `PING` may take (the first connection included).
const STARTUP_PING: Duration = Duration::from_secs(1);

/// The Redis keys of one hit. All three share the hash tag `{HASH}`, so a Redis Cluster would
/// keep them in one slot (the script touches all three).
///
/// `moat:rl:{policy}:{rule}:{{hash}}:n:{window start}` the window's count;
/// `...:o:{window start}` the ban threshold window's count of requests over the limit;
/// `...:ban` the ban, whose value is its end (Unix s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisKeys {
    pub counter: String,
    pub over: String,
    pub ban: String,
}

impl RedisKeys {
    /// `hash` is the first 128 bits of SHA-256 over the project, the backend service and the
    /// client key: the client key (an address, a header value) never reaches Redis, and two
    /// projects, services or keys never share a counter.
    pub fn of(hit: &Hit<'_>) -> Self {
        let mut material = Vec::with_capacity(hit.project.len() + hit.service.len() + hit.key.len() + 2);
        for (i, part) in [hit.project, hit.service, hit.key].into_iter().enumerate() {
            if i > 0 {
                material.push(0x1f);
            }
            material.extend_from_slice(part.as_bytes());
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
        let mut hash = String::with_capacity(32);
        for b in digest.as_ref().iter().take(16) {
            let _ = write!(hash, "{b:02x}");
        }
        let base = format!("moat:rl:{}:{}:{{{hash}}}", escape(hit.policy), hit.rule);
        let window = |interval: u32| {
            let i = u64::from(interval.max(1));
            hit.now - hit.now % i
        };
        let over_window = hit.ban.and_then(|b| b.threshold).map_or(0, |t| window(t.interval_sec));
        Self {
            counter: format!("{base}:n:{}", window(hit.threshold.interval_sec)),
            over: format!("{base}:o:{over_window}"),
            ban: format!("{base}:ban"),
        }
    }
}

/// A policy name as a key segment: `[A-Za-z0-9._-]` as is, anything else (a `:` or `{` that
/// would blur the key's structure) as `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Seconds until the end of the fixed window of `interval` holding `now`, plus the slack.
fn ttl(now: u64, interval: u32) -> u64 {
    let i = u64::from(interval.max(1));
    i - now % i + CLOCK_SKEW_SLACK_SEC
}

/// Rate-limit state in one Redis server, over one multiplexed connection that reconnects on
/// its own. Cheap to share (`Arc`); each replica (process) builds its own.
pub struct RedisRateState {
    conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    on_error: RateStateOnError,
    /// For logs: the URL without its password.
    url: String,
    /// Redis ban key → end of the ban (Unix s), from the script's answers.
    known_bans: Mutex<HashMap<String, u64>>,
    last_warning: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisRateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateState")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl RedisRateState {
    /// The state for `config`. Does not connect: the first request does, and a server that is
    /// down now is retried on every request (within its timeout) until it answers, so moat
    /// starts whatever Redis is doing. Fails only on a URL the client cannot use. Needs a Tokio
    /// runtime.
    pub fn new(config: &RateLimitState) -> Result<Self, RateStateError> {
        let client = redis::Client::open(config.redis.as_str())
            .map_err(|e| RateStateError::Store(format!("`{}`: {e}", config.redacted_url())))?;
        // Connecting may take longer than one request may wait: it goes on in the background
        // while requests fail over to the failure policy. Few quick retries, so that a restarted
        // Redis is found again within a second.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(500))))
            // Ours (`timeout`) answers the request first; this one clears the reply slot of a
            // server that never answers.
            .set_response_timeout(Some(config.timeout.saturating_mul(2)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| RateStateError::Store(format!("`{}`: {e}", config.redacted_url())))?;
        Ok(Self {
            conn,
            script: redis::Script::new(SCRIPT),
            timeout: config.timeout,
            on_error: config.on_error,
            url: config.redacted_url(),
            known_bans: Mutex::new(HashMap::new()),
            last_warning: Mutex::new(None),
        })
    }

    /// The state for `config`, after asking the server once: one that does not answer yet is
    /// a warning, not a failure (requests get the failure policy until it does).
    pub async fn start(config: &RateLimitState) -> Result<Arc<Self>, RateStateError> {
        let state = Self::new(config)?;
        match state.ping(config.timeout.max(STARTUP_PING)).await {
            Ok(()) => tracing::info!("rate-limit counters and bans are shared in {}", state.url),
            Err(e) => tracing::warn!(
                "rate-limit state {} does not answer yet ({e}); until it does, rate-limited requests are {}",
                state.url,
                what_on_error(state.on_error)
            ),
        }
        Ok(Arc::new(state))
    }

    /// Asks the server for `PING`, within `within`.
    pub async fn ping(&self, within: Duration) -> Result<(), RateStateError> {
        let mut conn = self.conn.clone();
        let ping = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        match tokio::time::timeout(within, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(RateStateError::Store(e.to_string())),
            Err(_) => Err(RateStateError::Timeout(within.as_millis())),
        }
    }

    /// The redacted URL of the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn count_remote(&self, hit: &Hit<'_>, keys: &RedisKeys) -> Result<Counted, RateStateError> {
        let (mode, ban_count, ban_ttl, duration) = match hit.ban {
            None => (0, 0, 1, 0),
            Some(b) => match b.threshold {
                None => (1, 0, 1, b.duration_sec),
                Some(t) => (2, t.count, ttl(hit.now, t.interval_sec), b.duration_sec),
            },
        };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&keys.counter)
            .key(&keys.over)
            .key(&keys.ban)
            .arg(hit.now)
            .arg(hit.threshold.count)
            .arg(ttl(hit.now, hit.threshold.interval_sec))
            .arg(mode)
            .arg(ban_count)
            .arg(ban_ttl)
            .arg(duration);
        let mut conn = self.conn.clone();
        let call = async move { invocation.invoke_async::<(i64, i64)>(&mut conn).await };
        let (state, until) = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(RateStateError::Store(e.to_string())),
            Err(_) => return Err(RateStateError::Timeout(self.timeout.as_millis())),
        };
        if let Ok(until) = u64::try_from(until)
            && until > hit.now
        {
            self.remember_ban(&keys.ban, until, hit.now);
        }
        match state {
            0 => Ok(Counted::Conform),
            1 => Ok(Counted::Exceeded),
            2 => Ok(Counted::Banned),
            other => Err(RateStateError::Store(format!("unexpected reply {other} from the rate-limit script"))),
        }
    }

    fn remember_ban(&self, key: &str, until: u64, now: u64) {
        let mut bans = self.known_bans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if bans.len() >= KNOWN_BANS_SWEEP_AT && !bans.contains_key(key) {
            bans.retain(|_, u| *u > now);
        }
        let entry = bans.entry(key.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    fn known_ban(&self, key: &str, now: u64) -> bool {
        let bans = self.known_bans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        bans.get(key).is_some_and(|until| *until > now)
    }

    /// Counts the error and logs it, at most once per [`WARN_EVERY`].
    fn failed(&self, e: &RateStateError) {
        metrics::counter!("moat_rate_state_errors_total", "error" => e.kind()).increment(1);
        let mut last = self.last_warning.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                "rate-limit state {} failed ({e}); rate-limited requests are {}, bans already seen still hold (logged at most every {} s, counted in moat_rate_state_errors_total)",
                self.url,
                what_on_error(self.on_error),
                WARN_EVERY.as_secs()
            );
        }
    }
}

fn what_on_error(on_error: RateStateOnError) -> &'static str {
    match on_error {
        RateStateOnError::Closed => "refused as over their limit (on_error: closed)",
        RateStateOnError::Open => "admitted uncounted (on_error: open)",
    }
}

impl RateState for RedisRateState {
    fn count<'a>(&'a self, hit: &'a Hit<'a>) -> RateFuture<'a> {
        Box::pin(async move {
            let keys = RedisKeys::of(hit);
            match self.count_remote(hit, &keys).await {
                Ok(counted) => Ok(counted),
                Err(e) => {
                    self.failed(&e);
                    // A ban seen before Redis went away still holds, whatever `on_error` says.
                    if hit.ban.is_some() && self.known_ban(&keys.ban, hit.now) {
                        return Ok(Counted::Banned);
                    }
                    Err(e)
                }
            }
        })
    }

    fn on_error(&self) -> RateStateOnError {
        self.on_error
    }
}

#[cfg(test)]
mod tests {
    use moat_policy::armor::{Ban, Threshold};

    use super::*;

    fn hit<'a>(policy: &'a str, key: &'a str, now: u64) -> Hit<'a> {
        Hit {
            project: "p",
            service: "web",
            policy,
            rule: 1000,
            key,
            threshold: Threshold { count: 3, interval_sec: 60 },
            ban: Some(Ban { threshold: Some(Threshold { count: 2, interval_sec: 600 }), duration_sec: 300 }),
            now,
        }
    }

    #[test]
    fn keys_name_policy_rule_window_and_only_a_hash_of_the_client_key() {
        let k = RedisKeys::of(&hit("edge-policy", "h:x-api-key=secret-value", 1_700_000_075));
        let prefix = k.ban.strip_suffix(":ban").unwrap_or_default();
        let tag = prefix.strip_prefix("moat:rl:edge-policy:1000:").unwrap_or_default();
        let hex = tag.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or_default();
        assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{{32 hex digits}}: {tag}");
        assert_eq!(k.counter, format!("{prefix}:n:1700000040"), "the 60 s window holding now");
        assert_eq!(k.over, format!("{prefix}:o:1699999800"), "the 600 s ban threshold window");
        for key in [&k.counter, &k.over, &k.ban] {
            assert!(!key.contains("secret-value") && !key.contains("x-api-key"), "{key}");
        }
    }

    #[test]
    fn keys_differ_by_project_service_key_rule_and_window() {
        let base = hit("edge-policy", "ip=192.0.2.1", 120);
        let k = RedisKeys::of(&base);
        let others = [
            Hit { project: "q", ..base },
            Hit { service: "api", ..base },
            Hit { key: "ip=192.0.2.2", ..base },
            Hit { rule: 1001, ..base },
            Hit { policy: "other", ..base },
        ];
        for other in others {
            let o = RedisKeys::of(&other);
            assert_ne!(o.counter, k.counter, "{other:?}");
            assert_ne!(o.ban, k.ban, "{other:?}");
        }
        assert_eq!(RedisKeys::of(&Hit { now: 179, ..base }), k, "same window, same keys");
        assert_ne!(RedisKeys::of(&Hit { now: 180, ..base }).counter, k.counter, "the next window");
        assert_eq!(RedisKeys::of(&Hit { now: 180, ..base }).ban, k.ban, "a ban outlives windows");
    }

    #[test]
    fn a_policy_name_cannot_blur_the_key_structure() {
        assert_eq!(escape("edge-policy_v1.2"), "edge-policy_v1.2");
        assert_eq!(escape("a:b{c}"), "a%3Ab%7Bc%7D");
        let k = RedisKeys::of(&hit("a:1000:{x}", "all", 0));
        assert!(k.ban.starts_with("moat:rl:a%3A1000%3A%7Bx%7D:1000:{"), "{}", k.ban);
    }

    #[test]
    fn counters_live_to_the_end_of_their_window_plus_slack() {
        assert_eq!(ttl(120, 60), 60 + CLOCK_SKEW_SLACK_SEC);
        assert_eq!(ttl(179, 60), 1 + CLOCK_SKEW_SLACK_SEC);
        assert_eq!(ttl(5, 0), 1 + CLOCK_SKEW_SLACK_SEC, "a zero interval counts per second");
    }
}
