//! The fidelity corpus (`tests/fidelity/*`, format in its README): every case's queries asked of
//! the `moat` binary, compared with what spec/cloudrun.md says. All mismatches are reported in
//! one failure, and every case directory must be run: a case that cannot be read fails too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

#[path = "../../../tests/fidelity/case.rs"]
mod case;

use case::{Case, CaseQuery, Outcome, case_dirs, corpus_dir, describe};

/// Asks the binary one question; `Err` when it does not answer with a decision.
fn ask(dir: &Path, q: &CaseQuery) -> Result<Outcome, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.arg("explain").arg(dir).args(["--service", &q.service, "--from", &q.from, "--format", "json"]);
    for (flag, v) in q.flags() {
        cmd.arg(flag);
        if !v.is_empty() {
            cmd.arg(v);
        }
    }
    cmd.env("NO_COLOR", "1");
    let out = cmd.output().map_err(|e| format!("cannot run moat: {e}"))?;
    if !out.status.success() {
        return Err(format!("moat exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("moat printed no JSON answer: {e}"))?;
    let str_of = |key: &str| v.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
    Ok(Outcome {
        effect: str_of("effect").unwrap_or_default(),
        status: v.get("status").and_then(serde_json::Value::as_u64).and_then(|s| u16::try_from(s).ok()),
        layer: str_of("layer"),
        codes: v
            .get("reasons")
            .and_then(serde_json::Value::as_array)
            .map(|rs| rs.iter().filter_map(|r| r.get("code")?.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    })
}

#[test]
fn fidelity_corpus_matches_the_spec() {
    let dirs = case_dirs(env!("CARGO_MANIFEST_DIR"));
    assert!(!dirs.is_empty(), "no cases under {}", corpus_dir(env!("CARGO_MANIFEST_DIR")).display());
    let mut failures = Vec::new();
    let (mut cases_run, mut queries_run) = (0, 0);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = match std::fs::read_to_string(dir.join("case.yaml")) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: cannot read case.yaml: {e}"));
                continue;
            }
        };
        let case: Case = match serde_saphyr::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: case.yaml does not parse: {e}"));
                continue;
            }
        };
        if case.queries.is_empty() {
            failures.push(format!("{name}: case.yaml has no queries"));
            continue;
        }
        cases_run += 1;
        for (i, q) in case.queries.iter().enumerate() {
            queries_run += 1;
            match ask(dir, q) {
                Ok(got) if got == q.expect => {}
                Ok(got) => failures.push(format!(
                    "{name} query {} ({})\n    behaviour: {}\n    expected:  {}\n    got:       {got}",
                    i + 1,
                    describe(q),
                    case.behaviour,
                    q.expect
                )),
                Err(e) => failures.push(format!("{name} query {} ({}): {e}", i + 1, describe(q))),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {queries_run} fidelity queries failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(cases_run, dirs.len(), "every case directory must run");
}
