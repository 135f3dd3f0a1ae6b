//! `moat secrets rotate-master-key`: through a running `moat up` (its API) and on the store
//! directly when none runs; refused when the store is held by a moat whose API cannot be
//! reached, and when the key comes from `MOAT_MASTER_KEY`. Values stay readable; the key file
//! changes (that payload ciphertexts are copied byte for byte is tested in crates/secrets).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/listeners.rs"]
mod listeners;
#[path = "common/moat_up.rs"]
mod moat_up;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use moat_up::{TempProject, Up};
use serde_json::Value;

/// `moat secrets --project DIR ARGS...` with `stdin`; `MOAT_MASTER_KEY` set to `env_key` or
/// removed.
fn secrets(project: &Path, args: &[&str], stdin: &[u8], env_key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.arg("secrets").arg("--project").arg(project).args(args);
    match env_key {
        Some(k) => cmd.env("MOAT_MASTER_KEY", k),
        None => cmd.env_remove("MOAT_MASTER_KEY"),
    };
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(project: &Path, args: &[&str], stdin: &[u8]) -> String {
    let out = secrets(project, args, stdin, None);
    assert!(out.status.success(), "moat secrets {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Fails with status 2; its stderr with miette's frame and wrapping squashed away.
fn fails(project: &Path, args: &[&str], env_key: Option<&str>) -> String {
    let out = secrets(project, args, b"", env_key);
    assert_eq!(
        out.status.code(),
        Some(2),
        "moat secrets {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).replace(['│', '×'], " ").split_whitespace().collect::<String>()
}

fn says(err: &str, needle: &str) -> bool {
    err.contains(&needle.split_whitespace().collect::<String>())
}

fn key_file(project: &TempProject) -> String {
    std::fs::read_to_string(project.state().join("secrets/master.key")).unwrap()
}

#[test]
fn one_command_rotates_with_or_without_a_running_moat() {
    let project = TempProject::new("rotate-cli");
    let p = project.dir.as_path();
    let mut up = Up::start(p, &project.dir.join("moat.stderr"));
    ok(p, &["create", "db", "--data-file", "-"], b"value-one");
    ok(p, &["add", "db"], b"value-two");
    let first = key_file(&project);

    // Running: the moat rotates its own store.
    let out = ok(p, &["rotate-master-key"], b"");
    assert!(out.starts_with("rotated the master key by the running moat: `"), "{out}");
    assert!(out.ends_with(", 2 versions re-wrapped\n"), "{out}");
    let second = key_file(&project);
    assert_ne!(first, second, "the key file changed");
    assert!(!project.state().join("secrets/master.key.next").exists());
    assert_eq!(ok(p, &["access", "db", "1"], b""), "value-one");
    assert_eq!(ok(p, &["access", "db"], b""), "value-two");
    let v: Value = serde_json::from_str(&ok(p, &["rotate-master-key", "--format", "json"], b"")).unwrap();
    assert_eq!((v["via"].as_str(), v["versionsRewrapped"].as_u64()), (Some("moat"), Some(2)));
    let third = key_file(&project);
    assert_ne!(second, third);

    // Stopped: the CLI opens the store itself.
    assert!(up.stop());
    let v: Value = serde_json::from_str(&ok(p, &["rotate-master-key", "--format", "json"], b"")).unwrap();
    assert_eq!(v["via"], "store", "{v}");
    assert_eq!(v["versionsRewrapped"], 2);
    let fourth = key_file(&project);
    assert_ne!(third, fourth);

    // A moat started on the rotated key reads every value.
    let _up = Up::start(p, &project.dir.join("moat2.stderr"));
    assert_eq!(ok(p, &["access", "db", "1"], b""), "value-one");
    assert_eq!(ok(p, &["access", "db", "2"], b""), "value-two");
    let audit = std::fs::read_to_string(project.state().join("secrets/audit.jsonl")).unwrap();
    assert_eq!(
        audit.matches(r#""action":"rotateMasterKeyFile","resource":"projects/200000000002","result":"ok""#).count(),
        3,
        "{audit}"
    );
}

#[test]
fn a_store_held_by_a_moat_that_cannot_be_reached_is_refused_with_what_to_do() {
    let project = TempProject::new("rotate-cli-locked");
    let p = project.dir.as_path();
    let _up = Up::start(p, &project.dir.join("moat.stderr"));
    let before = key_file(&project);
    // The endpoint file is gone (say, removed by hand): the store is still open in moat.
    std::fs::remove_file(project.state().join("secrets/endpoint")).unwrap();
    let err = fails(p, &["rotate-master-key"], None);
    assert!(says(&err, "is held by a running moat whose API does not answer (UNAVAILABLE)"), "{err}");
    assert!(says(&err, "pass `--endpoint URL`"), "{err}");
    assert_eq!(key_file(&project), before, "nothing changed");
}

#[test]
fn a_key_from_the_environment_is_never_rotated_into_a_file() {
    let project = TempProject::new("rotate-cli-env");
    let p = project.dir.as_path();
    // Never started: nothing to rotate.
    let err = fails(p, &["rotate-master-key"], None);
    assert!(says(&err, "there is no secret store at"), "{err}");
    let mut up = Up::start(p, &project.dir.join("moat.stderr"));
    ok(p, &["create", "db", "--data-file", "-"], b"kept");
    assert!(up.stop());
    let key = key_file(&project);
    let err = fails(p, &["rotate-master-key"], Some(key.trim()));
    assert!(says(&err, "the master key comes from `MOAT_MASTER_KEY`, which moat cannot change"), "{err}");
    assert!(says(&err, "run `moat secrets rotate-master-key`"), "{err}");
    assert_eq!(key_file(&project), key, "the key file is untouched");
    assert!(!project.state().join("secrets/master.key.next").exists());
}
