//! Opaque OAuth access tokens for the metadata server's `/token` endpoint.
//!
//! Only a SHA-256 of each token is stored: a memory dump or a `Debug` print of the store does
//! not give out working tokens.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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
/// Bound on live tokens; past it the one closest to expiry is dropped.
const MAX_LIVE_TOKENS: usize = 100_000;

type TokenHash = [u8; 32];

/// The live access tokens, keyed by SHA-256 of the token.
pub struct AccessTokens {
    grants: Mutex<HashMap<TokenHash, AccessGrant>>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.grants.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("AccessTokens").field("live", &n).finish_non_exhaustive()
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
        Self { grants: Mutex::new(HashMap::new()) }
    }

    /// Mints a token for `account` and returns it with its `expires_in` (seconds).
    pub fn issue(&self, account: &Account, scopes: &[String], now: u64) -> (String, u64) {
        let mut raw = [0u8; 32];
        // The system RNG failing leaves no safe way to mint a token; aws-lc aborts on its own
        // in that case, so this fallback is never expected to run.
        if rand::fill(&mut raw).is_err() {
            let d = digest::digest(&digest::SHA256, &now.to_be_bytes());
            raw.copy_from_slice(d.as_ref());
        }
        let token = format!("{ACCESS_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        let grant = AccessGrant {
            account: account.clone(),
            scopes: scopes.to_vec(),
            expires_at: now.saturating_add(ACCESS_TOKEN_LIFETIME_SECS),
        };
        let mut grants = self.grants.lock().unwrap_or_else(PoisonError::into_inner);
        grants.retain(|_, g| g.expires_at > now);
        if grants.len() >= MAX_LIVE_TOKENS
            && let Some(k) = grants.iter().min_by_key(|(_, g)| g.expires_at).map(|(k, _)| *k)
        {
            grants.remove(&k);
        }
        grants.insert(hash(&token), grant);
        (token, ACCESS_TOKEN_LIFETIME_SECS)
    }

    /// The grant behind `token`; `None` when unknown or expired.
    pub fn lookup(&self, token: &str, now: u64) -> Option<AccessGrant> {
        if !token.starts_with(ACCESS_TOKEN_PREFIX) {
            return None;
        }
        let grants = self.grants.lock().unwrap_or_else(PoisonError::into_inner);
        grants.get(&hash(token)).filter(|g| g.expires_at > now).cloned()
    }

    /// Number of stored (possibly expired, not yet pruned) tokens.
    pub fn len(&self) -> usize {
        self.grants.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn issue_lookup_and_expiry() {
        let store = AccessTokens::new();
        let sa = Account::service_account("run@p.iam.gserviceaccount.com");
        let scopes = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
        let (tok, expires_in) = store.issue(&sa, &scopes, T0);
        assert_eq!(expires_in, 3599);
        assert!(tok.starts_with("ya29.moat."));
        let suffix = tok.strip_prefix("ya29.moat.").unwrap();
        assert!(suffix.len() >= 43, "{}", suffix.len());
        assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

        let g = store.lookup(&tok, T0 + 10).unwrap();
        assert_eq!(g.account, sa);
        assert_eq!(g.scopes, scopes);
        assert_eq!(g.expires_at, T0 + 3599);
        assert!(store.lookup(&tok, T0 + 3598).is_some());
        assert_eq!(store.lookup(&tok, T0 + 3599), None, "expired at expires_at");
        assert_eq!(store.lookup("ya29.moat.unknown", T0), None);
        assert_eq!(store.lookup("", T0), None);

        let (tok2, _) = store.issue(&sa, &scopes, T0);
        assert_ne!(tok, tok2, "tokens are random");
        // Issuing prunes expired tokens.
        let _ = store.issue(&sa, &scopes, T0 + 4000);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn raw_token_is_not_stored() {
        let store = AccessTokens::new();
        let (tok, _) = store.issue(&Account::user("dev@example.com"), &[], T0);
        let dbg = format!("{store:?}");
        assert!(!dbg.contains(&tok), "{dbg}");
        assert!(!dbg.contains(tok.strip_prefix(ACCESS_TOKEN_PREFIX).unwrap()), "{dbg}");
        let grants = store.grants.lock().unwrap();
        assert!(grants.keys().all(|k| k.as_slice() != tok.as_bytes()));
        assert!(grants.contains_key(&hash(&tok)));
    }
}
