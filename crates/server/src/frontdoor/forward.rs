//! Passing an admitted request to the workload, and what the workload may and may not see.
//!
//! [`forward`] takes an [`Admitted`], which only the authorizer's `Permit` or the proof that
//! the service disabled the invoker check can build: a request that skipped a check has no way
//! to reach this code.

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use moat_crypto::{VerifiedClaims, strip_signature};
use moat_policy::authz::Permit;
use moat_policy::model::Service;

use super::body::{Body, Capped};
use super::upstream::Conns;

/// Proof that `service` has the invoker IAM check disabled (spec/cloudrun.md §2.8): nothing is
/// verified and the credential headers pass untouched.
#[derive(Debug)]
pub(super) struct InvokerCheckDisabled(());

impl InvokerCheckDisabled {
    pub(super) fn of(service: &Service) -> Option<Self> {
        service.invoker_iam_disabled.value.then_some(Self(()))
    }
}

/// The credential header the front door verified, ready to go on with its signature removed.
#[derive(Debug)]
pub(super) struct Verified {
    header: HeaderName,
    stripped: HeaderValue,
    #[expect(dead_code, reason = "a proof: only the verifier builds one, and holding it is the point")]
    claims: VerifiedClaims,
}

impl Verified {
    /// `None` when the token is not a three-segment JWS, which a verified token always is.
    pub(super) fn new(header: &'static str, token: &str, claims: VerifiedClaims) -> Option<Self> {
        let header = HeaderName::from_bytes(header.as_bytes()).ok()?;
        let stripped = strip_signature(token)?;
        let mut value = String::with_capacity("Bearer ".len() + stripped.len());
        value.push_str("Bearer ");
        value.push_str(&stripped);
        let stripped = HeaderValue::try_from(value).ok()?;
        Some(Self { header, stripped, claims })
    }
}

/// Why the request may go on.
#[derive(Debug)]
pub(super) enum Admitted {
    /// IAM permitted the caller; `verified` is the header its token came in, if any.
    Invoker {
        #[expect(dead_code, reason = "a proof: only the authorizer builds one, and holding it is the point")]
        permit: Permit,
        verified: Option<Verified>,
    },
    Unchecked(InvokerCheckDisabled),
}

/// Why a forward ended without the workload's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failed {
    Upstream(UpstreamError),
    /// The request body (of undeclared length) grew past the body limit on its way: the
    /// forward was aborted.
    BodyTooLarge,
}

/// Why the workload gave no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpstreamError {
    /// No upstream is configured or running for the service.
    NotConfigured,
    Unreachable,
    Timeout,
}

impl UpstreamError {
    pub(super) fn code(self) -> &'static str {
        match self {
            Self::NotConfigured => "upstream.not_configured",
            Self::Unreachable => "upstream.unreachable",
            Self::Timeout => "upstream.timeout",
        }
    }

    pub(super) fn status(self) -> u16 {
        match self {
            Self::Timeout => 504,
            Self::NotConfigured | Self::Unreachable => 502,
        }
    }
}

/// Headers the front door sets itself (or that an identity-aware proxy in front of Cloud Run
/// would): a copy sent by the client would be trusted by the workload, so it never gets through.
const TRUST_HEADERS: [&str; 3] =
    ["x-goog-authenticated-user-email", "x-goog-authenticated-user-id", "x-goog-iap-jwt-assertion"];
const TRUST_PREFIX: &str = "x-moat-";
pub(super) const REQUEST_ID: &str = "x-moat-request-id";

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the obsolete ones still seen in the wild).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

pub(super) struct Upstream<'a> {
    pub conns: &'a Conns,
    pub base: Option<Uri>,
    pub timeout: std::time::Duration,
    pub max_body_bytes: u64,
}

/// Sends the request to the workload and streams its response back.
pub(super) async fn forward(
    admitted: Admitted,
    upstream: Upstream<'_>,
    mut req: Request<Incoming>,
    peer: IpAddr,
    request_id: &str,
) -> Result<Response<Body>, Failed> {
    let base = upstream.base.ok_or(Failed::Upstream(UpstreamError::NotConfigured))?;
    let target_host = target_host(req.uri());
    *req.uri_mut() = join(&base, req.uri()).ok_or(Failed::Upstream(UpstreamError::NotConfigured))?;
    let headers = req.headers_mut();
    // HTTP/2 names the host in `:authority`, an absolute-form HTTP/1 target in the URL: either
    // way it is what the request was routed on, and the workload gets it as Host (RFC 9113
    // §8.3.1, RFC 9112 §3.2.2).
    if let Some(h) = target_host {
        headers.insert(header::HOST, h);
    }
    strip_hop_by_hop(headers);
    strip_trust_headers(headers);
    match &admitted {
        // The container can read the claims but cannot replay the token (§2.7). When
        // X-Serverless-Authorization was verified, Authorization is the application's and
        // passes byte for byte.
        Admitted::Invoker { verified: Some(v), .. } => {
            headers.insert(v.header.clone(), v.stripped.clone());
        }
        Admitted::Invoker { verified: None, .. } | Admitted::Unchecked(_) => {}
    }
    set_forwarded(headers, peer);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID), id);
    }
    // HTTP/1.1 to the workload whatever the client spoke.
    *req.version_mut() = hyper::Version::HTTP_11;
    drop(admitted);
    // Streamed, never buffered: counted as it goes, and cut off past the limit.
    let (mut parts, body) = req.into_parts();
    // Bytes the WAF read first (see waf.rs) go out ahead of the rest.
    let prefix = parts.extensions.remove::<super::waf::BodyPrefix>().unwrap_or_default();
    let (body, overflow) = Capped::with_prefix(prefix, body, upstream.max_body_bytes);
    let req = Request::from_parts(parts, body);

    let sent = tokio::time::timeout(upstream.timeout, upstream.conns.send(req)).await;
    if overflow.is_some_and(|o| o.happened()) {
        return Err(Failed::BodyTooLarge);
    }
    let resp = match sent {
        Err(_) => return Err(Failed::Upstream(UpstreamError::Timeout)),
        Ok(Err(_)) => return Err(Failed::Upstream(UpstreamError::Unreachable)),
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::Upstream(body)))
}

/// The Host a request's target names (userinfo dropped), if its target has an authority.
fn target_host(uri: &Uri) -> Option<HeaderValue> {
    let authority = uri.authority()?;
    let value = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    HeaderValue::try_from(value).ok()
}

/// The upstream URL for a request: the base's scheme and authority, its path as a prefix, then
/// the request's path and query.
fn join(base: &Uri, uri: &Uri) -> Option<Uri> {
    let authority = base.authority()?;
    let prefix = base.path().trim_end_matches('/');
    let path_and_query = match uri.path_and_query() {
        // The usual case, a base without a path: the request's own path and query, shared.
        Some(pq) if prefix.is_empty() => pq.clone(),
        pq => format!("{prefix}{}", pq.map_or("/", |pq| pq.as_str())).parse().ok()?,
    };
    let mut parts = hyper::http::uri::Parts::default();
    parts.scheme = Some(base.scheme().cloned().unwrap_or(hyper::http::uri::Scheme::HTTP));
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

/// The names [`HOP_BY_HOP`] and `upgrade`, as one comparison per header.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them; looking is cheaper than removing (which hashes).
    if !headers.keys().any(|k| is_hop_by_hop(k.as_str())) {
        return;
    }
    // Headers named in Connection are hop-by-hop too; Host is never one.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| *n != header::HOST)
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
    // Upgrade (WebSockets) is not proxied yet: without its Connection header it means nothing.
    headers.remove(header::UPGRADE);
}

fn strip_trust_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(TRUST_PREFIX) || TRUST_HEADERS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in spoofed {
        headers.remove(k);
    }
}

/// X-Forwarded-For gets the peer appended (what the client sent stays, untrusted, in front, as
/// Google's front end does); X-Forwarded-Proto says what the client spoke to the front door.
/// The peer's address as text. A keep-alive connection sends many requests from one address,
/// and formatting an address is slow next to copying it, so each thread keeps the last one.
fn peer_text(peer: IpAddr) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, String)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((ip, text)) if *ip == peer => text.clone(),
        _ => {
            let text = peer.to_string();
            *last = Some((peer, text.clone()));
            text
        }
    })
}

fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let prior: Vec<&str> = headers.get_all(&xff).iter().filter_map(|v| v.to_str().ok()).collect();
    let value = if prior.is_empty() { peer_text(peer) } else { format!("{}, {peer}", prior.join(", ")) };
    match HeaderValue::try_from(value).or_else(|_| HeaderValue::try_from(peer_text(peer))) {
        Ok(v) => {
            headers.insert(xff, v);
        }
        Err(_) => {
            headers.remove(xff);
        }
    }
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    #[test]
    fn joins_base_and_request() {
        let cases = [
            ("http://127.0.0.1:9000", "/a/b?c=d", "http://127.0.0.1:9000/a/b?c=d"),
            ("http://127.0.0.1:9000/", "/", "http://127.0.0.1:9000/"),
            ("http://10.0.0.1:80/prefix/", "/x", "http://10.0.0.1:80/prefix/x"),
            ("http://10.0.0.1/prefix", "/x?y=1&z", "http://10.0.0.1/prefix/x?y=1&z"),
            ("http://127.0.0.1:9000", "http://svc.example/p?q", "http://127.0.0.1:9000/p?q"),
            ("http://127.0.0.1:9000", "http://svc.example", "http://127.0.0.1:9000/"),
            ("https://upstream.example", "/%3Cscript%3E", "https://upstream.example/%3Cscript%3E"),
        ];
        for (base, uri, want) in cases {
            let got = join(&base.parse().expect(base), &uri.parse().expect(uri)).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(want), "{base} + {uri}");
        }
    }

    #[test]
    fn the_target_authority_becomes_host() {
        let cases = [
            ("http://api.example.com/x", Some("api.example.com")),
            ("http://user:pw@api.example.com:8080/", Some("api.example.com:8080")),
            ("/x", None),
        ];
        for (uri, want) in cases {
            let got = target_host(&uri.parse().expect(uri));
            assert_eq!(got.as_ref().and_then(|v| v.to_str().ok()), want, "{uri}");
        }
    }

    #[test]
    fn hop_by_hop_and_named_headers_go_host_stays() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private, host"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-app", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-app"]);

        // Without a Connection header, the fixed ones still go.
        for name in ["keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h.insert("x-app", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["x-app"], "{name}");
        }
    }

    #[test]
    fn forwarded_for_appends_the_peer() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        set_forwarded(&mut h, "203.0.113.9".parse().expect("ip"));
        assert_eq!(h.get("x-forwarded-for").and_then(|v| v.to_str().ok()), Some("10.0.0.1, 203.0.113.9"));
        assert_eq!(h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()), Some("http"));
    }

    #[test]
    fn each_request_gets_its_own_peer() {
        // The thread keeps the last peer's text: alternating peers must not see each other's.
        for peer in ["203.0.113.9", "203.0.113.9", "2001:db8::1", "198.51.100.7", "2001:db8::1"] {
            let mut h = HeaderMap::new();
            set_forwarded(&mut h, peer.parse().expect("ip"));
            assert_eq!(h.get("x-forwarded-for").and_then(|v| v.to_str().ok()), Some(peer));
        }
    }

    #[test]
    fn the_quick_look_knows_every_hop_by_hop_name() {
        for name in HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
            assert!(is_hop_by_hop(name.as_str()), "{name}");
        }
        for name in ["host", "x-app", "authorization", "content-length", "tea", "upgrade-insecure-requests"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
    }
}
