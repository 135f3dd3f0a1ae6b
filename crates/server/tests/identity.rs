//! The identity state over a key store directory: rotations made by another process (`moat
//! keys rotate`) are adopted at the next check, and the published documents follow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use moat_crypto::{Account, KeyRing, PREPUBLISH_SECS, TokenFormat, Verifier, VerifierConfig, sign_id_token};
use moat_server::IdentityState;
use moat_server::identity::{Clock, DEFAULT_ROTATE_EVERY};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("moat-server-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_store_adopts_a_rotation_made_by_another_process() {
    let dir = TempDir::new("adopt");
    let keys = dir.0.join("keys");
    let state = IdentityState::from_store(&keys).unwrap();
    let first = state.current_kid();
    assert!(!state.rotate_if_due(DEFAULT_ROTATE_EVERY).unwrap(), "nothing changed, nothing to do");

    // What `moat keys rotate` does from another process.
    let mut other = KeyRing::load_or_create(&keys, now()).unwrap();
    other.rotate(now()).unwrap();
    let second = other.current_kid().to_owned();

    assert!(state.rotate_if_due(DEFAULT_ROTATE_EVERY).unwrap(), "the new key is adopted");
    assert_eq!(state.current_kid(), second);
    let jwks = state.jwks_json();
    assert!(jwks.contains(&first) && jwks.contains(&second), "both keys stay published: {jwks}");
}

#[test]
fn a_store_rotates_when_due_and_persists_the_new_key() {
    let dir = TempDir::new("due");
    let keys = dir.0.join("keys");
    let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock: Clock = {
        let offset = Arc::clone(&offset);
        Arc::new(move || now() + offset.load(std::sync::atomic::Ordering::Relaxed))
    };
    let state = IdentityState::from_store_with_clock(&keys, clock).unwrap();
    let first = state.current_kid();
    assert!(!state.rotate_if_due(Duration::from_secs(3600)).unwrap());
    offset.store(3601, std::sync::atomic::Ordering::Relaxed);
    assert!(state.rotate_if_due(Duration::from_secs(3600)).unwrap(), "the next key is published");
    assert_eq!(state.current_kid(), first, "and does not sign yet");
    let next = KeyRing::load_or_create(&keys, now() + 3601).unwrap().next_key().unwrap().0.to_owned();
    assert!(state.jwks_json().contains(&next));
    offset.store(3601 + PREPUBLISH_SECS, std::sync::atomic::Ordering::Relaxed);
    assert!(state.rotate_if_due(Duration::from_secs(3600)).unwrap(), "the next key signs");
    assert_eq!(state.current_kid(), next);
    // A process started now finds the rotated ring.
    let later = now() + 3601 + PREPUBLISH_SECS;
    assert_eq!(KeyRing::load_or_create(&keys, later).unwrap().current_kid(), state.current_kid());
}

/// Roll-out order (regression: a rotated key signed at once while the running server's
/// verifier did not have it yet, so fresh tokens got `token.unknown_key`). `moat keys rotate`
/// pre-publishes; `moat token` right after it, and the running server's metadata servers after
/// the delay, sign only with keys the server's verifier has.
#[test]
fn a_rotation_by_another_process_never_signs_before_the_running_server_verifies_it() {
    let dir = TempDir::new("rollout");
    let keys = dir.0.join("keys");
    let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock: Clock = {
        let offset = Arc::clone(&offset);
        Arc::new(move || now() + offset.load(std::sync::atomic::Ordering::Relaxed))
    };
    let at = |secs: u64| {
        offset.store(secs, std::sync::atomic::Ordering::Relaxed);
        now() + secs
    };
    let state = IdentityState::from_store_with_clock(&keys, Arc::clone(&clock)).unwrap();
    // The front door's verifier, as the runtime builds it and `follow_keys` refreshes it.
    let verifier = Verifier::new(VerifierConfig::google(), state.key_set());
    let sa = Account::service_account("api@p.iam.gserviceaccount.com");
    let aud = ["https://api-abc-uc.a.run.app".to_owned()];

    // `moat keys rotate`, then `moat token`, in another process, at once.
    let t0 = at(0);
    let (next, signs_from) =
        KeyRing::load_or_create(&keys, t0).unwrap().rotate_prepublished(t0, PREPUBLISH_SECS).unwrap();
    let cli = KeyRing::load_or_create(&keys, t0).unwrap();
    let token = sign_id_token(&cli, &sa, &aud[0], t0, TokenFormat::Standard, None).unwrap();
    assert!(verifier.verify(&token, &aud, t0).is_ok(), "a token minted right after the rotation is accepted");

    // The server's next check adopts the published key; its front door copies it.
    assert!(state.rotate_if_due(DEFAULT_ROTATE_EVERY).unwrap());
    verifier.replace_keys(state.key_set());
    assert!(verifier.has_key(&next));
    let mds = state.sign_id_token(&sa, &aud[0], TokenFormat::Standard, None).unwrap();
    assert!(verifier.verify(&mds, &aud, t0).is_ok());

    // From the announced time on, the new key signs everywhere, and is already trusted.
    let t1 = at(signs_from - t0);
    assert!(state.rotate_if_due(DEFAULT_ROTATE_EVERY).unwrap(), "the pre-published key now signs");
    assert_eq!(state.current_kid(), next);
    let mds = state.sign_id_token(&sa, &aud[0], TokenFormat::Standard, None).unwrap();
    assert_eq!(verifier.verify(&mds, &aud, t1).unwrap().key_id(), next);
    let cli = KeyRing::load_or_create(&keys, t1).unwrap();
    let token = sign_id_token(&cli, &sa, &aud[0], t1, TokenFormat::Standard, None).unwrap();
    assert_eq!(verifier.verify(&token, &aud, t1).unwrap().key_id(), next);
}
