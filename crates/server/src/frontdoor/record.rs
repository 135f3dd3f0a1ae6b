//! The decision record: one JSON line per request, the same decision `explain` prints plus
//! where the request came from and how long it took. Never a token, never a header value.

use std::io::Write as _;

use moat_policy::{Effect, Reason};
use serde::Serialize;

use crate::egress::EgressRecord;

/// What the front door decided about one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// RFC 3339, UTC, from the front door's clock.
    pub time: String,
    pub request_id: String,
    /// The origin of the listener the request arrived on (`internet`, `vpc:P/N`,
    /// `google:PRODUCT@P`, `service:NAME`).
    pub listener: String,
    /// The network origin after a calling service was resolved through its egress settings;
    /// `null` when the request was not routed.
    pub network_origin: Option<String>,
    /// The door (`default-url`, `tag:T`, `domain:D`, `lb:NAME`); `null` for an unknown host.
    pub entry: Option<String>,
    pub service: Option<String>,
    /// The authenticated caller's email; `null` for anonymous callers and refused tokens.
    pub principal: Option<String>,
    /// The priority of the load balancer security policy rule that decided (`null` when the
    /// request did not enter through a load balancer with a policy).
    pub edge_rule: Option<u32>,
    /// Preconfigured WAF signatures that matched (`owasp-crs-v030301-id942100-sqli`), from every
    /// WAF rule evaluated, preview rules included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waf_signatures: Vec<String>,
    pub effect: Effect,
    /// The status the client got; `null` when the connection was closed without a response
    /// (the door does not exist on the caller's network).
    pub status: Option<u16>,
    /// The layer that refused (`route`, `network`, `edge`, `ingress`, `authentication`,
    /// `authorization`, or `limit` for a request past the front door's limits); `null` when the
    /// request was passed on.
    pub layer: Option<&'static str>,
    /// Every step taken, in pipeline order, as `explain` prints them.
    pub reasons: Vec<Reason>,
    /// Why the workload gave no response (`upstream.timeout`, ...), when it did not.
    pub upstream_error: Option<&'static str>,
    pub latency_ms: f64,
}

impl DecisionRecord {
    /// The reason codes, in order.
    pub fn codes(&self) -> Vec<&'static str> {
        self.reasons.iter().map(|r| r.code).collect()
    }
}

/// Where decision records go. Called once per request, on the request's task, before the
/// response is written: keep it quick (a sink may buffer).
pub trait DecisionSink: Send + Sync + 'static {
    fn record(&self, record: &DecisionRecord);

    /// One egress proxy decision (an outbound request or tunnel), called on its task when it
    /// is decided (a tunnel's when it closes). No default: a sink that drops these would lose
    /// the egress audit trail without a word.
    fn record_egress(&self, record: &EgressRecord);

    /// Writes out whatever is buffered. The front door calls it when it stops serving, so the
    /// records of every completed request are written before a graceful shutdown ends.
    fn flush(&self) {}
}

/// The default sink: one JSON line per request on stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrSink;

impl DecisionSink for StderrSink {
    fn record(&self, record: &DecisionRecord) {
        match serde_json::to_string(record) {
            Ok(line) => {
                // One write per line so concurrent records do not interleave.
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Err(e) => tracing::warn!("cannot serialise a decision record: {e}"),
        }
    }

    fn record_egress(&self, record: &EgressRecord) {
        match serde_json::to_string(record) {
            Ok(line) => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Err(e) => tracing::warn!("cannot serialise an egress record: {e}"),
        }
    }
}

/// `1970-01-01T00:00:00Z` for unix seconds.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (never negative here).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
