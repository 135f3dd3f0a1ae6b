//! MOAT009 (secret access granted on the project) and MOAT012 (invoke granted on the project):
//! grants that cover every resource of a kind, present and future, where one was meant.
//!
//! Basic roles are MOAT005's and admin roles are administration, not access; conditional
//! bindings are left alone because a condition is how a project-level grant is scoped.

use crate::check::{Finding, Rule, Severity};
use crate::model::{Binding, MemberRef, Project};
use crate::roles::{Permission, grants, is_basic};

pub(crate) const MOAT009: Rule = Rule {
    id: "MOAT009",
    name: "ProjectLevelSecretAccessor",
    title: "secret accessor granted at project level",
    severity: Severity::Medium,
    explanation: "`roles/secretmanager.secretAccessor` on the project lets the member read the payload of every secret in the project, including secrets created later for other services. A service compromised through one bug then leaks every credential the project holds.",
    fix: "Grant the role on each secret the member needs, and remove the project-level binding.",
    check: check_secret_access,
};

pub(crate) const MOAT012: Rule = Rule {
    id: "MOAT012",
    name: "ProjectLevelInvoker",
    title: "invoker role granted at project level",
    severity: Severity::Medium,
    explanation: "`roles/run.invoker` on the project lets the member invoke every Cloud Run service of the project, present and future, whatever each service's own policy says. Service-to-service trust should name the callee.",
    fix: "Grant the role on each service the member calls, and remove the project-level binding.",
    check: check_invoker,
};

/// Unconditional project bindings of non-basic, non-admin roles that carry `permission`.
fn project_grants<'a>(
    project: &'a Project,
    permission: Permission,
    admin: &'a str,
) -> impl Iterator<Item = (&'a Binding, &'a MemberRef)> {
    project
        .iam
        .bindings
        .iter()
        .filter(move |b| {
            b.condition.is_none() && !b.implied && !is_basic(&b.role) && b.role != admin && grants(&b.role, permission)
        })
        .flat_map(|b| b.members.iter().map(move |m| (b, m)))
}

fn check_secret_access(project: &Project) -> Vec<Finding> {
    project_grants(project, Permission::SecretVersionsAccess, "roles/secretmanager.admin")
        .map(|(b, m)| {
            MOAT009.finding(
                Severity::Medium,
                None,
                format!(
                    "`{}` holds `{}` on project `{}`: it can read every secret in the project, present and future",
                    m.member, b.role, project.id
                ),
                format!(
                    "grant it on each secret it needs (`gcloud secrets add-iam-policy-binding SECRET --member {m} --role {r}`), then `gcloud projects remove-iam-policy-binding {p} --member {m} --role {r}`",
                    m = m.member,
                    r = b.role,
                    p = project.id
                ),
                &m.source,
            )
        })
        .collect()
}

fn check_invoker(project: &Project) -> Vec<Finding> {
    project_grants(project, Permission::RunRoutesInvoke, "roles/run.admin")
        .map(|(b, m)| {
            let severity = if m.member.is_public() { Severity::High } else { Severity::Medium };
            MOAT012.finding(
                severity,
                None,
                format!(
                    "`{}` holds `{}` on project `{}`: it can invoke every Cloud Run service of the project, present and future",
                    m.member, b.role, project.id
                ),
                format!(
                    "grant it on each service it calls (`gcloud run services add-iam-policy-binding SERVICE --member {m} --role {r}`), then `gcloud projects remove-iam-policy-binding {p} --member {m} --role {r}`",
                    m = m.member,
                    r = b.role,
                    p = project.id
                ),
                &m.source,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{HEAD, project, project_raw};

    fn binding(role: &str, member: &str, conditional: bool) -> String {
        let cond = if conditional {
            "      condition: {title: t, expression: \"resource.name.startsWith('x')\"}\n"
        } else {
            ""
        };
        format!("iam:\n  bindings:\n    - role: {role}\n      members: [\"{member}\"]\n{cond}")
    }

    #[test]
    fn project_level_grants() {
        let sa = "serviceAccount:etl@p.iam.gserviceaccount.com";
        // (role, member, conditional, MOAT009, MOAT012)
        type Case<'a> = (&'a str, &'a str, bool, Option<Severity>, Option<Severity>);
        let cases: &[Case<'_>] = &[
            ("roles/secretmanager.secretAccessor", sa, false, Some(Severity::Medium), None),
            ("roles/secretmanager.secretAccessor", sa, true, None, None),
            ("roles/secretmanager.admin", sa, false, None, None),
            ("roles/owner", sa, false, None, None),
            ("roles/run.invoker", sa, false, None, Some(Severity::Medium)),
            ("roles/run.servicesInvoker", "group:devs@example.com", false, None, Some(Severity::Medium)),
            ("roles/run.invoker", "allUsers", false, None, Some(Severity::High)),
            ("roles/run.invoker", sa, true, None, None),
            ("roles/run.admin", sa, false, None, None),
            ("roles/editor", sa, false, None, None),
        ];
        for (role, member, conditional, secret, invoke) in cases {
            let p = project(&binding(role, member, *conditional), &[]);
            let s = check_secret_access(&p);
            let i = check_invoker(&p);
            assert_eq!(s.first().map(|f| f.severity), *secret, "{role} {member}");
            assert_eq!(i.first().map(|f| f.severity), *invoke, "{role} {member}");
            for f in s.iter().chain(&i) {
                assert_eq!((f.source.file.as_ref(), f.source.line), ("moat.yaml", 9));
                assert!(f.service.is_none() && f.message.contains(member));
            }
        }
    }

    #[test]
    fn the_implied_editor_grant_is_not_an_invoker_grant() {
        let p = project_raw(&HEAD.replace("  automatic_default_sa_grants: false\n", ""), &[]);
        assert!(check_invoker(&p).is_empty() && check_secret_access(&p).is_empty());
    }
}
