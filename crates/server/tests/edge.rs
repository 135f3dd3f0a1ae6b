//! Load balancer security policies (Cloud Armor) through the real front door: a request that
//! enters through a load balancer with `security_policy` is decided by the policy before
//! ingress; Cloud Armor's own responses; `headerAction` on the forwarded request; preview rules
//! and evaluation errors recorded only; the client address is the TCP peer whatever
//! `X-Forwarded-For` says. Then spec/peers-crates-lessons.md §C.6 case by case (`r1_...` to
//! `r5_...`, `w2_...`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use std::sync::Arc;

use harness::{Harness, RawResponse, get, inline_project, request, send};
use moat_policy::{Origin, Project, SourceFile};
use moat_server::frontdoor::{Limits, MemoryRateState, RateState};

const MOAT: &str = r#"
project:
  id: fid-proj
  number: "100000000001"
  region: us-central1
load_balancers:
  - name: edge
    scheme: external
    hosts: [www.example.com]
    security_policy: edge-policy
    routes:
      - service: web
  - name: bare
    scheme: external
    hosts: [bare.example.com]
    routes:
      - service: web
  - name: walled
    scheme: external
    hosts: [walled.example.com]
    security_policy: loopback-denied
    routes:
      - service: web
"#;

const WEB: &str = r#"{"name":"projects/fid-proj/locations/us-central1/services/web","uri":"https://web-q7x2lmtc3a-uc.a.run.app","urls":["https://web-100000000001.us-central1.run.app"],"ingress":"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER","invokerIamDisabled":true,"template":{"containers":[{"image":"x"}]}}"#;

/// Every action, one path each. Rule 100 is in preview (recorded, not enforced); rule 200
/// reads a header without `has()`, so it errors (and does not match) on requests without it.
const EDGE_POLICY: &str = r#"{
  "name": "edge-policy",
  "rules": [
    { "action": "deny(403)", "priority": 100, "preview": true,
      "match": { "expr": { "expression": "request.path.startsWith('/preview')" } } },
    { "action": "deny(404)", "priority": 200,
      "match": { "expr": { "expression": "request.headers['x-probe'] == 'hide'" } } },
    { "action": "deny(403)", "priority": 1000,
      "match": { "expr": { "expression": "request.path.startsWith('/admin') && inIpRange(origin.ip, '127.0.0.0/8')" } } },
    { "action": "deny(502)", "priority": 1100,
      "match": { "expr": { "expression": "request.path == '/bad-gateway'" } } },
    { "action": "redirect", "priority": 2000,
      "redirectOptions": { "type": "EXTERNAL_302", "target": "https://elsewhere.example/moved" },
      "match": { "expr": { "expression": "request.path == '/old'" } } },
    { "action": "redirect", "priority": 2100,
      "redirectOptions": { "type": "GOOGLE_RECAPTCHA" },
      "match": { "expr": { "expression": "request.path == '/captcha'" } } },
    { "action": "allow", "priority": 3000,
      "headerAction": { "requestHeadersToAdds": [
        { "headerName": "X-Edge-Checked", "headerValue": "yes" },
        { "headerName": "X-Client-Tier", "headerValue": "partner" } ] },
      "match": { "expr": { "expression": "has(request.headers['x-partner']) && request.headers['x-partner'] == 'acme'" } } },
    { "action": "throttle", "priority": 4000,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(429)",
        "rateLimitThreshold": { "count": 1, "intervalSec": 60 }, "enforceOnKey": "IP" },
      "match": { "expr": { "expression": "request.path == '/limited'" } } },
    { "action": "rate_based_ban", "priority": 4100,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(403)",
        "rateLimitThreshold": { "count": 2, "intervalSec": 60 }, "banDurationSec": 600,
        "enforceOnKey": "HTTP_HEADER", "enforceOnKeyName": "x-user" },
      "match": { "expr": { "expression": "request.path == '/login'" } } },
    { "action": "allow", "priority": 2147483647,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } }
  ]
}"#;

const LOOPBACK_DENIED: &str = r#"{
  "name": "loopback-denied",
  "rules": [
    { "action": "deny(403)", "priority": 10,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["127.0.0.1/32"] } } },
    { "action": "allow", "priority": 2147483647,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } }
  ]
}"#;

fn project() -> Project {
    inline_project(&[
        ("moat.yaml", MOAT),
        ("services/web.json", WEB),
        ("armor/edge-policy.json", EDGE_POLICY),
        ("armor/loopback-denied.json", LOOPBACK_DENIED),
    ])
}

async fn start() -> Harness {
    Harness::start(project(), &[Origin::Internet]).await
}

async fn call(h: &Harness, host: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    send(h.internet(), &get(host, path, headers)).await.expect("an HTTP response")
}

fn armor_page(status: u16, reason: &str) -> String {
    format!(
        "<!doctype html><meta charset=\"utf-8\"><meta name=viewport content=\"width=device-width, initial-scale=1\"><title>{status}</title>{status} {reason}"
    )
}

#[tokio::test]
async fn default_rule_allows_and_the_request_reaches_the_workload() {
    let h = start().await;
    let r = call(&h, "www.example.com", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rec = h.last_record();
    assert_eq!(rec.edge_rule, Some(2_147_483_647));
    assert!(rec.codes().contains(&"edge.default_rule"), "{:?}", rec.codes());
    // The edge sits between network and ingress.
    let codes = rec.codes();
    let edge = codes.iter().position(|c| *c == "edge.default_rule").unwrap();
    let ingress = codes.iter().position(|c| c.starts_with("ingress.")).unwrap();
    assert!(edge < ingress, "{codes:?}");
}

#[tokio::test]
async fn deny_gives_cloud_armor_pages_with_the_configured_status() {
    let h = start().await;
    for (path, headers, status, reason, rule) in [
        ("/admin/x", &[][..], 403, "Forbidden", 1000),
        ("/bad-gateway", &[][..], 502, "Bad Gateway", 1100),
        ("/", &[("X-Probe", "hide")][..], 404, "Not Found", 200),
    ] {
        let r = call(&h, "www.example.com", path, headers).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.body, armor_page(status, reason), "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=UTF-8"));
        let rec = h.last_record();
        assert_eq!((rec.layer, rec.status, rec.edge_rule), (Some("edge"), Some(status), Some(rule)), "{path}");
        assert_eq!(rec.codes().last(), Some(&"edge.rule_matched"), "{path}");
        assert!(!rec.codes().iter().any(|c| c.starts_with("ingress.")), "refused before ingress: {path}");
    }
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing refused reaches the workload");
}

#[tokio::test]
async fn redirects_and_the_recaptcha_refusal() {
    let h = start().await;
    let r = call(&h, "www.example.com", "/old", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://elsewhere.example/moved"));
    assert_eq!(h.last_record().layer, Some("edge"));

    let r = call(&h, "www.example.com", "/captcha", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, armor_page(403, "Forbidden"));
    assert_eq!(h.last_record().codes().last(), Some(&"edge.recaptcha_unavailable"));
}

#[tokio::test]
async fn allow_with_header_action_sets_headers_on_the_forwarded_request() {
    let h = start().await;
    let r = call(&h, "www.example.com", "/", &[("X-Partner", "acme"), ("X-Client-Tier", "spoofed")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed("x-edge-checked"), ["yes"]);
    assert_eq!(r.echoed("x-client-tier"), ["partner"], "headerAction overwrites what the client sent");
    assert_eq!(h.last_record().edge_rule, Some(3000));

    // Another rule decides: no headers added.
    let r = call(&h, "www.example.com", "/", &[("X-Partner", "other")]).await;
    assert!(r.echoed("x-edge-checked").is_empty());
}

#[tokio::test]
async fn preview_matches_and_eval_errors_are_recorded_not_enforced() {
    let h = start().await;
    let r = call(&h, "www.example.com", "/preview/page", &[]).await;
    assert_eq!(r.status, 200, "a preview deny is not enforced");
    let codes = h.last_record().codes();
    assert!(codes.contains(&"edge.preview_match"), "{codes:?}");
    // Rule 200 reads `x-probe` without `has()`: an error on this request, so no match.
    assert!(codes.contains(&"edge.eval_error"), "{codes:?}");
    assert_eq!(h.last_record().edge_rule, Some(2_147_483_647));
}

#[tokio::test]
async fn the_client_address_is_the_peer_not_x_forwarded_for() {
    let h = start().await;
    // Denied by address: loopback is the peer, whatever the header claims.
    let r = call(&h, "walled.example.com", "/", &[("X-Forwarded-For", "203.0.113.9")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(h.last_record().edge_rule, Some(10));
    let r = call(&h, "www.example.com", "/admin", &[("X-Forwarded-For", "203.0.113.9")]).await;
    assert_eq!(r.status, 403, "origin.ip is the peer too");
}

#[tokio::test]
async fn throttle_counts_per_key_and_answers_with_the_exceed_action() {
    let h = start().await;
    // One request per 60 s per client address; the harness clock stands still.
    let r = call(&h, "www.example.com", "/limited", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(h.last_record().codes().last(), Some(&"iam.invoker_check_disabled"));
    assert!(h.last_record().codes().contains(&"edge.rate_limit_conform"));
    let r = call(&h, "www.example.com", "/limited", &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, armor_page(429, "Too Many Requests"));
    let rec = h.last_record();
    assert_eq!((rec.layer, rec.edge_rule), (Some("edge"), Some(4000)));
    assert_eq!(rec.codes().last(), Some(&"edge.rate_limit_exceeded"));
    // X-Forwarded-For does not make a new client: the key is the peer.
    let r = call(&h, "www.example.com", "/limited", &[("X-Forwarded-For", "203.0.113.1")]).await;
    assert_eq!(r.status, 429);
}

#[tokio::test]
async fn rate_based_ban_bans_the_key_and_other_keys_go_on() {
    let h = start().await;
    let alice = [("X-User", "alice")];
    for _ in 0..2 {
        assert_eq!(call(&h, "www.example.com", "/login", &alice).await.status, 200);
    }
    // Over the limit: the exceed action, and the key is banned from now on.
    assert_eq!(call(&h, "www.example.com", "/login", &alice).await.status, 403);
    assert_eq!(h.last_record().codes().last(), Some(&"edge.rate_limit_exceeded"));
    assert_eq!(call(&h, "www.example.com", "/login", &alice).await.status, 403);
    assert_eq!(h.last_record().codes().last(), Some(&"edge.banned"));
    // Another key (a header value) has its own count.
    assert_eq!(call(&h, "www.example.com", "/login", &[("X-User", "bob")]).await.status, 200);
    // Without the header the key falls back to ALL: one shared bucket.
    assert_eq!(call(&h, "www.example.com", "/login", &[]).await.status, 200);
}

/// `geo:` locates the peer: a rule denying one region refuses a client whose address is in
/// that region's range and admits a client from another region's range.
#[tokio::test]
async fn a_region_rule_refuses_the_peers_of_that_region_only() {
    let moat = format!(
        "{MOAT}geo:\n  - {{range: 127.0.0.1/32, region_code: CH, asn: 3303}}\n  - {{range: 127.0.0.2/32, region_code: US}}\n"
    );
    let policy = r#"{"name": "loopback-denied", "rules": [
        { "action": "deny(403)", "priority": 10,
          "match": { "expr": { "expression": "origin.region_code == 'CH'" } } },
        { "action": "allow", "priority": 2147483647,
          "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } } ]}"#;
    let project = inline_project(&[
        ("moat.yaml", &moat),
        ("services/web.json", WEB),
        ("armor/edge-policy.json", EDGE_POLICY),
        ("armor/loopback-denied.json", policy),
    ]);
    let h = Harness::start(project, &[Origin::Internet]).await;
    let from = |ip: [u8; 4]| std::net::IpAddr::from(ip);
    let r = harness::send_from(from([127, 0, 0, 1]), h.internet(), &get("walled.example.com", "/", &[])).await.unwrap();
    assert_eq!(r.status, 403, "127.0.0.1 is in CH");
    assert_eq!(r.body, armor_page(403, "Forbidden"));
    assert_eq!(h.last_record().edge_rule, Some(10));
    let r = harness::send_from(from([127, 0, 0, 2]), h.internet(), &get("walled.example.com", "/", &[])).await.unwrap();
    assert_eq!(r.status, 200, "127.0.0.2 is in US: {}", r.body);
    assert_eq!(h.last_record().edge_rule, Some(2147483647));
}

#[tokio::test]
async fn other_doors_are_not_evaluated() {
    let h = start().await;
    // The same service through a load balancer without a policy: no edge stage at all.
    let r = call(&h, "bare.example.com", "/admin", &[]).await;
    assert_eq!(r.status, 200);
    let rec = h.last_record();
    assert_eq!(rec.edge_rule, None);
    assert!(!rec.codes().iter().any(|c| c.starts_with("edge.")));
    // A POST goes through the policy the same way.
    let r = send(h.internet(), &request("POST", "www.example.com", "/admin", &[], "x")).await.unwrap();
    assert_eq!(r.status, 403);
}

// ---------------------------------------------------------------------------------------------
// spec/peers-crates-lessons.md §C.6, case by case, through the real front door. Each test is
// named after its case and asserts what the case says; what a case needs that is not built yet
// is said in its doc comment.

const CASES_MOAT: &str = r#"
project:
  id: fid-proj
  number: "100000000001"
  region: us-central1
load_balancers:
  - name: cases
    scheme: external
    hosts: [cases.example.com]
    security_policy: c6
    routes:
      - service: web
"#;

/// One rule per case, each on its own path so that counts never mix.
const C6_POLICY: &str = r#"{
  "name": "c6",
  "rules": [
    { "action": "deny(404)", "priority": 10, "preview": true,
      "match": { "expr": { "expression": "request.path == '/r4'" } } },
    { "action": "throttle", "priority": 100,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(429)",
        "rateLimitThreshold": { "count": 3, "intervalSec": 60 }, "enforceOnKey": "IP" },
      "match": { "expr": { "expression": "request.path == '/r1/429'" } } },
    { "action": "throttle", "priority": 110,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(404)",
        "rateLimitThreshold": { "count": 1, "intervalSec": 60 }, "enforceOnKey": "IP" },
      "match": { "expr": { "expression": "request.path == '/r1/404'" } } },
    { "action": "rate_based_ban", "priority": 200,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(429)",
        "rateLimitThreshold": { "count": 2, "intervalSec": 60 },
        "banThreshold": { "count": 2, "intervalSec": 600 }, "banDurationSec": 300,
        "enforceOnKey": "IP" },
      "match": { "expr": { "expression": "request.path == '/r2'" } } },
    { "action": "throttle", "priority": 300,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(429)",
        "rateLimitThreshold": { "count": 1, "intervalSec": 60 },
        "enforceOnKey": "HTTP_HEADER", "enforceOnKeyName": "x-user" },
      "match": { "expr": { "expression": "request.path == '/r3/header'" } } },
    { "action": "throttle", "priority": 310,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(429)",
        "rateLimitThreshold": { "count": 1, "intervalSec": 60 }, "enforceOnKey": "XFF_IP" },
      "match": { "expr": { "expression": "request.path == '/r3/xff'" } } },
    { "action": "throttle", "priority": 320,
      "rateLimitOptions": { "conformAction": "allow", "exceedAction": "deny(429)",
        "rateLimitThreshold": { "count": 1, "intervalSec": 60 },
        "enforceOnKey": "HTTP_COOKIE", "enforceOnKeyName": "session" },
      "match": { "expr": { "expression": "request.path == '/r3/cookie'" } } },
    { "action": "deny(403)", "priority": 400,
      "match": { "expr": { "expression": "request.path == '/w2' && int(request.query) > 5" } } },
    { "action": "allow", "priority": 2147483647,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } }
  ]
}"#;

fn cases_project() -> Project {
    inline_project(&[("moat.yaml", CASES_MOAT), ("services/web.json", WEB), ("armor/c6.json", C6_POLICY)])
}

async fn cases_door() -> Harness {
    Harness::start(cases_project(), &[Origin::Internet]).await
}

async fn status(h: &Harness, path: &str, headers: &[(&str, &str)]) -> u16 {
    call(h, "cases.example.com", path, headers).await.status
}

/// The start of the fixed window after the one that holds `t`.
fn next_window(t: u64, interval: u64) -> u64 {
    t - t % interval + interval
}

/// R1 throttle: conform below the threshold; over it, the configured exceed status (429 here, as
/// Cloud Armor recommends, and 404 on a rule configured so); the bucket refills when the window
/// turns, exactly at the boundary (fixed windows aligned to multiples of `intervalSec`).
#[tokio::test]
async fn r1_throttle_conforms_exceeds_with_the_configured_status_and_refills() {
    let h = cases_door().await;
    for _ in 0..3 {
        assert_eq!(status(&h, "/r1/429", &[]).await, 200);
        assert!(h.last_record().codes().contains(&"edge.rate_limit_conform"));
    }
    let r = call(&h, "cases.example.com", "/r1/429", &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, armor_page(429, "Too Many Requests"));
    assert_eq!(h.last_record().codes().last(), Some(&"edge.rate_limit_exceeded"));
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 3, "an exceeded request is not forwarded");

    assert_eq!(status(&h, "/r1/404", &[]).await, 200);
    let r = call(&h, "cases.example.com", "/r1/404", &[]).await;
    assert_eq!(r.status, 404, "the rule's own exceedAction");
    assert_eq!(r.body, armor_page(404, "Not Found"));

    // Still the same window one second before the boundary; refilled at it.
    let boundary = next_window(harness::NOW, 60);
    h.set_time(boundary - 1);
    assert_eq!(status(&h, "/r1/429", &[]).await, 429);
    h.set_time(boundary);
    for _ in 0..3 {
        assert_eq!(status(&h, "/r1/429", &[]).await, 200, "the bucket refilled");
    }
    assert_eq!(status(&h, "/r1/429", &[]).await, 429);
}

/// R2 ban: once the requests over the rate limit pass `banThreshold` within its interval, the
/// key is banned for `banDurationSec`, even when it comes back later at a low rate; the ban ends
/// exactly at its expiry.
#[tokio::test]
async fn r2_ban_holds_at_low_rate_and_ends_exactly_at_expiry() {
    let h = cases_door().await;
    let t0 = harness::NOW;
    // Two conform, then requests over the limit: the 1st and 2nd over it are only refused, the
    // 3rd passes the ban threshold (2 per 600 s) and bans the key.
    assert_eq!(status(&h, "/r2", &[]).await, 200);
    assert_eq!(status(&h, "/r2", &[]).await, 200);
    for _ in 0..3 {
        assert_eq!(status(&h, "/r2", &[]).await, 429);
        assert_eq!(h.last_record().codes().last(), Some(&"edge.rate_limit_exceeded"));
    }
    let banned_at = t0;
    let until = banned_at + 300;
    // A low rate afterwards: one request in a fresh rate-limit window, well under the limit.
    h.set_time(next_window(t0, 60) + 5);
    assert_eq!(status(&h, "/r2", &[]).await, 429);
    assert_eq!(h.last_record().codes().last(), Some(&"edge.banned"));
    h.set_time(until - 1);
    assert_eq!(status(&h, "/r2", &[]).await, 429);
    assert_eq!(h.last_record().codes().last(), Some(&"edge.banned"), "still banned one second before expiry");
    h.set_time(until);
    assert_eq!(status(&h, "/r2", &[]).await, 200, "the ban ends exactly at expiry");
    assert!(h.last_record().codes().contains(&"edge.rate_limit_conform"));
}

/// R3 key fall-backs: `HTTP_HEADER` without the header counts under `ALL`; `XFF_IP` takes the
/// first address of `X-Forwarded-For`, and an invalid one falls back to `IP` (the TCP peer);
/// header and cookie values are cut to their first 128 bytes.
#[tokio::test]
async fn r3_key_fall_backs_and_truncation() {
    let h = cases_door().await;
    // Missing header → ALL: two different clients without it share one bucket.
    assert_eq!(status(&h, "/r3/header", &[]).await, 200);
    assert_eq!(status(&h, "/r3/header", &[("X-Other", "1")]).await, 429, "no x-user: the shared ALL bucket");
    assert_eq!(status(&h, "/r3/header", &[("X-User", "alice")]).await, 200, "a header value is its own key");
    // Truncation to 128 bytes: values that differ only after byte 128 share a key.
    let long = "a".repeat(128);
    assert_eq!(status(&h, "/r3/header", &[("X-User", &format!("{long}1"))]).await, 200);
    assert_eq!(status(&h, "/r3/header", &[("X-User", &format!("{long}2"))]).await, 429);
    assert_eq!(status(&h, "/r3/header", &[("X-User", &format!("{}2", "a".repeat(127)))]).await, 200);
    let cookie = |v: &str| format!("theme=dark; session={v}");
    assert_eq!(status(&h, "/r3/cookie", &[("Cookie", &cookie(&format!("{long}x")))]).await, 200);
    assert_eq!(status(&h, "/r3/cookie", &[("Cookie", &cookie(&format!("{long}y")))]).await, 429);
    assert_eq!(status(&h, "/r3/cookie", &[("Cookie", &cookie("short"))]).await, 200);

    // XFF_IP takes the first address: same first address, same key.
    assert_eq!(status(&h, "/r3/xff", &[("X-Forwarded-For", "203.0.113.1, 198.51.100.7")]).await, 200);
    assert_eq!(status(&h, "/r3/xff", &[("X-Forwarded-For", "203.0.113.1, 10.9.9.9")]).await, 429);
    assert_eq!(status(&h, "/r3/xff", &[("X-Forwarded-For", "198.51.100.7, 203.0.113.1")]).await, 200);
    // An invalid first address falls back to IP, the key a request without the header has too.
    assert_eq!(status(&h, "/r3/xff", &[("X-Forwarded-For", "not-an-address")]).await, 200);
    assert_eq!(status(&h, "/r3/xff", &[]).await, 429, "the peer's bucket, used by the invalid header");
}

/// R4 preview: a matching preview rule is logged with the action it would have taken and the
/// request is forwarded to the workload.
#[tokio::test]
async fn r4_preview_logs_the_would_be_action_and_forwards() {
    let h = cases_door().await;
    let r = call(&h, "cases.example.com", "/r4", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "forwarded to the workload");
    let rec = h.last_record();
    assert_eq!(rec.edge_rule, Some(2_147_483_647), "the default rule decided");
    let preview = rec.reasons.iter().find(|r| r.code == "edge.preview_match").expect("the preview match is logged");
    assert_eq!(preview.message, "rule 10 matched in preview: it would deny(404), not enforced");
}

/// R5 distributed state: two front doors (replicas) sharing one rate state count a limit once
/// and share a ban, whichever replica the requests hit.
///
/// The replicas here share one in-memory state, which proves the front door counts and bans
/// only through the shared trait object (keys include the backend service, policy, rule and
/// client key, not anything per replica). The same with Redis (each replica its own
/// connection), Redis down under either failure policy, and recovery after a Redis restart:
/// crates/server/tests/rate_redis.rs.
#[tokio::test]
async fn r5_replicas_sharing_state_count_once_and_share_bans() {
    let shared: Arc<dyn RateState> = Arc::new(MemoryRateState::default());
    let start = || {
        Harness::start_full(cases_project(), &[Origin::Internet], Limits::default(), true, Some(Arc::clone(&shared)))
    };
    let (a, b) = (start().await, start().await);
    // The throttle allows 3 per window: split over the replicas, the 4th is over, wherever it goes.
    assert_eq!(status(&a, "/r1/429", &[]).await, 200);
    assert_eq!(status(&b, "/r1/429", &[]).await, 200);
    assert_eq!(status(&a, "/r1/429", &[]).await, 200);
    assert_eq!(status(&b, "/r1/429", &[]).await, 429);
    assert_eq!(status(&a, "/r1/429", &[]).await, 429);
    // A ban made through one replica holds on the other.
    for door in [&a, &b, &a, &b, &a] {
        status(door, "/r2", &[]).await;
    }
    assert_eq!(status(&b, "/r2", &[]).await, 429);
    assert_eq!(b.last_record().codes().last(), Some(&"edge.banned"));
    assert_eq!(status(&a, "/r2", &[]).await, 429);
    assert_eq!(a.last_record().codes().last(), Some(&"edge.banned"));
}

/// W2 CEL: an evaluation error makes the rule not match, is recorded on each request it happens
/// to (`edge.eval_error`, the decision log's count), and never breaks the request path;
/// malformed and over-limit expressions are refused at load with file:line:column, so no front
/// door can start with them.
///
/// Not covered: moat has no metric for evaluation errors; the count is the decision records'.
#[tokio::test]
async fn w2_cel_errors_do_not_match_and_bad_expressions_never_load() {
    let h = cases_door().await;
    assert_eq!(status(&h, "/w2", &[]).await, 200, "`int('')` fails: the deny does not match");
    let rec = h.last_record();
    assert_eq!(rec.edge_rule, Some(2_147_483_647));
    let errors: Vec<_> = rec.reasons.iter().filter(|r| r.code == "edge.eval_error").collect();
    assert_eq!(errors.len(), 1, "{:?}", rec.codes());
    assert!(errors[0].message.starts_with("rule 400 did not match: its expression failed"), "{}", errors[0].message);
    for query in ["abc", "9999999999999999999999", "%00", "1e3"] {
        let r = call(&h, "cases.example.com", &format!("/w2?{query}"), &[]).await;
        assert_eq!(r.status, 200, "?{query}");
        assert!(h.last_record().codes().contains(&"edge.eval_error"), "?{query}");
    }
    assert_eq!(status(&h, "/w2?9", &[]).await, 403, "the rule still works when it evaluates");
    assert_eq!(h.records.all().iter().filter(|r| r.codes().contains(&"edge.eval_error")).count(), 5);

    // At load: a malformed expression, one over five subexpressions, one over 2048 characters.
    let long = format!("request.path == '/{}'", "x".repeat(2100));
    for (expression, line, expected) in [
        ("request.path.startsWith('/a') &&", 4, "invalid rule expression"),
        ("request.pth == '/x'", 4, "invalid rule expression: undeclared reference to `request.pth`"),
        (
            "request.path == 'a' || request.path == 'b' || request.path == 'c' || request.path == 'd' || request.path == 'e' || request.path == 'f'",
            4,
            "rule expression over Cloud Armor's limits",
        ),
        (long.as_str(), 4, "rule expression over Cloud Armor's limits"),
    ] {
        let policy = format!(
            "{{\n  \"rules\": [\n    {{ \"action\": \"deny(403)\", \"priority\": 1,\n      \"match\": {{ \"expr\": {{ \"expression\": \"{expression}\" }} }} }},\n    {{ \"action\": \"allow\", \"priority\": 2147483647, \"match\": {{ \"versionedExpr\": \"SRC_IPS_V1\", \"config\": {{ \"srcIpRanges\": [\"*\"] }} }} }}\n  ]\n}}"
        );
        let files = [
            SourceFile { path: "moat.yaml".into(), text: CASES_MOAT.replace("c6", "bad") },
            SourceFile { path: "services/web.json".into(), text: WEB.into() },
            SourceFile { path: "armor/bad.json".into(), text: policy },
        ];
        let errors: Vec<String> = match moat_policy::load(&files) {
            Ok(_) => panic!("`{expression}` loaded"),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        };
        let first = errors.first().unwrap();
        // Line 4 is `      "match": { "expr": { "expression": "...`: the string's content starts at
        // column 43, and the error points inside it.
        let at: Vec<u32> = first.split(':').skip(1).take(2).map(|n| n.parse().unwrap()).collect();
        assert_eq!(at[0], line, "{first}");
        let inside = 43..=43 + u32::try_from(expression.len()).unwrap();
        assert!(inside.contains(&at[1]), "the span points into the expression: {first}");
        assert!(first.contains(expected), "{first}");
    }
}
