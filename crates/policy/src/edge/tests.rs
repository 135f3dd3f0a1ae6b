//! The edge stage for `explain`: rules set aside for the facts a query lacks, and the matrix's
//! gate (open, depends, closed) of a policy evaluated with no request facts.

#![expect(clippy::panic, reason = "tests fail on a policy that does not load")]

use super::*;

const POLICY: &str = r#"{"name":"p","rules":[
  {"action":"deny(403)","priority":10,"match":{"versionedExpr":"SRC_IPS_V1","config":{"srcIpRanges":["192.0.2.0/24"]}}},
  {"action":"deny(404)","priority":20,"match":{"expr":{"expression":"request.path.startsWith('/admin')"}}},
  {"action":"allow","priority":2147483647,"match":{"versionedExpr":"SRC_IPS_V1","config":{"srcIpRanges":["*"]}}}]}"#;

fn policy() -> SecurityPolicy {
    SecurityPolicy::from_json(POLICY, "armor/p.json").unwrap_or_else(|e| panic!("{e:?}"))
}

const DEFAULT: u32 = 2_147_483_647;

fn codes(v: &EdgeVerdict<'_>) -> Vec<&'static str> {
    v.reasons.iter().map(|r| r.code).collect()
}

#[test]
fn rules_needing_unknown_facts_are_set_aside_and_said_to_depend() {
    let p = policy();
    let v = evaluate(&p, &GeoTable::default(), &EdgeFacts::default(), "h");
    assert_eq!(v.priority(), 2_147_483_647);
    assert_eq!(codes(&v), [DEPENDS_ON_REQUEST, DEPENDS_ON_REQUEST, "edge.default_rule"]);
    assert!(v.reasons.first().is_some_and(|r| r.message.contains("origin.ip (--source-ip)")));
}

#[test]
fn known_facts_decide_exactly_as_the_evaluator() {
    let p = policy();
    let facts = EdgeFacts {
        method: Some("GET".into()),
        target: Some("/admin/x".into()),
        source_ip: Some(IpAddr::from([198, 51, 100, 1])),
        headers: Some(Vec::new()),
    };
    let v = evaluate(&p, &GeoTable::default(), &facts, "h");
    assert_eq!(v.priority(), 20);
    assert_eq!(codes(&v), ["edge.rule_matched"]);
    let direct = p.evaluate(&facts.request("h", &GeoTable::default()));
    assert_eq!(direct.reasons, v.reasons);
    // A rule already decided before an unknown one: nothing depends.
    let v = evaluate(
        &p,
        &GeoTable::default(),
        &EdgeFacts { source_ip: Some(IpAddr::from([192, 0, 2, 1])), ..EdgeFacts::default() },
        "h",
    );
    assert_eq!((v.priority(), codes(&v)), (10, vec!["edge.rule_matched"]));
}

/// A rule of a test policy: action, priority, match.
fn rule(action: &str, priority: u32, matcher: &str) -> String {
    format!(r#"{{"action":"{action}","priority":{priority},"match":{matcher}}}"#)
}

fn ips(ranges: &str) -> String {
    format!(r#"{{"versionedExpr":"SRC_IPS_V1","config":{{"srcIpRanges":[{ranges}]}}}}"#)
}

fn expr(e: &str) -> String {
    format!(r#"{{"expr":{{"expression":"{e}"}}}}"#)
}

const THROTTLE: &str = r#","rateLimitOptions":{"conformAction":"allow","exceedAction":"deny(429)","enforceOnKey":"IP","rateLimitThreshold":{"count":10,"intervalSec":60}}"#;

#[test]
fn the_matrix_gate_of_a_policy_without_request_facts() {
    let all = ips(r#""*""#);
    let partner = ips(r#""203.0.113.0/24""#);
    let admin = expr("request.path.startsWith('/admin')");
    let throttle = |p: u32, m: &str| format!(r#"{{"action":"throttle","priority":{p},"match":{m}{THROTTLE}}}"#);
    let preview = |r: String| r.replacen('{', r#"{"preview":true,"#, 1);
    let cases: Vec<(&str, Vec<String>, Gate, Option<u16>)> = vec![
        ("default deny, nothing else", vec![rule("deny(403)", DEFAULT, &all)], Gate::Closed, Some(403)),
        (
            "default deny, an allow rule that needs --source-ip",
            vec![rule("allow", 10, &partner), rule("deny(403)", DEFAULT, &all)],
            Gate::Depends,
            Some(403),
        ),
        ("default allow", vec![rule("allow", DEFAULT, &all)], Gate::Open, None),
        (
            "an unconditional deny above a rule that needs facts",
            vec![rule("deny(404)", 5, &all), rule("allow", 10, &partner), rule("allow", DEFAULT, &all)],
            Gate::Closed,
            Some(404),
        ),
        (
            "a deny every request matches, by an expression that reads no request fact",
            vec![rule("deny(502)", 5, &expr("request.scheme == 'http'")), rule("allow", DEFAULT, &all)],
            Gate::Closed,
            Some(502),
        ),
        (
            "only refusing rules set aside above a refusing default",
            vec![rule("deny(404)", 10, &admin), rule("deny(403)", DEFAULT, &all)],
            Gate::Closed,
            Some(403),
        ),
        (
            "a deny that needs --path above the default allow",
            vec![rule("deny(403)", 10, &admin), rule("allow", DEFAULT, &all)],
            Gate::Depends,
            None,
        ),
        (
            "a preview deny does not refuse",
            vec![preview(rule("deny(403)", 10, &admin)), rule("allow", DEFAULT, &all)],
            Gate::Open,
            None,
        ),
        (
            "a preview allow does not admit",
            vec![preview(rule("allow", 10, &partner)), rule("deny(403)", DEFAULT, &all)],
            Gate::Closed,
            Some(403),
        ),
        (
            "a set-aside throttle may refuse",
            vec![throttle(10, &admin), rule("allow", DEFAULT, &all)],
            Gate::Depends,
            None,
        ),
        (
            "a set-aside throttle may admit",
            vec![throttle(10, &admin), rule("deny(403)", DEFAULT, &all)],
            Gate::Depends,
            Some(403),
        ),
        (
            "an unconditional throttle admits",
            vec![throttle(10, &all), rule("deny(403)", DEFAULT, &all)],
            Gate::Open,
            None,
        ),
        (
            "only allow rules set aside above the default allow",
            vec![rule("allow", 10, &partner), rule("allow", DEFAULT, &all)],
            Gate::Open,
            None,
        ),
    ];
    for (what, rules, gate, status) in cases {
        let json = format!(r#"{{"name":"p","rules":[{}]}}"#, rules.join(","));
        let p = SecurityPolicy::from_json(&json, "armor/p.json").unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let m = for_matrix(&p, &GeoTable::default(), "h");
        assert_eq!((m.gate, m.verdict.outcome.status()), (gate, status), "{what}");
        // The verdict is the one `explain --via` gives without request facts.
        let v = evaluate(&p, &GeoTable::default(), &EdgeFacts::default(), "h");
        assert_eq!(m.verdict.reasons, v.reasons, "{what}");
    }
}
