//! The Secret Manager API over real sockets: a real store in a temporary directory, real
//! tokens (access tokens minted through the identity state as a metadata server mints them, ID
//! tokens signed by its keys, the store's admin credential) and real HTTP requests, route by
//! route: status codes, Google's error envelope, paging, enum encoding, regional paths, etags
//! and IAM. Nothing a caller sends as a value or a credential may reach the audit file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use moat_crypto::{Account, KeyRing, TokenFormat, Verifier, VerifierConfig};
use moat_policy::SourceFile;
use moat_secrets::{MasterKey, Secrets};
use moat_server::IdentityState;
use moat_server::identity::Clock;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const PROJECT_ID: &str = "demo-proj";
const NUMBER: &str = "123456789012";
/// Holds `roles/secretmanager.admin` on the project.
const APP: &str = "app@demo-proj.iam.gserviceaccount.com";
/// Holds nothing.
const STRANGER: &str = "stranger@demo-proj.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

const MOAT_YAML: &str = "project: {id: demo-proj, number: '123456789012', region: us-central1}
service_accounts:
  - email: app@demo-proj.iam.gserviceaccount.com
  - email: stranger@demo-proj.iam.gserviceaccount.com
iam:
  bindings:
  - role: roles/secretmanager.admin
    members: ['serviceAccount:app@demo-proj.iam.gserviceaccount.com']
";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A running API over a fresh store, with a clock tests can move.
struct Api {
    addr: SocketAddr,
    dir: PathBuf,
    identity: Arc<IdentityState>,
    offset: Arc<AtomicI64>,
    admin: String,
    client: Client<HttpConnector, Full<Bytes>>,
    _stop: oneshot::Sender<()>,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a response said.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Value,
}

impl Reply {
    /// The error envelope's (code, status, message), checking they agree with the HTTP status.
    fn error(&self) -> (u16, &str, &str) {
        let e = &self.body["error"];
        assert_eq!(e["code"].as_u64(), Some(u64::from(self.status)), "{:?}", self.body);
        (self.status, e["status"].as_str().unwrap(), e["message"].as_str().unwrap())
    }
}

async fn start(name: &str) -> Api {
    let dir = std::env::temp_dir().join(format!("moat-secrets-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let files = [SourceFile { path: "moat.yaml".into(), text: MOAT_YAML.into() }];
    let project = Arc::new(moat_policy::load(&files).unwrap());
    let secrets = Secrets::open(&dir, MasterKey::generate().unwrap(), project).unwrap();
    let admin = std::fs::read_to_string(secrets.admin_token_path()).unwrap().trim().to_owned();
    let offset = Arc::new(AtomicI64::new(0));
    let clock: Clock = {
        let offset = Arc::clone(&offset);
        Arc::new(move || now().saturating_add_signed(offset.load(Ordering::SeqCst)))
    };
    let identity = Arc::new(IdentityState::with_clock(KeyRing::in_memory(now()).unwrap(), clock));
    let verifier = Arc::new(Verifier::new(VerifierConfig::google(), identity.key_set()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(moat_server::secrets::serve_until(listener, secrets, Arc::clone(&identity), verifier, async move {
        let _ = stopped.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http();
    Api { addr, dir, identity, offset, admin, client, _stop: stop }
}

impl Api {
    fn access_token(&self, email: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let scope = self.identity.access_token_scope();
        self.identity.issue_access_token(&scope, &Account::service_account(email), &scopes).unwrap().0
    }

    fn id_token(&self, email: &str, audience: &str) -> String {
        self.identity.sign_id_token(&Account::service_account(email), audience, TokenFormat::Full, None).unwrap()
    }

    /// Runs `f` with the identity clock moved by `secs`.
    fn at<T>(&self, secs: i64, f: impl FnOnce() -> T) -> T {
        self.offset.store(secs, Ordering::SeqCst);
        let out = f();
        self.offset.store(0, Ordering::SeqCst);
        out
    }

    async fn raw(&self, method: Method, path: &str, auth: Option<&str>, body: Bytes) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("http://{}{path}", self.addr));
        if let Some(token) = auth {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = self.client.request(req.body(Full::new(body)).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {bytes:?}"));
        Reply { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str, auth: Option<&str>, body: Option<Value>) -> Reply {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.raw(method, path, auth, body).await
    }

    /// As the admin; asserts a 200.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method.clone(), path, Some(&self.admin), body).await;
        assert_eq!(r.status, 200, "{method} {path}: {:?}", r.body);
        r.body
    }

    async fn create(&self, id: &str) -> Value {
        self.ok(
            Method::POST,
            &format!("/v1/projects/{PROJECT_ID}/secrets?secretId={id}"),
            Some(json!({"replication": {"automatic": {}}})),
        )
        .await
    }

    async fn add(&self, id: &str, value: &[u8]) -> Value {
        let body =
            json!({"payload": {"data": STANDARD.encode(value), "dataCrc32c": crc32c::crc32c(value).to_string()}});
        self.ok(Method::POST, &format!("/v1/projects/{PROJECT_ID}/secrets/{id}:addVersion"), Some(body)).await
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default()
    }
}

fn data(v: &Value) -> Vec<u8> {
    STANDARD.decode(v["payload"]["data"].as_str().unwrap()).unwrap()
}

fn is_rfc3339(t: &Value) -> bool {
    let t = t.as_str().unwrap_or("");
    t.len() >= 20 && t.ends_with('Z') && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T'
}

#[tokio::test]
async fn a_secret_s_whole_life_as_the_admin() {
    let api = start("life").await;
    let p = format!("/v1/projects/{PROJECT_ID}");

    let body = json!({"replication": {"automatic": {}}, "labels": {"env": "dev"}});
    let s = api
        .ok(Method::POST, &format!("{p}/secrets?secretId=db-password&$alt=json;enum-encoding=int"), Some(body))
        .await;
    assert_eq!(s["name"], format!("projects/{NUMBER}/secrets/db-password"), "names carry the project number");
    assert_eq!(s["replication"], json!({"automatic": {}}));
    assert_eq!(s["labels"], json!({"env": "dev"}));
    assert!(is_rfc3339(&s["createTime"]), "{s}");
    assert!(s["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(api.ok(Method::GET, &format!("{p}/secrets/db-password"), None).await, s);

    let patched = api
        .ok(
            Method::PATCH,
            &format!("{p}/secrets/db-password?updateMask=labels"),
            Some(json!({"labels": {"env": "prod"}})),
        )
        .await;
    assert_eq!(patched["labels"], json!({"env": "prod"}));

    let v1 = api.add("db-password", b"hunter2").await;
    assert_eq!(v1["name"], format!("projects/{NUMBER}/secrets/db-password/versions/1"));
    assert_eq!(v1["state"], "ENABLED");
    assert_eq!(v1["clientSpecifiedPayloadChecksum"], true);
    assert!(is_rfc3339(&v1["createTime"]));
    api.add("db-password", b"hunter3").await;
    let v3 = api.add("db-password", &[0, 255, 10, 13]).await;
    assert_eq!(v3["name"], format!("projects/{NUMBER}/secrets/db-password/versions/3"));

    // `latest` resolves to the newest version, and the answer names it.
    let latest = api.ok(Method::GET, &format!("{p}/secrets/db-password/versions/latest:access"), None).await;
    assert_eq!(latest["name"], format!("projects/{NUMBER}/secrets/db-password/versions/3"));
    assert_eq!(data(&latest), [0, 255, 10, 13], "bytes come back exactly");
    assert_eq!(latest["payload"]["dataCrc32c"], crc32c::crc32c(&[0, 255, 10, 13]).to_string(), "int64 as a string");
    let one = api.ok(Method::GET, &format!("{p}/secrets/db-password/versions/1:access"), None).await;
    assert_eq!(data(&one), b"hunter2");

    let listed = api.ok(Method::GET, &format!("{p}/secrets/db-password/versions"), None).await;
    let names: Vec<&str> = listed["versions"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(names[0].ends_with("/versions/3") && names[2].ends_with("/versions/1"), "newest first: {names:?}");
    assert_eq!(listed["totalSize"], 3);

    // Disabled: kept, refused, and `latest` never falls back to an older version.
    let d = api.ok(Method::POST, &format!("{p}/secrets/db-password/versions/3:disable"), Some(json!({}))).await;
    assert_eq!(d["state"], "DISABLED");
    let r =
        api.call(Method::GET, &format!("{p}/secrets/db-password/versions/latest:access"), Some(&api.admin), None).await;
    assert_eq!(
        r.error(),
        (
            400,
            "FAILED_PRECONDITION",
            "Secret Version [projects/123456789012/secrets/db-password/versions/3] is in DISABLED state."
        )
    );
    let e = api.ok(Method::POST, &format!("{p}/secrets/db-password/versions/3:enable"), None).await;
    assert_eq!(e["state"], "ENABLED");

    // Destroyed: wiped for good, with its time.
    let g = api.ok(Method::POST, &format!("{p}/secrets/db-password/versions/2:destroy"), Some(json!({}))).await;
    assert_eq!(g["state"], "DESTROYED");
    assert!(is_rfc3339(&g["destroyTime"]), "{g}");
    let r = api.call(Method::GET, &format!("{p}/secrets/db-password/versions/2:access"), Some(&api.admin), None).await;
    assert_eq!(
        r.error(),
        (
            400,
            "FAILED_PRECONDITION",
            "Secret Version [projects/123456789012/secrets/db-password/versions/2] is in DESTROYED state."
        )
    );
    let r = api.call(Method::POST, &format!("{p}/secrets/db-password/versions/2:enable"), Some(&api.admin), None).await;
    assert_eq!(r.error().1, "FAILED_PRECONDITION");
    let got = api.ok(Method::GET, &format!("{p}/secrets/db-password/versions/2"), None).await;
    assert_eq!((got["state"].as_str(), got["destroyTime"].is_string()), (Some("DESTROYED"), true));

    // Deleted: gone, versions and all.
    assert_eq!(api.ok(Method::DELETE, &format!("{p}/secrets/db-password"), None).await, json!({}));
    let r = api.call(Method::GET, &format!("{p}/secrets/db-password"), Some(&api.admin), None).await;
    assert_eq!(r.error().0, 404);
    assert_eq!(r.error().1, "NOT_FOUND");
    let r = api.call(Method::GET, &format!("{p}/secrets/db-password/versions/1:access"), Some(&api.admin), None).await;
    assert_eq!(r.error().1, "NOT_FOUND");

    let audit = api.audit();
    assert!(audit.lines().count() >= 15, "one record per call:\n{audit}");
    for needle in ["hunter2", "hunter3", "aHVudGVyMg", api.admin.as_str()] {
        assert!(!audit.contains(needle), "the audit file holds `{needle}`:\n{audit}");
    }
}

#[tokio::test]
async fn credentials_decide_who_calls() {
    let api = start("creds").await;
    api.create("db").await;
    api.add("db", b"s3cr3t-value").await;
    let path = format!("/v1/projects/{PROJECT_ID}/secrets/db/versions/latest:access");

    // No credential: 401 with Google's message and challenge.
    let r = api.call(Method::GET, &path, None, None).await;
    assert_eq!(
        r.error(),
        (
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential."
        )
    );
    assert_eq!(r.headers["www-authenticate"], r#"Bearer realm="https://accounts.google.com/""#);
    assert_eq!(r.body["error"]["details"][0]["reason"], "CREDENTIALS_MISSING");

    // Bad credentials: 401.
    let unknown = "ya29.moat.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let wrong_aud = api.id_token(APP, "https://somewhere-else.example.com");
    let expired_id = api.at(-7200, || api.id_token(APP, "https://secretmanager.googleapis.com/"));
    let expired_access = api.at(-4000, || api.access_token(APP, &[CLOUD_PLATFORM]));
    for (what, token) in [
        ("garbage", "not-a-token"),
        ("unknown access token", unknown),
        ("expired access token", expired_access.as_str()),
        ("ID token for another audience", wrong_aud.as_str()),
        ("expired ID token", expired_id.as_str()),
    ] {
        let r = api.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(r.error().0, 401, "{what}: {:?}", r.body);
        assert_eq!(r.error().1, "UNAUTHENTICATED", "{what}");
        assert!(r.error().2.starts_with("Request had invalid authentication credentials."), "{what}: {}", r.error().2);
        assert!(r.headers.contains_key("www-authenticate"), "{what}");
    }

    // An access token without the cloud-platform scope: 403.
    let narrow = api.access_token(APP, &["https://www.googleapis.com/auth/userinfo.email"]);
    let r = api.call(Method::GET, &path, Some(&narrow), None).await;
    assert_eq!(r.error(), (403, "PERMISSION_DENIED", "Request had insufficient authentication scopes."));
    assert_eq!(r.body["error"]["details"][0]["reason"], "ACCESS_TOKEN_SCOPE_INSUFFICIENT");

    // Good credentials: the project's secret admin by access token, and by ID token for the
    // API's audience (with or without the slash) or this listener's URL.
    let token = api.access_token(APP, &[CLOUD_PLATFORM]);
    let r = api.call(Method::GET, &path, Some(&token), None).await;
    assert_eq!((r.status, data(&r.body)), (200, b"s3cr3t-value".to_vec()), "{:?}", r.body);
    for aud in [
        "https://secretmanager.googleapis.com/".to_owned(),
        "https://secretmanager.googleapis.com".to_owned(),
        format!("http://{}", api.addr),
        format!("http://{}/", api.addr),
    ] {
        let r = api.call(Method::GET, &path, Some(&api.id_token(APP, &aud)), None).await;
        assert_eq!(r.status, 200, "aud {aud}: {:?}", r.body);
    }

    // An authenticated principal without a role: 403 from IAM.
    let stranger = api.access_token(STRANGER, &[CLOUD_PLATFORM]);
    let r = api.call(Method::GET, &path, Some(&stranger), None).await;
    assert_eq!(r.error().0, 403);
    assert_eq!(r.error().1, "PERMISSION_DENIED");
    assert!(r.error().2.contains("secretmanager.versions.access"), "{}", r.error().2);

    let audit = api.audit();
    let encoded = STANDARD.encode(b"s3cr3t-value");
    for needle in ["s3cr3t-value", &encoded, &token, &stranger, &api.admin, &wrong_aud] {
        assert!(!audit.contains(needle), "the audit file holds a value or a token:\n{audit}");
    }
    assert!(audit.contains(STRANGER), "the refused principal is audited:\n{audit}");
}

#[tokio::test]
async fn iam_policies_are_set_read_tested_and_etag_checked() {
    let api = start("iam").await;
    api.create("db").await;
    api.add("db", b"v1").await;
    let s = format!("/v1/projects/{PROJECT_ID}/secrets/db");
    let stranger = api.access_token(STRANGER, &[CLOUD_PLATFORM]);

    let empty = api.ok(Method::GET, &format!("{s}:getIamPolicy?options.requestedPolicyVersion=3"), None).await;
    assert!(empty["bindings"].is_null(), "{empty}");
    let etag = empty["etag"].as_str().unwrap().to_owned();
    assert!(STANDARD.decode(&etag).is_ok(), "a policy etag is bytes: base64 `{etag}`");

    let binding =
        json!([{"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{STRANGER}")]}]);
    let set = api
        .ok(Method::POST, &format!("{s}:setIamPolicy"), Some(json!({"policy": {"bindings": binding, "etag": etag}})))
        .await;
    assert_eq!(set["bindings"], binding);
    assert_ne!(set["etag"], etag.as_str());

    // The old etag is stale now.
    let stale = json!({"policy": {"bindings": [], "etag": etag}});
    let r = api.call(Method::POST, &format!("{s}:setIamPolicy"), Some(&api.admin), Some(stale)).await;
    assert_eq!((r.error().0, r.error().1), (409, "ABORTED"));

    // GET and POST read the same policy.
    let got = api.ok(Method::GET, &format!("{s}:getIamPolicy"), None).await;
    assert_eq!(got, set);
    assert_eq!(api.ok(Method::POST, &format!("{s}:getIamPolicy"), Some(json!({"options": {}}))).await, set);

    // The accessor reads, and holds nothing else.
    let r = api.call(Method::GET, &format!("{s}/versions/1:access"), Some(&stranger), None).await;
    assert_eq!((r.status, data(&r.body)), (200, b"v1".to_vec()));
    let body =
        json!({"permissions": ["secretmanager.versions.access", "secretmanager.versions.add", "not.a.permission"]});
    let r = api.call(Method::POST, &format!("{s}:testIamPermissions"), Some(&stranger), Some(body.clone())).await;
    assert_eq!(r.body, json!({"permissions": ["secretmanager.versions.access"]}));
    let r = api
        .call(Method::POST, &format!("{s}:addVersion"), Some(&stranger), Some(json!({"payload": {"data": "eA=="}})))
        .await;
    assert_eq!(r.error().1, "PERMISSION_DENIED");
    let held = api.ok(Method::POST, &format!("{s}:testIamPermissions"), Some(body)).await;
    assert_eq!(held["permissions"].as_array().unwrap().len(), 2, "the admin holds both real ones: {held}");

    // The etag is `bytes`: sent back in the URL-safe alphabet without padding (as gcloud
    // does), it is the same etag. Set until the etag has a character the alphabets spell
    // differently.
    let mut current = api.ok(Method::GET, &format!("{s}:getIamPolicy"), None).await;
    for _ in 0..200 {
        if current["etag"].as_str().unwrap().contains(['+', '/']) {
            break;
        }
        let body = json!({"policy": {"bindings": binding}});
        current = api.ok(Method::POST, &format!("{s}:setIamPolicy"), Some(body)).await;
    }
    let standard = current["etag"].as_str().unwrap();
    assert!(standard.contains(['+', '/']), "no etag with + or / in 200 tries: {standard}");
    let url_safe = standard.replace('+', "-").replace('/', "_").trim_end_matches('=').to_owned();
    let body = json!({"policy": {"bindings": binding, "etag": url_safe}});
    api.ok(Method::POST, &format!("{s}:setIamPolicy"), Some(body)).await;

    // A policy with a malformed member is refused whole.
    let bad = json!({"policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": ["nobody"]}]}});
    let r = api.call(Method::POST, &format!("{s}:setIamPolicy"), Some(&api.admin), Some(bad)).await;
    assert_eq!(r.error().1, "INVALID_ARGUMENT");

    // Audit settings cannot be stored: refused, not dropped, and nothing changes.
    let before = api.ok(Method::GET, &format!("{s}:getIamPolicy"), None).await;
    let audit = json!([{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}]);
    let body = json!({"policy": {"bindings": [], "auditConfigs": audit}});
    let r = api.call(Method::POST, &format!("{s}:setIamPolicy"), Some(&api.admin), Some(body)).await;
    assert_eq!((r.error().0, r.error().1), (400, "INVALID_ARGUMENT"));
    assert!(r.error().2.contains("auditConfigs is not supported"), "{}", r.error().2);
    assert_eq!(api.ok(Method::GET, &format!("{s}:getIamPolicy"), None).await, before);
    // An empty list carries nothing and is accepted.
    let body = json!({"policy": {"bindings": binding, "auditConfigs": []}});
    api.ok(Method::POST, &format!("{s}:setIamPolicy"), Some(body)).await;
}

#[tokio::test]
async fn lists_come_in_pages() {
    let api = start("pages").await;
    for id in ["e", "a", "d", "b", "c"] {
        api.create(id).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page =
            api.ok(Method::GET, &format!("/v1/projects/{PROJECT_ID}/secrets?pageSize=2&pageToken={token}"), None).await;
        assert_eq!(page["totalSize"], 5, "{page}");
        let items = page["secrets"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|s| s["name"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()));
        match page["nextPageToken"].as_str() {
            Some(t) => t.clone_into(&mut token),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);

    for i in 0..5u8 {
        api.add("a", &[i]).await;
    }
    let first = api.ok(Method::GET, &format!("/v1/projects/{PROJECT_ID}/secrets/a/versions?pageSize=3"), None).await;
    assert_eq!(first["versions"].as_array().unwrap().len(), 3);
    let next = first["nextPageToken"].as_str().unwrap();
    let rest = api
        .ok(Method::GET, &format!("/v1/projects/{PROJECT_ID}/secrets/a/versions?pageSize=3&pageToken={next}"), None)
        .await;
    let names: Vec<&str> = rest["versions"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(names[0].ends_with("/versions/2") && names[1].ends_with("/versions/1"), "{names:?}");
    assert!(rest["nextPageToken"].is_null());

    // An empty project lists as `{}` (proto3 leaves out empty fields).
    let other = start("pages-empty").await;
    assert_eq!(other.ok(Method::GET, &format!("/v1/projects/{NUMBER}/secrets"), None).await, json!({}));
}

#[tokio::test]
async fn wire_forms_enum_encoding_regional_paths_and_project_names() {
    let api = start("wire").await;
    api.create("db").await;
    api.add("db", b"x").await;

    // What google-cloud-secret-manager sends: `$alt=json;enum-encoding=int` → enums as numbers.
    let v = api
        .ok(
            Method::GET,
            &format!("/v1/projects/{PROJECT_ID}/secrets/db/versions/1?%24alt=json%3Benum-encoding%3Dint"),
            None,
        )
        .await;
    assert_eq!(v["state"], 1);
    // gcloud's `alt=json` and unknown parameters: names.
    let v = api
        .ok(Method::GET, &format!("/v1/projects/{PROJECT_ID}/secrets/db/versions/1?alt=json&prettyPrint=false"), None)
        .await;
    assert_eq!(v["state"], "ENABLED");

    // The project number works as well as the id; the regional twin names the location.
    let r = api
        .ok(
            Method::GET,
            &format!("/v1/projects/{NUMBER}/locations/us-central1/secrets/db/versions/latest:access"),
            None,
        )
        .await;
    assert_eq!(r["name"], format!("projects/{NUMBER}/locations/us-central1/secrets/db/versions/1"));
    let s = api.ok(Method::GET, &format!("/v1/projects/{PROJECT_ID}/locations/us-central1/secrets/db"), None).await;
    assert_eq!(s["name"], format!("projects/{NUMBER}/locations/us-central1/secrets/db"));
    assert!(s["replication"].is_null(), "regional secrets have no replication: {s}");
    let regional = api.ok(Method::GET, &format!("/v1/projects/{PROJECT_ID}/locations/us-central1/secrets"), None).await;
    assert_eq!(regional["secrets"][0]["name"], format!("projects/{NUMBER}/locations/us-central1/secrets/db"));

    // Another project: not here.
    let r = api.call(Method::GET, "/v1/projects/other-proj/secrets/db", Some(&api.admin), None).await;
    assert_eq!((r.error().0, r.error().1), (404, "NOT_FOUND"));
    assert!(r.error().2.contains("`other-proj`"), "{}", r.error().2);
    // ...but only once the caller is known.
    let r = api.call(Method::GET, "/v1/projects/other-proj/secrets/db", None, None).await;
    assert_eq!(r.error().0, 401);
}

#[tokio::test]
async fn malformed_requests_and_conflicts() {
    let api = start("errors").await;
    api.create("db").await;
    let s = format!("/v1/projects/{PROJECT_ID}/secrets");
    let admin = Some(api.admin.as_str());

    let r = api.raw(Method::POST, &format!("{s}/db:addVersion"), admin, Bytes::from_static(b"{\"payload\": ")).await;
    assert_eq!((r.error().0, r.error().1), (400, "INVALID_ARGUMENT"));
    assert!(r.error().2.starts_with("Invalid JSON payload received. EOF while parsing"), "{}", r.error().2);

    let big = Bytes::from(vec![b' '; 1024 * 1024 + 1]);
    let r = api.raw(Method::POST, &format!("{s}/db:addVersion"), admin, big).await;
    assert_eq!(r.status, 413, "{:?}", r.body);

    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (Method::POST, format!("{s}?secretId=db"), Some(json!({})), 409, "ALREADY_EXISTS"),
        (Method::POST, s.clone(), Some(json!({})), 400, "INVALID_ARGUMENT"),
        (Method::POST, format!("{s}?secretId=bad%20id"), None, 400, "INVALID_ARGUMENT"),
        (Method::POST, format!("{s}?secretId=t"), Some(json!({"ttl": "60s"})), 400, "INVALID_ARGUMENT"),
        (Method::GET, format!("{s}/nope"), None, 404, "NOT_FOUND"),
        (Method::GET, format!("{s}/nope/versions/1:access"), None, 404, "NOT_FOUND"),
        (Method::GET, format!("{s}/db/versions/latest:access"), None, 404, "NOT_FOUND"),
        (Method::GET, format!("{s}/db/versions/0:access"), None, 400, "INVALID_ARGUMENT"),
        (Method::POST, format!("{s}/db:addVersion"), Some(json!({})), 400, "INVALID_ARGUMENT"),
        (Method::POST, format!("{s}/db:addVersion"), Some(json!({"payload": {"data": "!!"}})), 400, "INVALID_ARGUMENT"),
        (
            Method::POST,
            format!("{s}/db:addVersion"),
            Some(json!({"payload": {"data": "eA==", "dataCrc32c": "1"}})),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            Method::POST,
            format!("{s}/db:addVersion"),
            Some(json!({"payload": {"data": STANDARD.encode(vec![0u8; 64 * 1024 + 1])}})),
            400,
            "INVALID_ARGUMENT",
        ),
        (Method::PATCH, format!("{s}/db"), Some(json!({"labels": {}})), 400, "INVALID_ARGUMENT"),
        (Method::PATCH, format!("{s}/db?updateMask=replication"), Some(json!({})), 400, "INVALID_ARGUMENT"),
        (Method::PATCH, format!("{s}/db?updateMask=labels"), Some(json!({"etag": "\"0\""})), 409, "ABORTED"),
        (Method::DELETE, format!("{s}/db?etag=%220%22"), None, 409, "ABORTED"),
        (Method::GET, format!("{s}?filter=name:db"), None, 400, "INVALID_ARGUMENT"),
        (Method::GET, "/v1/projects".to_owned(), None, 404, "NOT_FOUND"),
        (Method::PUT, format!("{s}/db"), None, 404, "NOT_FOUND"),
        (Method::POST, format!("{s}/db:rotateSecret"), Some(json!({})), 501, "UNIMPLEMENTED"),
    ];
    for (method, path, body, code, status) in cases {
        let r = api.call(method.clone(), &path, admin, body).await;
        assert_eq!((r.error().0, r.error().1), (code, status), "{method} {path}: {:?}", r.body);
    }

    // Version etags: a stale one is refused, the current one accepted.
    let v = api.add("db", b"x").await;
    let r =
        api.call(Method::POST, &format!("{s}/db/versions/1:disable"), admin, Some(json!({"etag": "\"stale\""}))).await;
    assert_eq!((r.error().0, r.error().1), (409, "ABORTED"));
    let d = api.ok(Method::POST, &format!("{s}/db/versions/1:disable"), Some(json!({"etag": v["etag"]}))).await;
    assert_eq!(d["state"], "DISABLED");
    // The secret's current etag deletes it.
    let etag = api.ok(Method::GET, &format!("{s}/db"), None).await["etag"].as_str().unwrap().to_owned();
    let encoded: String = etag.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(api.ok(Method::DELETE, &format!("{s}/db?etag={encoded}"), None).await, json!({}));
}

#[tokio::test]
async fn the_master_key_is_rotated_by_the_admin_only_outside_the_google_surface() {
    let api = start("rotate").await;
    api.create("db").await;
    api.add("db", b"before-rotation").await;
    let path = moat_server::secrets::ROTATE_MASTER_KEY_PATH;
    assert_eq!(path, "/moat/v1/masterKey:rotate");

    // Not the admin: refused before anything happens.
    let r = api.call(Method::POST, path, None, None).await;
    assert_eq!(r.error().0, 401);
    let token = api.access_token(APP, &[CLOUD_PLATFORM]);
    let r = api.call(Method::POST, path, Some(&token), None).await;
    let (code, status, message) = r.error();
    assert_eq!((code, status), (403, "PERMISSION_DENIED"));
    assert!(message.contains("only moat's admin credential may rotate the master key"), "{message}");
    assert!(!api.dir.join("master.key").exists(), "nothing was rotated");
    // Other methods and paths under /moat/v1/ are not found, whoever asks.
    assert_eq!(api.call(Method::GET, path, Some(&api.admin), None).await.error().0, 404);
    assert_eq!(api.call(Method::POST, "/moat/v1/other", Some(&api.admin), None).await.error().0, 404);

    // The admin: re-wrapped, the key file written, values still readable.
    let v = api.ok(Method::POST, path, None).await;
    assert_eq!(v["versionsRewrapped"], 1);
    let (old, new) = (v["previousMasterKeyId"].as_str().unwrap(), v["masterKeyId"].as_str().unwrap());
    assert_ne!(old, new);
    assert_eq!(new.len(), 8);
    let key = MasterKey::from_file(&api.dir.join("master.key")).unwrap();
    assert_eq!(key.id(), new, "the key file holds the new key");
    let access = format!("/v1/projects/{PROJECT_ID}/secrets/db/versions/latest:access");
    assert_eq!(data(&api.ok(Method::GET, &access, None).await), b"before-rotation");
    assert!(api.audit().contains(r#""action":"rotateMasterKeyFile""#), "audited");
    let again = api.ok(Method::POST, path, None).await;
    assert_eq!(again["previousMasterKeyId"], new);
}
