//! What a config reload may change while moat runs, and what needs a restart.
//!
//! Hot: everything the front door decides with (IAM policies, groups, ingress, audiences,
//! invoker check, default URL, load balancers' hosts and routes, domain mappings, Cloud Armor,
//! perimeter, connectors, egress settings, accepted findings). Those live in the project
//! snapshot, which the front door swaps atomically; a request keeps the snapshot it started
//! with. Secrets declared in moat.yaml are applied to the store by the reload itself
//! ([`declared_secret_changes`]). Not hot: whatever was turned into a socket, a process, an
//! environment or a secret mount at start.

use moat_policy::Project;
use moat_policy::model::{EnvValue, RunTarget, Secret, SecretRef, Service};
use moat_policy::secret_access::PolicyDoc;

use super::env::Contract;
use crate::frontdoor::listener_origins;

/// A reload that changes something only a restart can apply. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("needs a restart: {}", .changes.join("; "))]
pub struct NeedsRestart {
    pub changes: Vec<String>,
}

/// Why a reload was refused; nothing of the project was swapped in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    NeedsRestart(#[from] NeedsRestart),
    /// A secret declared in moat.yaml could not be created, given its policy or seeded.
    #[error("{0}")]
    Secrets(String),
    /// A security policy uses preconfigured WAF rules and the CRS rules cannot be loaded.
    #[error("{0}")]
    Waf(String),
}

/// What differs between the running project and `new` that the running processes and
/// listeners cannot pick up. `workloads`: instances were started from `run:` commands
/// (`moat up`), so their service account and env are fixed too.
pub fn restart_changes(old: &Project, new: &Project, workloads: bool) -> Vec<String> {
    let mut out = Vec::new();
    if (&old.id, &old.number, &old.region) != (&new.id, &new.number, &new.region) {
        out.push("the project id, number or region changed".to_owned());
    }
    if old.listeners != new.listeners {
        out.push("`listeners:` changed (addresses are bound at start)".to_owned());
    }
    let store = |p: &Project| p.rate_limit_state.as_ref().map(|r| (r.redis.clone(), r.on_error, r.timeout));
    if store(old) != store(new) {
        out.push("`rate_limit_state:` changed (the store is connected at start)".to_owned());
    }
    let added: Vec<&str> = new.services.keys().filter(|s| !old.services.contains_key(*s)).map(String::as_str).collect();
    let removed: Vec<&str> =
        old.services.keys().filter(|s| !new.services.contains_key(*s)).map(String::as_str).collect();
    if !added.is_empty() {
        out.push(format!("services added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push(format!("services removed: {}", removed.join(", ")));
    }
    // Networks and Shared VPC hosts each have a listener; services are reported above.
    let nets = |p: &Project| -> Vec<String> {
        listener_origins(p)
            .iter()
            .filter(|o| matches!(o, moat_policy::Origin::Vpc(_)))
            .map(ToString::to_string)
            .collect()
    };
    if nets(old) != nets(new) {
        out.push("VPC networks changed (each has its own listener)".to_owned());
    }
    let target = |p: &Project, s: &str| p.run.get(s).map(|r| r.target.clone());
    for name in old.services.keys().filter(|s| new.services.contains_key(*s)) {
        let before = target(old, name);
        if before != target(new, name) {
            out.push(format!("`run.{name}` changed"));
            continue;
        }
        if !workloads || !matches!(before, Some(RunTarget::Command { .. })) {
            continue;
        }
        let (Some(a), Some(b)) = (old.service(name), new.service(name)) else { continue };
        if a.service_account.value != b.service_account.value {
            out.push(format!("the service account of `{name}` changed (its instance runs as the old one)"));
        }
        let unbound = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        if Contract::new(old, a, unbound, None).plain != Contract::new(new, b, unbound, None).plain {
            out.push(format!("the env of `{name}` changed (its instance started with the old one)"));
        }
        if secret_env(a) != secret_env(b) {
            out.push(format!("the secret env of `{name}` changed (its instance read its secrets at start)"));
        }
        if secret_volumes(a) != secret_volumes(b) {
            out.push(format!("the secret volumes of `{name}` changed (its instance's files were laid out at start)"));
        }
    }
    out
}

/// The env vars set from secrets, in order: name and reference.
fn secret_env(s: &Service) -> Vec<(&str, &SecretRef)> {
    s.env
        .iter()
        .filter_map(|e| match &e.value {
            EnvValue::Secret(r) => Some((e.name.as_str(), r)),
            EnvValue::Plain(_) => None,
        })
        .collect()
}

/// Everything of a secret volume that decides its files: mount path, references, paths and
/// modes (the model's types carry source spans, which a moved line must not count as a change).
type VolumeShape<'a> = (&'a str, Option<&'a str>, &'a [SecretRef], &'a [String], &'a [Option<u32>], Option<u32>);

fn secret_volumes(s: &Service) -> Vec<VolumeShape<'_>> {
    s.volumes
        .iter()
        .map(|v| (v.name.as_str(), v.mount_path.as_deref(), &v.files[..], &v.paths[..], &v.modes[..], v.default_mode))
        .collect()
}

/// The secrets declared in `new`'s moat.yaml that are new or whose policy differs from
/// `old`'s: what a reload must apply to the store before it swaps the project in. A changed
/// `seed` alone is not listed (a seed only ever fills a secret without versions).
pub fn declared_secret_changes<'a>(old: &Project, new: &'a Project) -> Vec<&'a Secret> {
    new.secrets
        .values()
        .filter(|s| {
            old.secrets.get(&s.name).is_none_or(|o| PolicyDoc::from_model(&o.iam) != PolicyDoc::from_model(&s.iam))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use moat_policy::SourceFile;

    use super::*;

    const MOAT: &str =
        "project:\n  id: p\n  number: \"1\"\n  region: us-central1\nrun:\n  api:\n    url: http://127.0.0.1:9\n";
    const API: &str = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\n  namespace: '1'\n  labels:\n    cloud.googleapis.com/location: us-central1\nspec:\n  template:\n    spec:\n      containers:\n      - image: api\n";

    fn load(moat: &str, iam: Option<&str>) -> Project {
        let mut files = vec![
            SourceFile { path: "moat.yaml".into(), text: moat.into() },
            SourceFile { path: "services/api.yaml".into(), text: API.into() },
        ];
        if let Some(iam) = iam {
            files.push(SourceFile { path: "iam/api.json".into(), text: iam.into() });
        }
        moat_policy::load(&files).unwrap()
    }

    #[test]
    fn policy_changes_are_hot() {
        let iam = r#"{"bindings": [{"role": "roles/run.invoker", "members": ["allUsers"]}]}"#;
        assert_eq!(restart_changes(&load(MOAT, None), &load(MOAT, Some(iam)), true), Vec::<String>::new());
    }

    const RUN: &str = "run:\n  api:\n    command: [app]\n";

    fn with_secrets(service: &str, secrets: &str) -> Project {
        let moat = format!("project:\n  id: p\n  number: \"1\"\n  region: us-central1\n{secrets}{RUN}");
        let files = [
            SourceFile { path: "moat.yaml".into(), text: moat },
            SourceFile { path: "services/api.json".into(), text: service.into() },
        ];
        moat_policy::load(&files).unwrap()
    }

    fn service(env: &str, volumes: &str, mounts: &str) -> String {
        format!(
            r#"{{"name": "api", "template": {{"containers": [{{"image": "i", "env": [{env}], "volumeMounts": [{mounts}]}}], "volumes": [{volumes}]}}}}"#
        )
    }

    #[test]
    fn secret_env_and_volume_changes_need_a_restart() {
        let env = r#"{"name": "K", "valueSource": {"secretKeyRef": {"secret": "k", "version": "1"}}}"#;
        let vol = r#"{"name": "v", "secret": {"secret": "s", "items": [{"path": "f", "version": "latest"}]}}"#;
        let mount = r#"{"name": "v", "mountPath": "/s"}"#;
        let base = with_secrets(&service(env, vol, mount), "");
        // The same, written differently (spans move): nothing to restart.
        let spaced = with_secrets(&format!("\n\n{}", service(env, vol, mount)), "");
        assert_eq!(restart_changes(&base, &spaced, true), Vec::<String>::new());
        let cases = [
            (service(&env.replace(r#""1""#, r#""2""#), vol, mount), "the secret env of `api` changed"),
            (service("", vol, mount), "the secret env of `api` changed"),
            (service(env, &vol.replace("latest", "3"), mount), "the secret volumes of `api` changed"),
            (service(env, vol, &mount.replace("/s", "/t")), "the secret volumes of `api` changed"),
            (
                service(env, &vol.replace(r#""path": "f""#, r#""path": "f", "mode": 256"#), mount),
                "the secret volumes of `api` changed",
            ),
        ];
        for (changed, want) in cases {
            let got = restart_changes(&base, &with_secrets(&changed, ""), true);
            assert!(got.len() == 1 && got[0].starts_with(want), "{changed}: {got:?}");
            // `moat serve` starts no instance: nothing was read at start.
            assert_eq!(restart_changes(&base, &with_secrets(&changed, ""), false), Vec::<String>::new());
        }
    }

    #[test]
    fn declared_secrets_that_are_new_or_whose_iam_changed_are_applied() {
        let svc = service("", "", "");
        let grant = |m: &str| {
            format!(
                "    iam:\n      bindings:\n        - role: roles/secretmanager.secretAccessor\n          members: ['{m}']\n"
            )
        };
        let decl = |a: &str, b: &str| format!("secrets:\n  - name: a\n{a}  - name: b\n    seed: random\n{b}");
        let old = with_secrets(&svc, &decl(&grant("user:x@example.com"), ""));
        let names = |new: &Project| -> Vec<String> {
            declared_secret_changes(&old, new).iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(&old), Vec::<String>::new(), "nothing changed");
        assert_eq!(names(&with_secrets(&svc, &decl(&grant("user:y@example.com"), ""))), ["a"]);
        assert_eq!(names(&with_secrets(&svc, &decl("", ""))), ["a"], "a policy removed is a change");
        let more = format!("{}  - name: c\n", decl(&grant("user:x@example.com"), &grant("user:z@example.com")));
        assert_eq!(names(&with_secrets(&svc, &more)), ["b", "c"]);
        // A changed seed alone is not applied: a seed only fills a secret without versions.
        let reseeded = decl(&grant("user:x@example.com"), "").replace("seed: random", "seed: {file: s.txt}");
        assert_eq!(names(&with_secrets(&svc, &reseeded)), Vec::<String>::new());
    }

    #[test]
    fn listeners_and_upstreams_need_a_restart() {
        let moved = format!("{MOAT}listeners:\n  internet: 127.0.0.1:9999\n");
        let changes = restart_changes(&load(MOAT, None), &load(&moved, None), false);
        assert_eq!(changes, ["`listeners:` changed (addresses are bound at start)"]);
        let other = MOAT.replace("127.0.0.1:9", "127.0.0.1:10");
        assert_eq!(restart_changes(&load(MOAT, None), &load(&other, None), false), ["`run.api` changed"]);
    }

    #[test]
    fn the_rate_limit_store_needs_a_restart_but_not_a_moved_line() {
        let shared = format!("{MOAT}rate_limit_state: {{redis: \"redis://127.0.0.1:6379/0\"}}\n");
        let changes = restart_changes(&load(MOAT, None), &load(&shared, None), false);
        assert_eq!(changes, ["`rate_limit_state:` changed (the store is connected at start)"]);
        let open = shared.replace('}', ", on_error: open}");
        assert_eq!(restart_changes(&load(&shared, None), &load(&open, None), false).len(), 1);
        let moved = format!("# a comment\n{shared}");
        assert_eq!(restart_changes(&load(&shared, None), &load(&moved, None), false), Vec::<String>::new());
    }
}
