//! Google's published Cloud Armor CEL tests (`cel-expr/cloud-armor-rules`, `test/*.yaml`), run
//! through both of our engines: the compiled evaluator policies use, and the `cel` crate's
//! interpreter behind the same parser and checker.
//!
//! The corpus lives outside the repository: `../shared/corpora/cloud-armor-cel` from the
//! workspace root, or the directory in `MOAT_CEL_CORPUS`, or `cloud-armor-cel` under
//! `MOAT_CORPORA`. When it is absent the test says so and passes.
//!
//! Each suite is `{name, expr, tests: [{name, expect, error?, when: {request, origin, token}}]}`,
//! evaluated as Google's `rulescli -test` does: every attribute the case leaves out has its zero
//! value (`SafeVariables` in `pkg/cloudarmor/variables.go`), and the service-side limits (five
//! subexpressions and the length limits) are not applied, since the published environment does
//! not apply them either.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use moat_policy::armor::expr::{Activation, CelEngine, Engine, ExprErrorKind, Limits};
use moat_policy::armor::{Headers, RecaptchaTokens};
use serde::Deserialize;

/// Cases whose published expectation we knowingly do not meet, each with its reason. Empty: every
/// published case passes.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Suite {
    name: String,
    expr: Option<String>,
    tests: Vec<Case>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Case {
    name: String,
    expect: bool,
    error: Option<String>,
    when: When,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct When {
    request: Request,
    origin: Origin,
    token: Token,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    method: String,
    headers: BTreeMap<String, String>,
    path: String,
    query: String,
    scheme: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Origin {
    ip: String,
    region_code: String,
    asn: i64,
    user_ip: String,
    tls_ja3_fingerprint: String,
    tls_ja4_fingerprint: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Token {
    recaptcha_exemption: Valid,
    recaptcha_action: Action,
    recaptcha_session: Session,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Valid {
    valid: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Action {
    score: f64,
    captcha_status: String,
    action: String,
    valid: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Session {
    score: f64,
    valid: bool,
}

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MOAT_CEL_CORPUS") {
        return PathBuf::from(dir);
    }
    if let Some(root) = std::env::var_os("MOAT_CORPORA") {
        return Path::new(&root).join("cloud-armor-cel");
    }
    // crates/policy → the workspace root → its sibling `shared/`.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/cloud-armor-cel")
}

/// The suite text as its author meant it. Inside a YAML block scalar a `#` line is content, not a
/// comment, so `complex-tests.yaml` folds `# request.body.contains('bad_data') &&` (three
/// commented-out v2 conditions) into its expression, which then does not parse, in cel-go
/// either. Dropping whole-line `#` comments before parsing restores the intended expression;
/// outside block scalars it changes nothing. The verbatim expression is still compiled, and must
/// be rejected with a syntax error at the `#`.
fn as_intended(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n")
}

struct Tally {
    passed: usize,
    failed: Vec<String>,
}

fn run_case(engine: &CelEngine, label: &str, suite: &Suite, case: &Case, tally: &mut Tally) {
    let id = format!("{}/{}", suite.name, case.name);
    let expr = suite.expr.as_deref().unwrap_or_default();
    let compiled = match engine.compile(expr, &Limits::LANGUAGE_ONLY) {
        Ok(c) => c,
        Err(e) => {
            tally.failed.push(format!("{label} {id}: does not compile: {} ({:?})", e.message, e.span));
            return;
        }
    };
    let w = &case.when;
    let headers: Headers = w.request.headers.iter().collect();
    let tokens = RecaptchaTokens {
        exemption_valid: w.token.recaptcha_exemption.valid,
        action_valid: w.token.recaptcha_action.valid,
        action_score: w.token.recaptcha_action.score,
        action_captcha_status: w.token.recaptcha_action.captcha_status.clone(),
        action_name: w.token.recaptcha_action.action.clone(),
        session_valid: w.token.recaptcha_session.valid,
        session_score: w.token.recaptcha_session.score,
    };
    let activation = Activation {
        method: &w.request.method,
        path: &w.request.path,
        query: &w.request.query,
        scheme: &w.request.scheme,
        headers: &headers,
        ip: &w.origin.ip,
        user_ip: &w.origin.user_ip,
        ip_addr: None,
        user_ip_addr: None,
        region_code: Some(&w.origin.region_code),
        asn: Some(w.origin.asn),
        tls_ja3_fingerprint: Some(&w.origin.tls_ja3_fingerprint),
        tls_ja4_fingerprint: Some(&w.origin.tls_ja4_fingerprint),
        tokens: &tokens,
        waf: None,
        waf_exclusions: &[],
    };
    let ok = match (compiled.eval(&activation), &case.error) {
        (Ok(got), None) => got == case.expect,
        (Err(e), Some(want)) => e.message.contains(want.as_str()),
        (got, want) => {
            tally.failed.push(format!("{label} {id}: got {got:?}, wanted error {want:?} / result {}", case.expect));
            return;
        }
    };
    if ok || KNOWN_DIFFERENCES.iter().any(|(name, _)| *name == id) {
        tally.passed += 1;
    } else {
        tally.failed.push(format!("{label} {id}: expected {}", case.expect));
    }
}

#[test]
fn google_cloud_armor_cel_tests() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(dir.join("test")) else {
        println!(
            "the Cloud Armor CEL corpus is absent (looked in {}); set MOAT_CEL_CORPUS to the cel-expr/cloud-armor-rules checkout, or MOAT_CORPORA to the corpora directory, to run it",
            dir.display()
        );
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let engines = [
        ("compiled", CelEngine::new().unwrap_or_else(|e| panic!("{e}"))),
        ("interpreted", CelEngine::interpreted().unwrap_or_else(|e| panic!("{e}"))),
    ];
    let mut tallies: Vec<Tally> = engines.iter().map(|_| Tally { passed: 0, failed: Vec::new() }).collect();
    let mut cases = 0usize;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let suite: Suite =
            serde_saphyr::from_str(&as_intended(&text)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // `variables.yaml` is a variables file for `rulescli`, not a suite.
        if suite.expr.is_none() {
            continue;
        }
        let verbatim: Suite = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if verbatim.expr != suite.expr
            && let Some(expr) = verbatim.expr.as_deref()
        {
            for (label, engine) in &engines {
                match engine.compile(expr, &Limits::LANGUAGE_ONLY) {
                    Err(e) if e.kind == ExprErrorKind::Syntax && expr.chars().nth(e.span.start) == Some('#') => {}
                    other => {
                        panic!("{label} {}: the verbatim expression should fail at its `#`: {other:?}", suite.name)
                    }
                }
            }
            println!(
                "{}: the verbatim expression is rejected at its `#` (as in cel-go); ran the intended one",
                suite.name
            );
        }
        cases += suite.tests.len();
        for ((label, engine), tally) in engines.iter().zip(tallies.iter_mut()) {
            for case in &suite.tests {
                run_case(engine, label, &suite, case, tally);
            }
        }
    }
    for ((label, _), tally) in engines.iter().zip(&tallies) {
        println!(
            "cloud-armor-cel conformance ({label}): {} passed, {} failed, of {cases} cases",
            tally.passed,
            tally.failed.len()
        );
        for f in &tally.failed {
            println!("  FAIL {f}");
        }
    }
    assert!(cases > 0, "no test cases found under {}", dir.display());
    assert!(tallies.iter().all(|t| t.failed.is_empty()), "conformance failures (see above)");
}
