//! Crash safety of the secret store, end to end: 1,000 `addVersion` calls over HTTP from
//! several concurrent writers while `moat up` is SIGKILLed at three random points and
//! restarted on the same state directory. A write the API acknowledged (200) is durable: after
//! the last restart every acknowledged version is there, ENABLED, with exactly its value, and
//! the store opened every time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/listeners.rs"]
mod listeners;
#[path = "common/moat_up.rs"]
mod moat_up;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use moat_up::{TempProject, Up};
use serde_json::{Value, json};

const WRITES: usize = 1000;
const WRITERS: usize = 8;
const KILLS: usize = 3;

/// One HTTP/1.1 request on a fresh connection: (status, body); `None` when the connection
/// failed or was cut (moat was killed mid-request: the write is not acknowledged).
fn request(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// A small deterministic generator, seeded from the clock (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn acknowledged_versions_survive_sigkill() {
    let started = Instant::now();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    // Kill once this many writes are acknowledged: three distinct points spread over the run.
    let mut kill_at: Vec<usize> = (0..KILLS).map(|i| 100 + i * 280 + (rng.next() % 200) as usize).collect();
    kill_at.sort_unstable();
    println!("killing after {kill_at:?} acknowledged writes");

    let project = TempProject::new("secrets-crash");
    let stderr = |run: usize| project.dir.join(format!("moat-{run}.stderr"));
    let mut up = Up::start(&project.dir, &stderr(0));
    let token = std::fs::read_to_string(project.state().join("secrets/admin.token")).unwrap().trim().to_owned();
    let base = "/v1/projects/sec-proj/secrets";
    let (status, _) = request(up.secrets, "POST", &format!("{base}?secretId=crash"), &token, "{}").unwrap();
    assert_eq!(status, 200);

    let addr = Arc::new(RwLock::new(up.secrets));
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let failed_requests = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (addr, acked, next, done, failed) = (
                Arc::clone(&addr),
                Arc::clone(&acked),
                Arc::clone(&next),
                Arc::clone(&done),
                Arc::clone(&failed_requests),
            );
            let token = token.clone();
            let path = format!("{base}/crash:addVersion");
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let value = format!("value-{w}-{i}-{}", i * 7919 % 1000);
                    let body = json!({"payload": {"data": base64(value.as_bytes())}}).to_string();
                    let target = *addr.read().unwrap();
                    match request(target, "POST", &path, &token, &body) {
                        Some((200, v)) => {
                            let name = v["name"].as_str().unwrap();
                            let version: u64 = name.rsplit('/').next().unwrap().parse().unwrap();
                            let mut acked = acked.lock().unwrap();
                            let previous = acked.insert(version, value);
                            assert!(previous.is_none(), "version {version} acknowledged twice");
                            if acked.len() >= WRITES {
                                done.store(true, Ordering::SeqCst);
                            }
                        }
                        Some((status, v)) => panic!("addVersion answered {status}: {v}"),
                        // moat is down: not acknowledged; wait for the restart.
                        None => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        })
        .collect();

    for (run, at) in kill_at.iter().enumerate() {
        while acked.lock().unwrap().len() < *at {
            assert!(
                started.elapsed() < Duration::from_secs(50),
                "too slow: {} writes acknowledged",
                acked.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        up.kill9();
        println!("killed after {} acknowledged writes", acked.lock().unwrap().len());
        up = Up::start(&project.dir, &stderr(run + 1));
        *addr.write().unwrap() = up.secrets;
    }
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    println!("{} acknowledged, {} requests cut by a kill", acked.len(), failed_requests.load(Ordering::SeqCst));
    assert!(acked.len() >= WRITES);

    // One last kill and restart, so that every acknowledged write also survived a crash.
    up.kill9();
    let up = Up::start(&project.dir, &stderr(KILLS + 1));
    for (version, value) in &acked {
        let path = format!("{base}/crash/versions/{version}");
        let (status, v) = request(up.secrets, "GET", &path, &token, "").unwrap();
        assert_eq!((status, v["state"].as_str()), (200, Some("ENABLED")), "version {version}: {v}");
        let (status, v) = request(up.secrets, "GET", &format!("{path}:access"), &token, "").unwrap();
        assert_eq!(status, 200, "version {version}: {v}");
        assert_eq!(unbase64(v["payload"]["data"].as_str().unwrap()), value.as_bytes(), "version {version}");
    }
    // The store opened cleanly every time: each run got to `ready:`, and said nothing of trouble.
    for run in 0..=KILLS + 1 {
        let err = std::fs::read_to_string(stderr(run)).unwrap();
        for word in ["error", "cannot", "corrupt", "repair"] {
            assert!(!err.to_lowercase().contains(word), "run {run}'s stderr mentions `{word}`:\n{err}");
        }
    }
    println!("done in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

fn base64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unbase64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
