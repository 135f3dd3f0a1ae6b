//! The ID-token verifier the front door uses.
//!
//! It is written against the JWS spec rather than wrapping `jsonwebtoken::decode`, because the
//! pitfalls of §C.4 (duplicate members, lenient base64, `crit`, nested tokens, float dates)
//! sit below that API. Keys come only from the configured [`KeySet`]; the clock is always a
//! parameter; only [`Verifier::verify`] can build a [`VerifiedClaims`].
//!
//! Cache and revocation: successful verifications are cached per SHA-256(token, audiences)
//! (no raw token is kept) until
//! `exp + leeway`, and every hit re-runs the time checks against the injected `now`. When
//! [`Verifier::replace_keys`] drops a key (or changes the material behind a `kid`), cached
//! tokens signed by it stop verifying at once: their next use fails with `UnknownKey`. There is
//! no other revocation: a token stays valid until `exp` while its key is published.

mod cache;
mod keyset;
mod parse;
mod refresh;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use moat_policy::{Principal, TokenFacts};

pub(crate) use keyset::VerifyingKey;
pub use keyset::{JwksError, KeySet, MAX_JWKS_BYTES, MAX_JWKS_KEYS, MAX_KID_BYTES, MIN_RSA_BITS};
pub use refresh::RefreshGate;

use cache::{Cache, Lookup};
use parse::Value;

/// Google's two spellings of its issuer (spec/cloudrun.md §2.6 #3).
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Default number of cached verifications (about 1 KiB each).
pub const DEFAULT_CACHE_CAPACITY: usize = 8192;
/// Longest `sub` accepted (Google's are 21 digits).
const MAX_SUB_BYTES: usize = 255;

/// What to do with a token whose header has no `kid` (J9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKid {
    Reject,
    /// Try every key whose algorithm fits the header `alg`.
    TryMatchingKeys,
}

/// How a verified token's claims name an IAM principal (J27, J28).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalRule {
    /// Google's rule, for moat's own issuer (which plays `https://accounts.google.com`): a
    /// verified `email` is `serviceAccount:` when it ends in `.gserviceaccount.com`, else
    /// `user:`; an unverified or missing email names no principal.
    Google,
    /// Any other trusted issuer. It never names a `serviceAccount:`. A verified `email` whose
    /// domain is listed here (lower case, exact) is `user:EMAIL`; every other token names the
    /// issuer-scoped [`federated_principal`] of its `sub`, so that two issuers asserting the
    /// same `sub` or the same email stay distinct.
    Federated { email_domains: Vec<String> },
}

/// The IAM principal of subject `sub` of issuer `iss` when no email names it:
/// `principal://ISSUER/subject/SUB`, where ISSUER is the issuer without its `https://` and SUB
/// is percent-encoded (everything but RFC 3986 unreserved characters), so the string cannot
/// be split two ways. IAM bindings name it as a member verbatim.
pub fn federated_principal(iss: &str, sub: &str) -> String {
    let host_path = iss.strip_prefix("https://").unwrap_or(iss);
    let mut out = format!("principal://{host_path}/subject/");
    for b in sub.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl PrincipalRule {
    fn principal(&self, iss: &str, sub: &str, email: Option<&str>, email_verified: bool) -> Option<Principal> {
        let verified_email = email.filter(|e| email_verified && !e.is_empty());
        match self {
            Self::Google => verified_email.map(Principal::from_email),
            Self::Federated { email_domains } => {
                let user = verified_email.map(str::to_ascii_lowercase).filter(|e| {
                    e.rsplit_once('@').is_some_and(|(local, domain)| {
                        !local.is_empty() && email_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
                    })
                });
                Some(match user {
                    Some(e) => Principal::User(e),
                    None => Principal::Federated(federated_principal(iss, sub)),
                })
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    pub issuers: Vec<String>,
    /// Allowed header `alg` values. HS*, `none` and EdDSA are ignored if listed: only
    /// asymmetric algorithms with a key in the [`KeySet`] can ever verify (J1–J3).
    pub algorithms: Vec<Algorithm>,
    pub leeway_secs: u64,
    pub max_lifetime_secs: u64,
    pub max_token_bytes: usize,
    pub missing_kid: MissingKid,
    pub principals: PrincipalRule,
}

impl VerifierConfig {
    /// Google ID tokens: both issuer spellings, RS256, 60 s leeway, 1 h lifetime, 16 KiB.
    pub fn google() -> Self {
        Self {
            issuers: GOOGLE_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
            algorithms: vec![Algorithm::RS256],
            leeway_secs: 60,
            max_lifetime_secs: 3600,
            max_token_bytes: 16 * 1024,
            missing_kid: MissingKid::Reject,
            principals: PrincipalRule::Google,
        }
    }
}

/// Why a token was refused. Messages never include the token or any claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is larger than this verifier accepts: send a single compact ID token")]
    TooLarge,
    #[error("the token is malformed ({0}): send a compact JWS with unpadded base64url segments")]
    Malformed(&'static str),
    #[error("the token's `alg` is not accepted or does not fit its key: sign with an allowed algorithm")]
    Algorithm,
    #[error("the token has a `crit` header, which this verifier does not support: remove it")]
    CritHeader,
    #[error("nested or encrypted tokens are not accepted: send a signed JWT")]
    Nested,
    #[error("the token header has no `kid`: name the signing key")]
    MissingKid,
    #[error("the token names a signing key that is not trusted: get a new token or refresh the keys")]
    UnknownKey,
    #[error("the token signature does not verify: get a new token from the issuer")]
    BadSignature,
    #[error("no verification keys are loaded: check the JWKS source")]
    NoKeys,
    #[error("the token has no `{0}` claim: request an ID token, not another kind of token")]
    MissingClaim(&'static str),
    #[error("the token's `{0}` claim has the wrong type or is out of range")]
    InvalidClaim(&'static str),
    #[error("the token issuer is not trusted: use a token from a configured issuer")]
    Issuer,
    #[error("the token audience does not match: request a token for the service URL or a custom audience")]
    Audience,
    #[error("the token has expired: get a new token")]
    Expired,
    #[error("the token is not valid yet (`nbf`): check the clocks")]
    NotYetValid,
    #[error("the token was issued in the future (`iat`): check the clocks")]
    IssuedInFuture,
    #[error("the token lives longer than allowed: request a token of at most the maximum lifetime")]
    LifetimeTooLong,
}

impl VerifyError {
    /// Stable code for the decision log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "token.too_large",
            Self::Malformed(_) => "token.malformed",
            Self::Algorithm => "token.algorithm",
            Self::CritHeader => "token.crit_header",
            Self::Nested => "token.nested",
            Self::MissingKid => "token.missing_kid",
            Self::UnknownKey => "token.unknown_key",
            Self::BadSignature => "token.bad_signature",
            Self::NoKeys => "token.no_keys",
            Self::MissingClaim(_) => "token.missing_claim",
            Self::InvalidClaim(_) => "token.invalid_claim",
            Self::Issuer => "token.issuer_mismatch",
            Self::Audience => "token.audience_mismatch",
            Self::Expired => "token.expired",
            Self::NotYetValid => "token.not_yet_valid",
            Self::IssuedInFuture => "token.issued_in_future",
            Self::LifetimeTooLong => "token.lifetime_too_long",
        }
    }
}

/// Proof that a token verified: only [`Verifier`] builds one. Cloning is one atomic increment.
#[derive(Clone)]
pub struct VerifiedClaims(Arc<Claims>);

struct Claims {
    iss: String,
    sub: String,
    aud: String,
    audiences: Vec<String>,
    email: Option<String>,
    email_verified: bool,
    hd: Option<String>,
    azp: Option<String>,
    exp: u64,
    iat: u64,
    nbf: Option<u64>,
    kid: String,
    /// Decided once, by the verifier's [`PrincipalRule`].
    principal: Option<Principal>,
}

impl std::fmt::Debug for VerifiedClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.0;
        f.debug_struct("VerifiedClaims")
            .field("iss", &c.iss)
            .field("sub", &c.sub)
            .field("aud", &c.aud)
            .field("email", &c.email)
            .field("email_verified", &c.email_verified)
            .field("exp", &c.exp)
            .field("iat", &c.iat)
            .field("kid", &c.kid)
            .finish_non_exhaustive()
    }
}

impl VerifiedClaims {
    pub fn issuer(&self) -> &str {
        &self.0.iss
    }
    pub fn subject(&self) -> &str {
        &self.0.sub
    }
    /// The audience that matched one of the acceptable audiences.
    pub fn audience(&self) -> &str {
        &self.0.aud
    }
    /// Every value of the `aud` claim.
    pub fn audiences(&self) -> &[String] {
        &self.0.audiences
    }
    pub fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    pub fn email_verified(&self) -> bool {
        self.0.email_verified
    }
    pub fn hosted_domain(&self) -> Option<&str> {
        self.0.hd.as_deref()
    }
    pub fn authorized_party(&self) -> Option<&str> {
        self.0.azp.as_deref()
    }
    pub fn expires_at(&self) -> u64 {
        self.0.exp
    }
    pub fn issued_at(&self) -> u64 {
        self.0.iat
    }
    pub fn not_before(&self) -> Option<u64> {
        self.0.nbf
    }
    /// The `kid` of the key that verified the token.
    pub fn key_id(&self) -> &str {
        &self.0.kid
    }
    /// `{iss}/{sub}`: subjects of different issuers never collide (J28).
    pub fn subject_id(&self) -> String {
        format!("{}/{}", self.0.iss, self.0.sub)
    }
    /// The IAM principal, by the verifier's [`PrincipalRule`]: for Google's issuer only a
    /// verified email names one; another issuer's token names a `user:` of one of its email
    /// domains or its issuer-scoped `principal://` (J27, J28).
    pub fn principal(&self) -> Option<Principal> {
        self.0.principal.clone()
    }
    pub fn token_facts(&self) -> Option<TokenFacts> {
        let principal = self.principal()?;
        // A federated principal rests on (iss, sub), not on an email: nothing to be unverified.
        let email_verified = self.0.email_verified || matches!(principal, Principal::Federated(_));
        Some(TokenFacts {
            principal,
            email_verified,
            audiences: self.0.audiences.clone(),
            hosted_domain: self.0.hd.clone(),
        })
    }
}

struct Snapshot {
    generation: u64,
    keys: KeySet,
}

/// Verifies ID tokens against a swappable key set. `Send + Sync`; share it behind an `Arc`.
pub struct Verifier {
    config: VerifierConfig,
    keys: ArcSwap<Snapshot>,
    generation: AtomicU64,
    cache: Option<Cache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the cache's size: its entries are claims of live tokens.
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("keys", &self.keys.load().keys)
            .field("cached", &self.cache.as_ref().map_or(0, Cache::len))
            .finish()
    }
}

fn b64(segment: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    // The base64 engine enforces no padding, the URL-safe alphabet, no whitespace and
    // canonical trailing bits (J20).
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| VerifyError::Malformed(what))
}

fn string(v: Option<Value<'_>>, name: &'static str) -> Result<Option<String>, VerifyError> {
    match v {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.into_owned())),
        Some(_) => Err(VerifyError::InvalidClaim(name)),
    }
}

fn date(v: Option<Value<'_>>, name: &'static str) -> Result<Option<u64>, VerifyError> {
    v.map(|v| v.as_date().ok_or(VerifyError::InvalidClaim(name))).transpose()
}

impl Verifier {
    pub fn new(config: VerifierConfig, keys: KeySet) -> Self {
        Self::with_cache_capacity(config, keys, DEFAULT_CACHE_CAPACITY)
    }

    /// Like [`Verifier::new`] with a bound on cached verifications; 0 disables the cache.
    pub fn with_cache_capacity(mut config: VerifierConfig, keys: KeySet, capacity: usize) -> Self {
        config.algorithms.retain(|&a| keyset::is_supported(a));
        Self {
            config,
            keys: ArcSwap::from_pointee(Snapshot { generation: 0, keys }),
            generation: AtomicU64::new(0),
            cache: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies `token` for a service that accepts any of `audiences`, at unix time `now`.
    pub fn verify(&self, token: &str, audiences: &[String], now: u64) -> Result<VerifiedClaims, VerifyError> {
        if token.len() > self.config.max_token_bytes {
            return Err(VerifyError::TooLarge);
        }
        let Some(cache) = &self.cache else {
            return self.verify_uncached(token, audiences, now);
        };
        let snap = self.keys.load();
        let digest = Cache::digest(token, audiences);
        if let Lookup::Hit(claims) = cache.get(&digest, snap.generation, &snap.keys) {
            self.check_times(claims.0.exp, claims.0.nbf, claims.0.iat, now)?;
            return Ok(claims);
        }
        let (claims, key) = self.verify_with(token, audiences, now, &snap.keys)?;
        let leeway = self.config.leeway_secs;
        cache.insert(digest, claims.clone(), key, snap.generation, |c| now > c.0.exp.saturating_add(leeway));
        Ok(claims)
    }

    /// Full verification, without reading or filling the cache (benchmarks, one-off checks).
    pub fn verify_uncached(&self, token: &str, audiences: &[String], now: u64) -> Result<VerifiedClaims, VerifyError> {
        let snap = self.keys.load();
        self.verify_with(token, audiences, now, &snap.keys).map(|(c, _)| c)
    }

    /// Swaps the key set atomically. Cached verifications by keys that are gone (or whose
    /// material changed) are dropped: a removed key revokes its tokens at once.
    pub fn replace_keys(&self, keys: KeySet) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        self.keys.store(Arc::new(Snapshot { generation, keys: keys.clone() }));
        if let Some(cache) = &self.cache {
            cache.retain_keys(&keys, generation);
        }
    }

    pub fn has_key(&self, kid: &str) -> bool {
        self.keys.load().keys.contains_kid(kid)
    }

    /// The key set in use.
    pub fn key_set(&self) -> KeySet {
        self.keys.load().keys.clone()
    }

    /// Number of cached verifications.
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }

    fn check_times(&self, exp: u64, nbf: Option<u64>, iat: u64, now: u64) -> Result<(), VerifyError> {
        let leeway = self.config.leeway_secs;
        if now > exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(VerifyError::NotYetValid);
        }
        if iat > now.saturating_add(leeway) {
            return Err(VerifyError::IssuedInFuture);
        }
        Ok(())
    }

    fn verify_with(
        &self,
        token: &str,
        audiences: &[String],
        now: u64,
        keys: &KeySet,
    ) -> Result<(VerifiedClaims, Arc<VerifyingKey>), VerifyError> {
        if token.len() > self.config.max_token_bytes {
            return Err(VerifyError::TooLarge);
        }
        // Structure: exactly three segments; five is a JWE (J23).
        let dots = token.bytes().filter(|&b| b == b'.').count();
        if dots == 4 {
            return Err(VerifyError::Nested);
        }
        let mut parts = token.splitn(3, '.');
        let (Some(h64), Some(p64), Some(s64), 2) = (parts.next(), parts.next(), parts.next(), dots) else {
            return Err(VerifyError::Malformed("not three dot-separated segments"));
        };
        let header_bytes = b64(h64, "header is not base64url")?;
        let payload = b64(p64, "payload is not base64url")?;
        let signature = b64(s64, "signature is not base64url")?;

        // Header: a JSON object, no `crit`, not nested, an allowed `alg`.
        let header = parse::header(&header_bytes).ok_or(VerifyError::Malformed("header is not a JSON object"))?;
        if header.crit {
            return Err(VerifyError::CritHeader);
        }
        if header.nested {
            return Err(VerifyError::Nested);
        }
        let alg = match header.alg {
            None => return Err(VerifyError::Malformed("header has no alg")),
            Some(v) => v.as_str().and_then(keyset::parse_alg).ok_or(VerifyError::Algorithm)?,
        };
        if !self.config.algorithms.contains(&alg) {
            return Err(VerifyError::Algorithm);
        }
        if keys.is_empty() {
            return Err(VerifyError::NoKeys);
        }

        // Key: by `kid`, from the configured set only (J6, J7, J9).
        let signing_input = token.get(..h64.len() + 1 + p64.len()).unwrap_or_default().as_bytes();
        let key = match header.kid {
            Some(Value::Str(kid)) => {
                let key = keys.get(&kid).ok_or(VerifyError::UnknownKey)?;
                if !key.accepts(alg) {
                    return Err(VerifyError::Algorithm);
                }
                if !key.verify(alg, signing_input, &signature) {
                    return Err(VerifyError::BadSignature);
                }
                key
            }
            Some(_) => return Err(VerifyError::Malformed("kid is not a string")),
            None if self.config.missing_kid == MissingKid::Reject => return Err(VerifyError::MissingKid),
            None => {
                let mut candidates = keys.keys.iter().filter(|k| k.accepts(alg)).peekable();
                if candidates.peek().is_none() {
                    return Err(VerifyError::UnknownKey);
                }
                candidates.find(|k| k.verify(alg, signing_input, &signature)).ok_or(VerifyError::BadSignature)?
            }
        };

        let claims = self.check_claims(&payload, audiences, now, &key.kid)?;
        Ok((claims, Arc::clone(key)))
    }

    fn check_claims(
        &self,
        payload: &[u8],
        audiences: &[String],
        now: u64,
        kid: &str,
    ) -> Result<VerifiedClaims, VerifyError> {
        let c = parse::claims(payload).ok_or(VerifyError::Malformed("claims are not a JSON object"))?;

        let iss = string(c.iss, "iss")?.ok_or(VerifyError::MissingClaim("iss"))?;
        if !self.config.issuers.contains(&iss) {
            return Err(VerifyError::Issuer);
        }
        let exp = date(c.exp, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        let nbf = date(c.nbf, "nbf")?;
        let iat = date(c.iat, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
        self.check_times(exp, nbf, iat, now)?;
        let lifetime = exp.checked_sub(iat).ok_or(VerifyError::InvalidClaim("iat"))?;
        if lifetime > self.config.max_lifetime_secs {
            return Err(VerifyError::LifetimeTooLong);
        }

        // Exact string comparison: the caller lists every accepted form (J15, J16).
        let token_auds =
            c.aud.ok_or(VerifyError::MissingClaim("aud"))?.into_strs().ok_or(VerifyError::InvalidClaim("aud"))?;
        let matched =
            token_auds.iter().find(|a| audiences.iter().any(|want| want == a.as_ref())).ok_or(VerifyError::Audience)?;
        let aud = matched.to_string();

        let sub = string(c.sub, "sub")?.ok_or(VerifyError::MissingClaim("sub"))?;
        if sub.is_empty() || sub.len() > MAX_SUB_BYTES {
            return Err(VerifyError::InvalidClaim("sub"));
        }
        let email = string(c.email, "email")?;
        let email_verified = match c.email_verified {
            None => false,
            Some(v) => v.as_bool().ok_or(VerifyError::InvalidClaim("email_verified"))?,
        };
        let hd = string(c.hd, "hd")?;
        let azp = string(c.azp, "azp")?;
        let principal = self.config.principals.principal(&iss, &sub, email.as_deref(), email_verified);

        Ok(VerifiedClaims(Arc::new(Claims {
            iss,
            sub,
            aud,
            audiences: token_auds.into_iter().map(|a| a.into_owned()).collect(),
            email,
            email_verified,
            hd,
            azp,
            exp,
            iat,
            nbf,
            kid: kid.to_owned(),
            principal,
        })))
    }
}
