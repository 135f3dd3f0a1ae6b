//! Fuzzes JWKS loading with untrusted bytes (a remote JWKS endpoint's body). Loading returns a
//! key set or an error, without panics; a key set that loads is non-empty, bounded, with
//! unique kids, and usable by a verifier.
//!
//! Run (from `fuzz/`): `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none jwks_parse corpus/jwks_parse seeds/jwks_parse -- -max_total_time=150`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_crypto::verify::MAX_JWKS_KEYS;
use moat_crypto::{KeySet, Verifier, VerifierConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(keys) = KeySet::from_jwks_json(data) else { return };
    assert!(!keys.is_empty() && keys.len() <= MAX_JWKS_KEYS);
    let kids: Vec<&str> = keys.kids().collect();
    let mut unique = kids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), kids.len(), "duplicate kids loaded");
    let verifier = Verifier::new(VerifierConfig::google(), keys.clone());
    for kid in &kids {
        assert!(verifier.has_key(kid));
    }
    let _ = verifier.verify("eyJhbGciOiJSUzI1NiJ9.e30.AAAA", &["a".to_owned()], 0);
});
