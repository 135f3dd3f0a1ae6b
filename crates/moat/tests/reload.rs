//! Config reload under load, end to end: `moat serve` on a temporary project in front of a local
//! upstream, four keep-alive clients for the whole test, twenty reloads through the file watch
//! (IAM and moat.yaml in turn, one of them invalid), SIGHUP, a change that needs a restart, and
//! the `/metrics` scrape. Everything listens on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/listeners.rs"]
mod listeners;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listeners::{listener_addr, read_until_ready};

const HOST: &str = "api.run.localhost";
const OPEN: &str = r#"{"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}"#;
const CLOSED: &str = r#"{"bindings": []}"#;
const SERVICE: &str = "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: api
  namespace: '100000000002'
  labels:
    cloud.googleapis.com/location: us-central1
spec:
  template:
    spec:
      containers:
      - image: api
";

fn moat_yaml(upstream: SocketAddr, domain: &str) -> String {
    format!(
        "project:\n  id: reload-proj\n  number: \"100000000002\"\n  region: us-central1\nlisteners:\n  internet: 127.0.0.1:0\nrun:\n  api:\n    url: http://{upstream}\ndomain_mappings:\n  - domain: {domain}\n    service: api\n"
    )
}

/// Replaces `path` in one rename, as editors that save atomically do. The temporary name
/// starts with a dot, which moat ignores.
fn write(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An upstream answering every request with 200 on keep-alive connections.
fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut s = s;
                loop {
                    let mut line = String::new();
                    let mut blank = false;
                    while !blank {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        blank = line == "\r\n";
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(Self { r: BufReader::new(s) })
    }

    fn get(&mut self, host: &str) -> std::io::Result<u16> {
        // One write: a request split over several segments waits out Nagle and delayed ACKs.
        self.r.get_mut().write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
        let mut status = 0;
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if status == 0 {
                status = l.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok(status)
    }
}

fn once(addr: SocketAddr, host: &str) -> u16 {
    Client::connect(addr).and_then(|mut c| c.get(host)).unwrap_or(0)
}

/// A running `moat serve` with its stderr collected (request lines left out).
struct Serve {
    child: Child,
    dir: PathBuf,
    internet: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Serve {
    fn count(&self, prefix: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Until a reload has ended (applied or refused) since `before` outcomes.
    fn wait_outcome(&self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.outcomes() <= before {
            assert!(Instant::now() < deadline, "no reload within 5 s:\n{}", self.log.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn outcomes(&self) -> usize {
        self.count("moat: reloaded (") + self.count("moat: reload refused")
    }

    /// Until `host` answers `want` (the reload that implies it has been applied).
    fn expect(&self, host: &str, want: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = once(self.internet, host);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{host}: {got}, want {want}:\n{}", self.log.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn start(upstream: SocketAddr) -> Serve {
    let dir = std::env::temp_dir().join(format!("moat-reload-test-{}-{:?}", std::process::id(), Instant::now()));
    std::fs::create_dir_all(dir.join("services")).unwrap();
    std::fs::create_dir_all(dir.join("iam")).unwrap();
    std::fs::write(dir.join("moat.yaml"), moat_yaml(upstream, "d0.example.com")).unwrap();
    std::fs::write(dir.join("services/api.yaml"), SERVICE).unwrap();
    std::fs::write(dir.join("iam/api.json"), OPEN).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("serve")
        .arg(&dir)
        .arg("--state")
        .arg(dir.join(".moat"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let err = child.stderr.take().unwrap();
    std::thread::spawn({
        let log = Arc::clone(&log);
        move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let request = line.split_whitespace().nth(1).is_some_and(|w| w.len() == 3 && w.parse::<u16>().is_ok());
                if !(line.starts_with("moat: ") && request) {
                    log.lock().unwrap().push(line);
                }
            }
        }
    });
    let Some(stdout) = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(60)).ready else {
        let _ = child.kill();
        panic!("moat printed no `ready:` line within 60 s");
    };
    let addr = |origin: &str| listener_addr(&stdout, origin);
    Serve { internet: addr("internet"), admin: addr("admin"), child, dir, log }
}

/// Four clients on keep-alive connections until `stop`; every status must be 200 or 403 (what
/// the IAM file allows, before or after the swap) and no connection may fail.
fn load(addr: SocketAddr, stop: &Arc<AtomicBool>) -> (Vec<std::thread::JoinHandle<Vec<String>>>, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let threads = (0..4)
        .map(|_| {
            let (stop, sent) = (Arc::clone(stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut client = Client::connect(addr).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(HOST) {
                        Ok(200 | 403) => {}
                        Ok(other) => failures.push(format!("status {other}")),
                        Err(e) => {
                            failures.push(format!("connection error: {e}"));
                            client = Client::connect(addr).unwrap();
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    (threads, sent)
}

fn scrape(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let upstream = upstream();
    let moat = start(upstream);
    let (yaml, iam) = (moat.dir.join("moat.yaml"), moat.dir.join("iam/api.json"));
    moat.expect(HOST, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let (clients, sent) = load(moat.internet, &stop);

    let mut open = true;
    for i in 0..20 {
        let before = moat.outcomes();
        match i {
            // Invalid JSON: refused with its diagnostic, the previous config (closed) serves.
            10 => {
                write(&iam, r#"{"bindings": ["#);
                moat.wait_outcome(before);
                assert_eq!(moat.count("moat: reload refused"), 1);
                moat.expect(HOST, 403);
            }
            // The fix, with an invoker binding: 403 becomes 200.
            11 => {
                assert!(!open);
                open = true;
                write(&iam, OPEN);
                moat.wait_outcome(before);
                moat.expect(HOST, 200);
            }
            i if i % 2 == 0 => {
                open = !open;
                write(&iam, if open { OPEN } else { CLOSED });
                moat.wait_outcome(before);
                moat.expect(HOST, if open { 200 } else { 403 });
            }
            // moat.yaml: the domain mapping moves, the old domain is gone.
            i => {
                write(&yaml, &moat_yaml(upstream, &format!("d{i}.example.com")));
                moat.wait_outcome(before);
                let want = if open { 200 } else { 403 };
                moat.expect(&format!("d{i}.example.com"), want);
                assert_eq!(once(moat.internet, "d0.example.com"), 404);
            }
        }
    }

    // SIGHUP reloads without any change on disk.
    let before = moat.count("moat: reloaded (");
    assert!(Command::new("kill").args(["-HUP", &moat.child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while moat.count("moat: reloaded (") == before {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(10));
    }

    // A new upstream address needs a restart: refused as a whole, the old upstream serves.
    let before = moat.outcomes();
    let moved = moat_yaml(upstream, "d19.example.com").replace(&upstream.to_string(), "127.0.0.1:9");
    write(&yaml, &moved);
    moat.wait_outcome(before);
    moat.expect(HOST, 200);

    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent > 1000, "only {sent} requests were sent");
    println!("{sent} requests under load, 0 failed");

    let log = moat.log.lock().unwrap().join("\n");
    assert!(moat.count("moat: reloaded (1 services)") >= 20, "{log}");
    assert_eq!(moat.count("moat: reload refused"), 2, "{log}");
    // The diagnostic names the file, and comes before the refusal.
    assert!(log.contains("iam/api.json"), "{log}");
    assert!(
        log.contains(
            "moat: needs a restart: `run.api` changed\nmoat: reload refused, still serving the previous config"
        ),
        "{log}"
    );

    let metrics = scrape(moat.admin);
    assert!(sample(&metrics, r#"moat_requests_total{service="api",layer="",status="200",effect="allow"}"#) > 0.0);
    assert!(
        sample(&metrics, r#"moat_requests_total{service="api",layer="authorization",status="403",effect="deny"}"#)
            > 0.0
    );
    assert!(sample(&metrics, r#"moat_requests_total{service="",layer="route",status="404",effect="deny"}"#) >= 9.0);
    assert!(sample(&metrics, r#"moat_reloads_total{result="applied"}"#) >= 20.0);
    assert_eq!(sample(&metrics, r#"moat_reloads_total{result="invalid"}"#), 1.0);
    assert_eq!(sample(&metrics, r#"moat_reloads_total{result="needs_restart"}"#), 1.0);
    assert_eq!(sample(&metrics, r#"moat_instances{service="api",state="upstream"}"#), 1.0);
    assert_eq!(sample(&metrics, r#"moat_instance_restarts_total{service="api"}"#), 0.0);
    let count = sample(&metrics, r#"moat_request_duration_seconds_count{service="api"}"#);
    assert!(count >= sent as f64, "{count} < {sent}");
}
