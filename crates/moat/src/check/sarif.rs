//! Findings as SARIF 2.1.0, in the subset GitHub code scanning reads: every rule with its help,
//! every finding with the file and line of the offending field (relative to the repository root
//! through `%SRCROOT%`), a stable fingerprint, and accepted findings as external suppressions.

use moat_policy::check::{Finding, RULES, Severity};
use moat_policy::model::Acceptance;
use moat_policy::source::SourceRef;
use serde_json::{Map, Value, json};

use super::Report;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// SARIF `level`: what blocks a merge is an error, what deserves a look a warning.
fn level(s: Severity) -> &'static str {
    match s {
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's `security-severity` (0.0–10.0): high 7–8.9, medium 4–6.9, low 0.1–3.9.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::High => "8.0",
        Severity::Medium => "5.0",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

fn rules() -> Vec<Value> {
    RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": { "text": r.title },
                "fullDescription": { "text": r.explanation },
                "help": {
                    "text": format!("{}\n\nFix: {}", r.explanation, r.fix),
                    "markdown": format!("**{}**\n\n{}\n\n**Fix:** {}", r.title, r.explanation, r.fix),
                },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": {
                    "tags": ["security", "cloud-run"],
                    "precision": "high",
                    "security-severity": security_severity(r.severity),
                },
            })
        })
        .collect()
}

/// An artifact location: relative paths resolve against `%SRCROOT%` (the repository root in
/// code scanning); an absolute project path becomes a `file://` URI.
fn artifact(r: &Report<'_>, file: &str) -> Value {
    let path = r.path(file);
    if path.starts_with('/') {
        json!({ "uri": format!("file://{path}") })
    } else {
        json!({ "uri": path, "uriBaseId": "%SRCROOT%" })
    }
}

fn location(r: &Report<'_>, at: &SourceRef) -> Value {
    // GitHub needs a start line; an item without a line of its own points at the file's first.
    let mut region = Map::new();
    region.insert("startLine".into(), json!(at.line.max(1)));
    if at.line > 0 && at.column > 0 {
        region.insert("startColumn".into(), json!(at.column));
    }
    let mut loc = json!({ "physicalLocation": { "artifactLocation": artifact(r, &at.file), "region": region } });
    // Terraform input: the resource address is what the user can find in their .tf files.
    if let (Some(address), Some(obj)) = (&at.address, loc.as_object_mut()) {
        obj.insert("logicalLocations".into(), json!([{ "fullyQualifiedName": address.as_ref(), "kind": "resource" }]));
    }
    loc
}

/// FNV-1a: a stable hash with no dependency, for fingerprints that survive reruns.
fn fnv1a(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn suppression(r: &Report<'_>, a: &Acceptance) -> Value {
    json!({ "kind": "external", "justification": a.reason, "location": location(r, &a.source) })
}

fn result(r: &Report<'_>, f: &Finding) -> Value {
    let index = RULES.iter().position(|x| x.id == f.rule).unwrap_or_default();
    // Line numbers are left out so that an edit above the field keeps the alert.
    let place = f.source.address.as_deref().unwrap_or(&f.source.file);
    let key = format!("{}|{}|{}|{}", f.rule, f.service.as_deref().unwrap_or(""), place, f.message);
    let mut v = Map::new();
    v.insert("ruleId".into(), json!(f.rule));
    v.insert("ruleIndex".into(), json!(index));
    v.insert("level".into(), json!(level(f.severity)));
    let unknown: String =
        r.depends_on(f).iter().map(|u| format!("\n\nDepends on a value unknown until apply: {u}")).collect();
    v.insert("message".into(), json!({ "text": format!("{}\n\nFix: {}{unknown}", f.message, f.fix) }));
    v.insert("locations".into(), json!([location(r, &f.source)]));
    v.insert("partialFingerprints".into(), json!({ "moatFinding/v1": fnv1a(&key) }));
    if let Some(a) = &f.accepted {
        v.insert("suppressions".into(), json!([suppression(r, a)]));
    }
    Value::Object(v)
}

pub(crate) fn render(r: &Report<'_>) -> String {
    let mut driver = Map::new();
    driver.insert("name".into(), json!("moat"));
    // The repository, once Cargo.toml names it; a made-up address would be worse than none.
    let uri = env!("CARGO_PKG_REPOSITORY");
    if !uri.is_empty() {
        driver.insert("informationUri".into(), json!(uri));
    }
    driver.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    driver.insert("rules".into(), Value::Array(rules()));
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": driver },
            "results": r.findings.iter().map(|f| result(r, f)).collect::<Vec<_>>(),
        }],
    });
    let mut s = serde_json::to_string_pretty(&log).unwrap_or_default();
    s.push('\n');
    s
}
