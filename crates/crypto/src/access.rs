//! Opaque OAuth access tokens for the metadata server's `/token` endpoint.
//!
//! Only a SHA-256 of each token is stored: a memory dump or a `Debug` print of the store does
//! not give out working tokens.
//!
//! One store serves every metadata server of a project, so it is partitioned by
//! [`TokenScope`] (one per metadata server, hence per workload): each scope holds at most
//! [`MAX_LIVE_PER_SCOPE`] live tokens and evicts only its own oldest past that, so a workload
//! looping on `/token` churns its own tokens and no one else's. The total is bounded too
//! ([`MAX_LIVE_TOKENS`]); reaching it evicts from the scope holding the most tokens, never from
//! a smaller one while a larger exists.
//!
//! Expiry costs no scan per call: every token lives [`ACCESS_TOKEN_LIFETIME_SECS`], so each
//! scope's queue, in issue order, is also in expiry order. Issuing pops the expired head of its
//! own queue, and every [`SWEEP_EVERY_SECS`] one call pops the expired heads of all queues. Each
//! token is removed once, so the work is amortised O(1) per issued token plus O(scopes) per
//! sweep.
//!
//! Randomness: a token is 32 bytes from the system RNG, and if the RNG fails the token is not
//! minted ([`AccessError::Random`]). There is no fallback value of any kind.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use aws_lc_rs::error::Unspecified;
use aws_lc_rs::{digest, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::account::Account;

/// What an access token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub account: Account,
    pub scopes: Vec<String>,
    pub expires_at: u64,
}

/// Prefix of every token: google-auth clients only check that the token is a string, and
/// `ya29.` makes it look like what they expect in logs.
pub const ACCESS_TOKEN_PREFIX: &str = "ya29.moat.";
/// Google's metadata server answers `expires_in` just under an hour.
pub const ACCESS_TOKEN_LIFETIME_SECS: u64 = 3599;
/// Live tokens one scope (one metadata server) may hold; past it its own oldest is dropped.
/// google-auth caches a token until shortly before expiry, so a workload needs a handful an
/// hour; this leaves room for thousands of uncached callers.
pub const MAX_LIVE_PER_SCOPE: usize = 8_192;
/// Live tokens of all scopes together.
pub const MAX_LIVE_TOKENS: usize = 100_000;
/// How often (in clock seconds) one issue also drops expired tokens of every other scope.
pub const SWEEP_EVERY_SECS: u64 = 60;

type TokenHash = [u8; 32];

/// Why no token was minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "the system random number generator failed, so no access token was minted: check the \
         host's entropy source (getrandom) and retry"
    )]
    Random,
}

/// The partition a token is issued in: one per metadata server. Only
/// [`AccessTokens::new_scope`] makes one, so two servers never share a scope by accident.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TokenScope(u64);

#[derive(Default)]
struct Inner {
    grants: HashMap<TokenHash, AccessGrant>,
    /// Per scope, its tokens in issue order (= expiry order). Every hash here is in `grants`
    /// and the other way round; an emptied queue is removed.
    queues: HashMap<u64, VecDeque<TokenHash>>,
    next_sweep: u64,
}

impl Inner {
    /// Drops the expired tokens at the head of `scope`'s queue.
    fn pop_expired(&mut self, scope: u64, now: u64) {
        let Some(queue) = self.queues.get_mut(&scope) else { return };
        while let Some(h) = queue.front() {
            if self.grants.get(h).is_some_and(|g| g.expires_at > now) {
                break;
            }
            if let Some(h) = queue.pop_front() {
                self.grants.remove(&h);
            }
        }
        if queue.is_empty() {
            self.queues.remove(&scope);
        }
    }

    fn sweep_if_due(&mut self, now: u64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.saturating_add(SWEEP_EVERY_SECS);
        let scopes: Vec<u64> = self.queues.keys().copied().collect();
        for scope in scopes {
            self.pop_expired(scope, now);
        }
    }

    /// Drops the oldest token of `scope`.
    fn evict_oldest(&mut self, scope: u64) {
        let Some(queue) = self.queues.get_mut(&scope) else { return };
        if let Some(h) = queue.pop_front() {
            self.grants.remove(&h);
        }
        if queue.is_empty() {
            self.queues.remove(&scope);
        }
    }

    /// The scope holding the most tokens (`scope` itself on a tie, so a caller at the top
    /// pays first).
    fn largest(&self, scope: u64) -> Option<u64> {
        let own = self.queues.get(&scope).map_or(0, VecDeque::len);
        self.queues.iter().filter(|(_, q)| q.len() > own).max_by_key(|(_, q)| q.len()).map(|(s, _)| *s).or(Some(scope))
    }
}

/// The live access tokens, keyed by SHA-256 of the token.
pub struct AccessTokens {
    inner: Mutex<Inner>,
    scopes: AtomicU64,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("AccessTokens")
            .field("live", &inner.grants.len())
            .field("scopes", &inner.queues.len())
            .finish_non_exhaustive()
    }
}

impl Default for AccessTokens {
    fn default() -> Self {
        Self::new()
    }
}

fn hash(token: &str) -> TokenHash {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl AccessTokens {
    pub fn new() -> Self {
        Self { inner: Mutex::new(Inner::default()), scopes: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A scope no other caller has: one per metadata server.
    pub fn new_scope(&self) -> TokenScope {
        TokenScope(self.scopes.fetch_add(1, Ordering::Relaxed))
    }

    /// Mints a token for `account` in `scope` and returns it with its `expires_in` (seconds).
    pub fn issue(
        &self,
        scope: &TokenScope,
        account: &Account,
        scopes: &[String],
        now: u64,
    ) -> Result<(String, u64), AccessError> {
        self.issue_with(scope, account, scopes, now, rand::fill)
    }

    /// [`Self::issue`] with the random source passed in, so the failure path is testable.
    fn issue_with(
        &self,
        scope: &TokenScope,
        account: &Account,
        scopes: &[String],
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(), Unspecified>,
    ) -> Result<(String, u64), AccessError> {
        let mut raw = [0u8; 32];
        fill(&mut raw).map_err(|Unspecified| AccessError::Random)?;
        let token = format!("{ACCESS_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        let grant = AccessGrant {
            account: account.clone(),
            scopes: scopes.to_vec(),
            expires_at: now.saturating_add(ACCESS_TOKEN_LIFETIME_SECS),
        };
        let key = hash(&token);
        let mut inner = self.lock();
        inner.pop_expired(scope.0, now);
        inner.sweep_if_due(now);
        if inner.queues.get(&scope.0).is_some_and(|q| q.len() >= MAX_LIVE_PER_SCOPE) {
            inner.evict_oldest(scope.0);
        }
        if inner.grants.len() >= MAX_LIVE_TOKENS
            && let Some(victim) = inner.largest(scope.0)
        {
            inner.evict_oldest(victim);
        }
        inner.grants.insert(key, grant);
        inner.queues.entry(scope.0).or_default().push_back(key);
        Ok((token, ACCESS_TOKEN_LIFETIME_SECS))
    }

    /// The grant behind `token`; `None` when unknown or expired.
    pub fn lookup(&self, token: &str, now: u64) -> Option<AccessGrant> {
        if !token.starts_with(ACCESS_TOKEN_PREFIX) {
            return None;
        }
        let inner = self.lock();
        inner.grants.get(&hash(token)).filter(|g| g.expires_at > now).cloned()
    }

    /// Number of stored (possibly expired, not yet dropped) tokens.
    pub fn len(&self) -> usize {
        self.lock().grants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of stored tokens of `scope`.
    pub fn len_in(&self, scope: &TokenScope) -> usize {
        self.lock().queues.get(&scope.0).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn sa() -> Account {
        Account::service_account("run@p.iam.gserviceaccount.com")
    }

    #[test]
    fn issue_lookup_and_expiry() {
        let store = AccessTokens::new();
        let s = store.new_scope();
        let scopes = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
        let (tok, expires_in) = store.issue(&s, &sa(), &scopes, T0).unwrap();
        assert_eq!(expires_in, 3599);
        assert!(tok.starts_with("ya29.moat."));
        let suffix = tok.strip_prefix("ya29.moat.").unwrap();
        assert!(suffix.len() >= 43, "{}", suffix.len());
        assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

        let g = store.lookup(&tok, T0 + 10).unwrap();
        assert_eq!(g.account, sa());
        assert_eq!(g.scopes, scopes);
        assert_eq!(g.expires_at, T0 + 3599);
        assert!(store.lookup(&tok, T0 + 3598).is_some());
        assert_eq!(store.lookup(&tok, T0 + 3599), None, "expired at expires_at");
        assert_eq!(store.lookup("ya29.moat.unknown", T0), None);
        assert_eq!(store.lookup("", T0), None);

        let (tok2, _) = store.issue(&s, &sa(), &scopes, T0).unwrap();
        assert_ne!(tok, tok2, "tokens are random");
        // Issuing drops the scope's expired tokens.
        let _ = store.issue(&s, &sa(), &scopes, T0 + 4000).unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn raw_token_is_not_stored() {
        let store = AccessTokens::new();
        let (tok, _) = store.issue(&store.new_scope(), &Account::user("dev@example.com"), &[], T0).unwrap();
        let dbg = format!("{store:?}");
        assert!(!dbg.contains(&tok), "{dbg}");
        assert!(!dbg.contains(tok.strip_prefix(ACCESS_TOKEN_PREFIX).unwrap()), "{dbg}");
        let inner = store.inner.lock().unwrap();
        assert!(inner.grants.keys().all(|k| k.as_slice() != tok.as_bytes()));
        assert!(inner.grants.contains_key(&hash(&tok)));
    }

    #[test]
    fn a_failing_rng_mints_nothing() {
        let store = AccessTokens::new();
        let s = store.new_scope();
        let err = store.issue_with(&s, &sa(), &[], T0, |_| Err(Unspecified)).unwrap_err();
        assert_eq!(err, AccessError::Random);
        assert!(err.to_string().contains("random number generator"), "{err}");
        assert!(store.is_empty(), "nothing stored");
        // A source that "succeeds" without writing would give all zeros: the token is exactly
        // the bytes the source produced, nothing derived from the time.
        let (tok, _) = store.issue_with(&s, &sa(), &[], T0, |_| Ok(())).unwrap();
        assert_eq!(tok, format!("{ACCESS_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode([0u8; 32])));
    }

    #[test]
    fn one_scope_churning_never_evicts_another() {
        let store = AccessTokens::new();
        let (quiet, noisy) = (store.new_scope(), store.new_scope());
        let (kept, _) = store.issue(&quiet, &sa(), &[], T0).unwrap();
        let (first_noisy, _) = store.issue(&noisy, &sa(), &[], T0).unwrap();
        for i in 0..(MAX_LIVE_PER_SCOPE as u64 + 10) {
            store.issue(&noisy, &sa(), &[], T0 + i / 1000).unwrap();
        }
        assert_eq!(store.len_in(&noisy), MAX_LIVE_PER_SCOPE, "capped per scope");
        assert_eq!(store.len_in(&quiet), 1);
        assert!(store.lookup(&kept, T0 + 20).is_some(), "the quiet workload's token survives");
        assert_eq!(store.lookup(&first_noisy, T0 + 20), None, "the noisy scope evicted its own oldest");
    }

    #[test]
    fn the_total_is_bounded_and_evicts_from_the_largest_scope() {
        let store = AccessTokens::new();
        let small = store.new_scope();
        let (kept, _) = store.issue(&small, &sa(), &[], T0).unwrap();
        // Fill the total with full scopes: past it, the biggest scope pays, never `small`.
        let full = MAX_LIVE_TOKENS / MAX_LIVE_PER_SCOPE + 1;
        let big: Vec<TokenScope> = (0..full).map(|_| store.new_scope()).collect();
        for s in &big {
            for _ in 0..MAX_LIVE_PER_SCOPE {
                store.issue(s, &sa(), &[], T0).unwrap();
            }
        }
        assert_eq!(store.len(), MAX_LIVE_TOKENS);
        assert!(store.lookup(&kept, T0 + 1).is_some());
        assert_eq!(store.len_in(&small), 1);
        // A new scope still gets tokens, taken from a full one.
        let fresh = store.new_scope();
        let (t, _) = store.issue(&fresh, &sa(), &[], T0).unwrap();
        assert!(store.lookup(&t, T0 + 1).is_some());
        assert_eq!(store.len(), MAX_LIVE_TOKENS);
        assert!(store.lookup(&kept, T0 + 1).is_some());
    }

    #[test]
    fn idle_scopes_are_swept_without_being_touched() {
        let store = AccessTokens::new();
        let (idle, busy) = (store.new_scope(), store.new_scope());
        for _ in 0..100 {
            store.issue(&idle, &sa(), &[], T0).unwrap();
        }
        store.issue(&busy, &sa(), &[], T0).unwrap();
        assert_eq!(store.len(), 101);
        // An hour later, an issue in another scope drops the idle scope's expired tokens.
        store.issue(&busy, &sa(), &[], T0 + ACCESS_TOKEN_LIFETIME_SECS + SWEEP_EVERY_SECS).unwrap();
        assert_eq!(store.len_in(&idle), 0);
        assert_eq!(store.len(), 1);
        assert_eq!(format!("{store:?}"), "AccessTokens { live: 1, scopes: 1, .. }");
    }
}
