//! What `moat explain` prints when it cannot run: a project that does not load, or a question
//! the project cannot answer. Every case exits 2, prints nothing on stdout, and says on stderr
//! where the problem is (`file:line:col` for config) and what to do. The bad projects live in
//! `tests/fixtures/load_errors/`, one directory each; `ok/` is a valid project for argument
//! errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/load_errors")
}

/// Runs `moat explain FIXTURE ARGS...` from the fixtures directory (so no absolute path can
/// reach the output) with a stable rendering, and checks the "could not run" contract.
/// Returns stderr.
fn fails(fixture: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(fixtures())
        .arg("explain")
        .arg(fixture)
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("FORCE_COLOR")
        .output()
        .expect("moat runs");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert_eq!(out.status.code(), Some(2), "exit status for {fixture} {args:?}; stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout for {fixture}, got:\n{}", String::from_utf8_lossy(&out.stdout));
    // Redact the fixtures directory in case a message ever names it.
    stderr.replace(&fixtures().display().to_string(), "[fixtures]")
}

/// A project that does not load: stderr names `at` (`file:line:col`) and gives a help line.
fn load_error(fixture: &str, at: &str) -> String {
    let stderr = fails(fixture, &["--service", "api", "--from", "internet"]);
    assert!(stderr.contains(at), "stderr should name `{at}`:\n{stderr}");
    assert!(stderr.contains("help:"), "stderr should say what to do:\n{stderr}");
    stderr
}

#[test]
fn bad_yaml_syntax_in_a_service_export() {
    insta::assert_snapshot!(load_error("bad-yaml", "services/api.yaml:6:3"));
}

#[test]
fn bad_json_syntax_in_an_iam_policy() {
    let stderr = load_error("bad-json", "iam/api.json:6:9");
    assert!(stderr.contains("invalid JSON"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn load_balancer_route_to_an_unknown_service() {
    let stderr = load_error("lb-unknown-service", "moat.yaml:13:18");
    assert!(stderr.contains("route to one of: api"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn binding_with_a_malformed_member() {
    insta::assert_snapshot!(load_error("malformed-member", "iam/api.json:6:9"));
}

#[test]
fn the_same_service_in_two_files() {
    // Files load in name order: `api-copy.yaml` first, so `api.yaml` is the duplicate.
    let stderr = load_error("duplicate-service", "services/api.yaml:8:9");
    assert!(stderr.contains("api-copy.yaml:8"), "the first definition is named:\n{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_key_in_moat_yaml() {
    let stderr = load_error("unknown-key", "moat.yaml:5:1");
    assert!(stderr.contains("`netwroks`"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_ingress_value() {
    insta::assert_snapshot!(load_error("unknown-ingress", "services/api.yaml:5:33"));
}

#[test]
fn malformed_urls_annotation() {
    // The URLs are token audiences: a list moat cannot read is an error, not an empty list.
    let stderr = load_error("malformed-urls", "services/api.yaml:6:30");
    assert!(stderr.contains("run.googleapis.com/urls") && stderr.contains("JSON array"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_ingress_status_value() {
    // The setting in force decides, so one moat cannot read is an error, never a fall-back.
    insta::assert_snapshot!(load_error("unknown-ingress-status", "services/api.yaml:6:40"));
}

/// A trusted issuer's `jwks_file` is read at load: a path that names nothing, or a file that
/// is not a JWKS document, is an error at the issuer, not a silent refusal of its tokens later.
#[test]
fn trusted_issuer_jwks_file_that_does_not_exist() {
    let stderr = load_error("jwks-file-missing", "moat.yaml:7:");
    assert!(stderr.contains("keys/acme-jwks.json` does not exist"), "{stderr}");
}

#[test]
fn trusted_issuer_jwks_file_that_is_not_a_jwks() {
    let stderr = load_error("jwks-file-not-jwks", "moat.yaml:7:");
    assert!(stderr.contains("is not a JWKS document"), "{stderr}");
}

#[test]
fn missing_moat_yaml() {
    // About the file as a whole: there is no line to name.
    insta::assert_snapshot!(load_error("missing-moat-yaml", "moat.yaml: the project directory has no `moat.yaml`"));
}

#[test]
fn project_directory_that_does_not_exist() {
    let stderr = fails("no-such-dir", &["--service", "api", "--from", "internet"]);
    assert!(stderr.contains("no-such-dir"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

// ---------------------------------------------------------------- explain argument errors

#[test]
fn unknown_service() {
    let stderr = fails("ok", &["--service", "nope", "--from", "internet"]);
    assert!(stderr.contains("`nope`") && stderr.contains("api, web"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_calling_service() {
    let stderr = fails("ok", &["--service", "api", "--from", "service:nope"]);
    assert!(stderr.contains("`nope`"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn malformed_origin() {
    let stderr = fails("ok", &["--service", "api", "--from", "mars"]);
    assert!(stderr.contains("`mars` is not an origin"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_network_origin() {
    insta::assert_snapshot!(fails("ok", &["--service", "api", "--from", "vpc:nonet"]));
}

#[test]
fn load_balancer_that_does_not_route_to_the_service() {
    let stderr = fails("ok", &["--service", "api", "--from", "internet", "--via", "lb:edge"]);
    assert!(stderr.contains("`edge`") && stderr.contains("`api`"), "{stderr}");
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_load_balancer() {
    insta::assert_snapshot!(fails("ok", &["--service", "api", "--from", "internet", "--via", "lb:ghost"]));
}

#[test]
fn malformed_principal() {
    insta::assert_snapshot!(fails("ok", &["--service", "api", "--from", "internet", "--as", "group:ops@example.com"]));
}

#[test]
fn audience_without_a_token() {
    insta::assert_snapshot!(fails(
        "ok",
        &["--service", "api", "--from", "internet", "--as", "anonymous", "--audience", "https://x.example.com"]
    ));
}
