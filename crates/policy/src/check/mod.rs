//! `moat check`: the catalogue of misconfigurations the Cloud Run hardening guides warn about.
//!
//! Each rule is a `Rule` value with an id, a title, an explanation with the fix, and a pure
//! `check(&Project) -> Vec<Finding>`; its table-driven tests sit beside it. Rules answer from the
//! same decision functions as `explain` and the front door (`egress::origin_of_call`,
//! `ingress::ingress`, `authz::find_grant`, `roles::grants`), so a finding never disagrees with
//! what a request would meet. Every rule is near-linear in the size of the project: indexes by
//! principal are built once per run, never per service.

mod caller_path;
mod credentials;
mod edge_policy;
mod identity;
mod index;
mod load_balancer;
mod project_grants;
mod public;
mod public_surface;
mod rollout;
mod secrets;
mod service_accounts;
mod sql;
mod vpc;

#[cfg(test)]
pub(crate) mod testing;

use std::fmt;

use serde::Serialize;

use crate::model::{Acceptance, Project};
use crate::source::SourceRef;

/// How bad a finding is. Ordered: `Info < Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not a risk by itself.
    Info,
    Low,
    Medium,
    High,
}

impl Severity {
    pub const ALL: [Self; 4] = [Self::High, Self::Medium, Self::Low, Self::Info];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule id (`MOAT001`).
    pub rule: &'static str,
    pub severity: Severity,
    /// The service the finding is about; `None` for project-level findings (a load balancer, a
    /// project IAM binding).
    pub service: Option<String>,
    /// What is wrong, with the names involved. Never contains a secret value.
    pub message: String,
    /// What to do about this finding, with the names filled in.
    pub fix: String,
    /// The offending field.
    pub source: SourceRef,
    /// Set when moat.yaml accepts this finding as a known risk.
    pub accepted: Option<Acceptance>,
}

/// A check: what it looks for, why it matters, how to fix it, and the function that looks.
#[derive(Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    /// A short PascalCase name (SARIF `reportingDescriptor.name`).
    pub name: &'static str,
    pub title: &'static str,
    /// The severity of the worst case; single findings may be lower.
    pub severity: Severity,
    /// Why it matters, in a paragraph.
    pub explanation: &'static str,
    /// The fix in general terms; each finding carries its own with the names filled in.
    pub fix: &'static str,
    pub check: fn(&Project) -> Vec<Finding>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule").field("id", &self.id).field("severity", &self.severity).finish_non_exhaustive()
    }
}

impl Rule {
    /// A finding of this rule.
    pub(crate) fn finding(
        &self,
        severity: Severity,
        service: Option<&str>,
        message: String,
        fix: String,
        source: &SourceRef,
    ) -> Finding {
        Finding {
            rule: self.id,
            severity,
            service: service.map(str::to_owned),
            message,
            fix,
            source: source.clone(),
            accepted: None,
        }
    }
}

/// Every rule, in id order.
pub const RULES: &[Rule] = &[
    public::MOAT001,
    load_balancer::MOAT002,
    caller_path::MOAT003,
    identity::MOAT004,
    identity::MOAT005,
    credentials::MOAT006,
    secrets::MOAT007,
    secrets::MOAT008,
    project_grants::MOAT009,
    public::MOAT010,
    load_balancer::MOAT011,
    project_grants::MOAT012,
    vpc::MOAT013,
    edge_policy::MOAT014,
    edge_policy::MOAT015,
    edge_policy::MOAT016,
    sql::MOAT017,
    sql::MOAT018,
    sql::MOAT019,
    sql::MOAT020,
    sql::MOAT021,
    sql::MOAT022,
    public_surface::MOAT023,
    public_surface::MOAT024,
    public_surface::MOAT025,
    service_accounts::MOAT026,
    service_accounts::MOAT027,
    edge_policy::MOAT028,
    rollout::MOAT029,
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Runs every rule, marks the findings moat.yaml accepts, and sorts the result: by service
/// (project-level findings last), then rule, then location.
pub fn run_all(project: &Project) -> Vec<Finding> {
    let mut findings: Vec<Finding> = RULES.iter().flat_map(|r| (r.check)(project)).collect();
    for f in &mut findings {
        f.accepted = project.accepted.iter().find(|a| a.covers(f.rule, f.service.as_deref())).cloned();
    }
    findings.sort_by(|a, b| {
        (a.service.is_none(), &a.service, a.rule, &a.source, &a.message).cmp(&(
            b.service.is_none(),
            &b.service,
            b.rule,
            &b.source,
            &b.message,
        ))
    });
    findings
}

/// Whether a finding fails the check at threshold `fail_on`: accepted findings never do.
pub fn fails(finding: &Finding, fail_on: Severity) -> bool {
    finding.accepted.is_none() && finding.severity >= fail_on
}

#[cfg(test)]
mod tests {
    use super::testing::project;
    use super::*;

    #[test]
    fn catalogue_is_complete_and_in_order() {
        let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        let expected: Vec<String> = (1..=29).map(|i| format!("MOAT{i:03}")).collect();
        assert_eq!(ids, expected);
        for r in RULES {
            assert!(!r.title.is_empty() && !r.explanation.is_empty() && !r.fix.is_empty(), "{}", r.id);
            assert!(r.name.chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{}", r.id);
            assert!(!r.title.ends_with('.'), "{}: titles have no trailing period", r.id);
        }
        assert!(rule("MOAT007").is_some());
        assert!(rule("MOAT999").is_none());
    }

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Info < Severity::Low && Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
    }

    #[test]
    fn accepted_findings_are_marked_and_never_fail() {
        let p = project(
            "accept:\n  - rule: MOAT004\n    service: a\n    reason: legacy, migrating in Q3\n",
            &[("services/a.yaml", &testing::v1("a", "", "")), ("services/b.yaml", &testing::v1("b", "", ""))],
        );
        let found = run_all(&p);
        let moat004: Vec<&Finding> = found.iter().filter(|f| f.rule == "MOAT004").collect();
        assert_eq!(moat004.len(), 2);
        let a = moat004.iter().find(|f| f.service.as_deref() == Some("a"));
        let b = moat004.iter().find(|f| f.service.as_deref() == Some("b"));
        assert!(a.is_some_and(|f| f.accepted.as_ref().is_some_and(|x| x.reason == "legacy, migrating in Q3")));
        assert!(a.is_some_and(|f| !fails(f, Severity::Info)));
        assert!(b.is_some_and(|f| f.accepted.is_none() && fails(f, Severity::Low)));
        assert!(b.is_some_and(|f| !fails(f, Severity::High)));
    }

    #[test]
    fn results_are_sorted_with_project_findings_last() {
        let p = project(
            "iam:\n  bindings:\n    - role: roles/run.invoker\n      members: [\"user:dev@example.com\"]\n",
            &[("services/b.yaml", &testing::v1("b", "", "")), ("services/a.yaml", &testing::v1("a", "", ""))],
        );
        let found = run_all(&p);
        let order: Vec<Option<&str>> = found.iter().map(|f| f.service.as_deref()).collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|s| (s.is_none(), *s));
        assert_eq!(order, sorted);
        assert_eq!(found.last().map(|f| f.rule), Some("MOAT012"));
    }

    #[test]
    fn acceptance_errors_name_the_line() {
        let svc = testing::v1("a", "", "");
        let cases = [
            ("accept:\n  - rule: MOAT999\n    reason: r\n", "moat.yaml:7:11: `MOAT999` is not a moat check rule"),
            (
                "accept:\n  - rule: MOAT001\n    service: nope\n    reason: r\n",
                "moat.yaml:7:5: `accept` names service `nope`, which does not exist",
            ),
            ("accept:\n  - rule: MOAT001\n    reason: \"  \"\n", "moat.yaml:8:13: accepting `MOAT001` needs a reason"),
            ("accept:\n  - rule: MOAT001\n    servce: a\n    reason: r\n", "unknown field `servce`"),
        ];
        for (extra, expected) in cases {
            let files = [
                crate::SourceFile { path: "moat.yaml".into(), text: format!("{}{extra}", testing::HEAD) },
                crate::SourceFile { path: "services/a.yaml".into(), text: svc.clone() },
            ];
            let errs = crate::load(&files).err().map(|e| e.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
            assert!(errs.as_ref().is_some_and(|e| e.iter().any(|m| m.contains(expected))), "{extra}: {errs:?}");
        }
    }

    #[test]
    fn an_acceptance_without_a_service_covers_every_finding_of_the_rule() {
        let p = project(
            "accept:\n  - rule: MOAT004\n    reason: all legacy\n",
            &[("services/a.yaml", &testing::v1("a", "", "")), ("services/b.yaml", &testing::v1("b", "", ""))],
        );
        let found = run_all(&p);
        assert!(found.iter().filter(|f| f.rule == "MOAT004").all(|f| f.accepted.is_some()));
        assert!(p.accepted.iter().all(|a| a.source.file.as_ref() == "moat.yaml" && a.source.line == 7));
    }
}
