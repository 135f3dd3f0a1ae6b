//! MOAT014 (a security policy on an external load balancer that enforces nothing), MOAT015 (a
//! rate limit every client shares on an external load balancer), MOAT016 (security policy
//! rules shadowed by an earlier rule that always matches) and MOAT028 (a policy whose
//! preconfigured WAF rules are all in preview).
//!
//! They read the compiled policies (`Project::armor_policies`) in the order the evaluator does:
//! ascending priority, preview rules never decide. Whether a rule calls the preconfigured WAF is
//! the compiled expression's answer (`Compiled::uses_waf`), not a search of its text, so a
//! comment or a string literal naming `evaluatePreconfiguredWaf` does not count.

use std::collections::BTreeMap;

use crate::armor::{Action, KeyPart, Match, Rule as ArmorRule, SecurityPolicy};
use crate::check::index::names;
use crate::check::{Finding, Rule, Severity};
use crate::model::{LbScheme, LoadBalancer, Project};

pub(crate) const MOAT014: Rule = Rule {
    id: "MOAT014",
    name: "EdgePolicyEnforcesNothing",
    title: "security policy on an external load balancer enforces nothing",
    severity: Severity::Medium,
    explanation: "A Cloud Armor policy whose default rule is `allow`, with no enforced rule above it that denies, redirects, throttles or bans, lets every request through: the load balancer looks protected in the console and in reviews, but nothing is filtered or rate-limited. Rules in preview only log.",
    fix: "Add the rules the services need above the default rule (deny by address or expression, a throttle keyed on `IP`), or make the default rule `deny(403)` and allow what should pass; take rules out of preview once they are tuned.",
    check: check_enforces_nothing,
};

pub(crate) const MOAT015: Rule = Rule {
    id: "MOAT015",
    name: "RateLimitSharedByAllClients",
    title: "rate limit shared by every client on an external load balancer",
    severity: Severity::High,
    explanation: "A `throttle` or `rate_based_ban` rule keyed on `ALL` counts every request it matches in one bucket. On a public load balancer one client can use the whole quota, and every other client then gets the exceed action; with `rate_based_ban` everyone is banned for the ban duration. It is a denial of service anyone can trigger.",
    fix: "Count per client: set `enforceOnKey` to `IP` (or `XFF_IP`/`USER_IP` behind a proxy, or `HTTP_HEADER`/`HTTP_COOKIE` naming a session or API key).",
    check: check_shared_rate_limit,
};

pub(crate) const MOAT016: Rule = Rule {
    id: "MOAT016",
    name: "ShadowedEdgeRule",
    title: "security policy rule shadowed by an earlier rule that always matches",
    severity: Severity::Medium,
    explanation: "Cloud Armor evaluates rules by ascending priority and the first enforced match decides. After a rule that matches every request (`SRC_IPS_V1` with `*`, or the expression `true`) that is not in preview, no later rule is ever evaluated: a deny, throttle or ban written there protects nothing, and a preview rule there never logs.",
    fix: "Give the shadowed rule a priority number below the rule that always matches, narrow that rule's match, or delete the rule that can never apply.",
    check: check_shadowed,
};

pub(crate) const MOAT028: Rule = Rule {
    id: "MOAT028",
    name: "WafRulesOnlyInPreview",
    title: "every preconfigured WAF rule of a security policy is in preview",
    severity: Severity::Medium,
    explanation: "A rule in preview is evaluated and logged, never enforced. A policy whose preconfigured WAF rules (`evaluatePreconfiguredWaf('sqli-v33-stable')`, `xss`, `lfi`, `rce`...) are all in preview looks protected in the console and in reviews, but the SQL injection, cross-site scripting and other attacks those sets recognise reach the services; only the log says they would have been denied. Preview is meant for tuning a set before enforcing it, and is easily left on after the launch.",
    fix: "Review what the preview rules logged, opt out of the signatures that match legitimate traffic (`moat waf test` shows which signatures a request matches), then take the rules out of preview (`\"preview\": false`; Terraform `preview = false`).",
    check: check_waf_only_in_preview,
};

/// Whether a match holds for every request: `*`, or the literal expression `true`.
fn always_matches(m: &Match) -> bool {
    match m {
        Match::SrcIps { all, .. } => *all,
        Match::Expr(e) => {
            let mut t = e.text.trim();
            while let Some(inner) = t.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
                t = inner.trim();
            }
            t == "true"
        }
    }
}

/// How a rule's match reads in a message.
fn describe_match(m: &Match) -> &'static str {
    match m {
        Match::SrcIps { .. } => "`SRC_IPS_V1` with `*`",
        Match::Expr(_) => "the expression `true`",
    }
}

/// Each policy attached to an external load balancer that routes somewhere, with those load
/// balancers' names, by policy name.
pub(crate) fn on_external_lbs(project: &Project) -> BTreeMap<&str, (&SecurityPolicy, Vec<&str>)> {
    let mut out: BTreeMap<&str, (&SecurityPolicy, Vec<&str>)> = BTreeMap::new();
    for lb in project.load_balancers.iter().filter(|lb| lb.scheme == LbScheme::External && !lb.routes.is_empty()) {
        let (Some(name), Some(policy)) = (lb.security_policy.as_deref(), project.security_policy(lb)) else {
            continue;
        };
        out.entry(name).or_insert_with(|| (policy, Vec::new())).1.push(lb.name.as_str());
    }
    out
}

/// Each policy attached to a load balancer of either scheme that routes somewhere, with those
/// load balancers, by policy name.
fn on_routing_lbs(project: &Project) -> BTreeMap<&str, (&SecurityPolicy, Vec<&LoadBalancer>)> {
    let mut out: BTreeMap<&str, (&SecurityPolicy, Vec<&LoadBalancer>)> = BTreeMap::new();
    for lb in project.load_balancers.iter().filter(|lb| !lb.routes.is_empty()) {
        let (Some(name), Some(policy)) = (lb.security_policy.as_deref(), project.security_policy(lb)) else {
            continue;
        };
        out.entry(name).or_insert_with(|| (policy, Vec::new())).1.push(lb);
    }
    out
}

/// "external load balancer `a`", "internal load balancers `a` and `b`", or, for both schemes,
/// "load balancers `a` and `b`".
fn any_lbs_phrase(lbs: &[&LoadBalancer]) -> String {
    let scheme = |s: LbScheme| lbs.iter().all(|lb| lb.scheme == s);
    let kind = if scheme(LbScheme::External) {
        "external "
    } else if scheme(LbScheme::Internal) {
        "internal "
    } else {
        ""
    };
    let s = if lbs.len() == 1 { "" } else { "s" };
    format!("{kind}load balancer{s} {}", names(lbs.iter().map(|lb| lb.name.as_str())))
}

pub(crate) fn lbs_phrase(lbs: &[&str]) -> String {
    let s = if lbs.len() == 1 { "" } else { "s" };
    format!("external load balancer{s} {}", names(lbs.iter().copied()))
}

/// The rule that lets every request through when no enforced rule before it denies, redirects,
/// throttles or bans, with the number of such rules that are only in preview.
pub(crate) fn allows_everything(policy: &SecurityPolicy) -> Option<(&ArmorRule, usize)> {
    let mut previewed = 0;
    for r in policy.rules() {
        let enforcing = !matches!(r.action, Action::Allow);
        if r.preview {
            previewed += usize::from(enforcing);
            continue;
        }
        if enforcing {
            return None;
        }
        if always_matches(&r.matcher) {
            return Some((r, previewed));
        }
    }
    None
}

fn check_enforces_nothing(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, (policy, lbs)) in on_external_lbs(project) {
        let Some((rule, previewed)) = allows_everything(policy) else { continue };
        let which = if rule.is_default() {
            "its default rule allows".to_owned()
        } else {
            format!("rule {} allows every request", rule.priority)
        };
        let preview = match previewed {
            0 => String::new(),
            1 => " (one such rule is in preview, which only logs)".to_owned(),
            n => format!(" ({n} such rules are in preview, which only logs)"),
        };
        out.push(MOAT014.finding(
            Severity::Medium,
            None,
            format!(
                "security policy `{name}` on {} enforces nothing: {which} and no rule above it denies, redirects, throttles or bans{preview}",
                lbs_phrase(&lbs)
            ),
            format!(
                "add enforced deny or throttle rules above priority {} in `{}`, or make the default rule `deny(403)` and allow what should pass",
                rule.priority, policy.file
            ),
            &rule.source,
        ));
    }
    out
}

fn check_shared_rate_limit(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, (policy, lbs)) in on_external_lbs(project) {
        for r in policy.rules().iter().filter(|r| !r.preview) {
            let (limit, ban) = match &r.action {
                Action::Throttle(l) => (l, None),
                Action::RateBasedBan(l, b) => (l, Some(b)),
                _ => continue,
            };
            if !limit.key.iter().all(|k| *k == KeyPart::All) {
                continue;
            }
            let t = limit.threshold;
            let (severity, what, then) = match ban {
                None => (Severity::Medium, "throttles", "everyone it matches gets the exceed action".to_owned()),
                Some(b) => (Severity::High, "bans", format!("everyone it matches is banned for {} s", b.duration_sec)),
            };
            out.push(MOAT015.finding(
                severity,
                None,
                format!(
                    "rule {} of security policy `{name}` on {} {what} on key `ALL`: every client shares one count of {} per {} s, so one client can use it up and {then}",
                    r.priority,
                    lbs_phrase(&lbs),
                    t.count,
                    t.interval_sec
                ),
                format!(
                    "count per client: set `\"enforceOnKey\": \"IP\"` (or `XFF_IP`/`USER_IP` behind a proxy, or `HTTP_HEADER`/`HTTP_COOKIE` with a session or API key) on rule {} in `{}`",
                    r.priority, policy.file
                ),
                &r.source,
            ));
        }
    }
    out
}

fn check_shadowed(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, policy) in &project.armor_policies {
        let rules = policy.rules();
        let Some(first) = rules.iter().position(|r| !r.preview && always_matches(&r.matcher)) else { continue };
        let Some((shadow, after)) = rules.get(first..).and_then(<[ArmorRule]>::split_first) else { continue };
        // The default rule is unreachable too, but it cannot be removed; only the rules someone
        // wrote and expects to apply are reported.
        for r in after.iter().filter(|r| !r.is_default()) {
            let enforcing = !r.preview && !matches!(r.action, Action::Allow);
            let severity = if enforcing { Severity::Medium } else { Severity::Low };
            let kind = if r.preview { format!("preview {}", r.action) } else { r.action.to_string() };
            out.push(MOAT016.finding(
                severity,
                None,
                format!(
                    "rule {} ({kind}) of security policy `{name}` is never evaluated: rule {} ({}) before it matches every request with {}",
                    r.priority,
                    shadow.priority,
                    shadow.action,
                    describe_match(&shadow.matcher)
                ),
                format!(
                    "give rule {} a priority number below {} in `{}` if it should apply, narrow rule {}'s match, or delete rule {}",
                    r.priority, shadow.priority, policy.file, shadow.priority, r.priority
                ),
                &r.source,
            ));
        }
    }
    out
}

/// Whether a rule's match calls `evaluatePreconfiguredWaf` or `evaluatePreconfiguredExpr`.
fn calls_waf(m: &Match) -> bool {
    matches!(m, Match::Expr(e) if e.compiled.uses_waf())
}

/// The preconfigured sets an expression names (`sqli-v33-stable`), in order, read from its text:
/// the compiled expression says only whether it calls the WAF. In an expression that compiled,
/// each call's first argument is a quoted string.
fn waf_sets(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some((_, after)) = rest.split_once("evaluatePreconfigured") {
        rest = after;
        let call = after.strip_prefix("Waf").or_else(|| after.strip_prefix("Expr")).unwrap_or(after);
        let Some(arg) = call.trim_start().strip_prefix('(').map(str::trim_start) else { continue };
        let Some(quote) = arg.chars().next().filter(|c| matches!(c, '\'' | '"')) else { continue };
        let Some((set, _)) = arg.get(quote.len_utf8()..).and_then(|a| a.split_once(quote)) else { continue };
        if !out.contains(&set) {
            out.push(set);
        }
    }
    out
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The sets a WAF rule calls, as written.
fn sets_of(rule: &ArmorRule) -> Vec<&str> {
    match &rule.matcher {
        Match::Expr(e) => waf_sets(&e.text),
        Match::SrcIps { .. } => Vec::new(),
    }
}

/// "1100 (`sqli-v33-stable`)", or the bare priority when no set name could be read.
fn describe_waf_rule(rule: &ArmorRule) -> String {
    let sets: Vec<String> = sets_of(rule).iter().map(|s| format!("`{s}`")).collect();
    if sets.is_empty() { rule.priority.to_string() } else { format!("{} ({})", rule.priority, sets.join(", ")) }
}

fn check_waf_only_in_preview(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, (policy, lbs)) in on_routing_lbs(project) {
        let waf: Vec<&ArmorRule> = policy.rules().iter().filter(|r| calls_waf(&r.matcher)).collect();
        let Some(first) = waf.first() else { continue };
        // One enforced WAF rule protects against what it recognises; whether the sets cover
        // enough is MOAT024's question, not this rule's.
        if waf.iter().any(|r| !r.preview) {
            continue;
        }
        let described: Vec<String> = waf.iter().copied().map(describe_waf_rule).collect();
        let priorities: Vec<String> = waf.iter().map(|r| r.priority.to_string()).collect();
        let (every, rules, log, it, their) = if waf.len() == 1 {
            ("the", "rule", "logs the requests it matches", "it", "its set recognises")
        } else {
            ("every", "rules", "log the requests they match", "them", "their sets recognise")
        };
        let set = waf.iter().copied().flat_map(sets_of).next().unwrap_or("SET");
        out.push(MOAT028.finding(
            Severity::Medium,
            None,
            format!(
                "{every} preconfigured WAF rule of security policy `{name}` on {} is in preview: {rules} {} only {log}, so the attacks {their} reach the services",
                any_lbs_phrase(&lbs),
                and_list(&described)
            ),
            format!(
                "review what {rules} {} logged (`moat waf test --set {set} REQUEST` shows which signatures a request matches, to opt out of the false positives), then set `\"preview\": false` on {it} in `{}` (Terraform: `preview = false`)",
                and_list(&priorities),
                policy.file
            ),
            &first.source,
        ));
    }
    out
}

#[cfg(test)]
mod tests;
