//! `moat waf test` as a user runs it: the signatures printed for attack and benign requests,
//! `--json`, opt-outs, raw request files, and the exit statuses. Tests that evaluate requests
//! need the OWASP CRS files (Debian's `modsecurity-crs`, or `MOAT_CRS_DIR`) and pass with a
//! message when they are absent; the engine itself is tested in crates/waf.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Output};

const ATTACK: &str = "/?id=1' OR '1'='1";
const ID_942100: &str = "owasp-crs-v030301-id942100-sqli";

fn moat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat")).arg("waf").arg("test").args(args).env("NO_COLOR", "1").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Whether the CRS files are here; says why a test is skipped when they are not.
fn crs_available(test: &str) -> bool {
    let here = std::env::var_os("MOAT_CRS_DIR").is_some() || PathBuf::from(moat_waf::DEFAULT_CRS_DIR).is_dir();
    if !here {
        eprintln!(
            "skipping {test}: no OWASP CRS at {} and MOAT_CRS_DIR is not set (apt-get install modsecurity-crs)",
            moat_waf::DEFAULT_CRS_DIR
        );
    }
    here
}

/// Runs and expects exit status 0.
fn ran(args: &[&str]) -> String {
    let o = moat(args);
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    stdout(&o)
}

#[test]
fn sqli_attack_matches_942100_at_sensitivity_1() {
    if !crs_available("sqli_attack_matches_942100_at_sensitivity_1") {
        return;
    }
    let out = ran(&["--set", "sqli-v33-stable", "--sensitivity", "1", ATTACK]);
    let first = out.lines().next().unwrap();
    assert_eq!(first, format!("{ATTACK} → matched by sqli-v33-stable: {ID_942100}"));
    assert!(out.contains(&format!("{ID_942100}  paranoia level 1")), "{out}");
    assert!(out.contains("REQUEST-942-APPLICATION-ATTACK-SQLI.conf:"), "{out}");
}

#[test]
fn benign_request_matches_nothing() {
    if !crs_available("benign_request_matches_nothing") {
        return;
    }
    let out = ran(&["--set", "all", "/products?page=2"]);
    assert_eq!(out, "/products?page=2 → no signature matched\n");
}

#[test]
fn json_lists_the_ids_per_set() {
    if !crs_available("json_lists_the_ids_per_set") {
        return;
    }
    let out = ran(&["--set", "sqli-v33-stable", "--set", "xss-v33-stable", "--json", ATTACK, "/products?page=2"]);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["request"], ATTACK);
    assert_eq!(lines[0]["matched"], true);
    assert_eq!(lines[0]["sets"][0]["set"], "sqli-v33-stable");
    assert!(lines[0]["sets"][0]["signatures"].as_array().unwrap().contains(&ID_942100.into()), "{out}");
    assert_eq!(lines[0]["sets"][1]["set"], "xss-v33-stable");
    assert_eq!(lines[1]["matched"], false);
    assert_eq!(lines[1]["sets"][0]["signatures"], serde_json::json!([]));
}

#[test]
fn opt_out_removes_the_signature() {
    if !crs_available("opt_out_removes_the_signature") {
        return;
    }
    for id in [ID_942100, "942100"] {
        let out = ran(&["--set", "sqli-v33-stable", "--opt-out", id, ATTACK]);
        assert!(!out.contains(ID_942100), "--opt-out {id}: {out}");
    }
}

#[test]
fn sensitivity_0_enables_only_opt_ins() {
    if !crs_available("sensitivity_0_enables_only_opt_ins") {
        return;
    }
    let out = ran(&["--set", "sqli-v33-stable", "--sensitivity", "0", ATTACK]);
    assert!(out.contains("no signature matched"), "{out}");
    let out = ran(&["--set", "sqli-v33-stable", "--sensitivity", "0", "--opt-in", ID_942100, ATTACK]);
    assert!(out.contains(&format!("matched by sqli-v33-stable: {ID_942100}")), "{out}");
}

#[test]
fn raw_request_file_with_a_post_body() {
    if !crs_available("raw_request_file_with_a_post_body") {
        return;
    }
    let path = std::env::temp_dir().join(format!("moat-waf-cli-{}.http", std::process::id()));
    std::fs::write(
        &path,
        "POST /login HTTP/1.1\nHost: shop.example\nContent-Type: application/x-www-form-urlencoded\n\n\
         user=admin&password=x%27%20OR%20%271%27%3D%271\n---\nGET /products?page=2 HTTP/1.1\nHost: shop.example\n",
    )
    .unwrap();
    let out = ran(&["--set", "sqli-v33-stable", "--sensitivity", "1", "--file", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    let file = path.display();
    assert_eq!(
        lines,
        vec![
            format!("{file}:1: POST /login → matched by sqli-v33-stable: {ID_942100}"),
            format!("{file}:7: GET /products?page=2 → no signature matched"),
        ],
        "{out}"
    );
}

#[test]
fn body_beyond_the_limit_is_cut_with_a_note() {
    if !crs_available("body_beyond_the_limit_is_cut_with_a_note") {
        return;
    }
    let body = format!("{}&q=<script>alert(1)</script>", "a=b".repeat(10));
    let whole = ran(&["--set", "xss-v33-stable", "-d", &body, "/comment"]);
    assert!(whole.starts_with("POST /comment → matched by xss-v33-stable"), "{whole}");
    let cut = ran(&["--set", "xss-v33-stable", "--body-limit", "30", "-d", &body, "/comment"]);
    assert!(cut.starts_with("POST /comment → no signature matched"), "{cut}");
    assert!(cut.contains(&format!("note: body cut from {} to 30 bytes", body.len())), "{cut}");
}

#[test]
fn unknown_set_is_a_usage_error() {
    let o = moat(&["--set", "sqli-v42-stable", ATTACK]);
    assert_eq!(o.status.code(), Some(2));
    insta::assert_snapshot!(stderr(&o));
    let o = moat(&["--set", "sqli-v33-stable", "--sensitivity", "5", ATTACK]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = moat(&["--set", "sqli-v33-stable", "--opt-out", "sqli-942100", ATTACK]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("`sqli-942100` is not a signature id"), "{}", stderr(&o));
}

#[test]
fn missing_crs_exits_1_with_the_install_hint() {
    let o = moat(&["--set", "sqli-v33-stable", "--crs-dir", "/nonexistent", ATTACK]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // miette wraps at 80 columns, even inside words: compare without whitespace and borders.
    let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '│').collect::<String>();
    let err = squeeze(&stderr(&o));
    assert!(err.contains(&squeeze("no OWASP CRS rule files at /nonexistent")), "{err}");
    assert!(err.contains(&squeeze("(`apt-get install modsecurity-crs`)")), "{err}");
    assert!(stdout(&o).is_empty());
}

/// `moat serve` with a policy that uses preconfigured WAF rules and no CRS at `--crs-dir`:
/// refuses to start, says which policy needs what and how to install it (fail closed).
#[test]
fn serve_refuses_to_start_without_the_crs_a_policy_needs() {
    let dir = std::env::temp_dir().join(format!("moat-waf-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("armor")).unwrap();
    std::fs::create_dir_all(dir.join("services")).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edge_matrix");
    let yaml = std::fs::read_to_string(fixture.join("moat.yaml")).unwrap();
    std::fs::write(dir.join("moat.yaml"), format!("{yaml}\nrun:\n  web:\n    url: http://127.0.0.1:9\n")).unwrap();
    std::fs::copy(fixture.join("services/web.yaml"), dir.join("services/web.yaml")).unwrap();
    for name in ["closed", "partner"] {
        std::fs::copy(fixture.join(format!("armor/{name}.json")), dir.join(format!("armor/{name}.json"))).unwrap();
    }
    let waf = r#"{"name": "open", "rules": [
      {"action": "deny(403)", "priority": 1000,
       "match": {"expr": {"expression": "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})"}}},
      {"action": "allow", "priority": 2147483647,
       "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}]}"#;
    std::fs::write(dir.join("armor/open.json"), waf).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", dir.to_str().unwrap(), "--crs-dir", "/nonexistent-crs"])
        .env_remove("MOAT_MASTER_KEY")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let flat: String = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!out.status.success(), "{stderr}");
    assert!(flat.contains("`open`") && flat.contains("preconfigured WAF rules"), "{stderr}");
    assert!(flat.contains("modsecurity-crs"), "says how to install it: {stderr}");
}
