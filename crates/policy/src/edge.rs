//! The edge stage for `explain`: a query names some facts of the request (method, path, client
//! address, headers) and not others. Rules that read only known facts are evaluated by the same
//! evaluator the front door runs; a rule that needs a fact the query lacks is set aside and
//! said to depend on it, never guessed.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::armor::expr::Attribute;
use crate::armor::{Action, EdgeRequest, EdgeVerdict, GeoTable, KeyPart, Match, Rule, SecurityPolicy};
use crate::decision::Reason;

/// Reason code: a rule needs request facts the query does not give; it was set aside.
pub const DEPENDS_ON_REQUEST: &str = "edge.depends_on_request";

/// The request facts an `explain` query gives. `None` means unknown, not empty: the rules that
/// read it are set aside. `headers: Some(..)` means the request carries exactly these (and the
/// Host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeFacts {
    pub method: Option<String>,
    /// Path and query, as on the request line.
    pub target: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub headers: Option<Vec<(String, String)>>,
}

/// A fact a rule may need, and the flag that gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fact {
    Method,
    Path,
    SourceIp,
    Headers,
    /// The whole request, body included, run through the CRS: explain never has it.
    WafInspection,
}

impl Fact {
    fn describe(self) -> &'static str {
        match self {
            Self::Method => "request.method (--method)",
            Self::Path => "request.path/request.query (--path)",
            Self::SourceIp => "origin.ip (--source-ip)",
            Self::Headers => "request.headers (--header)",
            Self::WafInspection => {
                "the request body and the CRS signatures (`moat waf test` runs one request through a set)"
            }
        }
    }
}

impl EdgeFacts {
    /// The request as the front door would build it, with placeholders for unknown facts
    /// (never read: the rules that need them are set aside), and the region and ASN `geo`
    /// gives the source address. The scheme is `http`, as on moat's listeners.
    pub fn request(&self, host: &str, geo: &GeoTable) -> EdgeRequest {
        let ip = self.source_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut r = EdgeRequest::new(
            self.method.as_deref().unwrap_or("GET"),
            "http",
            host,
            self.target.as_deref().unwrap_or("/"),
            ip,
        );
        for (k, v) in self.headers.iter().flatten() {
            r = r.header(k, v);
        }
        if self.source_ip.is_some() { geo.locate(r) } else { r }
    }

    fn knows(&self, fact: Fact) -> bool {
        match fact {
            Fact::Method => self.method.is_some(),
            Fact::Path => self.target.is_some(),
            Fact::SourceIp => self.source_ip.is_some(),
            Fact::Headers => self.headers.is_some(),
            Fact::WafInspection => false,
        }
    }

    /// The facts `rule` reads that the query does not give.
    fn missing(&self, policy: &SecurityPolicy, geo: &GeoTable, rule: &Rule) -> Vec<Fact> {
        let mut needs = Vec::new();
        match &rule.matcher {
            Match::SrcIps { all: true, .. } => {}
            Match::SrcIps { all: false, .. } => needs.push(Fact::SourceIp),
            Match::Expr(e) => {
                if e.compiled.uses_waf() {
                    needs.push(Fact::WafInspection);
                }
                for a in e.compiled.attributes() {
                    match a {
                        Attribute::RequestMethod => needs.push(Fact::Method),
                        Attribute::RequestPath | Attribute::RequestQuery => needs.push(Fact::Path),
                        Attribute::RequestHeaders => needs.push(Fact::Headers),
                        Attribute::OriginIp => needs.push(Fact::SourceIp),
                        Attribute::OriginUserIp => {
                            needs.push(Fact::SourceIp);
                            if !policy.user_ip_request_headers.is_empty() {
                                needs.push(Fact::Headers);
                            }
                        }
                        // The geo table's answer for the source address; without a table
                        // they are unavailable for every request, as at the front door.
                        Attribute::OriginRegionCode | Attribute::OriginAsn if !geo.is_empty() => {
                            needs.push(Fact::SourceIp);
                        }
                        // Known without the query: the listener's scheme, and what moat never
                        // has (TLS fingerprints, reCAPTCHA tokens) is absent for every request,
                        // as at the front door.
                        _ => {}
                    }
                }
            }
        }
        if !geo.is_empty() && counts_by_region(rule) {
            needs.push(Fact::SourceIp);
        }
        needs.sort();
        needs.dedup();
        needs.retain(|f| !self.knows(*f));
        needs
    }
}

/// Evaluates `policy` for what the query knows, with `geo` (the project's IP-to-region/ASN
/// table) locating the source address. Rules before the deciding one that need unknown facts
/// come first in the reasons, one `edge.depends_on_request` each. When the deciding rule reads
/// the region or ASN (or counts by `REGION_CODE`), its reason says what the table gave.
pub fn evaluate<'p>(policy: &'p SecurityPolicy, geo: &GeoTable, facts: &EdgeFacts, host: &str) -> EdgeVerdict<'p> {
    let request = facts.request(host, geo);
    let mut verdict = policy.evaluate_where(&request, |rule| facts.missing(policy, geo, rule).is_empty());
    if reads_geo(verdict.rule)
        && let (Some(ip), Some(decided)) = (facts.source_ip, verdict.reasons.last_mut())
    {
        decided.message.push_str(&located(geo, ip, &request));
    }
    let decider = verdict.priority();
    let mut depends: Vec<Reason> = policy
        .rules()
        .iter()
        .take_while(|r| r.priority < decider)
        .filter_map(|rule| {
            let missing = facts.missing(policy, geo, rule);
            if missing.is_empty() {
                return None;
            }
            let what: Vec<&str> = missing.iter().map(|f| f.describe()).collect();
            let preview = if rule.preview { " (preview)" } else { "" };
            Some(Reason::new(
                DEPENDS_ON_REQUEST,
                format!(
                    "rule {}{preview} ({}) depends on request attributes: {}; set aside as if it did not match",
                    rule.priority,
                    rule.action,
                    what.join(", ")
                ),
                Some(&rule.source),
            ))
        })
        .collect();
    depends.append(&mut verdict.reasons);
    verdict.reasons = depends;
    verdict
}

/// What a load balancer's security policy does to every request, as the matrix (which has no
/// request facts) can tell: `explain --format json` prints it as a row's `edge` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// Every request goes on to ingress (allowed, or counted by a rate limit it conforms to
    /// while its key stays under the limit).
    Open,
    /// Some requests are refused and others go on: which depends on the request.
    Depends,
    /// Every request is refused, whatever it carries.
    Closed,
}

/// The policy evaluated with no request facts, and what that says about every request.
#[derive(Debug, Clone)]
pub struct MatrixEdge<'p> {
    pub gate: Gate,
    /// As `explain --via lb:NAME` without request facts evaluates it: the rules that need
    /// facts set aside (`edge.depends_on_request`), the first other matching rule deciding.
    pub verdict: EdgeVerdict<'p>,
}

/// Evaluates `policy` for the matrix: with no request facts, rules that read the request are
/// set aside, and the rest decide the same for every request. The deciding rule's answer holds
/// for every request unless a set-aside rule above it (not in preview) matches first, so the
/// policy is closed when the decision refuses and no set-aside rule above it could let a
/// request through, open when it admits and none could refuse one, and depends otherwise. A
/// rate limit could do either (its exceed action refuses).
pub fn for_matrix<'p>(policy: &'p SecurityPolicy, geo: &GeoTable, host: &str) -> MatrixEdge<'p> {
    let facts = EdgeFacts::default();
    let verdict = evaluate(policy, geo, &facts, host);
    let decider = verdict.priority();
    let mut set_aside = policy
        .rules()
        .iter()
        .take_while(|r| r.priority < decider)
        .filter(|r| !r.preview && !facts.missing(policy, geo, r).is_empty());
    let gate = if verdict.outcome.status().is_some() {
        if set_aside.any(|r| !matches!(r.action, Action::Deny(_) | Action::Redirect(_))) {
            Gate::Depends
        } else {
            Gate::Closed
        }
    } else if set_aside.any(|r| !matches!(r.action, Action::Allow)) {
        Gate::Depends
    } else {
        Gate::Open
    };
    MatrixEdge { gate, verdict }
}

/// Whether `rule` reads `origin.region_code` or `origin.asn`, or counts by `REGION_CODE`.
fn reads_geo(rule: &Rule) -> bool {
    let by_expr = match &rule.matcher {
        Match::Expr(e) => {
            e.compiled.attributes().iter().any(|a| matches!(a, Attribute::OriginRegionCode | Attribute::OriginAsn))
        }
        Match::SrcIps { .. } => false,
    };
    by_expr || counts_by_region(rule)
}

/// Whether `rule` is a rate limit with a `REGION_CODE` key part.
fn counts_by_region(rule: &Rule) -> bool {
    match &rule.action {
        Action::Throttle(l) | Action::RateBasedBan(l, _) => l.key.contains(&KeyPart::RegionCode),
        Action::Allow | Action::Deny(_) | Action::Redirect(_) => false,
    }
}

/// What the table gave `ip`, appended to the deciding rule's reason ("; source IP: region
/// \`CH\`, ASN 3303 (geo row RANGE, moat.yaml:LINE)"), or why there is no region or ASN.
fn located(geo: &GeoTable, ip: IpAddr, request: &EdgeRequest) -> String {
    let ip = ip.to_canonical();
    if geo.is_empty() {
        return format!("; source {ip}: no region or ASN (moat.yaml has no `geo:` table)");
    }
    let Some(row) = geo.lookup(ip) else {
        return format!("; source {ip}: no region or ASN (no `geo:` row holds it)");
    };
    let region = request.region_code.as_deref().map_or_else(|| "no region".to_owned(), |c| format!("region `{c}`"));
    let asn = request.asn.map_or_else(|| "no ASN".to_owned(), |a| format!("ASN {a}"));
    format!("; source {ip}: {region}, {asn} (geo row {}, {})", row.range, row.source)
}

#[cfg(test)]
mod tests;
