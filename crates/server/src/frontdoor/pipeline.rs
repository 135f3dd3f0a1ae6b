//! One request, top to bottom: route → network → edge → ingress → size → credential →
//! verify → authenticate → IAP (with `iap-enabled`) → authorize → forward. [`handle`] is the
//! whole pipeline; each line is one stage, and each policy stage is the `moat_policy` function
//! `explain` calls, in `path::decide`'s order, so the decision recorded here is the one
//! `explain` prints for the same facts. The size check is the front door's own (`explain` knows no bodies).

use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HOST, HeaderMap};
use hyper::{Request, Response};
use moat_crypto::{Credential, HeaderError, VerifiedClaims, select_credential};
use moat_policy::decision::Layer;
use moat_policy::model::{LoadBalancer, Service};
use moat_policy::request::NetOrigin;
use moat_policy::{
    Decision, Effect, Entry, Origin, Principal, Project, Reason, TokenFacts, authn, authz, iap, ingress, network, path,
};

use super::body::Body;
use super::edge;
use super::forward::{Admitted, Failed, InvokerCheckDisabled, Upstream, Verified, forward};
use super::rate;
use super::record::{DecisionRecord, rfc3339};
use super::refusal::respond;
use super::route::{Unrouted, normalise_host};
use super::upstream::Conns;
use super::waf;
use super::{Inner, Snapshot};

/// A network-layer refusal: the door does not exist for this caller, so there is no HTTP
/// response at all. Returning it as the service's error makes hyper close the connection
/// without writing anything.
#[derive(Debug, thiserror::Error)]
#[error("the requested door is not reachable from this listener's network")]
pub(super) struct NoRoute;

type Outcome = Result<Response<Body>, NoRoute>;

/// The pipeline. Every `return` before the last line is a refusal; only the last line can
/// forward, because only it holds an [`Admitted`].
pub(super) async fn handle(
    door: &Inner,
    conns: &Conns,
    origin: &Origin,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Outcome {
    let mut t = Trace::new(door, conns, origin);
    let snap = door.snapshot.load_full();
    let project = &snap.project;
    let path = req.uri().path().to_owned();

    // Route first: the Host names the service and the door, and every later stage needs both.
    let Some(host) = host(req.headers(), req.uri()) else {
        return t.unrouted(Unrouted::UnknownHost, project, &path);
    };
    let (service, entry) = match snap.routes.route(project, &host, &path) {
        Ok(routed) => routed,
        Err(why) => return t.unrouted(why, project, &path),
    };
    let Some(service) = project.service(&service) else { return t.unrouted(Unrouted::UnknownHost, project, &path) };
    t.entry = Some(entry.clone());
    t.service = Some(service.name.clone());
    // The door as the project knows it; an unknown traffic tag is an unknown URL.
    let Ok(door_of) = path::resolve_entry(project, service, &entry) else {
        return t.unrouted(Unrouted::UnknownHost, project, &path);
    };
    // Origin from the listener only; a calling service leaves through its egress settings,
    // which depend on the door it calls (an internal LB's address is private).
    let (net, mut reasons) = match path::resolve_origin(project, origin, door_of) {
        Ok(resolved) => resolved,
        Err(e) => return t.deny(unknown_origin(&e), Vec::new(), &path),
    };
    t.network_origin = Some(net.clone());
    // Network before anything at HTTP level: a door the origin cannot reach does not exist.
    match network::reach(&net, door_of.lb) {
        Ok(((), r)) => reasons.extend(r),
        Err(d) => return t.deny(d, reasons, &path),
    }
    // Edge: the load balancer's security policy (Cloud Armor) sees every request that reaches
    // the LB, before the backend's ingress; the client address is the TCP peer, never a header.
    // A rate limit counts per backend service and key, in the door's state (not the snapshot);
    // a shared state that does not answer in time answers with its failure policy.
    let policy = door_of.lb.and_then(|lb| project.security_policy(lb));
    let edge_facts = policy.map(|_| edge::edge_request(&req, &host, peer, &project.geo));
    // Preconfigured WAF rules read the body: its first `body_inspection_bytes`, read here and
    // forwarded ahead of the rest. Without the CRS rules, refuse (fail closed).
    let mut waf_input = None;
    if let Some(policy) = policy.filter(|p| p.uses_waf) {
        let Some(crs) = door.crs.load_full() else {
            return t.edge_refusal(waf_unavailable(), reasons, None);
        };
        let timeout = door.limits.request_timeout.saturating_sub(t.started.elapsed());
        match waf::read_prefix(&mut req, policy.body_inspection_bytes, timeout).await {
            Ok(body) => waf_input = Some((crs, waf::waf_request(&req, body, policy))),
            Err(message) => return t.edge_refusal(body_unreadable(message), reasons, None),
        }
    }
    // `edge_facts` is there exactly when the door has a policy.
    let verdict = edge_facts.as_ref().and_then(|edge_facts| match &waf_input {
        Some((crs, body)) => {
            let request_waf = waf::RequestWaf::new(crs, body);
            let verdict = path::edge(project, door_of, edge_facts, Some(&request_waf));
            t.waf_signatures = request_waf.into_fired();
            verdict
        }
        None => path::edge(project, door_of, edge_facts, None),
    });
    if let (Some(policy), Some(edge_facts), Some(verdict)) = (policy, &edge_facts, verdict) {
        t.edge_rule = Some(verdict.priority());
        let now = (door.clock)();
        let rate = rate::check(&*door.rate, &project.id, policy, &verdict, edge_facts, &service.name, now).await;
        match path::edge_admits(&verdict, rate) {
            Ok((r, headers)) => {
                reasons.extend(r);
                edge::add_headers(&mut req, headers);
            }
            Err(d) => return t.edge_refusal(d, reasons, edge::location(&verdict.outcome, rate)),
        }
    }
    // Ingress before any credential is looked at: a refused request never learns whether its
    // token was good, and the workload never sees it.
    match ingress::ingress(&net, door_of.door, service, project) {
        Ok(((), r)) => reasons.extend(r),
        Err(d) => return t.deny(d, reasons, &path),
    }
    // A declared body past the limit, before anything is forwarded and whatever the token: the
    // front end refuses it on size alone. Not before ingress: a 413 would tell a caller that
    // ingress refuses that the service exists. A body of undeclared length is counted as it
    // streams (forward).
    if hyper::body::Body::size_hint(req.body()).lower() > door.limits.max_body_bytes {
        return t.too_large(reasons, &path);
    }
    // Invoker check disabled: nothing is verified and the headers pass untouched (§2.8).
    // Not behind IAP, which checks the caller whatever the invoker setting (below).
    if !service.iap_enabled.value
        && let Some(unchecked) = InvokerCheckDisabled::of(service)
    {
        let decision = path::invoke(reasons, None, service, project);
        return t.forward(decision, Admitted::Unchecked(unchecked), service, req, peer).await;
    }
    // The credential: X-Serverless-Authorization wins over Authorization (§2.7, J26).
    let credential = match credential(req.headers()) {
        Ok(c) => c,
        Err(d) => return t.deny(d, reasons, &path),
    };
    // Signature, issuer, lifetime and audience: a token that fails any of them is a 401.
    let verified = match credential {
        None => None,
        Some((header, token)) => match verify(door, &snap, service, &token).await {
            Ok(claims) => Some((header, token, claims)),
            Err(d) => return t.deny(d, reasons, &path),
        },
    };
    // Authentication: the policy's own function turns the verified claims into a principal.
    let facts = match verified.as_ref().map(|(_, _, c)| facts(c)).transpose() {
        Ok(f) => f,
        Err(d) => return t.deny(d, reasons, &path),
    };
    let principal = match authn::authenticate(facts.as_ref(), service) {
        Ok((p, r)) => {
            reasons.extend(r);
            p
        }
        Err(d) => return t.deny(d, reasons, &path),
    };
    // The email for Google identities; a federated caller by its full `principal://` name.
    t.principal = match &principal {
        Principal::Federated(name) => Some(name.clone()),
        other => other.email().map(str::to_owned),
    };
    // IAP (§2.10), when enabled: it admits only callers with IAP access, then calls the
    // service as its own service agent, so the invoker check below is the agent's.
    if service.iap_enabled.value {
        match iap::admit(&principal, service, project) {
            Ok(((), r)) => reasons.extend(r),
            Err(d) => return t.deny(d, reasons, &path),
        }
    }
    // Authorization: run.routes.invoke through the service policy, then the project policy.
    let authorized = if service.iap_enabled.value {
        iap::invoker(service, project)
    } else {
        authz::authorize(&principal, service, project).map(|(permit, r)| (Some(permit), r))
    };
    let permit = match authorized {
        Ok((Some(permit), r)) => {
            reasons.extend(r);
            permit
        }
        // Behind IAP with the invoker check disabled: IAP admitted the caller, nothing more is
        // checked, and the headers pass untouched as without IAP.
        Ok((None, r)) => {
            reasons.extend(r);
            let Some(unchecked) = InvokerCheckDisabled::of(service) else {
                return t.deny(no_permit(), reasons, &path);
            };
            return t.forward(Decision::allow(reasons), Admitted::Unchecked(unchecked), service, req, peer).await;
        }
        Err(d) => return t.deny(d, reasons, &path),
    };
    let verified = match verified.map(|(h, token, claims)| Verified::new(h, &token, claims).ok_or(())).transpose() {
        Ok(v) => v,
        Err(()) => return t.deny(malformed_after_verify(), reasons, &path),
    };
    // Forward with the proof of the permit: the only way past this function.
    t.forward(Decision::allow(reasons), Admitted::Invoker { permit, verified }, service, req, peer).await
}

/// The Host the client asked for: the authority of an absolute-form request target
/// (`GET http://HOST/ HTTP/1.1`, what a client sends to its HTTP proxy; RFC 9112 §3.2.2 says
/// it wins over any Host header), else the Host header. `None` when there is none or more than
/// one Host header.
fn host(headers: &HeaderMap, uri: &hyper::Uri) -> Option<String> {
    if let Some(authority) = uri.authority() {
        return Some(normalise_host(authority.host()));
    }
    let mut values = headers.get_all(HOST).iter();
    let value = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok()?.to_owned(),
        _ => return None,
    };
    Some(normalise_host(&value))
}

/// The chosen credential: `None` for no token (or another scheme, such as Basic). A duplicate
/// or malformed credential header is a 401, not a 400: Cloud Run answers every unusable
/// credential with the same 401 page, and the page says nothing about which check failed.
fn credential(headers: &HeaderMap) -> Result<Option<(&'static str, String)>, Decision> {
    const XSA: &str = "x-serverless-authorization";
    let values = |name| -> Result<Vec<&str>, Decision> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().map_err(|_| header_refusal(&HeaderError::Malformed(name))))
            .collect()
    };
    let (xsa, authz) = (values(XSA)?, values(AUTHORIZATION.as_str())?);
    match select_credential(&xsa, &authz) {
        Ok(None) => Ok(None),
        Ok(Some((header, Credential::Bearer(token)))) => Ok(Some((header, token.to_owned()))),
        Err(e) => Err(header_refusal(&e)),
    }
}

fn header_refusal(e: &HeaderError) -> Decision {
    let code = match e {
        HeaderError::Duplicate(_) => "token.duplicate_header",
        HeaderError::Malformed(_) => "token.malformed_header",
    };
    Decision::deny(Layer::Authentication, Some(401), vec![Reason::new(code, e.to_string(), None)])
}

async fn verify(door: &Inner, snap: &Snapshot, service: &Service, token: &str) -> Result<VerifiedClaims, Decision> {
    let accepted = snap.audiences.get(&service.name).map_or(&[][..], Vec::as_slice);
    snap.verifier.verify(token, accepted, (door.clock)()).await.map_err(|e| {
        let source = (e == moat_crypto::VerifyError::Audience).then_some(&service.custom_audiences.source);
        Decision::deny(Layer::Authentication, Some(401), vec![Reason::new(e.code(), e.to_string(), source)])
    })
}

/// What IAM needs of a verified token. A token whose email is not verified still names a
/// principal here, so that the policy refuses it (`token.email_unverified`) exactly as
/// `explain` does; a token with no email at all names nobody.
fn facts(claims: &VerifiedClaims) -> Result<TokenFacts, Decision> {
    if let Some(f) = claims.token_facts() {
        return Ok(f);
    }
    match claims.email().filter(|e| !e.is_empty()) {
        Some(email) => Ok(TokenFacts {
            principal: Principal::from_email(email),
            email_verified: claims.email_verified(),
            audiences: claims.audiences().to_vec(),
            hosted_domain: claims.hosted_domain().map(str::to_owned),
        }),
        None => Err(Decision::deny(
            Layer::Authentication,
            Some(401),
            vec![Reason::new(
                "token.no_email",
                "the ID token has no `email` claim, so it names no IAM principal",
                None,
            )],
        )),
    }
}

/// The policy admitted without a permit although the invoker check is on: refused (fail
/// closed). `iap::invoker` returns no permit only when the check is disabled, so this is a
/// guard, not a path.
fn no_permit() -> Decision {
    Decision::deny(
        Layer::Authorization,
        Some(403),
        vec![Reason::new("iam.no_permit", "the invoker check is on but no permit was issued; refused", None)],
    )
}

fn malformed_after_verify() -> Decision {
    Decision::deny(
        Layer::Authentication,
        Some(401),
        vec![Reason::new("token.malformed", "the verified token is not a three-segment JWS", None)],
    )
}

/// A listener whose origin the current project no longer knows (it changed under a running
/// listener): nothing on that network exists any more.
/// Reason codes of the WAF body stage.
mod waf_codes {
    pub const UNAVAILABLE: &str = "edge.waf_unavailable";
    pub const BODY_UNREADABLE: &str = "edge.waf_body_unreadable";
}

/// The policy calls the WAF but no CRS is loaded: refuse (fail closed). Startup and reload
/// refuse such a config, so this is a guard, not a path.
fn waf_unavailable() -> Decision {
    Decision::deny(
        Layer::Edge,
        Some(503),
        vec![Reason::new(
            waf_codes::UNAVAILABLE,
            "the load balancer's security policy uses preconfigured WAF rules and no CRS rules are loaded; refused rather than passed uninspected".to_owned(),
            None,
        )],
    )
}

/// The body the WAF must inspect did not arrive (client error or timeout): refused.
fn body_unreadable(message: String) -> Decision {
    Decision::deny(Layer::Edge, Some(400), vec![Reason::new(waf_codes::BODY_UNREADABLE, message, None)])
}

fn unknown_origin(e: &path::QueryError) -> Decision {
    Decision::deny(Layer::Network, None, vec![Reason::new("network.unknown_origin", e.to_string(), None)])
}

fn lb_door(lb: &LoadBalancer) -> path::ResolvedEntry<'_> {
    path::ResolvedEntry { door: ingress::Door::of_lb(lb.scheme), lb: Some(lb) }
}

fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::Network => "network",
        Layer::Edge => "edge",
        Layer::Ingress => "ingress",
        Layer::Authentication => "authentication",
        Layer::Iap => "iap",
        Layer::Authorization => "authorization",
    }
}

fn net_name(net: &NetOrigin) -> String {
    match net {
        NetOrigin::Internet => "internet".to_owned(),
        NetOrigin::Vpc(n) => format!("vpc:{n}"),
        NetOrigin::Google { product, project } => format!("google:{}@{project}", product.as_str()),
    }
}

/// What the record of this request will say, filled in as the stages run.
struct Trace<'a> {
    door: &'a Inner,
    conns: &'a Conns,
    origin: &'a Origin,
    id: String,
    started: Instant,
    network_origin: Option<NetOrigin>,
    entry: Option<Entry>,
    service: Option<String>,
    principal: Option<String>,
    /// The priority of the security policy rule that decided, when one did.
    edge_rule: Option<u32>,
    /// The preconfigured WAF signatures that matched (Cloud Armor ids), preview rules included.
    waf_signatures: Vec<String>,
}

impl<'a> Trace<'a> {
    fn new(door: &'a Inner, conns: &'a Conns, origin: &'a Origin) -> Self {
        Self {
            door,
            conns,
            origin,
            id: door.request_id(),
            started: Instant::now(),
            network_origin: None,
            entry: None,
            service: None,
            principal: None,
            edge_rule: None,
            waf_signatures: Vec::new(),
        }
    }

    fn record(
        &self,
        effect: Effect,
        status: Option<u16>,
        layer: Option<&'static str>,
        reasons: Vec<Reason>,
        upstream_error: Option<&'static str>,
    ) {
        let latency = self.started.elapsed();
        let service = self.service.as_deref().unwrap_or_default();
        self.door.counters.record(service, layer, status, effect, latency);
        self.door.sink.record(&DecisionRecord {
            time: rfc3339((self.door.clock)()),
            request_id: self.id.clone(),
            listener: self.origin.to_string(),
            network_origin: self.network_origin.as_ref().map(net_name),
            entry: self.entry.as_ref().map(ToString::to_string),
            service: self.service.clone(),
            principal: self.principal.clone(),
            edge_rule: self.edge_rule,
            waf_signatures: self.waf_signatures.clone(),
            effect,
            status,
            layer,
            reasons,
            upstream_error,
            latency_ms: latency.as_secs_f64() * 1000.0,
        });
    }

    /// A host (or LB path) nothing answers to: Cloud Run's 404 for an unknown URL. An internal
    /// load balancer the origin cannot reach does not exist for it whatever the path, so an
    /// unrouted path on one is a network refusal, not a 404.
    fn unrouted(&mut self, why: Unrouted, project: &Project, path: &str) -> Outcome {
        if let Unrouted::NoLbRoute(name) = &why
            && let Some(lb) = project.load_balancer(name)
            && let Ok((net, reasons)) = path::resolve_origin(project, self.origin, lb_door(lb))
            && let Err(d) = network::reach(&net, Some(lb))
        {
            self.entry = Some(Entry::Lb(lb.name.clone()));
            self.network_origin = Some(net);
            return self.deny(d, reasons, path);
        }
        self.record(Effect::Deny, Some(404), Some("route"), vec![Reason::new(why.code(), why.message(), None)], None);
        Ok(self.respond(404, path))
    }

    /// A request body past the limit: 413, after the reasons of the stages that passed.
    fn too_large(&self, mut reasons: Vec<Reason>, path: &str) -> Outcome {
        let limit = self.door.limits.max_body_bytes;
        reasons.push(Reason::new(
            "limit.body_too_large",
            format!("the request body is larger than the front door's {limit} byte limit"),
            None,
        ));
        self.record(Effect::Deny, Some(413), Some("limit"), reasons, None);
        Ok(self.respond(413, path))
    }

    fn respond(&self, status: u16, path: &str) -> Response<Body> {
        respond(status, path, self.door.limits.max_body_bytes)
    }

    /// A policy refusal, after the reasons of the stages that passed.
    fn deny(&self, mut d: Decision, mut reasons: Vec<Reason>, path: &str) -> Outcome {
        reasons.append(&mut d.reasons);
        self.record(d.effect, d.status, d.layer.map(layer_name), reasons, None);
        match d.status {
            Some(status) => Ok(self.respond(status, path)),
            None => Err(NoRoute),
        }
    }

    /// A refusal by the load balancer's security policy: Cloud Armor's response (its deny page,
    /// or the redirect), not Cloud Run's, because the request never reached Cloud Run.
    fn edge_refusal(&self, mut d: Decision, mut reasons: Vec<Reason>, location: Option<&str>) -> Outcome {
        reasons.append(&mut d.reasons);
        let status = d.status.unwrap_or(moat_policy::armor::RECAPTCHA_REFUSAL_STATUS);
        self.record(d.effect, Some(status), Some(layer_name(Layer::Edge)), reasons, None);
        Ok(edge::respond(status, location))
    }

    async fn forward(
        &self,
        decision: Decision,
        admitted: Admitted,
        service: &Service,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Outcome {
        let path = req.uri().path().to_owned();
        let door = self.door;
        let upstream = Upstream {
            conns: self.conns,
            base: door.upstreams.upstream(&service.name),
            timeout: door.limits.request_timeout.saturating_sub(self.started.elapsed()),
            max_body_bytes: door.limits.max_body_bytes,
        };
        match forward(admitted, upstream, req, peer.ip(), &self.id).await {
            Ok(resp) => {
                self.record(decision.effect, Some(resp.status().as_u16()), None, decision.reasons, None);
                Ok(resp)
            }
            Err(Failed::BodyTooLarge) => self.too_large(decision.reasons, &path),
            Err(Failed::Upstream(e)) => {
                self.record(decision.effect, Some(e.status()), None, decision.reasons, Some(e.code()));
                Ok(self.respond(e.status(), &path))
            }
        }
    }
}
