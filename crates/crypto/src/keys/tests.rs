//! The issuer: token shape, rotation and retention, and the on-disk key store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use std::os::unix::fs::PermissionsExt as _;

use serde_json::Value as Json;

use super::*;
use crate::account::Account;
use crate::issue::{ComputeEngineInfo, IssueError, TokenFormat, sign_id_token};
use crate::verify::{Verifier, VerifierConfig, VerifyError};

const T0: u64 = 1_700_000_000;
const AUD: &str = "https://svc-abc123-uc.a.run.app";
const RETENTION: u64 = MAX_TOKEN_LIFETIME_SECS + CLOCK_SKEW_MARGIN_SECS;

fn sa() -> Account {
    Account::service_account("runtime-sa@proj.iam.gserviceaccount.com")
}

fn auds() -> Vec<String> {
    vec![AUD.to_owned()]
}

fn segment(token: &str, i: usize) -> Json {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let mut r = [0u8; 8];
        rand::fill(&mut r).unwrap();
        let name: String = r.iter().map(|b| format!("{b:02x}")).collect();
        Self(std::env::temp_dir().join(format!("moat-crypto-test-{name}")))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn id_token_claims_shape() {
    let ring = KeyRing::in_memory(T0).unwrap();
    let t = sign_id_token(&ring, &sa(), AUD, T0, TokenFormat::Standard, None).unwrap();
    let h = segment(&t, 0);
    assert_eq!(h, serde_json::json!({"alg": "RS256", "kid": ring.current_kid(), "typ": "JWT"}));
    let p = segment(&t, 1);
    let id = sa().unique_id();
    assert_eq!(id.len(), 21);
    assert_eq!(
        p,
        serde_json::json!({
            "aud": AUD,
            "azp": id,
            "email": "runtime-sa@proj.iam.gserviceaccount.com",
            "email_verified": true,
            "exp": T0 + 3600,
            "iat": T0,
            "iss": "https://accounts.google.com",
            "sub": id,
        })
    );
    // Stable across key rings and time.
    let other = KeyRing::in_memory(T0 + 99).unwrap();
    let t2 = sign_id_token(&other, &sa(), AUD, T0 + 99, TokenFormat::Full, None).unwrap();
    assert_eq!(segment(&t2, 1)["sub"], id.as_str());
    assert!(segment(&t2, 1).get("google").is_none(), "Cloud Run: no google claim");
}

#[test]
fn full_format_adds_compute_engine_claim() {
    let ring = KeyRing::in_memory(T0).unwrap();
    let gce = ComputeEngineInfo {
        project_id: "proj".into(),
        project_number: "123456789012".into(),
        zone: "us-central1-a".into(),
        instance_id: "4567".into(),
        instance_name: "vm-1".into(),
    };
    let t = sign_id_token(&ring, &sa(), AUD, T0, TokenFormat::Full, Some(&gce)).unwrap();
    assert_eq!(
        segment(&t, 1)["google"],
        serde_json::json!({"compute_engine": {
            "instance_id": "4567", "instance_name": "vm-1", "project_id": "proj",
            "project_number": 123456789012u64, "zone": "us-central1-a"
        }})
    );
    let std = sign_id_token(&ring, &sa(), AUD, T0, TokenFormat::Standard, Some(&gce)).unwrap();
    assert!(segment(&std, 1).get("google").is_none());
}

#[test]
fn bad_audiences_are_refused() {
    let ring = KeyRing::in_memory(T0).unwrap();
    let f = |aud: &str| sign_id_token(&ring, &sa(), aud, T0, TokenFormat::Standard, None).map(|_| ());
    assert_eq!(f(""), Err(IssueError::EmptyAudience));
    assert_eq!(f(&"a".repeat(5000)), Err(IssueError::AudienceTooLong));
    assert_eq!(f("https://x\n"), Err(IssueError::BadAudience));
}

/// M7: what the issuer mints, the verifier accepts, and so does `jsonwebtoken` (which also
/// proves its aws-lc-rs provider is wired: without one it panics at first use).
#[test]
fn issue_verify_round_trip() {
    let ring = KeyRing::in_memory(T0).unwrap();
    let t = sign_id_token(&ring, &sa(), AUD, T0, TokenFormat::Standard, None).unwrap();
    let v = Verifier::new(VerifierConfig::google(), ring.key_set());
    let c = v.verify(&t, &auds(), T0 + 5).unwrap();
    assert_eq!(c.principal(), Some(sa().principal()));
    assert_eq!(c.subject(), sa().unique_id());
    assert_eq!(c.authorized_party(), Some(sa().unique_id().as_str()));
    // Through the published JWKS document too.
    let v2 = Verifier::new(VerifierConfig::google(), KeySet::from_jwks_json(ring.jwks_json().as_bytes()).unwrap());
    assert!(v2.verify(&t, &auds(), T0 + 5).is_ok());

    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&ring.jwks_json()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[AUD]);
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<Json>(&t, &key, &validation).unwrap();
    assert_eq!(data.claims["email"], "runtime-sa@proj.iam.gserviceaccount.com");
    assert_eq!(data.header.kid.as_deref(), Some(ring.current_kid()));
}

#[test]
fn rotation_keeps_old_tokens_until_pruned() {
    let mut ring = KeyRing::in_memory(T0).unwrap();
    let old_kid = ring.current_kid().to_owned();
    let old = sign_id_token(&ring, &sa(), AUD, T0, TokenFormat::Standard, None).unwrap();
    let rotated_at = T0 + 100;
    ring.rotate(rotated_at).unwrap();
    assert_ne!(ring.current_kid(), old_kid);
    let new = sign_id_token(&ring, &sa(), AUD, rotated_at, TokenFormat::Standard, None).unwrap();
    assert_eq!(segment(&new, 0)["kid"], ring.current_kid());

    let jwks: Json = serde_json::from_str(&ring.jwks_json()).unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [ring.current_kid(), old_kid.as_str()], "current first");
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!(
            (k["kty"].as_str(), k["alg"].as_str(), k["use"].as_str(), k["e"].as_str()),
            (Some("RSA"), Some("RS256"), Some("sig"), Some("AQAB"))
        );
    }

    let v = Verifier::new(VerifierConfig::google(), ring.key_set());
    assert!(v.verify(&old, &auds(), T0 + 3000).is_ok(), "old token still verifies");
    assert!(v.verify(&new, &auds(), T0 + 3000).is_ok());

    // Retention: published until retired_at + lifetime + skew margin.
    assert!(!ring.rotate_if_due(rotated_at + RETENTION - 1, 0).unwrap());
    assert_eq!(ring.key_set().len(), 2);
    assert!(ring.rotate_if_due(rotated_at + RETENTION, 0).unwrap(), "the published keys changed");
    assert_eq!(ring.key_set().len(), 1, "pruned");
    assert!(!ring.jwks_json().contains(&old_kid));
    assert!(!ring.x509_pem_map_json().contains(&old_kid));
    v.replace_keys(ring.key_set());
    assert_eq!(v.verify(&old, &auds(), T0 + 3000).err(), Some(VerifyError::UnknownKey));
}

#[test]
fn rotate_if_due_follows_the_schedule() {
    let mut ring = KeyRing::in_memory(T0).unwrap();
    let day = 86_400;
    assert!(!ring.rotate_if_due(T0 + 10, day).unwrap());
    assert!(!ring.rotate_if_due(T0 + day - 1, day).unwrap());
    let first = ring.current_kid().to_owned();
    assert!(ring.rotate_if_due(T0 + day, day).unwrap(), "the next key is published");
    assert_eq!(ring.current_kid(), first, "but does not sign yet");
    assert!(!ring.rotate_if_due(T0 + day + 1, day).unwrap());
    assert_eq!(ring.kids().count(), 2);
    let (next, at) = ring.next_key().map(|(k, at)| (k.to_owned(), at)).unwrap();
    assert_eq!(at, T0 + day + PREPUBLISH_SECS);
    assert!(!ring.rotate_if_due(at - 1, day).unwrap());
    assert!(ring.rotate_if_due(at, day).unwrap(), "its time has come");
    assert_eq!(ring.current_kid(), next);
    assert_eq!(ring.next_key(), None);
    assert!(ring.rotate_if_due(T0 + 10 * day, 0).unwrap(), "the retired key is pruned");
    assert!(!ring.rotate_if_due(T0 + 10 * day, 0).unwrap(), "0 never rotates");
    assert_eq!(ring.kids().collect::<Vec<_>>(), [next.as_str()]);
    // Very short periods pre-publish for half the period.
    assert_eq!(prepublish_delay(1), 0);
    assert_eq!(prepublish_delay(60), 30);
    assert_eq!(prepublish_delay(86_400), PREPUBLISH_SECS);
}

/// Roll-out order: a pre-published key is in the JWKS (and the verifier's key set) before it
/// signs anything, so verifiers that refresh within the delay never see an unknown `kid`.
#[test]
fn a_prepublished_key_is_trusted_before_it_signs() {
    let mut ring = KeyRing::in_memory(T0).unwrap();
    let first = ring.current_kid().to_owned();
    let (next, at) = ring.rotate_prepublished(T0 + 10, PREPUBLISH_SECS).unwrap();
    assert_eq!(at, T0 + 10 + PREPUBLISH_SECS);
    assert!(ring.jwks_json().contains(&next) && ring.x509_pem_map_json().contains(&next));
    let verifier = Verifier::new(VerifierConfig::google(), ring.key_set());
    // Until `at`, the old key signs.
    let t = sign_id_token(&ring, &sa(), AUD, T0 + 20, TokenFormat::Standard, None).unwrap();
    assert_eq!(segment(&t, 0)["kid"], first.as_str());
    assert!(!ring.promote_due(at - 1).unwrap());
    assert!(ring.promote_due(at).unwrap());
    let t = sign_id_token(&ring, &sa(), AUD, at, TokenFormat::Standard, None).unwrap();
    assert_eq!(segment(&t, 0)["kid"], next.as_str());
    assert_eq!(verifier.verify(&t, &auds(), at).unwrap().key_id(), next, "trusted before it signed");
    // The old key retired when the new one started signing, and stays for its tokens' lifetime.
    assert_eq!(ring.kids().collect::<Vec<_>>(), [first.as_str(), next.as_str()]);
    assert!(!ring.rotate_if_due(at + RETENTION - 1, 0).unwrap());
    assert!(ring.rotate_if_due(at + RETENTION, 0).unwrap(), "pruned");
    assert_eq!(ring.kids().collect::<Vec<_>>(), [next.as_str()]);
}

/// Regression: two processes on one store (`moat token` or `moat keys rotate` next to a running
/// server) each rewrote the index from their own stale copy, so one's new key vanished.
#[test]
fn writers_on_one_store_never_lose_each_others_keys() {
    let tmp = TempDir::new();
    let dir = tmp.0.join("keys");
    let mut a = KeyRing::load_or_create(&dir, T0).unwrap();
    let mut b = KeyRing::load_or_create(&dir, T0).unwrap();
    b.rotate(T0 + 1).unwrap();
    let from_b = b.current_kid().to_owned();
    // `a` still holds the state from before `b` rotated.
    assert!(!a.kids().any(|k| k == from_b));
    a.rotate(T0 + 2).unwrap();
    let from_a = a.current_kid().to_owned();
    assert!(a.kids().any(|k| k == from_b), "b's key, which may have signed tokens, is kept");
    assert!(dir.join(format!("{from_b}.pem")).exists());
    let on_disk = KeyRing::load_or_create(&dir, T0 + 3).unwrap();
    assert_eq!(on_disk.current_kid(), from_a);
    assert_eq!(on_disk.kids().collect::<Vec<_>>(), a.kids().collect::<Vec<_>>(), "one truth, on disk");

    // Concurrent rotations from many threads: every one lands.
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut r = KeyRing::load_or_create(&dir, T0 + 10).unwrap();
                r.rotate(T0 + 10 + i).unwrap();
                r.current_kid().to_owned()
            })
        })
        .collect();
    let made: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let on_disk = KeyRing::load_or_create(&dir, T0 + 20).unwrap();
    for kid in &made {
        assert!(on_disk.kids().any(|k| k == kid), "{kid} kept: {:?}", on_disk.kids().collect::<Vec<_>>());
    }
}

#[test]
fn x509_pem_map_has_a_certificate_per_key() {
    let mut ring = KeyRing::in_memory(T0).unwrap();
    ring.rotate(T0 + 1).unwrap();
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&ring.x509_pem_map_json()).unwrap();
    assert_eq!(map.len(), 2);
    let jwks: Json = serde_json::from_str(&ring.jwks_json()).unwrap();
    for k in jwks["keys"].as_array().unwrap() {
        let pem = &map[k["kid"].as_str().unwrap()];
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE-----\n") && pem.trim_end().ends_with("-----END CERTIFICATE-----")
        );
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        // The certificate carries the key's modulus.
        let n = URL_SAFE_NO_PAD.decode(k["n"].as_str().unwrap()).unwrap();
        assert!(der.windows(n.len()).any(|w| w == n.as_slice()));
    }
}

#[test]
fn debug_output_holds_no_key_material() {
    let ring = KeyRing::in_memory(T0).unwrap();
    let dbg = format!("{ring:?}");
    let pem = ring.current().pem();
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(body.iter().all(|line| !dbg.contains(line)), "{dbg}");
    assert!(dbg.contains(ring.current_kid()));
}

#[test]
fn file_store_creates_private_files_and_reloads() {
    let tmp = TempDir::new();
    let dir = tmp.0.join("keys");
    let ring = KeyRing::load_or_create(&dir, T0).unwrap();
    assert_eq!(mode(&dir), 0o700);
    let key_file = dir.join(format!("{}.pem", ring.current_kid()));
    assert_eq!(mode(&key_file), 0o600);
    assert!(fs::read_to_string(&key_file).unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let index: Json = serde_json::from_str(&fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["keys"][0]["kid"], ring.current_kid());
    assert_eq!(index["keys"][0]["created_at"], T0);
    assert!(index["keys"][0]["retired_at"].is_null());
    let names: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "no temp files left: {names:?}");

    let token = sign_id_token(&ring, &sa(), AUD, T0, TokenFormat::Standard, None).unwrap();
    let again = KeyRing::load_or_create(&dir, T0 + 10).unwrap();
    assert_eq!(again.current_kid(), ring.current_kid());
    let v = Verifier::new(VerifierConfig::google(), again.key_set());
    assert!(v.verify(&token, &auds(), T0 + 10).is_ok(), "same key material after reload");

    // Rotation is persisted, and pruning deletes the old file.
    let mut again = again;
    let first = again.current_kid().to_owned();
    again.rotate(T0 + 20).unwrap();
    let second = again.current_kid().to_owned();
    assert_eq!(mode(&dir.join(format!("{second}.pem"))), 0o600);
    let reloaded = KeyRing::load_or_create(&dir, T0 + 30).unwrap();
    assert_eq!(reloaded.kids().collect::<Vec<_>>(), [first.as_str(), second.as_str()]);
    let pruned = KeyRing::load_or_create(&dir, T0 + 20 + RETENTION).unwrap();
    assert_eq!(pruned.kids().collect::<Vec<_>>(), [second.as_str()]);
    assert!(!dir.join(format!("{first}.pem")).exists());
}

#[test]
fn damaged_store_is_an_error_not_a_regeneration() {
    let tmp = TempDir::new();
    let dir = tmp.0.clone();
    let ring = KeyRing::load_or_create(&dir, T0).unwrap();
    let kid = ring.current_kid().to_owned();
    let index = dir.join("index.json");
    let key_file = dir.join(format!("{kid}.pem"));
    let good_index = fs::read_to_string(&index).unwrap();
    let good_key = fs::read_to_string(&key_file).unwrap();
    let listing = |d: &Path| {
        let mut v: Vec<String> =
            fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    let before = listing(&dir);

    let corrupt_indexes = [
        "{not json",
        "",
        r#"{"version":1,"keys":[]}"#,
        r#"{"version":2,"keys":[]}"#,
        r#"{"version":1,"keys":[{"kid":"../../etc/passwd","created_at":1,"retired_at":null}]}"#,
    ];
    for text in corrupt_indexes {
        fs::write(&index, text).unwrap();
        let e = KeyRing::load_or_create(&dir, T0).unwrap_err();
        assert!(matches!(e, KeyError::CorruptIndex { .. }), "{text}: {e}");
        assert!(e.to_string().contains("index.json") && e.to_string().contains("restore"), "{e}");
        assert_eq!(listing(&dir), before, "nothing regenerated");
        assert_eq!(fs::read_to_string(&key_file).unwrap(), good_key);
    }
    fs::write(&index, &good_index).unwrap();

    fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let e = KeyRing::load_or_create(&dir, T0).unwrap_err();
    assert!(matches!(e, KeyError::CorruptKeyFile { .. }), "{e}");
    assert!(!e.to_string().contains("AAAA"));

    fs::remove_file(&key_file).unwrap();
    let e = KeyRing::load_or_create(&dir, T0).unwrap_err();
    assert!(matches!(e, KeyError::MissingKeyFile { .. }), "{e}");
    assert!(e.to_string().contains(&kid));

    // Key files without an index: refuse rather than create a second key set.
    fs::write(&key_file, &good_key).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(&index).unwrap();
    assert!(matches!(KeyRing::load_or_create(&dir, T0), Err(KeyError::OrphanKeys(_))));
    fs::write(&index, &good_index).unwrap();
    assert_eq!(KeyRing::load_or_create(&dir, T0).unwrap().current_kid(), kid);

    // Keys readable by others are refused.
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(KeyRing::load_or_create(&dir, T0), Err(KeyError::InsecurePermissions { .. })));
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(KeyRing::load_or_create(&dir, T0), Err(KeyError::InsecurePermissions { .. })));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

    let file = tmp.0.join("index.json");
    assert!(matches!(KeyRing::load_or_create(&file, T0), Err(KeyError::NotADirectory(_))));
}
