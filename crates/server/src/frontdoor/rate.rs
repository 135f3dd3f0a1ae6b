//! Rate-limit counters and bans for `throttle` and `rate_based_ban` rules, behind a trait so a
//! shared store ([`super::RedisRateState`], for several replicas) can replace the in-memory one.
//!
//! Window algorithm: **fixed windows** aligned to multiples of `intervalSec` since the Unix
//! epoch. A key's count is exact on one node; at a window boundary a client can get up to
//! twice the threshold through in a short burst, which Cloud Armor's own approximate counting
//! also allows. Chosen because it maps onto one atomic `INCR` + `EXPIRE` per request in Redis,
//! where a sliding log would need a sorted set per key.
//!
//! Key decision: one call per request ([`RateState::count`]) does the ban check, the count and
//! the ban together, so a shared store can make them one atomic round trip.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use moat_policy::armor::{Ban, EdgeOutcome, EdgeRequest, EdgeVerdict, SecurityPolicy, Threshold};
use moat_policy::model::RateStateOnError;
use moat_policy::path::RateCheck;

/// One request counted against one rate-limit rule.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub project: &'a str,
    /// Thresholds apply per backend service.
    pub service: &'a str,
    pub policy: &'a str,
    /// The rule's priority: each rule of a policy counts on its own.
    pub rule: u32,
    /// The request's `enforceOnKey` value (`RateLimit::key`): may carry client data (header
    /// and cookie values, paths), so a shared store keeps only its hash.
    pub key: &'a str,
    pub threshold: Threshold,
    /// `rate_based_ban`: the ban it adds; `None` for `throttle`.
    pub ban: Option<Ban>,
    /// Unix seconds from the front door's clock.
    pub now: u64,
}

/// What the state says about a [`Hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Within the threshold; counted.
    Conform,
    /// Over the threshold (and, for a ban rule, banned when that was the trigger).
    Exceeded,
    /// The key was already banned; not counted.
    Banned,
}

/// The state could not answer: unreachable, too slow, or an unexpected reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateStateError {
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Store(String),
}

impl RateStateError {
    /// The metric label of this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Store(_) => "store",
        }
    }
}

/// The future of [`RateState::count`].
pub type RateFuture<'a> = Pin<Box<dyn Future<Output = Result<Counted, RateStateError>> + Send + 'a>>;

/// Counters and bans.
pub trait RateState: Send + Sync + 'static {
    /// Counts `hit` in the fixed window of its interval that holds `hit.now`, unless its key is
    /// banned; for a ban rule over its threshold, bans the key (see [`check`] for when). One
    /// atomic step: concurrent hits on one key from any replica never lose a count.
    fn count<'a>(&'a self, hit: &'a Hit<'a>) -> RateFuture<'a>;

    /// What a rate-limited request gets when [`RateState::count`] fails.
    fn on_error(&self) -> RateStateOnError {
        RateStateOnError::Closed
    }
}

/// The default state: one process's memory. Never fails. Expired windows and bans are dropped
/// as the maps grow, so memory follows the number of live keys.
#[derive(Debug, Default)]
pub struct MemoryRateState {
    /// key → (window start, count, window end).
    counters: Mutex<HashMap<String, (u64, u64, u64)>>,
    bans: Mutex<HashMap<String, u64>>,
}

/// Past this many entries a map is swept of expired ones before it grows.
const SWEEP_AT: usize = 4096;

impl RateState for MemoryRateState {
    fn count<'a>(&'a self, hit: &'a Hit<'a>) -> RateFuture<'a> {
        Box::pin(std::future::ready(Ok(self.count_now(hit))))
    }
}

impl MemoryRateState {
    fn count_now(&self, hit: &Hit<'_>) -> Counted {
        let key = format!("{}\u{1f}{}\u{1f}{}\u{1f}{}", hit.service, hit.policy, hit.rule, hit.key);
        if hit.ban.is_some() && self.banned(&key, hit.now) {
            return Counted::Banned;
        }
        if self.hit(&key, hit.threshold.interval_sec, hit.now) <= u64::from(hit.threshold.count) {
            return Counted::Conform;
        }
        if let Some(ban) = hit.ban {
            // Without `banThreshold`, exceeding the rate limit bans; with it, the requests over
            // the limit are counted in its own window and ban once they pass its count.
            let ban_now = match ban.threshold {
                None => true,
                Some(t) => self.hit(&format!("{key}\u{1f}over"), t.interval_sec, hit.now) > u64::from(t.count),
            };
            if ban_now {
                self.ban(&key, hit.now + u64::from(ban.duration_sec));
            }
        }
        Counted::Exceeded
    }

    /// Counts one request under `key` in the fixed window of `interval_sec` seconds that holds
    /// `now`; returns the window's count including this request.
    fn hit(&self, key: &str, interval_sec: u32, now: u64) -> u64 {
        let interval = u64::from(interval_sec.max(1));
        let start = now - now % interval;
        let mut counters = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if counters.len() >= SWEEP_AT && !counters.contains_key(key) {
            counters.retain(|_, (_, _, end)| *end > now);
        }
        let entry = counters.entry(key.to_owned()).or_insert((start, 0, start + interval));
        if entry.0 != start {
            *entry = (start, 0, start + interval);
        }
        entry.1 += 1;
        entry.1
    }

    /// Whether `key` is banned at `now`.
    fn banned(&self, key: &str, now: u64) -> bool {
        let bans = self.bans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        bans.get(key).is_some_and(|until| *until > now)
    }

    /// Bans `key` until `until` (Unix seconds); a shorter ban never cuts a longer one.
    fn ban(&self, key: &str, until: u64) {
        let mut bans = self.bans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if bans.len() >= SWEEP_AT && !bans.contains_key(key) {
            // A ban that has ended is gone; `until` of the newest ban bounds "now" from above,
            // so sweep with the earliest possible current time: the ban being set minus its
            // longest duration (a day).
            let floor = until.saturating_sub(86_400);
            bans.retain(|_, u| *u > floor);
        }
        let entry = bans.entry(key.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }
}

/// Counts the request against the deciding rule's limit, when it is a rate limit. Counts are
/// per backend service (`service`), per policy and per rule, then per key. When the state
/// fails, its failure policy answers: refused as if over the limit (`closed`) or admitted
/// uncounted (`open`).
pub(super) async fn check(
    state: &dyn RateState,
    project: &str,
    policy: &SecurityPolicy,
    verdict: &EdgeVerdict<'_>,
    request: &EdgeRequest,
    service: &str,
    now: u64,
) -> RateCheck {
    let (limit, ban) = match &verdict.outcome {
        EdgeOutcome::Throttle { limit, .. } => (*limit, None),
        EdgeOutcome::RateBasedBan { limit, ban, .. } => (*limit, Some(**ban)),
        _ => return RateCheck::Uncounted,
    };
    let key = limit.key(request, policy.user_ip(request));
    let hit = Hit {
        project,
        service,
        policy: &policy.name,
        rule: verdict.priority(),
        key: &key,
        threshold: limit.threshold,
        ban,
        now,
    };
    match state.count(&hit).await {
        Ok(Counted::Conform) => RateCheck::Conform,
        Ok(Counted::Exceeded) => RateCheck::Exceeded,
        Ok(Counted::Banned) => RateCheck::Banned,
        // The state logged and counted the error (it knows where it failed).
        Err(_) => match state.on_error() {
            RateStateOnError::Closed => RateCheck::Unavailable,
            RateStateOnError::Open => RateCheck::UnavailableAdmitted,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_windows_count_exactly_and_reset_at_the_boundary() {
        let s = MemoryRateState::default();
        assert_eq!(s.hit("k", 60, 120), 1);
        assert_eq!(s.hit("k", 60, 179), 2);
        assert_eq!(s.hit("other", 60, 179), 1);
        assert_eq!(s.hit("k", 60, 180), 1, "a new window");
    }

    #[test]
    fn bans_hold_until_they_end() {
        let s = MemoryRateState::default();
        s.ban("k", 100);
        assert!(s.banned("k", 99));
        assert!(!s.banned("k", 100));
        s.ban("k", 50);
        assert!(s.banned("k", 99), "a shorter ban does not cut a longer one");
    }

    #[test]
    fn expired_entries_are_swept() {
        let s = MemoryRateState::default();
        for i in 0..SWEEP_AT {
            s.hit(&format!("k{i}"), 10, 0);
        }
        s.hit("new", 10, 20);
        let n = s.counters.lock().map(|c| c.len()).unwrap_or_default();
        assert_eq!(n, 1);
    }
}
