//! The CRS v3.3.4 regression tests (py-ftw YAML) run in-process through the engine, for the
//! rule files behind Cloud Armor's sets, every signature enabled (paranoia 4). A test passes when
//! in every stage every id of `log_contains` fired and no id of `no_log_contains` did.
//!
//! The side-by-side comparison with nginx + libmodsecurity over HTTP is `bench/waf/score.sh`;
//! this test pins moat's own numbers so that an engine change that loses detection fails here.
//! Needs the corpus (`../shared/corpora/crs-v3.3.4`, or `MOAT_CRS_TESTS`) and the CRS rules
//! (Debian `modsecurity-crs`, or `MOAT_CRS_DIR`); says so plainly and passes when either is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use moat_waf::{Crs, FAMILIES, WafRequest};
use serde_json::Value;

/// Passing tests per family that must not be lost (measured; raise them as the engine improves).
const FLOORS: &[(&str, usize)] = &[
    ("911", 8),
    ("913", 9),
    ("921", 67),
    ("930", 11),
    ("931", 23),
    ("932", 163),
    ("933", 163),
    ("934", 8),
    ("941", 105),
    ("942", 520),
    ("943", 6),
    ("944", 1054),
];

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("MOAT_CRS_TESTS").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/crs-v3.3.4/tests/regression/tests")
    });
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "CRS regression corpus not found at {}; set MOAT_CRS_TESTS=<coreruleset v3.3.4>/tests/regression/tests to run it",
            dir.display()
        );
        None
    }
}

fn crs() -> Result<Option<Crs>, String> {
    let dir = std::env::var_os("MOAT_CRS_DIR").map_or_else(|| PathBuf::from(moat_waf::DEFAULT_CRS_DIR), PathBuf::from);
    if !dir.is_dir() {
        eprintln!(
            "CRS rules not found at {}; install Debian's modsecurity-crs or set MOAT_CRS_DIR to run this test",
            dir.display()
        );
        return Ok(None);
    }
    // The rules are there but do not load: that is a failure, not a skip.
    Crs::load(&dir).map(Some).map_err(|e| format!("the CRS at {} does not load: {e}", dir.display()))
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Array(xs)) => xs.iter().map(|x| text(Some(x))).collect::<Vec<_>>().join("\r\n"),
        _ => String::new(),
    }
}

/// `id "942100"` (may be a regex such as `id "94210[0-9]"`) → a regex over ids.
fn id_patterns(v: Option<&Value>) -> Vec<regex::Regex> {
    let t = text(v);
    t.split("id \"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .filter_map(|p| regex::Regex::new(&format!("^(?:{p})$")).ok())
        .collect()
}

/// A raw HTTP request (`raw_request` / `encoded_request`) → the WAF's view.
fn parse_raw(raw: &[u8]) -> Option<WafRequest> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)))?;
    let head = String::from_utf8_lossy(raw.get(..head_end.0)?);
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut first = lines.next()?.splitn(3, ' ');
    let method = first.next()?.to_owned();
    let uri = first.next()?.to_owned();
    let protocol = first.next().unwrap_or("HTTP/0.9").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().as_bytes().to_vec()))
        .collect();
    Some(WafRequest { method, uri, protocol, headers, body: raw.get(head_end.1..)?.to_vec(), json: false })
}

fn stage_request(input: &Value) -> Option<WafRequest> {
    if let Some(raw) = input.get("raw_request") {
        return parse_raw(text(Some(raw)).as_bytes());
    }
    if let Some(enc) = input.get("encoded_request") {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text(Some(enc)).trim()).ok()?;
        return parse_raw(&bytes);
    }
    let mut headers: Vec<(String, Vec<u8>)> = match input.get("headers") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(Some(v)).into_bytes())).collect(),
        _ => Vec::new(),
    };
    let body = text(input.get("data")).into_bytes();
    if !body.is_empty() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        // What py-ftw sends for form data without an explicit type.
        headers.push(("Content-Type".into(), b"application/x-www-form-urlencoded".to_vec()));
    }
    Some(WafRequest {
        method: input.get("method").map_or_else(|| "GET".to_owned(), |m| text(Some(m))),
        uri: input.get("uri").map_or_else(|| "/".to_owned(), |u| text(Some(u))),
        protocol: input.get("version").map_or_else(|| "HTTP/1.1".to_owned(), |v| text(Some(v))),
        headers,
        body,
        json: false,
    })
}

#[test]
fn crs_regression_per_family() -> Result<(), String> {
    let crs = crs()?;
    let (Some(dir), Some(crs)) = (corpus(), crs) else { return Ok(()) };
    let mut results: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut shortcut_differs: Vec<String> = Vec::new();
    let all = |_: u32, _: u8| true;
    let none = |_: u32, _: moat_waf::rule::Var, _: &str| false;
    let mut entries: Vec<_> =
        std::fs::read_dir(&dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for family_dir in entries {
        let name = family_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let Some(number) = name.strip_prefix("REQUEST-").and_then(|n| n.get(..3)) else { continue };
        if !FAMILIES.iter().any(|(_, prefix)| prefix.get(8..11) == Some(number)) {
            continue;
        }
        let mut files: Vec<_> =
            std::fs::read_dir(&family_dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
            let Ok(yaml) = std::fs::read_to_string(file) else { continue };
            let doc: Value = match serde_saphyr::from_str(&yaml) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{}: unreadable: {e}", file.display()));
                    continue;
                }
            };
            for test in doc.get("tests").and_then(Value::as_array).into_iter().flatten() {
                let title = text(test.get("test_title"));
                let entry = results.entry(number.to_owned()).or_default();
                let mut pass = true;
                let mut skipped = false;
                for stage in test.get("stages").and_then(Value::as_array).into_iter().flatten() {
                    let stage = stage.get("stage").unwrap_or(stage);
                    let (Some(input), Some(output)) = (stage.get("input"), stage.get("output")) else { continue };
                    let Some(request) = stage_request(input) else {
                        skipped = true;
                        continue;
                    };
                    let mut inspection = crs.inspect(&request);
                    // The group shortcut must not change a result: every stage is also run with
                    // every rule visiting every value.
                    let mut exhaustive = crs.inspect_exhaustive(&request);
                    let mut fired: Vec<String> = Vec::new();
                    for (family, _) in FAMILIES {
                        let ids = inspection.evaluate(family, &all, &none);
                        let every = exhaustive.evaluate(family, &all, &none);
                        if ids != every {
                            shortcut_differs.push(format!("{title} ({family}): {ids:?} vs exhaustive {every:?}"));
                        }
                        fired.extend(ids.into_iter().map(|id| id.to_string()));
                    }
                    let expected = id_patterns(output.get("log_contains"));
                    let forbidden = id_patterns(output.get("no_log_contains"));
                    let missing: Vec<_> = expected
                        .iter()
                        .filter(|p| !fired.iter().any(|id| p.is_match(id)))
                        .map(|p| p.as_str().to_owned())
                        .collect();
                    let unwanted: Vec<_> = forbidden
                        .iter()
                        .filter(|p| fired.iter().any(|id| p.is_match(id)))
                        .map(|p| p.as_str().to_owned())
                        .collect();
                    if !missing.is_empty() || !unwanted.is_empty() {
                        pass = false;
                        failures.push(format!("{title}: missing {missing:?}, unwanted {unwanted:?}, fired {fired:?}"));
                    }
                }
                if skipped && pass {
                    entry.2 += 1;
                } else if pass {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
    }
    let mut lost = Vec::new();
    let (mut p, mut f, mut s) = (0, 0, 0);
    for (family, (pass, fail, skip)) in &results {
        eprintln!("CRS {family}: {pass} pass, {fail} fail, {skip} skipped");
        p += pass;
        f += fail;
        s += skip;
        let floor = FLOORS.iter().find(|(n, _)| n == family).map_or(0, |(_, n)| *n);
        if *pass < floor {
            lost.push(format!("{family}: {pass} < {floor}"));
        }
    }
    eprintln!("CRS total: {p} pass, {f} fail, {s} skipped");
    if std::env::var_os("MOAT_CRS_VERBOSE").is_some() {
        for line in &failures {
            eprintln!("  {line}");
        }
    }
    if !shortcut_differs.is_empty() {
        let n = shortcut_differs.len();
        shortcut_differs.truncate(20);
        return Err(format!("the group shortcut changed {n} results, first:\n{}", shortcut_differs.join("\n")));
    }
    if lost.is_empty() { Ok(()) } else { Err(format!("families below their floor: {lost:?}\n{}", failures.join("\n"))) }
}
