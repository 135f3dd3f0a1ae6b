//! The metadata server and identity listener over real sockets, with requests written byte by
//! byte so that Host, X-Forwarded-For and Metadata-Flavor are exactly what each case says.
//! Cases M1–M7 are spec/peers-crates-lessons.md §C.5.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use moat_crypto::{Account, KeyRing, KeySet, Verifier, VerifierConfig};
use moat_server::{IdentityState, Platform, Workload};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const API: &str = "api@shop-prod.iam.gserviceaccount.com";
const WEB: &str = "web@shop-prod.iam.gserviceaccount.com";
const AUD: &str = "https://api-abc123-uc.a.run.app";
const V1: &str = "/computeMetadata/v1";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn workload(email: &str, platform: Platform) -> Workload {
    Workload {
        project_id: "shop-prod".into(),
        project_number: "123456789012".into(),
        region: "us-central1".into(),
        zone: "us-central1-1".into(),
        instance_id: "00f1e2d3c4b5a697".into(),
        instance_name: "moat-instance".into(),
        account: Account::service_account(email),
        scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
        platform,
    }
}

fn identity() -> Arc<IdentityState> {
    Arc::new(IdentityState::new(KeyRing::in_memory(now()).unwrap()))
}

/// A metadata server for `email` on 127.0.0.1, sharing `identity`.
async fn mds(email: &str, platform: Platform, identity: &Arc<IdentityState>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(moat_server::serve_metadata(listener, workload(email, platform), Arc::clone(identity)));
    addr
}

async fn identity_listener(identity: &Arc<IdentityState>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(moat_server::serve_identity(listener, Arc::clone(identity)));
    addr
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// What every metadata response carries, whatever its status.
    fn assert_stamped(&self) {
        assert_eq!(self.header("metadata-flavor"), Some("Google"), "{self:?}");
        assert!(self.header("content-type").is_some(), "no Content-Type: {self:?}");
    }
}

/// Sends `head` (request line and headers, without the blank line) plus `body` and reads the
/// whole response (the request asks for `Connection: close`).
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    parse(&buf)
}

fn parse(buf: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Reply { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// `GET path` addressed to the listener as `127.0.0.1:PORT`, with `extra` header lines.
async fn get_with(addr: SocketAddr, path: &str, extra: &[&str]) -> Reply {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}", addr.port());
    for h in extra {
        head.push_str("\r\n");
        head.push_str(h);
    }
    raw(addr, &head, b"").await
}

/// A well-behaved metadata client's `GET`.
async fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, &["Metadata-Flavor: Google"]).await
}

fn claims(jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let decode = |s: &str| -> Value {
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

// ---- M1: Metadata-Flavor ------------------------------------------------------------------

#[tokio::test]
async fn m1_flavor_header_is_required_except_for_the_ping() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;

    let r = get_with(addr, &format!("{V1}/project/project-id"), &[]).await;
    r.assert_stamped();
    assert_eq!((r.status, r.body.trim_end()), (403, "Missing required header \"Metadata-Flavor\": \"Google\""));

    // An unknown path without the header is refused for the header, not for the path.
    let r = get_with(addr, &format!("{V1}/no/such/path"), &[]).await;
    assert_eq!(r.status, 403);
    r.assert_stamped();

    for wrong in ["Metadata-Flavor: google", "Metadata-Flavor: Amazon", "Metadata-Flavor: "] {
        let r = get_with(addr, &format!("{V1}/project/project-id"), &[wrong]).await;
        assert_eq!(r.status, 404, "{wrong}");
        r.assert_stamped();
    }

    // The ping works without the header and whatever its value.
    for extra in [&[][..], &["Metadata-Flavor: Google"][..], &["Metadata-Flavor: nope"][..]] {
        let r = get_with(addr, "/", extra).await;
        assert_eq!((r.status, r.body.as_str()), (200, "computeMetadata/\n"), "{extra:?}");
        r.assert_stamped();
    }
}

// ---- M2: X-Forwarded-For ------------------------------------------------------------------

#[tokio::test]
async fn m2_any_forwarded_request_is_refused() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    for path in ["/", "/computeMetadata/v1/instance/service-accounts/default/token"] {
        for xff in ["X-Forwarded-For: 127.0.0.1", "X-Forwarded-For: ", "x-forwarded-for: 10.0.0.1, 1.2.3.4"] {
            let r = get_with(addr, path, &["Metadata-Flavor: Google", xff]).await;
            assert_eq!(r.status, 403, "{path} {xff}");
            assert!(!r.body.contains("ya29"), "{r:?}");
            r.assert_stamped();
        }
    }
    let r = get_with(addr, "/", &["Forwarded: for=1.2.3.4"]).await;
    assert_eq!(r.status, 403);
}

// ---- M3: Host -----------------------------------------------------------------------------

#[tokio::test]
async fn m3_only_metadata_names_are_served() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let port = addr.port();
    let allowed = [
        "metadata.google.internal".to_owned(),
        "metadata.google.internal:80".to_owned(),
        "metadata".to_owned(),
        "169.254.169.254".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    let refused = [
        format!("evil.example.com:{port}"),
        "evil.example.com".to_owned(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "metadata.google.internal.evil.example.com".to_owned(),
    ];
    let path = format!("{V1}/project/project-id");
    for host in &allowed {
        let r = raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nMetadata-Flavor: Google"), b"").await;
        assert_eq!((r.status, r.body.as_str()), (200, "shop-prod"), "{host}");
    }
    for host in &refused {
        for p in [path.as_str(), "/"] {
            let r = raw(addr, &format!("GET {p} HTTP/1.1\r\nHost: {host}\r\nMetadata-Flavor: Google"), b"").await;
            assert_eq!(r.status, 421, "{host} {p}");
            assert!(!r.body.contains("shop-prod"));
            r.assert_stamped();
        }
    }
}

/// An absolute-form target (`GET http://name/path`) is addressed by its authority, not by
/// `Host` (RFC 9112 §3.2.2): both must name the metadata server.
#[tokio::test]
async fn m3_an_absolute_form_target_must_name_the_metadata_server() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let port = addr.port();
    let leaf = "/computeMetadata/v1/instance/service-accounts/default/token";
    for authority in ["evil.example", "evil.example:80", &format!("evil.example:{port}"), "user@metadata"] {
        let r = raw(
            addr,
            &format!("GET http://{authority}{leaf} HTTP/1.1\r\nHost: metadata\r\nMetadata-Flavor: Google"),
            b"",
        )
        .await;
        assert_eq!(r.status, 421, "{authority}");
        assert!(!r.body.contains("ya29"), "{r:?}");
        r.assert_stamped();
    }
    let r =
        raw(addr, &format!("GET https://metadata{leaf} HTTP/1.1\r\nHost: metadata\r\nMetadata-Flavor: Google"), b"")
            .await;
    assert_eq!(r.status, 421, "an https target is not this server");
    // Named by both, it is served.
    for authority in ["metadata", "metadata.google.internal:80", &format!("127.0.0.1:{port}")] {
        let r = raw(
            addr,
            &format!(
                "GET http://{authority}{V1}/project/project-id HTTP/1.1\r\nHost: metadata\r\nMetadata-Flavor: Google"
            ),
            b"",
        )
        .await;
        assert_eq!((r.status, r.body.as_str()), (200, "shop-prod"), "{authority}");
    }
}

/// hyper answers what it cannot parse itself, before any middleware: those answers are
/// stamped too.
#[tokio::test]
async fn hyper_s_own_parse_errors_carry_the_metadata_headers() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let host = format!("Host: 127.0.0.1:{}", addr.port());
    for head in [
        format!("GET {V1}/project/project-id HTTP/1.1\r\n{host}\r\nno colon in this header"),
        format!("GET {V1}/project/project-id HTTP/1.1\r\n{host}\r\nBad Name: x"),
        format!("GET /\x01 HTTP/1.1\r\n{host}"),
    ] {
        let r = raw(addr, &head, b"").await;
        assert_eq!(r.status, 400, "{head:?}: {r:?}");
        r.assert_stamped();
    }
    // More header lines than hyper accepts: its own 431.
    let many: String = (0..150).map(|i| format!("\r\nX-Filler-{i}: x")).collect();
    let r = raw(addr, &format!("GET / HTTP/1.1\r\n{host}{many}"), b"").await;
    assert_eq!(r.status, 431, "{r:?}");
    r.assert_stamped();
    // The server still answers well-formed requests afterwards.
    assert_eq!(get(addr, &format!("{V1}/project/project-id")).await.body, "shop-prod");
}

/// Two `Host` headers are refused whatever their order or values: a proxy in front may have
/// routed on the other one.
#[tokio::test]
async fn m3_two_host_headers_are_refused() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let leaf = "/computeMetadata/v1/instance/service-accounts/default/token";
    for (a, b) in [("metadata", "evil.example"), ("evil.example", "metadata"), ("metadata", "metadata")] {
        let r =
            raw(addr, &format!("GET {leaf} HTTP/1.1\r\nHost: {a}\r\nHost: {b}\r\nMetadata-Flavor: Google"), b"").await;
        assert_eq!(r.status, 421, "{a}, {b}");
        assert!(!r.body.contains("ya29"), "{r:?}");
        r.assert_stamped();
    }
}

// ---- M4: identity -------------------------------------------------------------------------

#[tokio::test]
async fn m4_identity_tokens_name_the_audience_and_the_workload() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let before = now();
    // What google-auth's fetch_id_token sends (spec/wire-logs/mds.log).
    let path = format!(
        "{V1}/instance/service-accounts/default/identity?audience=https%3A%2F%2Fapi-abc123-uc.a.run.app&format=full"
    );
    let r = get(addr, &path).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.assert_stamped();
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "{r:?}");
    assert!(!r.body.contains(['\r', '\n', ' ']), "a bare JWT: {:?}", r.body);
    let (header, c) = claims(&r.body);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], id.current_kid());
    assert_eq!(c["iss"], "https://accounts.google.com");
    assert_eq!(c["aud"], AUD);
    assert_eq!(c["email"], API);
    assert_eq!(c["email_verified"], true);
    let sub = c["sub"].as_str().unwrap();
    assert!(sub.len() == 21 && sub.bytes().all(|b| b.is_ascii_digit()), "{sub}");
    let iat = c["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= now());
    assert_eq!(c["exp"].as_u64().unwrap(), iat + 3600);
    // Cloud Run: no `google` claim even with format=full (spec/cloudrun.md §3.5).
    assert!(c.get("google").is_none(), "{c}");

    // What gcloud sends: unencoded audience, format=standard, licenses=FALSE; by email too.
    for acct in ["default", API] {
        let r = get(
            addr,
            &format!("{V1}/instance/service-accounts/{acct}/identity?audience={AUD}&format=standard&licenses=FALSE"),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(claims(&r.body).1["aud"], AUD);
    }
    let r =
        get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience={AUD}&format=full&licenses=TRUE"))
            .await;
    assert_eq!(r.status, 200, "licenses=TRUE is accepted (a Cloud Run instance has no licences)");

    for (query, why) in [
        ("", "non-empty audience parameter required"),
        ("?audience=", "non-empty audience parameter required"),
        ("?format=full", "non-empty audience parameter required"),
        ("?audience=x&format=compact", "`format` must be `standard` or `full`, not `compact`"),
        ("?audience=x&licenses=maybe", "`licenses` must be `TRUE` or `FALSE`, not `maybe`"),
        ("?audience=a&audience=b", "query parameter `audience` given more than once"),
    ] {
        let r = get(addr, &format!("{V1}/instance/service-accounts/default/identity{query}")).await;
        assert_eq!((r.status, r.body.trim_end()), (400, why), "{query}");
        r.assert_stamped();
    }

    // POST is what google-auth uses for bound tokens; it is answered like GET.
    let head = format!(
        "POST {V1}/instance/service-accounts/default/identity?audience=x HTTP/1.1\r\nHost: metadata.google.internal\r\nMetadata-Flavor: Google\r\nContent-Type: application/json\r\nContent-Length: 2"
    );
    let r = raw(addr, &head, b"{}").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(claims(&r.body).1["aud"], "x");
}

#[tokio::test]
async fn m4_compute_engine_full_format_adds_the_instance_claims() {
    let id = identity();
    let addr = mds(API, Platform::ComputeEngine, &id).await;
    let r = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience=x&format=full")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let c = claims(&r.body).1;
    let gce = &c["google"]["compute_engine"];
    assert_eq!(gce["project_id"], "shop-prod", "{c}");
    assert_eq!(gce["project_number"].to_string().trim_matches('"'), "123456789012");
    assert_eq!(gce["zone"], "us-central1-1");
    assert_eq!(gce["instance_name"], "moat-instance");
    let r = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience=x")).await;
    assert!(claims(&r.body).1.get("google").is_none(), "standard format has no instance claims");
}

// ---- M5: the other endpoints --------------------------------------------------------------

#[tokio::test]
async fn m5_values_listings_and_tokens() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let text = [
        ("/computeMetadata/", "v1/\n"),
        ("/computeMetadata/v1/", "instance/\nproject/\nuniverse/\n"),
        // Node's gcp-metadata pings this path, without a trailing slash.
        ("/computeMetadata/v1/instance", "id\nregion\nservice-accounts/\nzone\n"),
        ("/computeMetadata/v1/instance/", "id\nregion\nservice-accounts/\nzone\n"),
        ("/computeMetadata/v1/project/project-id", "shop-prod"),
        ("/computeMetadata/v1/project/numeric-project-id", "123456789012"),
        ("/computeMetadata/v1/instance/region", "projects/123456789012/regions/us-central1"),
        ("/computeMetadata/v1/instance/zone", "projects/123456789012/zones/us-central1-1"),
        ("/computeMetadata/v1/instance/id", "00f1e2d3c4b5a697"),
        ("/computeMetadata/v1/universe/universe-domain", "googleapis.com"),
        ("/computeMetadata/v1/instance/service-accounts/", "default/\napi@shop-prod.iam.gserviceaccount.com/\n"),
        ("/computeMetadata/v1/instance/service-accounts/default/", "aliases\nemail\nidentity\nscopes\ntoken\n"),
        ("/computeMetadata/v1/instance/service-accounts/default/email", API),
        ("/computeMetadata/v1/instance/service-accounts/api@shop-prod.iam.gserviceaccount.com/email", API),
        ("/computeMetadata/v1/instance/service-accounts/api%40shop-prod.iam.gserviceaccount.com/email", API),
        ("/computeMetadata/v1/instance/service-accounts/default/aliases", "default\n"),
        (
            "/computeMetadata/v1/instance/service-accounts/default/scopes",
            "https://www.googleapis.com/auth/cloud-platform\n",
        ),
        ("/computeMetadata/v1/project/project-id?alt=text", "shop-prod"),
        (
            "/computeMetadata/v1/instance/service-accounts/default/?recursive=true&alt=text",
            "aliases/0 default\nemail api@shop-prod.iam.gserviceaccount.com\nscopes/0 https://www.googleapis.com/auth/cloud-platform\n",
        ),
    ];
    for (path, want) in text {
        let r = get(addr, path).await;
        assert_eq!((r.status, r.body.as_str()), (200, want), "{path}");
        assert_eq!(r.header("content-type"), Some("application/text"), "{path}");
        r.assert_stamped();
    }

    let account = serde_json::json!({
        "aliases": ["default"],
        "email": API,
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    });
    let json = [
        ("/computeMetadata/v1/instance/service-accounts/default/?recursive=true", account.clone()),
        ("/computeMetadata/v1/instance/service-accounts/default?recursive=true", account.clone()),
        // gcloud asks by email.
        (&format!("{V1}/instance/service-accounts/{API}/?recursive=true") as &str, account.clone()),
        (
            "/computeMetadata/v1/project/?recursive=true",
            serde_json::json!({"numericProjectId": 123456789012u64, "projectId": "shop-prod"}),
        ),
        ("/computeMetadata/v1/project/numeric-project-id?alt=json", serde_json::json!(123456789012u64)),
        ("/computeMetadata/v1/project/project-id?alt=json", serde_json::json!("shop-prod")),
        (
            "/computeMetadata/v1/instance/service-accounts/default/scopes?alt=json",
            serde_json::json!(["https://www.googleapis.com/auth/cloud-platform"]),
        ),
        ("/computeMetadata/v1/instance/service-accounts/?alt=json", serde_json::json!(["default/", format!("{API}/")])),
        (
            "/computeMetadata/v1/instance/service-accounts/?recursive=true",
            serde_json::json!({"default": account.clone(), API: account.clone()}),
        ),
    ];
    for (path, want) in json {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(r.json(), want, "{path}");
    }

    // Access tokens: what google.auth.default() then refresh() asks for.
    let r = get(addr, &format!("{V1}/instance/service-accounts/default/token?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_in"].as_u64().unwrap() > 3000);
    let grant = id.access_tokens().lookup(t["access_token"].as_str().unwrap(), now()).unwrap();
    assert_eq!(grant.account, Account::service_account(API));

    // `?scopes=a,b` is honoured; without it the instance's scopes apply.
    let r = get(addr, &format!("{V1}/instance/service-accounts/{API}/token?scopes=a,b")).await;
    let grant = id.access_tokens().lookup(r.json()["access_token"].as_str().unwrap(), now()).unwrap();
    assert_eq!(grant.scopes, ["a", "b"]);
    let r = get(addr, &format!("{V1}/instance/service-accounts/default/token")).await;
    let grant = id.access_tokens().lookup(r.json()["access_token"].as_str().unwrap(), now()).unwrap();
    assert_eq!(grant.scopes, ["https://www.googleapis.com/auth/cloud-platform"]);

    for path in [
        "/nope",
        "/computeMetadata/v2/",
        "/computeMetadata/v1/project/project-id/",
        "/computeMetadata/v1/project/zone",
        "/computeMetadata/v1/project//project-id",
        "/computeMetadata/v1/instance/service-accounts/default/nope",
        "/computeMetadata/v1/instance/service-accounts/other/email",
        "/computeMetadata/v1beta1/project/project-id",
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 404, "{path}");
        r.assert_stamped();
    }

    for (query, status) in [("?alt=xml", 400), ("?recursive=maybe", 400), ("?wait_for_change=true", 400)] {
        let r = get(addr, &format!("{V1}/project/project-id{query}")).await;
        assert_eq!(r.status, status, "{query}");
        r.assert_stamped();
    }

    // POST only on the token endpoints; other methods are refused with Allow.
    let post = |path: String| async move {
        raw(
            addr,
            &format!("POST {path} HTTP/1.1\r\nHost: metadata\r\nMetadata-Flavor: Google\r\nContent-Length: 0"),
            b"",
        )
        .await
    };
    let r = post(format!("{V1}/instance/service-accounts/default/token")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["access_token"].is_string());
    let r = post(format!("{V1}/project/project-id")).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    r.assert_stamped();
    let r = raw(
        addr,
        &format!(
            "DELETE {V1}/instance/service-accounts/default/token HTTP/1.1\r\nHost: metadata\r\nMetadata-Flavor: Google"
        ),
        b"",
    )
    .await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, POST")));
}

// ---- M6: bounded, clean, per workload -----------------------------------------------------

#[tokio::test]
async fn m6_request_bodies_are_bounded() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let big = vec![b'x'; 65 * 1024];
    let head = format!(
        "POST {V1}/instance/service-accounts/default/token HTTP/1.1\r\nHost: metadata\r\nMetadata-Flavor: Google\r\nContent-Length: {}",
        big.len()
    );
    let r = raw(addr, &head, &big).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert!(!r.body.contains("ya29"));
    r.assert_stamped();
}

#[tokio::test]
async fn m6_tokens_never_hold_line_breaks() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    // An audience with CR/LF (percent-encoded, since raw ones cannot reach the server) is
    // refused before anything is signed, and nothing of it reaches a header.
    let r = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience=a%0D%0AX-Evil:%201")).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.starts_with("bad audience"), "{r:?}");
    assert!(r.header("x-evil").is_none());
    let r = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience={}", "a".repeat(3000))).await;
    assert_eq!(r.status, 400, "an audience longer than 2 KiB: {r:?}");
    for _ in 0..20 {
        let r = get(addr, &format!("{V1}/instance/service-accounts/default/token")).await;
        let t = r.json()["access_token"].as_str().unwrap().to_owned();
        assert!(!t.is_empty() && !t.contains(['\r', '\n', ' ']), "{t:?}");
    }
}

#[tokio::test]
async fn m6_each_workload_only_has_its_own_identity() {
    let id = identity();
    let api = mds(API, Platform::CloudRun, &id).await;
    let web = mds(WEB, Platform::CloudRun, &id).await;
    for (addr, mine, theirs) in [(api, API, WEB), (web, WEB, API)] {
        assert_eq!(get(addr, &format!("{V1}/instance/service-accounts/default/email")).await.body, mine);
        let listing = get(addr, &format!("{V1}/instance/service-accounts/")).await.body;
        assert_eq!(listing, format!("default/\n{mine}/\n"));

        let r = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience=x")).await;
        assert_eq!(claims(&r.body).1["email"], mine);
        let r = get(addr, &format!("{V1}/instance/service-accounts/default/token")).await;
        let grant = id.access_tokens().lookup(r.json()["access_token"].as_str().unwrap(), now()).unwrap();
        assert_eq!(grant.account.email, mine);

        // Asking for the other workload's account by name finds nothing.
        for leaf in ["email", "token", "identity?audience=x", "?recursive=true"] {
            let r = get(addr, &format!("{V1}/instance/service-accounts/{theirs}/{leaf}")).await;
            assert_eq!(r.status, 404, "{mine} asking for {theirs}/{leaf}");
            assert!(!r.body.contains("ya29") && !r.body.contains("eyJ"));
        }
    }
}

// ---- M7: round trip through the identity listener -----------------------------------------

#[tokio::test]
async fn m7_identity_tokens_verify_against_the_published_jwks() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let ids = identity_listener(&id).await;

    let token = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience={AUD}")).await.body;
    let jwks = get_with(ids, "/oauth2/v3/certs", &[]).await;
    assert_eq!(jwks.status, 200);
    assert!(jwks.header("content-type").unwrap().starts_with("application/json"));
    let cache = jwks.header("cache-control").unwrap();
    assert!(cache.starts_with("public, max-age="), "{cache}");

    let verifier = Verifier::new(VerifierConfig::google(), KeySet::from_jwks_json(jwks.body.as_bytes()).unwrap());
    let claims = verifier.verify(&token, &[AUD.to_owned()], now()).unwrap();
    assert_eq!(claims.email(), Some(API));
    assert_eq!(claims.issuer(), "https://accounts.google.com");
    assert!(verifier.verify(&token, &["https://other.example".to_owned()], now()).is_err());
    assert!(verifier.verify(&token, &[AUD.to_owned()], now() + 2 * 3600).is_err(), "expired");

    let x509 = get_with(ids, "/oauth2/v1/certs", &[]).await;
    assert_eq!(x509.status, 200);
    let map = x509.json();
    let pem = map[id.current_kid()].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    let d = get_with(ids, "/.well-known/openid-configuration", &[]).await;
    assert_eq!(d.status, 200);
    let d = d.json();
    assert_eq!(d["issuer"], "https://accounts.google.com");
    assert_eq!(d["jwks_uri"], format!("http://{ids}/oauth2/v3/certs"));
    assert_eq!(d["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));

    assert_eq!(get_with(ids, "/nope", &[]).await.status, 404);
}

#[tokio::test]
async fn rotation_keeps_old_tokens_verifiable_and_serving_uninterrupted() {
    let id = identity();
    let addr = mds(API, Platform::CloudRun, &id).await;
    let ids = identity_listener(&id).await;
    let first_kid = id.current_kid();
    let old = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience={AUD}")).await.body;

    // Rotate on a blocking thread while requests keep being answered.
    let rotating = {
        let id = Arc::clone(&id);
        tokio::task::spawn_blocking(move || id.rotate())
    };
    for _ in 0..5 {
        assert_eq!(get_with(ids, "/oauth2/v3/certs", &[]).await.status, 200);
        assert_eq!(get(addr, "/computeMetadata/v1/project/project-id").await.status, 200);
    }
    rotating.await.unwrap().unwrap();
    assert_ne!(id.current_kid(), first_kid);

    let new = get(addr, &format!("{V1}/instance/service-accounts/default/identity?audience={AUD}")).await.body;
    assert_eq!(claims(&new).0["kid"], id.current_kid());
    let jwks = get_with(ids, "/oauth2/v3/certs", &[]).await.body;
    let verifier = Verifier::new(VerifierConfig::google(), KeySet::from_jwks_json(jwks.as_bytes()).unwrap());
    for t in [&old, &new] {
        assert!(verifier.verify(t, &[AUD.to_owned()], now()).is_ok(), "{}", claims(t).0);
    }
}

#[tokio::test]
async fn scheduled_rotation_changes_the_signing_key() {
    let id = identity();
    let first = id.current_kid();
    let task = moat_server::spawn_rotation(Arc::clone(&id), Duration::from_secs(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while id.current_kid() == first && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    assert_ne!(id.current_kid(), first, "no rotation within 10 s at a 1 s period");
}

#[tokio::test]
async fn a_metadata_server_stops_on_shutdown() {
    let id = identity();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server =
        tokio::spawn(moat_server::serve_metadata_until(listener, workload(API, Platform::CloudRun), id, async {
            let _ = rx.await;
        }));
    assert_eq!(get(addr, "/").await.status, 200);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}
