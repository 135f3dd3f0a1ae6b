//! What a config reload may change while moat runs, and what needs a restart.
//!
//! Hot: everything the front door decides with (IAM policies, groups, ingress, audiences,
//! invoker check, default URL, load balancers' hosts and routes, domain mappings, Cloud Armor,
//! perimeter, connectors, egress settings, accepted findings). Those live in the project
//! snapshot, which the front door swaps atomically; a request keeps the snapshot it started
//! with. Not hot: whatever was turned into a socket, a process or an environment at start.

use moat_policy::Project;
use moat_policy::model::RunTarget;

use super::env::Contract;
use crate::frontdoor::listener_origins;

/// A reload that changes something only a restart can apply. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("needs a restart: {}", .changes.join("; "))]
pub struct NeedsRestart {
    pub changes: Vec<String>,
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
    }
    out
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

    #[test]
    fn listeners_and_upstreams_need_a_restart() {
        let moved = format!("{MOAT}listeners:\n  internet: 127.0.0.1:9999\n");
        let changes = restart_changes(&load(MOAT, None), &load(&moved, None), false);
        assert_eq!(changes, ["`listeners:` changed (addresses are bound at start)"]);
        let other = MOAT.replace("127.0.0.1:9", "127.0.0.1:10");
        assert_eq!(restart_changes(&load(MOAT, None), &load(&other, None), false), ["`run.api` changed"]);
    }
}
