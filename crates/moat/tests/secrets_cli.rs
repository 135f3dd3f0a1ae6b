//! `moat secrets` against a running `moat up`: the round trip a developer makes (create, add
//! from stdin, access the exact bytes, list, versions, disable, destroy, IAM, delete), the
//! refusals (a disabled version, no moat running) and the rule that a value never comes from
//! an argument.

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

/// `moat secrets --project DIR ARGS...` with `stdin`.
fn secrets(project: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("secrets")
        .arg("--project")
        .arg(project)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Succeeds; its stdout.
fn ok(project: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = secrets(project, args, stdin);
    assert!(out.status.success(), "moat secrets {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn text(project: &Path, args: &[&str]) -> String {
    String::from_utf8(ok(project, args, b"")).unwrap()
}

/// Fails with status 2; its stderr as one line (miette wraps to the terminal's width).
fn fails(project: &Path, args: &[&str], stdin: &[u8]) -> String {
    let out = secrets(project, args, stdin);
    assert_eq!(
        out.status.code(),
        Some(2),
        "moat secrets {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "nothing on stdout when it fails");
    String::from_utf8_lossy(&out.stderr).replace(['│', '×'], " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `err` says `needle`, ignoring where miette wrapped the lines (it breaks long words
/// at `-` and `/` too).
fn says(err: &str, needle: &str) -> bool {
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    squash(err).contains(&squash(needle))
}

#[test]
fn a_developer_s_round_trip() {
    let project = TempProject::new("secrets-cli");
    let p = project.dir.as_path();
    let mut up = Up::start(p, &project.dir.join("moat.stderr"));
    let endpoint = project.state().join("secrets/endpoint");
    assert_eq!(std::fs::read_to_string(&endpoint).unwrap().trim(), format!("http://{}", up.secrets));

    let out = text(p, &["create", "db", "--label", "env=dev"]);
    assert_eq!(out, "created secret `db` (projects/200000000002/secrets/db)\n");
    // From stdin, byte for byte (the trailing newline is part of the value).
    assert_eq!(String::from_utf8(ok(p, &["add", "db"], b"first")).unwrap(), "added version 1 of `db`\n");
    let added = secrets(p, &["add", "db"], b"hunter2\n");
    assert_eq!(String::from_utf8(added.stdout).unwrap(), "added version 2 of `db`\n");
    let value_file = project.dir.join("value.bin");
    std::fs::write(&value_file, [0u8, 159, 146, 150, 255, b'\n']).unwrap();
    assert_eq!(text(p, &["add", "db", "--data-file", value_file.to_str().unwrap()]), "added version 3 of `db`\n");

    assert_eq!(ok(p, &["access", "db"], b""), [0u8, 159, 146, 150, 255, b'\n'], "latest, exactly its bytes");
    let access = secrets(p, &["access", "db", "2"], b"");
    assert_eq!(access.stdout, b"hunter2\n", "exactly the bytes, nothing else");
    assert!(access.stderr.is_empty());
    assert_eq!(ok(p, &["access", "db", "1"], b""), b"first");

    let list = text(p, &["list"]);
    assert!(list.starts_with("NAME  CREATED") && list.contains("\ndb    ") && list.contains("env=dev"), "{list}");
    let json: Value = serde_json::from_slice(&ok(p, &["list", "--format", "json"], b"")).unwrap();
    assert_eq!(json[0]["name"], "projects/200000000002/secrets/db");
    let versions = text(p, &["versions", "db"]);
    let states: Vec<(&str, &str)> =
        versions.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()).map(|w| (w[0], w[1])).collect();
    assert_eq!(states, [("3", "ENABLED"), ("2", "ENABLED"), ("1", "ENABLED")], "{versions}");

    // Disabled: access fails with Secret Manager's message, and a hint.
    assert_eq!(text(p, &["disable", "db", "3"]), "version 3 of `db` is DISABLED\n");
    let err = fails(p, &["access", "db"], b"");
    assert!(
        says(
            &err,
            "Secret Version [projects/200000000002/secrets/db/versions/3] is in DISABLED state. (FAILED_PRECONDITION)"
        ),
        "{err}"
    );
    assert!(says(&err, "moat secrets enable NAME VERSION"), "{err}");
    assert_eq!(text(p, &["enable", "db", "3"]), "version 3 of `db` is ENABLED\n");
    assert_eq!(ok(p, &["access", "db"], b"").len(), 6);

    // Destroyed: gone for good.
    assert_eq!(text(p, &["destroy", "db", "2"]), "version 2 of `db` is DESTROYED\n");
    let err = fails(p, &["access", "db", "2"], b"");
    assert!(says(&err, "is in DESTROYED state."), "{err}");
    let versions = text(p, &["versions", "db"]);
    assert!(versions.lines().any(|l| l.starts_with("2 ") && l.contains("DESTROYED")), "{versions}");
    let v: Value = serde_json::from_slice(&ok(p, &["versions", "db", "--format", "json"], b"")).unwrap();
    assert_eq!(v[1]["state"], "DESTROYED");
    assert!(v[1]["destroyTime"].is_string());

    // IAM: set from a file, read back, tested.
    let policy_file = project.dir.join("policy.json");
    std::fs::write(
        &policy_file,
        r#"{"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": ["serviceAccount:app@sec-proj.iam.gserviceaccount.com"]}]}"#,
    )
    .unwrap();
    let set = text(p, &["iam", "set", "db", policy_file.to_str().unwrap()]);
    assert!(
        set.contains("roles/secretmanager.secretAccessor  serviceAccount:app@sec-proj.iam.gserviceaccount.com"),
        "{set}"
    );
    let got: Value = serde_json::from_slice(&ok(p, &["iam", "get", "db", "--format", "json"], b"")).unwrap();
    assert_eq!(got["bindings"][0]["members"][0], "serviceAccount:app@sec-proj.iam.gserviceaccount.com");
    // A stale etag in the file is refused.
    std::fs::write(&policy_file, r#"{"bindings": [], "etag": "AAAAAAAAAAA="}"#).unwrap();
    let err = fails(p, &["iam", "set", "db", policy_file.to_str().unwrap()], b"");
    assert!(says(&err, "(ABORTED)"), "{err}");
    let held =
        text(p, &["iam", "test", "db", "secretmanager.versions.access", "secretmanager.secrets.delete", "bogus.perm"]);
    assert_eq!(held, "secretmanager.versions.access\nsecretmanager.secrets.delete\n");

    // Errors name what to do.
    let err = fails(p, &["create", "db"], b"");
    assert!(says(&err, "(ALREADY_EXISTS)") && says(&err, "moat secrets add NAME"), "{err}");
    let err = fails(p, &["access", "nope"], b"");
    assert!(says(&err, "(NOT_FOUND)"), "{err}");

    assert_eq!(text(p, &["delete", "db"]), "deleted secret `db` and all its versions\n");
    assert_eq!(text(p, &["list"]), "no secrets\n");

    // `create --data-file -` creates the secret with its first version.
    let created = secrets(p, &["create", "api-key", "--data-file", "-"], b"k3y");
    assert_eq!(
        String::from_utf8(created.stdout).unwrap(),
        "created secret `api-key` (projects/200000000002/secrets/api-key)\nadded version 1 of `api-key`\n"
    );
    assert_eq!(ok(p, &["access", "api-key", "1"], b""), b"k3y");

    // A clean stop removes the endpoint file; the CLI then says no moat is running.
    assert!(up.stop(), "moat up stops cleanly");
    assert!(!endpoint.exists(), "the endpoint file is removed on a clean shutdown");
    let err = fails(p, &["list"], b"");
    let shown = p.display().to_string();
    assert!(says(&err, &format!("no moat is running for {shown}: start `moat up {shown}` first")), "{err}");
}

#[test]
fn a_value_never_comes_from_an_argument() {
    let project = TempProject::new("secrets-cli-args");
    let p = project.dir.as_path();
    let _up = Up::start(p, &project.dir.join("moat.stderr"));
    ok(p, &["create", "db"], b"");
    for args in [&["add", "db", "hunter2"][..], &["add", "db", "--data", "hunter2"], &["add", "db", "--value=hunter2"]]
    {
        let out = secrets(p, args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(says(&err, "unexpected argument"), "{args:?}: {err}");
    }
    assert_eq!(text(p, &["versions", "db"]), "no versions\n", "nothing was added");
}

#[test]
fn unreachable_endpoints_say_no_moat_is_running() {
    let project = TempProject::new("secrets-cli-none");
    let p = project.dir.as_path();
    // Never started: no endpoint file.
    let err = fails(p, &["list"], b"");
    assert!(says(&err, "no moat is running for"), "{err}");
    assert!(says(&err, "secrets/endpoint` does not exist"), "{err}");
    // A stale endpoint (what a killed moat leaves behind) and an admin token: nothing answers.
    let dir = project.state().join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(dir.join("endpoint"), format!("http://{free}\n")).unwrap();
    std::fs::write(dir.join("admin.token"), "moat-admin.x\n").unwrap();
    let err = fails(p, &["list"], b"");
    assert!(says(&err, "no moat is running for") && says(&err, "nothing answers at"), "{err}");
}
