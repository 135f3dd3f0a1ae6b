//! The identity state over a key store directory: rotations made by another process (`moat
//! keys rotate`) are adopted at the next check, and the published documents follow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use moat_crypto::KeyRing;
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
    assert!(state.rotate_if_due(Duration::from_secs(3600)).unwrap());
    assert_ne!(state.current_kid(), first);
    // A process started now finds the rotated ring.
    assert_eq!(KeyRing::load_or_create(&keys, now() + 3601).unwrap().current_kid(), state.current_kid());
}
