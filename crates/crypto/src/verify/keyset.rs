//! The verifier's view of a JWKS: public keys parsed once at load, so a weak, mislabelled or
//! malformed key is refused before any token meets it (J25).

use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// Largest JWKS document accepted (Google's has 2–3 keys in about 1.5 KB).
pub const MAX_JWKS_BYTES: usize = 128 * 1024;
/// Most keys in one JWKS.
pub const MAX_JWKS_KEYS: usize = 64;
/// Longest `kid` accepted in a JWKS; a token `kid` longer than this can match no key.
pub const MAX_KID_BYTES: usize = 256;
/// RSA moduli below this are refused (J25).
pub const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// A JWKS document that cannot be used. The whole document is refused: a verifier keeps its
/// last good keys rather than a partial set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS is larger than {max} bytes: serve only the signing keys")]
    TooLarge { max: usize },
    #[error("the JWKS is not valid JSON ({0}): serve a `{{\"keys\": [...]}}` document")]
    Json(String),
    #[error("the JWKS has no keys: publish at least one signing key")]
    Empty,
    #[error("the JWKS has more than {max} keys: prune retired keys")]
    TooManyKeys { max: usize },
    #[error("key #{index} of the JWKS has no `kid` or an empty one: give every key a key id")]
    MissingKid { index: usize },
    #[error("key #{index} of the JWKS has a `kid` longer than {max} bytes: use a shorter key id")]
    KidTooLong { index: usize, max: usize },
    #[error("two keys of the JWKS share the `kid` `{0}`: key ids must be unique")]
    DuplicateKid(String),
    #[error("key `{kid}` has key type `{kty}`: only `RSA` and `EC` signing keys are supported")]
    UnsupportedKeyType { kid: String, kty: String },
    #[error("key `{kid}` is not a signing key (`use` or `key_ops`): publish only `\"use\": \"sig\"` keys")]
    NotForSigning { kid: String },
    #[error("key `{kid}` declares algorithm `{alg}`: use RS256/384/512, PS256/384/512, ES256 or ES384")]
    UnsupportedAlgorithm { kid: String, alg: String },
    #[error("key `{kid}` declares algorithm `{alg}`, which does not fit its key type: fix `alg` or `kty`")]
    AlgorithmMismatch { kid: String, alg: String },
    #[error("key `{kid}` has a missing or badly encoded `{field}`: use unpadded base64url")]
    BadEncoding { kid: String, field: &'static str },
    #[error("key `{kid}` is a {bits}-bit RSA key: use at least {MIN_RSA_BITS} bits")]
    WeakKey { kid: String, bits: usize },
    #[error("key `{kid}` is not a valid public key ({reason}): regenerate it")]
    InvalidKey { kid: String, reason: &'static str },
    #[error("key `{kid}` includes private key material: publish only the public key")]
    PrivateKey { kid: String },
}

/// One public key, ready to verify.
pub(crate) struct VerifyingKey {
    pub(crate) kid: Box<str>,
    /// The JWK's `alg`, when it declares one: the token must then use exactly that.
    declared: Option<Algorithm>,
    /// Raw key material, to tell whether a key under the same `kid` changed.
    material: Box<[u8]>,
    /// One parsed key per algorithm the key may verify.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyingKey {
    /// Whether a token signed with `alg` may be checked against this key (J5: a declared
    /// `alg` must match exactly; otherwise the key family decides).
    pub(crate) fn accepts(&self, alg: Algorithm) -> bool {
        match self.declared {
            Some(d) => d == alg,
            None => self.parsed.iter().any(|(a, _)| *a == alg),
        }
    }

    pub(crate) fn verify(&self, alg: Algorithm, msg: &[u8], signature: &[u8]) -> bool {
        self.accepts(alg)
            && self.parsed.iter().find(|(a, _)| *a == alg).is_some_and(|(_, k)| k.verify_sig(msg, signature).is_ok())
    }

    pub(crate) fn same_key(&self, other: &Self) -> bool {
        self.kid == other.kid && self.declared == other.declared && self.material == other.material
    }

    pub(crate) fn rsa(kid: &str, declared: Option<Algorithm>, n: &[u8], e: &[u8]) -> Result<Self, JwksError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_len(n);
        if bits < MIN_RSA_BITS {
            return Err(JwksError::WeakKey { kid: kid.into(), bits });
        }
        if bits > MAX_RSA_BITS {
            return Err(JwksError::InvalidKey { kid: kid.into(), reason: "modulus longer than 8192 bits" });
        }
        if e.is_empty() || e.len() > 4 {
            return Err(JwksError::InvalidKey { kid: kid.into(), reason: "bad exponent" });
        }
        let algs: &[Algorithm] = match declared {
            Some(a) => &[a],
            None => RSA_ALGS,
        };
        let comps = RsaPublicKeyComponents { n, e };
        let mut parsed = Vec::with_capacity(algs.len());
        for &a in algs {
            let Some(params) = rsa_params(a) else {
                return Err(JwksError::AlgorithmMismatch { kid: kid.into(), alg: format!("{a:?}") });
            };
            let key = comps
                .to_parsed_public_key(params)
                .map_err(|_| JwksError::InvalidKey { kid: kid.into(), reason: "rejected by aws-lc" })?;
            parsed.push((a, key));
        }
        let mut material = Vec::with_capacity(n.len() + e.len() + 1);
        material.extend_from_slice(n);
        material.push(0);
        material.extend_from_slice(e);
        Ok(Self { kid: kid.into(), declared, material: material.into(), parsed })
    }

    fn ec(kid: &str, declared: Option<Algorithm>, curve_alg: Algorithm, point: Vec<u8>) -> Result<Self, JwksError> {
        if declared.is_some_and(|d| d != curve_alg) {
            return Err(JwksError::AlgorithmMismatch { kid: kid.into(), alg: format!("{declared:?}") });
        }
        let params: &'static dyn sig::VerificationAlgorithm = match curve_alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            _ => &sig::ECDSA_P384_SHA384_FIXED,
        };
        let key = ParsedPublicKey::new(params, &point)
            .map_err(|_| JwksError::InvalidKey { kid: kid.into(), reason: "point not on the curve" })?;
        Ok(Self { kid: kid.into(), declared, material: point.into(), parsed: vec![(curve_alg, key)] })
    }
}

const RSA_ALGS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

fn rsa_params(a: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match a {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// The asymmetric algorithms moat verifies. HS* and `none` are not in this list on purpose:
/// no configuration can turn them on (J1–J3).
pub(crate) fn parse_alg(s: &str) -> Option<Algorithm> {
    Some(match s {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return None,
    })
}

/// Whether moat can verify `a` at all: the asymmetric algorithms of [`parse_alg`].
pub(crate) fn is_supported(a: Algorithm) -> bool {
    RSA_ALGS.contains(&a) || matches!(a, Algorithm::ES256 | Algorithm::ES384)
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

fn bit_len(b: &[u8]) -> usize {
    match b.first() {
        None => 0,
        Some(&first) => (b.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// The public keys a verifier trusts. Cheap to clone.
#[derive(Clone, Default)]
pub struct KeySet {
    pub(crate) keys: Arc<[Arc<VerifyingKey>]>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.iter().map(|k| &*k.kid).collect::<Vec<_>>()).finish()
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    // Private or symmetric material: refused.
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

/// Bounds a value from a remote document before it goes into an error message.
fn short(s: &str) -> String {
    s.chars().take(32).collect()
}

fn b64(kid: &str, field: &'static str, v: Option<&String>) -> Result<Vec<u8>, JwksError> {
    v.and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()).ok_or_else(|| JwksError::BadEncoding { kid: kid.into(), field })
}

impl KeySet {
    /// A set with no keys: every verification fails with `NoKeys` (fail closed, J30).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses a JWKS document (`{"keys": [...]}`). Keys that are not for verifying signatures
    /// here (`use: enc` or `key_ops` without `verify`, an unknown `kty`, an unsupported `alg`
    /// such as Keycloak's `RSA-OAEP` encryption key) are skipped; when no key is left, the first
    /// such reason is the error. A signing key that is weak, mislabelled, carries private
    /// material or repeats a `kid` refuses the whole document: that is a broken issuer, not a
    /// key meant for something else.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge { max: MAX_JWKS_BYTES });
        }
        let raw: RawJwks = serde_json::from_slice(bytes).map_err(|e| JwksError::Json(e.to_string()))?;
        if raw.keys.is_empty() {
            return Err(JwksError::Empty);
        }
        if raw.keys.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys { max: MAX_JWKS_KEYS });
        }
        let mut keys: Vec<Arc<VerifyingKey>> = Vec::with_capacity(raw.keys.len());
        let mut first_skipped = None;
        for (index, jwk) in raw.keys.iter().enumerate() {
            let key = match parse_jwk(index, jwk) {
                Ok(key) => key,
                Err(e) if e.is_other_purpose() => {
                    first_skipped.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(JwksError::DuplicateKid(key.kid.into()));
            }
            keys.push(Arc::new(key));
        }
        match first_skipped {
            Some(e) if keys.is_empty() => Err(e),
            _ => Ok(Self { keys: keys.into() }),
        }
    }

    pub(crate) fn from_arcs(keys: Vec<Arc<VerifyingKey>>) -> Self {
        Self { keys: keys.into() }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.get(kid).is_some()
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| &*k.kid)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.iter().find(|k| &*k.kid == kid)
    }
}

impl JwksError {
    /// A key meant for something other than verifying these signatures: skipped, not fatal.
    fn is_other_purpose(&self) -> bool {
        matches!(self, Self::NotForSigning { .. } | Self::UnsupportedKeyType { .. } | Self::UnsupportedAlgorithm { .. })
    }
}

fn parse_jwk(index: usize, jwk: &RawJwk) -> Result<VerifyingKey, JwksError> {
    let kid = match jwk.kid.as_deref() {
        None | Some("") => return Err(JwksError::MissingKid { index }),
        Some(k) if k.len() > MAX_KID_BYTES => return Err(JwksError::KidTooLong { index, max: MAX_KID_BYTES }),
        Some(k) => k,
    };
    if jwk.d.is_some() || jwk.p.is_some() || jwk.k.is_some() {
        return Err(JwksError::PrivateKey { kid: kid.into() });
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig")
        || jwk.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Err(JwksError::NotForSigning { kid: kid.into() });
    }
    let declared = match jwk.alg.as_deref() {
        None => None,
        Some(a) => {
            Some(parse_alg(a).ok_or_else(|| JwksError::UnsupportedAlgorithm { kid: kid.into(), alg: short(a) })?)
        }
    };
    match jwk.kty.as_deref() {
        Some("RSA") => {
            if declared.is_some_and(|a| !RSA_ALGS.contains(&a)) {
                return Err(JwksError::AlgorithmMismatch { kid: kid.into(), alg: jwk.alg.clone().unwrap_or_default() });
            }
            let n = b64(kid, "n", jwk.n.as_ref())?;
            let e = b64(kid, "e", jwk.e.as_ref())?;
            VerifyingKey::rsa(kid, declared, &n, &e)
        }
        Some("EC") => {
            let (curve_alg, len) = match jwk.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                _ => return Err(JwksError::InvalidKey { kid: kid.into(), reason: "curve must be P-256 or P-384" }),
            };
            let x = b64(kid, "x", jwk.x.as_ref())?;
            let y = b64(kid, "y", jwk.y.as_ref())?;
            if x.len() != len || y.len() != len {
                return Err(JwksError::InvalidKey {
                    kid: kid.into(),
                    reason: "coordinate length does not fit the curve",
                });
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            VerifyingKey::ec(kid, declared, curve_alg, point)
        }
        other => Err(JwksError::UnsupportedKeyType { kid: kid.into(), kty: short(other.unwrap_or("")) }),
    }
}
