//! Load balancer security policies (Cloud Armor) through the real front door: a request that
//! enters through a load balancer with `security_policy` is decided by the policy before
//! ingress; Cloud Armor's own responses; `headerAction` on the forwarded request; preview rules
//! and evaluation errors recorded only; the client address is the TCP peer whatever
//! `X-Forwarded-For` says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use harness::{Harness, RawResponse, get, inline_project, request, send};
use moat_policy::{Origin, Project};

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
