//! Verification throughput on one thread, side by side with `jsonwebtoken::decode`.
//!
//! `cargo bench -p moat-crypto --bench verify` runs the full version; without `--bench` (as in
//! `cargo test --benches`) it runs a few iterations only, to check that it still works.
//! Targets: cached ≥ 1,000,000 verifications/s, cold within 1.2× of the raw RSA verification cost
//! (the "floor" row). The cache key is a SHA-256 of the token and the audiences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "benchmark")]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use moat_crypto::verify::GOOGLE_ISSUERS;
use moat_crypto::{Account, KeyRing, TokenFormat, Verifier, VerifierConfig, sign_id_token};
use serde::Deserialize;

const AUD: &str = "https://svc-abc123-uc.a.run.app";

/// The claims a Google ID token verifier reads, for `jsonwebtoken` to deserialize into.
#[derive(Deserialize)]
#[allow(dead_code, reason = "fields are read by deserialization only")]
struct GoogleClaims {
    iss: String,
    sub: String,
    aud: String,
    email: Option<String>,
    email_verified: Option<bool>,
    exp: u64,
    iat: u64,
}

struct Sizes {
    rounds: usize,
    cold: usize,
    cached: usize,
    fresh: usize,
}

/// The median of a round's samples.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Best of `rounds` runs of `iters` calls of `f`, as operations per second.
fn ops_per_sec(rounds: usize, iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..iters {
            f(i);
        }
        best = best.min(start.elapsed());
    }
    iters as f64 / best.as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full {
        Sizes { rounds: 7, cold: 5_000, cached: 1_000_000, fresh: 2_000 }
    } else {
        Sizes { rounds: 1, cold: 20, cached: 1_000, fresh: 20 }
    };
    // jsonwebtoken reads the system clock, so the tokens are minted for it too.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let ring = KeyRing::in_memory(now).unwrap();
    let audiences = vec![AUD.to_owned()];
    let sa = Account::service_account("runtime-sa@proj.iam.gserviceaccount.com");
    let token = sign_id_token(&ring, &sa, AUD, now, TokenFormat::Standard, None).unwrap();
    let fresh: Vec<String> = (0..sizes.fresh)
        .map(|i| {
            let a = Account::service_account(&format!("sa-{i}@proj.iam.gserviceaccount.com"));
            sign_id_token(&ring, &a, AUD, now, TokenFormat::Standard, None).unwrap()
        })
        .collect();

    let verifier = Verifier::new(VerifierConfig::google(), ring.key_set());
    let jwks: JwkSet = serde_json::from_str(&ring.jwks_json()).unwrap();
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&GOOGLE_ISSUERS);
    validation.set_audience(&[AUD]);
    validation.leeway = 60;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let jwt = |t: &str| jsonwebtoken::decode::<GoogleClaims>(t, &key, &validation);

    // The floor: one RSA PKCS#1 v1.5 SHA-256 verification of the token's signing input with
    // aws-lc-rs, the key already parsed, no base64 and no JSON. "Cold within 1.2x of the raw
    // crypto cost" is measured against this.
    let jwk = &jwks.keys[0];
    let rsa_params = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => p,
        other => panic!("expected an RSA key, got {other:?}"),
    };
    let n = URL_SAFE_NO_PAD.decode(&rsa_params.n).unwrap();
    let e = URL_SAFE_NO_PAD.decode(&rsa_params.e).unwrap();
    let public = RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
    let (signing_input, sig_b64) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
    public.verify(&RSA_PKCS1_2048_8192_SHA256, signing_input.as_bytes(), &signature).unwrap();

    // Both accept every token before anything is timed.
    assert!(verifier.verify_uncached(&token, &audiences, now).is_ok());
    assert!(jwt(&token).is_ok());
    assert!(fresh.iter().all(|t| jwt(t).is_ok()));

    verifier.verify(&token, &audiences, now).unwrap();
    // Every case is measured once per round, the rounds interleaved, and the median reported:
    // the ratios compare figures taken under the same machine conditions (a busy neighbour
    // slows every case of a round alike, not one case of the whole run).
    let mut samples: [Vec<f64>; 7] = Default::default();
    for _ in 0..sizes.rounds {
        let [cold, raw, jwt_cold, cached, jwt_same, fresh_ours, jwt_fresh] = &mut samples;
        cold.push(ops_per_sec(1, sizes.cold, |_| {
            black_box(verifier.verify_uncached(black_box(&token), &audiences, now)).unwrap();
        }));
        raw.push(ops_per_sec(1, sizes.cold, |_| {
            black_box(public.verify(&RSA_PKCS1_2048_8192_SHA256, black_box(signing_input.as_bytes()), &signature))
                .unwrap();
        }));
        jwt_cold.push(ops_per_sec(1, sizes.cold, |_| {
            black_box(jwt(black_box(&token))).unwrap();
        }));
        cached.push(ops_per_sec(1, sizes.cached, |_| {
            black_box(verifier.verify(black_box(&token), &audiences, now)).unwrap();
        }));
        jwt_same.push(ops_per_sec(1, sizes.cold, |_| {
            black_box(jwt(black_box(&token))).unwrap();
        }));
        // Fresh tokens: a new verifier per round so every call misses the cache.
        let v = Verifier::new(VerifierConfig::google(), ring.key_set());
        fresh_ours.push(ops_per_sec(1, fresh.len(), |i| {
            black_box(v.verify(black_box(&fresh[i]), &audiences, now)).unwrap();
        }));
        jwt_fresh.push(ops_per_sec(1, fresh.len(), |i| {
            black_box(jwt(black_box(&fresh[i]))).unwrap();
        }));
    }
    let [cold, raw, jwt_cold, cached, jwt_same, rounds_fresh, jwt_fresh] = samples.map(median);

    println!(
        "token: {} bytes, RSA-2048, RS256, one thread, median of {} interleaved rounds{}",
        token.len(),
        sizes.rounds,
        if full { "" } else { " (quick run)" }
    );
    println!("{:<40} {:>14} {:>16} {:>12}", "case", "moat verif/s", "jsonwebtoken/s", "moat/jwt");
    for (name, ours, theirs) in [
        ("(a) cold, same token, cache bypassed", cold, jwt_cold),
        ("(b) cached, same token", cached, jwt_same),
        ("(c) fresh token each time (cache on)", rounds_fresh, jwt_fresh),
    ] {
        println!("{name:<40} {ours:>14.0} {theirs:>16.0} {:>11.2}x", ours / theirs);
    }
    println!(
        "{:<40} {raw:>14.0}   (raw aws-lc-rs RSA verify of the signing input; moat cold costs {:.2}x it)",
        "floor: raw crypto",
        raw / cold
    );
    if full {
        println!(
            "targets: cached >= 1,000,000/s: {}; cold within 1.2x of the raw crypto cost: {}; cold vs jsonwebtoken: {:.2}x",
            if cached >= 1_000_000.0 { "met" } else { "MISSED" },
            if cold * 1.2 >= raw { "met" } else { "MISSED" },
            cold / jwt_cold,
        );
    }
}
