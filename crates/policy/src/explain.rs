//! Answers for `moat explain`: one query, or the whole matrix of service × origin × entry ×
//! principal. Both are built from `path::admit` and `path::invoke`, the functions the front
//! door runs, so an answer here is what the gateway would do.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::decision::{Decision, Effect, Layer, Reason};
use crate::edge::{EdgeFacts, Gate};
use crate::model::{Member, NetworkRef, Project, Service};
use crate::path::{QueryError, admit_for_matrix, admit_with_edge, invoke, lookup_service, matrix_edge};
use crate::request::{Entry, GoogleProduct, Origin, Principal, TokenFacts};

/// One answered question, in the JSON shape `explain --format json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub service: String,
    pub origin: String,
    pub entry: String,
    pub principal: String,
    pub effect: Effect,
    pub status: Option<u16>,
    pub layer: Option<Layer>,
    pub reasons: Vec<Reason>,
    /// Matrix only, for a load balancer with a security policy: whether the policy refuses
    /// every request (`closed`, and the row is refused at the edge), some depending on the
    /// request (`depends`) or none (`open`). Absent otherwise, and for a single query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<Gate>,
}

impl Answer {
    fn new(service: &str, origin: &Origin, entry: &Entry, principal: &Principal, d: Decision) -> Self {
        Self {
            service: service.to_owned(),
            origin: origin.to_string(),
            entry: entry.to_string(),
            principal: principal.to_string(),
            effect: d.effect,
            status: d.status,
            layer: d.layer,
            reasons: d.reasons,
            edge: None,
        }
    }
}

/// A single question. `principal: None` means the default: the runtime service account of a
/// calling service, else anonymous. `audience: None` means the service's URL.
#[derive(Debug, Clone)]
pub struct Query {
    pub service: String,
    pub origin: Origin,
    pub entry: Entry,
    pub principal: Option<Principal>,
    pub audience: Option<String>,
    /// What the query says about the request itself, for a load balancer's security policy.
    pub request: EdgeFacts,
}

/// The principal a caller at `origin` acts as when none is given.
pub fn default_principal(project: &Project, origin: &Origin) -> Result<Principal, QueryError> {
    match origin {
        Origin::Service(name) => {
            Ok(Principal::ServiceAccount(lookup_service(project, name)?.service_account.value.clone()))
        }
        _ => Ok(Principal::Anonymous),
    }
}

/// The token a principal presents: an ID token for `audience` (default: the service's URL).
pub fn token_for(principal: &Principal, service: &Service, audience: Option<&str>) -> Option<TokenFacts> {
    if *principal == Principal::Anonymous {
        return None;
    }
    let aud = audience.map(str::to_owned).or_else(|| service.urls.first().cloned()).unwrap_or_default();
    Some(TokenFacts { principal: principal.clone(), email_verified: true, audiences: vec![aud], hosted_domain: None })
}

pub fn query(project: &Project, q: &Query) -> Result<Answer, QueryError> {
    let service = lookup_service(project, &q.service)?;
    let origin = q.origin.clone().in_project(&project.id);
    let principal = match &q.principal {
        Some(p) => p.clone(),
        None => default_principal(project, &origin)?,
    };
    let token = token_for(&principal, service, q.audience.as_deref());
    let d = match admit_with_edge(project, service, &origin, &q.entry, Some(&q.request))? {
        Ok(reasons) => invoke(reasons, token.as_ref(), service, project),
        Err(d) => d,
    };
    Ok(Answer::new(&service.name, &origin, &q.entry, &principal, d))
}

/// Every origin the matrix asks about for `service`: the internet, each VPC network the project
/// knows (its own and Shared VPC), each Google product in the project, each other service.
pub fn origins(project: &Project, service: &str) -> Vec<Origin> {
    let mut out = vec![Origin::Internet];
    out.extend(
        project
            .networks
            .iter()
            .map(|n| Origin::Vpc(NetworkRef { project: project.id.clone(), network: n.name.clone() })),
    );
    out.extend(project.shared_vpc.iter().map(|s| Origin::Vpc(s.network.clone())));
    out.extend(GoogleProduct::ALL.iter().map(|p| Origin::Google { product: *p, project: project.id.clone() }));
    out.extend(project.services.keys().filter(|s| s.as_str() != service).map(|s| Origin::Service(s.clone())));
    out
}

/// Every door to `service`: its run.app URL, its tag URLs, mapped domains, load balancers.
pub fn entries(project: &Project, service: &Service) -> Vec<Entry> {
    let mut out = vec![Entry::DefaultUrl];
    out.extend(service.tags.iter().map(|t| Entry::Tag(t.tag.clone())));
    out.extend(
        project.domain_mappings.iter().filter(|d| d.service == service.name).map(|d| Entry::Domain(d.domain.clone())),
    );
    out.extend(
        project.load_balancers.iter().filter(|lb| lb.routes_to(&service.name)).map(|lb| Entry::Lb(lb.name.clone())),
    );
    out
}

/// Anonymous plus every user and service account named in any binding or group of the project.
pub fn principals(project: &Project) -> Vec<Principal> {
    let mut set = BTreeSet::new();
    let mut add = |m: &Member| match m {
        Member::User(e) => {
            set.insert(Principal::User(e.clone()));
        }
        Member::ServiceAccount(e) => {
            set.insert(Principal::ServiceAccount(e.clone()));
        }
        _ => {}
    };
    let policies = std::iter::once(&project.iam)
        .chain(project.services.values().map(|s| &s.iam))
        .chain(project.secrets.values().map(|s| &s.iam));
    for p in policies {
        for (_, m) in p.members() {
            add(&m.member);
        }
    }
    for g in project.groups.values() {
        for m in &g.members {
            add(&m.member);
        }
    }
    let mut out = vec![Principal::Anonymous];
    out.extend(set);
    out
}

/// The matrix for one service (or all): every origin × entry × principal. A calling service
/// acts as its runtime service account only, which is the identity its tokens carry; other
/// origins are asked as anonymous and as every principal the project names. A load balancer's
/// security policy is evaluated with no request facts (`path::admit_for_matrix`): a policy that
/// refuses every request closes the entry, one that refuses some says so in the reasons.
pub fn matrix(project: &Project, only: Option<&str>) -> Result<Vec<Answer>, QueryError> {
    let mut out = Vec::new();
    for_each_answer(project, only, |a| out.push(a))?;
    Ok(out)
}

/// The matrix, one answer at a time: a large project's matrix is too big to hold in memory
/// just to print it.
pub fn for_each_answer(project: &Project, only: Option<&str>, mut emit: impl FnMut(Answer)) -> Result<(), QueryError> {
    let services: Vec<&Service> = match only {
        Some(name) => vec![lookup_service(project, name)?],
        None => project.services.values().collect(),
    };
    let all_principals = principals(project);
    for service in services {
        // Identity decisions depend only on the principal: compute each once per service.
        let mut by_principal: BTreeMap<Principal, Decision> = BTreeMap::new();
        let mut identity = |p: &Principal| -> Decision {
            by_principal
                .entry(p.clone())
                .or_insert_with(|| invoke(Vec::new(), token_for(p, service, None).as_ref(), service, project))
                .clone()
        };
        // A security policy is evaluated without request facts, so once per entry.
        let doors = entries(project, service)
            .into_iter()
            .map(|e| Ok((matrix_edge(project, service, &e)?, e)))
            .collect::<Result<Vec<_>, QueryError>>()?;
        for origin in origins(project, &service.name) {
            let callers = match &origin {
                Origin::Service(_) => vec![default_principal(project, &origin)?],
                _ => all_principals.clone(),
            };
            for (edge, entry) in &doors {
                let gate = edge.as_ref().map(|m| m.gate);
                let answer = |p: &Principal, d: Decision| Answer {
                    edge: gate,
                    ..Answer::new(&service.name, &origin, entry, p, d)
                };
                match admit_for_matrix(project, service, &origin, entry, edge.as_ref())? {
                    Err(d) => {
                        for p in &callers {
                            emit(answer(p, d.clone()));
                        }
                    }
                    Ok(prefix) => {
                        for p in &callers {
                            let mut d = identity(p);
                            let mut reasons = prefix.clone();
                            reasons.append(&mut d.reasons);
                            d.reasons = reasons;
                            emit(answer(p, d));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The layer a reason belongs to, from its code's first segment.
pub fn layer_of(code: &str) -> Layer {
    match code.split('.').next() {
        Some("network" | "egress") => Layer::Network,
        Some("edge") => Layer::Edge,
        Some("ingress") => Layer::Ingress,
        Some("token") => Layer::Authentication,
        Some("iap") => Layer::Iap,
        _ => Layer::Authorization,
    }
}

#[cfg(test)]
mod tests;
