//! MOAT003: a service is granted invoke on another, but the callee's ingress refuses the path
//! the caller's traffic takes (typically: no all-traffic VPC egress towards an internal
//! service). The call fails with a 404 that no IAM change fixes.
//!
//! Intent is read from explicit grants only: a non-basic role carrying `run.routes.invoke` on
//! the callee's own policy, naming the caller's runtime service account directly or through a
//! group. Project-level grants (MOAT012) and basic roles say nothing about which services a
//! caller means to call. Callers are grouped by the network origins their calls have (one
//! group per distinct egress shape), and each callee's doors are evaluated once per group with
//! `network::reach` and `ingress::ingress`, so the work is linear in grants, not in pairs.

use std::collections::{BTreeMap, HashMap};

use crate::check::index::{GroupSas, SaGrants, services_by_sa};
use crate::check::{Finding, Rule, Severity};
use crate::decision::Reason;
use crate::egress::{Destination, origin_of_call};
use crate::ingress::{Door, ingress};
use crate::model::{LbScheme, LoadBalancer, Project, Service};
use crate::network::reach;
use crate::request::NetOrigin;
use crate::roles::{Permission, grants, is_basic};

pub(crate) const MOAT003: Rule = Rule {
    id: "MOAT003",
    name: "CallerPathBlocked",
    title: "caller path blocked by the callee's ingress",
    severity: Severity::Medium,
    explanation: "A service's runtime service account is granted invoke on another service, so the call is intended, but the callee's ingress refuses the network path the caller's requests take. Calls from Cloud Run count as internal only when they leave through a VPC network: without VPC egress, or with `private-ranges-only` egress towards a run.app URL, they arrive from the internet and an `internal` service answers 404 whatever the token says. The usual wrong fix is opening the callee's ingress to `all`.",
    fix: "Give the caller VPC egress that carries the call (Direct VPC egress or a connector with `all-traffic`, on a subnet with Private Google Access), or call the callee through an internal load balancer in the caller's network; keep the callee's ingress as it is.",
    check,
};

/// The network origins of a caller's requests: towards public addresses (run.app, custom
/// domains, external load balancers) and towards private ones (internal load balancers).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Origins {
    public: NetOrigin,
    private: NetOrigin,
}

/// The doors to a callee a caller may use.
fn doors<'a>(project: &'a Project, callee: &Service) -> Vec<(Door, Option<&'a LoadBalancer>)> {
    let mut out = vec![(Door::DefaultUrl, None)];
    if project.domain_mappings.iter().any(|d| d.service == callee.name) {
        out.push((Door::CustomDomain, None));
    }
    out.extend(
        project
            .load_balancers
            .iter()
            .filter(|lb| lb.routes_to(&callee.name))
            .map(|lb| (Door::of_lb(lb.scheme), Some(lb))),
    );
    out
}

/// Whether any door admits a caller with these origins; if none does, the refusal on the
/// run.app URL (the door service-to-service calls use by default).
fn refusal(project: &Project, callee: &Service, origins: &Origins) -> Option<Reason> {
    let mut first = None;
    for (door, lb) in doors(project, callee) {
        let origin = match lb {
            Some(lb) if lb.scheme == LbScheme::Internal => &origins.private,
            _ => &origins.public,
        };
        let verdict = reach(origin, lb).and_then(|_| ingress(origin, door, callee, project));
        match verdict {
            Ok(_) => return None,
            Err(d) => {
                if first.is_none() {
                    first = d.reasons.into_iter().last();
                }
            }
        }
    }
    first
}

fn check(project: &Project) -> Vec<Finding> {
    let callers_of = services_by_sa(project);
    let mut groups = GroupSas::default();
    // Each caller's origins, computed once.
    let mut origins: HashMap<&str, (Origins, Reason)> = HashMap::new();
    let mut out = Vec::new();
    for callee in project.services.values() {
        let explicit =
            callee.iam.bindings.iter().filter(|b| !is_basic(&b.role) && grants(&b.role, Permission::RunRoutesInvoke));
        let holders = SaGrants::build(project, explicit, &mut groups);
        // Group the callers by origins; BTreeMap over names keeps the output deterministic.
        let mut by_origin: HashMap<Origins, BTreeMap<&str, &Service>> = HashMap::new();
        for sa in holders.named() {
            for caller in callers_of.get(sa).into_iter().flatten().filter(|c| c.name != callee.name) {
                let (o, _) = origins.entry(caller.name.as_str()).or_insert_with(|| {
                    let (public, why) = origin_of_call(caller, Destination::Public, project);
                    let (private, _) = origin_of_call(caller, Destination::Private, project);
                    (Origins { public, private }, why)
                });
                by_origin.entry(o.clone()).or_default().insert(caller.name.as_str(), caller);
            }
        }
        for (o, callers) in by_origin {
            let Some(refused) = refusal(project, callee, &o) else { continue };
            for caller in callers.values() {
                // The egress reason points at what sends the call the wrong way: the caller's
                // service (no VPC egress), its egress setting, or its subnet.
                let (why, at) = match origins.get(caller.name.as_str()) {
                    Some((_, r)) => (r.message.clone(), r.source.clone().unwrap_or_else(|| caller.source.clone())),
                    None => (String::new(), caller.source.clone()),
                };
                let grant = holders.get(&caller.service_account.value, project);
                let role = grant.first().map_or("roles/run.invoker", |(b, _)| b.role.as_str());
                out.push(MOAT003.finding(
                    Severity::Medium,
                    Some(&caller.name),
                    format!(
                        "`{}` runs as `{}`, which holds `{role}` on `{}`, but its calls cannot get in: {why}, and {} ({})",
                        caller.name,
                        caller.service_account.value,
                        callee.name,
                        refused.message,
                        refused.source.as_ref().map(ToString::to_string).unwrap_or_default()
                    ),
                    format!(
                        "send `{}`'s traffic through the VPC: `gcloud run services update {} --network NETWORK --subnet SUBNET --vpc-egress all-traffic` (the subnet needs Private Google Access), or call `{}` through an internal load balancer; do not open `{}`'s ingress",
                        caller.name, caller.name, callee.name, callee.name
                    ),
                    &at,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{ids, project};

    const MOAT: &str = "networks:\n  - name: vpc\n    subnets:\n      - {name: run, region: us-central1, range: 10.0.0.0/24, private_google_access: true}\nconnectors:\n  - {name: conn, network: vpc}\ngroups:\n  - email: callers@example.com\n    members: [\"serviceAccount:caller@p.iam.gserviceaccount.com\"]\n";

    fn caller(vpc: &str) -> String {
        format!(r#"{{"name": "caller", "template": {{"serviceAccount": "caller@p.iam.gserviceaccount.com"{vpc}}}}}"#)
    }

    fn callee(ingress: &str) -> String {
        format!(
            r#"{{"name": "callee", "ingress": "{ingress}", "template": {{"serviceAccount": "callee@p.iam.gserviceaccount.com"}}}}"#
        )
    }

    fn grant(role: &str, member: &str) -> String {
        format!(r#"{{"bindings": [{{"role": "{role}", "members": ["{member}"]}}]}}"#)
    }

    const DIRECT_ALL: &str =
        r#", "vpcAccess": {"networkInterfaces": [{"network": "vpc", "subnetwork": "run"}], "egress": "ALL_TRAFFIC"}"#;
    const DIRECT_PRIVATE: &str = r#", "vpcAccess": {"networkInterfaces": [{"network": "vpc", "subnetwork": "run"}], "egress": "PRIVATE_RANGES_ONLY"}"#;
    const CONNECTOR_ALL: &str = r#", "vpcAccess": {"connector": "conn", "egress": "ALL_TRAFFIC"}"#;

    #[test]
    fn blocked_and_open_paths() {
        let sa = "serviceAccount:caller@p.iam.gserviceaccount.com";
        let internal = "INGRESS_TRAFFIC_INTERNAL_ONLY";
        // (caller egress, callee ingress, role, member, extra moat.yaml, blocked?)
        let cases: &[(&str, &str, &str, &str, &str, bool)] = &[
            ("", internal, "roles/run.invoker", sa, "", true),
            (DIRECT_PRIVATE, internal, "roles/run.invoker", sa, "", true),
            (DIRECT_ALL, internal, "roles/run.invoker", sa, "", false),
            (CONNECTOR_ALL, internal, "roles/run.invoker", sa, "", false),
            ("", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "roles/run.invoker", sa, "", true),
            ("", "INGRESS_TRAFFIC_ALL", "roles/run.invoker", sa, "", false),
            ("", internal, "roles/run.invoker", "group:callers@example.com", "", true),
            // Basic roles carry invoke but say nothing about intent.
            ("", internal, "roles/editor", sa, "", false),
            ("", internal, "roles/run.viewer", sa, "", false),
            ("", internal, "roles/run.invoker", "serviceAccount:other@p.iam.gserviceaccount.com", "", false),
            // An internal load balancer in the caller's network is a way in.
            (
                DIRECT_PRIVATE,
                internal,
                "roles/run.invoker",
                sa,
                "load_balancers:\n  - {name: ilb, scheme: internal, network: vpc, routes: [{service: callee}]}\n",
                false,
            ),
            (
                "",
                internal,
                "roles/run.invoker",
                sa,
                "load_balancers:\n  - {name: ilb, scheme: internal, network: vpc, routes: [{service: callee}]}\n",
                true,
            ),
        ];
        for (egress, ingress, role, member, extra, blocked) in cases {
            let p = project(
                &format!("{MOAT}{extra}"),
                &[
                    ("services/caller.json", &caller(egress)),
                    ("services/callee.json", &callee(ingress)),
                    ("iam/callee.json", &grant(role, member)),
                ],
            );
            let found = check(&p);
            let expected: &[(&str, Option<&str>)] = if *blocked { &[("MOAT003", Some("caller"))] } else { &[] };
            assert_eq!(ids(&found), expected, "egress={egress} ingress={ingress} {role} {member} {extra}");
            for f in &found {
                assert!(f.message.contains("`callee`"), "{}", f.message);
                assert!(f.source.line > 0 && f.source.file.as_ref() == "services/caller.json", "{:?}", f.source);
            }
        }
    }

    #[test]
    fn message_carries_the_egress_and_ingress_reasons() {
        let p = project(
            MOAT,
            &[
                ("services/caller.json", &caller("")),
                ("services/callee.json", &callee("INGRESS_TRAFFIC_INTERNAL_ONLY")),
                ("iam/callee.json", &grant("roles/run.invoker", "serviceAccount:caller@p.iam.gserviceaccount.com")),
            ],
        );
        let found = check(&p);
        let msg = found.first().map(|f| f.message.as_str()).unwrap_or_default();
        assert!(msg.contains("has no VPC egress"), "{msg}");
        assert!(msg.contains("refuses requests from the internet"), "{msg}");
        assert!(msg.contains("services/callee.json:"), "{msg}");
    }

    #[test]
    fn callers_with_the_same_egress_are_reported_each() {
        let p = project(
            MOAT,
            &[
                ("services/a.json", &caller("").replace("\"caller\"", "\"a\"")),
                ("services/b.json", &caller("").replace("\"caller\"", "\"b\"")),
                ("services/callee.json", &callee("INGRESS_TRAFFIC_INTERNAL_ONLY")),
                ("iam/callee.json", &grant("roles/run.invoker", "serviceAccount:caller@p.iam.gserviceaccount.com")),
            ],
        );
        assert_eq!(ids(&check(&p)), [("MOAT003", Some("a")), ("MOAT003", Some("b"))]);
    }

    #[test]
    fn all_traffic_without_private_google_access_arrives_from_the_internet() {
        let moat = MOAT.replace("private_google_access: true", "private_google_access: false");
        let p = project(
            &moat,
            &[
                ("services/caller.json", &caller(DIRECT_ALL)),
                ("services/callee.json", &callee("INGRESS_TRAFFIC_INTERNAL_ONLY")),
                ("iam/callee.json", &grant("roles/run.invoker", "serviceAccount:caller@p.iam.gserviceaccount.com")),
            ],
        );
        let found = check(&p);
        assert_eq!(ids(&found), [("MOAT003", Some("caller"))]);
        // The subnet is what to change, so the finding points at it.
        assert!(
            found.iter().all(|f| f.source.file.as_ref() == "moat.yaml" && f.message.contains("Private Google Access"))
        );
    }
}
