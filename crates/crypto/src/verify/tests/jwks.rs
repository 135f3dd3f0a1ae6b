//! JWKS loading: what is refused at load time (J25 and the other load rules).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use super::*;

#[test]
fn j25_weak_rsa_rejected_at_load() {
    let rsa =
        |kid: &str, n: &[u8]| json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(n), "e": "AQAB"});
    let mut n1024 = vec![0xc5u8; 128];
    n1024[127] |= 1;
    let mut n2047 = vec![0xc5u8; 256];
    n2047[0] = 0x7f;
    let doc = |keys: Json| json!({"keys": keys}).to_string();
    let load = |keys: Json| KeySet::from_jwks_json(doc(keys).as_bytes()).map(|k| k.len());
    assert_eq!(load(json!([rsa("weak", &n1024)])), Err(JwksError::WeakKey { kid: "weak".into(), bits: 1024 }));
    assert_eq!(load(json!([rsa("weak", &n2047)])), Err(JwksError::WeakKey { kid: "weak".into(), bits: 2047 }));
    // One weak key refuses the whole document.
    assert!(matches!(load(json!([jwk_of(ring()), rsa("weak", &n1024)])), Err(JwksError::WeakKey { .. })));
    assert_eq!(load(json!([jwk_of(ring())])), Ok(1));
}

#[test]
fn jwks_load_rejections() {
    let good = jwk_of(ring());
    let kid = ring().current_kid().to_owned();
    let k = |key: &str, v: Option<Json>| with(good.clone(), key, v);
    let load = |keys: Json| KeySet::from_jwks_json(json!({"keys": keys}).to_string().as_bytes()).map(|k| k.len());
    let many: Vec<Json> = (0..65).map(|i| k("kid", Some(json!(format!("k{i}"))))).collect();
    let cases: Vec<(&str, Json, JwksError)> = vec![
        ("use enc", json!([k("use", Some(json!("enc")))]), JwksError::NotForSigning { kid: kid.clone() }),
        (
            "key_ops encrypt",
            json!([k("key_ops", Some(json!(["encrypt"])))]),
            JwksError::NotForSigning { kid: kid.clone() },
        ),
        ("kty oct", json!([{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]), JwksError::PrivateKey { kid: "s".into() }),
        (
            "kty OKP",
            json!([k("kty", Some(json!("OKP")))]),
            JwksError::UnsupportedKeyType { kid: kid.clone(), kty: "OKP".into() },
        ),
        ("no kty", json!([k("kty", None)]), JwksError::UnsupportedKeyType { kid: kid.clone(), kty: String::new() }),
        ("private d", json!([k("d", Some(json!("AQAB")))]), JwksError::PrivateKey { kid: kid.clone() }),
        (
            "padded n",
            json!([k("n", Some(json!(format!("{}=", good["n"].as_str().unwrap()))))]),
            JwksError::BadEncoding { kid: kid.clone(), field: "n" },
        ),
        (
            "standard base64 e",
            json!([k("e", Some(json!("AQ+B")))]),
            JwksError::BadEncoding { kid: kid.clone(), field: "e" },
        ),
        ("missing n", json!([k("n", None)]), JwksError::BadEncoding { kid: kid.clone(), field: "n" }),
        (
            "alg HS256",
            json!([k("alg", Some(json!("HS256")))]),
            JwksError::UnsupportedAlgorithm { kid: kid.clone(), alg: "HS256".into() },
        ),
        (
            "alg ES256 on RSA",
            json!([k("alg", Some(json!("ES256")))]),
            JwksError::AlgorithmMismatch { kid: kid.clone(), alg: "ES256".into() },
        ),
        ("no kid", json!([k("kid", None)]), JwksError::MissingKid { index: 0 }),
        ("empty kid", json!([k("kid", Some(json!("")))]), JwksError::MissingKid { index: 0 }),
        ("long kid", json!([k("kid", Some(json!("x".repeat(300))))]), JwksError::KidTooLong { index: 0, max: 256 }),
        ("duplicate kid", json!([good.clone(), good.clone()]), JwksError::DuplicateKid(kid.clone())),
        ("too many keys", Json::Array(many), JwksError::TooManyKeys { max: 64 }),
        ("empty", json!([]), JwksError::Empty),
    ];
    for (name, keys, want) in cases {
        assert_eq!(load(keys), Err(want), "{name}");
    }
    for bad in [&b"not json"[..], b"{}", b"[]", br#"{"keys":{}}"#, br#"{"keys":[{"kty":"RSA","kty":"RSA"}]}"#] {
        assert!(matches!(KeySet::from_jwks_json(bad), Err(JwksError::Json(_))), "{}", String::from_utf8_lossy(bad));
    }
    let huge = vec![b' '; MAX_JWKS_BYTES + 1];
    assert_eq!(KeySet::from_jwks_json(&huge).map(|k| k.len()), Err(JwksError::TooLarge { max: MAX_JWKS_BYTES }));
    // Keys for other purposes are skipped next to a signing key; alone they are the error.
    for (name, other) in [
        ("use enc", k("use", Some(json!("enc")))),
        ("kty OKP", k("kty", Some(json!("OKP")))),
        ("alg HS256", k("alg", Some(json!("HS256")))),
    ] {
        let other = with(other, "kid", Some(json!("other")));
        assert_eq!(load(json!([other.clone(), good.clone()])), Ok(1), "{name}");
    }
    // Refusals that mean a broken issuer still refuse the whole document.
    assert!(matches!(
        load(json!([good.clone(), k("kid", Some(json!("x"))), k("kid", Some(json!("x")))])),
        Err(JwksError::DuplicateKid(_))
    ));
    assert!(matches!(
        load(json!([good.clone(), with(k("d", Some(json!("AQAB"))), "kid", Some(json!("x")))])),
        Err(JwksError::PrivateKey { .. })
    ));
    // What the issuer publishes loads back.
    assert_eq!(KeySet::from_jwks_json(ring().jwks_json().as_bytes()).map(|k| k.len()), Ok(1));
}

/// A Keycloak realm's JWKS as served at `/realms/REALM/protocol/openid-connect/certs`: an
/// `RSA-OAEP` encryption key next to the `RS256` signing key, both with x5c/x5t members. The
/// encryption key is skipped; tokens signed by the signing key verify.
#[test]
fn a_keycloak_realm_jwks_loads_its_signing_key() {
    let sig_key = jwk_of(ring());
    let enc_key = jwk_of(attacker());
    let x509 = |mut k: Json, kid: &str, alg: &str, use_: &str| {
        k["kid"] = json!(kid);
        k["alg"] = json!(alg);
        k["use"] = json!(use_);
        k["x5c"] = json!(["MIICnTCCAYUCBgGMxxxx"]);
        k["x5t"] = json!("q0uVZ8e1hRk2mw0YlB8nq2nTz1w");
        k["x5t#S256"] = json!("3Fb2p2j2aJ0LzYkq1mH3p9L2N5n8Xv3qvY6JcKxkz3A");
        k
    };
    let kid = ring().current_kid().to_owned();
    let doc = json!({"keys": [
        x509(enc_key, "Yq8o0c1oZ7rWm1T0wzVx8aVbC3kqQ5wH2bB7p9yJmNo", "RSA-OAEP", "enc"),
        x509(sig_key, &kid, "RS256", "sig"),
    ]});
    let keys = KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.kids().collect::<Vec<_>>(), [kid.as_str()]);
    assert!(Verifier::new(VerifierConfig::google(), keys).verify(&good(), &auds(), NOW).is_ok());
}
