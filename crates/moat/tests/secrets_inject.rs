//! Secret injection through `moat up` on `fixtures/secrets` (stdlib Python workloads),
//! spec/cloudrun.md §9 item 14: env secrets are read once at instance start (`latest` too), volume
//! files follow the store, pinned versions never move, and an env secret that cannot be read
//! keeps the instance from starting, with moat saying which env var, secret, version and why.
//! The store is changed through moat's Secret Manager API with the admin token, as the CLI does.
//! No secret value may appear in moat's output, the decision log or the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/listeners.rs"]
mod listeners;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listeners::{collect, listener_addr, read_until_ready};
use serde_json::{Value, json};

const PROJECT: &str = "tests/fixtures/secrets";
const DENIED_SA: &str = "denied@sec-proj.iam.gserviceaccount.com";

/// The seeds (tests/fixtures/secrets/seeds), as the store's version 1 of each secret.
const ENV_LATEST_V1: &str = "seed-env-latest-v1-7b3f0c";
const ENV_PINNED_V1: &str = "seed-env-pinned-v1-41d9aa";
const VOL_V1: &str = "seed-vol-v1-c05e11";
const FLAKY_V1: &str = "seed-flaky-v1-9e2d4b";
const LOCKED_V1: &str = "seed-locked-v1-5a8e77";

/// A running `moat up`, stopped (with everything it started) when the test ends.
struct Up {
    child: Child,
    admin: SocketAddr,
    internet: SocketAddr,
    api: SocketAddr,
    token: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    state: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
        // `STATE/instances` links to moat's directory on a tmpfs, which outlives STATE.
        if let Ok(target) = std::fs::read_link(self.state.join("instances")) {
            let _ = std::fs::remove_dir_all(target);
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

impl Up {
    /// SIGTERM, then waits for moat to exit (SIGKILL after 15 s).
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until moat's stderr has said `text` (2 s at most: the line trails the change).
    fn says(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.stderr().contains(text) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn service(&self, name: &str) -> Value {
        let (status, body) = http(self.admin, "GET", "/status", None, None);
        assert_eq!(status, 200, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap();
        status["services"].as_array().unwrap().iter().find(|s| s["service"] == name).cloned().unwrap()
    }

    /// Waits until `name` is in `state` (30 s at most).
    fn wait_state(&self, name: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.service(name);
            if s["state"] == state {
                return s;
            }
            assert!(Instant::now() < deadline, "`{name}` never became {state}: {s}\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn instance(&self, name: &str) -> SocketAddr {
        let s = self.wait_state(name, "ready");
        SocketAddr::from(([127, 0, 0, 1], u16::try_from(s["port"].as_u64().unwrap()).unwrap()))
    }

    fn env(&self, name: &str) -> Value {
        get_json(self.instance(name), "/env")
    }

    /// The mounted file as the instance reads it now: `Ok(content)` or `Err(strerror)`.
    fn file(&self, name: &str, file: &str) -> Result<String, String> {
        let out = get_json(self.instance(name), &format!("/file?name={file}"));
        match (out["data"].as_str(), out["error"].as_str()) {
            (Some(d), _) => Ok(d.to_owned()),
            (None, Some(e)) => Err(e.to_owned()),
            _ => panic!("{out}"),
        }
    }

    /// Waits until the instance reads `want` from the file (2 s at most, the rotation budget).
    fn file_becomes(&self, name: &str, file: &str, want: Result<&str, &str>) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let got = self.file(name, file);
            if got.as_deref().map_err(String::as_str) == want {
                return;
            }
            assert!(Instant::now() < deadline, "{file} of `{name}`: {got:?}, want {want:?}\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Crashes the instance of `name`; the supervisor starts a new one.
    fn crash(&self, name: &str) {
        let pid = self.service(name)["pid"].as_u64();
        if let Ok(mut s) = TcpStream::connect(self.instance(name)) {
            let _ = write!(s, "GET /crash HTTP/1.0\r\nHost: x\r\n\r\n");
            let _ = s.read_to_end(&mut Vec::new());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.service(name)["pid"].as_u64() == pid {
            assert!(Instant::now() < deadline, "`{name}` did not exit after /crash");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A call to moat's Secret Manager API with the admin token.
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string());
        let (status, text) = http(self.api, method, &format!("/v1/projects/sec-proj/{path}"), Some(&auth), body);
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Adds a version; returns its number.
    fn add_version(&self, secret: &str, data: &str) -> u64 {
        let b64 = b64(data);
        let v = self.api("POST", &format!("secrets/{secret}:addVersion"), Some(json!({"payload": {"data": b64}})));
        v["name"].as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap()
    }

    fn set_state(&self, secret: &str, version: u64, verb: &str) {
        self.api("POST", &format!("secrets/{secret}/versions/{version}:{verb}"), Some(json!({})));
    }
}

fn start() -> Up {
    let state = std::env::temp_dir().join(format!("moat-secrets-test-{}-{:?}", std::process::id(), Instant::now()));
    start_with(&state, state.clone())
}

/// `moat up --state STATE_ARG` (relative to the crate directory, where moat runs), `state` the
/// same directory as an absolute path.
fn start_with(state_arg: &std::path::Path, state: PathBuf) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["up", PROJECT, "--state"])
        .arg(state_arg)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moat starts");
    let stderr = collect(child.stderr.take().unwrap());
    let out = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(60));
    let stdout = out.all;
    let Some(printed) = out.ready else {
        let _ = child.kill();
        panic!(
            "moat up printed no `ready:` line within 60 s:\n{}\n{}",
            stdout.lock().unwrap().join("\n"),
            stderr.lock().unwrap()
        );
    };
    let addr = |origin: &str| listener_addr(&printed, origin);
    let token = std::fs::read_to_string(state.join("secrets/admin.token")).unwrap().trim().to_owned();
    Up { admin: addr("admin"), internet: addr("internet"), api: addr("secrets"), token, child, stdout, stderr, state }
}

/// One HTTP/1.0 request: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: Option<String>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or_default();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Standard base64 with padding (the API's `payload.data`).
fn b64(data: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0_u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            let c = if i <= chunk.len() { char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]) } else { '=' };
            out.push(c);
        }
    }
    out
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, None, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn env_secrets_keep_their_start_value_while_volume_files_follow_the_store() {
    let mut up = start();
    let env = up.env("reader");
    assert_eq!(env["LATEST_VALUE"], ENV_LATEST_V1);
    assert_eq!(env["PINNED_VALUE"], ENV_PINNED_V1);
    // The contract: moat's Secret Manager API, and where the volumes are.
    assert_eq!(env["MOAT_SECRETMANAGER_ENDPOINT"], format!("http://{}", up.api));
    let root = PathBuf::from(env["MOAT_MOUNT_ROOT"].as_str().unwrap());
    assert!(root.starts_with(up.state.join("instances/reader")), "{}", root.display());
    up.file_becomes("reader", "secrets/current", Ok(VOL_V1));
    up.file_becomes("reader", "secrets/first", Ok(VOL_V1));
    // The plaintext files live on a tmpfs, not on the state directory's disk.
    let real = std::fs::canonicalize(&root).unwrap();
    let tmpfs = [std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from), Some(PathBuf::from("/dev/shm"))];
    if tmpfs.iter().flatten().any(|t| t.is_dir()) {
        assert!(tmpfs.iter().flatten().any(|t| real.starts_with(t)), "{} is not on a tmpfs", real.display());
        assert!(!real.starts_with(std::fs::canonicalize(&up.state).unwrap()), "{}", real.display());
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(root.clone()), 0o700);
        assert_eq!(mode(root.join("secrets/current")), 0o444);
        assert_eq!(mode(root.join("secrets/first")), 0o400);
    }

    // New versions: the env keeps what it read at start, `latest` files follow, pinned ones not.
    assert_eq!(up.add_version("env-latest", "rotated-env-latest-v2-e81f2c"), 2);
    assert_eq!(up.add_version("env-pinned", "rotated-env-pinned-v2-0d77b1"), 2);
    assert_eq!(up.add_version("vol", "rotated-vol-v2-93ac5e"), 2);
    up.file_becomes("reader", "secrets/current", Ok("rotated-vol-v2-93ac5e"));
    up.file_becomes("reader", "secrets/first", Ok(VOL_V1));
    let env = up.env("reader");
    assert_eq!(env["LATEST_VALUE"], ENV_LATEST_V1, "an env secret is read once, at instance start");
    assert_eq!(env["PINNED_VALUE"], ENV_PINNED_V1);
    assert!(up.says("/secrets/current now holds version 2 of secret `vol`"), "{}", up.stderr());

    // A version that becomes inaccessible takes its file with it; the read fails.
    up.set_state("vol", 2, "disable");
    up.file_becomes("reader", "secrets/current", Err("No such file or directory"));
    up.file_becomes("reader", "secrets/first", Ok(VOL_V1));
    assert!(
        up.says("/secrets/current removed: secret `vol` version `latest`: Secret Version [projects/100000000002/secrets/vol/versions/2] is in DISABLED state"),
        "{}",
        up.stderr()
    );
    up.set_state("vol", 1, "destroy");
    up.file_becomes("reader", "secrets/first", Err("No such file or directory"));
    assert_eq!(up.add_version("vol", "rotated-vol-v3-5be0a4"), 3);
    up.file_becomes("reader", "secrets/current", Ok("rotated-vol-v3-5be0a4"));

    // A new instance reads `latest` again; the pinned version stays.
    up.crash("reader");
    let env = up.env("reader");
    assert_eq!(env["LATEST_VALUE"], "rotated-env-latest-v2-e81f2c");
    assert_eq!(env["PINNED_VALUE"], ENV_PINNED_V1);
    // The old instance's mounts are gone with it.
    assert!(!root.exists(), "{} outlived its instance", root.display());
    let new_root = PathBuf::from(up.env("reader")["MOAT_MOUNT_ROOT"].as_str().unwrap());
    assert_ne!(new_root, root);
    up.file_becomes("reader", "secrets/current", Ok("rotated-vol-v3-5be0a4"));
    up.file_becomes("reader", "secrets/first", Err("No such file or directory"));
    // A graceful stop leaves nothing on the tmpfs: the instance's mounts, then the directory
    // `STATE/instances` linked to, and the link.
    let tmpfs_dir = std::fs::read_link(up.state.join("instances")).ok();
    up.stop();
    assert!(!new_root.exists());
    if let Some(dir) = tmpfs_dir {
        assert!(!dir.exists(), "{} outlived moat", dir.display());
        assert!(std::fs::symlink_metadata(up.state.join("instances")).is_err(), "the link outlived moat");
    }
    drop(up);
}

#[test]
fn an_env_secret_the_service_account_cannot_read_keeps_the_instance_from_starting() {
    let up = start();
    let printed = up.stdout.lock().unwrap().join("\n");
    assert!(printed.contains("ready: 3/6"), "{printed}");
    let denied = up.wait_state("denied", "failed");
    let why = denied["error"].as_str().unwrap();
    for part in ["env var `LOCKED_VALUE`", "secret `locked`", "version `1`", "secretmanager.versions.access", DENIED_SA]
    {
        assert!(why.contains(part), "{part}: {why}");
    }
    assert!(printed.contains(&format!("`denied` did not start: {why}")), "{printed}");
    assert!(up.says(&format!("moat: `denied` cannot start: {why}")), "{}", up.stderr());
    assert!(denied["pid"].is_null());

    // A secret of a project moat does not hold.
    let why = up.wait_state("elsewhere", "failed")["error"].as_str().unwrap().to_owned();
    for part in ["env var `REMOTE_VALUE`", "secret `remote`", "`999999999999`", "which moat does not hold"] {
        assert!(why.contains(part), "{part}: {why}");
    }

    // Granting access starts it, without waiting out the backoff.
    let policy = json!({"policy": {"bindings": [{
        "role": "roles/secretmanager.secretAccessor",
        "members": [format!("serviceAccount:{DENIED_SA}")],
    }]}});
    up.api("POST", "secrets/locked:setIamPolicy", Some(policy));
    let started = Instant::now();
    assert_eq!(up.env("denied")["LOCKED_VALUE"], LOCKED_V1);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(up.service("denied")["error"].is_null());
}

#[test]
fn cross_project_aliases_inject_from_the_own_project_and_refuse_any_other() {
    let up = start();
    // `own-env` and `own-vol` alias secrets of project 100000000002, moat's own.
    assert_eq!(up.env("aliased")["ALIASED_VALUE"], ENV_LATEST_V1);
    up.file_becomes("aliased", "aliased/first", Ok(VOL_V1));
    // `far` aliases a secret of project 999999999998: the start is refused, and says why.
    let why = up.wait_state("alias-far", "failed")["error"].as_str().unwrap().to_owned();
    for part in ["env var `FAR_VALUE`", "secret `env-latest`", "`999999999998`", "which moat does not hold"] {
        assert!(why.contains(part), "{part}: {why}");
    }
    assert!(!why.contains(ENV_LATEST_V1), "{why}");
}

#[test]
fn latest_on_a_disabled_newest_version_fails_even_with_older_versions_enabled() {
    let up = start();
    assert_eq!(up.env("flaky")["FLAKY_VALUE"], FLAKY_V1);
    assert_eq!(up.add_version("flaky", "rotated-flaky-v2-d41c07"), 2);
    up.set_state("flaky", 2, "disable");
    // The running instance keeps its value; a new one cannot start, although version 1 is enabled.
    assert_eq!(up.env("flaky")["FLAKY_VALUE"], FLAKY_V1);
    up.crash("flaky");
    let why = up.wait_state("flaky", "failed")["error"].as_str().unwrap().to_owned();
    for part in ["env var `FLAKY_VALUE`", "secret `flaky`", "version `latest`", "versions/2] is in DISABLED state"] {
        assert!(why.contains(part), "{part}: {why}");
    }
    // Enabling it starts an instance with version 2.
    up.set_state("flaky", 2, "enable");
    assert_eq!(up.env("flaky")["FLAKY_VALUE"], "rotated-flaky-v2-d41c07");
    // Destroyed is final.
    up.set_state("flaky", 2, "destroy");
    up.crash("flaky");
    let why = up.wait_state("flaky", "failed")["error"].as_str().unwrap().to_owned();
    assert!(why.contains("versions/2] is in DESTROYED state"), "{why}");
}

#[test]
fn a_pinned_env_version_that_is_disabled_or_destroyed_keeps_the_instance_from_starting() {
    let up = start();
    assert_eq!(up.env("reader")["PINNED_VALUE"], ENV_PINNED_V1);
    // A newer version changes nothing for a pinned reference.
    up.add_version("env-pinned", "rotated-env-pinned-v2-77e0f3");
    up.crash("reader");
    assert_eq!(up.env("reader")["PINNED_VALUE"], ENV_PINNED_V1);
    up.set_state("env-pinned", 1, "disable");
    up.crash("reader");
    let why = up.wait_state("reader", "failed")["error"].as_str().unwrap().to_owned();
    for part in ["env var `PINNED_VALUE`", "secret `env-pinned`", "version `1`", "versions/1] is in DISABLED state"] {
        assert!(why.contains(part), "{part}: {why}");
    }
    assert!(!why.contains(ENV_PINNED_V1));
    up.set_state("env-pinned", 1, "enable");
    assert_eq!(up.env("reader")["PINNED_VALUE"], ENV_PINNED_V1);
    up.set_state("env-pinned", 1, "destroy");
    up.crash("reader");
    let why = up.wait_state("reader", "failed")["error"].as_str().unwrap().to_owned();
    assert!(why.contains("versions/1] is in DESTROYED state"), "{why}");
}

#[test]
fn no_secret_value_reaches_moats_output_or_its_logs() {
    let mut up = start();
    let added = ["leak-check-env-latest-v2-3f9a61", "leak-check-vol-v2-b27c4d", "leak-check-flaky-v2-c8e512"];
    // Reads, rotations, removals and failed starts: everything that makes moat talk.
    assert_eq!(up.env("reader")["LATEST_VALUE"], ENV_LATEST_V1);
    up.add_version("env-latest", added[0]);
    up.add_version("vol", added[1]);
    up.file_becomes("reader", "secrets/current", Ok(added[1]));
    up.set_state("vol", 2, "disable");
    up.file_becomes("reader", "secrets/current", Err("No such file or directory"));
    up.add_version("flaky", added[2]);
    up.set_state("flaky", 2, "disable");
    up.crash("flaky");
    up.wait_state("flaky", "failed");
    up.crash("reader");
    up.wait_state("reader", "ready");
    let (status, _) = http(up.internet, "GET", "/", None, None);
    assert_ne!(status, 0);
    let (_, admin_status) = http(up.admin, "GET", "/status", None, None);
    up.stop();
    assert!(up.child.try_wait().unwrap().is_some_and(|s| s.success()));

    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let outputs = [
        ("stdout", up.stdout.lock().unwrap().join("\n")),
        ("stderr", up.stderr()),
        ("admin /status", admin_status),
        ("decisions.jsonl", read(up.state.join("decisions.jsonl"))),
        ("audit.jsonl", read(up.state.join("secrets/audit.jsonl"))),
    ];
    // The logs are not empty: they did record the events.
    assert!(outputs[1].1.contains("did not start") || outputs[1].1.contains("cannot start"), "{}", outputs[1].1);
    assert!(outputs[4].1.contains("env-latest"), "{}", outputs[4].1);
    let values = [ENV_LATEST_V1, ENV_PINNED_V1, VOL_V1, FLAKY_V1, LOCKED_V1].into_iter().chain(added);
    for value in values {
        for (name, text) in &outputs {
            assert!(!text.contains(value), "{name} holds the value of a secret ({value})");
            assert!(!text.contains(&b64(value)), "{name} holds the base64 of a secret ({value})");
        }
    }
}

#[test]
fn a_relative_state_directory_still_gives_an_absolute_mount_root() {
    // `--state` relative to where moat runs; the workload runs in its own `dir`.
    let name = format!("moat-secrets-relative-{}", std::process::id());
    let relative = PathBuf::from("../../target").join(&name);
    let up = start_with(&relative, PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&relative));
    let root = PathBuf::from(up.env("reader")["MOAT_MOUNT_ROOT"].as_str().unwrap());
    assert!(root.is_absolute(), "{}", root.display());
    up.file_becomes("reader", "secrets/current", Ok(VOL_V1));
}
