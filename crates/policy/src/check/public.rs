//! MOAT001 (service invocable by anyone) and MOAT010 (ingress `internal` taken for
//! authentication): who may invoke a service without being anyone in particular.
//!
//! The two rules split the cases so that one mistake gives one finding: MOAT010 takes anonymous
//! access (an `allUsers` grant or the invoker check disabled) to an `internal` service, MOAT001
//! everything else that is public. Ingress `none` admits nothing, so nothing is reported.
//!
//! Both judge what a request meets, as `explain` does: the ingress setting in force (a pending
//! change is MOAT029's), and, for a service behind IAP (`iap-enabled`), IAP's access grants
//! (`roles/iap.httpsResourceAccessor`): IAP refuses callers without one whatever the invoker
//! setting, so there a public accessor grant is what makes the service public.

use crate::check::{Finding, Rule, Severity};
use crate::model::{Binding, Ingress, Member, MemberRef, Project, Service};
use crate::roles::{Permission, grants};
use crate::source::SourceRef;

pub(crate) const MOAT001: Rule = Rule {
    id: "MOAT001",
    name: "PublicService",
    title: "service invocable by anyone",
    severity: Severity::High,
    explanation: "An `allUsers` or `allAuthenticatedUsers` grant of an invoker role, or the invoker IAM check turned off, lets callers reach the container without proving who they are. With ingress `all` that is anyone on the internet; with `internal-and-cloud-load-balancing` anyone who gets through the load balancer. `allAuthenticatedUsers` is not \"our users\": it is every Google account in the world.",
    fix: "Grant `roles/run.invoker` to the callers that need it and remove the public grant, or re-enable the invoker check. If the service is meant to be public, keep it behind a load balancer with Cloud Armor and record the decision with an `accept:` entry in moat.yaml.",
    check: check_public,
};

pub(crate) const MOAT010: Rule = Rule {
    id: "MOAT010",
    name: "InternalIngressAsAuthentication",
    title: "ingress internal treated as authentication",
    severity: Severity::Medium,
    explanation: "Ingress `internal` decides where a request may come from, not who sends it. An internal service that anonymous callers may invoke is open to every VM, GKE pod, Cloud Run service with VPC egress and Google product in the project or its perimeter, and to anything that can be tricked into sending requests from there (SSRF).",
    fix: "Re-enable the invoker IAM check and remove `allUsers`, then grant `roles/run.invoker` to the service accounts that call the service: ingress and IAM are independent layers, keep both.",
    check: check_internal_anonymous,
};

/// Why a service admits callers without a specific identity.
pub(crate) enum Cause<'a> {
    InvokerCheckDisabled(&'a SourceRef),
    Grant { binding: &'a Binding, member: &'a MemberRef, on_project: bool },
}

impl Cause<'_> {
    pub(crate) fn anonymous(&self) -> bool {
        match self {
            Self::InvokerCheckDisabled(_) => true,
            Self::Grant { member, .. } => member.member == Member::AllUsers,
        }
    }

    pub(crate) fn source(&self) -> &SourceRef {
        match self {
            Self::InvokerCheckDisabled(s) => s,
            Self::Grant { member, .. } => &member.source,
        }
    }

    pub(crate) fn describe(&self, service: &Service, project: &Project) -> String {
        match self {
            Self::InvokerCheckDisabled(_) => format!("`{}` has the invoker IAM check disabled", service.name),
            Self::Grant { binding, member, on_project: false } => {
                format!("`{}` grants `{}` to `{}`", service.name, binding.role, member.member)
            }
            Self::Grant { binding, member, on_project: true } => format!(
                "project `{}` grants `{}` to `{}`, which covers `{}`",
                project.id, binding.role, member.member, service.name
            ),
        }
    }

    fn fix(&self, service: &Service, project: &Project) -> String {
        match self {
            Self::InvokerCheckDisabled(_) => format!(
                "re-enable the check with `gcloud run services update {} --invoker-iam-check` and grant `roles/run.invoker` to its callers",
                service.name
            ),
            Self::Grant { binding, member, on_project: false } => format!(
                "remove the grant with `gcloud run services remove-iam-policy-binding {} --member={} --role={}` and grant the role to the callers that need it",
                service.name, member.member, binding.role
            ),
            Self::Grant { binding, member, on_project: true } => format!(
                "remove the grant with `gcloud projects remove-iam-policy-binding {} --member={} --role={}` and grant `{}` on each service to the callers that need it",
                project.id, member.member, binding.role, binding.role
            ),
        }
    }
}

/// Public grants of the project policy, computed once: invoker grants apply to every service,
/// IAP access grants to every service behind IAP.
pub(crate) struct ProjectPublic<'a> {
    invoke: Vec<Cause<'a>>,
    iap: Vec<Cause<'a>>,
}

impl<'a> ProjectPublic<'a> {
    pub(crate) fn for_service(&self, service: &Service) -> &[Cause<'a>] {
        if service.iap_enabled.value { &self.iap } else { &self.invoke }
    }
}

pub(crate) fn project_public(project: &Project) -> ProjectPublic<'_> {
    ProjectPublic {
        invoke: public_grants(&project.iam.bindings, true, Permission::RunRoutesInvoke).collect(),
        iap: public_grants(&project.iam.bindings, true, Permission::IapAccess).collect(),
    }
}

fn public_grants(bindings: &[Binding], on_project: bool, permission: Permission) -> impl Iterator<Item = Cause<'_>> {
    bindings
        .iter()
        // A conditional binding grants nothing in `authz`, so it is never counted as public.
        .filter(move |b| b.condition.is_none() && grants(&b.role, permission))
        .flat_map(move |b| {
            b.members.iter().filter(|m| m.member.is_public()).map(move |m| Cause::Grant {
                binding: b,
                member: m,
                on_project,
            })
        })
}

fn check_public(project: &Project) -> Vec<Finding> {
    let shared = project_public(project);
    let mut out = Vec::new();
    for service in project.services.values() {
        let ingress = service.ingress_in_force().value;
        for cause in own_causes(service).iter().chain(shared.for_service(service)) {
            let (severity, reach) = match ingress {
                Ingress::All => (
                    Severity::High,
                    if cause.anonymous() {
                        "with ingress `all`, anyone on the internet can call it without a token"
                    } else {
                        "with ingress `all`, anyone with a Google account can call it from the internet"
                    },
                ),
                Ingress::InternalAndCloudLoadBalancing => (
                    Severity::Medium,
                    if cause.anonymous() {
                        "anyone who gets through its external load balancer can call it without a token"
                    } else {
                        "anyone with a Google account who gets through its external load balancer can call it"
                    },
                ),
                // Anonymous access to an internal service is MOAT010's.
                Ingress::Internal if !cause.anonymous() => (
                    Severity::Medium,
                    "any Google account can call it from the project's networks (ingress `internal` is not authentication)",
                ),
                Ingress::Internal | Ingress::None => continue,
            };
            out.push(MOAT001.finding(
                severity,
                Some(&service.name),
                format!("{}: {reach}", cause.describe(service, project)),
                format!(
                    "{}; if `{}` is meant to be public, accept the finding in moat.yaml with the reason",
                    cause.fix(service, project),
                    service.name
                ),
                cause.source(),
            ));
        }
    }
    out
}

fn check_internal_anonymous(project: &Project) -> Vec<Finding> {
    let shared = project_public(project);
    let mut out = Vec::new();
    for service in project.services.values().filter(|s| s.ingress_in_force().value == Ingress::Internal) {
        for cause in own_causes(service).iter().chain(shared.for_service(service)).filter(|c| c.anonymous()) {
            out.push(MOAT010.finding(
                Severity::Medium,
                Some(&service.name),
                format!(
                    "{} and relies on ingress `internal` alone: anything in the project's VPC networks or perimeter can call it without a token",
                    cause.describe(service, project)
                ),
                cause.fix(service, project),
                cause.source(),
            ));
        }
    }
    out
}

pub(crate) fn own_causes(service: &Service) -> Vec<Cause<'_>> {
    // Behind IAP, only IAP's access grants let callers in (the invoker check is asked of IAP's
    // service agent, so neither disabling it nor a public invoker grant opens the service).
    if service.iap_enabled.value {
        return public_grants(&service.iam.bindings, false, Permission::IapAccess).collect();
    }
    let disabled =
        service.invoker_iam_disabled.value.then_some(Cause::InvokerCheckDisabled(&service.invoker_iam_disabled.source));
    disabled.into_iter().chain(public_grants(&service.iam.bindings, false, Permission::RunRoutesInvoke)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::project;

    fn service(ingress: &str, disabled: bool) -> String {
        format!(
            r#"{{"name": "s", "ingress": "{ingress}", "invokerIamDisabled": {disabled}, "template": {{"serviceAccount": "s@p.iam.gserviceaccount.com"}}}}"#
        )
    }

    fn policy(role: &str, member: &str, condition: bool) -> String {
        let cond = if condition {
            r#", "condition": {"title": "t", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}"#
        } else {
            ""
        };
        format!(
            r#"{{"bindings": [{{"role": "{role}", "members": ["{member}"]{cond}}}], "etag": "BwY=", "version": 1}}"#
        )
    }

    #[test]
    fn public_access_by_ingress_and_cause() {
        const ALL: &str = "INGRESS_TRAFFIC_ALL";
        const LB: &str = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER";
        const INTERNAL: &str = "INGRESS_TRAFFIC_INTERNAL_ONLY";
        const NONE: &str = "INGRESS_TRAFFIC_NONE";
        let invoker = "roles/run.invoker";
        // (ingress, invoker check disabled, service binding (role, member, conditional), expected)
        type Case<'a> = (&'a str, bool, Option<(&'a str, &'a str, bool)>, &'a [(&'a str, Severity)]);
        let cases: &[Case<'_>] = &[
            (ALL, true, None, &[("MOAT001", Severity::High)]),
            (ALL, false, Some((invoker, "allUsers", false)), &[("MOAT001", Severity::High)]),
            (
                ALL,
                false,
                Some(("roles/run.servicesInvoker", "allAuthenticatedUsers", false)),
                &[("MOAT001", Severity::High)],
            ),
            (LB, true, None, &[("MOAT001", Severity::Medium)]),
            (LB, false, Some((invoker, "allUsers", false)), &[("MOAT001", Severity::Medium)]),
            (INTERNAL, true, None, &[("MOAT010", Severity::Medium)]),
            (INTERNAL, false, Some((invoker, "allUsers", false)), &[("MOAT010", Severity::Medium)]),
            (INTERNAL, false, Some((invoker, "allAuthenticatedUsers", false)), &[("MOAT001", Severity::Medium)]),
            (
                ALL,
                true,
                Some((invoker, "allUsers", false)),
                &[("MOAT001", Severity::High), ("MOAT001", Severity::High)],
            ),
            (ALL, false, Some((invoker, "user:dev@example.com", false)), &[]),
            (ALL, false, Some((invoker, "allUsers", true)), &[]),
            (ALL, false, Some(("roles/run.viewer", "allUsers", false)), &[]),
            (NONE, true, Some((invoker, "allUsers", false)), &[]),
            (ALL, false, None, &[]),
        ];
        for (ingress, disabled, binding, expected) in cases {
            let svc = service(ingress, *disabled);
            let pol = binding.map(|(r, m, c)| policy(r, m, c));
            let mut files = vec![("services/s.json", svc.as_str())];
            if let Some(p) = &pol {
                files.push(("iam/s.json", p.as_str()));
            }
            let p = project("", &files);
            let mut found = check_public(&p);
            found.extend(check_internal_anonymous(&p));
            let got: Vec<(&str, Severity)> = found.iter().map(|f| (f.rule, f.severity)).collect();
            assert_eq!(&got, expected, "{ingress} disabled={disabled} {binding:?}");
            for f in &found {
                assert_eq!(f.service.as_deref(), Some("s"));
                assert!(f.source.line > 0, "{f:?}");
                assert!(f.source.file.as_ref() == "services/s.json" || f.source.file.as_ref() == "iam/s.json");
            }
        }
    }

    #[test]
    fn behind_iap_only_public_iap_access_makes_a_service_public() {
        let iap = |disabled: bool| {
            format!(
                r#"{{"name": "s", "ingress": "INGRESS_TRAFFIC_ALL", "iapEnabled": true, "invokerIamDisabled": {disabled}, "template": {{"serviceAccount": "s@p.iam.gserviceaccount.com"}}}}"#
            )
        };
        let accessor = "roles/iap.httpsResourceAccessor";
        // (invoker check disabled, service binding, project moat.yaml iam, expected)
        type Case<'a> = (bool, Option<(&'a str, &'a str)>, &'a str, &'a [(&'a str, Severity)]);
        let cases: &[Case<'_>] = &[
            // IAP refuses callers without access whatever the invoker setting (explain: layer iap).
            (true, None, "", &[]),
            (false, Some(("roles/run.invoker", "allUsers")), "", &[]),
            (true, Some((accessor, "allUsers")), "", &[("MOAT001", Severity::High)]),
            (false, Some((accessor, "allAuthenticatedUsers")), "", &[("MOAT001", Severity::High)]),
            (
                false,
                None,
                "iam:\n  bindings:\n    - role: roles/iap.httpsResourceAccessor\n      members:\n        - allUsers\n",
                &[("MOAT001", Severity::High)],
            ),
            (
                false,
                None,
                "iam:\n  bindings:\n    - role: roles/run.invoker\n      members:\n        - allUsers\n",
                &[],
            ),
        ];
        for (disabled, binding, moat, expected) in cases {
            let svc = iap(*disabled);
            let pol = binding.map(|(r, m)| policy(r, m, false));
            let mut files = vec![("services/s.json", svc.as_str())];
            if let Some(p) = &pol {
                files.push(("iam/s.json", p.as_str()));
            }
            let p = project(moat, &files);
            let mut found = check_public(&p);
            found.extend(check_internal_anonymous(&p));
            let got: Vec<(&str, Severity)> = found.iter().map(|f| (f.rule, f.severity)).collect();
            assert_eq!(&got, expected, "disabled={disabled} {binding:?} {moat:?}");
        }
    }

    #[test]
    fn the_ingress_in_force_is_judged_not_the_desired_one() {
        use crate::check::testing::v1;
        // Desired `internal`, but `all` still in force: the internet reaches it (explain agrees).
        let svc = v1(
            "s",
            "    run.googleapis.com/ingress: internal\n    run.googleapis.com/ingress-status: all\n    run.googleapis.com/invoker-iam-disabled: 'true'\n",
            "",
        );
        let p = project("", &[("services/s.yaml", svc.as_str())]);
        let found = check_public(&p);
        assert_eq!(found.iter().map(|f| (f.rule, f.severity)).collect::<Vec<_>>(), [("MOAT001", Severity::High)]);
        assert!(check_internal_anonymous(&p).is_empty());
    }

    #[test]
    fn a_public_project_grant_covers_every_service_and_points_at_moat_yaml() {
        let p = project(
            "iam:\n  bindings:\n    - role: roles/run.invoker\n      members:\n        - allUsers\n",
            &[
                ("services/a.json", &service("INGRESS_TRAFFIC_ALL", false).replace("\"s\"", "\"a\"")),
                ("services/b.json", &service("INGRESS_TRAFFIC_INTERNAL_ONLY", false).replace("\"s\"", "\"b\"")),
            ],
        );
        let public = check_public(&p);
        assert_eq!(public.len(), 1);
        assert!(public.iter().all(|f| f.source.file.as_ref() == "moat.yaml" && f.source.line == 10));
        assert!(public.iter().all(|f| f.message.contains("project `p` grants `roles/run.invoker` to `allUsers`")));
        let internal = check_internal_anonymous(&p);
        assert_eq!(internal.iter().map(|f| f.service.as_deref()).collect::<Vec<_>>(), [Some("b")]);
    }
}
