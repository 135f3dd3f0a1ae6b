//! The egress proxy end to end (spec/cloudrun.md §9 items 3 and 15): `moat up` on a project of
//! stdlib Python workloads, each calling out through its own `egress:NAME` proxy, with local
//! stand-ins for an outside private host (10.1.2.3), a public one (203.0.113.10) and a TCP echo
//! service, and Direct VPC egress in each mode, with and without Cloud NAT and firewall rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/http.rs"]
mod http;
#[path = "common/listeners.rs"]
mod listeners;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::enc;
use listeners::{listener_addr, read_until_ready};
use serde_json::Value;

const SERVICES: [&str; 6] = ["api", "plain", "ranges", "all", "natted", "locked"];

/// An HTTP server answering every request with `stand-in GET PATH (Host: HOST)`.
fn http_stand_in() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                let mut host = String::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("host:") {
                        host = v.trim().to_owned();
                    }
                }
                let body = format!("stand-in {} (Host: {host})", line.trim_end());
                let mut s = s;
                let _ =
                    write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            });
        }
    });
    addr
}

/// A TCP server echoing every byte.
fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = s;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
    addr
}

fn service_yaml(name: &str, ingress: &str, interfaces: Option<(&str, &str)>) -> String {
    let template = match interfaces {
        None => String::new(),
        Some((iface, egress)) => format!(
            "    metadata:\n      annotations:\n        run.googleapis.com/network-interfaces: '{iface}'\n        run.googleapis.com/vpc-access-egress: {egress}\n"
        ),
    };
    format!(
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: {ingress}
    run.googleapis.com/invoker-iam-disabled: 'true'
  name: {name}
  namespace: '300000000003'
  labels:
    cloud.googleapis.com/location: us-central1
spec:
  template:
{template}    spec:
      containers:
      - image: {name}
      serviceAccountName: {name}@eg-proj.iam.gserviceaccount.com
"
    )
}

/// The test project in a fresh directory, its outside hosts standing in at `http` and `tcp`.
fn write_project(name: &str, http: SocketAddr, tcp: SocketAddr) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-egress-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("services")).unwrap();
    let run: String = SERVICES.iter().map(|s| format!("  {s}: {{command: [python3, app.py]}}\n")).collect();
    let moat = format!(
        r#"project: {{id: eg-proj, number: "300000000003", region: us-central1}}
networks:
  - name: vpc
    subnets:
      - {{name: run, region: us-central1, range: 10.8.0.0/26, private_google_access: true}}
  - name: natvpc
    nat: true
    subnets:
      - {{name: run2, region: us-central1, range: 10.9.0.0/26, private_google_access: true}}
    firewall:
      - {{name: deny-locked, direction: egress, action: deny, priority: 100, destination_ranges: [203.0.113.0/24], target_tags: [locked]}}
      - {{name: deny-8443, direction: egress, action: deny, priority: 200, destination_ranges: [203.0.113.0/24], ports: ["8443"]}}
egress:
  hosts:
    - {{name: db.internal, address: 10.1.2.3, local: "{http}"}}
    - {{name: www.example.com, address: 203.0.113.10, local: "{http}"}}
    - {{name: echo.example.com, address: 203.0.113.20, local: "{tcp}"}}
    - {{name: echo.internal, address: 10.1.2.4, local: "{tcp}"}}
listeners:
  internet: 127.0.0.1:0
run:
{run}"#
    );
    std::fs::write(dir.join("moat.yaml"), moat).unwrap();
    let vpc = r#"[{"network": "vpc", "subnetwork": "run"}]"#;
    let nat = r#"[{"network": "natvpc", "subnetwork": "run2"}]"#;
    let locked = r#"[{"network": "natvpc", "subnetwork": "run2", "tags": ["locked"]}]"#;
    let services = [
        ("api", "internal", None),
        ("plain", "all", None),
        ("ranges", "all", Some((vpc, "private-ranges-only"))),
        ("all", "all", Some((vpc, "all-traffic"))),
        ("natted", "all", Some((nat, "all-traffic"))),
        ("locked", "all", Some((locked, "all-traffic"))),
    ];
    for (name, ingress, iface) in services {
        std::fs::write(dir.join(format!("services/{name}.yaml")), service_yaml(name, ingress, iface)).unwrap();
    }
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/egress/app.py");
    std::fs::copy(app, dir.join("app.py")).unwrap();
    dir
}

/// A running `moat up` on the test project; stopped, and its directory removed, when dropped.
struct Up {
    child: Child,
    stdout: Vec<String>,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(name: &str) -> Up {
    let dir = write_project(name, http_stand_in(), tcp_echo());
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("up")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("moat starts");
    let printed = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(60));
    let Some(stdout) = printed.ready else {
        let _ = child.kill();
        panic!("moat up printed no `ready:` line within 60 s:\n{}", printed.all.lock().unwrap().join("\n"));
    };
    assert!(stdout.iter().any(|l| l.starts_with("ready: 6/6")), "{}", stdout.join("\n"));
    let admin = listener_addr(&stdout, "admin");
    Up { child, stdout, admin, dir }
}

impl Up {
    fn status(&self, name: &str) -> Value {
        let all = get(self.admin, "/status");
        all["services"].as_array().unwrap().iter().find(|s| s["service"] == name).cloned().unwrap()
    }

    fn instance(&self, name: &str) -> SocketAddr {
        let s = self.status(name);
        assert_eq!(s["state"], "ready", "{s}");
        SocketAddr::from(([127, 0, 0, 1], u16::try_from(s["port"].as_u64().unwrap()).unwrap()))
    }

    /// `from` GETs `url` through its proxy: {"status", "reason", "body"}.
    fn fetch(&self, from: &str, url: &str) -> Value {
        let out = get(self.instance(from), &format!("/fetch?url={}", enc(url)));
        assert!(out.get("error").is_none(), "{from} → {url}: {out}");
        out
    }

    fn call(&self, from: &str, service: &str) -> u64 {
        let out = get(self.instance(from), &format!("/call?service={service}"));
        out["status"].as_u64().unwrap_or_else(|| panic!("{from} → {service}: {out}"))
    }

    fn tunnel(&self, from: &str, to: &str, data: &str) -> Value {
        get(self.instance(from), &format!("/tunnel?to={}&data={}", enc(to), enc(data)))
    }

    /// The egress records of decisions.jsonl once `done` holds for them (the log is written
    /// every few milliseconds).
    fn egress_records(&self, done: impl Fn(&[Value]) -> bool) -> (Vec<Value>, String) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(self.dir.join(".moat/decisions.jsonl")).unwrap_or_default();
            let records: Vec<Value> = log
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|r| r["kind"] == "egress")
                .collect();
            if done(&records) || Instant::now() > deadline {
                return (records, log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn expect(out: &Value, status: u64, reason: Option<&str>, what: &str) {
    assert_eq!(out["status"], status, "{what}: {out}");
    assert_eq!(out["reason"].as_str(), reason, "{what}: {out}");
}

#[test]
fn each_instance_gets_its_own_egress_proxy() {
    let up = start("env");
    for name in SERVICES {
        let addr = listener_addr(&up.stdout, &format!("egress:{name}"));
        // The front door listener for its calls is still there, behind the proxy.
        let _ = listener_addr(&up.stdout, &format!("service:{name}"));
        let url = format!("http://{addr}");
        assert_eq!(up.status(name)["egress_proxy"], url.as_str());
        let env = get(up.instance(name), "/env");
        for k in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"] {
            assert_eq!(env[k], url.as_str(), "{name} {k}");
        }
        assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1,::1,metadata.google.internal,169.254.169.254");
    }
}

/// §9 item 3: without VPC egress a caller is external to an internal service; Direct VPC
/// egress `all-traffic` (subnet with Private Google Access) makes it internal;
/// `private-ranges-only` sends run.app direct, so it is external again.
#[test]
fn calls_to_an_internal_service_depend_on_the_callers_egress() {
    let up = start("call");
    assert_eq!(up.call("plain", "api"), 404);
    assert_eq!(up.call("all", "api"), 200);
    assert_eq!(up.call("ranges", "api"), 404);
    let (records, _) = up.egress_records(|r| r.iter().filter(|r| r["route"] == "front-door").count() >= 3);
    let to_api: Vec<&Value> = records.iter().filter(|r| r["route"] == "front-door").collect();
    assert_eq!(to_api.len(), 3, "{records:?}");
    for r in to_api {
        assert_eq!(r["host"], "api-300000000003.us-central1.run.app", "{r}");
        // Handed to the front door listener for the caller's calls.
        let door = listener_addr(&up.stdout, &format!("service:{}", r["caller"].as_str().unwrap()));
        assert_eq!(r["connected_to"], door.to_string(), "{r}");
    }
}

/// §9 item 15, with the VPC's NAT and firewall rules.
#[test]
fn destinations_are_decided_by_the_egress_mode_nat_and_firewall() {
    let up = start("dest");
    // Private destinations: unreachable without VPC access, through the VPC otherwise.
    let out = up.fetch("plain", "http://db.internal/rows?token=SECRET-QUERY");
    expect(&out, 403, Some("egress.private_unreachable"), "plain → db.internal");
    assert!(out["body"].as_str().unwrap().contains("egress.private_unreachable"), "{out}");
    let out = up.fetch("ranges", "http://db.internal/rows");
    expect(&out, 200, None, "ranges → db.internal");
    assert_eq!(out["body"], "stand-in GET /rows HTTP/1.1 (Host: db.internal)");
    // Public destinations: direct without VPC access and with private-ranges-only; through the
    // VPC with all-traffic, which needs Cloud NAT.
    expect(&up.fetch("plain", "http://www.example.com/"), 200, None, "plain → www");
    expect(&up.fetch("ranges", "http://www.example.com/"), 200, None, "ranges → www");
    expect(&up.fetch("all", "http://www.example.com/"), 403, Some("egress.no_nat"), "all → www");
    expect(&up.fetch("natted", "http://www.example.com/"), 200, None, "natted → www");
    // Firewall deny rules: by target tag, and by port.
    expect(&up.fetch("locked", "http://www.example.com/"), 403, Some("egress.firewall.deny"), "locked → www");
    expect(&up.fetch("natted", "http://www.example.com:8443/"), 403, Some("egress.firewall.deny"), "natted → :8443");

    let (records, log) = up.egress_records(|r| r.len() >= 8);
    let find = |caller: &str, host: &str, port: u64| {
        records
            .iter()
            .find(|r| r["caller"] == caller && r["host"] == host && r["port"] == port)
            .unwrap_or_else(|| panic!("no record {caller} → {host}:{port} in {records:#?}"))
    };
    let denied = find("plain", "db.internal", 80);
    assert_eq!(denied["method"], "GET");
    assert_eq!(denied["path"], "/rows");
    assert_eq!(denied["address"], "10.1.2.3");
    assert_eq!(denied["route"], "direct");
    assert_eq!(denied["effect"], "deny");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["connected_to"], Value::Null);
    assert!(denied["time"].as_str().unwrap().ends_with('Z'));
    assert!(denied["latency_ms"].as_f64().is_some());
    let codes: Vec<&str> = denied["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes.last(), Some(&"egress.private_unreachable"), "{denied}");
    let via_vpc = find("ranges", "db.internal", 80);
    assert_eq!(via_vpc["route"], "vpc:eg-proj/vpc");
    assert_eq!(via_vpc["effect"], "allow");
    assert_eq!(find("locked", "www.example.com", 80)["rule"], "deny-locked");
    assert_eq!(find("natted", "www.example.com", 8443)["rule"], "deny-8443");
    assert_eq!(find("natted", "www.example.com", 80)["route"], "vpc:eg-proj/natvpc");
    // Neither the workload's token nor the query string reaches the log.
    assert!(!log.contains("SECRET-TOKEN-VALUE"), "{log}");
    assert!(!log.contains("SECRET-QUERY"), "{log}");
}

#[test]
fn connect_tunnels_bytes_only_where_egress_allows() {
    let up = start("tunnel");
    let out = up.tunnel("plain", "echo.example.com:443", "ping through the tunnel");
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["echo"], "ping through the tunnel");
    let out = up.tunnel("plain", "echo.internal:443", "x");
    assert_eq!(out["status"], 403, "{out}");
    assert!(
        out["head"].as_str().unwrap().to_ascii_lowercase().contains("x-moat-egress-reason: egress.private_unreachable")
    );
    let out = up.tunnel("plain", "api-300000000003.us-central1.run.app:443", "x");
    assert_eq!(out["status"], 403, "{out}");
    assert!(out["head"].as_str().unwrap().contains("egress.service_tls"), "{out}");
    let (records, _) = up.egress_records(|r| r.iter().filter(|r| r["method"] == "CONNECT").count() >= 3);
    let tunnel = records.iter().find(|r| r["host"] == "echo.example.com").unwrap();
    assert_eq!(tunnel["method"], "CONNECT");
    assert_eq!(tunnel["route"], "direct");
    assert_eq!(tunnel["path"], Value::Null);
    assert_eq!(tunnel["bytes_up"], 23);
    assert_eq!(tunnel["bytes_down"], 23);
}

#[test]
fn the_metadata_server_answers_in_every_egress_mode() {
    let up = start("mds");
    for name in ["plain", "ranges", "all", "natted", "locked"] {
        let email = format!("{name}@eg-proj.iam.gserviceaccount.com");
        let direct = get(up.instance(name), "/mds");
        assert_eq!(direct["status"], 200, "{name}: {direct}");
        assert_eq!(direct["body"], email.as_str());
        for host in ["metadata.google.internal", "169.254.169.254"] {
            let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/email");
            let out = get(up.instance(name), &format!("/fetch?flavor=1&url={}", enc(&url)));
            assert_eq!(out["status"], 200, "{name} {host}: {out}");
            assert_eq!(out["body"], email.as_str(), "{name} {host}");
        }
    }
    let (records, _) = up.egress_records(|r| r.iter().filter(|r| r["route"] == "metadata").count() >= 10);
    assert_eq!(records.iter().filter(|r| r["route"] == "metadata" && r["effect"] == "allow").count(), 10);
}

/// `GET path`: the JSON body.
fn get(addr: SocketAddr, path: &str) -> Value {
    http::get_json(addr, path).unwrap_or_else(|e| panic!("{e}"))
}
