//! The matrix over load balancers with security policies: closed entries refused at the edge
//! for every principal, the others as without the policy; single queries unchanged.

#![expect(clippy::panic, reason = "tests fail on a project that does not load")]

use super::*;
use crate::edge::DEPENDS_ON_REQUEST;
use crate::source::SourceFile;

const MOAT: &str = "project:\n  id: p\n  number: \"1234\"\n  region: us-central1\n  automatic_default_sa_grants: false\n\
    iam:\n  bindings:\n    - role: roles/run.invoker\n      members: [user:a@example.com]\n\
    load_balancers:\n";

fn lb(name: &str) -> String {
    format!(
        "  - name: {name}\n    scheme: external\n    security_policy: {name}\n    routes:\n      - path: /*\n        service: web\n"
    )
}

fn policy(name: &str, rules: &str) -> String {
    format!(r#"{{"name": "{name}", "rules": [{rules}]}}"#)
}

const DENY_ALL: &str = r#"{"action": "deny(403)", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#;
const ALLOW_ALL: &str = r#"{"action": "allow", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#;
const ALLOW_PARTNER: &str = r#"{"action": "allow", "priority": 10, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["203.0.113.0/24"]}}},"#;

/// `web` (ingress all, invoker check on) behind three load balancers: `closed` (default
/// deny), `depends` (default deny, an allow rule that needs `--source-ip`), `open`.
fn project() -> Project {
    let files = [
        ("moat.yaml".to_owned(), format!("{MOAT}{}{}{}", lb("closed"), lb("depends"), lb("open"))),
        (
            "services/web.json".to_owned(),
            r#"{"name": "web", "ingress": "INGRESS_TRAFFIC_ALL", "template": {"serviceAccount": "web@p.iam.gserviceaccount.com"}}"#
                .to_owned(),
        ),
        ("armor/closed.json".to_owned(), policy("closed", DENY_ALL)),
        ("armor/depends.json".to_owned(), policy("depends", &format!("{ALLOW_PARTNER}{DENY_ALL}"))),
        ("armor/open.json".to_owned(), policy("open", ALLOW_ALL)),
    ];
    let files: Vec<SourceFile> = files.into_iter().map(|(path, text)| SourceFile { path, text }).collect();
    crate::load(&files).unwrap_or_else(|e| panic!("{:?}", e.errors.iter().map(ToString::to_string).collect::<Vec<_>>()))
}

fn rows<'a>(m: &'a [Answer], entry: &str) -> Vec<&'a Answer> {
    m.iter().filter(|a| a.origin == "internet" && a.entry == entry).collect()
}

#[test]
fn the_matrix_reports_the_entries_a_security_policy_closes() {
    let p = project();
    let m = matrix(&p, Some("web")).unwrap_or_else(|e| panic!("{e}"));
    // Closed: refused at the edge for every principal, the invoker one included.
    let closed = rows(&m, "lb:closed");
    assert_eq!(closed.len(), 2);
    for a in &closed {
        assert_eq!(
            (a.effect, a.status, a.layer, a.edge),
            (Effect::Deny, Some(403), Some(Layer::Edge), Some(Gate::Closed))
        );
        assert_eq!(a.reasons.last().map(|r| r.code), Some("edge.default_rule"), "{a:?}");
    }
    // Depends: as without the policy, with the reasons that say which rules decide.
    let depends = rows(&m, "lb:depends");
    let open = rows(&m, "lb:open");
    for (d, o) in depends.iter().zip(&open) {
        assert_eq!(
            (d.principal.as_str(), d.effect, d.status, d.layer),
            (o.principal.as_str(), o.effect, o.status, o.layer)
        );
        assert_eq!((d.edge, o.edge), (Some(Gate::Depends), Some(Gate::Open)));
        let codes: Vec<&str> = d.reasons.iter().map(|r| r.code).take(2).collect();
        assert_eq!(codes, [DEPENDS_ON_REQUEST, DEPENDS_ON_REQUEST], "{d:?}");
        assert!(!o.reasons.iter().any(|r| r.code == DEPENDS_ON_REQUEST), "{o:?}");
    }
    assert_eq!(
        open.iter().map(|a| (a.principal.as_str(), a.effect)).collect::<Vec<_>>(),
        [("anonymous", Effect::Deny), ("user:a@example.com", Effect::Allow)]
    );
    // Entries without a policy carry no edge field.
    assert!(rows(&m, "default-url").iter().all(|a| a.edge.is_none()));
}

#[test]
fn a_single_query_is_unchanged_and_agrees_with_a_closed_entry() {
    let p = project();
    let m = matrix(&p, Some("web")).unwrap_or_else(|e| panic!("{e}"));
    for a in m.iter().filter(|a| a.origin == "internet" && a.entry.starts_with("lb:")) {
        let q = Query {
            service: "web".into(),
            origin: Origin::Internet,
            entry: a.entry.parse().unwrap_or_else(|e| panic!("{e:?}")),
            principal: Some(a.principal.parse().unwrap_or_else(|e| panic!("{e:?}"))),
            audience: None,
            request: EdgeFacts::default(),
        };
        let single = query(&p, &q).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(single.edge, None);
        match a.edge {
            // Without facts, the query refuses where the policy's decision refuses.
            Some(Gate::Depends) => {
                assert_eq!((single.effect, single.layer), (Effect::Deny, Some(Layer::Edge)));
            }
            _ => assert_eq!(Answer { edge: None, ..a.clone() }, single),
        }
    }
}
