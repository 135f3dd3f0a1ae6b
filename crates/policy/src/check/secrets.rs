//! MOAT007 (an env secret pinned to `latest`) and MOAT008 (a referenced secret the runtime
//! service account cannot read).

use std::collections::BTreeSet;

use crate::authz::{Scope, find_grant};
use crate::check::index::{GroupSas, SaGrants};
use crate::check::{Finding, Rule, Severity};
use crate::model::{EnvValue, Project};
use crate::request::Principal;
use crate::roles::{Permission, grants};

pub(crate) const MOAT007: Rule = Rule {
    id: "MOAT007",
    name: "EnvSecretLatest",
    title: "env secret pinned to latest",
    severity: Severity::Low,
    explanation: "A secret exposed as an env var is resolved once, when an instance starts. With version `latest`, instances started before and after a rotation run with different values, a rollback does not roll the secret back, and a disabled or destroyed newest version stops new instances from starting. Mounted secrets are read live and may follow `latest`.",
    fix: "Pin a version number in the env reference and roll it forward with a deploy; or mount the secret as a volume if the service must follow rotation.",
    check: check_latest,
};

pub(crate) const MOAT008: Rule = Rule {
    id: "MOAT008",
    name: "SecretNotAccessible",
    title: "runtime service account cannot access a referenced secret",
    severity: Severity::High,
    explanation: "Cloud Run checks at deploy time that the runtime service account holds `secretmanager.versions.access` on every secret the revision references, as an env var or a volume. Without it the deploy fails (or, for a grant removed later, new instances fail to start or file reads fail).",
    fix: "Grant the runtime service account `roles/secretmanager.secretAccessor` on the secret itself.",
    check: check_access,
};

fn check_latest(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in project.services.values() {
        for e in &s.env {
            let EnvValue::Secret(r) = &e.value else { continue };
            if !r.is_latest() {
                continue;
            }
            let pinned = match &r.project {
                Some(p) => format!("projects/{p}/secrets/{}:N", r.secret),
                None => format!("{}:N", r.secret),
            };
            out.push(MOAT007.finding(
                Severity::Low,
                Some(&s.name),
                format!(
                    "env var `{}` reads secret `{}` at version `latest`, resolved once when an instance starts: instances may run with different values after a rotation, and a disabled newest version stops new ones from starting",
                    e.name, r.secret
                ),
                format!(
                    "pin the version: `gcloud run services update {} --update-secrets {}={pinned}` with N the version to use",
                    s.name, e.name
                ),
                &e.source,
            ));
        }
    }
    out
}

fn check_access(project: &Project) -> Vec<Finding> {
    let mut groups = GroupSas::default();
    // Project-level grants apply to every secret: index them once.
    let on_project = SaGrants::build(
        project,
        project.iam.bindings.iter().filter(|b| grants(&b.role, Permission::SecretVersionsAccess)),
        &mut groups,
    );
    let mut out = Vec::new();
    for s in project.services.values() {
        let sa = &s.service_account.value;
        let principal = Principal::ServiceAccount(sa.clone());
        if !on_project.get(sa, project).is_empty() {
            continue;
        }
        let mut seen = BTreeSet::new();
        for (r, at) in s.secret_refs() {
            // Secrets of other projects have policies moat cannot see.
            if r.project.as_deref().is_some_and(|p| !project.is_self(p)) || !seen.insert(r.secret.as_str()) {
                continue;
            }
            let fix = format!(
                "`gcloud secrets add-iam-policy-binding {} --member serviceAccount:{sa} --role roles/secretmanager.secretAccessor`, and add the binding under the secret's `iam` in moat.yaml",
                r.secret
            );
            let Some(secret) = project.secrets.get(&r.secret) else {
                out.push(MOAT008.finding(
                    Severity::Low,
                    Some(&s.name),
                    format!(
                        "`{}` reads secret `{}`, which moat.yaml does not declare, and nothing on the project grants `{sa}` access: moat cannot tell whether the deploy will succeed",
                        s.name, r.secret
                    ),
                    format!(
                        "declare it under `secrets:` in moat.yaml with its policy (`gcloud secrets get-iam-policy {}`); if `{sa}` has no grant yet, run {fix}",
                        r.secret
                    ),
                    at,
                ));
                continue;
            };
            let policies = [(Scope::Secret(&secret.name), &secret.iam)];
            let (grant, conditional) = find_grant(&principal, Permission::SecretVersionsAccess, &policies, project);
            if grant.is_some() {
                continue;
            }
            let note = if conditional.is_empty() {
                String::new()
            } else {
                " (its only grant has a condition, which moat does not evaluate)".to_owned()
            };
            out.push(MOAT008.finding(
                Severity::High,
                Some(&s.name),
                format!(
                    "`{}` reads secret `{}`, but its runtime service account `{sa}` cannot access it{note}: the deploy fails",
                    s.name, r.secret
                ),
                format!("grant access on the secret: {fix}"),
                at,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{ids, project};

    fn service(env: &str, volumes: &str) -> String {
        format!(
            r#"{{"name": "s", "template": {{"serviceAccount": "s@p.iam.gserviceaccount.com", "containers": [{{"image": "i", "env": [{env}]}}], "volumes": [{volumes}]}}}}"#
        )
    }

    fn env_secret(secret: &str, version: &str) -> String {
        format!(
            r#"{{"name": "X", "valueSource": {{"secretKeyRef": {{"secret": "{secret}", "version": "{version}"}}}}}}"#
        )
    }

    #[test]
    fn latest_matters_for_env_only() {
        let volume = r#"{"name": "v", "secret": {"secret": "k", "items": [{"path": "k", "version": "latest"}]}}"#;
        let cases: &[(String, &str, usize)] = &[
            (env_secret("k", "latest"), "", 1),
            (env_secret("k", "3"), "", 0),
            (env_secret("projects/other/secrets/k", "latest"), "", 1),
            (r#"{"name": "X", "value": "latest"}"#.to_owned(), "", 0),
            (String::new(), volume, 0),
        ];
        for (env, vol, n) in cases {
            let p = project("", &[("services/s.json", &service(env, vol))]);
            let found = check_latest(&p);
            assert_eq!(found.len(), *n, "{env} {vol}");
            assert!(found.iter().all(|f| f.source.line > 0 && f.fix.contains("--update-secrets X=")));
        }
    }

    #[test]
    fn access_through_the_secret_the_project_or_not_at_all() {
        let sa = "serviceAccount:s@p.iam.gserviceaccount.com";
        let secret = |members: &str, cond: &str| {
            format!(
                "secrets:\n  - name: k\n    iam:\n      bindings:\n        - role: roles/secretmanager.secretAccessor\n          members: [{members}]\n{cond}"
            )
        };
        let cond = "          condition: {title: t, expression: \"true\"}\n";
        let project_grant = |role: &str| format!("iam:\n  bindings:\n    - role: {role}\n      members: [\"{sa}\"]\n");
        let env = env_secret("k", "1");
        let vol = r#"{"name": "v", "secret": {"secret": "k"}}"#;
        // (moat.yaml extra, env, volumes, expected severity)
        let cases: &[(String, &str, &str, Option<Severity>)] = &[
            (secret(&format!("\"{sa}\""), ""), &env, "", None),
            (secret("\"serviceAccount:other@p.iam.gserviceaccount.com\"", ""), &env, "", Some(Severity::High)),
            (secret("\"serviceAccount:other@p.iam.gserviceaccount.com\"", ""), "", vol, Some(Severity::High)),
            (secret(&format!("\"{sa}\""), cond), &env, "", Some(Severity::High)),
            (format!("{}{}", secret("", ""), project_grant("roles/secretmanager.secretAccessor")), &env, "", None),
            (format!("{}{}", secret("", ""), project_grant("roles/owner")), &env, "", None),
            // Editor manages secrets but cannot read payloads.
            (format!("{}{}", secret("", ""), project_grant("roles/editor")), &env, "", Some(Severity::High)),
            (String::new(), &env, "", Some(Severity::Low)),
            (String::new(), &env_secret("projects/other/secrets/k", "1"), "", None),
        ];
        for (extra, env, vol, expected) in cases {
            let p = project(extra, &[("services/s.json", &service(env, vol))]);
            let found = check_access(&p);
            assert_eq!(found.first().map(|f| f.severity), *expected, "{extra} {env} {vol}");
            assert!(found.len() <= 1);
            assert!(found.iter().all(|f| f.source.file.as_ref() == "services/s.json" && f.source.line > 0));
        }
    }

    #[test]
    fn one_finding_per_secret_even_when_referenced_twice() {
        let vol = r#"{"name": "v", "secret": {"secret": "k"}}"#;
        let p = project("secrets:\n  - name: k\n", &[("services/s.json", &service(&env_secret("k", "1"), vol))]);
        assert_eq!(ids(&check_access(&p)), [("MOAT008", Some("s"))]);
    }
}
