//! The edge stage's glue: the request facts a security policy decides on, the headers an
//! `allow` rule adds, and the responses Cloud Armor gives. The decision itself is
//! `moat_policy::path::edge`, the function `explain` calls.

use std::net::SocketAddr;

use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};
use moat_policy::armor::{EdgeOutcome, EdgeRequest, ExceedAction, GeoTable, HeaderToAdd, Redirect};
use moat_policy::path::RateCheck;

use super::body::Body;

/// The request as the load balancer's policy sees it. The client address is the TCP peer:
/// moat has no trusted proxy in front of it, so no header (`X-Forwarded-For`, `Forwarded`)
/// can change `origin.ip` or a `SRC_IPS_V1` match. The scheme is what the client spoke to the
/// front door. Header values that are not UTF-8 are left out (the policy could not read them).
/// The region and ASN are the project's `geo:` table's for the peer (none without a table).
pub(super) fn edge_request<B>(req: &Request<B>, host: &str, peer: SocketAddr, geo: &GeoTable) -> EdgeRequest {
    let uri = req.uri();
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut e = EdgeRequest::new(req.method().as_str(), "http", host, target, peer.ip());
    for (name, value) in req.headers() {
        if let Ok(v) = value.to_str() {
            e = e.header(name.as_str(), v);
        }
    }
    geo.locate(e)
}

/// `headerAction.requestHeadersToAdds`: each header is set, replacing any the client sent.
/// Loading checked the names and values, so none is skipped in practice.
pub(super) fn add_headers<B>(req: &mut Request<B>, headers: &[HeaderToAdd]) {
    for h in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_str(&h.value)) {
            req.headers_mut().insert(name, value);
        }
    }
}

/// The `Location` of a refusal that redirects: an `EXTERNAL_302` rule, or a rate limit over its
/// threshold whose exceed action is an `EXTERNAL_302` redirect.
pub(super) fn location<'p>(outcome: &EdgeOutcome<'p>, rate: RateCheck) -> Option<&'p str> {
    match (outcome, rate) {
        (EdgeOutcome::Redirect { location }, _) => Some(location),
        (
            EdgeOutcome::Throttle { limit, .. } | EdgeOutcome::RateBasedBan { limit, .. },
            RateCheck::Exceeded | RateCheck::Banned | RateCheck::Unavailable,
        ) => match &limit.exceed {
            ExceedAction::Redirect(Redirect::External302 { target }) => Some(target),
            _ => None,
        },
        _ => None,
    }
}

/// Cloud Armor's own response for a refused request (not Cloud Run's error pages: the request
/// never reached Cloud Run): the bare 302 of an `EXTERNAL_302` redirect, else the short HTML
/// page the Google load balancer serves for a `deny` (also for a reCAPTCHA redirect moat cannot
/// serve, and a rate limit's `deny(429)`).
pub(super) fn respond(status: u16, location: Option<&str>) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let mut resp = match location {
        Some(location) if code == StatusCode::FOUND => {
            let mut r = Response::new(Body::full(String::new()));
            if let Ok(v) = HeaderValue::from_str(location) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        _ => {
            let mut r = Response::new(Body::full(page(code)));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=UTF-8"));
            r
        }
    };
    *resp.status_mut() = code;
    resp
}

/// The page the Google external Application Load Balancer sends for a Cloud Armor `deny(N)`.
pub(super) fn page(code: StatusCode) -> String {
    let reason = code.canonical_reason().unwrap_or("Error");
    let n = code.as_u16();
    format!(
        "<!doctype html><meta charset=\"utf-8\"><meta name=viewport content=\"width=device-width, initial-scale=1\"><title>{n}</title>{n} {reason}"
    )
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    #[test]
    fn the_peer_is_the_client_whatever_the_headers_say() {
        let req = Request::builder()
            .uri("/a/b?x=1")
            .header("X-Forwarded-For", "192.0.2.7")
            .header("User-Agent", "curl/8")
            .body(())
            .expect("request");
        let e = edge_request(&req, "www.example.com", "127.0.0.1:5000".parse().expect("addr"), &GeoTable::default());
        assert_eq!(e.remote_ip, std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!((e.path.as_str(), e.query.as_str()), ("/a/b", "x=1"));
        assert_eq!(e.headers.get("user-agent"), Some("curl/8"));
        assert_eq!(e.headers.get("host"), Some("www.example.com"));
    }

    #[test]
    fn deny_pages_name_the_status() {
        assert!(page(StatusCode::FORBIDDEN).ends_with("<title>403</title>403 Forbidden"));
        assert!(page(StatusCode::NOT_FOUND).ends_with("<title>404</title>404 Not Found"));
        assert!(page(StatusCode::BAD_GATEWAY).ends_with("<title>502</title>502 Bad Gateway"));
    }
}
