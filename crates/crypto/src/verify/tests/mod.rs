//! The verifier against spec/peers-crates-lessons.md §C.4 (J1–J32), one named test per case.
//! Fixed clock, keys generated here with `KeyRing::in_memory`; tokens for algorithms the issuer
//! never uses (HS, ES, `none`, RS384…) are built by hand with base64 and aws-lc-rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use moat_policy::Principal;
use serde_json::{Value as Json, json};

use super::*;
use crate::keys::KeyRing;

const NOW: u64 = 1_700_000_000;
const AUD: &str = "https://svc-abc123-uc.a.run.app";
const SUB: &str = "117605711420724299222";
const EMAIL: &str = "runtime-sa@proj.iam.gserviceaccount.com";

/// One key ring for the tests that do not rotate (RSA key generation is the slow part).
fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::in_memory(NOW).unwrap())
}

/// A second, untrusted issuer.
fn attacker() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::in_memory(NOW).unwrap())
}

fn auds() -> Vec<String> {
    vec![AUD.to_owned()]
}

fn verifier() -> Verifier {
    Verifier::new(VerifierConfig::google(), ring().key_set())
}

fn header() -> Json {
    json!({"alg": "RS256", "kid": ring().current_kid(), "typ": "JWT"})
}

fn claims() -> Json {
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUD,
        "azp": SUB,
        "sub": SUB,
        "email": EMAIL,
        "email_verified": true,
        "iat": NOW,
        "exp": NOW + 3600,
    })
}

/// `v` with `key` set to `val`, or removed when `val` is `None`.
fn with(mut v: Json, key: &str, val: Option<Json>) -> Json {
    let m = v.as_object_mut().unwrap();
    match val {
        Some(x) => m.insert(key.to_owned(), x),
        None => m.remove(key),
    };
    v
}

fn sign_raw(ring: &KeyRing, header: &str, payload: &str) -> String {
    ring.danger_sign_arbitrary(header.as_bytes(), payload.as_bytes()).unwrap()
}

fn sign(header: &Json, payload: &Json) -> String {
    sign_raw(ring(), &header.to_string(), &payload.to_string())
}

fn good() -> String {
    sign(&header(), &claims())
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A compact token with an arbitrary signature.
fn assemble(header: &Json, payload: &Json, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()), b64(signature))
}

/// Signs with the ring's RSA key under another algorithm.
fn sign_rsa(alg: &'static dyn sig::RsaEncoding, header: &Json, payload: &Json) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload.to_string().as_bytes()));
    let pair = ring().current_pair();
    let mut s = vec![0; pair.public_modulus_len()];
    pair.sign(alg, &rand::SystemRandom::new(), input.as_bytes(), &mut s).unwrap();
    format!("{input}.{}", b64(&s))
}

fn err(v: &Verifier, token: &str) -> VerifyError {
    v.verify_uncached(token, &auds(), NOW).expect_err("token must be rejected")
}

fn jwk_of(ring: &KeyRing) -> Json {
    let doc: Json = serde_json::from_str(&ring.jwks_json()).unwrap();
    doc["keys"][0].clone()
}

fn keyset(keys: &[Json]) -> KeySet {
    KeySet::from_jwks_json(json!({"keys": keys}).to_string().as_bytes()).unwrap()
}

#[test]
fn valid_token_verifies_with_and_without_cache() {
    let v = verifier();
    let t = good();
    let c = v.verify(&t, &auds(), NOW).unwrap();
    assert_eq!(c.issuer(), "https://accounts.google.com");
    assert_eq!(c.subject(), SUB);
    assert_eq!(c.audience(), AUD);
    assert_eq!(c.email(), Some(EMAIL));
    assert!(c.email_verified());
    assert_eq!((c.issued_at(), c.expires_at()), (NOW, NOW + 3600));
    assert_eq!(c.key_id(), ring().current_kid());
    assert_eq!(c.principal(), Some(Principal::ServiceAccount(EMAIL.into())));
    let facts = c.token_facts().unwrap();
    assert_eq!(facts.audiences, vec![AUD.to_owned()]);
    assert!(facts.email_verified);
    assert_eq!(v.verify(&t, &auds(), NOW).unwrap().subject(), SUB, "cached hit");
    assert_eq!(v.cached(), 1);
    assert!(v.verify_uncached(&t, &auds(), NOW).is_ok());
}

#[test]
fn j01_alg_none_rejected() {
    let v = verifier();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = json!({"alg": alg, "kid": ring().current_kid()});
        assert_eq!(err(&v, &assemble(&h, &claims(), b"")), VerifyError::Algorithm, "{alg}");
        let no_kid = json!({"alg": alg});
        assert_eq!(err(&v, &assemble(&no_kid, &claims(), b"")), VerifyError::Algorithm, "{alg} without kid");
    }
}

#[test]
fn j02_alg_none_with_signature_rejected() {
    let v = verifier();
    let h = json!({"alg": "none", "kid": ring().current_kid()});
    assert_eq!(err(&v, &assemble(&h, &claims(), &[7u8; 256])), VerifyError::Algorithm);
    // A real RS256 signature over a header that says `none` is still refused.
    let real = good();
    let sig = real.rsplit('.').next().unwrap();
    let t = format!("{}.{}.{sig}", b64(h.to_string().as_bytes()), b64(claims().to_string().as_bytes()));
    assert_eq!(err(&v, &t), VerifyError::Algorithm);
}

#[test]
fn j03_hs_rs_key_confusion_rejected() {
    // Even when the configuration lists HS256, HMAC can never verify.
    let mut cfg = VerifierConfig::google();
    cfg.algorithms.push(Algorithm::HS256);
    let v = Verifier::new(cfg, ring().key_set());
    assert_eq!(v.config().algorithms, vec![Algorithm::RS256]);
    let pair = ring().current_pair();
    let spki_der = pair.public_key().as_der().unwrap().as_ref().to_vec();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(&spki_der));
    let jwk_n = jwk_of(ring())["n"].as_str().unwrap().to_owned();
    let pkcs1 = pair.public_key().as_ref().to_vec();
    let secrets: [(&str, &[u8]); 4] =
        [("pem", pem.as_bytes()), ("spki der", &spki_der), ("pkcs1 der", &pkcs1), ("jwk n", jwk_n.as_bytes())];
    for (name, secret) in secrets {
        let h = json!({"alg": "HS256", "kid": ring().current_kid(), "typ": "JWT"});
        let input = format!("{}.{}", b64(h.to_string().as_bytes()), b64(claims().to_string().as_bytes()));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        let t = format!("{input}.{}", b64(tag.as_ref()));
        assert_eq!(err(&v, &t), VerifyError::Algorithm, "{name}");
    }
}

#[test]
fn j04_alg_outside_allow_list_rejected() {
    let v = verifier();
    let cases: [(&str, &'static dyn sig::RsaEncoding); 3] =
        [("RS384", &sig::RSA_PKCS1_SHA384), ("PS256", &sig::RSA_PSS_SHA256), ("RS512", &sig::RSA_PKCS1_SHA512)];
    for (alg, enc) in cases {
        // Correctly signed by the trusted key, but not an allowed algorithm.
        let t = sign_rsa(enc, &with(header(), "alg", Some(json!(alg))), &claims());
        assert_eq!(err(&v, &t), VerifyError::Algorithm, "{alg}");
    }
    for alg in ["HS512", "EdDSA", "ES256K", "RSA-OAEP", "", "rs256"] {
        let t = assemble(&with(header(), "alg", Some(json!(alg))), &claims(), &[1; 256]);
        assert_eq!(err(&v, &t), VerifyError::Algorithm, "{alg:?}");
    }
    let t = assemble(&with(header(), "alg", Some(json!(256))), &claims(), &[1; 256]);
    assert_eq!(err(&v, &t), VerifyError::Algorithm, "non-string alg");
    let t = assemble(&with(header(), "alg", None), &claims(), &[1; 256]);
    assert_eq!(err(&v, &t), VerifyError::Malformed("header has no alg"));
}

#[test]
fn j05_header_alg_must_match_jwk_alg() {
    let mut cfg = VerifierConfig::google();
    cfg.algorithms = vec![Algorithm::RS256, Algorithm::RS512];
    let t = sign_rsa(&sig::RSA_PKCS1_SHA512, &with(header(), "alg", Some(json!("RS512"))), &claims());
    // The published JWK says RS256: RS512 with the same key is refused.
    let v = Verifier::new(cfg.clone(), ring().key_set());
    assert_eq!(err(&v, &t), VerifyError::Algorithm);
    // Control: a JWK without `alg` lets the key family decide, and RS512 is then fine.
    let no_alg = with(jwk_of(ring()), "alg", None);
    let v = Verifier::new(cfg, keyset(&[no_alg]));
    assert!(v.verify_uncached(&t, &auds(), NOW).is_ok());
}

#[test]
fn j06_kid_injection_rejected() {
    let v = verifier();
    let long = "k".repeat(10 * 1024);
    for kid in ["../../dev/null", "' OR 1=1 --", "/etc/passwd", "", long.as_str()] {
        let t = sign(&with(header(), "kid", Some(json!(kid))), &claims());
        assert!(t.len() <= 16 * 1024);
        assert_eq!(err(&v, &t), VerifyError::UnknownKey, "{}", &kid[..kid.len().min(20)]);
    }
    for kid in [json!(123), json!(null), json!(["a"]), json!({"a": 1}), json!(true)] {
        let t = sign(&with(header(), "kid", Some(kid.clone())), &claims());
        assert_eq!(err(&v, &t), VerifyError::Malformed("kid is not a string"), "{kid}");
    }
}

/// J7 (library part). The gateway test (later issue) adds: no outbound request is made for a
/// `jku`/`x5u` URL while such a token is processed.
#[test]
fn j07_embedded_key_headers_ignored() {
    let v = verifier();
    let evil_jwk = jwk_of(attacker());
    let evil = json!({
        "alg": "RS256",
        "kid": attacker().current_kid(),
        "jwk": evil_jwk,
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    });
    let t = sign_raw(attacker(), &evil.to_string(), &claims().to_string());
    assert_eq!(err(&v, &t), VerifyError::UnknownKey);
    let t = sign_raw(
        attacker(),
        &with(evil.clone(), "kid", Some(json!(ring().current_kid()))).to_string(),
        &claims().to_string(),
    );
    assert_eq!(err(&v, &t), VerifyError::BadSignature);
    // The same headers on a token signed by the trusted key change nothing.
    let t = sign(&with(evil, "kid", Some(json!(ring().current_kid()))), &claims());
    assert!(v.verify_uncached(&t, &auds(), NOW).is_ok());
}

/// J8 (library part): the verifier reports the unknown key, the gate allows one refetch per
/// interval. The gateway test (later issue) adds the real JWKS endpoint and counts fetches.
#[test]
fn j08_unknown_kid_refetch_then_accept() {
    let mut issuer = KeyRing::in_memory(NOW).unwrap();
    let v = Verifier::new(VerifierConfig::google(), issuer.key_set());
    issuer.rotate(NOW + 10).unwrap();
    let t = sign_raw(&issuer, &json!({"alg": "RS256", "kid": issuer.current_kid()}).to_string(), &claims().to_string());
    let t0 = Instant::now();
    let mut gate = RefreshGate::new(Duration::from_secs(30), Duration::from_secs(3600));
    assert_eq!(v.verify(&t, &auds(), NOW).err(), Some(VerifyError::UnknownKey));
    assert!(gate.may_fetch(t0), "first unknown kid: one refetch");
    v.replace_keys(issuer.key_set());
    gate.record_success(t0);
    assert!(v.verify(&t, &auds(), NOW).is_ok());
    // A second unknown kid inside the window: refused without a refetch.
    let other = sign_raw(
        attacker(),
        &json!({"alg": "RS256", "kid": attacker().current_kid()}).to_string(),
        &claims().to_string(),
    );
    assert_eq!(v.verify(&other, &auds(), NOW).err(), Some(VerifyError::UnknownKey));
    assert!(!gate.may_fetch(t0 + Duration::from_secs(1)));
    assert!(!gate.may_fetch(t0 + Duration::from_secs(29)));
    assert!(gate.may_fetch(t0 + Duration::from_secs(30)));
}

#[test]
fn j09_missing_kid_policy() {
    let mut issuer = KeyRing::in_memory(NOW).unwrap();
    let old = sign_raw(&issuer, r#"{"alg":"RS256","typ":"JWT"}"#, &claims().to_string());
    issuer.rotate(NOW + 1).unwrap();
    let new = sign_raw(&issuer, r#"{"alg":"RS256"}"#, &claims().to_string());
    assert_eq!(issuer.key_set().len(), 2);

    let reject = Verifier::new(VerifierConfig::google(), issuer.key_set());
    assert_eq!(err(&reject, &old), VerifyError::MissingKid);
    assert_eq!(err(&reject, &new), VerifyError::MissingKid);

    let mut cfg = VerifierConfig::google();
    cfg.missing_kid = MissingKid::TryMatchingKeys;
    let try_all = Verifier::new(cfg, issuer.key_set());
    assert_eq!(try_all.verify_uncached(&old, &auds(), NOW).unwrap().key_id(), issuer.kids().next().unwrap());
    assert_eq!(try_all.verify_uncached(&new, &auds(), NOW).unwrap().key_id(), issuer.current_kid());
    let forged = sign_raw(attacker(), r#"{"alg":"RS256"}"#, &claims().to_string());
    assert_eq!(err(&try_all, &forged), VerifyError::BadSignature);
}

#[test]
fn j10_expiry_skew_boundary() {
    let v = verifier();
    let at = |exp: u64| sign(&header(), &with(with(claims(), "exp", Some(json!(exp))), "iat", Some(json!(exp - 3600))));
    assert_eq!(err(&v, &at(NOW - 60 - 1)), VerifyError::Expired);
    assert!(v.verify_uncached(&at(NOW - 60), &auds(), NOW).is_ok());
    assert!(v.verify_uncached(&at(NOW - 60 + 1), &auds(), NOW).is_ok());
}

#[test]
fn j11_missing_or_malformed_exp() {
    let v = verifier();
    assert_eq!(err(&v, &sign(&header(), &with(claims(), "exp", None))), VerifyError::MissingClaim("exp"));
    for bad in [json!("9999999999"), json!(1e300), json!(-1), json!(1.5), json!(null), json!(u64::MAX), json!([NOW])] {
        let t = sign(&header(), &with(claims(), "exp", Some(bad.clone())));
        assert_eq!(err(&v, &t), VerifyError::InvalidClaim("exp"), "{bad}");
    }
    // Too large for any JSON number type: the claims are not valid JSON for us.
    let raw = claims().to_string().replace(&format!("\"exp\":{}", NOW + 3600), "\"exp\":1e400");
    assert_eq!(
        err(&v, &sign_raw(ring(), &header().to_string(), &raw)),
        VerifyError::Malformed("claims are not a JSON object")
    );
}

#[test]
fn j12_not_yet_valid() {
    let v = verifier();
    let nbf = |n: Json| sign(&header(), &with(claims(), "nbf", Some(n)));
    assert_eq!(err(&v, &nbf(json!(NOW + 60 + 1))), VerifyError::NotYetValid);
    assert!(v.verify_uncached(&nbf(json!(NOW + 60)), &auds(), NOW).is_ok());
    assert_eq!(err(&v, &nbf(json!("soon"))), VerifyError::InvalidClaim("nbf"));
}

#[test]
fn j13_issued_in_future() {
    let v = verifier();
    let iat = |i: u64| sign(&header(), &with(with(claims(), "iat", Some(json!(i))), "exp", Some(json!(i + 3600))));
    assert_eq!(err(&v, &iat(NOW + 3600)), VerifyError::IssuedInFuture);
    assert_eq!(err(&v, &iat(NOW + 61)), VerifyError::IssuedInFuture);
    assert!(v.verify_uncached(&iat(NOW + 60), &auds(), NOW).is_ok());
}

#[test]
fn j14_lifetime_too_long() {
    let v = verifier();
    let life = |secs: u64| sign(&header(), &with(claims(), "exp", Some(json!(NOW + secs))));
    assert_eq!(err(&v, &life(3601)), VerifyError::LifetimeTooLong);
    assert_eq!(err(&v, &life(86_400 * 365)), VerifyError::LifetimeTooLong);
    assert!(v.verify_uncached(&life(3600), &auds(), NOW).is_ok());
    assert_eq!(err(&v, &sign(&header(), &with(claims(), "iat", None))), VerifyError::MissingClaim("iat"));
    // exp before iat.
    let t = sign(&header(), &with(with(claims(), "iat", Some(json!(NOW))), "exp", Some(json!(NOW - 1))));
    assert_eq!(err(&v, &t), VerifyError::InvalidClaim("iat"));
}

#[test]
fn j15_aud_string_exact_match() {
    let v = verifier();
    let aud = |a: &str| sign(&header(), &with(claims(), "aud", Some(json!(a))));
    assert!(v.verify_uncached(&aud(AUD), &auds(), NOW).is_ok());
    for a in [
        &format!("{AUD}/")[..],
        "http://svc-abc123-uc.a.run.app",
        "https://SVC-abc123-uc.a.run.app",
        "https://svc-abc123-uc.a.run.app/path",
        "",
    ] {
        assert_eq!(err(&v, &aud(a)), VerifyError::Audience, "{a}");
    }
    // The caller lists both forms when it accepts both.
    let both = vec![AUD.to_owned(), format!("{AUD}/")];
    assert_eq!(v.verify_uncached(&aud(&format!("{AUD}/")), &both, NOW).unwrap().audience(), format!("{AUD}/"));
    assert_eq!(v.verify_uncached(&aud(AUD), &[], NOW).unwrap_err(), VerifyError::Audience);
}

#[test]
fn j16_aud_array() {
    let v = verifier();
    let aud = |a: Json| sign(&header(), &with(claims(), "aud", Some(a)));
    let c = v.verify_uncached(&aud(json!(["other", AUD])), &auds(), NOW).unwrap();
    assert_eq!(c.audience(), AUD);
    assert_eq!(c.audiences(), ["other".to_owned(), AUD.to_owned()]);
    assert_eq!(err(&v, &aud(json!(["other"]))), VerifyError::Audience);
    assert_eq!(err(&v, &aud(json!([]))), VerifyError::Audience);
    for bad in [json!([AUD, 1]), json!(7), json!({"a": AUD}), json!(null), json!([[AUD]])] {
        assert_eq!(err(&v, &aud(bad.clone())), VerifyError::InvalidClaim("aud"), "{bad}");
    }
}

#[test]
fn j17_missing_aud() {
    assert_eq!(err(&verifier(), &sign(&header(), &with(claims(), "aud", None))), VerifyError::MissingClaim("aud"));
}

#[test]
fn j18_issuer_forms() {
    let v = verifier();
    let iss = |i: Json| sign(&header(), &with(claims(), "iss", Some(i)));
    for ok in ["https://accounts.google.com", "accounts.google.com"] {
        assert!(v.verify_uncached(&iss(json!(ok)), &auds(), NOW).is_ok(), "{ok}");
    }
    for bad in [
        "https://accounts.google.com.evil.example",
        "https://accounts.google.com/",
        "http://accounts.google.com",
        "HTTPS://accounts.google.com",
        "https://evil.example/accounts.google.com",
        "",
    ] {
        assert_eq!(err(&v, &iss(json!(bad))), VerifyError::Issuer, "{bad}");
    }
    assert_eq!(err(&v, &iss(json!(5))), VerifyError::InvalidClaim("iss"));
    assert_eq!(err(&v, &sign(&header(), &with(claims(), "iss", None))), VerifyError::MissingClaim("iss"));
}

#[test]
fn j19_signature_tampering() {
    let v = verifier();
    let t = good();
    let (hp, s) = t.rsplit_once('.').unwrap();
    let (h, _) = hp.split_once('.').unwrap();
    let admin = with(claims(), "email", Some(json!("admin@proj.iam.gserviceaccount.com")));
    let other_sig = sign(&header(), &admin).rsplit_once('.').unwrap().1.to_owned();
    let cases = [
        ("payload changed, signature kept", format!("{h}.{}.{s}", b64(admin.to_string().as_bytes()))),
        ("signature of another token", format!("{hp}.{other_sig}")),
        ("truncated signature", format!("{hp}.{}", b64(&URL_SAFE_NO_PAD.decode(s).unwrap()[..253]))),
        ("empty signature", format!("{hp}.")),
        (
            "signature of the attacker",
            format!(
                "{hp}.{}",
                sign_raw(attacker(), &header().to_string(), &claims().to_string()).rsplit_once('.').unwrap().1
            ),
        ),
    ];
    for (name, bad) in cases {
        assert_eq!(err(&v, &bad), VerifyError::BadSignature, "{name}");
    }
    let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    sig[100] ^= 1;
    assert_eq!(err(&v, &format!("{hp}.{}", b64(&sig))), VerifyError::BadSignature, "flipped bit");
}

#[test]
fn j20_strict_base64url() {
    let v = verifier();
    let t = good();
    let (hp, s) = t.rsplit_once('.').unwrap();
    let (h, p) = hp.split_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    let std_sig = STANDARD_NO_PAD.encode(&sig);
    assert_ne!(std_sig, s, "the signature has a `-` or `_` to swap");
    // 256-byte signature: 342 chars, the last one carries 2 unused bits.
    let last = s.as_bytes()[s.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|&c| c == last).unwrap();
    let noncanonical = format!("{}{}", &s[..s.len() - 1], alphabet[idx | 1] as char);
    assert_ne!(noncanonical, s);
    let cases = [
        ("padding on the signature", format!("{hp}.{s}==")),
        ("padding on the header", format!("{h}=.{p}.{s}")),
        ("standard alphabet", format!("{hp}.{std_sig}")),
        ("non-canonical trailing bits", format!("{hp}.{noncanonical}")),
        ("space inside", format!("{h}.{} {}.{s}", &p[..10], &p[10..])),
        ("newline inside", format!("{h}.{p}.{}\n{}", &s[..50], &s[50..])),
        ("tab inside", format!("{h}\t.{p}.{s}")),
        ("trailing newline", format!("{t}\n")),
        ("leading space", format!(" {t}")),
        ("percent-encoded", format!("{h}.{p}.%41{s}")),
    ];
    for (name, bad) in cases {
        assert!(matches!(err(&v, &bad), VerifyError::Malformed(_)), "{name}");
    }
    for bad in ["", ".", "..", "a.b", "a.b.c.d", &format!("{t}.")] {
        assert!(matches!(err(&v, bad), VerifyError::Malformed(_)), "{bad:?}");
    }
}

#[test]
fn j21_json_edge_cases() {
    let v = verifier();
    let h = header().to_string();
    let body = claims().to_string();
    let inner = body.trim_start_matches('{').trim_end_matches('}');
    let dup_aud = format!("{{{inner},\"aud\":\"{AUD}\"}}");
    let dup_exp = format!("{{\"exp\":{},{inner}}}", NOW + 3600);
    let dup_alg = format!("{{\"alg\":\"RS256\",\"alg\":\"RS256\",\"kid\":\"{}\"}}", ring().current_kid());
    let deep = format!("{{{inner},\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    let cases = [
        ("duplicate aud", h.clone(), dup_aud),
        ("duplicate exp", h.clone(), dup_exp),
        ("duplicate alg", dup_alg, body.clone()),
        ("header is an array", "[]".into(), body.clone()),
        ("header is a string", "\"RS256\"".into(), body.clone()),
        ("header is null", "null".into(), body.clone()),
        ("payload is an array", h.clone(), format!("[{body}]")),
        ("payload is a number", h.clone(), "1".into()),
        ("payload has trailing data", h.clone(), format!("{body}{{}}")),
        ("payload not UTF-8 JSON", h.clone(), "\u{feff}{}".into()),
        ("deeply nested arrays", h.clone(), deep),
    ];
    for (name, hdr, payload) in cases {
        let t = sign_raw(ring(), &hdr, &payload);
        assert!(matches!(err(&v, &t), VerifyError::Malformed(_)), "{name}: {:?}", err(&v, &t));
    }
    // Size is checked before anything is parsed.
    let big = format!("{}.{}.{}", "a".repeat(1 << 20), "b", "c");
    assert_eq!(v.verify(&big, &auds(), NOW).err(), Some(VerifyError::TooLarge));
    let padded = sign(&header(), &with(claims(), "pad", Some(json!("x".repeat(16 * 1024)))));
    assert_eq!(v.verify(&padded, &auds(), NOW).err(), Some(VerifyError::TooLarge));
}

#[test]
fn j22_crit_header_rejected() {
    let v = verifier();
    for crit in [json!(["exp"]), json!([]), json!(["b64"])] {
        let h = with(with(header(), "crit", Some(crit.clone())), "exp", Some(json!(NOW)));
        assert_eq!(err(&v, &sign(&h, &claims())), VerifyError::CritHeader, "{crit}");
    }
}

#[test]
fn j23_nested_or_encrypted_rejected() {
    let v = verifier();
    let nested = with(header(), "cty", Some(json!("JWT")));
    assert_eq!(err(&v, &sign(&nested, &claims())), VerifyError::Nested);
    let enc = with(header(), "enc", Some(json!("A256GCM")));
    assert_eq!(err(&v, &sign(&enc, &claims())), VerifyError::Nested);
    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ";
    assert_eq!(err(&v, jwe), VerifyError::Nested);
}

#[test]
fn j24_ecdsa_edge_cases() {
    let pair = sig::EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    assert_eq!(point.len(), 65);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
    let mut cfg = VerifierConfig::google();
    cfg.algorithms = vec![Algorithm::ES256];
    let v = Verifier::new(cfg, keyset(&[jwk]));
    let h = json!({"alg": "ES256", "kid": "ec1"});
    let input = format!("{}.{}", b64(h.to_string().as_bytes()), b64(claims().to_string().as_bytes()));
    let good_sig = pair.sign(&rand::SystemRandom::new(), input.as_bytes()).unwrap();
    assert!(v.verify_uncached(&format!("{input}.{}", b64(good_sig.as_ref())), &auds(), NOW).is_ok(), "control");
    let der_pair =
        sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, pair.to_pkcs8v1().unwrap().as_ref())
            .unwrap();
    let der_sig = der_pair.sign(&rand::SystemRandom::new(), input.as_bytes()).unwrap();
    let mut n_sig = [0u8; 64];
    n_sig[..32].copy_from_slice(&hex_p256_n());
    n_sig[32..].copy_from_slice(&hex_p256_n());
    let cases: [(&str, Vec<u8>); 4] = [
        ("psychic signature r = s = 0", vec![0; 64]),
        ("DER instead of r||s", der_sig.as_ref().to_vec()),
        ("r = s = n", n_sig.to_vec()),
        ("too short", good_sig.as_ref()[..63].to_vec()),
    ];
    for (name, s) in cases {
        assert_eq!(err(&v, &format!("{input}.{}", b64(&s))), VerifyError::BadSignature, "{name}");
    }
}

fn hex_p256_n() -> [u8; 32] {
    let hex = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// A verifier for a trusted issuer other than Google, with its users' email domains.
fn federated(issuer: &str, email_domains: &[&str]) -> Verifier {
    let cfg = VerifierConfig {
        issuers: vec![issuer.to_owned()],
        principals: PrincipalRule::Federated { email_domains: email_domains.iter().map(|d| (*d).to_owned()).collect() },
        ..VerifierConfig::google()
    };
    Verifier::new(cfg, ring().key_set())
}

/// J27. moat's own issuer plays Google, which vouches for every email it verifies: a verified
/// email is `serviceAccount:` or `user:`, an unverified or missing one names nobody. Any other
/// issuer: never `serviceAccount:`, `user:` only for a verified email of one of its configured
/// domains; anything else ("an email claim of another domain") is not mapped to a
/// `user:`/`serviceAccount:` principal but to the issuer-scoped `principal://`.
#[test]
fn j27_identity_mapping() {
    let v = verifier();
    let c = |p: Json| v.verify_uncached(&sign(&header(), &p), &auds(), NOW);
    let unverified = c(with(claims(), "email_verified", Some(json!(false)))).unwrap();
    assert_eq!((unverified.principal(), unverified.token_facts()), (None, None));
    assert_eq!(c(with(claims(), "email_verified", None)).unwrap().principal(), None);
    assert_eq!(c(with(claims(), "email", None)).unwrap().principal(), None);
    assert_eq!(
        c(with(claims(), "email_verified", Some(json!("true")))).unwrap().principal(),
        Some(Principal::ServiceAccount(EMAIL.into()))
    );
    assert_eq!(
        c(with(claims(), "email", Some(json!("x@gserviceaccount.com.evil.example")))).unwrap().principal(),
        Some(Principal::User("x@gserviceaccount.com.evil.example".into()))
    );
    assert_eq!(
        c(with(claims(), "email_verified", Some(json!(1)))).unwrap_err(),
        VerifyError::InvalidClaim("email_verified")
    );
    assert_eq!(c(with(claims(), "email", Some(json!(["a@b.c"])))).unwrap_err(), VerifyError::InvalidClaim("email"));
    assert_eq!(c(with(claims(), "sub", None)).unwrap_err(), VerifyError::MissingClaim("sub"));
    assert_eq!(c(with(claims(), "sub", Some(json!("")))).unwrap_err(), VerifyError::InvalidClaim("sub"));
    assert_eq!(
        c(with(claims(), "sub", Some(json!(117605711420724299222u128 as f64)))).unwrap_err(),
        VerifyError::InvalidClaim("sub")
    );
    let hd =
        c(with(with(claims(), "hd", Some(json!("example.com"))), "email", Some(json!("dev@example.com")))).unwrap();
    assert_eq!(hd.token_facts().unwrap().hosted_domain.as_deref(), Some("example.com"));

    // Another trusted issuer, whose users are `@example.com`.
    const IDP: &str = "https://idp.example/realms/acme";
    let fed = federated(IDP, &["example.com"]);
    let f = |email: Option<&str>, verified: bool| {
        let p = with(
            with(with(claims(), "iss", Some(json!(IDP))), "email", email.map(|e| json!(e))),
            "email_verified",
            Some(json!(verified)),
        );
        fed.verify_uncached(&sign(&header(), &p), &auds(), NOW).unwrap()
    };
    let scoped = Principal::Federated(format!("principal://idp.example/realms/acme/subject/{SUB}"));
    assert_eq!(f(Some("Dev@Example.COM"), true).principal(), Some(Principal::User("dev@example.com".into())));
    for (email, verified) in [
        (Some("someone@evil.example"), true),
        (Some(EMAIL), true),
        (Some("x@proj.iam.gserviceaccount.com"), true),
        (Some("dev@sub.example.com"), true),
        (Some("dev@example.com.evil.example"), true),
        (Some("@example.com"), true),
        (Some("dev@example.com"), false),
        (None, true),
    ] {
        let claims = f(email, verified);
        assert_eq!(claims.principal(), Some(scoped.clone()), "{email:?} verified={verified}");
        // IAM sees the scoped principal; it does not rest on an email, so nothing is unverified.
        let facts = claims.token_facts().unwrap();
        assert_eq!((facts.principal, facts.email_verified), (scoped.clone(), true));
    }
    assert_eq!(
        fed.verify_uncached(
            &sign(&header(), &with(with(claims(), "iss", Some(json!(IDP))), "sub", None)),
            &auds(),
            NOW
        )
        .unwrap_err(),
        VerifyError::MissingClaim("sub")
    );
}

/// J28. The same `sub` (and even the same email) from two issuers are two principals: Google's
/// names the email, the others name `principal://ISSUER/subject/SUB`, distinct per issuer.
#[test]
fn j28_cross_issuer_subject_namespacing() {
    let google = verifier().verify_uncached(&good(), &auds(), NOW).unwrap();
    let token_of = |iss: &str| sign(&header(), &with(claims(), "iss", Some(json!(iss))));
    let a = federated("https://a.example", &[]).verify_uncached(&token_of("https://a.example"), &auds(), NOW).unwrap();
    let b = federated("https://b.example", &["proj.iam.gserviceaccount.com"])
        .verify_uncached(&token_of("https://b.example"), &auds(), NOW)
        .unwrap();
    assert_eq!((google.subject(), a.subject(), b.subject()), (SUB, SUB, SUB));
    assert_eq!(google.principal(), Some(Principal::ServiceAccount(EMAIL.into())));
    assert_eq!(a.principal(), Some(Principal::Federated(format!("principal://a.example/subject/{SUB}"))));
    assert_eq!(b.principal(), Some(Principal::User(EMAIL.into())), "never serviceAccount: from another issuer");
    assert_ne!(a.subject_id(), google.subject_id());
    assert_eq!(google.subject_id(), format!("https://accounts.google.com/{SUB}"));
    // A `sub` cannot smuggle a path: it is percent-encoded, so the string splits one way only.
    assert_eq!(
        federated_principal("https://a.example", "x/subject/y z"),
        "principal://a.example/subject/x%2Fsubject%2Fy%20z"
    );
    assert_ne!(
        federated_principal("https://a.example/subject/x", "y"),
        federated_principal("https://a.example", "x/subject/y")
    );
}

/// J29 (library part). The gateway test (later issue) adds: the same token sent to two services
/// through the front door, and a JWKS refresh that drops a key while tokens are cached.
#[test]
fn j29_verified_token_cache() {
    let v = verifier();
    let t = good();
    // Past `exp`: the cached entry is refused; every hit re-checks the time.
    assert!(v.verify(&t, &auds(), NOW).is_ok());
    assert_eq!(v.cached(), 1);
    assert!(v.verify(&t, &auds(), NOW + 3600 + 60).is_ok());
    assert_eq!(v.verify(&t, &auds(), NOW + 3600 + 61).err(), Some(VerifyError::Expired));
    // Same token, another service: the audience is part of the cache key.
    let other = vec!["https://other-svc.a.run.app".to_owned()];
    assert_eq!(v.verify(&t, &other, NOW).err(), Some(VerifyError::Audience));
    let both = vec![other[0].clone(), AUD.to_owned()];
    assert_eq!(v.verify(&t, &both, NOW).unwrap().audience(), AUD);
    assert_eq!(v.cached(), 2);
    // Key removed from the set: cached verifications by it are revoked.
    v.replace_keys(attacker().key_set());
    assert_eq!(v.cached(), 0);
    assert_eq!(v.verify(&t, &auds(), NOW).err(), Some(VerifyError::UnknownKey));
    // Same kid, different material: also revoked.
    v.replace_keys(ring().key_set());
    assert!(v.verify(&t, &auds(), NOW).is_ok());
    let mut evil_jwk = jwk_of(attacker());
    evil_jwk["kid"] = json!(ring().current_kid());
    v.replace_keys(keyset(&[evil_jwk]));
    assert_eq!(v.verify(&t, &auds(), NOW).err(), Some(VerifyError::BadSignature));
    // An unchanged key set (e.g. the same JWKS fetched again) keeps the entries.
    v.replace_keys(ring().key_set());
    assert!(v.verify(&t, &auds(), NOW).is_ok());
    v.replace_keys(KeySet::from_jwks_json(ring().jwks_json().as_bytes()).unwrap());
    assert_eq!(v.cached(), 1);
}

#[test]
fn cache_is_bounded_and_capacity_zero_disables_it() {
    let v = Verifier::with_cache_capacity(VerifierConfig::google(), ring().key_set(), 32);
    let tokens: Vec<String> = (0..100).map(|i| sign(&header(), &with(claims(), "n", Some(json!(i))))).collect();
    for t in &tokens {
        assert!(v.verify(t, &auds(), NOW).is_ok());
    }
    assert!(v.cached() <= 32 + 16, "{}", v.cached());
    for t in &tokens {
        assert!(v.verify(t, &auds(), NOW).is_ok(), "evicted entries verify again");
    }
    let off = Verifier::with_cache_capacity(VerifierConfig::google(), ring().key_set(), 0);
    assert!(off.verify(&tokens[0], &auds(), NOW).is_ok());
    assert_eq!(off.cached(), 0);
}

/// J30 (library part). The gateway test (later issue) adds: a JWKS endpoint answering 500,
/// timing out or serving invalid JSON, with the front door keeping its last good keys.
#[test]
fn j30_jwks_fetch_failure_fail_closed() {
    // Cold start with no keys: every token is refused.
    let cold = Verifier::new(VerifierConfig::google(), KeySet::empty());
    assert_eq!(cold.verify(&good(), &auds(), NOW).err(), Some(VerifyError::NoKeys));
    let t0 = Instant::now();
    let mut gate = RefreshGate::new(Duration::from_secs(60), Duration::from_secs(24 * 3600));
    assert!(!gate.keys_usable(t0), "no success yet");
    // Bad documents are refused whole, so the caller keeps its last good set.
    for bad in [&b"<html>500</html>"[..], b"", br#"{"keys":[]}"#] {
        assert!(KeySet::from_jwks_json(bad).is_err());
    }
    gate.record_success(t0);
    assert!(gate.keys_usable(t0 + Duration::from_secs(3600)));
    gate.record_failure(t0 + Duration::from_secs(3600));
    gate.record_failure(t0 + Duration::from_secs(7200));
    assert_eq!(gate.consecutive_failures(), 2);
    assert!(gate.keys_usable(t0 + Duration::from_secs(24 * 3600)), "last good keys within the staleness bound");
    assert!(!gate.keys_usable(t0 + Duration::from_secs(24 * 3600 + 1)), "too stale: fail closed");
    gate.record_success(t0 + Duration::from_secs(24 * 3600 + 2));
    assert!(gate.keys_usable(t0 + Duration::from_secs(24 * 3600 + 2)));
    assert_eq!(gate.consecutive_failures(), 0);
}

/// J31 (library part): an unknown issuer is refused and nothing in this crate can fetch. The
/// gateway test (later issue) adds: no discovery or JWKS request goes to the token's `iss`.
#[test]
fn j31_no_discovery_for_unknown_issuer() {
    let v = verifier();
    let h = with(header(), "jku", Some(json!("https://evil.example/.well-known/jwks.json")));
    let p = with(claims(), "iss", Some(json!("https://evil.example")));
    assert_eq!(err(&v, &sign(&h, &p)), VerifyError::Issuer);
}

/// J32: the verifier and the gate read no clock. Tokens from 2001 verify "in 2001" whatever
/// the machine's time, a cached entry is re-checked against the injected time (also when it
/// goes backwards), and the gate works on the instants it is handed.
#[test]
fn j32_injected_clock_only() {
    let v = verifier();
    let then = 1_000_000_000;
    let old = sign(&header(), &with(with(claims(), "iat", Some(json!(then))), "exp", Some(json!(then + 3600))));
    assert!(v.verify(&old, &auds(), then + 10).is_ok());
    assert_eq!(v.verify(&old, &auds(), NOW).err(), Some(VerifyError::Expired));
    let t = good();
    assert!(v.verify(&t, &auds(), NOW).is_ok());
    assert_eq!(v.verify(&t, &auds(), NOW - 7200).err(), Some(VerifyError::IssuedInFuture), "clock jumped back");
    assert!(v.verify(&t, &auds(), NOW).is_ok());
    for src in [
        include_str!("../mod.rs"),
        include_str!("../cache.rs"),
        include_str!("../refresh.rs"),
        include_str!("../keyset.rs"),
        include_str!("../parse.rs"),
    ] {
        for clock in ["SystemTime", "Instant::now", "UNIX_EPOCH"] {
            assert!(!src.contains(clock), "the verifier must not read the clock ({clock})");
        }
    }
}

#[test]
fn error_codes_are_stable_and_messages_hold_no_token() {
    let all = [
        (VerifyError::TooLarge, "token.too_large"),
        (VerifyError::Malformed("x"), "token.malformed"),
        (VerifyError::Algorithm, "token.algorithm"),
        (VerifyError::CritHeader, "token.crit_header"),
        (VerifyError::Nested, "token.nested"),
        (VerifyError::MissingKid, "token.missing_kid"),
        (VerifyError::UnknownKey, "token.unknown_key"),
        (VerifyError::BadSignature, "token.bad_signature"),
        (VerifyError::NoKeys, "token.no_keys"),
        (VerifyError::MissingClaim("aud"), "token.missing_claim"),
        (VerifyError::InvalidClaim("exp"), "token.invalid_claim"),
        (VerifyError::Issuer, "token.issuer_mismatch"),
        (VerifyError::Audience, "token.audience_mismatch"),
        (VerifyError::Expired, "token.expired"),
        (VerifyError::NotYetValid, "token.not_yet_valid"),
        (VerifyError::IssuedInFuture, "token.issued_in_future"),
        (VerifyError::LifetimeTooLong, "token.lifetime_too_long"),
    ];
    for (e, code) in all {
        assert_eq!(e.code(), code);
        let msg = e.to_string();
        assert!(msg.starts_with(|c: char| c.is_lowercase()) && !msg.ends_with('.'), "{msg}");
    }
    let v = verifier();
    let t = good();
    v.verify(&t, &auds(), NOW).unwrap();
    let dbg = format!("{v:?}");
    assert!(!dbg.contains(&t[..40]) && !dbg.contains(t.rsplit('.').next().unwrap()), "{dbg}");
}

#[test]
fn verifier_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Verifier>();
    check::<VerifiedClaims>();
    check::<KeySet>();
}

mod jwks;
mod props;
