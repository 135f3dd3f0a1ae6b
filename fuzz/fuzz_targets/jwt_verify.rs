//! Fuzzes the ID-token verifier with untrusted bytes, on a fixed key set and clock.
//!
//! Two modes, chosen by the first byte:
//! * anything else: the input is the token. The key is generated per process, so no input can
//!   carry a valid signature: every one must be refused, without panics.
//! * `!`: the rest is `HEADER_JSON \n PAYLOAD_JSON`, signed with the trusted key (a literal
//!   `KID` in the header becomes its kid). This reaches the claim checks behind the signature;
//!   whatever verifies must satisfy the rules, and the cached and uncached paths must agree.
//!
//! Run (from `fuzz/`): `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none jwt_verify corpus/jwt_verify seeds/jwt_verify -- -max_total_time=150`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moat_crypto::{KeyRing, Verifier, VerifierConfig};

const NOW: u64 = 1_700_000_000;
const AUD: &str = "https://svc-abc123-uc.a.run.app";

struct Fixture {
    ring: KeyRing,
    verifier: Verifier,
    audiences: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ring = KeyRing::in_memory(NOW).expect("key generation");
        let verifier = Verifier::with_cache_capacity(VerifierConfig::google(), ring.key_set(), 64);
        Fixture { ring, verifier, audiences: vec![AUD.to_owned(), "other".to_owned()] }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Some(rest) = data.strip_prefix(b"!") {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        let (header, payload) = text.split_once('\n').unwrap_or((text, ""));
        let header = header.replace("KID", f.ring.current_kid());
        let Some(token) = f.ring.danger_sign_arbitrary(header.as_bytes(), payload.as_bytes()) else { return };
        let uncached = f.verifier.verify_uncached(&token, &f.audiences, NOW);
        let cached = f.verifier.verify(&token, &f.audiences, NOW);
        let again = f.verifier.verify(&token, &f.audiences, NOW);
        match (&uncached, &cached, &again) {
            (Ok(a), Ok(b), Ok(c)) => {
                for claims in [a, b, c] {
                    assert!(["https://accounts.google.com", "accounts.google.com"].contains(&claims.issuer()));
                    assert!(f.audiences.iter().any(|x| x == claims.audience()));
                    assert!(NOW <= claims.expires_at() + 60);
                    assert!(claims.issued_at() <= NOW + 60);
                    assert!(claims.expires_at() - claims.issued_at() <= 3600);
                    assert!(!claims.subject().is_empty());
                    if claims.principal().is_some() {
                        assert!(claims.email_verified() && claims.email().is_some());
                    }
                }
                assert_eq!(a.subject_id(), c.subject_id());
            }
            (Err(a), Err(b), Err(c)) => {
                assert_eq!(a, b);
                assert_eq!(a, c);
                assert!(!a.code().is_empty());
            }
            _ => panic!("cached and uncached verification disagree: {uncached:?} / {cached:?} / {again:?}"),
        }
        return;
    }
    let Ok(token) = std::str::from_utf8(data) else { return };
    let r = f.verifier.verify(token, &f.audiences, NOW);
    assert!(r.is_err(), "a token nobody could sign verified");
    assert_eq!(f.verifier.verify_uncached(token, &f.audiences, NOW).err(), r.err());
    let _ = moat_crypto::strip_signature(token);
});
