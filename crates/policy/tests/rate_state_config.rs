//! `rate_limit_state:` in moat.yaml: parsed into the project with its defaults, and every bad
//! value refused at load with `file:line:col` and what to write instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use moat_policy::SourceFile;
use moat_policy::model::{RateLimitState, RateStateOnError};

const PROJECT: &str = "project:\n  id: p\n  number: \"1\"\n  region: us-central1\n";

fn load(extra: &str) -> Result<Option<RateLimitState>, Vec<String>> {
    let files = [SourceFile { path: "moat.yaml".into(), text: format!("{PROJECT}{extra}") }];
    match moat_policy::load(&files) {
        Ok(p) => Ok(p.rate_limit_state),
        Err(e) => Err(e.errors.iter().map(|e| format!("{e} | help: {}", e.help.clone().unwrap_or_default())).collect()),
    }
}

#[test]
fn absent_means_in_memory() {
    assert_eq!(load("").unwrap(), None);
}

#[test]
fn defaults_are_fail_closed_and_50_ms() {
    let s = load("rate_limit_state:\n  redis: redis://127.0.0.1:6379/0\n").unwrap().unwrap();
    assert_eq!(s.redis, "redis://127.0.0.1:6379/0");
    assert_eq!(s.on_error, RateStateOnError::Closed);
    assert_eq!(s.timeout, Duration::from_millis(50));
    assert_eq!((s.source.line, s.source.column), (6, 3));
}

#[test]
fn every_setting_is_read() {
    let s = load("rate_limit_state: {redis: \"redis://cache:6379/2\", on_error: open, timeout_ms: 200}\n")
        .unwrap()
        .unwrap();
    assert_eq!(s.on_error, RateStateOnError::Open);
    assert_eq!(s.timeout, Duration::from_millis(200));
}

#[test]
fn bad_values_name_their_line_and_column() {
    for (yaml, at, says) in [
        ("rate_limit_state:\n  redis: rediss://cache:6380\n", "moat.yaml:6:10", "is not a `redis://` URL"),
        ("rate_limit_state:\n  redis: \"redis://\"\n", "moat.yaml:6:10", "names no host"),
        (
            "rate_limit_state:\n  redis: redis://c\n  on_error: maybe\n",
            "moat.yaml:7:13",
            "`on_error: maybe` is not a failure policy",
        ),
        (
            "rate_limit_state:\n  redis: redis://c\n  timeout_ms: 0\n",
            "moat.yaml:7:15",
            "`timeout_ms: 0` is out of range",
        ),
        ("rate_limit_state:\n  redis: redis://c\n  timeout_ms: 60000\n", "moat.yaml:7:15", "is out of range"),
    ] {
        let errors = load(yaml).expect_err(yaml);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(at), "{yaml}: {}", errors[0]);
        assert!(errors[0].contains(says), "{yaml}: {}", errors[0]);
        assert!(errors[0].contains("help: ") && !errors[0].ends_with("help: "), "{}", errors[0]);
    }
}

#[test]
fn unknown_keys_and_a_missing_url_are_refused() {
    let errors = load("rate_limit_state:\n  url: redis://c\n").expect_err("unknown key");
    assert!(errors[0].starts_with("moat.yaml:"), "{errors:?}");
}

#[test]
fn a_password_never_shows_in_an_error() {
    let errors = load("rate_limit_state:\n  redis: rediss://:hunter2@cache\n").expect_err("tls");
    assert!(!errors[0].contains("hunter2"), "{}", errors[0]);
}
