//! Security policies as part of a project load: `load_balancers[].security_policy: NAME` names
//! `armor/NAME.json`; every armor file is parsed and compiled with the project, and its errors
//! are the project's load errors, with file:line:column.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use moat_policy::{LoadErrors, Project, SourceFile};

const MOAT: &str = "project:\n  id: p\n  number: \"1\"\n  region: r\nload_balancers:\n  - name: edge\n    scheme: external\n    security_policy: edge-policy\n    routes:\n      - service: web\n";

const WEB: &str = r#"{"name":"projects/p/locations/r/services/web","uri":"https://web-abc-ew.a.run.app","ingress":"INGRESS_TRAFFIC_ALL","template":{"containers":[{"image":"x"}]}}"#;

const GOOD: &str = r#"{
  "name": "edge-policy",
  "rules": [
    { "action": "deny(403)", "priority": 1000,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["192.0.2.0/24"] } } },
    { "action": "allow", "priority": 2147483647,
      "match": { "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["*"] } } }
  ]
}"#;

fn load(moat: &str, armor: &[(&str, &str)]) -> Result<Project, LoadErrors> {
    let mut files = vec![
        SourceFile { path: "moat.yaml".into(), text: moat.into() },
        SourceFile { path: "services/web.json".into(), text: WEB.into() },
    ];
    files.extend(armor.iter().map(|(p, t)| SourceFile { path: (*p).into(), text: (*t).into() }));
    moat_policy::load(&files)
}

fn errors(moat: &str, armor: &[(&str, &str)]) -> String {
    match load(moat, armor) {
        Ok(_) => "loaded".to_owned(),
        Err(e) => e
            .errors
            .iter()
            .map(|e| format!("{e}\n  help: {}", e.help.as_deref().unwrap_or("-")))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn a_referenced_policy_is_parsed_and_attached() {
    let p = load(MOAT, &[("armor/edge-policy.json", GOOD)]).unwrap_or_else(|e| panic!("{e:?}"));
    let lb = p.load_balancer("edge").unwrap_or_else(|| panic!("lb"));
    let policy = p.security_policy(lb).unwrap_or_else(|| panic!("policy attached"));
    assert_eq!(policy.name, "edge-policy");
    assert_eq!(policy.rules().len(), 2);
    assert_eq!(&*policy.file, "armor/edge-policy.json");
}

#[test]
fn a_missing_policy_file_names_the_path() {
    let got = errors(MOAT, &[]);
    insta::assert_snapshot!(got, @r"
    moat.yaml:6:5: load balancer `edge` uses security policy `edge-policy`, but there is no `armor/edge-policy.json`
      help: export it with `gcloud compute security-policies describe NAME --format json > armor/NAME.json`
    ");
}

#[test]
fn policy_errors_are_load_errors_with_file_line_column() {
    let bad = GOOD.replace("deny(403)", "deny(418)").replace("192.0.2.0/24", "192.0.2.0/33");
    insta::assert_snapshot!(errors(MOAT, &[("armor/edge-policy.json", &bad)]));
}

#[test]
fn a_json_syntax_error_is_a_load_error() {
    let bad = GOOD.replace("\"priority\": 1000,", "\"priority\": 1000");
    let got = errors(MOAT, &[("armor/edge-policy.json", &bad)]);
    assert!(got.starts_with("armor/edge-policy.json:5:7: not a security policy export"), "{got}");
    assert!(!got.contains("there is no `armor/"), "a broken file is not also reported missing: {got}");
}

#[test]
fn preconfigured_waf_rules_load_and_bad_ones_do_not() {
    let waf = GOOD.replace(
        r#"{ "versionedExpr": "SRC_IPS_V1", "config": { "srcIpRanges": ["192.0.2.0/24"] } }"#,
        r#"{ "expr": { "expression": "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 2})" } }"#,
    );
    let p = load(MOAT, &[("armor/edge-policy.json", &waf)]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(p.armor_policies.contains_key("edge-policy"));
    let bad = waf.replace("'sensitivity': 2", "'sensitivity': 7");
    let got = errors(MOAT, &[("armor/edge-policy.json", &bad)]);
    assert!(got.starts_with("armor/edge-policy.json:"), "{got}");
    assert!(got.contains("out of range"), "{got}");
}

#[test]
fn an_unreferenced_policy_is_loaded_and_checked_too() {
    // Loaded: a policy can be attached later (or by `explain`) without a second format.
    let p =
        load(MOAT, &[("armor/edge-policy.json", GOOD), ("armor/spare.json", GOOD)]).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(p.armor_policies.contains_key("spare"));
    // Checked: a broken one fails the load even though nothing uses it yet.
    let got = errors(MOAT, &[("armor/edge-policy.json", GOOD), ("armor/spare.json", "{}")]);
    assert!(got.starts_with("armor/spare.json"), "{got}");
}
