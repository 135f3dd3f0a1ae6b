//! Findings as JSON, the same content as the human report:
//! `{"findings": [{rule, title, severity, service, message, file, line, column, fix, accepted,
//! reason}], "summary": {total, high, medium, low, info, accepted, failing, fail_on}}`.

use moat_policy::check::{Severity, rule};
use serde::Serialize;

use super::Report;

#[derive(Serialize)]
struct Finding<'a> {
    rule: &'a str,
    title: &'a str,
    severity: Severity,
    service: Option<&'a str>,
    message: &'a str,
    file: String,
    line: u32,
    column: u32,
    fix: &'a str,
    accepted: bool,
    reason: Option<&'a str>,
    /// The Terraform resource address (and attribute), for plan and state input.
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    /// `ADDRESS.ATTRIBUTE` of each value unknown until apply that the finding depends on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    depends_on_unknown: Vec<String>,
}

#[derive(Serialize)]
struct Summary {
    total: usize,
    high: usize,
    medium: usize,
    low: usize,
    info: usize,
    accepted: usize,
    failing: usize,
    fail_on: Severity,
}

#[derive(Serialize)]
struct Output<'a> {
    findings: Vec<Finding<'a>>,
    summary: Summary,
}

pub(crate) fn render(r: &Report<'_>) -> String {
    let findings = r
        .findings
        .iter()
        .map(|f| Finding {
            rule: f.rule,
            title: rule(f.rule).map_or("", |x| x.title),
            severity: f.severity,
            service: f.service.as_deref(),
            message: &f.message,
            file: r.path(&f.source.file),
            line: f.source.line,
            column: f.source.column,
            fix: &f.fix,
            accepted: f.accepted.is_some(),
            reason: f.accepted.as_ref().map(|a| a.reason.as_str()),
            address: f.source.address.as_deref(),
            depends_on_unknown: r.depends_on(f),
        })
        .collect();
    let summary = Summary {
        total: r.findings.len(),
        high: r.count(Severity::High),
        medium: r.count(Severity::Medium),
        low: r.count(Severity::Low),
        info: r.count(Severity::Info),
        accepted: r.accepted(),
        failing: r.failing(),
        fail_on: r.fail_on,
    };
    let mut s = serde_json::to_string_pretty(&Output { findings, summary }).unwrap_or_default();
    s.push('\n');
    s
}
