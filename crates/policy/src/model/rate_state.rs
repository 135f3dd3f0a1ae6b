//! Where rate-limit counters and bans live (`rate_limit_state:` in moat.yaml). The policy crate
//! only holds the parsed setting; the front door connects to the store.

use std::time::Duration;

use crate::source::SourceRef;

/// `rate_limit_state: {redis: URL, on_error: open|closed, timeout_ms: N}`: counters and bans in
/// one Redis, shared by every moat replica that names it. Absent: each process counts alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitState {
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` or `redis+unix:///PATH[?db=N]`. Never printed
    /// as is: it may carry a password (see [`RateLimitState::redacted_url`]).
    pub redis: String,
    pub on_error: RateStateOnError,
    /// Bound on each call to the store, connection included; past it the call has failed.
    pub timeout: Duration,
    pub source: SourceRef,
}

/// What a rate-limited request gets when the store does not answer in time. Bans this replica
/// has already seen are enforced either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateStateOnError {
    /// Refuse the rule's request as if its key were over the limit (Cloud Armor never admits
    /// past a limit because of its own state).
    #[default]
    Closed,
    /// Admit it uncounted.
    Open,
}

impl RateStateOnError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

/// Each call to the store is bounded by this when moat.yaml does not say.
pub const DEFAULT_RATE_STATE_TIMEOUT: Duration = Duration::from_millis(50);
/// The longest `timeout_ms` accepted: a rate-limited request waits at most this long.
pub const MAX_RATE_STATE_TIMEOUT_MS: u64 = 10_000;

impl RateLimitState {
    /// A store named on the command line (`--rate-state URL`): moat.yaml's `on_error` and
    /// `timeout_ms` when it has a `rate_limit_state`, else the defaults.
    pub fn with_url(base: Option<&Self>, url: String, source: SourceRef) -> Self {
        match base {
            Some(b) => Self { redis: url, ..b.clone() },
            None => {
                Self { redis: url, on_error: RateStateOnError::default(), timeout: DEFAULT_RATE_STATE_TIMEOUT, source }
            }
        }
    }

    /// The URL without its password, for logs and the listener table.
    pub fn redacted_url(&self) -> String {
        redact(&self.redis)
    }
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://***@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

/// The URL schemes the Redis client is built with: plain TCP and a Unix socket (no TLS
/// feature, which would bring a second crypto stack).
const SCHEMES: [&str; 3] = ["redis://", "redis+unix://", "unix://"];

/// Why `url` cannot name a Redis moat can reach, if it cannot. The Redis client parses the
/// rest (host, port, database) when the front door starts.
pub fn check_url(url: &str) -> Option<String> {
    let Some(scheme) = SCHEMES.iter().find(|s| url.starts_with(**s)) else {
        return Some(format!("`{}` is not a `redis://` URL", redact(url)));
    };
    let rest = url.get(scheme.len()..).unwrap_or_default();
    if rest.is_empty() || rest.starts_with('/') && *scheme == "redis://" {
        return Some(format!("`{}` names no host", redact(url)));
    }
    if url.chars().any(char::is_whitespace) {
        return Some(format!("`{}` contains white space", redact(url)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_anything_connects() {
        assert_eq!(check_url("redis://127.0.0.1:6379/0"), None);
        assert_eq!(check_url("redis+unix:///run/redis.sock"), None);
        for (url, why) in [
            ("rediss://cache:6380", "is not a `redis://` URL"),
            ("http://cache", "is not a `redis://` URL"),
            ("redis://", "names no host"),
            ("redis:///0", "names no host"),
            ("redis://ca che", "contains white space"),
        ] {
            let err = check_url(url).unwrap_or_default();
            assert!(err.ends_with(why), "{url}: {err}");
        }
        assert!(!check_url("rediss://:hunter2@cache").unwrap_or_default().contains("hunter2"));
    }

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            ("redis://moat:hunter2@cache/1", "redis://moat:***@cache/1"),
            ("redis://hunter2@cache", "redis://***@cache"),
            ("redis+unix:///run/redis.sock", "redis+unix:///run/redis.sock"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
