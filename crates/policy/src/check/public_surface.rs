//! MOAT023 (a public service with no load balancer and security policy in front), MOAT024 (a
//! security policy on the public surface without preconfigured WAF rules) and MOAT025 (one
//! without any rate limit).
//!
//! What is already someone else's is left alone, so one mistake gives one finding: a load
//! balancer backend whose service still has ingress `all` is MOAT002's, an external load
//! balancer without a policy MOAT011's, a policy that enforces nothing at all MOAT014's (its fix
//! already asks for deny and throttle rules), a rate limit keyed on `ALL` MOAT015's. "Public" is
//! MOAT001's notion (an `allUsers`/`allAuthenticatedUsers` invoker grant or the invoker check
//! off, `public::own_causes` and `public::project_public`), and "reachable from the internet" is
//! `ingress::ingress` for an internet origin on the run.app URL or a mapped domain.

use crate::armor::{Action, Match, SecurityPolicy};
use crate::check::edge_policy::{allows_everything, lbs_phrase, on_external_lbs};
use crate::check::public::{own_causes, project_public};
use crate::check::{Finding, Rule, Severity};
use crate::ingress::{Door, ingress};
use crate::model::{LbScheme, Project, Service};
use crate::request::NetOrigin;
use crate::source::SourceRef;

pub(crate) const MOAT023: Rule = Rule {
    id: "MOAT023",
    name: "PublicServiceWithoutEdge",
    title: "public service not behind a load balancer with a security policy",
    severity: Severity::Medium,
    explanation: "A service anyone may invoke, reachable from the internet on its run.app URL or a domain mapping with no external Application Load Balancer routing to it, meets the internet with nothing in front: no Cloud Armor WAF rules, no rate limits, no IP or geography filters. Every request that Google's front end accepts is billed and reaches the container.",
    fix: "Put the service behind an external Application Load Balancer (serverless NEG) with a Cloud Armor security policy, then set its ingress to `internal-and-cloud-load-balancing` so the run.app URL no longer bypasses it.",
    check: check_public_without_edge,
};

pub(crate) const MOAT024: Rule = Rule {
    id: "MOAT024",
    name: "EdgePolicyWithoutWaf",
    title: "security policy on the public surface without preconfigured WAF rules",
    severity: Severity::Low,
    explanation: "The hardening guides put Cloud Armor's preconfigured WAF rules (`evaluatePreconfiguredWaf('sqli-v33-stable')`, `xss`, `lfi`, `rce`...) in front of every public service: hand-written expressions catch the attacks someone thought of, the OWASP core rule set the rest. A policy on an external load balancer with no enforced rule calling `evaluatePreconfiguredWaf` or `evaluatePreconfiguredExpr` has none.",
    fix: "Add enforced rules with `evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 1})` and the other sets the services need, tuned in preview first.",
    check: check_without_waf,
};

pub(crate) const MOAT025: Rule = Rule {
    id: "MOAT025",
    name: "EdgePolicyWithoutRateLimit",
    title: "security policy on the public surface without a rate limit",
    severity: Severity::Medium,
    explanation: "A policy on an external load balancer with no enforced `throttle` or `rate_based_ban` rule lets one client send as many requests as it likes: credential stuffing on a login path, scraping, and request floods that scale the service (and the bill) up to its maximum instances.",
    fix: "Add a `throttle` (or `rate_based_ban`) rule keyed per client (`enforceOnKey: IP`, or a header or cookie naming the session), on every request or on the expensive paths.",
    check: check_without_rate_limit,
};

/// Whether an internet caller reaches the service without any load balancer: on its run.app
/// URL, or on a domain mapped to it.
fn reachable_directly(project: &Project, service: &Service) -> bool {
    let mapped = project.domain_mappings.iter().any(|d| d.service == service.name);
    let doors: &[Door] = if mapped { &[Door::DefaultUrl, Door::CustomDomain] } else { &[Door::DefaultUrl] };
    doors.iter().any(|d| ingress(&NetOrigin::Internet, *d, service, project).is_ok())
}

fn check_public_without_edge(project: &Project) -> Vec<Finding> {
    let shared = project_public(project);
    let mut out = Vec::new();
    for service in project.services.values() {
        let own = own_causes(service);
        let Some(cause) = own.first().or_else(|| shared.for_service(service).first()) else { continue };
        // Behind an external load balancer: with ingress `all` that is MOAT002's bypass, without
        // a policy MOAT011's.
        let behind_lb =
            project.load_balancers.iter().any(|lb| lb.scheme == LbScheme::External && lb.routes_to(&service.name));
        if behind_lb || !reachable_directly(project, service) {
            continue;
        }
        out.push(MOAT023.finding(
            Severity::Medium,
            Some(&service.name),
            format!(
                "{} and ingress `{}` admits the internet on its run.app URL, with no external load balancer in front: no Cloud Armor policy filters or rate-limits what reaches it",
                cause.describe(service, project),
                service.ingress_in_force().value
            ),
            format!(
                "route `{name}` through an external Application Load Balancer with a Cloud Armor policy (Terraform: a serverless NEG, a `google_compute_backend_service` with `security_policy`, and `ingress = \"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER\"`; moat.yaml: `load_balancers` with `security_policy`), then `gcloud run services update {name} --ingress internal-and-cloud-load-balancing`",
                name = service.name
            ),
            // The annotation to change (the fix), even while another setting is still in force.
            &service.ingress.source,
        ));
    }
    out
}

/// Where a finding about a whole policy points: its default rule, else its first rule.
fn policy_source(policy: &SecurityPolicy) -> Option<&SourceRef> {
    let rules = policy.rules();
    rules.iter().find(|r| r.is_default()).or_else(|| rules.first()).map(|r| &r.source)
}

fn is_waf(m: &Match) -> bool {
    match m {
        Match::Expr(e) => e.text.contains("evaluatePreconfiguredWaf") || e.text.contains("evaluatePreconfiguredExpr"),
        Match::SrcIps { .. } => false,
    }
}

/// The policies of the public surface that MOAT014 does not already report as enforcing nothing.
fn public_policies(project: &Project) -> Vec<(&str, &SecurityPolicy, Vec<&str>)> {
    on_external_lbs(project)
        .into_iter()
        .filter(|(_, (policy, _))| allows_everything(policy).is_none())
        .map(|(name, (policy, lbs))| (name, policy, lbs))
        .collect()
}

fn check_without_waf(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, policy, lbs) in public_policies(project) {
        if policy.rules().iter().any(|r| !r.preview && is_waf(&r.matcher)) {
            continue;
        }
        let Some(source) = policy_source(policy) else { continue };
        out.push(MOAT024.finding(
            Severity::Low,
            None,
            format!(
                "security policy `{name}` on {} has no enforced preconfigured WAF rule (`evaluatePreconfiguredWaf`): only its hand-written rules stand between the internet and the services",
                lbs_phrase(&lbs)
            ),
            format!(
                "add enforced rules with `evaluatePreconfiguredWaf('sqli-v33-stable', {{'sensitivity': 1}})`, `xss-v33-stable` and the other sets the services need to `{}` (Terraform: `rule {{ match {{ expr {{ expression = ... }} }} }}`), tuned in preview first",
                policy.file
            ),
            source,
        ));
    }
    out
}

fn check_without_rate_limit(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, policy, lbs) in public_policies(project) {
        let limited = policy
            .rules()
            .iter()
            .any(|r| !r.preview && matches!(r.action, Action::Throttle(_) | Action::RateBasedBan(..)));
        if limited {
            continue;
        }
        let Some(source) = policy_source(policy) else { continue };
        out.push(MOAT025.finding(
            Severity::Medium,
            None,
            format!(
                "security policy `{name}` on {} has no enforced `throttle` or `rate_based_ban` rule: one client can send as many requests as it likes",
                lbs_phrase(&lbs)
            ),
            format!(
                "add a `throttle` rule keyed on `IP` to `{}` (Terraform: `rule {{ action = \"throttle\" rate_limit_options {{ enforce_on_key = \"IP\" ... }} }}`), on every request or on the expensive paths",
                policy.file
            ),
            source,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{ids, project};

    const DEFAULT_ALLOW: &str = r#"{"action": "allow", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#;
    const DENY: &str = r#"{"action": "deny(403)", "priority": 10, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["198.51.100.0/24"]}}}"#;
    const THROTTLE: &str = r#"{"action": "throttle", "priority": 20, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}, "rateLimitOptions": {"conformAction": "allow", "exceedAction": "deny(429)", "rateLimitThreshold": {"count": 100, "intervalSec": 60}, "enforceOnKey": "IP"}}"#;

    fn service(name: &str, ingress: &str, disabled: bool) -> String {
        format!(
            r#"{{"name": "{name}", "ingress": "{ingress}", "invokerIamDisabled": {disabled}, "template": {{"serviceAccount": "x@p.iam.gserviceaccount.com"}}}}"#
        )
    }

    fn lb(scheme: &str, policy: bool, service: &str) -> String {
        let network = if scheme == "internal" { "    network: vpc\n" } else { "" };
        let policy = if policy { "    security_policy: edge\n" } else { "" };
        format!(
            "networks:\n  - name: vpc\nload_balancers:\n  - name: lb\n    scheme: {scheme}\n{network}{policy}    routes:\n      - path: /*\n        service: {service}\n"
        )
    }

    fn policy(rules: &[&str]) -> String {
        format!(r#"{{"name": "edge", "rules": [{}]}}"#, rules.join(", "))
    }

    #[test]
    fn public_services_without_an_edge() {
        const ALL: &str = "INGRESS_TRAFFIC_ALL";
        const LB: &str = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER";
        const INTERNAL: &str = "INGRESS_TRAFFIC_INTERNAL_ONLY";
        // (moat.yaml, ingress, invoker check disabled, project-level allUsers, expected)
        let cases: &[(String, &str, bool, bool, bool)] = &[
            (String::new(), ALL, true, false, true),
            (String::new(), ALL, false, true, true),
            (String::new(), ALL, false, false, false),
            (String::new(), INTERNAL, true, false, false),
            (String::new(), LB, true, false, false),
            // Behind an external load balancer: MOAT002 (ingress all) or MOAT011 (no policy).
            (lb("external", true, "s"), ALL, true, false, false),
            (lb("external", false, "s"), LB, true, false, false),
            // An internal load balancer protects nothing from the internet.
            (lb("internal", false, "s"), ALL, true, false, true),
            (lb("external", true, "other"), ALL, true, false, true),
        ];
        for (moat, ingress, disabled, project_grant, expected) in cases {
            let grant = if *project_grant {
                "iam:\n  bindings:\n    - role: roles/run.invoker\n      members: [allUsers]\n"
            } else {
                ""
            };
            let p = project(
                &format!("{moat}{grant}"),
                &[
                    ("services/s.json", &service("s", ingress, *disabled)),
                    ("services/other.json", &service("other", LB, false)),
                    ("armor/edge.json", &policy(&[DENY, THROTTLE, DEFAULT_ALLOW])),
                ],
            );
            let f = check_public_without_edge(&p);
            let want: &[(&str, Option<&str>)] = if *expected { &[("MOAT023", Some("s"))] } else { &[] };
            assert_eq!(ids(&f), want, "{moat} {ingress} {disabled} {project_grant}");
            assert!(f.iter().all(|f| f.source.file.as_ref() == "services/s.json" && f.source.line > 0));
        }
    }

    #[test]
    fn policies_without_waf_or_rate_limit() {
        let preview_throttle = THROTTLE.replace(r#""priority": 20"#, r#""priority": 20, "preview": true"#);
        // (rules, scheme, MOAT024, MOAT025)
        let cases: Vec<(Vec<&str>, &str, bool, bool)> = vec![
            (vec![DENY, THROTTLE, DEFAULT_ALLOW], "external", true, false),
            (vec![DENY, DEFAULT_ALLOW], "external", true, true),
            (vec![DENY, &preview_throttle, DEFAULT_ALLOW], "external", true, true),
            (vec![DENY, DEFAULT_ALLOW], "internal", false, false),
            // Enforces nothing: MOAT014's, not repeated here.
            (vec![DEFAULT_ALLOW], "external", false, false),
        ];
        for (rules, scheme, no_waf, no_limit) in cases {
            let p = project(
                &lb(scheme, true, "s"),
                &[
                    ("services/s.json", &service("s", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", false)),
                    ("armor/edge.json", &policy(&rules)),
                ],
            );
            let w = check_without_waf(&p);
            let r = check_without_rate_limit(&p);
            assert_eq!(w.len(), usize::from(no_waf), "{rules:?} {scheme}");
            assert_eq!(r.len(), usize::from(no_limit), "{rules:?} {scheme}");
            for f in w.iter().chain(&r) {
                assert!(f.service.is_none() && f.source.file.as_ref() == "armor/edge.json");
                assert!(
                    f.message.starts_with("security policy `edge` on external load balancer `lb`"),
                    "{}",
                    f.message
                );
            }
        }
    }
}
