//! The front door over real sockets: spec/cloudrun.md §9 items 4, 5, 6, 9, 10 and 11, the
//! refusal pages byte for byte, what the workload may see (stripped signatures, untouched
//! application headers, no spoofed trust headers), origins that no header can change, unknown
//! hosts, J26 (spec/peers-crates-lessons.md §C.4), upstream failures and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use harness::{Harness, NOW, RawResponse, get, inline_project, request, send, token_for};
use moat_crypto::KeyRing;
use moat_policy::model::NetworkRef;
use moat_policy::{Origin, Principal, Project};
use moat_server::frontdoor::Limits;

const MOAT: &str = r#"
project:
  id: fid-proj
  number: "100000000001"
  region: us-central1
networks:
  - name: default
    subnets:
      - name: default
        region: us-central1
        range: 10.128.0.0/20
        private_google_access: true
load_balancers:
  - name: ilb
    scheme: internal
    network: default
    hosts: [internal.corp.example]
    routes:
      - path: /api/*
        service: internal
"#;

fn service(name: &str, ingress: &str, extra: &str) -> String {
    format!(
        r#"{{"name":"projects/fid-proj/locations/us-central1/services/{name}","uri":"https://{name}-q7x2lmtc3a-uc.a.run.app","urls":["https://{name}-100000000001.us-central1.run.app","https://{name}-q7x2lmtc3a-uc.a.run.app"],"ingress":"{ingress}","template":{{"serviceAccount":"{name}@fid-proj.iam.gserviceaccount.com","containers":[{{"image":"x"}}]}}{extra}}}"#
    )
}

const DEV_INVOKER: &str = r#"{"bindings":[{"role":"roles/run.invoker","members":["user:dev@example.com"]}]}"#;
const ALL_USERS: &str = r#"{"bindings":[{"role":"roles/run.invoker","members":["allUsers"]}]}"#;

/// `private` (dev may invoke), `public` (allUsers), `open` (invoker check disabled),
/// `internal` (internal ingress, dev may invoke, behind the internal load balancer `ilb` on
/// `/api/*`).
fn project() -> Project {
    let private = service("private", "INGRESS_TRAFFIC_ALL", "");
    let public = service("public", "INGRESS_TRAFFIC_ALL", "");
    let open = service("open", "INGRESS_TRAFFIC_ALL", r#","invokerIamDisabled":true"#);
    let internal = service("internal", "INGRESS_TRAFFIC_INTERNAL_ONLY", "");
    inline_project(&[
        ("moat.yaml", MOAT),
        ("services/private.json", &private),
        ("services/public.json", &public),
        ("services/open.json", &open),
        ("services/internal.json", &internal),
        ("iam/private.json", DEV_INVOKER),
        ("iam/public.json", ALL_USERS),
        ("iam/internal.json", DEV_INVOKER),
    ])
}

fn host(name: &str) -> String {
    format!("{name}-100000000001.us-central1.run.app")
}

fn url(name: &str) -> String {
    format!("https://{}", host(name))
}

fn vpc_default() -> Origin {
    Origin::Vpc(NetworkRef { project: "fid-proj".into(), network: "default".into() })
}

async fn start() -> Harness {
    Harness::start(project(), &[Origin::Internet, vpc_default()]).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn forbidden_page(path: &str) -> String {
    format!(
        "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>403 Forbidden</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: Forbidden</h1>\n<h2>Your client does not have permission to get URL <code>{path}</code> from this server.</h2>\n<h2></h2>\n</body></html>\n"
    )
}

fn unauthorized_page(path: &str) -> String {
    format!(
        "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>401 Unauthorized</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: Unauthorized</h1>\n<h2>Your client does not have permission to the requested URL <code>{path}</code>.</h2>\n<h2></h2>\n</body></html>\n"
    )
}

const NOT_FOUND_PAGE: &str = "<html><head>\n<meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">\n<title>404 Page not found</title>\n</head>\n<body text=#000000 bgcolor=#ffffff>\n<h1>Error: Page not found</h1>\n<h2>The requested URL was not found on this server.</h2>\n<h2></h2>\n</body></html>\n";

const CHALLENGE: &str = r#"Bearer error="invalid_token" error_description="The access token could not be verified""#;

async fn call(h: &Harness, name: &str, headers: &[(&str, &str)]) -> RawResponse {
    send(h.internet(), &get(&host(name), "/", headers)).await.expect("an HTTP response")
}

fn assert_html(r: &RawResponse) {
    assert_eq!(r.header("content-type"), Some("text/html; charset=UTF-8"));
}

fn codes(h: &Harness) -> Vec<&'static str> {
    h.last_record().codes()
}

/// §9.4: a private service, no credential header → 403 with Google's page; the reason stays in
/// the decision record. The path is escaped into the page.
#[tokio::test]
async fn private_service_without_a_token_is_403_with_the_forbidden_page() {
    let h = start().await;
    let r = send(h.internet(), &get(&host("private"), "/a&b'c/%3Cx%3E", &[])).await.unwrap();
    assert_eq!(r.status, 403);
    assert_html(&r);
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(r.body, forbidden_page("/a&amp;b&#39;c/%3Cx%3E"));
    assert!(!r.body.contains("iam."), "the reason must not reach the client");
    assert_eq!(codes(&h), ["ingress.all", "token.none", "iam.anonymous"]);
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// §9.5: a good token for another audience → 401 (not 403), the Unauthorized page and the
/// `WWW-Authenticate` challenge.
#[tokio::test]
async fn wrong_audience_is_401_with_the_challenge() {
    let h = start().await;
    let token = h.token("user:dev@example.com", &url("public"));
    let r = send(h.internet(), &get(&host("private"), "/orders", &[("Authorization", &bearer(&token))])).await.unwrap();
    assert_eq!(r.status, 401);
    assert_html(&r);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    assert_eq!(r.body, unauthorized_page("/orders"));
    assert_eq!(codes(&h), ["ingress.all", "token.audience_mismatch"]);
    assert_eq!(h.last_record().layer, Some("authentication"));
}

/// §9.6: expired, bad signature, malformed, wrong issuer → 401, each with its own code in the
/// record and the same page for the client.
#[tokio::test]
async fn expired_forged_malformed_and_foreign_tokens_are_401() {
    let h = start().await;
    let aud = url("private");
    let expired = token_for(&h.keys, &"user:dev@example.com".parse::<Principal>().unwrap(), &aud, NOW - 7200);
    // Another principal's payload under a valid signature: the signature no longer matches.
    let good = h.token("user:dev@example.com", &aud);
    let other = h.token("user:boss@example.com", &aud);
    let g: Vec<&str> = good.split('.').collect();
    let o: Vec<&str> = other.split('.').collect();
    let forged = format!("{}.{}.{}", g[0], o[1], g[2]);
    let header = format!(r#"{{"alg":"RS256","kid":"{}","typ":"JWT"}}"#, h.keys.current_kid());
    let payload = format!(
        r#"{{"aud":"{aud}","email":"dev@example.com","email_verified":true,"exp":{},"iat":{NOW},"iss":"https://evil.example.com","sub":"1"}}"#,
        NOW + 3600
    );
    let foreign = h.keys.danger_sign_arbitrary(header.as_bytes(), payload.as_bytes()).unwrap();
    let stranger_keys = KeyRing::in_memory(NOW).unwrap();
    let unknown_key = token_for(&stranger_keys, &"user:dev@example.com".parse().unwrap(), &aud, NOW);
    let cases = [
        ("expired", expired, "token.expired"),
        ("bad signature", forged, "token.bad_signature"),
        ("malformed", "not-a-jwt".to_owned(), "token.malformed"),
        ("malformed segments", "a.b.c".to_owned(), "token.malformed"),
        ("wrong issuer", foreign, "token.issuer_mismatch"),
        ("signed by an untrusted key", unknown_key, "token.unknown_key"),
    ];
    for (what, token, code) in cases {
        let r = call(&h, "private", &[("Authorization", &bearer(&token))]).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.header("www-authenticate"), Some(CHALLENGE), "{what}");
        assert_eq!(r.body, unauthorized_page("/"), "{what}");
        assert_eq!(codes(&h), ["ingress.all", code], "{what}");
    }
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// §9.9: with both headers only X-Serverless-Authorization is verified; a garbage
/// Authorization passes and reaches the container byte for byte.
#[tokio::test]
async fn x_serverless_authorization_wins_and_authorization_passes_unchanged() {
    let h = start().await;
    let token = h.token("user:dev@example.com", &url("private"));
    let app_auth = "Token  not.a-google=token,with odd/bytes";
    let r = call(&h, "private", &[("Authorization", app_auth), ("X-Serverless-Authorization", &bearer(&token))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("authorization"), [app_auth]);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(
        r.echoed("x-serverless-authorization"),
        [format!("Bearer {}.{}.SIGNATURE_REMOVED_BY_GOOGLE", parts[0], parts[1])]
    );
    assert_eq!(h.last_record().principal.as_deref(), Some("dev@example.com"));
}

/// §9.10: the verified header reaches the container as `<header>.<payload>.SIGNATURE_REMOVED_BY_GOOGLE`,
/// so the container can read the claims but never replay the token.
#[tokio::test]
async fn the_verified_token_reaches_the_container_without_its_signature() {
    let h = start().await;
    let token = h.token("user:dev@example.com", &url("private"));
    let r = call(&h, "private", &[("Authorization", &bearer(&token))]).await;
    assert_eq!(r.status, 200);
    let got = r.echoed("authorization");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(got, [format!("Bearer {}.{}.SIGNATURE_REMOVED_BY_GOOGLE", parts[0], parts[1])]);
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["email"], "dev@example.com");
    assert!(!r.body.contains(parts[2]), "the signature must not reach the container");
    assert_eq!(codes(&h), ["ingress.all", "token.audience_ok", "iam.binding"]);
}

/// §9.11: allUsers lets a request with no token through (and a Google token sent anyway is
/// verified and stripped like any other); invoker-iam-disabled checks nothing and every
/// credential header passes untouched. Ingress still applies (the parity corpus covers that
/// through HTTP: fidelity case 027).
#[tokio::test]
async fn all_users_and_a_disabled_invoker_check() {
    let h = start().await;
    let r = call(&h, "public", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.echoed("authorization").is_empty() && r.echoed("x-serverless-authorization").is_empty());
    assert_eq!(codes(&h), ["ingress.all", "token.none", "iam.binding"]);

    let token = h.token("user:anyone@gmail.com", &url("public"));
    let r = call(&h, "public", &[("Authorization", &bearer(&token))]).await;
    assert_eq!(r.status, 200);
    assert!(r.echoed("authorization")[0].ends_with(".SIGNATURE_REMOVED_BY_GOOGLE"));

    let replayable = h.token("user:dev@example.com", &url("private"));
    let sent = [("Authorization", bearer(&replayable)), ("X-Serverless-Authorization", "Bearer garbage".to_owned())];
    let sent_refs: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = call(&h, "open", &sent_refs).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("authorization"), [bearer(&replayable)]);
    assert_eq!(r.echoed("x-serverless-authorization"), ["Bearer garbage"]);
    assert_eq!(codes(&h), ["ingress.all", "iam.invoker_check_disabled"]);
}

/// Headers only moat (or an identity-aware proxy) may set never come from the client; the
/// request id is moat's; X-Forwarded-For gets the peer appended, X-Forwarded-Proto is moat's.
#[tokio::test]
async fn spoofed_trust_headers_are_stripped() {
    let h = start().await;
    let r = call(
        &h,
        "public",
        &[
            ("X-Moat-Request-Id", "spoofed-id"),
            ("X-Moat-Principal", "user:admin@example.com"),
            ("X-Goog-Authenticated-User-Email", "accounts.google.com:admin@example.com"),
            ("X-Goog-Authenticated-User-Id", "accounts.google.com:1"),
            ("X-Goog-IAP-JWT-Assertion", "forged.jwt.value"),
            ("X-Forwarded-For", "10.128.0.5"),
            ("X-Forwarded-Proto", "https"),
            ("X-App-Header", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    for name in [
        "x-moat-principal",
        "x-goog-authenticated-user-email",
        "x-goog-authenticated-user-id",
        "x-goog-iap-jwt-assertion",
    ] {
        assert!(r.echoed(name).is_empty(), "{name} reached the container");
    }
    assert_eq!(r.echoed("x-moat-request-id"), [h.last_record().request_id]);
    assert_eq!(r.echoed("x-forwarded-for"), ["10.128.0.5, 127.0.0.1"]);
    assert_eq!(r.echoed("x-forwarded-proto"), ["http"]);
    assert_eq!(r.echoed("x-app-header"), ["kept"]);
    assert_eq!(r.echoed("host"), [host("public")]);
}

/// The origin is the listener's. Headers claiming an internal address do not make an internet
/// request internal; the same request on the VPC listener is admitted.
#[tokio::test]
async fn origin_comes_from_the_listener_not_from_headers() {
    let h = start().await;
    let token = h.token("user:dev@example.com", &url("internal"));
    let auth = bearer(&token);
    let claims = [
        ("Authorization", auth.as_str()),
        ("X-Forwarded-For", "10.128.0.5"),
        ("Forwarded", "for=10.128.0.5;proto=https"),
        ("X-Real-IP", "10.128.0.5"),
        ("X-Moat-Origin", "vpc:fid-proj/default"),
        ("Via", "1.1 google"),
    ];
    let r = send(h.internet(), &get(&host("internal"), "/", &claims)).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.body, NOT_FOUND_PAGE);
    assert_eq!(codes(&h), ["ingress.internal_only"]);
    assert_eq!(h.last_record().network_origin.as_deref(), Some("internet"));

    let r = send(h.addr(&vpc_default()), &get(&host("internal"), "/", &claims)).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(codes(&h), ["ingress.same_project_vpc", "token.audience_ok", "iam.binding"]);
    assert_eq!(h.last_record().listener, "vpc:fid-proj/default");
}

/// Unknown hosts, unknown tags and requests without a Host get Cloud Run's 404 page and never
/// reach a workload; local host forms and the port are handled.
#[tokio::test]
async fn hosts_nothing_answers_to_are_404() {
    let h = start().await;
    for host in ["nowhere.example.com", "canary---public-100000000001.us-central1.run.app", "public.example.com"] {
        let r = send(h.internet(), &get(host, "/", &[])).await.unwrap();
        assert_eq!(r.status, 404, "{host}");
        assert_html(&r);
        assert_eq!(r.body, NOT_FOUND_PAGE, "{host}");
        let rec = h.last_record();
        assert_eq!(rec.layer, Some("route"), "{host}");
        assert!(rec.codes()[0].starts_with("route."), "{host}");
    }
    let r = send(h.internet(), "GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    for host in [
        "public.run.localhost:8080",
        "PUBLIC-100000000001.us-central1.run.localhost",
        "public-q7x2lmtc3a-uc.a.run.app:443",
    ] {
        let r = send(h.internet(), &get(host, "/", &[])).await.unwrap();
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(h.last_record().entry.as_deref(), Some("default-url"));
    }
}

/// J26 through HTTP: two Authorization headers are refused; a lower-case `bearer` scheme is
/// accepted; Basic is no token (403 on a private service); with both headers carrying
/// different principals only X-Serverless-Authorization's counts.
#[tokio::test]
async fn j26_token_location_over_http() {
    let h = start().await;
    let dev = h.token("user:dev@example.com", &url("private"));
    let stranger = h.token("user:stranger@example.com", &url("private"));

    let (a, b) = (bearer(&dev), bearer(&dev));
    let r = call(&h, "private", &[("Authorization", &a), ("Authorization", &b)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    assert_eq!(codes(&h), ["ingress.all", "token.duplicate_header"]);

    let r = call(&h, "private", &[("Authorization", &format!("bearer {dev}"))]).await;
    assert_eq!(r.status, 200);

    let r = call(&h, "private", &[("Authorization", "Basic dXNlcjpwYXNz")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, forbidden_page("/"));
    assert_eq!(codes(&h), ["ingress.all", "token.none", "iam.anonymous"]);

    let r =
        call(&h, "private", &[("Authorization", &bearer(&dev)), ("X-Serverless-Authorization", &bearer(&stranger))])
            .await;
    assert_eq!(r.status, 403);
    assert_eq!(codes(&h), ["ingress.all", "token.audience_ok", "iam.no_binding"]);
    assert_eq!(h.last_record().principal.as_deref(), Some("stranger@example.com"));

    let r = call(&h, "private", &[("Authorization", "Bearer")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(codes(&h), ["ingress.all", "token.malformed_header"]);
}

/// Records carry no token and no header value, whatever the request held.
#[tokio::test]
async fn decision_records_never_hold_tokens_or_header_values() {
    let h = start().await;
    let token = h.token("user:dev@example.com", &url("private"));
    let wrong = h.token("user:dev@example.com", "https://elsewhere.example.com");
    for (name, auth) in [("private", &token), ("private", &wrong), ("open", &token), ("public", &wrong)] {
        call(&h, name, &[("Authorization", &bearer(auth)), ("X-Secret", "hunter2")]).await;
    }
    send(h.internet(), &get("secret-host.example.com", "/", &[("Authorization", &bearer(&token))])).await;
    let lines: Vec<String> = h.records.all().iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    for line in &lines {
        for secret in [token.as_str(), wrong.as_str(), token.split('.').nth(1).unwrap(), "hunter2", "secret-host"] {
            assert!(!line.contains(secret), "a record holds a secret: {line}");
        }
    }
}

/// Request bodies stream through (fixed length and chunked).
#[tokio::test]
async fn request_bodies_reach_the_workload() {
    let h = start().await;
    let body = "x".repeat(100_000);
    let r = send(h.internet(), &request("POST", &host("public"), "/upload", &[], &body)).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["body_len"], 100_000);
    let chunked = format!(
        "POST /c HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        host("public")
    );
    let r = send(h.internet(), &chunked).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["body_len"], 11);
    assert_eq!(r.echoed("transfer-encoding"), ["chunked"], "a body of unknown length streams on chunked");
}

/// No upstream → 502; an upstream that never answers → 504 after the request timeout. The
/// decision is still the policy's (allowed); the record says what went wrong.
#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    let h = Harness::start_with(project(), &[Origin::Internet], Limits::default(), false).await;
    let r = call(&h, "public", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(h.last_record().upstream_error, Some("upstream.not_configured"));

    // An upstream that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let keys = KeyRing::in_memory(NOW).unwrap();
    let verifier =
        std::sync::Arc::new(moat_crypto::Verifier::new(moat_crypto::VerifierConfig::google(), keys.key_set()));
    let records = std::sync::Arc::new(harness::Capture::default());
    let base: hyper::Uri = format!("http://{silent_addr}").parse().unwrap();
    let limits = Limits { request_timeout: Duration::from_millis(300), ..Limits::default() };
    let door = moat_server::frontdoor::FrontDoor::builder(std::sync::Arc::new(project()), verifier, move |_: &str| {
        Some(base.clone())
    })
    .clock(std::sync::Arc::new(|| NOW))
    .sink(records.clone())
    .limits(limits)
    .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn({
        let door = door.clone();
        async move { door.serve(listener, Origin::Internet).await }
    });
    let r = send(addr, &get(&host("public"), "/", &[])).await.unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(records.all().last().unwrap().upstream_error, Some("upstream.timeout"));
    door.shutdown();
    tokio::time::timeout(Duration::from_secs(5), serving).await.unwrap().unwrap().unwrap();
}

/// Every listener origin of the project serves; shutdown stops them all; a listener whose
/// origin the project does not know is refused up front.
#[tokio::test]
async fn shutdown_ends_serve_and_unknown_origins_are_refused() {
    let project = project();
    let origins = moat_server::frontdoor::listener_origins(&project);
    assert_eq!(origins.len(), 1 + 1 + 8 + 4, "internet, one network, eight Google products, four services");
    let h = Harness::start(project, &origins).await;
    assert_eq!(call(&h, "public", &[]).await.status, 200);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = h.door.serve(listener, "vpc:nowhere".parse().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(h.door.serve(listener, Origin::Service("ghost".into())).await.is_err());
    h.door.shutdown();
    for s in h.serving {
        tokio::time::timeout(Duration::from_secs(5), s).await.unwrap().unwrap().unwrap();
    }
}

/// An internal load balancer's address exists only inside its VPC network: from the internet
/// the connection closes without any HTTP response, whatever the path (an unrouted path must
/// not reveal the LB with a 404). Inside the network the URL map applies.
#[tokio::test]
async fn an_internal_load_balancer_does_not_exist_outside_its_network() {
    let h = start().await;
    let token = h.token("user:dev@example.com", &url("internal"));
    let auth = [("Authorization", bearer(&token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for path in ["/api/orders", "/not-routed"] {
        let r = send(h.internet(), &get("internal.corp.example", path, &auth)).await;
        assert!(r.is_none(), "{path}: the internet got an HTTP response: {r:?}");
        let rec = h.last_record();
        assert_eq!((rec.status, rec.layer), (None, Some("network")), "{path}");
        assert_eq!(rec.codes(), ["network.internal_lb_unreachable"], "{path}");
    }
    let vpc = h.addr(&vpc_default());
    let r = send(vpc, &get("internal.corp.example", "/api/orders", &auth)).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(codes(&h), ["network.internal_lb_reachable", "ingress.internal_lb", "token.audience_ok", "iam.binding"]);
    let r = send(vpc, &get("ilb.lb.localhost", "/not-routed", &auth)).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.body, NOT_FOUND_PAGE);
    assert_eq!(codes(&h), ["route.no_lb_route"]);
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A request head past the limit gets 431 before any decision is made.
#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let h = start().await;
    let big = "x".repeat(70 * 1024);
    let r = send(h.internet(), &get(&host("public"), "/", &[("X-Big", &big)])).await.unwrap();
    assert_eq!(r.status, 431);
    assert_eq!(h.records.len(), 0);
}
