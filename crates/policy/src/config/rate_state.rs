//! `rate_limit_state:` in moat.yaml: where the front door keeps rate-limit counters and bans.
//! Checked here (scheme, failure policy, timeout bounds) so a typo is a `file:line` error at
//! load; connecting is the front door's job.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::diag::{ConfigError, FileCtx};
use crate::model::{MAX_RATE_STATE_TIMEOUT_MS, RateLimitState, RateStateOnError};

/// `rate_limit_state: {redis: URL, on_error: open|closed, timeout_ms: N}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimitState {
    pub redis: Spanned<String>,
    #[serde(default)]
    pub on_error: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
}

pub(crate) fn lower_rate_state(
    ctx: &FileCtx,
    raw: Spanned<RawRateLimitState>,
    errs: &mut Vec<ConfigError>,
) -> Option<RateLimitState> {
    let source = ctx.at(&raw.referenced);
    let raw = raw.value;
    let mut ok = true;
    let url = raw.redis.value.trim();
    if let Some(err) = crate::model::rate_state::check_url(url) {
        let help = if url.starts_with("rediss://") {
            "moat's Redis client has no TLS; use `redis://` on loopback or a private network, or a TLS tunnel (stunnel, spiped) in front of Redis"
        } else {
            "write `redis://HOST:PORT/DB`, e.g. `redis://127.0.0.1:6379/0`, or `redis+unix:///PATH`"
        };
        errs.push(ctx.error(&ctx.at(&raw.redis.referenced), err, help));
        ok = false;
    }
    let on_error = match raw.on_error {
        None => RateStateOnError::default(),
        Some(s) => match s.value.as_str() {
            "closed" => RateStateOnError::Closed,
            "open" => RateStateOnError::Open,
            other => {
                errs.push(ctx.error(
                    &ctx.at(&s.referenced),
                    format!("`on_error: {other}` is not a failure policy"),
                    "use `closed` (refuse rate-limited requests while Redis does not answer; the default) or `open` (admit them uncounted)",
                ));
                ok = false;
                RateStateOnError::default()
            }
        },
    };
    let timeout = match raw.timeout_ms {
        None => crate::model::DEFAULT_RATE_STATE_TIMEOUT,
        Some(t) if (1..=MAX_RATE_STATE_TIMEOUT_MS).contains(&t.value) => Duration::from_millis(t.value),
        Some(t) => {
            errs.push(ctx.error(
                &ctx.at(&t.referenced),
                format!("`timeout_ms: {}` is out of range", t.value),
                format!("use 1 to {MAX_RATE_STATE_TIMEOUT_MS} milliseconds (default 50): every rate-limited request can wait this long"),
            ));
            ok = false;
            crate::model::DEFAULT_RATE_STATE_TIMEOUT
        }
    };
    ok.then(|| RateLimitState { redis: url.to_owned(), on_error, timeout, source })
}
