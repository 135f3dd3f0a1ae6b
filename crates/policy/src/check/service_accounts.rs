//! MOAT026 (a runtime service account shared by several services) and MOAT027 (acting as a
//! runtime service account granted broadly): who else holds a service's identity.
//!
//! "Broadly", for `roles/iam.serviceAccountUser` and `roles/iam.serviceAccountTokenCreator`
//! (unconditional bindings only, as in `authz`):
//!
//! - on the service account itself (`Project::service_account_iam`): granted to `allUsers`,
//!   `allAuthenticatedUsers`, a `domain:` or a `group:`. A named user or service account is how
//!   a deployer or a caller is meant to get it and is not reported.
//! - on the project (`Project::iam`): granted to anyone. A project-level grant covers every
//!   service account of the project, present and future, while a deployer needs the role only
//!   on the runtime service accounts it deploys with; high for public, domain and group members,
//!   medium for a named user or service account.

use std::collections::BTreeMap;

use crate::check::index::{names, services_by_sa};
use crate::check::{Finding, Rule, Severity};
use crate::model::{Binding, Member, MemberRef, Project, Service};

pub(crate) const MOAT026: Rule = Rule {
    id: "MOAT026",
    name: "SharedRuntimeServiceAccount",
    title: "runtime service account shared by several services",
    severity: Severity::Low,
    explanation: "Services that run as the same service account hold each other's permissions: a compromise of the least important one (an SSRF to the metadata server, a vulnerable dependency) yields the tokens of all of them, and grants can no longer be scoped to what each service needs. Callees cannot tell the callers apart either, since they all present the same identity.",
    fix: "Create a service account per service (`gcloud iam service-accounts create SERVICE-run`), grant each only what its service needs, and deploy each service with its own `--service-account`.",
    check: check_shared,
};

pub(crate) const MOAT027: Rule = Rule {
    id: "MOAT027",
    name: "BroadServiceAccountImpersonation",
    title: "acting as a runtime service account granted broadly",
    severity: Severity::High,
    explanation: "`roles/iam.serviceAccountUser` lets a principal deploy code that runs as the service account; `roles/iam.serviceAccountTokenCreator` lets it mint the account's access and ID tokens directly. Granted to the public, a domain or a group on the account, or to anyone on the project (where it covers every service account, present and future), it hands a service's identity, and everything it may call or read, to far more principals than the deployers who need it.",
    fix: "Grant the role on the runtime service account itself, to the deployers (CI service account, release engineers) by name; remove public, domain and group members and the project-level binding.",
    check: check_impersonation,
};

/// `a`, `b`, `c` and N more: a project-level grant covers every runtime service account, and
/// a message listing a hundred of them helps no one.
fn first_few(items: &[&str]) -> String {
    const SHOWN: usize = 3;
    match items.get(SHOWN + 1..) {
        Some(rest) if !rest.is_empty() => {
            let shown: Vec<String> = items.iter().take(SHOWN).map(|s| format!("`{s}`")).collect();
            format!("{} and {} more", shown.join(", "), items.len() - SHOWN)
        }
        _ => names(items.iter().copied()),
    }
}

const ROLES: [&str; 2] = ["roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"];

fn check_shared(project: &Project) -> Vec<Finding> {
    let default = project.default_compute_sa();
    let mut out = Vec::new();
    let by_sa: BTreeMap<&str, Vec<&Service>> = services_by_sa(project).into_iter().collect();
    for (sa, services) in by_sa {
        // The default compute service account is MOAT004's, shared by design.
        if sa == default || services.len() < 2 {
            continue;
        }
        for s in &services {
            let others: Vec<&str> = services.iter().filter(|o| o.name != s.name).map(|o| o.name.as_str()).collect();
            out.push(MOAT026.finding(
                Severity::Low,
                Some(&s.name),
                format!(
                    "`{}` runs as `{sa}`, as {} also do{}: each holds the others' permissions and tokens",
                    s.name,
                    names(others.iter().copied()),
                    if others.len() == 1 { "es" } else { "" }
                ),
                format!(
                    "give `{name}` its own service account: `gcloud iam service-accounts create {name}-run`, grant it only what `{name}` needs, then `gcloud run services update {name} --service-account {name}-run@{id}.iam.gserviceaccount.com` (Terraform: a `google_service_account` per service in `template.service_account`)",
                    name = s.name,
                    id = project.id
                ),
                &s.service_account.source,
            ));
        }
    }
    out
}

/// How broad a member is on the service account itself: `None` for a named principal.
fn broad_on_account(member: &Member) -> Option<&'static str> {
    match member {
        Member::AllUsers | Member::AllAuthenticatedUsers => Some("anyone"),
        Member::Domain(_) => Some("every account of the domain"),
        Member::Group(_) => Some("every member of the group"),
        _ => None,
    }
}

fn grants(bindings: &[Binding]) -> impl Iterator<Item = (&Binding, &MemberRef)> {
    bindings
        .iter()
        .filter(|b| b.condition.is_none() && ROLES.contains(&b.role.as_str()))
        .flat_map(|b| b.members.iter().map(move |m| (b, m)))
}

fn what(role: &str) -> &'static str {
    if role == "roles/iam.serviceAccountTokenCreator" { "mint tokens for" } else { "deploy code that runs as" }
}

fn check_impersonation(project: &Project) -> Vec<Finding> {
    let by_sa: BTreeMap<&str, Vec<&Service>> = services_by_sa(project).into_iter().collect();
    let mut out = Vec::new();
    for (sa, services) in &by_sa {
        let Some(policy) = project.service_account_iam.get(&sa.to_ascii_lowercase()) else { continue };
        for (b, m) in grants(&policy.bindings) {
            let Some(who) = broad_on_account(&m.member) else { continue };
            let severity = if m.member.is_public() { Severity::High } else { Severity::Medium };
            out.push(MOAT027.finding(
                severity,
                None,
                format!(
                    "`{sa}`, the runtime service account of {}, grants `{}` to `{}`: {who} can {} it",
                    names(services.iter().map(|s| s.name.as_str())),
                    b.role,
                    m.member,
                    what(&b.role)
                ),
                format!(
                    "remove it (`gcloud iam service-accounts remove-iam-policy-binding {sa} --member {} --role {}`, or the `google_service_account_iam_*` resource) and grant the role on `{sa}` to the deployers by name",
                    m.member, b.role
                ),
                &m.source,
            ));
        }
    }
    if by_sa.is_empty() {
        return out;
    }
    let runtime: Vec<&str> = by_sa.keys().copied().collect();
    for (b, m) in grants(&project.iam.bindings).filter(|(b, _)| !b.implied) {
        let severity = if broad_on_account(&m.member).is_some() { Severity::High } else { Severity::Medium };
        out.push(MOAT027.finding(
            severity,
            None,
            format!(
                "`{}` holds `{}` on project `{}`: it can {} every service account of the project, including the runtime service account{} {}",
                m.member,
                b.role,
                project.id,
                what(&b.role),
                if runtime.len() == 1 { "" } else { "s" },
                first_few(&runtime)
            ),
            format!(
                "grant it on the service accounts it deploys with (`gcloud iam service-accounts add-iam-policy-binding SA --member {m} --role {r}`, Terraform `google_service_account_iam_member`), then `gcloud projects remove-iam-policy-binding {p} --member {m} --role {r}`",
                m = m.member,
                r = b.role,
                p = project.id
            ),
            &m.source,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{DEFAULT_SA, ids, project, v1};
    use crate::model::IamPolicy;
    use crate::source::SourceRef;

    fn svc(name: &str, sa: &str) -> String {
        let spec = if sa.is_empty() { String::new() } else { format!("      serviceAccountName: {sa}\n") };
        v1(name, "", &spec)
    }

    #[test]
    fn shared_runtime_service_accounts() {
        let x = "x@p.iam.gserviceaccount.com";
        // (service accounts of a, b, c; services reported)
        let cases: &[([&str; 3], &[&str])] = &[
            ([x, x, "c@p.iam.gserviceaccount.com"], &["a", "b"]),
            ([x, x, x], &["a", "b", "c"]),
            (["a@p.iam.gserviceaccount.com", "b@p.iam.gserviceaccount.com", "c@p.iam.gserviceaccount.com"], &[]),
            (["", "", DEFAULT_SA], &[]),
        ];
        for (sas, expected) in cases {
            let files: Vec<(String, String)> =
                ["a", "b", "c"].iter().zip(sas).map(|(n, sa)| (format!("services/{n}.yaml"), svc(n, sa))).collect();
            let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
            let p = project("", &refs);
            let f = check_shared(&p);
            let got: Vec<&str> = f.iter().filter_map(|f| f.service.as_deref()).collect();
            assert_eq!(&got, expected, "{sas:?}");
            assert!(f.iter().all(|f| f.severity == Severity::Low && f.source.line > 0));
        }
        let p = project("", &[("services/a.yaml", &svc("a", x)), ("services/b.yaml", &svc("b", x))]);
        assert!(check_shared(&p).iter().any(|f| f.message
            == format!("`a` runs as `{x}`, as `b` also does: each holds the others' permissions and tokens")));
    }

    fn binding(role: &str, member: &str) -> Binding {
        let source =
            SourceRef::terraform(&std::sync::Arc::from("plan.json"), "google_service_account_iam_member.m.member");
        Binding {
            role: role.into(),
            members: Member::parse(member)
                .into_iter()
                .map(|m| MemberRef { member: m, source: source.clone() })
                .collect(),
            condition: None,
            source,
            implied: false,
        }
    }

    #[test]
    fn impersonation_on_the_account() {
        let sa = "x@p.iam.gserviceaccount.com";
        // (role, member, expected severity)
        let cases: &[(&str, &str, Option<Severity>)] = &[
            ("roles/iam.serviceAccountTokenCreator", "allUsers", Some(Severity::High)),
            ("roles/iam.serviceAccountUser", "allAuthenticatedUsers", Some(Severity::High)),
            ("roles/iam.serviceAccountUser", "domain:example.com", Some(Severity::Medium)),
            ("roles/iam.serviceAccountTokenCreator", "group:devs@example.com", Some(Severity::Medium)),
            ("roles/iam.serviceAccountUser", "user:deployer@example.com", None),
            ("roles/iam.serviceAccountUser", "serviceAccount:ci@p.iam.gserviceaccount.com", None),
            ("roles/iam.serviceAccountKeyAdmin", "group:devs@example.com", None),
        ];
        for (role, member, expected) in cases {
            let mut p = project("", &[("services/a.yaml", &svc("a", sa))]);
            p.service_account_iam.insert(sa.into(), IamPolicy { bindings: vec![binding(role, member)], source: None });
            // Not a runtime service account: nothing to report.
            p.service_account_iam.insert(
                "idle@p.iam.gserviceaccount.com".into(),
                IamPolicy { bindings: vec![binding(role, member)], source: None },
            );
            let f = check_impersonation(&p);
            assert_eq!(f.first().map(|f| f.severity), *expected, "{role} {member}");
            assert!(f.len() <= 1);
            assert!(f.iter().all(|f| {
                f.message.starts_with(&format!("`{sa}`, the runtime service account of `a`, grants `{role}`"))
                    && f.source.address.as_deref() == Some("google_service_account_iam_member.m.member")
            }));
        }
    }

    #[test]
    fn impersonation_on_the_account_from_moat_yaml() {
        let p = project(
            "service_accounts:\n  - email: X@p.iam.gserviceaccount.com\n    iam:\n      bindings:\n        - role: roles/iam.serviceAccountUser\n          members: [\"group:devs@example.com\", \"user:deployer@example.com\"]\n",
            &[("services/a.yaml", &svc("a", "x@p.iam.gserviceaccount.com"))],
        );
        let f = check_impersonation(&p);
        assert_eq!(f.iter().map(|f| (f.severity, f.source.line)).collect::<Vec<_>>(), [(Severity::Medium, 11)]);
        assert!(
            f.iter()
                .all(|f| f.message.contains("to `group:devs@example.com`") && f.source.file.as_ref() == "moat.yaml")
        );
    }

    #[test]
    fn impersonation_on_the_project_covers_every_runtime_account() {
        let yaml = |role: &str, member: &str, cond: bool| {
            let c =
                if cond { "      condition: {title: t, expression: \"resource.name.endsWith('x')\"}\n" } else { "" };
            format!("iam:\n  bindings:\n    - role: {role}\n      members: [\"{member}\"]\n{c}")
        };
        let cases: &[(String, Option<Severity>)] = &[
            (yaml("roles/iam.serviceAccountTokenCreator", "group:developers@example.org", false), Some(Severity::High)),
            (yaml("roles/iam.serviceAccountUser", "user:release@example.org", false), Some(Severity::Medium)),
            (yaml("roles/iam.serviceAccountUser", "user:release@example.org", true), None),
            (yaml("roles/run.admin", "user:release@example.org", false), None),
        ];
        for (extra, expected) in cases {
            let p = project(
                extra,
                &[
                    ("services/a.yaml", &svc("a", "a@p.iam.gserviceaccount.com")),
                    ("services/b.yaml", &svc("b", "b@p.iam.gserviceaccount.com")),
                ],
            );
            let f = check_impersonation(&p);
            assert_eq!(f.first().map(|f| f.severity), *expected, "{extra}");
            assert!(f.iter().all(|f| f.message.ends_with(
                "including the runtime service accounts `a@p.iam.gserviceaccount.com` and `b@p.iam.gserviceaccount.com`"
            ) && f.source.file.as_ref() == "moat.yaml"
                && f.source.line == 9));
            assert!(ids(&f).iter().all(|(r, s)| *r == "MOAT027" && s.is_none()));
        }
    }
}
