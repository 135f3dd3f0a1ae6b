//! `moat check` end to end: the built binary on examples/shop (clean once its accepted risk is
//! accepted) and examples/insecure (every rule fires), in every format, with exit statuses and
//! snapshots of what people and code scanning read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `moat ARGS` from the workspace root, so that paths in the output are the relative ones
/// a CI job at the repository root sees.
fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat")).args(args).current_dir(workspace()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn all_rules() -> BTreeSet<String> {
    (1..=29).map(|i| format!("MOAT{i:03}")).collect()
}

/// The rules examples/insecure shows: all but the Cloud SQL rules (MOAT017–MOAT022, Terraform
/// input only) and MOAT025 (its policies have rate limits; see the Terraform fixtures).
fn insecure_rules() -> BTreeSet<String> {
    all_rules().into_iter().filter(|r| !("MOAT017"..="MOAT022").contains(&r.as_str()) && r != "MOAT025").collect()
}

#[test]
fn ingress_rollout_pending_is_reported_at_the_annotation() {
    let o = moat(&["check", "tests/fidelity/048-ingress-status-in-force", "--format", "json", "--fail-on", "info"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let v = json(&o);
    let found: Vec<(&str, &str, &str, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "MOAT029")
        .map(|f| {
            (
                f["service"].as_str().unwrap(),
                f["severity"].as_str().unwrap(),
                f["file"].as_str().unwrap(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let file = |s: &str| format!("tests/fidelity/048-ingress-status-in-force/services/{s}.yaml");
    // The ingress-status annotation is line 7 of both exports. api is more exposed than asked
    // (internal asked, all in force): medium; web is less: info.
    assert_eq!(found, [("api", "medium", file("api").as_str(), 7), ("web", "info", file("web").as_str(), 7)]);
    let message =
        v["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "MOAT029").unwrap()["message"].as_str().unwrap();
    assert!(message.contains("desired ingress `internal`") && message.contains("in force `all`"), "{message}");
}

#[test]
fn shop_is_clean_apart_from_its_accepted_risk() {
    let o = moat(&["check", "examples/shop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = moat(&["check", "examples/shop", "--format", "json", "--fail-on", "info"]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["summary"]["failing"], 0);
    let findings = v["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["accepted"] == true && f["reason"].as_str().is_some_and(|r| !r.is_empty())));
    let accepted: Vec<(Option<&str>, Option<&str>)> =
        findings.iter().map(|f| (f["rule"].as_str(), f["service"].as_str())).collect();
    assert_eq!(
        accepted,
        [(Some("MOAT001"), Some("web")), (Some("MOAT024"), None)],
        "only the public web and the missing WAF rules (the example runs without the CRS), accepted: {findings:?}"
    );
}

#[test]
fn insecure_reports_every_rule_in_sarif() {
    let o = moat(&["check", "examples/insecure", "--format", "sarif"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(v["$schema"], "https://json.schemastore.org/sarif-2.1.0.json");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect::<BTreeSet<_>>(), all_rules());
    for r in rules {
        for key in ["shortDescription", "fullDescription", "help"] {
            assert!(r[key]["text"].as_str().is_some_and(|t| !t.is_empty()), "{}: {key}", r["id"]);
        }
        assert!(r["help"]["markdown"].is_string() && r["properties"]["security-severity"].is_string());
        assert!(["error", "warning", "note"].contains(&r["defaultConfiguration"]["level"].as_str().unwrap()));
    }
    let results = run["results"].as_array().unwrap();
    let found: BTreeSet<String> = results.iter().map(|r| r["ruleId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(found, insecure_rules());
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
        let loc = &r["locations"][0]["physicalLocation"];
        let uri = loc["artifactLocation"]["uri"].as_str().unwrap();
        assert!(uri.starts_with("examples/insecure/"), "{uri}");
        assert!(workspace().join(uri).is_file(), "{uri} does not exist");
        assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(r["partialFingerprints"]["moatFinding/v1"].is_string());
    }
}

#[test]
fn insecure_reports_every_rule_in_json_with_locations_and_fixes() {
    let o = moat(&["check", "examples/insecure", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    let findings = v["findings"].as_array().unwrap();
    let found: BTreeSet<String> = findings.iter().map(|f| f["rule"].as_str().unwrap().to_owned()).collect();
    assert_eq!(found, insecure_rules());
    for f in findings {
        for key in ["title", "severity", "message", "file", "fix"] {
            assert!(f[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {f}");
        }
        assert!(f["line"].as_u64().unwrap() >= 1, "{f}");
        assert_eq!(f["accepted"], false);
        // House style: lowercase, no trailing period.
        for key in ["message", "fix"] {
            let text = f[key].as_str().unwrap();
            assert!(!text.starts_with(|c: char| c.is_ascii_uppercase()) && !text.ends_with('.'), "{key}: {text}");
        }
    }
    assert_eq!(v["summary"]["total"].as_u64(), Some(findings.len() as u64));
    assert_eq!(v["summary"]["fail_on"], "low");
}

#[test]
fn no_output_ever_contains_a_secret_value() {
    let value = "insecure-example-not-a-real-password";
    let file = std::fs::read_to_string(workspace().join("examples/insecure/services/payments.yaml")).unwrap();
    assert!(file.contains(value), "the example must hold the value this test looks for");
    for format in ["human", "json", "sarif"] {
        let o = moat(&["check", "examples/insecure", "--format", format]);
        assert!(!stdout(&o).contains(value), "{format} output leaks the value");
    }
}

/// moat.yaml of a minimal project without the automatic Editor grant.
const MOAT_YAML: &str =
    "project:\n  id: p\n  number: \"1234\"\n  region: us-central1\n  automatic_default_sa_grants: false\n";

/// A throwaway project directory with one service, unique per test.
fn temp_project(name: &str, service: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-check-{}-{name}", std::process::id()));
    std::fs::create_dir_all(dir.join("services")).unwrap();
    std::fs::write(dir.join("moat.yaml"), MOAT_YAML).unwrap();
    std::fs::write(dir.join("services/a.json"), service).unwrap();
    dir
}

/// A project whose only finding is medium (a service on the default compute service account).
fn medium_only_project() -> PathBuf {
    temp_project(
        "medium",
        r#"{"name": "a", "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY", "template": {"containers": [{"image": "i"}]}}"#,
    )
}

#[test]
fn fail_on_sets_the_threshold() {
    let dir = medium_only_project();
    let d = dir.to_str().unwrap();
    let cases = [("info", 1), ("low", 1), ("medium", 1), ("high", 0)];
    for (threshold, code) in cases {
        let o = moat(&["check", d, "--fail-on", threshold]);
        assert_eq!(o.status.code(), Some(code), "--fail-on {threshold}: {}", stdout(&o));
    }
    let o = moat(&["check", d]);
    assert_eq!(o.status.code(), Some(1), "the default threshold is low");
    assert!(stdout(&o).ends_with("1 finding (1 medium), 0 accepted: 1 fail at --fail-on low\n"), "{}", stdout(&o));
    let o = moat(&["check", "examples/insecure", "--fail-on", "high"]);
    assert_eq!(o.status.code(), Some(1), "insecure has high findings");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_clean_project_says_so() {
    let dir = temp_project(
        "clean",
        r#"{"name": "a", "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY", "template": {"serviceAccount": "a@p.iam.gserviceaccount.com"}}"#,
    );
    let o = moat(&["check", dir.to_str().unwrap(), "--fail-on", "info"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "no findings\n"));
    let o = moat(&["check", dir.to_str().unwrap(), "--format", "sarif"]);
    assert_eq!(json(&o)["runs"][0]["results"].as_array().map(Vec::len), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn could_not_run_is_exit_2() {
    let o = moat(&["check", "examples/does-not-exist"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("examples/does-not-exist"));
    let o = moat(&["check", "examples/shop", "--format", "xml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn snapshot_insecure_human() {
    let o = moat(&["check", "examples/insecure"]);
    insta::assert_snapshot!("insecure_human", stdout(&o));
}

#[test]
fn snapshot_shop_human() {
    let o = moat(&["check", "examples/shop"]);
    insta::assert_snapshot!("shop_human", stdout(&o));
}

#[test]
fn snapshot_insecure_sarif() {
    let o = moat(&["check", "examples/insecure", "--format", "sarif"]);
    let mut v = json(&o);
    // The tool version changes with every release; everything else is deterministic.
    v["runs"][0]["tool"]["driver"]["version"] = Value::from("[version]");
    insta::assert_snapshot!("insecure_sarif", serde_json::to_string_pretty(&v).unwrap());
}

/// The shop seeds `api-key` from a file; neither `check` nor `explain` reads it, so its content
/// appears in none of their outputs (and neither does anything that looks like a payload).
#[test]
fn analysis_never_reads_or_prints_secret_seeds() {
    let seed = std::fs::read_to_string(workspace().join("examples/shop/seeds/api-key.txt")).unwrap();
    let seed = seed.trim();
    assert!(seed.len() > 16, "the seed is a recognisable value");
    let runs: [&[&str]; 5] = [
        &["check", "examples/shop"],
        &["check", "examples/shop", "--format", "json"],
        &["check", "examples/shop", "--format", "sarif"],
        &["explain", "examples/shop", "--format", "json"],
        &["explain", "examples/shop", "--service", "api", "--from", "service:web"],
    ];
    for args in runs {
        let o = moat(args);
        let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        assert!(!all.is_empty(), "moat {args:?} printed something");
        assert!(!all.contains(seed), "moat {args:?} printed the seed value");
    }
}
