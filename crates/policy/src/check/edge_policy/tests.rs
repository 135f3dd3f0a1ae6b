//! MOAT014–MOAT016 and MOAT028, table-driven over small policies.

use super::*;
use crate::check::testing::project;

const DEFAULT_ALLOW: &str = r#"{"action": "allow", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#;
const DEFAULT_DENY: &str = r#"{"action": "deny(403)", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#;

fn rule(priority: u32, action: &str, matcher: &str, extra: &str) -> String {
    let m = match matcher {
        "*" => r#"{"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}"#.to_owned(),
        cidr if cidr.starts_with(|c: char| c.is_ascii_digit()) => {
            format!(r#"{{"versionedExpr": "SRC_IPS_V1", "config": {{"srcIpRanges": ["{cidr}"]}}}}"#)
        }
        expr => format!(r#"{{"expr": {{"expression": "{expr}"}}}}"#),
    };
    format!(r#"{{"action": "{action}", "priority": {priority}, "match": {m}{extra}}}"#)
}

fn limit(key: &str) -> String {
    format!(
        r#", "rateLimitOptions": {{"conformAction": "allow", "exceedAction": "deny(429)", "rateLimitThreshold": {{"count": 100, "intervalSec": 60}}{key}}}"#
    )
}

fn ban(key: &str) -> String {
    format!(
        r#", "rateLimitOptions": {{"conformAction": "allow", "exceedAction": "deny(403)", "rateLimitThreshold": {{"count": 100, "intervalSec": 60}}, "banDurationSec": 600{key}}}"#
    )
}

fn policy(rules: &[String]) -> String {
    format!(r#"{{"name": "edge", "rules": [{}]}}"#, rules.join(", "))
}

/// A project where load balancer `lb` (`scheme`) routes to `s` through policy `edge`.
fn with_policy(scheme: &str, rules: &[String]) -> Project {
    let network = if scheme == "internal" { "    network: vpc\n" } else { "" };
    project(
        &format!(
            "networks:\n  - name: vpc\nload_balancers:\n  - name: lb\n    scheme: {scheme}\n{network}    security_policy: edge\n    routes:\n      - path: /*\n        service: s\n"
        ),
        &[
            (
                "services/s.json",
                r#"{"name": "s", "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "template": {"serviceAccount": "x@p.iam.gserviceaccount.com"}}"#,
            ),
            ("armor/edge.json", &policy(rules)),
        ],
    )
}

fn found(check: fn(&Project) -> Vec<Finding>, p: &Project) -> Vec<(Severity, u32)> {
    check(p).iter().map(|f| (f.severity, f.source.line)).collect()
}

#[test]
fn enforces_nothing_cases() {
    // (rules above the default one, default rule, scheme, expect a finding)
    let cases: Vec<(Vec<String>, &str, &str, bool)> = vec![
        (vec![], DEFAULT_ALLOW, "external", true),
        (vec![], DEFAULT_ALLOW, "internal", false),
        (vec![], DEFAULT_DENY, "external", false),
        (vec![rule(10, "allow", "10.0.0.0/8", "")], DEFAULT_ALLOW, "external", true),
        (vec![rule(10, "deny(403)", "10.0.0.0/8", "")], DEFAULT_ALLOW, "external", false),
        (vec![rule(10, "deny(403)", "10.0.0.0/8", r#", "preview": true"#)], DEFAULT_ALLOW, "external", true),
        (vec![rule(10, "throttle", "*", &limit(r#", "enforceOnKey": "IP""#))], DEFAULT_ALLOW, "external", false),
        (
            vec![rule(
                10,
                "redirect",
                "request.path == '/old'",
                r#", "redirectOptions": {"type": "EXTERNAL_302", "target": "https://x.example"}"#,
            )],
            DEFAULT_ALLOW,
            "external",
            false,
        ),
        // An allow-everything rule before the deny: the deny is never reached.
        (vec![rule(5, "allow", "true", ""), rule(10, "deny(403)", "*", "")], DEFAULT_ALLOW, "external", true),
    ];
    for (above, default, scheme, expected) in cases {
        let mut rules = above.clone();
        rules.push(default.to_owned());
        let p = with_policy(scheme, &rules);
        let f = check_enforces_nothing(&p);
        assert_eq!(f.len(), usize::from(expected), "{above:?} {default} {scheme}");
        for f in &f {
            assert_eq!((f.rule, f.severity, f.service.as_deref()), ("MOAT014", Severity::Medium, None));
            assert_eq!(f.source.file.as_ref(), "armor/edge.json");
            assert!(f.message.starts_with("security policy `edge` on external load balancer `lb` enforces nothing"));
        }
    }
}

#[test]
fn enforces_nothing_names_the_rule_and_the_preview_rules() {
    let p = with_policy(
        "external",
        &[rule(10, "deny(403)", "10.0.0.0/8", r#", "preview": true"#), DEFAULT_ALLOW.to_owned()],
    );
    let f = check_enforces_nothing(&p);
    assert!(f.iter().all(|f| f.message.ends_with(
        "its default rule allows and no rule above it denies, redirects, throttles or bans (one such rule is in preview, which only logs)"
    )));
    assert!(f.iter().all(|f| f.fix.contains("above priority 2147483647 in `armor/edge.json`")));
}

#[test]
fn shared_rate_limit_cases() {
    // (rule, scheme, expected severity)
    let cases: Vec<(String, &str, Option<Severity>)> = vec![
        (rule(10, "throttle", "*", &limit("")), "external", Some(Severity::Medium)),
        (rule(10, "throttle", "*", &limit(r#", "enforceOnKey": "ALL""#)), "external", Some(Severity::Medium)),
        (rule(10, "throttle", "*", &limit(r#", "enforceOnKey": "ALL_IPS""#)), "external", Some(Severity::Medium)),
        (rule(10, "rate_based_ban", "*", &ban("")), "external", Some(Severity::High)),
        (rule(10, "throttle", "*", &limit("")), "internal", None),
        (rule(10, "throttle", "*", &limit(r#", "enforceOnKey": "IP""#)), "external", None),
        (
            rule(
                10,
                "throttle",
                "*",
                &limit(r#", "enforceOnKeyConfigs": [{"enforceOnKeyType": "ALL"}, {"enforceOnKeyType": "IP"}]"#),
            ),
            "external",
            None,
        ),
        (rule(10, "throttle", "*", &(limit("") + r#", "preview": true"#)), "external", None),
    ];
    for (r, scheme, expected) in cases {
        let p = with_policy(scheme, &[r.clone(), DEFAULT_ALLOW.to_owned()]);
        let f = check_shared_rate_limit(&p);
        assert_eq!(f.first().map(|f| f.severity), expected, "{r} {scheme}");
        assert!(f.len() <= 1);
        for f in &f {
            assert_eq!((f.rule, f.source.file.as_ref(), f.source.line), ("MOAT015", "armor/edge.json", 1));
            assert!(f.message.starts_with("rule 10 of security policy `edge` on external load balancer `lb`"));
            assert!(f.fix.contains("on rule 10 in `armor/edge.json`"));
        }
    }
}

#[test]
fn shadowed_cases() {
    // (rules before the default one, expected (severity, priority) of each shadowed rule)
    type Shadowed = Vec<(Severity, u32)>;
    let cases: Vec<(Vec<String>, Shadowed)> = vec![
        (vec![rule(10, "deny(403)", "10.0.0.0/8", ""), rule(20, "deny(404)", "*", "")], vec![]),
        (
            vec![
                rule(10, "allow", "*", ""),
                rule(20, "deny(403)", "10.0.0.0/8", ""),
                rule(30, "allow", "request.path == '/x'", ""),
                rule(40, "deny(403)", "*", r#", "preview": true"#),
            ],
            vec![(Severity::Medium, 20), (Severity::Low, 30), (Severity::Low, 40)],
        ),
        (vec![rule(10, "deny(403)", " ( true ) ", ""), rule(20, "allow", "10.0.0.0/8", "")], vec![(Severity::Low, 20)]),
        // A preview rule that matches everything decides nothing.
        (vec![rule(10, "deny(403)", "*", r#", "preview": true"#), rule(20, "deny(403)", "10.0.0.0/8", "")], vec![]),
        // `true && ...` is not recognised as always true; only the literal is.
        (vec![rule(10, "allow", "true && request.path == '/'", ""), rule(20, "deny(403)", "10.0.0.0/8", "")], vec![]),
    ];
    for (rules, expected) in cases {
        let mut all = rules.clone();
        all.push(DEFAULT_ALLOW.to_owned());
        let p = with_policy("external", &all);
        let got: Vec<(Severity, u32)> = check_shadowed(&p)
            .iter()
            .map(|f| {
                let priority = f
                    .message
                    .strip_prefix("rule ")
                    .and_then(|m| m.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                (f.severity, priority)
            })
            .collect();
        assert_eq!(got, expected, "{rules:?}");
    }
}

#[test]
fn shadowed_rules_point_at_their_own_line_in_any_policy() {
    // Not attached to any load balancer: a loaded policy is one edit away from being used.
    let rules =
        policy(&[rule(10, "allow", "*", ""), rule(20, "deny(403)", "10.0.0.0/8", ""), DEFAULT_ALLOW.to_owned()])
            .replace(", {", ",\n{");
    let p = project("", &[("armor/edge.json", &rules)]);
    let f = check_shadowed(&p);
    assert_eq!(found(check_shadowed, &p), [(Severity::Medium, 2)]);
    assert!(f.iter().all(|f| f.message
        == "rule 20 (deny(403)) of security policy `edge` is never evaluated: rule 10 (allow) before it matches every request with `SRC_IPS_V1` with `*`"));
    assert!(check_enforces_nothing(&p).is_empty() && check_shared_rate_limit(&p).is_empty());
}

const SQLI: &str = "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})";
const XSS: &str = "evaluatePreconfiguredWaf('xss-v33-stable', {'sensitivity': 1})";
const PREVIEW: &str = r#", "preview": true"#;

#[test]
fn waf_only_in_preview_cases() {
    let lfi = "evaluatePreconfiguredExpr('lfi-v33-stable') && request.path.startsWith('/files')";
    // (rules before the default one, scheme, expected message after the load balancer)
    let cases: Vec<(Vec<String>, &str, Option<&str>)> = vec![
        (
            vec![rule(10, "deny(403)", SQLI, PREVIEW)],
            "external",
            Some(
                "the preconfigured WAF rule of security policy `edge` on external load balancer `lb` is in preview: rule 10 (`sqli-v33-stable`) only logs the requests it matches, so the attacks its set recognises reach the services",
            ),
        ),
        (
            vec![
                rule(10, "deny(403)", SQLI, PREVIEW),
                rule(20, "deny(403)", XSS, PREVIEW),
                rule(30, "deny(403)", lfi, PREVIEW),
            ],
            "internal",
            Some(
                "every preconfigured WAF rule of security policy `edge` on internal load balancer `lb` is in preview: rules 10 (`sqli-v33-stable`), 20 (`xss-v33-stable`) and 30 (`lfi-v33-stable`) only log the requests they match, so the attacks their sets recognise reach the services",
            ),
        ),
        // One enforced WAF rule is enough; the other sets are MOAT024's question.
        (vec![rule(10, "deny(403)", SQLI, PREVIEW), rule(20, "deny(403)", XSS, "")], "external", None),
        (vec![rule(10, "deny(403)", SQLI, "")], "external", None),
        // No WAF rule at all is MOAT024's; a preview rule that only names the function in a
        // string literal does not call the WAF.
        (vec![rule(10, "deny(403)", "10.0.0.0/8", PREVIEW)], "external", None),
        (vec![rule(10, "deny(403)", "request.path.contains('evaluatePreconfiguredWaf')", PREVIEW)], "external", None),
    ];
    for (rules, scheme, expected) in cases {
        let mut all = rules.clone();
        all.push(DEFAULT_ALLOW.to_owned());
        let p = with_policy(scheme, &all);
        let f = check_waf_only_in_preview(&p);
        assert_eq!(f.first().map(|f| f.message.as_str()), expected, "{rules:?} {scheme}");
        assert!(f.len() <= 1);
        for f in &f {
            assert_eq!((f.rule, f.severity, f.service.as_deref()), ("MOAT028", Severity::Medium, None));
            assert_eq!((f.source.file.as_ref(), f.source.line), ("armor/edge.json", 1));
            assert!(f.fix.contains("`moat waf test --set sqli-v33-stable REQUEST`"), "{}", f.fix);
            assert!(f.fix.contains("in `armor/edge.json`"), "{}", f.fix);
        }
    }
}

#[test]
fn waf_only_in_preview_points_at_the_first_waf_rule_and_names_every_load_balancer() {
    let rules = [
        rule(5, "deny(403)", "10.0.0.0/8", ""),
        rule(10, "deny(403)", XSS, PREVIEW),
        rule(20, "deny(403)", SQLI, PREVIEW),
        DEFAULT_ALLOW.to_owned(),
    ];
    // One rule a line, so the finding's line names the rule.
    let rules = format!(r#"{{"name": "edge", "rules": [{}]}}"#, rules.join(",\n"));
    let route = "    security_policy: edge\n    routes:\n      - path: /*\n        service: s\n";
    let p = project(
        &format!(
            "networks:\n  - name: vpc\nload_balancers:\n  - name: a\n    scheme: external\n{route}  - name: b\n    scheme: internal\n    network: vpc\n{route}"
        ),
        &[
            (
                "services/s.json",
                r#"{"name": "s", "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "template": {"serviceAccount": "x@p.iam.gserviceaccount.com"}}"#,
            ),
            ("armor/edge.json", &rules),
        ],
    );
    assert_eq!(found(check_waf_only_in_preview, &p), [(Severity::Medium, 2)]);
    let f = check_waf_only_in_preview(&p);
    assert!(f.iter().all(|f| f.message.starts_with(
        "every preconfigured WAF rule of security policy `edge` on load balancers `a` and `b` is in preview: rules 10 (`xss-v33-stable`) and 20 (`sqli-v33-stable`)"
    )));
    assert!(
        f.iter().all(|f| f.fix.contains("review what rules 10 and 20 logged (`moat waf test --set xss-v33-stable"))
    );
    // A policy no load balancer uses protects nothing either way.
    let p = project("", &[("armor/edge.json", &rules)]);
    assert!(check_waf_only_in_preview(&p).is_empty());
}

#[test]
fn waf_sets_are_read_from_each_call() {
    let cases: &[(&str, &[&str])] = &[
        (SQLI, &["sqli-v33-stable"]),
        (
            "evaluatePreconfiguredExpr( \"xss-stable\" ) || evaluatePreconfiguredWaf('sqli-v33-stable')",
            &["xss-stable", "sqli-v33-stable"],
        ),
        (
            "evaluatePreconfiguredWaf('rce-v33-stable') || evaluatePreconfiguredWaf('rce-v33-stable', {'sensitivity': 2})",
            &["rce-v33-stable"],
        ),
        ("request.path == '/'", &[]),
    ];
    for (text, want) in cases {
        assert_eq!(waf_sets(text), *want, "{text}");
    }
}
