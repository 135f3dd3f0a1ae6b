//! The egress decision record: one JSON line (`"kind":"egress"`) per outbound request or
//! tunnel, next to the front door's records in `STATE/decisions.jsonl`. It names where the
//! call went and why it was allowed or refused; never a header value, a body or a query string.

use std::io::Write;

use moat_policy::{Effect, Reason};
use serde::Serialize;

/// What the egress proxy decided about one outbound request (HTTP) or connection (CONNECT).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgressRecord {
    /// Always `egress`: tells these lines from the front door's in the same file.
    pub kind: &'static str,
    /// RFC 3339, UTC.
    pub time: String,
    /// The calling service (the proxy listener it arrived on says so, not the request).
    pub caller: String,
    /// The calling instance, when the listener is one instance's own.
    pub instance: Option<String>,
    /// The request method, or `CONNECT` for a tunnel.
    pub method: String,
    /// The destination host as the workload named it (lower case).
    pub host: String,
    pub port: u16,
    /// The request path without its query (which may carry tokens); `null` for a tunnel.
    pub path: Option<String>,
    /// The address the decision was made on (from `egress.hosts`, the literal, or DNS);
    /// `null` for service hosts and when the host did not resolve.
    pub address: Option<String>,
    /// Where the proxy connected: the address, a local stand-in, the metadata server or the
    /// caller's front door listener; `null` when it did not.
    pub connected_to: Option<String>,
    /// `metadata`, `direct`, `vpc:P/N` or `front-door`; `null` when nothing was decided.
    pub route: Option<String>,
    pub effect: Effect,
    /// The VPC firewall rule that decided, when one did.
    pub rule: Option<String>,
    /// Every step, in order, as `explain` prints them; then the proxy's own (connect failures).
    pub reasons: Vec<Reason>,
    /// The status the workload got; `null` when the connection was closed without one.
    pub status: Option<u16>,
    /// Why the destination gave no response, when it did not (`egress.connect_failed`, ...).
    pub error: Option<&'static str>,
    /// Tunnels: bytes from the workload to the destination, and back.
    pub bytes_up: Option<u64>,
    pub bytes_down: Option<u64>,
    /// From the request's arrival to its response head.
    pub latency_ms: f64,
}

impl EgressRecord {
    /// The reason codes, in order.
    pub fn codes(&self) -> Vec<&'static str> {
        self.reasons.iter().map(|r| r.code).collect()
    }

    /// The code that decided: the proxy's own error, else the last step.
    pub fn deciding_code(&self) -> &'static str {
        self.error.or_else(|| self.reasons.last().map(|r| r.code)).unwrap_or("-")
    }
}

/// `moat: egress 403 deny caller → db.internal:5432 (10.1.2.3) direct [egress.private_unreachable]`.
pub fn write_summary(out: &mut impl Write, r: &EgressRecord) -> std::io::Result<()> {
    write!(out, "moat: egress ")?;
    match r.status {
        Some(s) => write!(out, "{s}")?,
        None => write!(out, "---")?,
    }
    let effect = match r.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    };
    write!(out, " {effect} {} → ", r.caller)?;
    if r.method != "CONNECT" {
        write!(out, "{} ", r.method)?;
    }
    write!(out, "{}:{}", r.host, r.port)?;
    if let Some(a) = &r.address
        && *a != r.host
    {
        write!(out, " ({a})")?;
    }
    write!(out, " {}", r.route.as_deref().unwrap_or("-"))?;
    if let Some(rule) = &r.rule {
        write!(out, " rule {rule}")?;
    }
    write!(out, " [{}]", r.deciding_code())
}

/// [`write_summary`] as a string.
pub fn summary(r: &EgressRecord) -> String {
    let mut out = Vec::with_capacity(128);
    let _ = write_summary(&mut out, r);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> EgressRecord {
        EgressRecord {
            kind: "egress",
            time: "2026-01-01T00:00:00Z".into(),
            caller: "api".into(),
            instance: None,
            method: "GET".into(),
            host: "db.internal".into(),
            port: 5432,
            path: Some("/x".into()),
            address: Some("10.1.2.3".into()),
            connected_to: None,
            route: Some("direct".into()),
            effect: Effect::Deny,
            rule: None,
            reasons: vec![Reason::new("egress.private_unreachable", "no", None)],
            status: Some(403),
            error: None,
            bytes_up: None,
            bytes_down: None,
            latency_ms: 0.2,
        }
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            summary(&sample()),
            "moat: egress 403 deny api → GET db.internal:5432 (10.1.2.3) direct [egress.private_unreachable]"
        );
        let tunnel = EgressRecord {
            method: "CONNECT".into(),
            rule: Some("deny-db".into()),
            error: Some("egress.connect_failed"),
            status: Some(502),
            ..sample()
        };
        assert_eq!(
            summary(&tunnel),
            "moat: egress 502 deny api → db.internal:5432 (10.1.2.3) direct rule deny-db [egress.connect_failed]"
        );
    }
}
