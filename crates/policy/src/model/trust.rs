//! Other ID-token issuers the front door trusts (`trust:` in moat.yaml), for self-hosted use
//! (Keycloak, Dex, an in-house IdP). The policy crate only holds the parsed setting; the server
//! loads the keys. moat's own issuer (`https://accounts.google.com`) is always trusted and is
//! not listed here.

use std::path::PathBuf;

use crate::source::SourceRef;

/// Where a trusted issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// `jwks_url:` an absolute `http` or `https` URL, fetched on an unknown `kid` and on a
    /// schedule.
    Url(String),
    /// `jwks_file:` a JWKS document on disk, re-read on an unknown `kid` and every minute. As
    /// written: a relative path is relative to the project directory, and whoever reads the
    /// project from a directory (the CLI) makes it absolute.
    File(PathBuf),
}

/// A signature algorithm a trusted issuer may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustAlgorithm {
    Rs256,
    Es256,
}

/// `trust.issuers[]`: one trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// The exact `iss` of its tokens (an `https://` URL).
    pub issuer: String,
    pub keys: JwksLocation,
    /// Lower-case domains whose verified emails name `user:EMAIL`; every other token of this
    /// issuer names `principal://ISSUER/subject/SUB` (docs/IDENTITY.md).
    pub email_domains: Vec<String>,
    /// Default: RS256 only.
    pub algorithms: Vec<TrustAlgorithm>,
    pub source: SourceRef,
}
