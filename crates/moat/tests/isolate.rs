//! `moat up --isolate` end to end on a one-service project with a stdlib Python workload: the
//! front door reaches it, it reaches its metadata server and its egress proxy, and a raw socket
//! to a host port moat did not open into its namespace goes nowhere. Where network namespaces
//! cannot be created (not Linux, not root) the test says so and passes; where they can, it runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/http.rs"]
mod http;
#[path = "common/listeners.rs"]
mod listeners;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::get;
use listeners::{listener_addr, read_until_ready};
use moat_server::runtime::NetNs;
use serde_json::Value;

const MOAT_YAML: &str = "project:\n  id: iso-proj\n  number: \"100000000002\"\n  region: us-central1\nlisteners:\n  internet: 127.0.0.1:0\nrun:\n  solo:\n    command: [python3, app.py]\n    dir: app\n";

const SERVICE: &str = r"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: all
    run.googleapis.com/invoker-iam-disabled: 'true'
  name: solo
  namespace: '100000000002'
  labels:
    cloud.googleapis.com/location: us-central1
spec:
  template:
    spec:
      containers:
      - image: solo
      serviceAccountName: solo@iso-proj.iam.gserviceaccount.com
";

/// GET /: hello. GET /env. GET /mds: its service account's email from its metadata server.
/// GET /raw?port=N: a plain socket to 127.0.0.1:N. GET /proxy: its own URL through
/// $HTTP_PROXY (urllib reads it), any HTTP status.
const APP: &str = r#"
import json, os, socket, urllib.error, urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def raw(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return "connected"
    except OSError as e:
        return type(e).__name__

def mds():
    req = urllib.request.Request(
        "http://" + os.environ["GCE_METADATA_HOST"] + "/computeMetadata/v1/instance/service-accounts/default/email",
        headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()

def proxy():
    url = "http://" + os.environ["MOAT_URL_SOLO"].split("://", 1)[1] + "/"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return type(e).__name__

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path, _, query = self.path.partition("?")
        q = urllib.parse.parse_qs(query)
        if path == "/env":
            out = dict(os.environ)
        elif path == "/mds":
            out = mds()
        elif path == "/raw":
            out = raw(int(q["port"][0]))
        elif path == "/proxy":
            out = proxy()
        else:
            out = "hello"
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A running `moat up --isolate`, stopped (with everything it started) when dropped.
struct Up {
    child: Child,
    dir: PathBuf,
    stdout: Vec<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn project() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-isolate-{}-{:?}", std::process::id(), Instant::now()));
    let write = |path: &str, text: &str| {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("moat.yaml", MOAT_YAML);
    write("services/solo.yaml", SERVICE);
    write("app/app.py", APP);
    dir
}

fn start(dir: &Path) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["up", "--isolate"])
        .arg(dir)
        .arg("--state")
        .arg(dir.join(".moat"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("moat starts");
    let printed = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(60));
    let Some(stdout) = printed.ready else {
        let _ = child.kill();
        panic!("moat up --isolate printed no `ready:` line within 60 s:\n{}", printed.all.lock().unwrap().join("\n"));
    };
    Up { child, dir: dir.to_path_buf(), stdout }
}

#[test]
fn an_isolated_instance_gets_out_only_through_moat() {
    if let Err(why) = NetNs::available() {
        eprintln!("network namespaces unavailable: {why}; run as root on Linux to test --isolate");
        return;
    }
    let up = start(&project());
    assert!(up.stdout.iter().any(|l| l.starts_with("isolation:")), "{}", up.stdout.join("\n"));
    assert!(up.stdout.iter().any(|l| l.starts_with("ready: 1/1")), "{}", up.stdout.join("\n"));
    let admin = listener_addr(&up.stdout, "admin");
    let internet = listener_addr(&up.stdout, "internet");
    let (_, status) = get(admin, "localhost", "/status");
    let status: Value = serde_json::from_str(&status).unwrap();
    let solo = status["services"].as_array().unwrap().iter().find(|s| s["service"] == "solo").unwrap().clone();
    assert_eq!(solo["state"], "ready", "{solo}");
    let host = solo["url"].as_str().unwrap().split("://").nth(1).unwrap().to_owned();
    let call = |path: &str| {
        let (code, body) = get(internet, &host, path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };

    // The front door reaches the instance, through the relay out of its namespace.
    assert_eq!(call("/"), "hello");
    // Inside, the metadata server's address is a relay that keeps its port, so the instance is
    // told the same address as without isolation, and it answers for its own service account.
    let env = call("/env");
    assert_eq!(env["GCE_METADATA_HOST"], solo["metadata"], "{env}");
    assert_eq!(call("/mds"), "solo@iso-proj.iam.gserviceaccount.com");
    // Through HTTP_PROXY the workload reaches its egress proxy, which answers (whatever it
    // decides).
    let via_proxy = call("/proxy");
    assert!(via_proxy.as_u64().is_some_and(|c| (100..600).contains(&c)), "no HTTP answer via the proxy: {via_proxy}");
    // A raw socket to a host port moat did not open into the namespace reaches nothing: a
    // listener of this test, moat's own internet and admin listeners.
    let host_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for port in [host_listener.local_addr().unwrap().port(), internet.port(), admin.port()] {
        assert_eq!(call(&format!("/raw?port={port}")), "ConnectionRefusedError", "port {port}");
    }
    // The same host listener is there for a process outside the namespace.
    assert!(TcpStream::connect(host_listener.local_addr().unwrap()).is_ok());
}

/// Where namespaces are available (as root), the refusal is tested by running moat as
/// `nobody` (setpriv); where they are not, by running it as it is.
#[test]
fn without_namespaces_isolate_refuses_to_start() {
    let moat = env!("CARGO_BIN_EXE_moat");
    let as_nobody = NetNs::available().is_ok();
    let mut cmd = if as_nobody {
        if Command::new("setpriv").arg("--version").output().is_err() {
            eprintln!("setpriv is not installed: cannot drop privileges to test the refusal of --isolate");
            return;
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", moat]);
        c
    } else {
        Command::new(moat)
    };
    let dir = project();
    let out = cmd.args(["up", "--isolate"]).arg(&dir).arg("--state").arg(dir.join(".moat")).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let raw = String::from_utf8_lossy(&out.stderr);
    // Where it ran as `nobody` on Linux the reason is known (EPERM): the whole message is pinned.
    if as_nobody {
        insta::assert_snapshot!("up_isolate_refused_without_cap_sys_admin", raw);
    }
    // miette wraps lines and draws a margin: compare words.
    let stderr: String = raw.split_whitespace().filter(|w| *w != "│" && *w != "×").collect::<Vec<_>>().join(" ");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("network namespaces are not available here"), "{stderr}");
    assert!(stderr.contains("unshare"), "says what failed: {stderr}");
    assert!(stderr.contains("CAP_SYS_ADMIN"), "{stderr}");
    assert!(stderr.contains("without --isolate"), "{stderr}");
}
