//! Which ID-token issuers the front door trusts, and where their keys come from.
//!
//! A [`TrustStore`] holds one [`Verifier`] per configured issuer. Keys come only from the
//! issuer's configured [`JwksSource`] (moat's own key ring, a JWKS URL or a JWKS file), never
//! from a token: the unverified `iss` only selects a configured issuer, and an unknown issuer
//! is refused without any fetch (J7, J31).
//!
//! Key design decision: the timing rules live in `moat_crypto::RefreshGate` (pure, over
//! injected instants); this module only does the I/O around it. An unknown `kid` triggers at
//! most one fetch per interval (J8); a failed fetch keeps the last good keys until
//! `max_staleness`, after which the issuer's tokens are refused (J30); no keys at all refuses
//! every token.

mod door;
mod fetch;
mod peek;
mod refresher;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::Uri;
use moat_crypto::verify::GOOGLE_ISSUERS;
use moat_crypto::{KeySet, PrincipalRule, RefreshGate, VerifiedClaims, Verifier, VerifierConfig, VerifyError};

pub use door::DoorVerifier;
pub use fetch::FetchError;
pub use refresher::Refreshers;

use fetch::Fetcher;

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A JWKS URL (`http` or `https`), fetched on an unknown `kid` and on a schedule.
    Url(String),
    /// A JWKS file, for self-hosted issuers: re-read on an unknown `kid` and on an interval.
    File(PathBuf),
    /// Keys held in process (moat's own key ring); the owner replaces them through
    /// [`TrustStore::verifier`] and `Verifier::replace_keys`.
    Static(KeySet),
}

/// Signature algorithms an issuer may use. Nothing else can be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
}

impl Algorithm {
    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// One trusted issuer. Audiences are not part of it: the caller passes them per request.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The exact `iss` value.
    pub issuer: String,
    /// Other exact spellings of the same issuer (Google's `accounts.google.com`).
    pub aliases: Vec<String>,
    pub source: JwksSource,
    pub algorithms: Vec<Algorithm>,
    /// Domains whose verified emails name `user:EMAIL` (any issuer but Google's; see
    /// `moat_crypto::PrincipalRule::Federated`).
    pub email_domains: Vec<String>,
}

impl TrustedIssuer {
    /// An issuer signing with RS256.
    pub fn new(issuer: impl Into<String>, source: JwksSource) -> Self {
        Self {
            issuer: issuer.into(),
            aliases: Vec::new(),
            source,
            algorithms: vec![Algorithm::Rs256],
            email_domains: Vec::new(),
        }
    }

    pub fn with_email_domains(mut self, domains: &[String]) -> Self {
        self.email_domains = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        self
    }

    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    pub fn with_aliases(mut self, aliases: &[&str]) -> Self {
        self.aliases = aliases.iter().map(|a| (*a).to_owned()).collect();
        self
    }
}

/// Timing and size rules shared by every remote source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// At most one fetch per issuer in this interval, whatever triggers it (J8).
    pub min_fetch_interval: Duration,
    /// How long the last good keys stay usable while fetches fail (J30).
    pub max_staleness: Duration,
    /// Bound on one fetch: connect, headers and body.
    pub fetch_timeout: Duration,
    /// `Cache-Control: max-age` is clamped to `[min_refresh, max_refresh]` for the schedule.
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// Schedule when the endpoint sends no `max-age`.
    pub default_refresh: Duration,
    /// Schedule after a failed scheduled fetch.
    pub retry_after_failure: Duration,
    /// How often file sources are re-read.
    pub file_interval: Duration,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        Self {
            min_fetch_interval: Duration::from_secs(60),
            max_staleness: Duration::from_secs(6 * 3600),
            fetch_timeout: Duration::from_secs(5),
            min_refresh: Duration::from_secs(5 * 60),
            max_refresh: Duration::from_secs(24 * 3600),
            default_refresh: Duration::from_secs(3600),
            retry_after_failure: Duration::from_secs(60),
            file_interval: Duration::from_secs(60),
        }
    }
}

/// Monotonic time for the refresh rules, injected so tests need not sleep.
pub type MonotonicClock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A trust configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("a trusted issuer has an empty `iss`: name the issuer exactly as its tokens do")]
    EmptyIssuer,
    #[error("issuer `{0}` is configured twice: keep one entry per issuer")]
    DuplicateIssuer(String),
    #[error("issuer `{0}` allows no signature algorithm: allow RS256 or ES256")]
    NoAlgorithms(String),
    #[error("the JWKS URL `{url}` of issuer `{issuer}` is not usable ({reason}): give an absolute http or https URL")]
    BadUrl { issuer: String, url: String, reason: &'static str },
    #[error("https JWKS URLs need the system's root certificates, which did not load ({0}): install ca-certificates")]
    NoRootCertificates(String),
    #[error("the TLS client cannot be set up: {0}")]
    Tls(String),
}

enum Source {
    Static,
    Url(Uri),
    File(PathBuf),
}

/// One issuer: its verifier, where its keys come from and when they were last good.
struct Issuer {
    name: String,
    verifier: Arc<Verifier>,
    source: Source,
    /// Short critical sections only; never held across an await.
    state: Mutex<RefreshState>,
    /// Serialises fetches, so tokens arriving during a fetch wait for it instead of starting
    /// their own.
    fetching: tokio::sync::Mutex<()>,
}

struct RefreshState {
    gate: RefreshGate,
    /// Delay before the next scheduled refresh; `None` until the first attempt.
    next_refresh: Option<Duration>,
}

impl Issuer {
    fn state(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remote(&self) -> bool {
        !matches!(self.source, Source::Static)
    }
}

/// What every issuer shares: the HTTP client, the rules and the clock.
struct Shared {
    fetcher: Fetcher,
    policy: TrustPolicy,
    clock: MonotonicClock,
}

/// The trusted issuers and their verifiers. `Send + Sync`; share it behind an `Arc`.
pub struct TrustStore {
    by_name: HashMap<String, Arc<Issuer>>,
    issuers: Vec<Arc<Issuer>>,
    shared: Arc<Shared>,
    max_token_bytes: usize,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("issuers", &self.issuers.iter().map(|i| &i.name).collect::<Vec<_>>())
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl TrustStore {
    /// Builds the store without I/O: remote keys load on first use or from
    /// [`TrustStore::refresh_all`] / [`TrustStore::spawn_refreshers`].
    pub fn new(issuers: Vec<TrustedIssuer>, policy: TrustPolicy) -> Result<Self, TrustError> {
        Self::with_clock(issuers, policy, Arc::new(Instant::now))
    }

    pub fn with_clock(
        issuers: Vec<TrustedIssuer>,
        policy: TrustPolicy,
        clock: MonotonicClock,
    ) -> Result<Self, TrustError> {
        let mut by_name = HashMap::new();
        let mut list = Vec::with_capacity(issuers.len());
        let mut need_roots = false;
        let base = VerifierConfig::google();
        let max_token_bytes = base.max_token_bytes;
        for t in issuers {
            if t.issuer.is_empty() || t.aliases.iter().any(String::is_empty) {
                return Err(TrustError::EmptyIssuer);
            }
            if t.algorithms.is_empty() {
                return Err(TrustError::NoAlgorithms(t.issuer));
            }
            let (source, keys) = match t.source {
                JwksSource::Static(keys) => (Source::Static, keys),
                JwksSource::File(path) => (Source::File(path), KeySet::empty()),
                JwksSource::Url(url) => {
                    let uri = parse_url(&t.issuer, &url)?;
                    need_roots |= uri.scheme_str() == Some("https");
                    (Source::Url(uri), KeySet::empty())
                }
            };
            let mut names = vec![t.issuer.clone()];
            names.extend(t.aliases);
            let mut algorithms: Vec<_> = t.algorithms.iter().map(|a| a.jwt()).collect();
            algorithms.dedup();
            // Google's issuer keeps Google's email mapping; any other is namespaced (J27, J28).
            let principals = if GOOGLE_ISSUERS.contains(&t.issuer.as_str()) {
                PrincipalRule::Google
            } else {
                PrincipalRule::Federated { email_domains: t.email_domains }
            };
            let config = VerifierConfig { issuers: names.clone(), algorithms, principals, ..base.clone() };
            let issuer = Arc::new(Issuer {
                name: t.issuer,
                verifier: Arc::new(Verifier::new(config, keys)),
                source,
                state: Mutex::new(RefreshState {
                    gate: RefreshGate::new(policy.min_fetch_interval, policy.max_staleness),
                    next_refresh: None,
                }),
                fetching: tokio::sync::Mutex::new(()),
            });
            for name in names {
                if by_name.insert(name.clone(), Arc::clone(&issuer)).is_some() {
                    return Err(TrustError::DuplicateIssuer(name));
                }
            }
            list.push(issuer);
        }
        let fetcher = Fetcher::new(policy.fetch_timeout, need_roots)?;
        Ok(Self { by_name, issuers: list, shared: Arc::new(Shared { fetcher, policy, clock }), max_token_bytes })
    }

    /// Configured issuers, in configuration order.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|i| i.name.as_str())
    }

    /// The verifier of `issuer` (or one of its aliases): the owner of a `Static` source
    /// replaces its keys here.
    pub fn verifier(&self, issuer: &str) -> Option<&Arc<Verifier>> {
        self.by_name.get(issuer).map(|i| &i.verifier)
    }

    /// Verifies `token` for a service that accepts any of `audiences`, at unix time `now`.
    pub async fn verify(&self, token: &str, audiences: &[String], now: u64) -> Result<VerifiedClaims, VerifyError> {
        // The unverified `iss` only picks a configured issuer; an unknown one costs no fetch.
        let iss = peek::issuer(token, self.max_token_bytes)?;
        let issuer = self.by_name.get(&iss).ok_or(VerifyError::Issuer)?;
        if issuer.remote() && !self.usable(issuer) {
            // Cold start or stale keys: one gated fetch, then fail closed.
            refresher::refresh(&self.shared, issuer, refresher::Trigger::OnDemand).await;
            if !self.usable(issuer) {
                if !issuer.verifier.key_set().is_empty() {
                    tracing::warn!(issuer = %issuer.name, "JWKS keys are past their maximum staleness: refusing the issuer's tokens");
                    issuer.verifier.replace_keys(KeySet::empty());
                }
                return Err(VerifyError::NoKeys);
            }
        }
        match issuer.verifier.verify(token, audiences, now) {
            Err(VerifyError::UnknownKey) if issuer.remote() => {
                // A rotated key: at most one fetch per interval, then one retry (J8).
                refresher::refresh(&self.shared, issuer, refresher::Trigger::OnDemand).await;
                issuer.verifier.verify(token, audiences, now)
            }
            result => result,
        }
    }

    /// Fetches (or re-reads) `issuer`'s keys now, outside the rate limit: for the owner, not
    /// for the request path.
    pub async fn refresh(&self, issuer: &str) -> Result<(), FetchError> {
        let i = self.by_name.get(issuer).ok_or_else(|| FetchError::UnknownIssuer(issuer.to_owned()))?;
        if !i.remote() {
            return Err(FetchError::Static(i.name.clone()));
        }
        refresher::refresh(&self.shared, i, refresher::Trigger::Owner).await.unwrap_or(Ok(()))
    }

    /// Refreshes every remote issuer once (warm-up); returns the failures.
    pub async fn refresh_all(&self) -> Vec<(String, FetchError)> {
        let mut failed = Vec::new();
        for i in self.issuers.iter().filter(|i| i.remote()) {
            if let Some(Err(e)) = refresher::refresh(&self.shared, i, refresher::Trigger::Owner).await {
                failed.push((i.name.clone(), e));
            }
        }
        failed
    }

    /// Starts one background task per URL or file source, refreshing on its schedule. Must be
    /// called inside a Tokio runtime; dropping or cancelling the handle stops the tasks.
    pub fn spawn_refreshers(&self) -> Refreshers {
        Refreshers::spawn(&self.shared, self.issuers.iter().filter(|i| i.remote()))
    }

    fn usable(&self, issuer: &Issuer) -> bool {
        issuer.state().gate.keys_usable((self.shared.clock)())
    }
}

fn parse_url(issuer: &str, url: &str) -> Result<Uri, TrustError> {
    let bad = |reason| TrustError::BadUrl { issuer: issuer.to_owned(), url: url.to_owned(), reason };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL"));
    }
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    Ok(uri)
}
