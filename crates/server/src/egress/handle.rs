//! One outbound request or tunnel, top to bottom: what it is for → who calls → where the
//! destination is → the egress decision → forward, or tunnel → one record. Every refusal
//! becomes a response in [`refusal`], the one place that does so.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use moat_policy::egress::{EgressDecision, Route, decide};
use moat_policy::{Effect, Reason};
use tokio::net::TcpStream;

use super::record::EgressRecord;
use super::target::{self, Resolved, Target};
use super::{Caller, Inner};
use crate::frontdoor::{Body, rfc3339};

/// The header a refused or failed request carries its reason code in.
pub(super) const REASON_HEADER: &str = "x-moat-egress-reason";

/// The pipeline. Every `return` before the last lines is a refusal or a failure.
pub(super) async fn handle(inner: Arc<Inner>, caller: Arc<Caller>, mut req: Request<Incoming>) -> Response<Body> {
    let mut t = Trace::new(Arc::clone(&inner), &caller, req.method());
    // The request line names the destination; anything but absolute-form or CONNECT is not
    // a proxy request.
    let target = match target::parse(&req) {
        Ok(target) => target,
        Err(bad) => return t.refuse(StatusCode::BAD_REQUEST, bad.code(), bad.message().to_owned()),
    };
    t.target(&target);
    // One snapshot for the whole request: a reload applies from the next one.
    let project = inner.services.project();
    let Some(service) = project.services.get(&caller.service) else {
        let why = format!("`{}` is no longer a service of the project", caller.service);
        return t.refuse(StatusCode::FORBIDDEN, "egress.unknown_caller", why);
    };
    // Where it is: metadata server, moat service, `egress.hosts`, IP literal, DNS.
    let resolved = target::resolve(&project, |h| inner.services.routes_host(h), &target, inner.timeouts.connect).await;
    let (addr, connect) = match resolved {
        // A moat service: the front door decides it, with the caller's egress as its origin.
        Resolved::Service => return to_front_door(t, &caller, req, &target).await,
        Resolved::Unresolvable(why) => return t.fail(StatusCode::BAD_GATEWAY, "egress.dns_failed", why),
        Resolved::Address { addr, connect } => (addr, connect),
    };
    // The decision `explain` would print, on the address the connection goes to.
    let decision = decide(&project, service, addr, target.port);
    t.decided(addr, &decision);
    if decision.effect == Effect::Deny {
        let (code, message) = deciding(&decision);
        return t.refuse(StatusCode::FORBIDDEN, code, message);
    }
    // The metadata server is the caller's own, wherever the request said it was.
    let connect = match (&decision.route, caller.metadata) {
        (Route::Metadata, Some(mds)) => mds,
        (Route::Metadata, None) => {
            let why = "this caller has no metadata server (no instance runs it)".to_owned();
            return t.fail(StatusCode::BAD_GATEWAY, "egress.no_metadata_server", why);
        }
        _ => connect,
    };
    if target.tunnel { tunnel(t, &mut req, connect).await } else { forward(t, req, connect).await }
}

/// The step that decided a denial: the last one.
fn deciding(d: &EgressDecision) -> (&'static str, String) {
    d.reasons.last().map_or(("egress.denied", "the egress policy refused this destination".to_owned()), |r| {
        (r.code, r.message.clone())
    })
}

/// A moat service: over plain HTTP to the caller's `service:NAME` front door listener,
/// unchanged; a TLS tunnel to one cannot be decided (moat serves services over `http://`).
async fn to_front_door(mut t: Trace, caller: &Caller, req: Request<Incoming>, target: &Target) -> Response<Body> {
    t.rec.route = Some("front-door".to_owned());
    if target.tunnel {
        let why = format!(
            "moat serves services over plain http locally: call `http://{}/` (the host of the service's `MOAT_URL_*` with `http://`) instead of tunnelling https to it",
            target.host
        );
        return t.refuse(StatusCode::FORBIDDEN, "egress.service_tls", why);
    }
    let Some(door) = caller.front_door else {
        let why = format!("`{}` has no front door listener for its calls", caller.service);
        return t.fail(StatusCode::BAD_GATEWAY, "egress.no_front_door", why);
    };
    t.rec.reasons.push(Reason::new(
        "egress.front_door",
        format!(
            "`{}` is a moat service: the call goes to the front door, which decides it with `{}`'s egress as the origin",
            target.host, caller.service
        ),
        None,
    ));
    forward(t, req, door).await
}

/// One HTTP request to `connect`, in origin form, without hop-by-hop and `Proxy-*` headers.
async fn forward(mut t: Trace, req: Request<Incoming>, connect: SocketAddr) -> Response<Body> {
    t.rec.connected_to = Some(connect.to_string());
    let (mut parts, body) = req.into_parts();
    let host = parts.uri.authority().map(|a| a.as_str().rsplit('@').next().unwrap_or_default().to_owned());
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{connect}{pq}").parse::<Uri>() else {
        return t.refuse(StatusCode::BAD_REQUEST, "egress.bad_path", "the request path is not a valid URI".to_owned());
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        parts.headers.insert(HOST, v);
    }
    let sent =
        tokio::time::timeout(t.inner.timeouts.response, t.inner.client.request(Request::from_parts(parts, body)));
    match sent.await {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            t.finish(Some(parts.status.as_u16()), None);
            Response::from_parts(parts, Body::Upstream(body))
        }
        Ok(Err(e)) if e.is_connect() => {
            t.fail(StatusCode::BAD_GATEWAY, "egress.connect_failed", format!("cannot connect to {connect}"))
        }
        Ok(Err(_)) => t.fail(
            StatusCode::BAD_GATEWAY,
            "egress.upstream_failed",
            format!("{connect} closed the connection without a response"),
        ),
        Err(_) => {
            let why = format!("no response from {connect} within {}s", t.inner.timeouts.response.as_secs());
            t.fail(StatusCode::GATEWAY_TIMEOUT, "egress.timeout", why)
        }
    }
}

/// CONNECT: a TCP connection to `connect`, then bytes both ways until either side closes. The
/// record is written when the tunnel ends, with the bytes it carried.
async fn tunnel(mut t: Trace, req: &mut Request<Incoming>, connect: SocketAddr) -> Response<Body> {
    t.rec.connected_to = Some(connect.to_string());
    let stream = match tokio::time::timeout(t.inner.timeouts.connect, TcpStream::connect(connect)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return t.fail(
                StatusCode::BAD_GATEWAY,
                "egress.connect_failed",
                format!("cannot connect to {connect}: {e}"),
            );
        }
        Err(_) => {
            let why = format!("connecting to {connect} took longer than {}s", t.inner.timeouts.connect.as_secs());
            return t.fail(StatusCode::BAD_GATEWAY, "egress.connect_failed", why);
        }
    };
    let _ = stream.set_nodelay(true);
    let upgrade = hyper::upgrade::on(req);
    t.rec.status = Some(200);
    t.rec.latency_ms = t.started.elapsed().as_secs_f64() * 1000.0;
    tokio::spawn(async move {
        let mut stream = stream;
        let (up, down, error) = match upgrade.await {
            Ok(upgraded) => match tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut stream).await {
                Ok((up, down)) => (Some(up), Some(down), None),
                Err(_) => (None, None, Some("egress.tunnel_reset")),
            },
            Err(_) => (None, None, Some("egress.upgrade_failed")),
        };
        t.rec.bytes_up = up;
        t.rec.bytes_down = down;
        t.rec.error = error;
        t.write();
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Headers for one hop only (RFC 9110 §7.6.1), those the `Connection` header names, and the
/// proxy's own credentials.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"] {
        headers.remove(n);
    }
    let proxy: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("proxy-")).cloned().collect();
    for n in proxy {
        headers.remove(n);
    }
}

/// The one place a refusal or failure becomes a response: the status, the reason code in
/// [`REASON_HEADER`] and the reason in a short plain body. The workload is the caller, not an
/// outside client, so it is told why.
fn refusal(status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    let mut resp = Response::new(Body::full(format!("moat egress proxy: {message} [{code}]\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(REASON_HEADER, HeaderValue::from_static(code));
    resp
}

/// The record of one request, filled in as the pipeline goes.
struct Trace {
    inner: Arc<Inner>,
    started: Instant,
    rec: EgressRecord,
}

impl Trace {
    fn new(inner: Arc<Inner>, caller: &Caller, method: &Method) -> Self {
        let time = rfc3339((inner.clock)());
        Self {
            inner,
            started: Instant::now(),
            rec: EgressRecord {
                kind: "egress",
                time,
                caller: caller.service.clone(),
                instance: caller.instance.clone(),
                method: method.as_str().to_owned(),
                host: String::new(),
                port: 0,
                path: None,
                address: None,
                connected_to: None,
                route: None,
                effect: Effect::Deny,
                rule: None,
                reasons: Vec::new(),
                status: None,
                error: None,
                bytes_up: None,
                bytes_down: None,
                latency_ms: 0.0,
            },
        }
    }

    fn target(&mut self, target: &Target) {
        self.rec.host.clone_from(&target.host);
        self.rec.port = target.port;
        self.rec.path.clone_from(&target.path);
        // Service calls are passed on; the front door records its own decision.
        self.rec.effect = Effect::Allow;
    }

    fn decided(&mut self, addr: IpAddr, d: &EgressDecision) {
        self.rec.address = Some(addr.to_string());
        self.rec.route = Some(match &d.route {
            Route::Metadata => "metadata".to_owned(),
            Route::Direct => "direct".to_owned(),
            Route::Vpc(net) => format!("vpc:{net}"),
        });
        self.rec.effect = d.effect;
        self.rec.rule.clone_from(&d.rule);
        self.rec.reasons.clone_from(&d.reasons);
    }

    /// Refused by the proxy or the policy: nothing was connected.
    fn refuse(mut self, status: StatusCode, code: &'static str, message: String) -> Response<Body> {
        self.rec.effect = Effect::Deny;
        if self.rec.reasons.last().is_none_or(|r| r.code != code) {
            self.rec.reasons.push(Reason::new(code, message.clone(), None));
        }
        self.finish(Some(status.as_u16()), None);
        refusal(status, code, &message)
    }

    /// Allowed, but the destination could not be reached.
    fn fail(mut self, status: StatusCode, code: &'static str, message: String) -> Response<Body> {
        self.rec.reasons.push(Reason::new(code, message.clone(), None));
        self.finish(Some(status.as_u16()), Some(code));
        refusal(status, code, &message)
    }

    fn finish(mut self, status: Option<u16>, error: Option<&'static str>) {
        self.rec.status = status;
        self.rec.error = error;
        self.rec.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.write();
    }

    fn write(self) {
        let effect = match self.rec.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        };
        metrics::counter!(
            "moat_egress_requests_total",
            "caller" => self.rec.caller.clone(),
            "route" => self.rec.route.clone().unwrap_or_default(),
            "effect" => effect,
        )
        .increment(1);
        self.inner.sink.record_egress(&self.rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_proxy_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-connection", "keep-alive"),
            ("authorization", "Bearer t"),
            ("x-end", "2"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "x-end"]);
    }
}
