//! The `geo:` table of moat.yaml: its errors at file:line:col, and what it gives the edge
//! policy: `origin.region_code`, `origin.asn`, the `REGION_CODE` rate-limit key, and the
//! region/ASN `explain` names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;

use moat_policy::armor::{EdgeOutcome, EdgeRequest, SecurityPolicy, codes};
use moat_policy::edge::{EdgeFacts, evaluate};
use moat_policy::{LoadErrors, Project, SourceFile};

const HEAD: &str = "project:\n  id: p\n  number: \"1\"\n  region: r\n";

const GEO: &str = "geo:
  - {range: 198.51.100.0/24, region_code: CH, asn: 3303}
  - {range: 198.51.100.128/25, region_code: CH}
  - {range: 203.0.113.0/24, region_code: US, asn: 15169}
  - {range: \"2001:db8::/32\", asn: 15169}
";

fn load(moat: &str, armor: &[(&str, &str)]) -> Result<Project, LoadErrors> {
    let mut files = vec![SourceFile { path: "moat.yaml".into(), text: format!("{HEAD}{moat}") }];
    files.extend(armor.iter().map(|(p, t)| SourceFile { path: (*p).into(), text: (*t).into() }));
    moat_policy::load(&files)
}

fn errors(moat: &str) -> Vec<String> {
    match load(moat, &[]) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.iter().map(|e| format!("{e}\n  help: {}", e.help.as_deref().unwrap_or("-"))).collect(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn project() -> Project {
    load(GEO, &[]).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn the_table_loads_and_the_longest_prefix_wins() {
    let p = project();
    assert_eq!(p.geo.entries().len(), 4);
    let at = |s: &str| p.geo.lookup(ip(s)).map(|e| (e.region_code.clone(), e.asn));
    assert_eq!(at("198.51.100.1"), Some((Some("CH".into()), Some(3303))));
    assert_eq!(at("198.51.100.200"), Some((Some("CH".into()), None)), "the /25 decides alone");
    assert_eq!(at("2001:db8::7"), Some((None, Some(15169))));
    assert_eq!(at("192.0.2.1"), None);
    assert!(load("", &[]).unwrap().geo.is_empty(), "no `geo:` is no table");
}

#[test]
fn every_mistake_is_reported_at_its_value() {
    let errs = errors(
        "geo:
  - {range: 10.0.0.0/33, region_code: CH}
  - {range: 10.1.0.0/16, region_code: ch}
  - {range: 10.2.0.0/16, region_code: CHE, asn: -1}
  - {range: 10.3.0.0/16, asn: 4294967296}
  - {range: 10.4.0.0/16}
  - {range: 10.5.0.0/16, region_code: DE}
  - {range: 10.5.0.1/16, region_code: FR}
",
    );
    let want = [
        ("moat.yaml:6:13:", "geo range `10.0.0.0/33` is not a CIDR range"),
        ("moat.yaml:7:39:", "`ch` is not an ISO 3166-1 alpha-2 region code"),
        ("moat.yaml:8:39:", "`CHE` is not an ISO 3166-1 alpha-2 region code"),
        ("moat.yaml:8:49:", "`-1` is not an autonomous system number"),
        ("moat.yaml:9:31:", "`4294967296` is not an autonomous system number"),
        ("moat.yaml:10:5:", "geo range `10.4.0.0/16` gives neither `region_code` nor `asn`"),
        ("moat.yaml:12:5:", "geo range `10.5.0.0/16` is listed twice (first at moat.yaml:11"),
    ];
    for (at, message) in want {
        assert!(
            errs.iter().any(|e| e.starts_with(at) && e.contains(message)),
            "expected `{at} {message}` among:\n{}",
            errs.join("\n")
        );
    }
    assert_eq!(errs.len(), want.len(), "{}", errs.join("\n"));
    let unknown = errors("geo:\n  - {range: 10.0.0.0/8, country: CH}\n");
    assert!(unknown.iter().any(|e| e.starts_with("moat.yaml:6:") && e.contains("unknown field")), "{unknown:?}");
}

const DEFAULT_ALLOW: &str = r#"{"priority": 2147483647, "action": "allow",
      "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#;

fn policy(rules: &[String]) -> SecurityPolicy {
    let mut all: Vec<&str> = rules.iter().map(String::as_str).collect();
    all.push(DEFAULT_ALLOW);
    let text = format!("{{\"name\": \"edge\", \"rules\": [{}]}}", all.join(",\n"));
    SecurityPolicy::from_json(&text, "armor/edge.json").unwrap_or_else(|e| panic!("{e:?}"))
}

fn rule(priority: u32, action: &str, expr: &str) -> String {
    format!(
        r#"{{"priority": {priority}, "action": "{action}", "match": {{"expr": {{"expression": {}}}}}}}"#,
        serde_json::to_string(expr).unwrap()
    )
}

fn req(p: &Project, addr: &str) -> EdgeRequest {
    p.geo.locate(EdgeRequest::new("GET", "http", "h", "/", ip(addr)))
}

#[test]
fn region_and_asn_rules_match_miss_or_are_unavailable() {
    let p = project();
    let pol =
        policy(&[rule(10, "deny(403)", "origin.region_code == 'CH'"), rule(20, "deny(404)", "origin.asn == 15169")]);
    // (address, deciding rule, rules that errored)
    let cases: &[(&str, u32, &[u32])] = &[
        ("198.51.100.1", 10, &[]),            // CH
        ("198.51.100.200", 10, &[]),          // CH, from the /25 (no ASN, but rule 10 decides first)
        ("203.0.113.9", 20, &[]),             // US, AS15169
        ("2001:db8::1", 20, &[10]),           // no region: rule 10 errors; AS15169
        ("192.0.2.1", 2147483647, &[10, 20]), // no row: both unavailable
    ];
    for (addr, decider, errored) in cases {
        let v = pol.evaluate(&req(&p, addr));
        assert_eq!(v.priority(), *decider, "{addr}");
        assert_eq!(v.errors.iter().map(|e| e.priority).collect::<Vec<_>>(), *errored, "{addr}");
        assert_eq!(v.reasons.iter().filter(|r| r.code == codes::EVAL_ERROR).count(), errored.len(), "{addr}");
    }
    // A row without an ASN leaves `origin.asn` unavailable, not borrowed from the /24.
    let asn_only = policy(&[rule(10, "deny(403)", "origin.asn == 3303")]);
    let v = asn_only.evaluate(&req(&p, "198.51.100.200"));
    assert_eq!((v.priority(), v.errors.len()), (2147483647, 1));
    assert_eq!(asn_only.evaluate(&req(&p, "198.51.100.1")).priority(), 10);
    // Without a table nothing is located.
    let bare = load("", &[]).unwrap();
    let v = pol.evaluate(&req(&bare, "198.51.100.1"));
    assert_eq!((v.priority(), v.errors.len()), (2147483647, 2));
}

#[test]
fn region_code_keys_group_the_addresses_of_one_region() {
    let p = project();
    let throttle = r#"{"priority": 10, "action": "throttle",
      "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}},
      "rateLimitOptions": {"rateLimitThreshold": {"count": 5, "intervalSec": 60},
        "conformAction": "allow", "exceedAction": "deny(429)", "enforceOnKey": "REGION_CODE"}}"#;
    let pol = policy(&[throttle.to_owned()]);
    let key = |addr: &str| {
        let r = req(&p, addr);
        let v = pol.evaluate(&r);
        let EdgeOutcome::Throttle { limit, .. } = v.outcome else { panic!("{:?}", v.outcome) };
        limit.key(&r, None)
    };
    assert_eq!(key("198.51.100.1"), "region=CH");
    assert_eq!(key("198.51.100.1"), key("198.51.100.200"), "two addresses of one region share a bucket");
    assert_eq!(key("203.0.113.9"), "region=US");
    assert_eq!(key("2001:db8::1"), "all", "no region: the fall-back to ALL");
    assert_eq!(key("192.0.2.1"), "all");
}

#[test]
fn explain_names_the_region_and_asn_it_used() {
    let geo_policy = format!(
        "{{\"name\": \"edge-policy\", \"rules\": [{}, {DEFAULT_ALLOW}]}}",
        rule(10, "deny(403)", "origin.region_code == 'CH' || origin.asn == 15169")
    );
    let p = load(GEO, &[("armor/edge-policy.json", &geo_policy)]).unwrap_or_else(|e| panic!("{e:?}"));
    let pol = p.armor_policies.get("edge-policy").unwrap();
    let facts = |addr: Option<&str>| EdgeFacts { source_ip: addr.map(ip), ..EdgeFacts::default() };
    let v = evaluate(pol, &p.geo, &facts(Some("198.51.100.7")), "h");
    assert_eq!(v.priority(), 10);
    let last = v.reasons.last().unwrap();
    assert!(
        last.message.contains("source 198.51.100.7: region `CH`, ASN 3303 (geo row 198.51.100.0/24, moat.yaml:6"),
        "{}",
        last.message
    );
    // An address no row holds: the rule errors, the default decides.
    let v = evaluate(pol, &p.geo, &facts(Some("192.0.2.1")), "h");
    assert_eq!(v.priority(), 2147483647);
    assert_eq!(v.errors.len(), 1);
    // With a table, the rule depends on the source address the query does not give.
    let v = evaluate(pol, &p.geo, &facts(None), "h");
    assert_eq!(v.reasons.first().map(|r| r.code), Some(moat_policy::edge::DEPENDS_ON_REQUEST));
    assert!(v.reasons[0].message.contains("origin.ip (--source-ip)"), "{}", v.reasons[0].message);
}
