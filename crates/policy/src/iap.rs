//! Identity-Aware Proxy in front of a service (`iap-enabled`, spec/cloudrun.md §2.10): after
//! ingress and after the caller's token is authenticated, IAP admits only callers that hold
//! `roles/iap.httpsResourceAccessor` (on the service's policy or the project), then calls the
//! service as its own service agent, so the invoker check is asked of the agent, not of the
//! caller.
//!
//! What moat assumes where the spec is unsure ([U] there): IAP refuses with status 403 (its own
//! page; a browser without a session would be sent to Google sign-in instead, which moat does
//! not emulate); a caller's token is accepted for the same audiences as the service's own
//! (its URLs and custom audiences); the accessor role is looked up on the service and project
//! IAM policies moat already holds, since moat has no separate IAP resource policy.

use crate::authz::{Permit, Scope, authorize, find_grant};
use crate::decision::{Decision, Layer, Reason, Stage};
use crate::model::{Project, Service};
use crate::request::Principal;
use crate::roles::{IAP_ACCESSOR, Permission};

/// The status of IAP's own refusal.
pub const REFUSAL_STATUS: u16 = 403;

/// IAP's service agent in `project`: the identity IAP calls the service with.
pub fn agent(project: &Project) -> Principal {
    Principal::ServiceAccount(format!("service-{}@gcp-sa-iap.iam.gserviceaccount.com", project.number))
}

/// IAP's own check: does `principal` (already authenticated) hold IAP access to `service`?
pub fn admit(principal: &Principal, service: &Service, project: &Project) -> Stage {
    let policies = [(Scope::Service(&service.name), &service.iam), (Scope::Project, &project.iam)];
    let (grant, conditional) = find_grant(principal, Permission::IapAccess, &policies, project);
    let mut reasons: Vec<Reason> = conditional
        .iter()
        .map(|(scope, b)| {
            Reason::new(
                "iap.condition_not_evaluated",
                format!(
                    "the binding of `{}` on {scope} has a condition; moat does not evaluate conditions, so it grants nothing",
                    b.role
                ),
                Some(&b.source),
            )
        })
        .collect();
    if let Some((scope, b, m)) = grant {
        reasons.push(Reason::new(
            "iap.access",
            format!(
                "`{}` is behind IAP, which admits {principal}: it matches `{}` in the binding of `{}` on {scope}",
                service.name, m.member, b.role
            ),
            Some(&m.source),
        ));
        return Ok(((), reasons));
    }
    let who = match principal {
        Principal::Anonymous => "the caller sent no token, and no `allUsers` binding".to_owned(),
        p => format!("{p} holds no binding that"),
    };
    reasons.push(Reason::new(
        "iap.no_access",
        format!(
            "`{}` is behind IAP (`iap-enabled`): {who} grants `{IAP_ACCESSOR}` on the service or the project, so IAP refuses with its own page",
            service.name
        ),
        Some(&service.iap_enabled.source),
    ));
    Err(Decision::deny(Layer::Iap, Some(REFUSAL_STATUS), reasons))
}

/// The invoker check behind IAP: `run.routes.invoke` for IAP's service agent, or nothing when
/// the service disabled the check (`None`: no permit was needed).
pub fn invoker(service: &Service, project: &Project) -> Stage<Option<Permit>> {
    if service.invoker_iam_disabled.value {
        return Ok((
            None,
            vec![Reason::new(
                "iam.invoker_check_disabled",
                format!("`{}` has the invoker IAM check disabled: IAP's call is not checked", service.name),
                Some(&service.invoker_iam_disabled.source),
            )],
        ));
    }
    let agent = agent(project);
    let mut reasons = vec![Reason::new(
        "iap.agent",
        format!(
            "IAP calls `{}` as its service agent {agent}, so the invoker check is made for the agent",
            service.name
        ),
        Some(&service.iap_enabled.source),
    )];
    match authorize(&agent, service, project) {
        Ok((permit, mut r)) => {
            reasons.append(&mut r);
            Ok((Some(permit), reasons))
        }
        Err(mut d) => {
            reasons.append(&mut d.reasons);
            d.reasons = reasons;
            Err(d)
        }
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "the test project must load")]
mod tests {
    use super::*;
    use crate::check::testing::{project, v1};

    fn policy(bindings: &str) -> String {
        format!("{{\"bindings\": [{bindings}]}}")
    }

    #[test]
    fn only_accessors_pass_and_conditions_grant_nothing() {
        let svc = v1("app", "    run.googleapis.com/iap-enabled: 'true'\n", "");
        let moat = "iam:\n  bindings:\n    - role: roles/owner\n      members: [\"user:boss@example.com\"]\n";
        let iam = policy(
            r#"{"role": "roles/iap.httpsResourceAccessor", "members": ["allUsers"], "condition": {"title": "t", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}},
               {"role": "roles/iap.httpsResourceAccessor", "members": ["user:dev@example.com"]}"#,
        );
        let p = project(moat, &[("services/app.yaml", &svc), ("iam/app.json", &iam)]);
        let Some(s) = p.service("app") else { panic!("app loads") };
        let codes = |who: Principal| match admit(&who, s, &p) {
            Ok(((), r)) | Err(Decision { reasons: r, .. }) => r.iter().map(|r| r.code).collect::<Vec<_>>(),
        };
        assert!(admit(&Principal::User("dev@example.com".into()), s, &p).is_ok());
        // The project owner may edit IAP's policy but is not let through by it.
        let boss = admit(&Principal::User("boss@example.com".into()), s, &p);
        assert!(boss.is_err_and(|d| d.layer == Some(Layer::Iap) && d.status == Some(REFUSAL_STATUS)));
        assert_eq!(codes(Principal::Anonymous), ["iap.condition_not_evaluated", "iap.no_access"]);
    }

    #[test]
    fn the_agent_is_the_projects_iap_service_agent() {
        let p = project("", &[("services/app.yaml", &v1("app", "", ""))]);
        assert_eq!(agent(&p), Principal::ServiceAccount("service-1234@gcp-sa-iap.iam.gserviceaccount.com".into()));
    }
}
