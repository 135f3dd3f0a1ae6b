//! Authorization for invocation (spec/cloudrun.md §2.1–2.4): does the principal hold
//! `run.routes.invoke` on the service, through the service policy or the project policy?
//!
//! Conditions: Cloud Run's service-level policy is not documented to support IAM conditions,
//! and moat cannot evaluate request-time attributes statically. A binding with a condition is
//! therefore treated as granting nothing (fail closed) and the decision says so with the reason
//! `iam.condition_not_evaluated`. `moat check` never counts a conditional binding as public.

use std::collections::BTreeSet;

use crate::decision::{Decision, Layer, Reason, Stage};
use crate::model::{Binding, IamPolicy, Member, MemberRef, Project};
use crate::request::Principal;
use crate::roles::{Permission, grants};

/// Proof that the authorizer permitted the call; only this module builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit(());

/// Where a binding sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Project,
    Service(&'a str),
    Secret(&'a str),
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Project => f.write_str("the project"),
            Self::Service(s) => write!(f, "service `{s}`"),
            Self::Secret(s) => write!(f, "secret `{s}`"),
        }
    }
}

/// A binding that grants a permission, where it sits and the member that matched.
pub type Grant<'a> = (Scope<'a>, &'a Binding, &'a MemberRef);

/// The first binding that grants `permission` to `principal`, if any, and conditional bindings
/// that would have matched.
pub fn find_grant<'a>(
    principal: &Principal,
    permission: Permission,
    policies: &[(Scope<'a>, &'a IamPolicy)],
    project: &Project,
) -> (Option<Grant<'a>>, Vec<(Scope<'a>, &'a Binding)>) {
    let mut conditional = Vec::new();
    for (scope, policy) in policies {
        for b in policy.bindings.iter().filter(|b| grants(&b.role, permission)) {
            let Some(m) = b.members.iter().find(|m| member_matches(&m.member, principal, project)) else { continue };
            if b.condition.is_some() {
                conditional.push((*scope, b));
                continue;
            }
            return (Some((*scope, b, m)), conditional);
        }
    }
    (None, conditional)
}

pub fn authorize(principal: &Principal, service: &crate::model::Service, project: &Project) -> Stage<Permit> {
    let policies = [(Scope::Service(&service.name), &service.iam), (Scope::Project, &project.iam)];
    let (grant, conditional) = find_grant(principal, Permission::RunRoutesInvoke, &policies, project);
    let mut reasons: Vec<Reason> = conditional
        .iter()
        .map(|(scope, b)| {
            Reason::new(
                "iam.condition_not_evaluated",
                format!(
                    "the binding of `{}` on {scope} has a condition (`{}`); moat does not evaluate conditions, so it grants nothing",
                    b.role,
                    b.condition.as_ref().map(|c| c.expression.as_str()).unwrap_or_default()
                ),
                Some(&b.source),
            )
        })
        .collect();
    if let Some((scope, b, m)) = grant {
        let via = if b.implied { " (Google's automatic grant to the default compute service account)" } else { "" };
        reasons.push(Reason::new(
            "iam.binding",
            format!(
                "{principal} matches `{}` in the binding of `{}` on {scope}{via}, which carries run.routes.invoke",
                m.member, b.role
            ),
            Some(&m.source),
        ));
        return Ok((Permit(()), reasons));
    }
    let (code, msg) = match principal {
        Principal::Anonymous => (
            "iam.anonymous",
            format!(
                "`{}` requires authentication: no `allUsers` binding carries run.routes.invoke, and the caller sent no token",
                service.name
            ),
        ),
        p => (
            "iam.no_binding",
            format!("{p} holds no role with run.routes.invoke on service `{}` or on the project", service.name),
        ),
    };
    // Point at the service's policy file, where the missing grant would go.
    reasons.push(Reason::new(code, msg, Some(service.iam.source.as_ref().unwrap_or(&service.source))));
    Err(Decision::deny(Layer::Authorization, Some(403), reasons))
}

/// Whether `member` names `principal`. Groups are expanded through the project's group
/// directory (nested groups included).
pub fn member_matches(member: &Member, principal: &Principal, project: &Project) -> bool {
    match_inner(member, principal, project, &mut BTreeSet::new())
}

fn match_inner<'a>(
    member: &'a Member,
    principal: &Principal,
    project: &'a Project,
    seen: &mut BTreeSet<&'a str>,
) -> bool {
    match (member, principal) {
        (Member::AllUsers, _) => true,
        (_, Principal::Anonymous) => false,
        (Member::AllAuthenticatedUsers, _) => true,
        (Member::User(e), Principal::User(p))
        | (Member::ServiceAccount(e), Principal::ServiceAccount(p))
        | (Member::Federated(e), Principal::Federated(p)) => e == p,
        (Member::Group(g), _) => {
            if !seen.insert(g.as_str()) {
                return false;
            }
            project
                .groups
                .get(g)
                .is_some_and(|grp| grp.members.iter().any(|m| match_inner(&m.member, principal, project, seen)))
        }
        (Member::Domain(d), Principal::User(e)) => e.rsplit_once('@').is_some_and(|(_, dom)| dom == d),
        (Member::ProjectOwner(p), _) => legacy(project, p, "roles/owner", principal, seen),
        (Member::ProjectEditor(p), _) => legacy(project, p, "roles/editor", principal, seen),
        (Member::ProjectViewer(p), _) => legacy(project, p, "roles/viewer", principal, seen),
        _ => false,
    }
}

/// `projectOwner:P` and friends: holders of the basic role on project P (only this project is
/// known to moat).
fn legacy<'a>(project: &'a Project, p: &str, role: &str, principal: &Principal, seen: &mut BTreeSet<&'a str>) -> bool {
    project.is_self(p)
        && project.iam.bindings.iter().filter(|b| b.role == role && b.condition.is_none()).any(|b| {
            b.members.iter().any(|m| {
                !matches!(m.member, Member::ProjectOwner(_) | Member::ProjectEditor(_) | Member::ProjectViewer(_))
                    && match_inner(&m.member, principal, project, seen)
            })
        })
}
