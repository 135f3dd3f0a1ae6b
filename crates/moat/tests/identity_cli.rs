//! `moat token`, `moat keys rotate` and `moat serve-identity` as a user runs them: what goes to
//! stdout, the keys they share through the state directory, and the messages (snapshots) when
//! they cannot run. The servers themselves are tested in crates/server/tests and, with real
//! Google clients, in tests/clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use moat_crypto::{KeyRing, Verifier, VerifierConfig};

const SA: &str = "serviceAccount:api@shop-prod.iam.gserviceaccount.com";
const AUD: &str = "https://api-abc123-uc.a.run.app";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh state directory under the system temp dir, removed when dropped.
struct State(PathBuf);

impl State {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "moat-identity-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(workspace())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("FORCE_COLOR")
        .output()
        .unwrap()
}

/// The "could not run" contract: exit 2, nothing on stdout; returns stderr with the state
/// directory redacted.
fn fails(args: &[&str], state: &State) -> String {
    let out = moat(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    stderr.replace(state.arg(), "[state]")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn token_prints_one_token_signed_with_the_state_keys() {
    let state = State::new();
    let out = moat(&["token", "examples/shop", "--as", SA, "--audience", AUD, "--state", state.arg()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.strip_suffix('\n').expect("newline-terminated");
    assert!(!token.contains(['\n', ' ']), "only the token: {stdout:?}");

    let keys = KeyRing::load_or_create(&state.0.join("keys"), now()).unwrap();
    let claims =
        Verifier::new(VerifierConfig::google(), keys.key_set()).verify(token, &[AUD.to_owned()], now()).unwrap();
    assert_eq!(claims.email(), Some("api@shop-prod.iam.gserviceaccount.com"));

    // The same keys sign the next token: the state directory is the project's issuer.
    let again =
        moat(&["token", "examples/shop", "--as", "user:alice@example.com", "--audience", AUD, "--state", state.arg()]);
    let token = String::from_utf8(again.stdout).unwrap();
    let claims = Verifier::new(VerifierConfig::google(), keys.key_set())
        .verify(token.trim_end(), &[AUD.to_owned()], now())
        .unwrap();
    assert_eq!(claims.email(), Some("alice@example.com"));
}

/// Roll-out order (regression: the rotated key signed at once, and a running server, which
/// adopts another process's rotation only at its next check, refused those tokens with
/// `token.unknown_key`). The new key is published first and signs only after
/// `PREPUBLISH_SECS`, so a token minted right after `moat keys rotate` verifies with the keys the
/// running server already has.
#[test]
fn keys_rotate_prepublishes_so_a_token_minted_at_once_verifies_at_a_running_server() {
    let state = State::new();
    let keys = state.0.join("keys");
    // The running server's verifier, built before the rotation as `moat up` builds it.
    let running = KeyRing::load_or_create(&keys, now()).unwrap();
    let before = running.current_kid().to_owned();
    let verifier = Verifier::new(VerifierConfig::google(), running.key_set());

    let out = moat(&["keys", "rotate", "examples/shop", "--state", state.arg()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ring = KeyRing::load_or_create(&keys, now()).unwrap();
    let (next, at) = ring.next_key().map(|(k, at)| (k.to_owned(), at)).expect("a pre-published key");
    assert_ne!(next, before);
    assert_eq!(ring.current_kid(), before, "the old key still signs");
    assert!(at >= now() + moat_crypto::PREPUBLISH_SECS - 5, "signs only after the pre-publication delay");
    // Oldest first; the old key stays published so the tokens it signed still verify.
    assert_eq!(
        stdout,
        format!(
            "signing key: {before} (until {at})\nnext signing key: {next} (published now, signs from {at}, in {} s)\npublished keys: {before}, {next}\n",
            moat_crypto::PREPUBLISH_SECS
        )
    );

    // `moat token` right away: signed by a key the running server knows.
    let out =
        moat(&["token", "examples/shop", "--as", "user:alice@example.com", "--audience", AUD, "--state", state.arg()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let claims = verifier.verify(token.trim_end(), &[AUD.to_owned()], now()).expect("accepted by the running server");
    assert_eq!(claims.key_id(), before);
}

#[test]
fn token_for_a_service_account_the_project_does_not_know() {
    let state = State::new();
    let args = [
        "token",
        "examples/shop",
        "--as",
        "serviceAccount:nobody@evil.iam.gserviceaccount.com",
        "--audience",
        AUD,
        "--state",
        state.arg(),
    ];
    insta::assert_snapshot!(fails(&args, &state));
    assert!(!state.0.join("keys").exists(), "no key is created for a refused request");
}

#[test]
fn token_for_something_that_is_not_a_principal() {
    let state = State::new();
    insta::assert_snapshot!(fails(
        &["token", "examples/shop", "--as", "group:admins@example.com", "--audience", AUD, "--state", state.arg()],
        &state
    ));
}

#[test]
fn token_with_an_empty_audience() {
    let state = State::new();
    insta::assert_snapshot!(fails(
        &["token", "examples/shop", "--as", SA, "--audience", "", "--state", state.arg()],
        &state
    ));
}

#[test]
fn serve_identity_for_a_user() {
    let state = State::new();
    insta::assert_snapshot!(fails(
        &["serve-identity", "examples/shop", "--as", "user:alice@example.com", "--state", state.arg()],
        &state
    ));
}

#[test]
fn serve_identity_on_a_public_address() {
    let state = State::new();
    insta::assert_snapshot!(fails(
        &["serve-identity", "examples/shop", "--as", SA, "--listen", "0.0.0.0:8080", "--state", state.arg()],
        &state
    ));
}

#[test]
fn keys_in_a_state_path_that_is_a_file() {
    let state = State::new();
    std::fs::write(state.0.join("keys"), "not a directory").unwrap();
    let stderr = fails(&["token", "examples/shop", "--as", SA, "--audience", AUD, "--state", state.arg()], &state);
    // Not a snapshot: the temporary path's length moves the line breaks.
    let flat = stderr.replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("is not a directory: point the key store at a directory"), "{stderr}");
    assert!(flat.contains("help: the signing keys live in `[state]/keys`"), "{stderr}");
}
