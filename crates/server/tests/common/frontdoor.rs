//! Shared by the front door tests: projects from disk or inline, a front door with captured
//! decision records and real signing keys, an echoing upstream, and a raw HTTP/1.1 client (so
//! duplicate headers, odd schemes and closed connections are exactly what each test says).

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_crypto::{Account, KeyRing, TokenFormat, Verifier, VerifierConfig, sign_id_token};
use moat_policy::{Origin, Principal, Project, SourceFile};
use moat_server::egress::EgressRecord;
use moat_server::frontdoor::{DecisionRecord, DecisionSink, FrontDoor, Limits, RateState};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The front door's clock in every test: tokens are minted at this time.
pub const NOW: u64 = 1_750_000_000;

/// moat.yaml and the YAML/JSON files under services/, iam/ and armor/ (as `moat`'s
/// project_dir reader does).
pub fn read_project_dir(dir: &Path) -> Result<Project, String> {
    let mut files = Vec::new();
    let moat = dir.join("moat.yaml");
    let text = std::fs::read_to_string(&moat).map_err(|e| format!("{}: {e}", moat.display()))?;
    files.push(SourceFile { path: "moat.yaml".into(), text });
    for sub in ["services", "iam", "armor"] {
        let d = dir.join(sub);
        if !d.is_dir() {
            continue;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&d).map_err(|e| e.to_string())?.filter_map(Result::ok).collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let wanted = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x)) && !name.starts_with('.');
            if wanted && e.path().is_file() {
                let text = std::fs::read_to_string(e.path()).map_err(|e| e.to_string())?;
                files.push(SourceFile { path: format!("{sub}/{name}"), text });
            }
        }
    }
    moat_policy::load(&files).map_err(|e| format!("{e:?}"))
}

pub fn inline_project(files: &[(&str, &str)]) -> Project {
    let files: Vec<SourceFile> =
        files.iter().map(|(p, t)| SourceFile { path: (*p).to_owned(), text: (*t).to_owned() }).collect();
    moat_policy::load(&files).unwrap_or_else(|e| panic!("test project does not load: {e:?}"))
}

/// Decision records, in arrival order.
#[derive(Debug, Default)]
pub struct Capture(Mutex<Vec<DecisionRecord>>);

impl DecisionSink for Capture {
    fn record(&self, record: &DecisionRecord) {
        self.0.lock().unwrap().push(record.clone());
    }

    fn record_egress(&self, record: &EgressRecord) {
        panic!("the front door wrote an egress record: {record:?}");
    }
}

impl Capture {
    pub fn all(&self) -> Vec<DecisionRecord> {
        self.0.lock().unwrap().clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// An upstream that answers 200 with what it received: method, path, every header in order,
/// and the body's length.
pub struct Echo {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

pub async fn echo_upstream() -> Echo {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let headers: Vec<Value> = headers
                .iter()
                .map(|(k, v)| {
                    Value::from(vec![k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()])
                })
                .collect();
            axum::Json(serde_json::json!({
                "method": method.as_str(),
                "path": uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                "headers": headers,
                "body_len": body.len(),
                "body_start": String::from_utf8_lossy(&body[..body.len().min(16)]),
                "body_end": String::from_utf8_lossy(&body[body.len().saturating_sub(16)..]),
            }))
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Echo { addr, hits }
}

/// A front door over `project` with one listener per origin, every service forwarded to an
/// echoing upstream, and its decision records captured.
pub struct Harness {
    pub door: FrontDoor,
    pub keys: KeyRing,
    pub records: Arc<Capture>,
    pub echo: Echo,
    pub project: Arc<Project>,
    /// The front door's clock, Unix seconds; starts at [`NOW`] and moves only when a test sets it.
    pub clock: Arc<AtomicU64>,
    listeners: BTreeMap<String, SocketAddr>,
    pub serving: Vec<tokio::task::JoinHandle<Result<(), moat_server::frontdoor::FrontDoorError>>>,
}

impl Harness {
    pub async fn start(project: Project, origins: &[Origin]) -> Self {
        Self::start_with(project, origins, Limits::default(), true).await
    }

    pub async fn start_with(project: Project, origins: &[Origin], limits: Limits, with_upstream: bool) -> Self {
        Self::start_full(project, origins, limits, with_upstream, None).await
    }

    /// As [`Harness::start_with`], counting rate limits and bans in `rate` when given (several
    /// front doors sharing one state stand for replicas sharing a store).
    pub async fn start_full(
        project: Project,
        origins: &[Origin],
        limits: Limits,
        with_upstream: bool,
        rate: Option<Arc<dyn RateState>>,
    ) -> Self {
        Self::start_waf(project, origins, limits, with_upstream, rate, None).await
    }

    /// As [`Harness::start_full`], with the CRS rules for preconfigured WAF rules.
    pub async fn start_waf(
        project: Project,
        origins: &[Origin],
        limits: Limits,
        with_upstream: bool,
        rate: Option<Arc<dyn RateState>>,
        crs: Option<Arc<moat_waf::Crs>>,
    ) -> Self {
        let keys = KeyRing::in_memory(NOW).unwrap();
        let verifier = Arc::new(Verifier::new(VerifierConfig::google(), keys.key_set()));
        let echo = echo_upstream().await;
        let base: hyper::Uri = format!("http://{}", echo.addr).parse().unwrap();
        let upstreams = move |_: &str| with_upstream.then(|| base.clone());
        let records = Arc::new(Capture::default());
        let project = Arc::new(project);
        let clock = Arc::new(AtomicU64::new(NOW));
        let now = Arc::clone(&clock);
        let mut builder = FrontDoor::builder(Arc::clone(&project), verifier, upstreams)
            .clock(Arc::new(move || now.load(Ordering::SeqCst)))
            .sink(Arc::clone(&records) as Arc<dyn DecisionSink>)
            .limits(limits);
        if let Some(rate) = rate {
            builder = builder.rate_state(rate);
        }
        let door = builder.crs(crs).build();
        let mut listeners = BTreeMap::new();
        let mut serving = Vec::new();
        for origin in origins {
            let origin = origin.clone().in_project(&project.id);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(origin.to_string(), listener.local_addr().unwrap());
            let door = door.clone();
            serving.push(tokio::spawn(async move { door.serve(listener, origin).await }));
        }
        Self { door, keys, records, echo, project, clock, listeners, serving }
    }

    /// The listener of `origin` (`internet`, `vpc:P/N`, ...).
    pub fn addr(&self, origin: &Origin) -> SocketAddr {
        let key = origin.clone().in_project(&self.project.id).to_string();
        *self.listeners.get(&key).unwrap_or_else(|| panic!("no listener for `{key}`"))
    }

    /// Sets the front door's clock to `t` (Unix seconds).
    pub fn set_time(&self, t: u64) {
        self.clock.store(t, Ordering::SeqCst);
    }

    pub fn internet(&self) -> SocketAddr {
        self.addr(&Origin::Internet)
    }

    /// A real ID token for `principal` (`user:...` / `serviceAccount:...`) and `audience`.
    pub fn token(&self, principal: &str, audience: &str) -> String {
        let p: Principal = principal.parse().unwrap();
        token_for(&self.keys, &p, audience, NOW)
    }

    pub fn last_record(&self) -> DecisionRecord {
        self.records.all().pop().expect("a decision record")
    }
}

pub fn token_for(keys: &KeyRing, p: &Principal, audience: &str, now: u64) -> String {
    let account = Account::from_principal(p).expect("anonymous has no token");
    sign_id_token(keys, &account, audience, now, TokenFormat::Standard, None).unwrap()
}

/// A raw HTTP/1.1 request; the connection closes after the response.
pub fn request(method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

pub fn get(host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    request("GET", host, path, headers, "")
}

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// What the echoing upstream received: every value of header `name`, in order.
    pub fn echoed(&self, name: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.body));
        v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn echo(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Sends `raw` and reads to the end. `None` when the connection closed without a byte of
/// response (a network-layer refusal).
pub async fn send(addr: SocketAddr, raw: &str) -> Option<RawResponse> {
    exchange(TcpStream::connect(addr).await.unwrap(), raw).await
}

/// [`send`] from the loopback address `from` (any of 127.0.0.0/8 on Linux), so the front door
/// sees another peer address.
pub async fn send_from(from: std::net::IpAddr, addr: SocketAddr, raw: &str) -> Option<RawResponse> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    exchange(socket.connect(addr).await.unwrap(), raw).await
}

async fn exchange(mut s: TcpStream, raw: &str) -> Option<RawResponse> {
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "no response or close within 10 s");
    if buf.is_empty() {
        return None;
    }
    Some(parse(&buf))
}

fn parse(buf: &[u8]) -> RawResponse {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let raw_body = &buf[split + 4..];
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(raw_body) } else { raw_body.to_vec() };
    RawResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// The CRS, or `None` (with a note) where it is not installed.
pub fn crs() -> Option<Arc<moat_waf::Crs>> {
    let dir = std::env::var_os("MOAT_CRS_DIR")
        .map_or_else(|| std::path::PathBuf::from(moat_waf::DEFAULT_CRS_DIR), std::path::PathBuf::from);
    if !dir.is_dir() {
        eprintln!("CRS rules not found at {}; install Debian's modsecurity-crs or set MOAT_CRS_DIR", dir.display());
        return None;
    }
    Some(Arc::new(moat_waf::Crs::load(&dir).unwrap_or_else(|e| panic!("the CRS does not load: {e}"))))
}

/// One HTTP/1.1 response off a kept-alive connection: status and body (by Content-Length).
pub async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .expect("a content-length");
            if buf.len() >= end + 4 + len {
                return (status, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
    }
}
