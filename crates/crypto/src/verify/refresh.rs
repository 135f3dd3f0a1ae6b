//! When to refetch a remote JWKS: a pure policy over injected monotonic instants, so the server's
//! fetch loop holds no timing rules of its own and the rules are tested without sleeping.

use std::time::{Duration, Instant};

/// Rate limit and staleness bound for a remote JWKS.
///
/// * `may_fetch` allows one fetch per `min_interval`, counting every attempt: an attacker
///   sending tokens with ever-new `kid`s triggers at most one fetch per interval (J8).
/// * `keys_usable` is false before the first success and once the last success is older than
///   `max_staleness`: the gateway then rejects tokens instead of trusting old keys forever
///   (J30, fail closed). Failures never extend or cut the last-known-good window.
#[derive(Debug, Clone)]
pub struct RefreshGate {
    min_interval: Duration,
    max_staleness: Duration,
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    consecutive_failures: u32,
}

impl RefreshGate {
    pub fn new(min_interval: Duration, max_staleness: Duration) -> Self {
        Self { min_interval, max_staleness, last_attempt: None, last_success: None, consecutive_failures: 0 }
    }

    /// Whether a fetch may start at `now`; when it returns true the attempt is recorded.
    pub fn may_fetch(&mut self, now: Instant) -> bool {
        let allowed = self.last_attempt.is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval);
        if allowed {
            self.last_attempt = Some(now);
        }
        allowed
    }

    pub fn record_success(&mut self, now: Instant) {
        self.last_success = Some(now);
        self.consecutive_failures = 0;
    }

    pub fn record_failure(&mut self, now: Instant) {
        // A failure counts as an attempt even when the caller skipped `may_fetch`.
        if self.last_attempt.is_none_or(|last| now > last) {
            self.last_attempt = Some(now);
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    }

    pub fn keys_usable(&self, now: Instant) -> bool {
        self.last_success.is_some_and(|ok| now.saturating_duration_since(ok) <= self.max_staleness)
    }

    /// Failed fetches since the last success, for the decision log and metrics.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn last_success(&self) -> Option<Instant> {
        self.last_success
    }
}
