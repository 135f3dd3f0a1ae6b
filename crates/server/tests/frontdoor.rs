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
use harness::{Harness, NOW, RawResponse, get, inline_project, read_response, request, send, token_for};
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

// Limits, keep-alive and h2c.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn limits_with(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

/// A raw HTTP/1.1 request that keeps the connection open.
fn keep_alive_get(host: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// Waits for the server to close `s` without sending anything more; how long that took.
async fn closed(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut b = [0u8; 256];
    match tokio::time::timeout(within, s.read(&mut b)).await {
        Ok(Ok(0) | Err(_)) => start.elapsed(),
        Ok(Ok(n)) => panic!("got bytes instead of the end: {:?}", String::from_utf8_lossy(&b[..n])),
        Err(_) => panic!("still open after {within:?}"),
    }
}

/// A workload that answers each request (heads only) after `delay`; counts requests.
async fn slow_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslow\n").await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, hits)
}

/// A front door on one internet listener in front of a [`slow_upstream`].
struct SlowDoor {
    door: moat_server::frontdoor::FrontDoor,
    records: Arc<harness::Capture>,
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    serving: tokio::task::JoinHandle<Result<(), moat_server::frontdoor::FrontDoorError>>,
}

async fn slow_door(limits: Limits, delay: Duration) -> SlowDoor {
    let (upstream, hits) = slow_upstream(delay).await;
    let keys = KeyRing::in_memory(NOW).unwrap();
    let verifier = Arc::new(moat_crypto::Verifier::new(moat_crypto::VerifierConfig::google(), keys.key_set()));
    let records = Arc::new(harness::Capture::default());
    let base: hyper::Uri = format!("http://{upstream}").parse().unwrap();
    let door =
        moat_server::frontdoor::FrontDoor::builder(Arc::new(project()), verifier, move |_: &str| Some(base.clone()))
            .clock(Arc::new(|| NOW))
            .sink(records.clone())
            .limits(limits)
            .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn({
        let door = door.clone();
        async move { door.serve(listener, Origin::Internet).await }
    });
    SlowDoor { door, records, addr, hits, serving }
}

type H2Body = BoxBody<Bytes, std::convert::Infallible>;
type H2Sender = hyper::client::conn::http2::SendRequest<H2Body>;

/// An h2c client with prior knowledge (no upgrade, no TLS); the task drives the connection
/// and ends when the server closes it.
async fn h2_connect(addr: SocketAddr) -> (H2Sender, tokio::task::JoinHandle<hyper::Result<()>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    (sender, tokio::spawn(conn))
}

/// A body of unknown length (no content-length on HTTP/2, chunked on HTTP/1).
struct Chunks(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn no_body() -> H2Body {
    http_body_util::Empty::new().boxed()
}

fn full_body(len: usize) -> H2Body {
    http_body_util::Full::new(Bytes::from(vec![b'x'; len])).boxed()
}

fn chunked_body(chunks: usize, each: usize) -> H2Body {
    Chunks((0..chunks).map(|_| Bytes::from(vec![b'x'; each])).collect()).boxed()
}

/// Sends one request over h2c; `Err` when the stream was reset without a response.
async fn h2_send(
    sender: &mut H2Sender,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: H2Body,
) -> Result<RawResponse, hyper::Error> {
    let mut req = hyper::Request::builder().method(method).uri(format!("http://{host}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body).unwrap();
    let exchange = async {
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(RawResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("no HTTP/2 response or reset within 10 s")
}

/// Cloud Run's HTTP/1 request size limit: a declared body past it is refused with 413 before
/// anything reaches the workload, whatever the token; ingress still comes first (a 413 would
/// tell an internet caller that an internal service exists). A body at the limit passes.
#[tokio::test]
async fn declared_bodies_past_the_limit_are_413_before_anything_is_forwarded() {
    let limits = limits_with(|l| l.max_body_bytes = 1500);
    let h = Harness::start_with(project(), &[Origin::Internet], limits, true).await;
    // Only the head: the body is never read, so none is sent.
    let head = |name: &str| format!("POST /up HTTP/1.1\r\nHost: {}\r\nContent-Length: 4096\r\n\r\n", host(name));

    let r = send(h.internet(), &head("public")).await.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.body.contains("1500 bytes"), "the page states the limit: {}", r.body);
    let rec = h.last_record();
    assert_eq!((rec.status, rec.layer), (Some(413), Some("limit")));
    assert_eq!(rec.codes(), ["ingress.all", "limit.body_too_large"]);

    let r = send(h.internet(), &head("private")).await.unwrap();
    assert_eq!(r.status, 413, "size is checked before the credential");
    assert_eq!(codes(&h), ["ingress.all", "limit.body_too_large"]);

    let r = send(h.internet(), &head("internal")).await.unwrap();
    assert_eq!(r.status, 404, "ingress is checked before size");
    assert_eq!(codes(&h), ["ingress.internal_only"]);
    assert_eq!(h.echo.hits.load(Ordering::SeqCst), 0);

    let r = send(h.internet(), &request("POST", &host("public"), "/up", &[], &"x".repeat(1500))).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["body_len"], 1500);
}

/// A chunked body is counted as it streams: past the limit the forward is aborted and the
/// client gets the 413; the workload never gets a whole request. Up to the limit it passes.
#[tokio::test]
async fn chunked_bodies_are_cut_off_at_the_limit() {
    let limits = limits_with(|l| l.max_body_bytes = 1500);
    let h = Harness::start_with(project(), &[Origin::Internet], limits, true).await;
    let chunked = |chunks: usize| {
        let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
        format!(
            "POST /up HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            host("public"),
            chunk.repeat(chunks)
        )
    };
    let r = send(h.internet(), &chunked(3)).await.unwrap();
    assert_eq!(r.status, 413);
    assert!(r.body.contains("1500 bytes"), "{}", r.body);
    let rec = h.last_record();
    assert_eq!((rec.status, rec.layer), (Some(413), Some("limit")));
    assert_eq!(rec.codes(), ["ingress.all", "token.none", "iam.binding", "limit.body_too_large"]);
    assert_eq!(h.echo.hits.load(Ordering::SeqCst), 0, "the workload got a whole request");

    let r = send(h.internet(), &chunked(1)).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["body_len"], 1024);
}

/// hyper's own header read timeout also runs while a kept-alive connection waits for its next
/// request; the front door's does not. Requests spaced wider than the header read timeout (but
/// closer than the idle timeout) share one connection; once idle for the idle timeout it is
/// closed; a request in flight longer than the idle timeout is answered.
#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout_and_busy_ones_do_not() {
    let limits = limits_with(|l| {
        l.idle_timeout = Duration::from_millis(600);
        l.header_read_timeout = Duration::from_millis(200);
    });
    let h = Harness::start_with(project(), &[Origin::Internet], limits, true).await;
    let mut s = TcpStream::connect(h.internet()).await.unwrap();
    let mut last = Instant::now();
    for _ in 0..4 {
        s.write_all(keep_alive_get(&host("public")).as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    closed(&mut s, Duration::from_secs(5)).await;
    let idle = last.elapsed();
    assert!(idle >= Duration::from_millis(500) && idle < Duration::from_secs(3), "closed after {idle:?} idle");
    assert_eq!(h.records.len(), 4);

    // HTTP/2: the same idle timeout ends the connection (GOAWAY, then close).
    let (mut h2, conn) = h2_connect(h.internet()).await;
    assert_eq!(h2_send(&mut h2, "GET", &host("public"), "/", &[], no_body()).await.unwrap().status, 200);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the idle h2 connection was closed")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(500), "closed after {:?}", start.elapsed());

    // Busy: the workload takes longer than the idle timeout.
    let d = slow_door(limits, Duration::from_millis(1000)).await;
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(keep_alive_get(&host("public")).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await, (200, "slow\n".to_owned()));
    let (mut h2, _conn) = h2_connect(d.addr).await;
    assert_eq!(h2_send(&mut h2, "GET", &host("public"), "/", &[], no_body()).await.unwrap().body, "slow\n");
}

/// A head is due within the header read timeout: the first from the moment the connection is
/// accepted, each later one from its first byte. Past it the connection is closed without a
/// response.
#[tokio::test]
async fn slow_heads_are_cut_off_at_the_header_read_timeout() {
    let limits = limits_with(|l| {
        l.header_read_timeout = Duration::from_millis(300);
        l.idle_timeout = Duration::from_secs(30);
    });
    let h = Harness::start_with(project(), &[Origin::Internet], limits, true).await;
    let bounds = |took: Duration| took >= Duration::from_millis(250) && took < Duration::from_secs(3);

    let mut s = TcpStream::connect(h.internet()).await.unwrap();
    let took = closed(&mut s, Duration::from_secs(5)).await;
    assert!(bounds(took), "a silent connection closed after {took:?}");

    let mut s = TcpStream::connect(h.internet()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: ").await.unwrap();
    let took = closed(&mut s, Duration::from_secs(5)).await;
    assert!(bounds(took), "a partial first head closed after {took:?}");

    let mut s = TcpStream::connect(h.internet()).await.unwrap();
    s.write_all(keep_alive_get(&host("public")).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: ").await.unwrap();
    let took = closed(&mut s, Duration::from_secs(5)).await;
    assert!(bounds(took), "a partial later head closed after {took:?}");
    assert_eq!(h.records.len(), 1);
}

/// h2c with prior knowledge on the same listener: the same pipeline, so the same decisions,
/// pages and records as HTTP/1.1. The workload still gets HTTP/1.1, with `:authority` as Host;
/// a door that does not exist for the caller resets the stream without a response.
#[tokio::test]
async fn h2c_prior_knowledge_gets_the_same_decisions_as_http1() {
    let h = start().await;
    let auth = bearer(&h.token("user:dev@example.com", &url("private")));
    let (mut h2, _conn) = h2_connect(h.internet()).await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 4] = [
        ("public", &[], 200),
        ("private", &[], 403),
        ("private", &[("authorization", &auth)], 200),
        ("internal", &[("authorization", &auth)], 404),
    ];
    for (name, headers, want) in cases {
        let one = call(&h, name, headers).await;
        let one_record = h.last_record();
        let two = h2_send(&mut h2, "GET", &host(name), "/", headers, no_body()).await.unwrap();
        assert_eq!((one.status, two.status), (want, want), "{name}");
        let two_record = h.last_record();
        assert_eq!(two_record.codes(), one_record.codes(), "{name}");
        assert_eq!(two_record.layer, one_record.layer, "{name}");
        assert_eq!(two.header("content-type"), one.header("content-type"), "{name}");
        if want == 200 {
            assert_eq!(two.echoed("host"), [host(name)], "{name}");
            assert_eq!(two.echoed("x-moat-request-id"), [two_record.request_id], "{name}");
        } else {
            assert_eq!(two.body, one.body, "{name}");
        }
    }
    let token = h.token("user:dev@example.com", &url("private"));
    let r = h2_send(&mut h2, "GET", &host("private"), "/", &[("authorization", &bearer(&token))], no_body()).await;
    let parts: Vec<&str> = token.split('.').collect();
    let stripped = format!("Bearer {}.{}.SIGNATURE_REMOVED_BY_GOOGLE", parts[0], parts[1]);
    assert_eq!(r.unwrap().echoed("authorization"), [stripped]);

    let r = h2_send(&mut h2, "GET", "internal.corp.example", "/api/x", &[("authorization", &auth)], no_body()).await;
    assert!(r.is_err(), "the internet got an HTTP/2 response from an internal load balancer: {r:?}");
    let rec = h.last_record();
    assert_eq!((rec.status, rec.layer), (None, Some("network")));
    // The reset stream did not take the connection with it.
    assert_eq!(h2_send(&mut h2, "GET", &host("public"), "/", &[], no_body()).await.unwrap().status, 200);

    // The head size limit holds for HTTP/2's header list too: 431, and no decision is made.
    let before = h.records.len();
    let big = "x".repeat(70 * 1024);
    let r = h2_send(&mut h2, "GET", &host("public"), "/", &[("x-big", &big)], no_body()).await;
    assert_eq!(r.map(|r| r.status).ok(), Some(431));
    assert_eq!(h.records.len(), before);
}

/// The body limit holds for HTTP/2 too: a declared body past it and a body of unknown length
/// growing past it are 413s; an undeclared body within it passes.
#[tokio::test]
async fn h2c_bodies_past_the_limit_are_413() {
    let limits = limits_with(|l| l.max_body_bytes = 1500);
    let h = Harness::start_with(project(), &[Origin::Internet], limits, true).await;
    let (mut h2, _conn) = h2_connect(h.internet()).await;
    let r = h2_send(&mut h2, "POST", &host("public"), "/", &[], full_body(4096)).await.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(codes(&h), ["ingress.all", "limit.body_too_large"]);
    let r = h2_send(&mut h2, "POST", &host("public"), "/", &[], chunked_body(4, 512)).await.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(codes(&h), ["ingress.all", "token.none", "iam.binding", "limit.body_too_large"]);
    assert_eq!(h.echo.hits.load(Ordering::SeqCst), 0);
    let r = h2_send(&mut h2, "POST", &host("public"), "/", &[], chunked_body(2, 512)).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo()["body_len"], 1024);
}

/// Many streams at once on one h2c connection each get a workload connection of their own
/// when the kept ones are busy: they run side by side instead of queueing (or deadlocking) on
/// one upstream connection.
#[tokio::test]
async fn h2c_requests_on_one_connection_run_concurrently() {
    let d = slow_door(Limits::default(), Duration::from_millis(300)).await;
    let (h2, _conn) = h2_connect(d.addr).await;
    for round in 0..2 {
        let start = Instant::now();
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let mut h2 = h2.clone();
                tokio::spawn(async move {
                    h2_send(&mut h2, "GET", &host("public"), &format!("/{i}"), &[], no_body()).await.unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().body, "slow\n");
        }
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "round {round}: one at a time would take 7.2 s, took {took:?}");
    }
    assert_eq!(d.hits.load(Ordering::SeqCst), 48);
    assert_eq!(d.records.len(), 48);
}

/// Shutdown lets requests in flight on both protocols finish, then `serve` returns and the
/// listener is gone.
#[tokio::test]
async fn shutdown_finishes_in_flight_requests_on_both_protocols() {
    let d = slow_door(Limits::default(), Duration::from_millis(500)).await;
    let addr = d.addr;
    let one = tokio::spawn(async move { send(addr, &get(&host("public"), "/", &[])).await });
    let (mut h2, _conn) = h2_connect(d.addr).await;
    let two = tokio::spawn(async move { h2_send(&mut h2, "GET", &host("public"), "/", &[], no_body()).await });
    let waiting = Instant::now();
    while d.hits.load(Ordering::SeqCst) < 2 {
        assert!(waiting.elapsed() < Duration::from_secs(5), "the requests never reached the workload");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.door.shutdown();
    let one = one.await.unwrap().expect("an HTTP/1.1 response");
    assert_eq!((one.status, one.body.as_str()), (200, "slow\n"));
    let two = two.await.unwrap().expect("an HTTP/2 response");
    assert_eq!((two.status, two.body.as_str()), (200, "slow\n"));
    tokio::time::timeout(Duration::from_secs(5), d.serving).await.unwrap().unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "the listener still accepts");
    assert_eq!(d.records.len(), 2);
}
