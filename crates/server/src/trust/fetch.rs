//! Getting JWKS bytes: over HTTP(S) with hyper-util's client or from a file, each bounded in
//! time and size. Only URLs from the configuration reach this module.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use moat_crypto::verify::MAX_JWKS_BYTES;
use moat_crypto::{JwksError, KeySet};
use tokio::io::AsyncReadExt as _;

use super::TrustError;

/// Why a refresh brought no keys. The verifier keeps its last good keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the JWKS endpoint answered HTTP {0}: check the issuer's JWKS URL")]
    Status(u16),
    #[error("the JWKS fetch took longer than {0:?}: check that the endpoint is reachable")]
    Timeout(Duration),
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes: serve only the signing keys")]
    TooLarge,
    #[error("the JWKS request failed ({0}): check the URL and the network")]
    Http(String),
    #[error("the JWKS file `{path}` cannot be read ({detail}): check the path and its permissions")]
    File { path: String, detail: String },
    #[error("the JWKS is unusable: {0}")]
    Jwks(#[from] JwksError),
    #[error("issuer `{0}` has static keys: its owner replaces them")]
    Static(String),
    #[error("issuer `{0}` is not configured")]
    UnknownIssuer(String),
}

/// A parsed key set and, for HTTP, the `max-age` the endpoint asked for.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) keys: KeySet,
    pub(crate) max_age: Option<Duration>,
}

/// One HTTP client for every URL source of a trust store.
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Fetcher {
    /// `with_roots`: load the OS trust store, needed only when an `https` source exists.
    pub(crate) fn new(timeout: Duration, with_roots: bool) -> Result<Self, TrustError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Tls(e.to_string()))?;
        let tls = if with_roots {
            builder
                .with_native_roots()
                .map_err(|e| TrustError::NoRootCertificates(e.to_string()))?
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        };
        let connector = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        Ok(Self { client: Client::builder(TokioExecutor::new()).build(connector), timeout })
    }

    pub(crate) async fn url(&self, uri: &Uri) -> Result<Fetched, FetchError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.url_unbounded(uri)).await.map_err(|_| FetchError::Timeout(timeout))?
    }

    async fn url_unbounded(&self, uri: &Uri) -> Result<Fetched, FetchError> {
        let request = Request::get(uri.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("moat/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let response = self.client.request(request).await.map_err(|e| FetchError::Http(error_chain(&e)))?;
        // Redirects are not followed: a JWKS URL is configured exactly.
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let declared = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let max_age = max_age(response.headers().get_all(CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()));
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES).collect().await.map_err(|e| {
            if e.is::<LengthLimitError>() { FetchError::TooLarge } else { FetchError::Http(e.to_string()) }
        })?;
        let keys = KeySet::from_jwks_json(&body.to_bytes())?;
        Ok(Fetched { keys, max_age })
    }

    pub(crate) async fn file(&self, path: &Path) -> Result<Fetched, FetchError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, read_file(path)).await.map_err(|_| FetchError::Timeout(timeout))?
    }
}

async fn read_file(path: &Path) -> Result<Fetched, FetchError> {
    let fail = |e: std::io::Error| FetchError::File { path: path.display().to_string(), detail: e.to_string() };
    let file = tokio::fs::File::open(path).await.map_err(fail)?;
    let mut bytes = Vec::new();
    // One byte over the cap tells "too large" from "exactly at the cap".
    file.take(MAX_JWKS_BYTES as u64 + 1).read_to_end(&mut bytes).await.map_err(fail)?;
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(FetchError::TooLarge);
    }
    Ok(Fetched { keys: KeySet::from_jwks_json(&bytes)?, max_age: None })
}

/// hyper's client error hides the cause (connection refused, DNS) in its source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `max-age` from `Cache-Control` values; `no-cache`/`no-store` count as zero (the caller
/// clamps to its lower bound).
pub(crate) fn max_age<'a>(values: impl Iterator<Item = &'a str>) -> Option<Duration> {
    let mut found = None;
    for directive in values.flat_map(|v| v.split(',')) {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            found = value.trim().trim_matches('"').parse::<u64>().ok().map(Duration::from_secs).or(found);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_any_value() {
        let cases: &[(&[&str], Option<u64>)] = &[
            (&["public, max-age=19822, must-revalidate, no-transform"], Some(19822)),
            (&["public", "Max-Age = 60"], Some(60)),
            (&["max-age=\"30\""], Some(30)),
            (&["max-age=soon"], None),
            (&["private, no-store"], Some(0)),
            (&[], None),
        ];
        for (values, want) in cases {
            assert_eq!(max_age(values.iter().copied()), want.map(Duration::from_secs), "{values:?}");
        }
    }
}
