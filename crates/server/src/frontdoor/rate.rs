//! Rate-limit counters and bans for `throttle` and `rate_based_ban` rules, behind a trait so a
//! shared store (Redis, for several replicas) can replace the in-memory one.
//!
//! Window algorithm: **fixed windows** aligned to multiples of `intervalSec` since the Unix
//! epoch. A key's count is exact on one node; at a window boundary a client can get up to
//! twice the threshold through in a short burst, which Cloud Armor's own approximate counting
//! also allows. Chosen because it maps onto one atomic `INCR` + `EXPIRE` per request in Redis,
//! where a sliding log would need a sorted set per key.

use std::collections::HashMap;
use std::sync::Mutex;

use moat_policy::armor::{EdgeOutcome, EdgeRequest, EdgeVerdict, SecurityPolicy};
use moat_policy::path::RateCheck;

/// Counters and bans. `now` is Unix seconds from the front door's clock.
pub trait RateState: Send + Sync + 'static {
    /// Counts one request under `key` in the fixed window of `interval_sec` seconds that holds
    /// `now`; returns the window's count including this request.
    fn hit(&self, key: &str, interval_sec: u32, now: u64) -> u64;
    /// Whether `key` is banned at `now`.
    fn banned(&self, key: &str, now: u64) -> bool;
    /// Bans `key` until `until` (Unix seconds).
    fn ban(&self, key: &str, until: u64);
}

/// The default state: one process's memory. Expired windows and bans are dropped as the maps
/// grow, so memory follows the number of live keys.
#[derive(Debug, Default)]
pub struct MemoryRateState {
    /// key → (window start, count, window end).
    counters: Mutex<HashMap<String, (u64, u64, u64)>>,
    bans: Mutex<HashMap<String, u64>>,
}

/// Past this many entries a map is swept of expired ones before it grows.
const SWEEP_AT: usize = 4096;

impl RateState for MemoryRateState {
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

    fn banned(&self, key: &str, now: u64) -> bool {
        let bans = self.bans.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        bans.get(key).is_some_and(|until| *until > now)
    }

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
/// per backend service (`service`), per policy and per rule, then per key.
pub(super) fn check(
    state: &dyn RateState,
    policy: &SecurityPolicy,
    verdict: &EdgeVerdict<'_>,
    request: &EdgeRequest,
    service: &str,
    now: u64,
) -> RateCheck {
    let (limit, ban) = match &verdict.outcome {
        EdgeOutcome::Throttle { limit, .. } => (*limit, None),
        EdgeOutcome::RateBasedBan { limit, ban, .. } => (*limit, Some(*ban)),
        _ => return RateCheck::Uncounted,
    };
    let key = format!(
        "{service}\u{1f}{}\u{1f}{}\u{1f}{}",
        policy.name,
        verdict.priority(),
        limit.key(request, policy.user_ip(request))
    );
    if ban.is_some() && state.banned(&key, now) {
        return RateCheck::Banned;
    }
    let count = state.hit(&key, limit.threshold.interval_sec, now);
    if count <= u64::from(limit.threshold.count) {
        return RateCheck::Conform;
    }
    if let Some(ban) = ban {
        // Without `banThreshold`, exceeding the rate limit bans; with it, the requests over the
        // limit are counted in its own window and ban once they pass its count.
        let ban_now = match ban.threshold {
            None => true,
            Some(t) => state.hit(&format!("{key}\u{1f}over"), t.interval_sec, now) > u64::from(t.count),
        };
        if ban_now {
            state.ban(&key, now + u64::from(ban.duration_sec));
        }
    }
    RateCheck::Exceeded
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
