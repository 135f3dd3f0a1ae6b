//! One request's whole path, layer by layer: network → edge → ingress → authentication →
//! IAP (only with `iap-enabled`) → authorization. `explain` and the front door both run this order; the edge stage (a load
//! balancer's security policy) runs when the request facts are known: always at the front door,
//! for `explain`'s single query (`admit_with_edge`); the matrix, which has none, evaluates it
//! with the rules that read the request set aside (`admit_for_matrix`).

use crate::armor::{EdgeOutcome, EdgeRequest, EdgeVerdict, ExceedAction, HeaderToAdd, Redirect};
use crate::authn::authenticate;
use crate::authz::authorize;
use crate::decision::{Decision, Layer, Reason};
use crate::edge::{Gate, MatrixEdge};
use crate::egress::{Destination, origin_of_call};
use crate::ingress::{Door, ingress};
use crate::model::{LbScheme, LoadBalancer, Project, Service};
use crate::network::reach;
use crate::request::{Entry, NetOrigin, Origin, TokenFacts};

/// A question `explain` cannot ask of this project (exit 2, not a decision).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no service named `{name}` in the project (services: {known})")]
    UnknownService { name: String, known: String },
    #[error("no VPC network `{0}` in the project (declare it under `networks:` in moat.yaml)")]
    UnknownNetwork(String),
    #[error("no load balancer `{0}` in moat.yaml")]
    UnknownLoadBalancer(String),
    #[error("load balancer `{lb}` has no route to service `{service}` (it routes to: {routes})")]
    LbDoesNotRoute { lb: String, service: String, routes: String },
    #[error("domain `{domain}` is not mapped to service `{service}` (see `domain_mappings` in moat.yaml)")]
    DomainNotMapped { domain: String, service: String },
    #[error("service `{service}` has no traffic tag `{tag}`")]
    UnknownTag { service: String, tag: String },
}

/// The door a request uses, resolved against the project.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedEntry<'a> {
    pub door: Door,
    pub lb: Option<&'a LoadBalancer>,
}

pub fn resolve_entry<'a>(
    project: &'a Project,
    service: &Service,
    entry: &Entry,
) -> Result<ResolvedEntry<'a>, QueryError> {
    match entry {
        Entry::DefaultUrl => Ok(ResolvedEntry { door: Door::DefaultUrl, lb: None }),
        Entry::Tag(t) if service.has_tag(t) => Ok(ResolvedEntry { door: Door::DefaultUrl, lb: None }),
        Entry::Tag(t) => Err(QueryError::UnknownTag { service: service.name.clone(), tag: t.clone() }),
        Entry::Domain(d) => match project.domain_mapping(d) {
            Some(m) if m.service == service.name => Ok(ResolvedEntry { door: Door::CustomDomain, lb: None }),
            _ => Err(QueryError::DomainNotMapped { domain: d.clone(), service: service.name.clone() }),
        },
        Entry::Lb(name) => {
            let lb = project.load_balancer(name).ok_or_else(|| QueryError::UnknownLoadBalancer(name.clone()))?;
            if !lb.routes_to(&service.name) {
                let mut routes: Vec<&str> = lb.routes.iter().map(|r| r.service.as_str()).collect();
                routes.dedup();
                return Err(QueryError::LbDoesNotRoute {
                    lb: name.clone(),
                    service: service.name.clone(),
                    routes: routes.join(", "),
                });
            }
            Ok(ResolvedEntry { door: Door::of_lb(lb.scheme), lb: Some(lb) })
        }
    }
}

pub fn lookup_service<'a>(project: &'a Project, name: &str) -> Result<&'a Service, QueryError> {
    project.service(name).ok_or_else(|| QueryError::UnknownService {
        name: name.to_owned(),
        known: project.services.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

/// The network origin of a request, resolving a calling service through its egress settings.
pub fn resolve_origin(
    project: &Project,
    origin: &Origin,
    entry: ResolvedEntry<'_>,
) -> Result<(NetOrigin, Vec<Reason>), QueryError> {
    match origin {
        Origin::Internet => Ok((NetOrigin::Internet, Vec::new())),
        Origin::Vpc(n) => {
            if project.is_self(&n.project) && project.network(&n.network).is_none() {
                return Err(QueryError::UnknownNetwork(n.network.clone()));
            }
            let n = if project.is_self(&n.project) {
                crate::model::NetworkRef { project: project.id.clone(), network: n.network.clone() }
            } else {
                n.clone()
            };
            Ok((NetOrigin::Vpc(n), Vec::new()))
        }
        Origin::Google { product, project: p } => {
            Ok((NetOrigin::Google { product: *product, project: p.clone() }, Vec::new()))
        }
        Origin::Service(name) => {
            let caller = lookup_service(project, name)?;
            let dest = match entry.lb {
                Some(lb) if lb.scheme == LbScheme::Internal => Destination::Private,
                _ => Destination::Public,
            };
            let (o, r) = origin_of_call(caller, dest, project);
            Ok((o, vec![r]))
        }
    }
}

/// The network and ingress part of the path: everything that depends on where the request
/// comes from and which door it uses, and nothing on who sends it.
pub fn admit(
    project: &Project,
    service: &Service,
    origin: &Origin,
    entry: &Entry,
) -> Result<Result<Vec<Reason>, Decision>, QueryError> {
    admit_with_edge(project, service, origin, entry, None)
}

/// [`admit`], with the load balancer's security policy evaluated between network and ingress
/// for the request facts `edge` gives (`explain`'s single query). `None` leaves the edge out.
pub fn admit_with_edge(
    project: &Project,
    service: &Service,
    origin: &Origin,
    entry: &Entry,
    edge: Option<&crate::edge::EdgeFacts>,
) -> Result<Result<Vec<Reason>, Decision>, QueryError> {
    admit_inner(project, service, origin, entry, edge.map_or(EdgeStage::Skip, EdgeStage::Query))
}

/// [`admit`] for the matrix, with `edge` (what [`matrix_edge`] said of the entry's security
/// policy) between network and ingress: a closed policy refuses at the edge, an open one lets
/// the request on with its reasons, and one that depends on the request lets it on with the
/// `edge.depends_on_request` reasons that say which rules could refuse it.
pub fn admit_for_matrix(
    project: &Project,
    service: &Service,
    origin: &Origin,
    entry: &Entry,
    edge: Option<&MatrixEdge<'_>>,
) -> Result<Result<Vec<Reason>, Decision>, QueryError> {
    admit_inner(project, service, origin, entry, edge.map_or(EdgeStage::Skip, EdgeStage::Matrix))
}

/// The security policy of the load balancer `entry` names, evaluated for the matrix; `None`
/// when the entry is not a load balancer or has no policy.
pub fn matrix_edge<'p>(
    project: &'p Project,
    service: &Service,
    entry: &Entry,
) -> Result<Option<MatrixEdge<'p>>, QueryError> {
    let Some(lb) = resolve_entry(project, service, entry)?.lb else {
        return Ok(None);
    };
    Ok(project.security_policy(lb).map(|p| crate::edge::for_matrix(p, &project.geo, &lb_host(lb))))
}

/// What the edge stage of [`admit_inner`] evaluates.
#[derive(Clone, Copy)]
enum EdgeStage<'a, 'p> {
    /// Nothing: the edge is left out.
    Skip,
    /// The policy, for the facts a single query gives.
    Query(&'a crate::edge::EdgeFacts),
    /// The matrix's evaluation of the policy, with no request facts.
    Matrix(&'a MatrixEdge<'p>),
}

/// The edge stage for the matrix: a refusal only when the policy refuses every request.
fn matrix_edge_admits(edge: &MatrixEdge<'_>) -> Result<Vec<Reason>, Decision> {
    match (edge_admits(&edge.verdict, RateCheck::Uncounted), edge.gate) {
        (Ok((reasons, _)), _) => Ok(reasons),
        (Err(d), Gate::Closed) => Err(d),
        // The decision refuses, but a set-aside rule above it could let the request through.
        (Err(d), Gate::Open | Gate::Depends) => {
            let mut reasons: Vec<Reason> =
                d.reasons.iter().filter(|r| r.code == crate::edge::DEPENDS_ON_REQUEST).cloned().collect();
            let decided = d.reasons.last().map(|r| r.message.as_str()).unwrap_or_default();
            reasons.push(Reason::new(
                crate::edge::DEPENDS_ON_REQUEST,
                format!(
                    "the security policy refuses every request that no rule set aside above lets through ({decided}); whether this one gets through depends on the request"
                ),
                Some(&edge.verdict.rule.source),
            ));
            Ok(reasons)
        }
    }
}

/// Network, then the edge as `edge` says, then ingress.
fn admit_inner(
    project: &Project,
    service: &Service,
    origin: &Origin,
    entry: &Entry,
    edge: EdgeStage<'_, '_>,
) -> Result<Result<Vec<Reason>, Decision>, QueryError> {
    let resolved = resolve_entry(project, service, entry)?;
    let (net, mut reasons) = resolve_origin(project, origin, resolved)?;
    let prefix = |mut d: Decision, mut r: Vec<Reason>| {
        r.append(&mut d.reasons);
        d.reasons = r;
        d
    };
    match reach(&net, resolved.lb) {
        Ok(((), mut r)) => reasons.append(&mut r),
        Err(d) => return Ok(Err(prefix(d, reasons))),
    }
    match edge {
        EdgeStage::Query(facts) => {
            if let Some(lb) = resolved.lb
                && let Some(policy) = project.security_policy(lb)
            {
                let verdict = crate::edge::evaluate(policy, &project.geo, facts, &lb_host(lb));
                match edge_admits(&verdict, RateCheck::Uncounted) {
                    Ok((mut r, _)) => reasons.append(&mut r),
                    Err(d) => return Ok(Err(prefix(d, reasons))),
                }
            }
        }
        EdgeStage::Matrix(m) => match matrix_edge_admits(m) {
            Ok(mut r) => reasons.append(&mut r),
            Err(d) => return Ok(Err(prefix(d, reasons))),
        },
        EdgeStage::Skip => {}
    }
    match ingress(&net, resolved.door, service, project) {
        Ok(((), mut r)) => reasons.append(&mut r),
        Err(d) => return Ok(Err(prefix(d, reasons))),
    }
    Ok(Ok(reasons))
}

fn fail(mut d: Decision, mut r: Vec<Reason>) -> Decision {
    r.append(&mut d.reasons);
    d.reasons = r;
    d
}

/// The identity part of the path, after ingress admitted the request.
pub fn invoke(mut reasons: Vec<Reason>, token: Option<&TokenFacts>, service: &Service, project: &Project) -> Decision {
    if service.iap_enabled.value {
        return invoke_through_iap(reasons, token, service, project);
    }
    if service.invoker_iam_disabled.value {
        reasons.push(Reason::new(
            "iam.invoker_check_disabled",
            format!("`{}` has the invoker IAM check disabled: no token is checked", service.name),
            Some(&service.invoker_iam_disabled.source),
        ));
        return Decision::allow(reasons);
    }
    let principal = match authenticate(token, service) {
        Ok((p, mut r)) => {
            reasons.append(&mut r);
            p
        }
        Err(d) => return fail(d, reasons),
    };
    match authorize(&principal, service, project) {
        Ok((_permit, mut r)) => {
            reasons.append(&mut r);
            Decision::allow(reasons)
        }
        Err(d) => fail(d, reasons),
    }
}

/// Behind IAP (spec/cloudrun.md §2.10): the caller's token is authenticated, IAP admits only
/// callers with IAP access, then calls the service as its service agent, so the invoker check
/// (unless disabled) is made for the agent. The front door runs the same stages
/// (`crate::iap`), in this order.
fn invoke_through_iap(
    mut reasons: Vec<Reason>,
    token: Option<&TokenFacts>,
    service: &Service,
    project: &Project,
) -> Decision {
    let principal = match authenticate(token, service) {
        Ok((p, mut r)) => {
            reasons.append(&mut r);
            p
        }
        Err(d) => return fail(d, reasons),
    };
    match crate::iap::admit(&principal, service, project) {
        Ok(((), mut r)) => reasons.append(&mut r),
        Err(d) => return fail(d, reasons),
    }
    match crate::iap::invoker(service, project) {
        Ok((_permit, mut r)) => {
            reasons.append(&mut r);
            Decision::allow(reasons)
        }
        Err(d) => fail(d, reasons),
    }
}

/// The full decision for one request.
pub fn decide(
    project: &Project,
    service: &str,
    origin: &Origin,
    entry: &Entry,
    token: Option<&TokenFacts>,
) -> Result<Decision, QueryError> {
    let svc = lookup_service(project, service)?;
    Ok(match admit(project, svc, origin, entry)? {
        Ok(reasons) => invoke(reasons, token, svc, project),
        Err(d) => d,
    })
}

/// Reason codes of the edge stage beyond the policy's own (`crate::armor::codes`).
pub mod edge_codes {
    /// A `throttle` or `rate_based_ban` rule decided and the request is within its limit (or,
    /// in `explain`, which sees no counts, while it stays within it).
    pub const RATE_LIMIT_CONFORM: &str = "edge.rate_limit_conform";
    /// The request's key is over the rule's limit: the exceed action applies.
    pub const RATE_LIMIT_EXCEEDED: &str = "edge.rate_limit_exceeded";
    /// The request's key is banned by a `rate_based_ban` rule: the exceed action applies.
    pub const BANNED: &str = "edge.banned";
    /// The shared rate-limit state (Redis) did not answer and `on_error: closed`: the exceed
    /// action applies, as if the key were over the limit.
    pub const RATE_STATE_UNAVAILABLE: &str = "edge.rate_state_unavailable";
    /// The shared rate-limit state did not answer and `on_error: open`: the request goes on
    /// uncounted.
    pub const RATE_STATE_FAIL_OPEN: &str = "edge.rate_state_fail_open";
}

/// What the rate limiter says about a request a `throttle` or `rate_based_ban` rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateCheck {
    /// Nothing counted (`explain`): the request is explained as conforming.
    Uncounted,
    Conform,
    Exceeded,
    Banned,
    /// The counters could not be read (shared state unreachable or slow) and the configured
    /// failure policy refuses: the exceed action applies.
    Unavailable,
    /// The counters could not be read and the configured failure policy admits: the request
    /// conforms, uncounted.
    UnavailableAdmitted,
}

/// The edge stage: the security policy of the load balancer the request entered through.
/// `None` when there is nothing to evaluate (not a load balancer, or one without a policy).
pub fn edge<'p>(
    project: &'p Project,
    entry: ResolvedEntry<'_>,
    request: &EdgeRequest,
    waf: Option<&dyn crate::armor::WafEvaluator>,
) -> Option<EdgeVerdict<'p>> {
    let policy = project.security_policy(entry.lb?)?;
    Some(match waf {
        Some(waf) => policy.evaluate_with_waf(request, waf),
        None => policy.evaluate(request),
    })
}

/// What the pipeline does with an edge verdict: go on, with the reasons and the headers the
/// deciding rule adds to the request, or stop with the edge's refusal (a redirect is a refusal
/// with status 302: the request does not reach the backend). `rate` is the limiter's answer
/// when the deciding rule is a rate limit (ignored otherwise).
pub fn edge_admits<'p>(
    verdict: &EdgeVerdict<'p>,
    rate: RateCheck,
) -> Result<(Vec<Reason>, &'p [HeaderToAdd]), Decision> {
    let mut reasons = verdict.reasons.clone();
    let (limit, headers) = match &verdict.outcome {
        EdgeOutcome::Allow { request_headers_to_add } => return Ok((reasons, request_headers_to_add)),
        EdgeOutcome::Throttle { limit, request_headers_to_add }
        | EdgeOutcome::RateBasedBan { limit, request_headers_to_add, .. } => (*limit, *request_headers_to_add),
        EdgeOutcome::Deny { .. } | EdgeOutcome::Redirect { .. } | EdgeOutcome::RecaptchaUnavailable => {
            return Err(Decision::deny(Layer::Edge, verdict.outcome.status(), reasons));
        }
    };
    let t = limit.threshold;
    let rule = verdict.priority();
    let source = Some(&verdict.rule.source);
    let (code, message) = match rate {
        RateCheck::Uncounted => (
            edge_codes::RATE_LIMIT_CONFORM,
            format!(
                "rule {rule} limits each key to {} requests per {} s; explain sees no counts, so this request conforms while its key stays under the limit",
                t.count, t.interval_sec
            ),
        ),
        RateCheck::Conform => (
            edge_codes::RATE_LIMIT_CONFORM,
            format!("rule {rule}: the request's key is within {} requests per {} s", t.count, t.interval_sec),
        ),
        RateCheck::Exceeded => (
            edge_codes::RATE_LIMIT_EXCEEDED,
            format!(
                "rule {rule}: the request's key is over {} requests per {} s, so the exceed action applies",
                t.count, t.interval_sec
            ),
        ),
        RateCheck::Banned => {
            (edge_codes::BANNED, format!("rule {rule}: the request's key is banned, so the exceed action applies"))
        }
        RateCheck::Unavailable => (
            edge_codes::RATE_STATE_UNAVAILABLE,
            format!(
                "rule {rule}: the shared rate-limit state did not answer and its failure policy is closed, so the exceed action applies"
            ),
        ),
        RateCheck::UnavailableAdmitted => (
            edge_codes::RATE_STATE_FAIL_OPEN,
            format!(
                "rule {rule}: the shared rate-limit state did not answer and its failure policy is open, so the request goes on uncounted"
            ),
        ),
    };
    reasons.push(Reason::new(code, message, source));
    match rate {
        RateCheck::Uncounted | RateCheck::Conform | RateCheck::UnavailableAdmitted => Ok((reasons, headers)),
        RateCheck::Exceeded | RateCheck::Banned | RateCheck::Unavailable => {
            Err(Decision::deny(Layer::Edge, Some(exceed_status(&limit.exceed)), reasons))
        }
    }
}

/// The status of a rate limit's exceed action: its deny status, 302 for a redirect, and the
/// reCAPTCHA refusal for a reCAPTCHA redirect.
pub fn exceed_status(exceed: &ExceedAction) -> u16 {
    match exceed {
        ExceedAction::Deny(s) => *s,
        ExceedAction::Redirect(Redirect::External302 { .. }) => 302,
        ExceedAction::Redirect(Redirect::GoogleRecaptcha) => crate::armor::RECAPTCHA_REFUSAL_STATUS,
    }
}

/// The Host a request through `lb` carries when the query does not say: its first exact host,
/// else the local stand-in for its address.
pub fn lb_host(lb: &LoadBalancer) -> String {
    lb.hosts.iter().find(|h| !h.starts_with('*')).cloned().unwrap_or_else(|| format!("{}.lb.localhost", lb.name))
}
