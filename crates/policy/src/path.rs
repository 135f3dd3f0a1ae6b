//! One request's whole path, layer by layer: network → (edge) → ingress → authentication →
//! authorization. `explain` and the front door both run this order; the front door inserts the
//! edge policy of a load balancer between network and ingress.

use crate::authn::authenticate;
use crate::authz::authorize;
use crate::decision::{Decision, Reason};
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
    match ingress(&net, resolved.door, service, project) {
        Ok(((), mut r)) => reasons.append(&mut r),
        Err(d) => return Ok(Err(prefix(d, reasons))),
    }
    Ok(Ok(reasons))
}

/// The identity part of the path, after ingress admitted the request.
pub fn invoke(mut reasons: Vec<Reason>, token: Option<&TokenFacts>, service: &Service, project: &Project) -> Decision {
    let fail = |mut d: Decision, mut r: Vec<Reason>| {
        r.append(&mut d.reasons);
        d.reasons = r;
        d
    };
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
