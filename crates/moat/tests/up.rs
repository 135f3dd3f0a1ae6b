//! `moat up` end to end on `fixtures/up` (three stdlib Python workloads): the container contract
//! each instance sees, readiness, restart after a crash, service-to-service calls through the
//! front door with a token from the caller's own metadata server (200 from a service with VPC
//! egress, 404 from one without), and SIGTERM stopping every instance.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/http.rs"]
mod http;
#[path = "common/listeners.rs"]
mod listeners;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::get;
use listeners::{listener_addr, read_until_ready};

use serde_json::Value;

const PROJECT: &str = "tests/fixtures/up";

/// A running `moat up`, killed (with everything it started) if the test fails.
struct Up {
    child: Child,
    admin: SocketAddr,
    internet: SocketAddr,
    stdout: Vec<String>,
    state: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal("TERM", self.child.id());
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn signal(sig: &str, pid: u32) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn alive(pid: u32) -> bool {
    signal("0", pid)
}

fn start() -> Up {
    start_in(std::env::temp_dir().join(format!("moat-up-test-{}-{:?}", std::process::id(), Instant::now())))
}

fn start_in(state: PathBuf) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["up", PROJECT, "--state"])
        .arg(&state)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("moat starts");
    let printed = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(60));
    let Some(stdout) = printed.ready else {
        let _ = child.kill();
        panic!("moat up printed no `ready:` line within 60 s:\n{}", printed.all.lock().unwrap().join("\n"));
    };
    let addr = |origin: &str| listener_addr(&stdout, origin);
    Up { admin: addr("admin"), internet: addr("internet"), child, stdout, state }
}

fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = get(addr, "localhost", path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn service(up: &Up, name: &str) -> Value {
    let status = json(up.admin, "/status");
    status["services"].as_array().unwrap().iter().find(|s| s["service"] == name).cloned().unwrap()
}

fn instance(up: &Up, name: &str) -> SocketAddr {
    let s = service(up, name);
    assert_eq!(s["state"], "ready", "{s}");
    SocketAddr::from(([127, 0, 0, 1], u16::try_from(s["port"].as_u64().unwrap()).unwrap()))
}

#[test]
fn every_instance_gets_the_container_contract() {
    let up = start();
    assert!(up.stdout.iter().any(|l| l.starts_with("ready: 3/3")), "{}", up.stdout.join("\n"));
    for name in ["caller", "lonely", "backend"] {
        let s = service(&up, name);
        let port = s["port"].as_u64().unwrap();
        let env = json(instance(&up, name), "/env");
        assert_eq!(env["PORT"], port.to_string(), "{name}");
        assert_eq!(env["K_SERVICE"], name);
        assert_eq!(env["K_REVISION"], format!("{name}-00001-moat"));
        assert_eq!(env["K_CONFIGURATION"], name);
        let mds = s["metadata"].as_str().unwrap();
        for k in ["GCE_METADATA_HOST", "GCE_METADATA_IP", "GCE_METADATA_ROOT"] {
            assert_eq!(env[k], mds, "{name} {k}");
        }
        assert_eq!(env["HTTP_PROXY"], s["egress_proxy"], "{name}");
        assert_eq!(env["http_proxy"], s["egress_proxy"], "{name}");
        assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1,::1,metadata.google.internal,169.254.169.254");
        assert_eq!(env["MOAT_URL_BACKEND"], "https://backend-100000000001.us-central1.run.app");
        // The pid in the status table is the process that answers.
        assert!(up.stdout.iter().any(|l| l.starts_with(name) && l.contains(&s["pid"].to_string())));
    }
    // Plain env values of the service spec are passed; the contract's are moat's.
    assert_eq!(json(instance(&up, "caller"), "/env")["GREETING"], "hello");
    // Each metadata server hands out its own service account's identity only.
    let caller = service(&up, "caller");
    let mds: SocketAddr = caller["metadata"].as_str().unwrap().parse().unwrap();
    let mut s = TcpStream::connect(mds).unwrap();
    write!(
        s,
        "GET /computeMetadata/v1/instance/service-accounts/default/email HTTP/1.0\r\nHost: metadata.google.internal\r\nMetadata-Flavor: Google\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.ends_with("caller@up-proj.iam.gserviceaccount.com"), "{raw}");
}

#[test]
fn service_to_service_calls_take_the_callers_egress() {
    let up = start();
    // caller egresses all traffic through the VPC: internal ingress admits it, IAM permits it,
    // and the backend sees the caller's identity.
    let out = json(instance(&up, "caller"), "/call?service=backend");
    assert_eq!(out["status"], 200, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["caller"], "caller@up-proj.iam.gserviceaccount.com");
    // lonely has no VPC egress: its call comes from the internet, and internal ingress answers
    // 404 although lonely holds the invoker role.
    let out = json(instance(&up, "lonely"), "/call?service=backend");
    assert_eq!(out["status"], 404, "{out}");
    // From the internet listener, backend does not exist either.
    let (status, _) = get(up.internet, "backend-100000000001.us-central1.run.app", "/");
    assert_eq!(status, 404);
    // Both decisions are in the log, with the origin each call resolved to (the log is
    // written every few milliseconds, so it may trail the responses a little).
    let deadline = Instant::now() + Duration::from_secs(5);
    let records: Vec<Value> = loop {
        let log = std::fs::read_to_string(up.state.join("decisions.jsonl")).unwrap();
        let records: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let has = |listener: &str| records.iter().any(|r| r["listener"] == listener);
        if (has("service:caller") && has("service:lonely")) || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let from = |listener: &str| records.iter().find(|r| r["listener"] == listener).cloned().unwrap();
    assert_eq!(from("service:caller")["network_origin"], "vpc:up-proj/vpc");
    assert_eq!(from("service:caller")["status"], 200);
    assert_eq!(from("service:lonely")["network_origin"], "internet");
    assert_eq!(from("service:lonely")["status"], 404);
}

#[test]
fn a_crashed_instance_is_restarted_and_sigterm_stops_everything() {
    let mut up = start();
    let before = service(&up, "caller");
    let old_pid = u32::try_from(before["pid"].as_u64().unwrap()).unwrap();
    let addr = instance(&up, "caller");
    // The crash closes the connection without a response.
    if let Ok(mut s) = TcpStream::connect(addr) {
        let _ = write!(s, "GET /crash HTTP/1.0\r\nHost: x\r\n\r\n");
        let _ = s.read_to_end(&mut Vec::new());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let s = service(&up, "caller");
        if s["state"] == "ready" && s["pid"].as_u64() != Some(u64::from(old_pid)) {
            break s;
        }
        assert!(Instant::now() < deadline, "caller was not restarted: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(after["restarts"].as_u64().unwrap() >= 1, "{after}");
    assert!(!alive(old_pid), "the crashed instance is gone");
    // The new instance serves through the front door again.
    assert_eq!(json(instance(&up, "caller"), "/call?service=backend")["status"], 200);

    let pids: Vec<u32> = json(up.admin, "/status")["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| u32::try_from(s["pid"].as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    assert!(signal("TERM", up.child.id()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = up.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "moat did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    for pid in pids {
        assert!(!alive(pid), "instance {pid} outlived moat");
    }
}

/// A moat that is SIGKILLed cannot stop its instances; the next `moat up` on the same state
/// kills them (by the groups it wrote down) before it starts its own.
#[test]
fn instances_a_killed_moat_left_are_killed_by_the_next_run() {
    let mut first = start();
    let pids = |up: &Up| -> Vec<u32> {
        json(up.admin, "/status")["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| u32::try_from(s["pid"].as_u64().unwrap()).unwrap())
            .collect()
    };
    let left = pids(&first);
    assert_eq!(left.len(), 3);
    assert!(signal("KILL", first.child.id()));
    let _ = first.child.wait();
    // Should the test fail from here on, the leftovers go with it.
    struct Reap(Vec<u32>);
    impl Drop for Reap {
        fn drop(&mut self) {
            for pid in &self.0 {
                signal("KILL", *pid);
            }
        }
    }
    let _reap = Reap(left.clone());
    assert!(left.iter().all(|p| alive(*p)), "SIGKILL leaves the instances running");

    let second = start_in(first.state.clone());
    for pid in &left {
        // Killed; a zombie until whoever adopted it reaps it (PID 1 of a container may never).
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned)));
        assert!(
            matches!(state.as_deref(), None | Some("Z" | "X")),
            "instance {pid} of the killed moat still runs: {state:?}"
        );
    }
    assert!(pids(&second).iter().all(|p| alive(*p) && !left.contains(p)));
}

#[test]
fn serve_needs_an_upstream_for_every_service() {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", PROJECT])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(err.contains("these services have no upstream URL: backend, caller, lonely"), "{err}");
    assert!(!Path::new(PROJECT).join(".moat").exists());
}
