//! Authorization for the secret store (spec/cloudrun.md §5.4): does the principal hold a
//! Secret Manager permission on the secret, through the secret's own policy or the project's?
//!
//! The same function decides for the Secret Manager API, for env and volume injection at
//! instance start (with the runtime service account as the principal) and for `moat check`'s
//! view of who can read what. Conditional bindings grant nothing, as for invocation.

use serde::Deserialize;

use crate::authz::{Scope, find_grant};
use crate::decision::{Decision, Layer, Reason};
use crate::model::{Binding, Condition, IamPolicy, Member, MemberRef, Project};
use crate::request::Principal;
use crate::roles::Permission;
use crate::source::SourceRef;

/// Whether `principal` holds `permission` on secret `name` (whose policy is `secret`; `None`
/// for a secret that does not exist yet, when creating one) or on the project. Denials carry
/// status 403 and say which permission was missing where.
pub fn authorize_secret(
    principal: &Principal,
    permission: Permission,
    name: &str,
    secret: Option<&IamPolicy>,
    project: &Project,
) -> Decision {
    let mut policies = Vec::with_capacity(2);
    if let Some(p) = secret {
        policies.push((Scope::Secret(name), p));
    }
    policies.push((Scope::Project, &project.iam));
    let (grant, conditional) = find_grant(principal, permission, &policies, project);
    let mut reasons: Vec<Reason> = conditional
        .iter()
        .map(|(scope, b)| {
            Reason::new(
                "iam.condition_not_evaluated",
                format!("the binding of `{}` on {scope} has a condition; moat does not evaluate conditions, so it grants nothing", b.role),
                Some(&b.source),
            )
        })
        .collect();
    match grant {
        Some((scope, b, m)) => {
            reasons.push(Reason::new(
                "iam.binding",
                format!(
                    "{principal} matches `{}` in the binding of `{}` on {scope}, which carries {}",
                    m.member,
                    b.role,
                    permission.as_str()
                ),
                Some(&m.source),
            ));
            Decision::allow(reasons)
        }
        None => {
            reasons.push(Reason::new(
                if *principal == Principal::Anonymous { "iam.anonymous" } else { "iam.no_binding" },
                format!("{principal} holds no role with {} on secret `{name}` or on the project", permission.as_str()),
                None,
            ));
            Decision::deny(Layer::Authorization, Some(403), reasons)
        }
    }
}

/// An IAM policy in Google's JSON shape (`getIamPolicy` / `setIamPolicy` bodies), as stored by
/// the secret store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDoc {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i32,
    #[serde(default)]
    pub bindings: Vec<BindingDoc>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingDoc {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionDoc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionDoc {
    #[serde(default)]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub expression: String,
}

impl PolicyDoc {
    /// The model form, checked as strictly as a policy file: roles must look like roles and
    /// members must parse. `origin` names where the policy lives (`secret db-pass`) in reasons.
    pub fn to_model(&self, origin: &str) -> Result<IamPolicy, String> {
        let file: std::sync::Arc<str> = std::sync::Arc::from(origin);
        let source = SourceRef::file(&file);
        let mut bindings = Vec::with_capacity(self.bindings.len());
        for b in &self.bindings {
            let role = &b.role;
            if !(role.starts_with("roles/") || role.starts_with("projects/") || role.starts_with("organizations/")) {
                return Err(format!("`{role}` is not an IAM role (write `roles/secretmanager.secretAccessor`)"));
            }
            let members = b
                .members
                .iter()
                .map(|m| Member::parse(m).map(|member| MemberRef { member, source: source.clone() }))
                .collect::<Result<Vec<_>, _>>()?;
            let condition = b.condition.as_ref().map(|c| Condition {
                title: if c.title.is_empty() { c.description.clone() } else { c.title.clone() },
                expression: c.expression.clone(),
            });
            bindings.push(Binding { role: role.clone(), members, condition, source: source.clone(), implied: false });
        }
        Ok(IamPolicy { bindings, source: Some(source) })
    }

    /// The JSON form of a model policy (a secret's policy from moat.yaml, seeded into the store).
    pub fn from_model(policy: &IamPolicy) -> Self {
        Self {
            version: if policy.bindings.iter().any(|b| b.condition.is_some()) { 3 } else { 1 },
            bindings: policy
                .bindings
                .iter()
                .filter(|b| !b.implied)
                .map(|b| BindingDoc {
                    role: b.role.clone(),
                    members: b.members.iter().map(|m| m.member.to_string()).collect(),
                    condition: b.condition.as_ref().map(|c| ConditionDoc {
                        title: c.title.clone(),
                        description: String::new(),
                        expression: c.expression.clone(),
                    }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let files = [crate::SourceFile { path: "moat.yaml".into(), text: yaml.into() }];
        crate::load(&files).expect("project loads")
    }

    const BASE: &str = "project: {id: demo, number: '123456789012', region: europe-west1}\n";

    fn doc(role: &str, member: &str) -> PolicyDoc {
        PolicyDoc {
            version: 1,
            bindings: vec![BindingDoc { role: role.into(), members: vec![member.into()], condition: None }],
        }
    }

    #[test]
    fn accessor_on_the_secret_reads_it_and_nothing_else() {
        let p = project(BASE);
        let sa = Principal::ServiceAccount("app@demo.iam.gserviceaccount.com".into());
        let policy = doc("roles/secretmanager.secretAccessor", "serviceAccount:app@demo.iam.gserviceaccount.com")
            .to_model("secret db")
            .expect("policy");
        assert!(authorize_secret(&sa, Permission::SecretVersionsAccess, "db", Some(&policy), &p).is_allowed());
        let d = authorize_secret(&sa, Permission::SecretVersionsAdd, "db", Some(&policy), &p);
        assert_eq!(d.status, Some(403));
        let other = Principal::ServiceAccount("web@demo.iam.gserviceaccount.com".into());
        assert!(!authorize_secret(&other, Permission::SecretVersionsAccess, "db", Some(&policy), &p).is_allowed());
    }

    #[test]
    fn project_grant_reaches_every_secret_and_conditions_grant_nothing() {
        let p = project(&format!(
            "{BASE}iam:\n  bindings:\n  - role: roles/secretmanager.admin\n    members: ['user:ops@example.com']\n"
        ));
        let ops = Principal::User("ops@example.com".into());
        assert!(authorize_secret(&ops, Permission::SecretsCreate, "new", None, &p).is_allowed());
        let mut cond = doc("roles/secretmanager.secretAccessor", "user:dev@example.com");
        if let Some(b) = cond.bindings.first_mut() {
            b.condition = Some(ConditionDoc { title: "t".into(), expression: "true".into(), ..Default::default() });
        }
        let policy = cond.to_model("secret db").expect("policy");
        let d = authorize_secret(
            &Principal::User("dev@example.com".into()),
            Permission::SecretVersionsAccess,
            "db",
            Some(&policy),
            &p,
        );
        assert!(!d.is_allowed());
        assert!(d.reasons.iter().any(|r| r.code == "iam.condition_not_evaluated"));
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        assert!(doc("secretAccessor", "user:a@b.c").to_model("s").is_err());
        assert!(doc("roles/viewer", "nobody").to_model("s").is_err());
        let round = doc("roles/viewer", "user:a@b.c");
        let model = round.to_model("s").expect("policy");
        assert_eq!(PolicyDoc::from_model(&model), round);
    }
}
