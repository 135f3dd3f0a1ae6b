//! MOAT002 (a load balancer that the run.app URL bypasses) and MOAT011 (an external load
//! balancer without a security policy).

use std::collections::BTreeMap;

use crate::check::index::names;
use crate::check::{Finding, Rule, Severity};
use crate::model::{Ingress, LbScheme, LoadBalancer, Project};

pub(crate) const MOAT002: Rule = Rule {
    id: "MOAT002",
    name: "LoadBalancerBypass",
    title: "load balancer bypassed through the run.app URL",
    severity: Severity::High,
    explanation: "A service behind a load balancer usually relies on it for Cloud Armor, IAP, TLS policy or logging. With ingress `all` the service's own run.app URL (and any domain mapping) stays open, so a caller who knows it skips the load balancer and everything it enforces.",
    fix: "Set ingress to `internal-and-cloud-load-balancing` (external load balancer) or `internal` (internal load balancer only), so that the load balancer is the only way in.",
    check: check_bypass,
};

pub(crate) const MOAT011: Rule = Rule {
    id: "MOAT011",
    name: "LoadBalancerWithoutSecurityPolicy",
    title: "external load balancer without a security policy",
    severity: Severity::Medium,
    explanation: "An external Application Load Balancer without a Cloud Armor security policy forwards whatever the internet sends: no WAF rules, no rate limits, no IP or geography filters in front of the services it routes to.",
    fix: "Attach a Cloud Armor security policy to the load balancer's backend services, export it to `armor/POLICY.json` and name it in the load balancer's `security_policy` in moat.yaml.",
    check: check_security_policy,
};

fn protections(lb: &LoadBalancer) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(policy) = &lb.security_policy {
        p.push(format!("Cloud Armor policy `{policy}`"));
    }
    if lb.iap {
        p.push("IAP".to_owned());
    }
    p
}

fn check_bypass(project: &Project) -> Vec<Finding> {
    let mut behind: BTreeMap<&str, Vec<&LoadBalancer>> = BTreeMap::new();
    for lb in &project.load_balancers {
        for r in &lb.routes {
            let lbs = behind.entry(r.service.as_str()).or_default();
            if !lbs.iter().any(|l| l.name == lb.name) {
                lbs.push(lb);
            }
        }
    }
    let mut domains: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in &project.domain_mappings {
        domains.entry(d.service.as_str()).or_default().push(d.domain.as_str());
    }
    let mut out = Vec::new();
    for (name, lbs) in behind {
        let Some(service) = project.service(name) else { continue };
        // The setting in force is what requests meet (a pending change is MOAT029's).
        if service.ingress_in_force().value != Ingress::All {
            continue;
        }
        let mut doors = Vec::new();
        if !service.default_url_disabled.value {
            doors.push("its run.app URL".to_owned());
        }
        if let Some(ds) = domains.get(name) {
            doors.push(format!("domain mapping {}", names(ds.iter().copied())));
        }
        if doors.is_empty() {
            continue;
        }
        let guarded: Vec<String> = lbs.iter().flat_map(|lb| protections(lb)).collect();
        let severity = if guarded.is_empty() { Severity::Medium } else { Severity::High };
        let with = if guarded.is_empty() { String::new() } else { format!(" with {}", guarded.join(" and ")) };
        let target = if lbs.iter().all(|lb| lb.scheme == LbScheme::Internal) {
            Ingress::Internal
        } else {
            Ingress::InternalAndCloudLoadBalancing
        };
        out.push(MOAT002.finding(
            severity,
            Some(name),
            format!(
                "`{name}` is behind load balancer {}{with} but has ingress `all`: {} reach{} it without passing the load balancer",
                names(lbs.iter().map(|lb| lb.name.as_str())),
                doors.join(" and "),
                if doors.len() == 1 { "es" } else { "" },
            ),
            format!("make the load balancer the only way in: `gcloud run services update {name} --ingress {target}`"),
            // The annotation to change (the fix), even while another setting is still in force.
            &service.ingress.source,
        ));
    }
    out
}

fn check_security_policy(project: &Project) -> Vec<Finding> {
    project
        .load_balancers
        .iter()
        .filter(|lb| lb.scheme == LbScheme::External && lb.security_policy.is_none() && !lb.routes.is_empty())
        .map(|lb| {
            let mut services: Vec<&str> = lb.routes.iter().map(|r| r.service.as_str()).collect();
            services.sort_unstable();
            services.dedup();
            MOAT011.finding(
                Severity::Medium,
                None,
                format!(
                    "external load balancer `{}` routes to {} with no Cloud Armor security policy: nothing filters or rate-limits what the internet sends them",
                    lb.name,
                    names(services)
                ),
                format!(
                    "attach a policy with `gcloud compute backend-services update BACKEND --security-policy POLICY --global`, export it to `armor/POLICY.json` and set `security_policy: POLICY` on `{}` in moat.yaml",
                    lb.name
                ),
                &lb.source,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::project;

    fn lb(name: &str, scheme: &str, extra: &str, service: &str) -> String {
        let network = if scheme == "internal" { "    network: vpc\n" } else { "" };
        format!(
            "  - name: {name}\n    scheme: {scheme}\n{network}{extra}    routes:\n      - path: /*\n        service: {service}\n"
        )
    }

    fn service(name: &str, ingress: &str, more: &str) -> String {
        format!(
            r#"{{"name": "{name}", "ingress": "{ingress}"{more}, "template": {{"serviceAccount": "x@p.iam.gserviceaccount.com"}}}}"#
        )
    }

    const NETS: &str = "networks:\n  - name: vpc\n";

    #[test]
    fn bypass_cases() {
        // (load balancers, ingress, extra service fields, domain mapping, expected severity)
        let cases: &[(String, &str, &str, bool, Option<Severity>)] = &[
            (
                lb("edge", "external", "    security_policy: edge\n", "s"),
                "INGRESS_TRAFFIC_ALL",
                "",
                false,
                Some(Severity::High),
            ),
            (lb("edge", "external", "    iap: true\n", "s"), "INGRESS_TRAFFIC_ALL", "", false, Some(Severity::High)),
            (lb("edge", "external", "", "s"), "INGRESS_TRAFFIC_ALL", "", false, Some(Severity::Medium)),
            (lb("ilb", "internal", "", "s"), "INGRESS_TRAFFIC_ALL", "", false, Some(Severity::Medium)),
            (
                lb("edge", "external", "    security_policy: edge\n", "s"),
                "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
                "",
                false,
                None,
            ),
            (lb("ilb", "internal", "", "s"), "INGRESS_TRAFFIC_INTERNAL_ONLY", "", false, None),
            (lb("edge", "external", "", "s"), "INGRESS_TRAFFIC_ALL", r#", "defaultUriDisabled": true"#, false, None),
            (
                lb("edge", "external", "", "s"),
                "INGRESS_TRAFFIC_ALL",
                r#", "defaultUriDisabled": true"#,
                true,
                Some(Severity::Medium),
            ),
            (lb("edge", "external", "", "other"), "INGRESS_TRAFFIC_ALL", "", false, None),
        ];
        for (lbs, ingress, more, mapped, expected) in cases {
            let domain = if *mapped { "domain_mappings:\n  - domain: s.example.com\n    service: s\n" } else { "" };
            let p = project(
                &format!("{NETS}load_balancers:\n{lbs}{domain}"),
                &[
                    ("services/s.json", &service("s", ingress, more)),
                    ("services/other.json", &service("other", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "")),
                    (
                        "armor/edge.json",
                        r#"{"name": "edge", "rules": [{"action": "allow", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}]}"#,
                    ),
                ],
            );
            let found = check_bypass(&p);
            assert_eq!(found.first().map(|f| f.severity), *expected, "{lbs} {ingress} {more} {mapped}");
            assert!(found.len() <= 1);
            for f in &found {
                assert_eq!(f.source.file.as_ref(), "services/s.json");
                assert!(f.source.line > 0);
            }
        }
    }

    #[test]
    fn fix_names_the_ingress_that_keeps_the_load_balancer_working() {
        let p = project(
            &format!("{NETS}load_balancers:\n{}", lb("ilb", "internal", "", "s")),
            &[("services/s.json", &service("s", "INGRESS_TRAFFIC_ALL", ""))],
        );
        assert!(check_bypass(&p).iter().all(|f| f.fix.ends_with("--ingress internal`")));
    }

    #[test]
    fn external_load_balancers_need_a_security_policy() {
        let armor = r#"{"name": "edge", "rules": [{"action": "allow", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}]}"#;
        let lbs = format!(
            "{}{}{}",
            lb("bare", "external", "", "s"),
            lb("armored", "external", "    security_policy: edge\n", "s"),
            lb("ilb", "internal", "", "s")
        );
        let p = project(
            &format!("{NETS}load_balancers:\n{lbs}"),
            &[
                ("services/s.json", &service("s", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "")),
                ("armor/edge.json", armor),
            ],
        );
        let found = check_security_policy(&p);
        assert_eq!(found.len(), 1);
        assert!(found.iter().all(|f| f.message.starts_with("external load balancer `bare` routes to `s`")));
        assert!(
            found.iter().all(|f| f.service.is_none() && f.source.file.as_ref() == "moat.yaml" && f.source.line > 0)
        );
    }
}
