//! Preconfigured WAF rules (`evaluatePreconfiguredWaf`) through the real front door, over the
//! real CRS rule files (Debian's `modsecurity-crs`, or `MOAT_CRS_DIR`): signatures decide per
//! set, preview records would-be matches, the fired signatures are in the decision record, the
//! body is inspected up to the policy's inspection size and forwarded whole, and a policy that
//! needs the CRS without it refuses requests (fail closed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use harness::{Harness, RawResponse, crs, get, inline_project, request, send};
use moat_policy::{Origin, Project};
use moat_server::frontdoor::Limits;

const MOAT: &str = r#"
project:
  id: waf-proj
  number: "100000000002"
  region: us-central1
load_balancers:
  - name: shop
    scheme: external
    hosts: [shop.example.com]
    security_policy: waf-8k
    routes:
      - service: web
  - name: tuned
    scheme: external
    hosts: [tuned.example.com]
    security_policy: waf-tuned
    routes:
      - service: web
  - name: big
    scheme: external
    hosts: [big.example.com]
    security_policy: waf-16k
    routes:
      - service: web
"#;

const WEB: &str = r#"{"name":"projects/waf-proj/locations/us-central1/services/web","uri":"https://web-q7x2lmtc3a-uc.a.run.app","urls":["https://web-100000000002.us-central1.run.app"],"ingress":"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER","invokerIamDisabled":true,"template":{"containers":[{"image":"x"}]}}"#;

/// SQLi enforced at sensitivity 1; XSS in preview at sensitivity 2; LFI enforced with one
/// signature opted out.
fn policy(name: &str, size: Option<&str>) -> String {
    let advanced = size
        .map(|s| format!(r#", "advancedOptionsConfig": {{"requestBodyInspectionSize": "{s}"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{
  "name": "{name}",
  "rules": [
    {{ "action": "deny(403)", "priority": 1000,
      "match": {{ "expr": {{ "expression": "evaluatePreconfiguredWaf('sqli-v33-stable', {{'sensitivity': 1}})" }} }} }},
    {{ "action": "deny(403)", "priority": 1100, "preview": true,
      "match": {{ "expr": {{ "expression": "evaluatePreconfiguredWaf('xss-v33-stable', {{'sensitivity': 2}})" }} }} }},
    {{ "action": "deny(404)", "priority": 1200,
      "match": {{ "expr": {{ "expression": "evaluatePreconfiguredWaf('lfi-v33-stable', {{'sensitivity': 1, 'opt_out_rule_ids': ['owasp-crs-v030301-id930120-lfi']}})" }} }} }},
    {{ "action": "allow", "priority": 2147483647,
      "match": {{ "versionedExpr": "SRC_IPS_V1", "config": {{ "srcIpRanges": ["*"] }} }} }}
  ]{advanced}
}}"#
    )
}

/// SQLi at sensitivity 1 with Cloud Armor field exclusions: parameter `q` for every signature,
/// cookies starting with `pref` for 942100 only, and the whole set on URIs under `/search-raw`.
const TUNED: &str = r#"{
  "name": "waf-tuned",
  "rules": [
    { "action": "deny(403)", "priority": 1000,
      "match": { "expr": { "expression": "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})" } },
      "preconfiguredWafConfig": { "exclusions": [
        { "targetRuleSet": "sqli-v33-stable",
          "requestQueryParamsToExclude": [ { "op": "EQUALS", "val": "q" } ] },
        { "targetRuleSet": "sqli-v33-stable", "targetRuleIds": ["owasp-crs-v030301-id942100-sqli"],
          "requestCookiesToExclude": [ { "op": "STARTS_WITH", "val": "pref" } ] },
        { "targetRuleSet": "sqli-v33-stable",
          "requestUrisToExclude": [ { "op": "STARTS_WITH", "val": "/search-raw" } ] }
      ] } },
    { "action": "allow", "priority": 2147483647,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } }
  ]
}"#;

fn project() -> Project {
    inline_project(&[
        ("moat.yaml", MOAT),
        ("services/web.json", WEB),
        ("armor/waf-8k.json", &policy("waf-8k", None)),
        ("armor/waf-16k.json", &policy("waf-16k", Some("16KB"))),
        ("armor/waf-tuned.json", TUNED),
    ])
}

async fn start() -> Option<Harness> {
    let crs = crs()?;
    Some(Harness::start_waf(project(), &[Origin::Internet], Limits::default(), true, None, Some(crs)).await)
}

async fn call(h: &Harness, raw: &str) -> RawResponse {
    send(h.internet(), raw).await.expect("an HTTP response")
}

fn form(host: &str, body: &str) -> String {
    request("POST", host, "/submit", &[("Content-Type", "application/x-www-form-urlencoded")], body)
}

#[tokio::test]
async fn benign_requests_pass_and_record_no_signature() {
    let Some(h) = start().await else { return };
    let r = call(&h, &get("shop.example.com", "/products?page=2&sort=price", &[])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rec = h.last_record();
    assert!(rec.waf_signatures.is_empty(), "{:?}", rec.waf_signatures);
    assert_eq!(rec.edge_rule, Some(2_147_483_647));
}

#[tokio::test]
async fn a_matching_signature_denies_and_is_recorded() {
    let Some(h) = start().await else { return };
    let r = call(&h, &get("shop.example.com", "/?id=1%27%20OR%20%271%27=%271", &[])).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let rec = h.last_record();
    assert_eq!(rec.edge_rule, Some(1000));
    assert!(rec.waf_signatures.contains(&"owasp-crs-v030301-id942100-sqli".to_owned()), "{:?}", rec.waf_signatures);
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the workload never saw it");
    // In a form body too.
    let r = call(&h, &form("shop.example.com", "user=admin&pass=x' OR '1'='1")).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn preview_sets_record_would_be_matches_and_forward() {
    let Some(h) = start().await else { return };
    let r = call(&h, &get("shop.example.com", "/c?text=%3Cscript%3Ealert(document.cookie)%3C/script%3E", &[])).await;
    assert_eq!(r.status, 200, "xss is only in preview: {}", r.body);
    let rec = h.last_record();
    assert!(rec.waf_signatures.iter().any(|s| s.ends_with("-xss")), "{:?}", rec.waf_signatures);
    assert!(rec.codes().contains(&"edge.preview_match"), "{:?}", rec.codes());
}

#[tokio::test]
async fn opted_out_signatures_do_not_fire() {
    let Some(h) = start().await else { return };
    // 930100 (path traversal) is enabled: refused with the rule's 404.
    let r = call(&h, &get("shop.example.com", "/?file=..%2f..%2f..%2fetc%2fpasswd", &[])).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let rec = h.last_record();
    assert!(!rec.waf_signatures.iter().any(|s| s.contains("id930120")), "opted out: {:?}", rec.waf_signatures);
}

#[tokio::test]
async fn bodies_are_inspected_up_to_the_inspection_size_and_forwarded_whole() {
    let Some(h) = start().await else { return };
    let attack = "&q=1' UNION SELECT password FROM users--";
    // Within the first 8 KB: refused.
    let early = format!("a={}{attack}", "x".repeat(100));
    assert_eq!(call(&h, &form("shop.example.com", &early)).await.status, 403);
    // Past 8 KB: not inspected, as in Cloud Armor; the whole body reaches the workload.
    let late = format!("a={}{attack}", "x".repeat(9_000));
    let r = call(&h, &form("shop.example.com", &late)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let echo: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echo["body_len"], late.len());
    assert_eq!(echo["body_end"], late[late.len() - 16..]);
    // With requestBodyInspectionSize 16KB the same body is refused.
    assert_eq!(call(&h, &form("big.example.com", &late)).await.status, 403);
}

#[tokio::test]
async fn a_large_chunked_body_passes_intact() {
    let Some(h) = start().await else { return };
    let chunk = "k=".to_owned() + &"v".repeat(4_094);
    let mut raw = "POST /upload HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
    for _ in 0..30 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    let r = call(&h, &raw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let echo: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echo["body_len"], 30 * 4_096);
}

#[tokio::test]
async fn without_the_crs_a_waf_policy_refuses() {
    // No CRS given to the front door (startup refuses this; the door still fails closed).
    let h = Harness::start_waf(project(), &[Origin::Internet], Limits::default(), true, None, None).await;
    let r = call(&h, &get("shop.example.com", "/products", &[])).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(h.last_record().codes().contains(&"edge.waf_unavailable"));
    assert_eq!(h.echo.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn loading_the_crs_is_required_only_when_a_policy_uses_it() {
    let p = project();
    let missing = moat_server::frontdoor::load_crs_for(&p, std::path::Path::new("/nonexistent-crs"), None);
    let e = missing.expect_err("the policies need the CRS");
    assert!(e.contains("`waf-16k`, `waf-8k`") || e.contains("`waf-8k`, `waf-16k`"), "{e}");
    assert!(e.contains("modsecurity-crs"), "says how to install it: {e}");
    let plain = inline_project(&[("moat.yaml", "project: {id: p, number: \"1\", region: us-central1}\n")]);
    assert!(matches!(
        moat_server::frontdoor::load_crs_for(&plain, std::path::Path::new("/nonexistent-crs"), None),
        Ok(None)
    ));
}

#[tokio::test]
async fn field_exclusions_take_fields_out_of_inspection() {
    let Some(h) = start().await else { return };
    let attack = "1%27%20OR%20%271%27=%271";
    // The excluded parameter is not inspected; another one with the same value is.
    let r = call(&h, &get("tuned.example.com", &format!("/s?q={attack}"), &[])).await;
    assert_eq!(r.status, 200, "q is excluded: {}", r.body);
    let r = call(&h, &get("tuned.example.com", &format!("/s?id={attack}"), &[])).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // A cookie exclusion for 942100 only: that signature stays quiet on it.
    let cookie = "prefs=1' OR '1'='1";
    let _ = call(&h, &get("tuned.example.com", "/", &[("Cookie", cookie)])).await;
    let rec = h.last_record();
    assert!(!rec.waf_signatures.iter().any(|s| s.contains("id942100")), "{:?}", rec.waf_signatures);
    let _ = call(&h, &get("tuned.example.com", "/", &[("Cookie", "other=1' OR '1'='1")])).await;
    assert!(h.last_record().waf_signatures.iter().any(|s| s.contains("id942100")), "not excluded");
    // A URI exclusion takes the URI variables out; the arguments are still inspected.
    let r = call(&h, &get("tuned.example.com", &format!("/search-raw?id={attack}"), &[])).await;
    assert_eq!(r.status, 403, "arguments are not the URI: {}", r.body);
}
