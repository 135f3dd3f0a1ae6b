//! MOAT004 (the default compute service account) and MOAT005 (a basic role on the runtime
//! service account): what a compromised container could do with its own identity.

use crate::check::index::{GroupSas, SaGrants};
use crate::check::{Finding, Rule, Severity};
use crate::model::Project;
use crate::roles::is_basic;

pub(crate) const MOAT004: Rule = Rule {
    id: "MOAT004",
    name: "DefaultComputeServiceAccount",
    title: "service runs as the default compute service account",
    severity: Severity::Medium,
    explanation: "A service without its own service account runs as `PROJECT_NUMBER-compute@developer.gserviceaccount.com`, shared with every VM, function and service that falls back to it, and granted Editor on the project unless the org policy `iam.automaticIamGrantsForDefaultServiceAccounts` is enforced. Any code in the container can mint tokens for it from the metadata server.",
    fix: "Create a dedicated service account per service with only the roles it needs, and deploy with `--service-account`.",
    check: check_default_sa,
};

pub(crate) const MOAT005: Rule = Rule {
    id: "MOAT005",
    name: "RuntimeServiceAccountBasicRole",
    title: "runtime service account holds a basic role",
    severity: Severity::High,
    explanation: "Owner, Editor and Viewer are the basic roles: thousands of permissions across every service of the project. A runtime service account that holds one turns any code execution in the container (a dependency, an SSRF to the metadata server) into project-wide read or write access.",
    fix: "Remove the basic role from the runtime service account and grant the predefined roles the service needs, on the resources it uses.",
    check: check_basic_roles,
};

fn check_default_sa(project: &Project) -> Vec<Finding> {
    let default = project.default_compute_sa();
    project
        .services
        .values()
        .filter(|s| s.service_account.value == default)
        .map(|s| {
            let how = if s.service_account.explicit {
                format!("`{}` runs as the default compute service account `{default}`", s.name)
            } else {
                format!("`{}` names no service account, so it runs as the default compute service account `{default}`", s.name)
            };
            MOAT004.finding(
                Severity::Medium,
                Some(&s.name),
                format!("{how}, which every workload that falls back to it shares"),
                format!(
                    "create a dedicated one (`gcloud iam service-accounts create {name}-run`), grant it only what `{name}` needs, and deploy with `gcloud run services update {name} --service-account {name}-run@{id}.iam.gserviceaccount.com`",
                    name = s.name,
                    id = project.id
                ),
                &s.service_account.source,
            )
        })
        .collect()
}

fn check_basic_roles(project: &Project) -> Vec<Finding> {
    let mut groups = GroupSas::default();
    let basic = SaGrants::build(project, project.iam.bindings.iter().filter(|b| is_basic(&b.role)), &mut groups);
    let mut out = Vec::new();
    for s in project.services.values() {
        let sa = &s.service_account.value;
        for (b, m) in basic.get(sa, project) {
            let severity = if b.role == "roles/viewer" { Severity::Medium } else { Severity::High };
            let via = if b.implied {
                " through Google's automatic grant to the default compute service account".to_owned()
            } else if m.member.to_string() == format!("serviceAccount:{sa}") {
                String::new()
            } else {
                format!(" through `{}`", m.member)
            };
            let fix = if b.implied {
                format!(
                    "run `{}` as a dedicated service account; also enforce the org policy `iam.automaticIamGrantsForDefaultServiceAccounts` and remove the grant (`gcloud projects remove-iam-policy-binding {} --member serviceAccount:{sa} --role {}`), then set `automatic_default_sa_grants: false` in moat.yaml",
                    s.name, project.id, b.role
                )
            } else {
                format!(
                    "remove it (`gcloud projects remove-iam-policy-binding {} --member {} --role {}`) and grant the predefined roles `{}` needs instead",
                    project.id, m.member, b.role, s.name
                )
            };
            out.push(MOAT005.finding(
                severity,
                Some(&s.name),
                format!("`{}` runs as `{sa}`, which holds `{}` on project `{}`{via}", s.name, b.role, project.id),
                fix,
                &m.source,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{DEFAULT_SA, HEAD, ids, project, project_raw, v1};

    #[test]
    fn default_service_account_explicit_or_implied() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            (&format!("      serviceAccountName: {DEFAULT_SA}\n"), true),
            ("      serviceAccountName: s@p.iam.gserviceaccount.com\n", false),
        ];
        for (spec, expected) in cases {
            let p = project("", &[("services/s.yaml", &v1("s", "", spec))]);
            let found = check_default_sa(&p);
            assert_eq!(found.len(), usize::from(*expected), "{spec}");
            for f in &found {
                assert!(f.source.line > 0 && f.source.file.as_ref() == "services/s.yaml");
                assert!(f.message.contains(DEFAULT_SA));
            }
        }
    }

    #[test]
    fn basic_roles_direct_through_groups_and_implied() {
        let sa = "s@p.iam.gserviceaccount.com";
        let svc = v1("s", "", &format!("      serviceAccountName: {sa}\n"));
        let bindings = |role: &str, member: &str| {
            format!("iam:\n  bindings:\n    - role: {role}\n      members: [\"{member}\"]\n")
        };
        let group =
            "groups:\n  - email: g@example.com\n    members: [\"serviceAccount:s@p.iam.gserviceaccount.com\"]\n";
        // (moat.yaml extra, expected severity)
        let cases: &[(String, Option<Severity>)] = &[
            (bindings("roles/editor", &format!("serviceAccount:{sa}")), Some(Severity::High)),
            (bindings("roles/owner", &format!("serviceAccount:{sa}")), Some(Severity::High)),
            (bindings("roles/viewer", &format!("serviceAccount:{sa}")), Some(Severity::Medium)),
            (format!("{group}{}", bindings("roles/editor", "group:g@example.com")), Some(Severity::High)),
            (bindings("roles/run.admin", &format!("serviceAccount:{sa}")), None),
            (bindings("roles/editor", "serviceAccount:other@p.iam.gserviceaccount.com"), None),
        ];
        for (extra, expected) in cases {
            let p = project(extra, &[("services/s.yaml", &svc)]);
            let found = check_basic_roles(&p);
            assert_eq!(found.first().map(|f| f.severity), *expected, "{extra}");
            assert!(found.iter().all(|f| f.source.file.as_ref() == "moat.yaml" && f.source.line > 0));
        }
    }

    #[test]
    fn the_implied_editor_grant_counts_for_the_default_service_account() {
        let with_grant = HEAD.replace("  automatic_default_sa_grants: false\n", "");
        let p = project_raw(&with_grant, &[("services/s.yaml", &v1("s", "", ""))]);
        let found = check_basic_roles(&p);
        assert_eq!(ids(&found), [("MOAT005", Some("s"))]);
        assert!(found.iter().all(|f| f.message.contains("automatic grant") && f.severity == Severity::High));
        let p = project("", &[("services/s.yaml", &v1("s", "", ""))]);
        assert!(check_basic_roles(&p).is_empty());
    }
}
