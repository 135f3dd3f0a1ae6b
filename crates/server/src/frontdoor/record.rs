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
    #[serde(serialize_with = "reasons_json::serialize")]
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

/// `1970-01-01T00:00:00Z` for unix seconds. Every record of a second carries the same time, so
/// each thread formats a second once.
pub(crate) fn rfc3339(secs: u64) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *text = format_rfc3339(secs);
            *at = secs;
        }
        text.clone()
    })
}

fn format_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The JSON of a record's reasons, made once per distinct list on each thread.
///
/// Key decision: the reasons are most of a record (prose messages and their sources, ~600 of
/// ~750 bytes), and requests from the same caller to the same service carry the same list, so
/// escaping them into JSON again was the largest single part of writing a record
/// (docs/BENCHMARKS.md). Each thread keeps the last few lists with their JSON; a list equal to
/// one of them (a comparison of the lists, no hashing) reuses its JSON. The output is exactly
/// what serialising the list gives.
mod reasons_json {
    use std::cell::RefCell;

    use moat_policy::Reason;
    use serde::Serialize as _;
    use serde_json::value::RawValue;

    /// Lists kept per thread: a door thread sees a few callers and services at a time.
    const KEPT: usize = 8;

    thread_local! {
        /// Most recently used first.
        static KEPT_LISTS: RefCell<Vec<(Vec<Reason>, Box<RawValue>)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn serialize<S: serde::Serializer>(reasons: &Vec<Reason>, ser: S) -> Result<S::Ok, S::Error> {
        KEPT_LISTS.with_borrow_mut(|kept| {
            if let Some(at) = kept.iter().position(|(list, _)| list == reasons) {
                if let Some(recent) = kept.get_mut(..=at) {
                    recent.rotate_right(1);
                }
            } else {
                let Ok(json) = serde_json::value::to_raw_value(reasons) else {
                    return reasons.serialize(ser);
                };
                kept.insert(0, (reasons.clone(), json));
                kept.truncate(KEPT);
            }
            match kept.first() {
                Some((_, json)) => json.serialize(ser),
                None => reasons.serialize(ser),
            }
        })
    }
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

    fn record_with(reasons: Vec<Reason>) -> DecisionRecord {
        DecisionRecord {
            time: rfc3339(0),
            request_id: "r".into(),
            listener: "internet".into(),
            network_origin: None,
            entry: None,
            service: None,
            principal: None,
            edge_rule: None,
            waf_signatures: Vec::new(),
            effect: Effect::Deny,
            status: Some(403),
            layer: None,
            reasons,
            upstream_error: None,
            latency_ms: 0.0,
        }
    }

    #[test]
    #[expect(clippy::expect_used, clippy::indexing_slicing, reason = "tests name the failing step")]
    fn kept_reasons_serialise_exactly_as_the_list_does() {
        // More distinct lists than a thread keeps, each seen again after others: every record
        // must carry its own reasons, escaped as serde_json escapes them.
        let lists: Vec<Vec<Reason>> = (0..20)
            .map(|i| {
                vec![
                    Reason::new("ingress.all", format!("list {i}: `a` \"quoted\" \\ back\tslash \u{1}"), None),
                    Reason::new("iam.binding", format!("second of {i} → ünïcode"), None),
                ]
            })
            .collect();
        for round in 0..3 {
            for (i, list) in lists.iter().enumerate() {
                // Some lists repeat at once (a hit on the most recent), all of them come back
                // after 19 others (evicted from the 8 kept: a miss).
                for _ in 0..=(i % 2) {
                    let line = serde_json::to_string(&record_with(list.clone())).expect("serialise");
                    let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
                    let want = serde_json::to_value(list).expect("list");
                    assert_eq!(parsed["reasons"], want, "round {round}, list {i}");
                }
            }
        }
        // Equal content in a new list is a hit and gives the same bytes.
        let a = serde_json::to_string(&record_with(lists[3].clone())).expect("a");
        let b = serde_json::to_string(&record_with(lists[3].clone())).expect("b");
        assert_eq!(a, b);
        // A list that differs only in a source is another list.
        let mut with_source = lists[3].clone();
        let source = moat_policy::SourceRef::new(&std::sync::Arc::from("services/x.yaml"), 7, 3);
        with_source[0].source = Some(source.clone());
        let c: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&record_with(with_source)).expect("c")).expect("c json");
        assert_eq!(c["reasons"][0]["source"], source.to_string());
        assert_eq!(c["reasons"][1]["source"], serde_json::Value::Null);
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
