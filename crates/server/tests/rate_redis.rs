//! Rate-limit state shared through a real `redis-server` (Debian package `redis-server`),
//! started by each test on a free loopback port with no persistence: two front doors, each
//! with its own `RedisRateState` and connection, stand for two moat replicas. They share one
//! throttle budget and one ban list; with Redis stopped, `on_error: closed` refuses
//! rate-limited requests with `edge.rate_state_unavailable` and `on_error: open` admits them
//! with `edge.rate_state_fail_open`, bans already seen hold either way, nothing panics, and
//! counting resumes once Redis is back.
//!
//! `redis-server` missing is a failure, not a skip: install it (`apt-get install redis-server`;
//! scripts/test-all does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Harness, get, inline_project, send};
use moat_policy::model::{RateLimitState, RateStateOnError};
use moat_policy::source::SourceRef;
use moat_policy::{Origin, Project};
use moat_server::frontdoor::{Limits, RateState, RedisRateState};

const MOAT: &str = r#"
project:
  id: rl-proj
  number: "100000000001"
  region: us-central1
load_balancers:
  - name: edge
    scheme: external
    hosts: [www.example.com]
    security_policy: limits
    routes:
      - service: web
"#;

const WEB: &str = r#"{"name":"projects/rl-proj/locations/us-central1/services/web","uri":"https://web-q7x2lmtc3a-uc.a.run.app","urls":["https://web-100000000001.us-central1.run.app"],"ingress":"INGRESS_TRAFFIC_ALL","invokerIamDisabled":true,"template":{"containers":[{"image":"x"}]}}"#;

/// `/limited`: 3 per minute per client address, then 429. `/login`: 2 per minute per
/// `x-user`, and a key over it is banned for 10 minutes (403).
const LIMITS: &str = r#"{
  "name": "limits",
  "rules": [
    { "action": "throttle", "priority": 1000,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(429)",
        "rateLimitThreshold": { "count": 3, "intervalSec": 60 }, "enforceOnKey": "IP" },
      "match": { "expr": { "expression": "request.path == '/limited'" } } },
    { "action": "rate_based_ban", "priority": 2000,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(403)",
        "rateLimitThreshold": { "count": 2, "intervalSec": 60 }, "banDurationSec": 600,
        "enforceOnKey": "HTTP_HEADER", "enforceOnKeyName": "x-user" },
      "match": { "expr": { "expression": "request.path == '/login'" } } },
    { "action": "allow", "priority": 2147483647,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } }
  ]
}"#;

fn project() -> Project {
    inline_project(&[("moat.yaml", MOAT), ("services/web.json", WEB), ("armor/limits.json", LIMITS)])
}

/// A `redis-server` of its own, killed when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = Self { port, child: None };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port (empty: no persistence).
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`redis-server` is not installed, and these tests need a real one: install it (`apt-get install redis-server`, which scripts/test-all does) and run them again"
            ),
            Err(e) => panic!("cannot start `redis-server`: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer PING within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every key moat wrote.
    async fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        keys.sort();
        keys
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(redis: &Redis, on_error: RateStateOnError) -> RateLimitState {
    RateLimitState {
        redis: redis.url(),
        on_error,
        // Generous for a loaded CI machine; the default is 50 ms.
        timeout: Duration::from_millis(500),
        source: SourceRef::new(&Arc::from("test"), 0, 0),
    }
}

/// A replica: its own front door and its own connection to `redis`.
async fn replica(redis: &Redis, on_error: RateStateOnError) -> Harness {
    let state: Arc<dyn RateState> = Arc::new(RedisRateState::new(&config(redis, on_error)).unwrap());
    Harness::start_full(project(), &[Origin::Internet], Limits::default(), true, Some(state)).await
}

async fn status(h: &Harness, path: &str, headers: &[(&str, &str)]) -> u16 {
    send(h.internet(), &get("www.example.com", path, headers)).await.expect("an HTTP response").status
}

/// The edge stage's last reason code of the latest request (later stages add their own).
fn last_code(h: &Harness) -> String {
    h.last_record().codes().into_iter().rev().find(|c| c.starts_with("edge.")).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn replicas_share_one_throttle_budget_and_one_ban_list() {
    let redis = Redis::start();
    let (a, b) = (replica(&redis, RateStateOnError::Closed).await, replica(&redis, RateStateOnError::Closed).await);

    // 3 per minute, split over both replicas: the 4th is over wherever it lands.
    for (door, expected) in [(&a, 200), (&b, 200), (&a, 200), (&b, 429), (&a, 429)] {
        assert_eq!(status(door, "/limited", &[]).await, expected);
    }
    assert_eq!(last_code(&a), "edge.rate_limit_exceeded");
    // The next window starts from zero on both.
    a.set_time(harness::NOW + 60);
    b.set_time(harness::NOW + 60);
    assert_eq!(status(&b, "/limited", &[]).await, 200);

    // A ban made through one replica holds on the other, and only for that key.
    let mallory = [("x-user", "mallory")];
    for (door, expected) in [(&a, 200), (&b, 200), (&a, 403)] {
        assert_eq!(status(door, "/login", &mallory).await, expected);
    }
    assert_eq!(last_code(&a), "edge.rate_limit_exceeded", "the request that triggered the ban");
    assert_eq!(status(&b, "/login", &mallory).await, 403);
    assert_eq!(last_code(&b), "edge.banned");
    assert_eq!(status(&b, "/login", &[("x-user", "alice")]).await, 200);
    // The ban outlives the rate window, and ends after banDurationSec on both replicas.
    for door in [&a, &b] {
        door.set_time(harness::NOW + 60 + 599);
    }
    assert_eq!(status(&a, "/login", &mallory).await, 403);
    assert_eq!(last_code(&a), "edge.banned");
    for door in [&a, &b] {
        door.set_time(harness::NOW + 60 + 600);
    }
    assert_eq!(status(&b, "/login", &mallory).await, 200);

    // Redis holds only hashed client keys, namespaced by policy and rule.
    let keys = redis.keys().await;
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(k.starts_with("moat:rl:limits:1000:{") || k.starts_with("moat:rl:limits:2000:{"), "{k}");
        assert!(!k.contains("mallory") && !k.contains("127.0.0.1"), "{k}");
    }
    assert!(keys.iter().any(|k| k.ends_with(":ban")), "{keys:?}");
}

#[tokio::test]
async fn concurrent_hits_from_two_replicas_are_all_counted() {
    let redis = Redis::start();
    let (a, b) = (replica(&redis, RateStateOnError::Closed).await, replica(&redis, RateStateOnError::Closed).await);
    let a = Arc::new(a);
    let b = Arc::new(b);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let door = if i % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        tasks.spawn(async move { status(&door, "/limited", &[]).await });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429, 429], "exactly the budget got through");
}

#[tokio::test]
async fn redis_down_fail_closed_refuses_rate_limited_requests_with_a_distinct_reason() {
    let mut redis = Redis::start();
    let h = replica(&redis, RateStateOnError::Closed).await;
    assert_eq!(status(&h, "/limited", &[]).await, 200);
    // A ban seen before Redis goes away.
    for _ in 0..3 {
        status(&h, "/login", &[("x-user", "mallory")]).await;
    }
    let errors_before = rate_state_errors();

    redis.stop();
    assert_eq!(status(&h, "/limited", &[]).await, 429, "refused as if over the limit");
    assert_eq!(last_code(&h), "edge.rate_state_unavailable");
    assert_eq!(h.last_record().status, Some(429));
    assert_eq!(status(&h, "/login", &[("x-user", "alice")]).await, 403, "the rule's exceed action");
    assert_eq!(last_code(&h), "edge.rate_state_unavailable");
    assert_eq!(status(&h, "/login", &[("x-user", "mallory")]).await, 403);
    assert_eq!(last_code(&h), "edge.banned", "a ban already seen still holds");
    // Requests no rate limit decides do not need Redis.
    assert_eq!(status(&h, "/", &[]).await, 200);
    let errors_after = rate_state_errors();
    assert!(errors_after >= errors_before + 3.0, "errors counted: {errors_before} -> {errors_after}");

    // Back (empty: no persistence): counting resumes from zero without a restart of moat.
    redis.restart();
    assert!(eventually(|| async { status(&h, "/limited", &[]).await == 200 }).await, "counting never resumed");
    assert_eq!(last_code(&h), "edge.rate_limit_conform");
}

#[tokio::test]
async fn redis_down_fail_open_admits_uncounted_but_known_bans_hold() {
    let mut redis = Redis::start();
    let h = replica(&redis, RateStateOnError::Open).await;
    let errors_before = rate_state_errors();
    for _ in 0..3 {
        status(&h, "/login", &[("x-user", "mallory")]).await;
    }
    assert_eq!(last_code(&h), "edge.rate_limit_exceeded");

    redis.stop();
    for _ in 0..5 {
        assert_eq!(status(&h, "/limited", &[]).await, 200, "admitted: the limit is not enforced");
        assert_eq!(last_code(&h), "edge.rate_state_fail_open");
    }
    assert_eq!(status(&h, "/login", &[("x-user", "mallory")]).await, 403);
    assert_eq!(last_code(&h), "edge.banned", "fail-open never lifts a ban already seen");
    assert_eq!(status(&h, "/login", &[("x-user", "alice")]).await, 200);
    assert!(rate_state_errors() >= errors_before + 7.0, "every failed call is counted");

    redis.restart();
    assert!(
        eventually(|| async { status(&h, "/limited", &[]).await == 200 && last_code(&h) == "edge.rate_limit_conform" })
            .await,
        "counting never resumed"
    );
}

/// A Redis that accepts connections but never answers (a hung server): each rate-limited
/// request waits at most the timeout, then the failure policy answers.
#[tokio::test]
async fn a_silent_redis_costs_at_most_the_timeout() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let cfg = RateLimitState {
        redis: format!("redis://127.0.0.1:{port}/0"),
        on_error: RateStateOnError::Closed,
        timeout: Duration::from_millis(100),
        source: SourceRef::new(&Arc::from("test"), 0, 0),
    };
    let state: Arc<dyn RateState> = Arc::new(RedisRateState::new(&cfg).unwrap());
    let h = Harness::start_full(project(), &[Origin::Internet], Limits::default(), true, Some(state)).await;
    let started = Instant::now();
    assert_eq!(status(&h, "/limited", &[]).await, 429);
    assert_eq!(last_code(&h), "edge.rate_state_unavailable");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

/// The process-wide `moat_rate_state_errors_total`, summed over its labels (installs moat's
/// Prometheus recorder on first use).
fn rate_state_errors() -> f64 {
    let text = moat_server::runtime::metrics::handle().expect("moat's metrics recorder").render();
    text.lines()
        .filter(|l| l.starts_with("moat_rate_state_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `f` for up to 10 s.
async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
