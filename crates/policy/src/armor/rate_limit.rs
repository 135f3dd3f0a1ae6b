//! `rateLimitOptions`: parsed and validated in full. The counting itself (per key, per backend
//! service, shared across replicas) is the caller's: the evaluator hands back the rule's
//! [`RateLimit`] and the caller applies it.

use super::policy::{Ctx, Redirect, lower_redirect};
use std::net::IpAddr;

use super::raw::{RawRateLimitOptions, RawThreshold};
use super::request::EdgeRequest;

/// The intervals Cloud Armor accepts, in seconds (spec/armor.md §3, from several IaC validators
/// that cite the rate-limiting overview).
pub const INTERVALS_SEC: [u32; 13] = [10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600];

/// `count` requests per `interval_sec` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub count: u32,
    pub interval_sec: u32,
}

/// What a request over the threshold gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceedAction {
    /// `deny(403|404|429|502)`.
    Deny(u16),
    Redirect(Redirect),
}

/// One part of the key requests are counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// One bucket for every request the rule matches (`ALL`, or the deprecated `ALL_IPS`).
    All,
    /// The address of the load balancer's peer.
    Ip,
    /// A header's value, first 128 bytes; a request without it falls back to `All`.
    HttpHeader(String),
    /// The first address of `X-Forwarded-For`; an absent or invalid one falls back to `Ip`.
    XffIp,
    /// A cookie's value, first 128 bytes; absent falls back to `All`.
    HttpCookie(String),
    /// The URL path, first 128 bytes.
    HttpPath,
    /// The TLS server name, first 128 bytes; plain HTTP falls back to `All`.
    Sni,
    /// The region code the project's `geo:` table gives the peer address; none falls back to
    /// `All`.
    RegionCode,
    /// Falls back to `All` without TLS.
    TlsJa3Fingerprint,
    TlsJa4Fingerprint,
    /// The address from `userIpRequestHeaders`; falls back to `Ip`.
    UserIp,
}

/// A throttle or ban rule's limit. `key` has one part (`enforceOnKey`) or up to three
/// (`enforceOnKeyConfigs`), combined into one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub threshold: Threshold,
    /// `conformAction`: Cloud Armor only has `allow`.
    pub exceed: ExceedAction,
    pub key: Vec<KeyPart>,
}

/// What `rate_based_ban` adds: ban the key for `duration_sec` once it exceeds the rate limit
/// (or, with `threshold`, once its requests over the limit exceed that threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub threshold: Option<Threshold>,
    pub duration_sec: u32,
}

/// Most key configs a rule can combine.
pub const MAX_KEY_CONFIGS: usize = 3;

pub(crate) fn lower(
    ctx: &mut Ctx<'_>,
    base: &str,
    raw: &RawRateLimitOptions,
    ban: bool,
) -> Option<(RateLimit, Option<Ban>)> {
    let before = ctx.error_count();
    // Count bounds from spec/armor.md §3: throttle 1..=1,000,000, rate_based_ban 1..=10,000.
    let max_count = if ban { 10_000 } else { 1_000_000 };
    let threshold = match &raw.rate_limit_threshold {
        Some(t) => lower_threshold(ctx, &format!("{base}/rateLimitThreshold"), t, max_count),
        None => {
            ctx.err(
                base,
                "`rateLimitOptions` needs a `rateLimitThreshold`",
                Some("add `\"rateLimitThreshold\": {\"count\": 100, \"intervalSec\": 60}`"),
            );
            None
        }
    };
    match raw.conform_action.as_deref() {
        Some("allow") => {}
        Some(other) => ctx.err(
            &format!("{base}/conformAction"),
            format!("conform action `{other}` is not valid; Cloud Armor only allows `allow`"),
            None,
        ),
        None => ctx.err(base, "`rateLimitOptions` needs `\"conformAction\": \"allow\"`", None),
    }
    let exceed = match raw.exceed_action.as_deref() {
        Some("redirect") => match &raw.exceed_redirect_options {
            Some(r) => lower_redirect(ctx, &format!("{base}/exceedRedirectOptions"), r).map(ExceedAction::Redirect),
            None => {
                ctx.err(
                    &format!("{base}/exceedAction"),
                    "exceed action `redirect` needs `exceedRedirectOptions`",
                    Some("add `\"exceedRedirectOptions\": {\"type\": \"EXTERNAL_302\", \"target\": \"https://...\"}`"),
                );
                None
            }
        },
        Some(a) => match deny_status(a) {
            Some(status @ (403 | 404 | 429 | 502)) => Some(ExceedAction::Deny(status)),
            _ => {
                ctx.err(
                    &format!("{base}/exceedAction"),
                    format!("exceed action `{a}` is not valid"),
                    Some("use `deny(429)` (recommended), `deny(403)`, `deny(404)`, `deny(502)` or `redirect`"),
                );
                None
            }
        },
        None => {
            ctx.err(base, "`rateLimitOptions` needs an `exceedAction`", Some("add `\"exceedAction\": \"deny(429)\"`"));
            None
        }
    };
    if raw.exceed_redirect_options.is_some() && raw.exceed_action.as_deref() != Some("redirect") {
        ctx.err(
            &format!("{base}/exceedRedirectOptions"),
            "`exceedRedirectOptions` is only used with `\"exceedAction\": \"redirect\"`",
            None,
        );
    }
    let key = lower_key(ctx, base, raw);
    let ban_opts = if ban {
        let ban_threshold = raw
            .ban_threshold
            .as_ref()
            .and_then(|t| lower_threshold(ctx, &format!("{base}/banThreshold"), t, 1_000_000));
        match raw.ban_duration_sec {
            Some(d) if (1..=86_400).contains(&d) => Some(Ban { threshold: ban_threshold, duration_sec: d as u32 }),
            Some(d) => {
                ctx.err(
                    &format!("{base}/banDurationSec"),
                    format!("ban duration `{d}` is out of range; use 1 to 86400 seconds"),
                    None,
                );
                None
            }
            None => {
                ctx.err(base, "a `rate_based_ban` rule needs `banDurationSec`", Some("add `\"banDurationSec\": 600`"));
                None
            }
        }
    } else {
        for (field, present) in
            [("banThreshold", raw.ban_threshold.is_some()), ("banDurationSec", raw.ban_duration_sec.is_some())]
        {
            if present {
                ctx.err(
                    &format!("{base}/{field}"),
                    format!("`{field}` only applies to `rate_based_ban` rules"),
                    Some("remove it, or change the action to `rate_based_ban`"),
                );
            }
        }
        None
    };
    if ctx.error_count() > before {
        return None;
    }
    let limit = RateLimit { threshold: threshold?, exceed: exceed?, key: key? };
    Some((limit, ban_opts))
}

fn lower_threshold(ctx: &mut Ctx<'_>, path: &str, raw: &RawThreshold, max_count: i64) -> Option<Threshold> {
    let count = match raw.count {
        Some(c) if (1..=max_count).contains(&c) => Some(c as u32),
        Some(c) => {
            ctx.err(&format!("{path}/count"), format!("count `{c}` is out of range; use 1 to {max_count}"), None);
            None
        }
        None => {
            ctx.err(path, "the threshold needs a `count`", None);
            None
        }
    };
    let interval_sec = match raw.interval_sec {
        Some(i) if INTERVALS_SEC.iter().any(|&v| i64::from(v) == i) => Some(i as u32),
        Some(i) => {
            ctx.err(
                &format!("{path}/intervalSec"),
                format!("interval `{i}` seconds is not one Cloud Armor accepts"),
                Some("use 10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700 or 3600"),
            );
            None
        }
        None => {
            ctx.err(path, "the threshold needs an `intervalSec`", None);
            None
        }
    };
    Some(Threshold { count: count?, interval_sec: interval_sec? })
}

fn lower_key(ctx: &mut Ctx<'_>, base: &str, raw: &RawRateLimitOptions) -> Option<Vec<KeyPart>> {
    let configs = &raw.enforce_on_key_configs;
    if configs.is_empty() {
        let kind = raw.enforce_on_key.as_deref().filter(|k| !k.is_empty()).unwrap_or("ALL");
        return key_part(
            ctx,
            &format!("{base}/enforceOnKey"),
            kind,
            raw.enforce_on_key_name.as_deref(),
            &format!("{base}/enforceOnKeyName"),
        )
        .map(|k| vec![k]);
    }
    if raw.enforce_on_key.as_deref().is_some_and(|k| !k.is_empty()) {
        ctx.err(
            &format!("{base}/enforceOnKey"),
            "`enforceOnKey` and `enforceOnKeyConfigs` cannot both be set",
            Some("set `\"enforceOnKey\": \"\"` and keep the configs"),
        );
        return None;
    }
    if configs.len() > MAX_KEY_CONFIGS {
        ctx.err(
            &format!("{base}/enforceOnKeyConfigs/{MAX_KEY_CONFIGS}"),
            format!("{} key configs; Cloud Armor combines at most {MAX_KEY_CONFIGS}", configs.len()),
            None,
        );
        return None;
    }
    let mut parts = Vec::with_capacity(configs.len());
    for (i, c) in configs.iter().enumerate() {
        let path = format!("{base}/enforceOnKeyConfigs/{i}");
        let Some(kind) = c.enforce_on_key_type.as_deref() else {
            ctx.err(&path, "a key config needs an `enforceOnKeyType`", None);
            return None;
        };
        parts.push(key_part(
            ctx,
            &format!("{path}/enforceOnKeyType"),
            kind,
            c.enforce_on_key_name.as_deref(),
            &format!("{path}/enforceOnKeyName"),
        )?);
    }
    Some(parts)
}

fn key_part(ctx: &mut Ctx<'_>, path: &str, kind: &str, name: Option<&str>, name_path: &str) -> Option<KeyPart> {
    let named = |ctx: &mut Ctx<'_>, make: fn(String) -> KeyPart| match name.filter(|n| !n.is_empty()) {
        Some(n) => Some(make(n.to_owned())),
        None => {
            ctx.err(path, format!("key `{kind}` needs an `enforceOnKeyName` (the header or cookie to count by)"), None);
            None
        }
    };
    let part = match kind {
        "ALL" | "ALL_IPS" => KeyPart::All,
        "IP" => KeyPart::Ip,
        "HTTP_HEADER" => return named(ctx, |n| KeyPart::HttpHeader(n.to_ascii_lowercase())),
        "XFF_IP" => KeyPart::XffIp,
        "HTTP_COOKIE" => return named(ctx, KeyPart::HttpCookie),
        "HTTP_PATH" => KeyPart::HttpPath,
        "SNI" => KeyPart::Sni,
        "REGION_CODE" => KeyPart::RegionCode,
        "TLS_JA3_FINGERPRINT" => KeyPart::TlsJa3Fingerprint,
        "TLS_JA4_FINGERPRINT" => KeyPart::TlsJa4Fingerprint,
        "USER_IP" => KeyPart::UserIp,
        other => {
            ctx.err(
                path,
                format!("`{other}` is not a rate-limit key"),
                Some("use ALL, IP, HTTP_HEADER, XFF_IP, HTTP_COOKIE, HTTP_PATH, SNI, REGION_CODE, TLS_JA3_FINGERPRINT, TLS_JA4_FINGERPRINT or USER_IP"),
            );
            return None;
        }
    };
    if name.is_some_and(|n| !n.is_empty()) {
        ctx.err(
            name_path,
            format!("key `{kind}` takes no `enforceOnKeyName`"),
            Some("remove it; only HTTP_HEADER and HTTP_COOKIE are named"),
        );
        return None;
    }
    Some(part)
}

/// The status of `deny(NNN)`.
pub(crate) fn deny_status(action: &str) -> Option<u16> {
    action.strip_prefix("deny(")?.strip_suffix(')')?.parse().ok()
}

/// Cloud Armor counts a key value by its first 128 bytes.
pub const MAX_KEY_BYTES: usize = 128;

impl RateLimit {
    /// The key `request` is counted under: each part's value with its documented fall-back
    /// (see [`KeyPart`]), cut to [`MAX_KEY_BYTES`] (at a character boundary, so a key stays
    /// text), parts joined with `|` and tagged with what they are, so `IP` 1.2.3.4 and a header
    /// whose value is `1.2.3.4` never share a bucket. `user_ip` is the address from the
    /// policy's `userIpRequestHeaders`, when the request has one.
    pub fn key(&self, request: &EdgeRequest, user_ip: Option<IpAddr>) -> String {
        let parts: Vec<String> = self.key.iter().map(|p| key_value(p, request, user_ip)).collect();
        parts.join("|")
    }
}

fn key_value(part: &KeyPart, r: &EdgeRequest, user_ip: Option<IpAddr>) -> String {
    const ALL: &str = "all";
    let ip = || format!("ip={}", r.remote_ip);
    match part {
        KeyPart::All => ALL.to_owned(),
        KeyPart::Ip => ip(),
        KeyPart::HttpHeader(name) => {
            r.headers.get(name).map_or_else(|| ALL.to_owned(), |v| format!("h:{name}={}", cut(v)))
        }
        KeyPart::XffIp => r
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse::<IpAddr>().ok())
            .map_or_else(ip, |a| format!("xff={}", a.to_canonical())),
        KeyPart::HttpCookie(name) => cookie(r, name).map_or_else(|| ALL.to_owned(), |v| format!("c:{name}={}", cut(v))),
        KeyPart::HttpPath => format!("path={}", cut(&r.path)),
        // No TLS on moat's listeners, so no server name and no fingerprints: `ALL`, as Cloud
        // Armor falls back for plain HTTP.
        KeyPart::Sni => ALL.to_owned(),
        KeyPart::TlsJa3Fingerprint => {
            r.tls_ja3_fingerprint.as_deref().map_or_else(|| ALL.to_owned(), |f| format!("ja3={}", cut(f)))
        }
        KeyPart::TlsJa4Fingerprint => {
            r.tls_ja4_fingerprint.as_deref().map_or_else(|| ALL.to_owned(), |f| format!("ja4={}", cut(f)))
        }
        KeyPart::RegionCode => r.region_code.as_deref().map_or_else(|| ALL.to_owned(), |c| format!("region={c}")),
        KeyPart::UserIp => user_ip.map_or_else(ip, |a| format!("user_ip={a}")),
    }
}

/// The value of cookie `name` in the `cookie` header(s) (joined with `,` by [`Headers`]).
fn cookie<'a>(r: &'a EdgeRequest, name: &str) -> Option<&'a str> {
    let header = r.headers.get("cookie")?;
    header.split([';', ',']).filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_KEY_BYTES {
        return s;
    }
    let mut end = MAX_KEY_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or(s)
}

#[cfg(test)]
mod key_tests {
    use super::*;

    fn limit(key: Vec<KeyPart>) -> RateLimit {
        RateLimit { threshold: Threshold { count: 1, interval_sec: 60 }, exceed: ExceedAction::Deny(429), key }
    }

    #[test]
    fn keys_and_their_fall_backs() {
        let peer = IpAddr::from([10, 0, 0, 1]);
        let bare = EdgeRequest::new("GET", "http", "h", "/p/q?x=1", peer);
        let full = bare
            .clone()
            .header("x-api-key", "k1")
            .header("x-forwarded-for", "203.0.113.5, 10.0.0.9")
            .header("cookie", "a=1; session=s9");
        let cases: &[(KeyPart, &str, &str)] = &[
            (KeyPart::All, "all", "all"),
            (KeyPart::Ip, "ip=10.0.0.1", "ip=10.0.0.1"),
            (KeyPart::HttpHeader("x-api-key".into()), "all", "h:x-api-key=k1"),
            (KeyPart::XffIp, "ip=10.0.0.1", "xff=203.0.113.5"),
            (KeyPart::HttpCookie("session".into()), "all", "c:session=s9"),
            (KeyPart::HttpPath, "path=/p/q", "path=/p/q"),
            (KeyPart::Sni, "all", "all"),
            (KeyPart::RegionCode, "all", "all"),
            (KeyPart::TlsJa3Fingerprint, "all", "all"),
            (KeyPart::UserIp, "ip=10.0.0.1", "ip=10.0.0.1"),
        ];
        for (part, without, with) in cases {
            let l = limit(vec![part.clone()]);
            assert_eq!(l.key(&bare, None), *without, "{part:?} without");
            assert_eq!(l.key(&full, None), *with, "{part:?} with");
        }
        let bad_xff = bare.clone().header("x-forwarded-for", "not-an-ip");
        assert_eq!(limit(vec![KeyPart::XffIp]).key(&bad_xff, None), "ip=10.0.0.1");
        let user = Some(IpAddr::from([198, 51, 100, 2]));
        assert_eq!(limit(vec![KeyPart::UserIp]).key(&bare, user), "user_ip=198.51.100.2");
        let combined = limit(vec![KeyPart::Ip, KeyPart::HttpPath]);
        assert_eq!(combined.key(&bare, None), "ip=10.0.0.1|path=/p/q");
    }

    proptest::proptest! {
        /// Whatever the header, a key part holds at most 128 bytes of it, a prefix of it.
        #[test]
        fn a_key_value_is_a_prefix_of_at_most_128_bytes(value in "[^\r\n\x00,]{0,300}") {
            let r = EdgeRequest::new("GET", "http", "h", "/", IpAddr::from([10, 0, 0, 1])).header("x-k", &value);
            let key = limit(vec![KeyPart::HttpHeader("x-k".into())]).key(&r, None);
            if let Some(v) = key.strip_prefix("h:x-k=") {
                proptest::prop_assert!(v.len() <= MAX_KEY_BYTES);
                proptest::prop_assert!(value.starts_with(v));
                if value.len() <= MAX_KEY_BYTES {
                    proptest::prop_assert_eq!(v, value.as_str());
                } else {
                    proptest::prop_assert!(v.len() > MAX_KEY_BYTES - 4, "cut at the last boundary before 128");
                }
            } else {
                proptest::prop_assert_eq!(key, "all");
            }
        }
    }

    #[test]
    fn values_are_cut_to_128_bytes_at_a_character_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let r = EdgeRequest::new("GET", "http", "h", "/", IpAddr::from([10, 0, 0, 1])).header("x-k", &long);
        let key = limit(vec![KeyPart::HttpHeader("x-k".into())]).key(&r, None);
        let value = key.strip_prefix("h:x-k=").unwrap_or_default();
        assert_eq!(value.len(), 128);
        assert!(long.starts_with(value));
        let path = format!("/{}", "a".repeat(300));
        let r = EdgeRequest::new("GET", "http", "h", &path, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(limit(vec![KeyPart::HttpPath]).key(&r, None).len(), "path=".len() + 128);
    }
}
