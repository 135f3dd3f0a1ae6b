//! Indexes the rules build once per run, so that no rule scans every binding for every service.

use std::collections::{BTreeSet, HashMap};

use crate::authz::member_matches;
use crate::model::{Binding, Member, MemberRef, Project, Service};
use crate::request::Principal;

/// Group email → the service accounts in it, nested groups included. Each group is expanded
/// once.
#[derive(Debug, Default)]
pub(crate) struct GroupSas<'a> {
    memo: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> GroupSas<'a> {
    pub fn members(&mut self, project: &'a Project, group: &'a str) -> Vec<&'a str> {
        if let Some(sas) = self.memo.get(group) {
            return sas.clone();
        }
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![group];
        while let Some(g) = todo.pop() {
            if !seen.insert(g) {
                continue;
            }
            let Some(grp) = project.groups.get(g) else { continue };
            for m in &grp.members {
                match &m.member {
                    Member::ServiceAccount(e) => {
                        out.insert(e.as_str());
                    }
                    Member::Group(inner) => todo.push(inner.as_str()),
                    _ => {}
                }
            }
        }
        let sas: Vec<&str> = out.into_iter().collect();
        self.memo.insert(group, sas.clone());
        sas
    }
}

/// Which service accounts hold a role through a set of unconditional bindings: by email
/// (directly or through a group), through a public member, or through a legacy
/// `projectOwner:`-style member (rare; matched with `authz::member_matches`).
#[derive(Debug, Default)]
pub(crate) struct SaGrants<'a> {
    by_sa: HashMap<&'a str, Vec<(&'a Binding, &'a MemberRef)>>,
    everyone: Vec<(&'a Binding, &'a MemberRef)>,
    legacy: Vec<(&'a Binding, &'a MemberRef)>,
}

impl<'a> SaGrants<'a> {
    /// Indexes `bindings`. Bindings with a condition grant nothing here, as in `authz`.
    pub fn build(
        project: &'a Project,
        bindings: impl IntoIterator<Item = &'a Binding>,
        groups: &mut GroupSas<'a>,
    ) -> Self {
        let mut out = Self::default();
        for b in bindings.into_iter().filter(|b| b.condition.is_none()) {
            for m in &b.members {
                match &m.member {
                    Member::ServiceAccount(e) => out.by_sa.entry(e.as_str()).or_default().push((b, m)),
                    Member::Group(g) => {
                        for sa in groups.members(project, g) {
                            out.by_sa.entry(sa).or_default().push((b, m));
                        }
                    }
                    Member::AllUsers | Member::AllAuthenticatedUsers => out.everyone.push((b, m)),
                    Member::ProjectOwner(_) | Member::ProjectEditor(_) | Member::ProjectViewer(_) => {
                        out.legacy.push((b, m));
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Every (binding, member) that gives `sa` the role, in binding order per kind.
    pub fn get(&self, sa: &str, project: &Project) -> Vec<(&'a Binding, &'a MemberRef)> {
        let mut out: Vec<_> = self.by_sa.get(sa).cloned().unwrap_or_default();
        out.extend(self.everyone.iter().copied());
        if !self.legacy.is_empty() {
            let principal = Principal::ServiceAccount(sa.to_owned());
            out.extend(self.legacy.iter().copied().filter(|(_, m)| member_matches(&m.member, &principal, project)));
        }
        out
    }

    /// The service accounts named by email or through groups (not public or legacy members).
    pub fn named(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.by_sa.keys().copied()
    }
}

/// Runtime service account → the services that run as it.
pub(crate) fn services_by_sa(project: &Project) -> HashMap<&str, Vec<&Service>> {
    let mut out: HashMap<&str, Vec<&Service>> = HashMap::new();
    for s in project.services.values() {
        out.entry(s.service_account.value.as_str()).or_default().push(s);
    }
    out
}

/// `a`, `b` and `c` for messages.
pub(crate) fn names<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    match v.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::project;

    #[test]
    fn groups_expand_nested_and_cyclic() {
        let p = project(
            "groups:\n  - email: a@example.com\n    members: [\"group:b@example.com\", \"serviceAccount:x@p.iam.gserviceaccount.com\"]\n  - email: b@example.com\n    members: [\"group:a@example.com\", \"serviceAccount:y@p.iam.gserviceaccount.com\", \"user:u@example.com\"]\n",
            &[],
        );
        let mut g = GroupSas::default();
        assert_eq!(g.members(&p, "a@example.com"), ["x@p.iam.gserviceaccount.com", "y@p.iam.gserviceaccount.com"]);
        assert_eq!(g.members(&p, "b@example.com").len(), 2);
        assert!(g.members(&p, "nobody@example.com").is_empty());
    }

    #[test]
    fn index_finds_direct_group_public_and_legacy_holders_but_not_conditional() {
        let p = project(
            "groups:\n  - email: ops@example.com\n    members: [\"serviceAccount:g@p.iam.gserviceaccount.com\"]\niam:\n  bindings:\n    - role: roles/owner\n      members: [\"serviceAccount:o@p.iam.gserviceaccount.com\"]\n    - role: roles/x\n      members: [\"serviceAccount:d@p.iam.gserviceaccount.com\", \"group:ops@example.com\", \"projectOwner:p\"]\n    - role: roles/x\n      members: [\"serviceAccount:c@p.iam.gserviceaccount.com\"]\n      condition: {title: t, expression: \"true\"}\n",
            &[],
        );
        let mut g = GroupSas::default();
        let idx = SaGrants::build(&p, p.iam.bindings.iter().filter(|b| b.role == "roles/x"), &mut g);
        let cases = [
            ("d@p.iam.gserviceaccount.com", true),
            ("g@p.iam.gserviceaccount.com", true),
            ("o@p.iam.gserviceaccount.com", true),
            ("c@p.iam.gserviceaccount.com", false),
            ("z@p.iam.gserviceaccount.com", false),
        ];
        for (sa, held) in cases {
            assert_eq!(!idx.get(sa, &p).is_empty(), held, "{sa}");
        }
    }

    #[test]
    fn names_reads_like_a_sentence() {
        assert_eq!(names(["a"]), "`a`");
        assert_eq!(names(["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
