//! Where an outbound request is for: parsed from the request line (absolute-form, or the
//! authority of a CONNECT), then resolved in a fixed order. The metadata server's names first
//! (reachable in every mode); then a host the front door routes (a moat service, handed to the
//! caller's `service:NAME` listener); then `egress.hosts` (the simulated network's address for
//! the decision, a local stand-in to connect to); then an IP literal; then DNS, where only the
//! first address is decided on and connected to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hyper::{Method, Request};
use moat_policy::Project;

/// The metadata server's address on Google Cloud; `metadata.google.internal` resolves to it.
pub(super) const METADATA_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));
const METADATA_HOST: &str = "metadata.google.internal";

/// What the workload asked the proxy for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// A CONNECT tunnel rather than one HTTP request.
    pub tunnel: bool,
    /// Lower case, no trailing dot, no brackets around an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// The path without its query (for the record); `None` for a tunnel.
    pub path: Option<String>,
}

/// Why a request is not one a forward proxy can serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BadTarget {
    /// An origin-form request (`GET /path`): the client did not talk to us as a proxy.
    NotAbsolute,
    /// `GET https://...` through a plain proxy: TLS goes through CONNECT.
    Scheme,
    NoHost,
}

impl BadTarget {
    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::NotAbsolute => "egress.not_a_proxy_request",
            Self::Scheme => "egress.unsupported_scheme",
            Self::NoHost => "egress.no_host",
        }
    }

    pub(super) fn message(&self) -> &'static str {
        match self {
            Self::NotAbsolute => {
                "this is moat's egress proxy: send requests in absolute form (`GET http://host/path`) or CONNECT, as HTTP_PROXY clients do"
            }
            Self::Scheme => "only `http://` URLs are proxied as requests; use CONNECT for https",
            Self::NoHost => "the request names no destination host",
        }
    }
}

pub(super) fn parse<B>(req: &Request<B>) -> Result<Target, BadTarget> {
    let uri = req.uri();
    let tunnel = req.method() == Method::CONNECT;
    let authority = uri.authority().ok_or(if tunnel { BadTarget::NoHost } else { BadTarget::NotAbsolute })?;
    let default_port = if tunnel {
        // CONNECT must name a port (RFC 9110 §9.3.6); 443 is what every client means.
        443
    } else {
        match uri.scheme_str() {
            Some("http") => 80,
            Some(_) => return Err(BadTarget::Scheme),
            None => return Err(BadTarget::NotAbsolute),
        }
    };
    let host = normalise(authority.host());
    if host.is_empty() {
        return Err(BadTarget::NoHost);
    }
    Ok(Target {
        tunnel,
        host,
        port: authority.port_u16().unwrap_or(default_port),
        path: (!tunnel).then(|| uri.path().to_owned()),
    })
}

fn normalise(host: &str) -> String {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Where the destination is, before the egress decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resolved {
    /// A host the front door routes: the call goes to the caller's `service:NAME` listener.
    Service,
    /// Decide on `addr`; connect to `connect` if allowed (a local stand-in from `egress.hosts`,
    /// or the address itself).
    Address { addr: IpAddr, connect: SocketAddr },
    /// DNS had no address for the host (or took too long).
    Unresolvable(String),
}

/// Resolves `target` in the documented order. `routes_host` says whether the front door
/// routes a host; `lookup_timeout` bounds DNS.
pub(super) async fn resolve(
    project: &Project,
    routes_host: impl Fn(&str) -> bool,
    target: &Target,
    lookup_timeout: Duration,
) -> Resolved {
    let host = target.host.as_str();
    let port = target.port;
    if host == METADATA_HOST {
        return Resolved::Address { addr: METADATA_IP, connect: SocketAddr::new(METADATA_IP, port) };
    }
    if routes_host(host) {
        return Resolved::Service;
    }
    if let Some(h) = project.egress.host(host) {
        return Resolved::Address { addr: h.address, connect: h.local.unwrap_or(SocketAddr::new(h.address, port)) };
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Resolved::Address { addr: ip, connect: SocketAddr::new(ip, port) };
    }
    match tokio::time::timeout(lookup_timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(mut addrs)) => match addrs.next() {
            Some(a) => Resolved::Address { addr: a.ip(), connect: a },
            None => Resolved::Unresolvable(format!("`{host}` has no address")),
        },
        Ok(Err(e)) => Resolved::Unresolvable(format!("`{host}` does not resolve: {e}")),
        Err(_) => Resolved::Unresolvable(format!("resolving `{host}` took longer than {}s", lookup_timeout.as_secs())),
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).expect("request")
    }

    #[test]
    fn request_lines_parse_to_targets() {
        let t = |host: &str, port: u16, path: Option<&str>, tunnel: bool| {
            Ok(Target { tunnel, host: host.to_owned(), port, path: path.map(str::to_owned) })
        };
        let cases: &[(Method, &str, Result<Target, BadTarget>)] = &[
            (Method::GET, "http://Example.COM/a/b?token=x", t("example.com", 80, Some("/a/b"), false)),
            (Method::POST, "http://db.internal:8080/", t("db.internal", 8080, Some("/"), false)),
            (Method::GET, "http://[::1]:9/x", t("::1", 9, Some("/x"), false)),
            (Method::GET, "http://metadata.google.internal./v1", t("metadata.google.internal", 80, Some("/v1"), false)),
            (Method::CONNECT, "example.com:443", t("example.com", 443, None, true)),
            (Method::CONNECT, "10.1.2.3:5432", t("10.1.2.3", 5432, None, true)),
            (Method::GET, "/relative", Err(BadTarget::NotAbsolute)),
            (Method::GET, "https://example.com/", Err(BadTarget::Scheme)),
        ];
        for (method, uri, want) in cases {
            assert_eq!(&parse(&req(method.clone(), uri)), want, "{method} {uri}");
        }
    }
}
