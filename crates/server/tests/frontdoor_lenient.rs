//! Request lines hyper would refuse and nginx accepts (raw `<`, `>`, `"` and `` ` `` in the
//! target) through the real front door: the request goes through the whole pipeline, the
//! workload receives the percent-encoded target, and the WAF inspects it; lines that are still
//! malformed are still refused (docs/WAF.md "Request lines").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use std::sync::atomic::Ordering;

use harness::{Harness, crs, inline_project, read_response, send};
use moat_policy::{Origin, Project};
use moat_server::frontdoor::Limits;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

const MOAT: &str = r#"
project:
  id: lenient-proj
  number: "100000000003"
  region: us-central1
load_balancers:
  - name: plain
    scheme: external
    hosts: [plain.example.com]
    routes:
      - service: web
  - name: guarded
    scheme: external
    hosts: [guarded.example.com]
    security_policy: xss
    routes:
      - service: web
"#;

const WEB: &str = r#"{"name":"projects/lenient-proj/locations/us-central1/services/web","uri":"https://web-q7x2lmtc3a-uc.a.run.app","urls":["https://web-100000000003.us-central1.run.app"],"ingress":"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER","invokerIamDisabled":true,"template":{"containers":[{"image":"x"}]}}"#;

const XSS: &str = r#"{
  "name": "xss",
  "rules": [
    { "action": "deny(403)", "priority": 1000,
      "match": { "expr": { "expression": "evaluatePreconfiguredWaf('xss-v33-stable', {'sensitivity': 1})" } } },
    { "action": "allow", "priority": 2147483647,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } }
  ]
}"#;

const ATTACK: &str = "/?q=<script>alert(1)</script>";

fn project() -> Project {
    inline_project(&[("moat.yaml", MOAT), ("services/web.json", WEB), ("armor/xss.json", XSS)])
}

/// A door without the CRS: enough for the load balancer without a policy.
async fn plain() -> Harness {
    Harness::start(project(), &[Origin::Internet]).await
}

fn line(host: &str, target: &str, version: &str) -> String {
    format!("GET {target} {version}\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn echoed_path(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo ({e}): {body}"));
    v["path"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn raw_brackets_in_the_target_reach_the_workload_encoded() {
    let h = plain().await;
    let r = send(h.internet(), &line("plain.example.com", ATTACK, "HTTP/1.1")).await.expect("a response");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(echoed_path(&r.body), "/?q=%3Cscript%3Ealert(1)%3C/script%3E");
    // The whole pipeline ran: the decision is recorded with the target as parsed.
    let rec = h.last_record();
    assert_eq!(h.echo.hits.load(Ordering::SeqCst), 1, "{rec:?}");
    // `"` in the query, `` ` `` in the path, HTTP/1.0.
    let r = send(h.internet(), &line("plain.example.com", "/a`b?x=\"y\"", "HTTP/1.0")).await.expect("a response");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(echoed_path(&r.body), "/a%60b?x=%22y%22");
}

#[tokio::test]
async fn still_malformed_requests_are_still_refused() {
    let h = plain().await;
    for raw in [
        // No leading `/` (CRS 933160-21, 942500-1): nginx answers 400 too.
        line("plain.example.com", "?x=<a>", "HTTP/1.1"),
        // A bare CR in a header value (CRS 921140-1): nginx answers 400 too.
        "GET / HTTP/1.1\r\nHost: plain.example.com\r\nX: a\rInjected: b\r\nConnection: close\r\n\r\n".to_owned(),
        // Not HTTP/1.x.
        line("plain.example.com", "/<a>", "HTTP/3.0"),
    ] {
        let r = send(h.internet(), &raw).await.expect("a response");
        assert_eq!(r.status, 400, "{raw:?}: {}", r.body);
    }
    assert_eq!(h.echo.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn each_keep_alive_request_is_rewritten() {
    let h = plain().await;
    let mut s = TcpStream::connect(h.internet()).await.unwrap();
    for i in 0..3 {
        s.write_all(format!("GET /k?n={i}<> HTTP/1.1\r\nHost: plain.example.com\r\n\r\n").as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut s).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(echoed_path(&body), format!("/k?n={i}%3C%3E"));
    }
}

#[tokio::test]
async fn the_waf_inspects_what_the_client_sent() {
    let Some(crs) = crs() else { return };
    let h = Harness::start_waf(project(), &[Origin::Internet], Limits::default(), true, None, Some(crs)).await;
    let r = send(h.internet(), &line("guarded.example.com", ATTACK, "HTTP/1.1")).await.expect("a response");
    assert_eq!(r.status, 403, "{}", r.body);
    let rec = h.last_record();
    assert_eq!(rec.edge_rule, Some(1000));
    assert!(rec.waf_signatures.contains(&"owasp-crs-v030301-id941100-xss".to_owned()), "{:?}", rec.waf_signatures);
    assert_eq!(h.echo.hits.load(Ordering::SeqCst), 0, "the workload never saw it");
}
