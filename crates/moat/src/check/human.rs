//! Findings for people: grouped by service (project-level findings last), each with its
//! severity, rule, message, the line to change and the fix; a summary at the end.

use std::fmt::Write as _;

use moat_policy::check::{Finding, Severity, rule};

use super::Report;

const INDENT: &str = "          ";

pub(crate) fn render(r: &Report<'_>) -> String {
    let mut s = String::new();
    let mut group: Option<Option<&str>> = None;
    for f in r.findings {
        let this = f.service.as_deref();
        if group != Some(this) {
            if group.is_some() {
                s.push('\n');
            }
            match this {
                Some(name) => {
                    let _ = writeln!(s, "service `{name}`");
                }
                None => s.push_str("project\n"),
            }
            group = Some(this);
        }
        finding(&mut s, r, f);
    }
    if !r.findings.is_empty() {
        s.push('\n');
    }
    // Unknowns no service can be named for (an IAM grant on a service the plan names only
    // through an unknown value): said once, since any finding may depend on them.
    for u in r.unknowns.iter().filter(|u| u.matters() && u.service.is_none()) {
        let _ = writeln!(s, "note: unknown until apply, not tied to a service: {}", u.path());
    }
    let _ = writeln!(s, "{}", summary(r));
    s
}

fn finding(s: &mut String, r: &Report<'_>, f: &Finding) {
    let title = rule(f.rule).map_or("", |x| x.title);
    let accepted = if f.accepted.is_some() { "  (accepted)" } else { "" };
    let _ = writeln!(s, "  {:<8}{}  {title}{accepted}", f.severity.as_str(), f.rule);
    let _ = writeln!(s, "{INDENT}{}", f.message);
    let _ = writeln!(s, "{INDENT}at {}", r.location(&f.source));
    let _ = writeln!(s, "{INDENT}fix: {}", f.fix);
    for u in r.depends_on(f) {
        let _ = writeln!(s, "{INDENT}depends on a value unknown until apply: {u}");
    }
    if let Some(a) = &f.accepted {
        let _ = writeln!(s, "{INDENT}accepted: {} ({})", a.reason, r.path(&a.source.to_string()));
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `3 findings (1 high, 2 medium), 1 accepted: 2 fail at --fail-on low`.
fn summary(r: &Report<'_>) -> String {
    if r.findings.is_empty() {
        return "no findings".to_owned();
    }
    let counts: Vec<String> = Severity::ALL
        .iter()
        .map(|&sev| (sev, r.count(sev)))
        .filter(|(_, n)| *n > 0)
        .map(|(sev, n)| format!("{n} {sev}"))
        .collect();
    let failing = match r.failing() {
        0 => "none fail".to_owned(),
        n => format!("{n} fail"),
    };
    format!(
        "{} ({}), {} accepted: {failing} at --fail-on {}",
        plural(r.findings.len(), "finding"),
        counts.join(", "),
        r.accepted(),
        r.fail_on
    )
}
