//! The trust store against a JWKS server the test controls (127.0.0.1:0, hits counted) and
//! JWKS files: §C.4 J7, J8, J28, J29, J30 and J31 at the gateway level.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat_crypto::{Account, JwksError, KeyRing, TokenFormat, VerifyError, sign_id_token};
use moat_server::trust::{
    Algorithm, FetchError, JwksSource, MonotonicClock, TrustError, TrustPolicy, TrustStore, TrustedIssuer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NOW: u64 = 1_750_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "https://svc-a.example";

// ---------------------------------------------------------------- harness

/// A monotonic clock the test moves by hand.
#[derive(Clone)]
struct ManualClock {
    base: Instant,
    offset_ms: Arc<AtomicU64>,
}

impl ManualClock {
    fn new() -> Self {
        Self { base: Instant::now(), offset_ms: Arc::new(AtomicU64::new(0)) }
    }
    fn advance(&self, d: Duration) {
        self.offset_ms.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
    fn clock(&self) -> MonotonicClock {
        let me = self.clone();
        Arc::new(move || me.base + Duration::from_millis(me.offset_ms.load(Ordering::SeqCst)))
    }
}

#[derive(Clone)]
enum Reply {
    Jwks {
        body: String,
        cache_control: Option<&'static str>,
    },
    Status(u16),
    /// Reads the request and never answers.
    Hang,
    Raw(&'static str),
}

/// A tiny HTTP/1.1 JWKS server: every request is counted and answered with `reply`.
struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
}

impl JwksServer {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(reply));
        let (h, r) = (Arc::clone(&hits), Arc::clone(&reply));
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let (h, r) = (Arc::clone(&h), Arc::clone(&r));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let reply = r.lock().unwrap().clone();
                    let (status, body, cc) = match reply {
                        Reply::Jwks { body, cache_control } => (200, body, cache_control),
                        Reply::Status(s) => (s, "{}".to_owned(), None),
                        Reply::Raw(b) => (200, b.to_owned(), None),
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                    };
                    let cc = cc.map(|v| format!("Cache-Control: {v}\r\n")).unwrap_or_default();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{cc}Connection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, hits, reply }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
    fn serve(&self, ring: &KeyRing) {
        self.set(jwks(ring));
    }
}

fn jwks(ring: &KeyRing) -> Reply {
    Reply::Jwks { body: ring.jwks_json(), cache_control: Some("public, max-age=20000") }
}

/// An RS256 token from `iss` signed by `ring`'s current key.
fn token(ring: &KeyRing, iss: &str, aud: &str, sub: &str) -> String {
    token_with_header(ring, &format!(r#"{{"alg":"RS256","kid":"{}","typ":"JWT"}}"#, ring.current_kid()), iss, aud, sub)
}

fn token_with_header(ring: &KeyRing, header: &str, iss: &str, aud: &str, sub: &str) -> String {
    let payload = format!(
        r#"{{"iss":"{iss}","aud":"{aud}","sub":"{sub}","email":"{sub}@example.com","email_verified":true,"iat":{NOW},"exp":{}}}"#,
        NOW + 3600
    );
    ring.danger_sign_arbitrary(header.as_bytes(), payload.as_bytes()).unwrap()
}

fn policy() -> TrustPolicy {
    TrustPolicy {
        min_fetch_interval: Duration::from_secs(60),
        max_staleness: Duration::from_secs(600),
        fetch_timeout: Duration::from_millis(300),
        ..TrustPolicy::default()
    }
}

fn url_store(url: &str, clock: &ManualClock, policy: TrustPolicy) -> TrustStore {
    TrustStore::with_clock(vec![TrustedIssuer::new(ISS, JwksSource::Url(url.to_owned()))], policy, clock.clock())
        .unwrap()
}

fn auds(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "moat-trust-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("jwks.json")
}

/// Writes the file the way a key rotation should: a temp file renamed into place.
fn write_jwks(path: &Path, ring: &KeyRing) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ring.jwks_json()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- J8

#[tokio::test]
async fn j8_rotated_key_costs_one_fetch_and_a_second_unknown_kid_within_the_interval_none() {
    let mut ring = KeyRing::in_memory(NOW).unwrap();
    let server = JwksServer::start(jwks(&ring)).await;
    let clock = ManualClock::new();
    let store = url_store(&server.url(), &clock, policy());
    let a = auds(&[AUD]);

    // Cold start: the first token loads the keys.
    store.verify(&token(&ring, ISS, AUD, "1"), &a, NOW).await.unwrap();
    assert_eq!(server.hits(), 1);

    // The issuer rotates: one fetch, then the new key verifies.
    clock.advance(Duration::from_secs(61));
    ring.rotate(NOW).unwrap();
    server.serve(&ring);
    let rotated = token(&ring, ISS, AUD, "1");
    assert_eq!(store.verify(&rotated, &a, NOW).await.unwrap().key_id(), ring.current_kid());
    assert_eq!(server.hits(), 2);
    store.verify(&rotated, &a, NOW).await.unwrap();
    assert_eq!(server.hits(), 2, "a known kid costs no fetch");

    // Another unknown kid within the interval: refused, no fetch, even though it is published.
    ring.rotate(NOW).unwrap();
    server.serve(&ring);
    let again = token(&ring, ISS, AUD, "1");
    assert_eq!(store.verify(&again, &a, NOW).await.unwrap_err(), VerifyError::UnknownKey);
    let junk = token_with_header(&ring, r#"{"alg":"RS256","kid":"attacker-chosen"}"#, ISS, AUD, "1");
    for _ in 0..5 {
        assert_eq!(store.verify(&junk, &a, NOW).await.unwrap_err(), VerifyError::UnknownKey);
    }
    assert_eq!(server.hits(), 2, "unknown kids within the interval must not reach the JWKS endpoint");

    // After the interval the new key is fetched once more.
    clock.advance(Duration::from_secs(61));
    store.verify(&again, &a, NOW).await.unwrap();
    assert_eq!(server.hits(), 3);
}

// ---------------------------------------------------------------- J30

#[tokio::test]
async fn j30_failed_fetches_keep_the_last_good_keys_until_max_staleness_then_fail_closed() {
    let ring = KeyRing::in_memory(NOW).unwrap();
    let server = JwksServer::start(jwks(&ring)).await;
    let clock = ManualClock::new();
    let store = url_store(&server.url(), &clock, policy());
    let a = auds(&[AUD]);
    let good = token(&ring, ISS, AUD, "1");
    assert!(store.refresh_all().await.is_empty());
    store.verify(&good, &a, NOW).await.unwrap();

    type Expect = fn(&FetchError) -> bool;
    let failures: [(Reply, Expect); 4] = [
        (Reply::Status(500), |e| *e == FetchError::Status(500)),
        (Reply::Hang, |e| matches!(e, FetchError::Timeout(_))),
        (Reply::Raw("<html>not json</html>"), |e| matches!(e, FetchError::Jwks(JwksError::Json(_)))),
        (Reply::Raw(r#"{"keys":[]}"#), |e| *e == FetchError::Jwks(JwksError::Empty)),
    ];
    let other = KeyRing::in_memory(NOW).unwrap();
    let unknown = token(&other, ISS, AUD, "1");
    for (reply, expected) in failures {
        server.set(reply);
        // The owner's refresh reports the failure...
        let err = store.refresh(ISS).await.unwrap_err();
        assert!(expected(&err), "{err:?}");
        // ...and a token-triggered one (unknown kid, interval passed) fails the same way.
        clock.advance(Duration::from_secs(61));
        let before = server.hits();
        assert_eq!(store.verify(&unknown, &a, NOW).await.unwrap_err(), VerifyError::UnknownKey);
        assert_eq!(server.hits(), before + 1);
        // The last good keys still verify.
        store.verify(&good, &a, NOW).await.unwrap();
    }

    // 4 × 61 s have passed since the last success; past 600 s the keys are too stale.
    server.set(Reply::Status(500));
    clock.advance(Duration::from_secs(600 - 4 * 61 + 1));
    assert_eq!(store.verify(&good, &a, NOW).await.unwrap_err(), VerifyError::NoKeys);
    assert!(store.verifier(ISS).unwrap().key_set().is_empty(), "stale keys are dropped from the verifier too");
    assert_eq!(store.verify(&good, &a, NOW).await.unwrap_err(), VerifyError::NoKeys);

    // The endpoint recovers: the next allowed fetch restores service.
    server.serve(&ring);
    clock.advance(Duration::from_secs(61));
    store.verify(&good, &a, NOW).await.unwrap();
}

#[tokio::test]
async fn j30_cold_start_with_the_source_down_rejects_every_token() {
    let ring = KeyRing::in_memory(NOW).unwrap();
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let clock = ManualClock::new();
    let store = TrustStore::with_clock(
        vec![
            TrustedIssuer::new(ISS, JwksSource::Url(format!("http://{down}/jwks"))),
            TrustedIssuer::new("https://file.example", JwksSource::File(temp_path("missing").with_file_name("none"))),
        ],
        policy(),
        clock.clock(),
    )
    .unwrap();
    let a = auds(&[AUD]);
    for iss in [ISS, "https://file.example"] {
        let t = token(&ring, iss, AUD, "1");
        assert_eq!(store.verify(&t, &a, NOW).await.unwrap_err(), VerifyError::NoKeys, "{iss}");
        clock.advance(Duration::from_secs(61));
        assert_eq!(store.verify(&t, &a, NOW).await.unwrap_err(), VerifyError::NoKeys, "{iss}");
    }
    assert!(matches!(store.refresh(ISS).await, Err(FetchError::Http(_))));
    assert!(matches!(store.refresh("https://file.example").await, Err(FetchError::File { .. })));
}

// ---------------------------------------------------------------- J31, J7

#[tokio::test]
async fn j31_unconfigured_issuer_and_token_urls_cause_no_fetch_anywhere() {
    let ring = KeyRing::in_memory(NOW).unwrap();
    let trusted = JwksServer::start(jwks(&ring)).await;
    let attacker_ring = KeyRing::in_memory(NOW).unwrap();
    let attacker = JwksServer::start(jwks(&attacker_ring)).await;
    let clock = ManualClock::new();
    let store = url_store(&trusted.url(), &clock, policy());
    let a = auds(&[AUD]);

    // `iss` names the attacker's host, and the header points there too.
    let evil_iss = format!("http://{}", attacker.addr);
    let header = format!(
        r#"{{"alg":"RS256","kid":"{}","jku":"{}","x5u":"{}"}}"#,
        attacker_ring.current_kid(),
        attacker.url(),
        attacker.url()
    );
    let t = token_with_header(&attacker_ring, &header, &evil_iss, AUD, "1");
    assert_eq!(store.verify(&t, &a, NOW).await.unwrap_err(), VerifyError::Issuer);
    assert_eq!((trusted.hits(), attacker.hits()), (0, 0));

    // A configured `iss` with an attacker's key and `jku`: only the configured JWKS is asked.
    let t = token_with_header(&attacker_ring, &header, ISS, AUD, "1");
    assert_eq!(store.verify(&t, &a, NOW).await.unwrap_err(), VerifyError::UnknownKey);
    assert_eq!((trusted.hits(), attacker.hits()), (1, 0));
}

// ---------------------------------------------------------------- J29

#[tokio::test]
async fn j29_cached_acceptance_does_not_leak_across_audiences_and_removed_keys_revoke() {
    let ring = KeyRing::in_memory(NOW).unwrap();
    let server = JwksServer::start(jwks(&ring)).await;
    let clock = ManualClock::new();
    let store = url_store(&server.url(), &clock, policy());
    let t = token(&ring, ISS, AUD, "1");
    let svc_a = auds(&[AUD, "https://svc-a.example/"]);
    let svc_b = auds(&["https://svc-b.example", "https://svc-b.example/"]);

    for _ in 0..2 {
        assert_eq!(store.verify(&t, &svc_a, NOW).await.unwrap().audience(), AUD);
        assert_eq!(store.verify(&t, &svc_b, NOW).await.unwrap_err(), VerifyError::Audience);
    }
    assert_eq!(store.verify(&t, &[], NOW).await.unwrap_err(), VerifyError::Audience);
    // Past `exp` + leeway a cached acceptance ends.
    assert_eq!(store.verify(&t, &svc_a, NOW + 3600 + 61).await.unwrap_err(), VerifyError::Expired);

    // The issuer withdraws the key: the next refresh revokes the cached token.
    let successor = KeyRing::in_memory(NOW).unwrap();
    server.serve(&successor);
    store.refresh(ISS).await.unwrap();
    assert_eq!(store.verify(&t, &svc_a, NOW).await.unwrap_err(), VerifyError::UnknownKey);
}

// ---------------------------------------------------------------- J28

#[tokio::test]
async fn j28_two_issuers_with_the_same_sub_stay_distinct() {
    let moat = KeyRing::in_memory(NOW).unwrap();
    let other = KeyRing::in_memory(NOW).unwrap();
    let store = TrustStore::new(
        vec![
            TrustedIssuer::new("https://accounts.google.com", JwksSource::Static(moat.key_set()))
                .with_aliases(&["accounts.google.com"]),
            TrustedIssuer::new(ISS, JwksSource::Static(other.key_set())),
        ],
        TrustPolicy::default(),
    )
    .unwrap();
    let a = auds(&[AUD]);
    let account = Account::service_account("runner@proj.iam.gserviceaccount.com");
    let google = sign_id_token(&moat, &account, AUD, NOW, TokenFormat::Standard, None).unwrap();
    let g = store.verify(&google, &a, NOW).await.unwrap();
    let o = store.verify(&token(&other, ISS, AUD, g.subject()), &a, NOW).await.unwrap();
    assert_eq!(g.subject(), o.subject());
    assert_ne!(g.subject_id(), o.subject_id());
    assert_eq!(o.subject_id(), format!("{ISS}/{}", g.subject()));
    // The IAM principals differ too: Google's names the email, the other issuer (no email
    // domains configured) its issuer-scoped subject, whatever email it asserts.
    assert_eq!(g.principal(), Some(moat_policy::Principal::ServiceAccount(account.email.clone())));
    assert_eq!(
        o.principal(),
        Some(moat_policy::Principal::Federated(format!("principal://issuer.example/subject/{}", g.subject())))
    );

    // Each issuer verifies only with its own keys.
    let crossed = token(&other, "https://accounts.google.com", AUD, "1");
    assert_eq!(store.verify(&crossed, &a, NOW).await.unwrap_err(), VerifyError::UnknownKey);
    // The alias reaches the same verifier.
    store.verify(&token(&moat, "accounts.google.com", AUD, "1"), &a, NOW).await.unwrap();
    // A static source's owner rotates through the store's verifier.
    store.verifier("https://accounts.google.com").unwrap().replace_keys(other.key_set());
    store.verify(&crossed, &a, NOW).await.unwrap();
    assert_eq!(store.refresh(ISS).await, Err(FetchError::Static(ISS.to_owned())));
}

// ---------------------------------------------------------------- file and schedules

#[tokio::test]
async fn file_source_picks_up_a_rotated_file_on_demand_and_on_its_interval() {
    let mut ring = KeyRing::in_memory(NOW).unwrap();
    let path = temp_path("rotate");
    write_jwks(&path, &ring);
    let clock = ManualClock::new();
    let policy = TrustPolicy { file_interval: Duration::from_millis(100), ..policy() };
    let store =
        TrustStore::with_clock(vec![TrustedIssuer::new(ISS, JwksSource::File(path.clone()))], policy, clock.clock())
            .unwrap();
    let a = auds(&[AUD]);
    store.verify(&token(&ring, ISS, AUD, "1"), &a, NOW).await.unwrap();

    // On demand: an unknown kid re-reads the file once the interval allows.
    ring.rotate(NOW).unwrap();
    write_jwks(&path, &ring);
    let second = token(&ring, ISS, AUD, "1");
    assert_eq!(store.verify(&second, &a, NOW).await.unwrap_err(), VerifyError::UnknownKey);
    clock.advance(Duration::from_secs(61));
    store.verify(&second, &a, NOW).await.unwrap();

    // On the interval: the background task re-reads it while the on-demand gate is closed.
    let refreshers = store.spawn_refreshers();
    assert_eq!(refreshers.len(), 1);
    ring.rotate(NOW).unwrap();
    write_jwks(&path, &ring);
    let kid = ring.current_kid().to_owned();
    wait_until("the rotated file is read", || store.verifier(ISS).unwrap().has_key(&kid)).await;
    store.verify(&token(&ring, ISS, AUD, "1"), &a, NOW).await.unwrap();
    refreshers.cancel();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn url_refresher_follows_clamped_max_age_and_stops_when_cancelled() {
    let mut ring = KeyRing::in_memory(NOW).unwrap();
    let server = JwksServer::start(jwks(&ring)).await;
    let clock = ManualClock::new();
    // max-age=20000 clamps down to 150 ms here.
    let fast =
        TrustPolicy { min_refresh: Duration::from_millis(150), max_refresh: Duration::from_millis(150), ..policy() };
    let store = url_store(&server.url(), &clock, fast);
    let refreshers = store.spawn_refreshers();
    wait_until("the first scheduled fetch", || server.hits() >= 1).await;
    ring.rotate(NOW).unwrap();
    server.serve(&ring);
    let kid = ring.current_kid().to_owned();
    wait_until("the scheduled refresh brings the new key", || store.verifier(ISS).unwrap().has_key(&kid)).await;
    store.verify(&token(&ring, ISS, AUD, "1"), &auds(&[AUD]), NOW).await.unwrap();

    refreshers.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped_at = server.hits();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.hits(), stopped_at, "a cancelled refresher fetches no more");

    // A tiny max-age clamps up to `min_refresh`: no fetch storm.
    let server = JwksServer::start(Reply::Jwks { body: ring.jwks_json(), cache_control: Some("max-age=0") }).await;
    let slow = TrustPolicy { min_refresh: Duration::from_secs(5), ..policy() };
    let store = url_store(&server.url(), &clock, slow);
    let refreshers = store.spawn_refreshers();
    wait_until("the first scheduled fetch", || server.hits() >= 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.hits(), 1);
    drop(refreshers);
}

// ---------------------------------------------------------------- configuration

#[test]
fn configuration_errors_are_caught_at_build_time() {
    let build = |issuers: Vec<TrustedIssuer>| TrustStore::new(issuers, TrustPolicy::default()).map(|_| ());
    let url = |u: &str| TrustedIssuer::new(ISS, JwksSource::Url(u.to_owned()));
    for bad in ["ftp://keys.example/jwks", "/jwks.json", "http://user:pw@keys.example/jwks", "not a url"] {
        assert!(matches!(build(vec![url(bad)]), Err(TrustError::BadUrl { .. })), "{bad}");
    }
    let empty = KeyRing::in_memory(NOW).unwrap().key_set();
    assert_eq!(
        build(vec![
            TrustedIssuer::new(ISS, JwksSource::Static(empty.clone())),
            TrustedIssuer::new("https://b", JwksSource::Static(empty.clone())).with_aliases(&[ISS]),
        ]),
        Err(TrustError::DuplicateIssuer(ISS.to_owned()))
    );
    assert_eq!(
        build(vec![TrustedIssuer::new(ISS, JwksSource::Static(empty.clone())).with_algorithms(&[])]),
        Err(TrustError::NoAlgorithms(ISS.to_owned()))
    );
    assert_eq!(build(vec![TrustedIssuer::new("", JwksSource::Static(empty))]), Err(TrustError::EmptyIssuer));
    // https needs the OS trust store; without one the error says what to install.
    let https = build(vec![
        url("https://www.googleapis.com/oauth2/v3/certs").with_algorithms(&[Algorithm::Rs256, Algorithm::Es256]),
    ]);
    assert!(matches!(https, Ok(()) | Err(TrustError::NoRootCertificates(_))), "{https:?}");
}
