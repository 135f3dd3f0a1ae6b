//! moat-crypto owns the identity cryptography: signing keys and their rotation, the issuer of
//! Google-shaped ID tokens, the verifier the front door uses, and opaque access tokens.
//!
//! It is synchronous and does no network I/O (the key store reads and writes files): the
//! server crate fetches remote JWKS and hands the bytes in, and every time is a parameter, so
//! every verification rule is tested with an injected clock. One crypto stack: aws-lc-rs.
//!
//! Key design decision: the verifier implements JWS verification itself on aws-lc-rs
//! primitives instead of wrapping `jsonwebtoken::decode`, so the strictness rules of
//! spec/peers-crates-lessons.md §C.4 (J1–J32) hold by construction, and [`VerifiedClaims`] can
//! only be built by [`Verifier`].
//!
//! API notes for the server (additions to the agreed API; nothing was renamed or removed):
//! `Verifier::with_cache_capacity` (0 disables the cache), `Verifier::verify_uncached`,
//! `Verifier::key_set`, `KeySet::empty`, `KeyRing::kids`, `KeyRing::danger_sign_arbitrary` (feature `testing`),
//! `VerifiedClaims::{audiences, hosted_domain, authorized_party, not_before, key_id}`,
//! `RefreshGate::consecutive_failures`. `KeySet::from_jwks_json` refuses a document with no
//! keys (`JwksError::Empty`) so a refresh keeps the last good set, and skips keys meant for
//! something else (`use: enc`, unknown `kty`/`alg`). `replace_keys` revokes cached
//! verifications made with keys that left the set. Rotations pre-publish
//! (`KeyRing::rotate_prepublished`, `next_key`, `promote_due`, [`PREPUBLISH_SECS`]) and run under
//! the store's file lock. Principals follow [`PrincipalRule`] (Google's for moat's own issuer,
//! issuer-scoped [`federated_principal`] for others).

pub mod access;
pub mod account;
pub mod bearer;
pub mod issue;
pub mod keys;
pub mod verify;

pub use access::{AccessGrant, AccessTokens};
pub use account::{Account, AccountKind};
pub use bearer::{Credential, HeaderError, select_credential, strip_signature};
pub use issue::{ComputeEngineInfo, IssueError, TokenFormat, sign_id_token};
pub use keys::{KeyError, KeyRing, MAX_TOKEN_LIFETIME_SECS, PREPUBLISH_SECS, prepublish_delay};
pub use verify::{
    JwksError, KeySet, MissingKid, PrincipalRule, RefreshGate, VerifiedClaims, Verifier, VerifierConfig, VerifyError,
    federated_principal,
};
