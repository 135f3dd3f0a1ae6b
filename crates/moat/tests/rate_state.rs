//! `moat up` / `moat serve` and the shared rate-limit state: a bad `--rate-state` stops the
//! start with exit 2 and what to write; a Redis that does not answer yet is a warning, not a
//! failure (rate-limited requests get the failure policy until it answers). The counting
//! itself, with a real `redis-server`, is crates/server/tests/rate_redis.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/listeners.rs"]
mod listeners;
#[path = "common/moat_up.rs"]
mod moat_up;

use std::process::{Command, Stdio};
use std::time::Duration;

use moat_up::TempProject;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_bad_rate_state_flag_stops_the_start() {
    let p = TempProject::new("rate-flag");
    for cmd in ["up", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args([cmd, p.dir.to_str().unwrap(), "--rate-state", "rediss://:hunter2@cache:6380"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(stderr.contains("--rate-state `rediss://:***@cache:6380` is not a `redis://` URL"), "{cmd}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn moat_starts_while_redis_does_not_answer_and_says_so() {
    let p = TempProject::new("rate-down");
    let yaml = std::fs::read_to_string(p.dir.join("moat.yaml")).unwrap();
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    std::fs::write(p.dir.join("moat.yaml"), format!("{yaml}rate_limit_state: {{redis: \"{url}\", on_error: open}}\n"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("up")
        .arg(&p.dir)
        .env_remove("MOAT_MASTER_KEY")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = listeners::collect(child.stderr.take().unwrap());
    let printed = listeners::read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let stderr = stderr.lock().unwrap().clone();
    assert!(printed.ready.is_some(), "moat up did not start: {stderr}");
    assert!(
        stderr.contains(&format!("rate-limit state {url} does not answer yet"))
            && stderr.contains("admitted uncounted (on_error: open)"),
        "{stderr}"
    );
}
