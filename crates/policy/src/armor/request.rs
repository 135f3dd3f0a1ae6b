//! The facts about one request that an edge policy decides on. The front door fills them in
//! from the connection and the request head; `explain` from the query.

use std::net::IpAddr;

/// Request headers as Cloud Armor exposes them: names lower-cased, repeated headers joined with
/// `,` in arrival order. Kept sorted by name, so a lookup is a binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a header; a second value for the same name is appended after a comma.
    pub fn insert(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => {
                if let Some((_, v)) = self.0.get_mut(i) {
                    v.push(',');
                    v.push_str(value);
                }
            }
            Err(i) => self.0.insert(i, (name, value.to_owned())),
        }
    }

    /// The value of a header, by its lower-case name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().and_then(|i| self.0.get(i)).map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.insert(n.as_ref(), v.as_ref());
        }
        h
    }
}

/// The `token.*` attributes. moat has no reCAPTCHA, so outside tests these stay at their
/// defaults, which are what Cloud Armor sees without a token: not valid, score 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecaptchaTokens {
    pub exemption_valid: bool,
    pub action_valid: bool,
    pub action_score: f64,
    pub action_captcha_status: String,
    pub action_name: String,
    pub session_valid: bool,
    pub session_score: f64,
}

/// One request as the edge policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeRequest {
    /// As sent, upper-case in practice.
    pub method: String,
    /// The raw path, before any URL-map rewrite.
    pub path: String,
    /// The raw query string, without `?`, not decoded.
    pub query: String,
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    pub headers: Headers,
    /// The address of the peer the load balancer sees (never taken from a header).
    pub remote_ip: IpAddr,
    /// ISO 3166-1 alpha-2 code of `remote_ip`, when an IP-to-region table is configured.
    pub region_code: Option<String>,
    /// Autonomous system of `remote_ip`, when an IP-to-ASN table is configured.
    pub asn: Option<i64>,
    pub tls_ja3_fingerprint: Option<String>,
    pub tls_ja4_fingerprint: Option<String>,
    pub tokens: RecaptchaTokens,
}

impl EdgeRequest {
    /// A request for `target` (path and query, as on the request line). The `host` header is
    /// set from `host` unless a header sets it.
    pub fn new(method: &str, scheme: &str, host: &str, target: &str, remote_ip: IpAddr) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = Headers::new();
        headers.insert("host", host);
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            headers,
            remote_ip: remote_ip.to_canonical(),
            region_code: None,
            asn: None,
            tls_ja3_fingerprint: None,
            tls_ja4_fingerprint: None,
            tokens: RecaptchaTokens::default(),
        }
    }

    /// Adds a request header (see [`Headers::insert`]); a `host` header replaces the default.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("host") {
            self.headers.0.retain(|(n, _)| n != "host");
        }
        self.headers.insert(name, value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_lower_cased_and_joined() {
        let h: Headers =
            [("User-Agent", "a"), ("X-Forwarded-For", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2")].into_iter().collect();
        assert_eq!(h.get("user-agent"), Some("a"));
        assert_eq!(h.get("x-forwarded-for"), Some("1.1.1.1,2.2.2.2"));
        assert_eq!(h.get("User-Agent"), None, "lookups take the lower-case name");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn request_splits_target_and_sets_host() {
        let r = EdgeRequest::new(
            "GET",
            "https",
            "shop.example",
            "/a/b?q=1&x",
            "::ffff:10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        );
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/a/b", "q=1&x"));
        assert_eq!(r.headers.get("host"), Some("shop.example"));
        assert_eq!(r.remote_ip, IpAddr::from([10, 0, 0, 1]), "IPv4-mapped addresses are IPv4");
        let r = r.header("Host", "other.example");
        assert_eq!(r.headers.get("host"), Some("other.example"));
    }
}
