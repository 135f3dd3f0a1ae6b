//! The checks every metadata request passes before its path is looked at: who addressed us
//! (Host), whether it was relayed (X-Forwarded-For), and whether it declared itself a metadata
//! client (Metadata-Flavor). Pure functions over header values, so the table tests below pin
//! each quirk without a socket.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Uri};

use super::responses::Refusal;

/// Names a metadata client may use to address the server (spec/cloudrun.md §3.1) plus the
/// loopback names of a local daemon. Anything else is a DNS-rebinding page or a misdirected
/// request.
const ALLOWED_NAMES: [&str; 6] =
    ["metadata.google.internal", "metadata", "169.254.169.254", "127.0.0.1", "localhost", "::1"];

/// The port a client addressing `metadata.google.internal` implies.
const METADATA_PORT: u16 = 80;

/// Accepts a request addressed to the metadata server: exactly one `Host` header naming it
/// (no port, port 80 or the port this listener is bound to; the listener's own IP counts as a
/// name, for a server bound to 127.0.0.2 or 169.254.169.254), and, when the request target is
/// in absolute form (`GET http://name/path`), an `http` URI whose authority passes the same
/// check. RFC 9112 §3.2.2 has a server take the target's authority over `Host`, so checking
/// only `Host` would let `GET http://evil.example/…` with `Host: metadata` through; two `Host`
/// headers are refused rather than picking one (RFC 9112 §3.2: 400), since a proxy in front may
/// have read the other.
pub(crate) fn host(headers: &HeaderMap, uri: &Uri, local: SocketAddr) -> Result<(), Refusal> {
    let mut values = headers.get_all(axum::http::header::HOST).iter();
    let raw = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().map_err(|_| Refusal::HostNotAllowed("(not text)".into()))?,
        (None, _) => return Err(Refusal::HostNotAllowed("(none)".into())),
        (Some(_), Some(_)) => return Err(Refusal::HostNotAllowed("(more than one Host header)".into())),
    };
    names_this_server(raw, local)?;
    if let Some(scheme) = uri.scheme_str()
        && scheme != "http"
    {
        return Err(Refusal::HostNotAllowed(format!("(absolute-form target with scheme {scheme})")));
    }
    match uri.authority() {
        Some(authority) => names_this_server(authority.as_str(), local),
        None => Ok(()),
    }
}

/// Whether `raw` (`name[:port]`) addresses this server.
fn names_this_server(raw: &str, local: SocketAddr) -> Result<(), Refusal> {
    let refused = || Refusal::HostNotAllowed(raw.to_owned());
    let (name, port) = split_host(raw).ok_or_else(refused)?;
    let name = name.strip_suffix('.').unwrap_or(name);
    let known = ALLOWED_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
        || name.parse::<IpAddr>().is_ok_and(|ip| ip == local.ip());
    let port_ok = port.is_none_or(|p| p == METADATA_PORT || p == local.port());
    if known && port_ok { Ok(()) } else { Err(refused()) }
}

/// `name[:port]` or `[v6][:port]`; `None` when the port is not a number.
fn split_host(raw: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            p => (v6, Some(p.strip_prefix(':')?)),
        }
    } else {
        match raw.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (raw, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// A request relayed by a proxy is how SSRF reaches a metadata server: GCE refuses any
/// `X-Forwarded-For`, whatever its value. `Forwarded` (RFC 7239) is the same signal.
pub(crate) fn not_forwarded(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers.contains_key("x-forwarded-for") || headers.contains_key(axum::http::header::FORWARDED) {
        Err(Refusal::Forwarded)
    } else {
        Ok(())
    }
}

/// `Metadata-Flavor: Google` is what proves the caller meant to talk to a metadata server (a
/// browser or a naive SSRF cannot add it): missing → 403, any other value → 404, like GCE.
pub(crate) fn flavor(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut values = headers.get_all("metadata-flavor").iter().peekable();
    if values.peek().is_none() {
        return Err(Refusal::MissingFlavor);
    }
    if values.all(|v| v.as_bytes() == b"Google") { Ok(()) } else { Err(Refusal::WrongFlavor) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn host_allow_list() {
        let local: SocketAddr = ([127, 0, 0, 1], 8123).into();
        let cases = [
            ("metadata.google.internal", true),
            ("Metadata.Google.Internal.", true),
            ("metadata.google.internal:80", true),
            ("metadata", true),
            ("169.254.169.254", true),
            ("169.254.169.254:80", true),
            ("127.0.0.1:8123", true),
            ("localhost:8123", true),
            ("[::1]:8123", true),
            ("[::1]", true),
            ("127.0.0.1:9999", false),
            ("evil.example.com:8123", false),
            ("metadata.google.internal.evil.com", false),
            ("127.0.0.1:", false),
            ("127.0.0.1:80x", false),
            ("[::1", false),
            ("", false),
        ];
        let origin_form = Uri::from_static("/computeMetadata/v1/");
        for (h, ok) in cases {
            assert_eq!(host(&with("host", &[h]), &origin_form, local).is_ok(), ok, "{h}");
        }
        assert!(host(&HeaderMap::new(), &origin_form, local).is_err());
        let own: SocketAddr = ([127, 0, 0, 7], 81).into();
        assert!(host(&with("host", &["127.0.0.7:81"]), &origin_form, own).is_ok());
    }

    #[test]
    fn two_host_headers_are_refused_even_when_both_are_allowed() {
        let local: SocketAddr = ([127, 0, 0, 1], 8123).into();
        let root = Uri::from_static("/");
        for pair in [["metadata", "evil.example"], ["evil.example", "metadata"], ["metadata", "metadata"]] {
            assert!(matches!(host(&with("host", &pair), &root, local), Err(Refusal::HostNotAllowed(_))), "{pair:?}");
        }
    }

    #[test]
    fn an_absolute_form_target_must_name_this_server_too() {
        let local: SocketAddr = ([127, 0, 0, 1], 8123).into();
        let metadata = with("host", &["metadata"]);
        let cases = [
            ("http://metadata/computeMetadata/v1/", true),
            ("http://metadata.google.internal:80/", true),
            ("http://127.0.0.1:8123/computeMetadata/v1/", true),
            ("http://evil.example/computeMetadata/v1/", false),
            ("http://evil.example:8123/", false),
            ("http://127.0.0.1:9999/", false),
            ("http://user@metadata/", false),
            ("https://metadata/computeMetadata/v1/", false),
        ];
        for (target, ok) in cases {
            let uri: Uri = target.parse().unwrap_or_else(|e| unreachable!("{target}: {e}"));
            assert_eq!(host(&metadata, &uri, local).is_ok(), ok, "{target}");
        }
        // The Host header is still checked when the target names the server.
        let uri = Uri::from_static("http://metadata/");
        assert!(host(&with("host", &["evil.example"]), &uri, local).is_err());
    }

    #[test]
    fn any_forwarding_header_is_refused() {
        assert!(not_forwarded(&HeaderMap::new()).is_ok());
        assert!(not_forwarded(&with("x-forwarded-for", &[""])).is_err());
        assert!(not_forwarded(&with("x-forwarded-for", &["127.0.0.1"])).is_err());
        assert!(not_forwarded(&with("forwarded", &["for=1.2.3.4"])).is_err());
    }

    #[test]
    fn flavor_must_be_exactly_google() {
        assert!(matches!(flavor(&HeaderMap::new()), Err(Refusal::MissingFlavor)));
        assert!(flavor(&with("metadata-flavor", &["Google"])).is_ok());
        assert!(matches!(flavor(&with("metadata-flavor", &["google"])), Err(Refusal::WrongFlavor)));
        assert!(matches!(flavor(&with("metadata-flavor", &["Google", "Amazon"])), Err(Refusal::WrongFlavor)));
        assert!(matches!(flavor(&with("metadata-flavor", &[""])), Err(Refusal::WrongFlavor)));
    }
}
