//! The front door's verifier: moat's own keys (the issuer the metadata servers sign with, which
//! plays `https://accounts.google.com`) and the other issuers of `trust:` in moat.yaml.
//!
//! A token's unverified `iss` only picks which verifier checks it; moat's own tokens never pay
//! for the trust store, and with no `trust:` the door verifies exactly as before.

use std::sync::Arc;

use moat_crypto::verify::GOOGLE_ISSUERS;
use moat_crypto::{VerifiedClaims, Verifier, VerifyError};
use moat_policy::model::trust::{JwksLocation, TrustAlgorithm, TrustedIssuer as ConfiguredIssuer};

use super::{Algorithm, JwksSource, Refreshers, TrustPolicy, TrustStore, TrustedIssuer, peek};

/// moat's own verifier and, when `trust:` lists issuers, their store.
pub struct DoorVerifier {
    own: Arc<Verifier>,
    others: Option<Arc<TrustStore>>,
    /// The background refreshes of the other issuers' keys; they stop with the door.
    _refreshers: Option<Refreshers>,
}

impl std::fmt::Debug for DoorVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorVerifier").field("own", &self.own).field("others", &self.others).finish()
    }
}

impl DoorVerifier {
    /// moat's own keys only.
    pub fn own(own: Arc<Verifier>) -> Self {
        Self { own, others: None, _refreshers: None }
    }

    /// moat's own keys and the configured issuers. Remote keys load on first use and, inside a
    /// Tokio runtime, on their schedule. A store that cannot be built (no TLS roots for an
    /// https JWKS URL) is logged and left out: those issuers' tokens are refused (fail closed).
    pub fn new(own: Arc<Verifier>, issuers: &[ConfiguredIssuer]) -> Self {
        if issuers.is_empty() {
            return Self::own(own);
        }
        let store = match TrustStore::new(issuers.iter().map(trusted).collect(), TrustPolicy::default()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(error = %e, "the issuers under `trust:` cannot be used; their tokens are refused");
                return Self::own(own);
            }
        };
        let refreshers = tokio::runtime::Handle::try_current().is_ok().then(|| store.spawn_refreshers());
        Self { own, others: Some(store), _refreshers: refreshers }
    }

    /// The store of the other issuers, if any.
    pub fn others(&self) -> Option<&Arc<TrustStore>> {
        self.others.as_ref()
    }

    /// Verifies `token` for a service that accepts any of `audiences`, at unix time `now`.
    pub async fn verify(&self, token: &str, audiences: &[String], now: u64) -> Result<VerifiedClaims, VerifyError> {
        let Some(others) = &self.others else { return self.own.verify(token, audiences, now) };
        let iss = peek::issuer(token, self.own.config().max_token_bytes)?;
        if GOOGLE_ISSUERS.contains(&iss.as_str()) {
            return self.own.verify(token, audiences, now);
        }
        others.verify(token, audiences, now).await
    }
}

fn trusted(c: &ConfiguredIssuer) -> TrustedIssuer {
    let source = match &c.keys {
        JwksLocation::Url(u) => JwksSource::Url(u.clone()),
        JwksLocation::File(p) => JwksSource::File(p.clone()),
    };
    let algorithms: Vec<Algorithm> = c
        .algorithms
        .iter()
        .map(|a| match a {
            TrustAlgorithm::Rs256 => Algorithm::Rs256,
            TrustAlgorithm::Es256 => Algorithm::Es256,
        })
        .collect();
    TrustedIssuer::new(c.issuer.clone(), source).with_algorithms(&algorithms).with_email_domains(&c.email_domains)
}
