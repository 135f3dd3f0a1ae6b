//! The front door's request metrics: `moat_requests_total` by service, layer, status and effect,
//! and `moat_request_duration_seconds` by service.
//!
//! Key decision: the `metrics` macros build the label set and look it up in the recorder's
//! registry on every call (label strings allocated, the key hashed, a sharded map locked). A
//! door sees few distinct label sets (one per service and outcome), so it resolves each once
//! and keeps the handles; a request then costs one uncontended lock, a map lookup by the
//! service name and an atomic add. The handles belong to the recorder that was installed when
//! they were made: the runtime installs its recorder before it builds a door, and a door made
//! without one records nothing, as the macros would.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Histogram};
use moat_policy::Effect;

/// One door's metric handles, by service.
#[derive(Default)]
pub(super) struct Counters {
    by_service: Mutex<HashMap<String, ServiceCounters>>,
}

struct ServiceCounters {
    duration: Histogram,
    /// `moat_requests_total`, by (layer, status, effect); a service has a handful.
    requests: Vec<(Outcome, Counter)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Outcome {
    layer: Option<&'static str>,
    status: Option<u16>,
    effect: Effect,
}

/// How many services' handles a door keeps: past it (a reload renamed services many times) the
/// map starts over rather than grow.
const MAX_SERVICES: usize = 4096;

impl Counters {
    /// Counts one request. `service` is empty for a request no service answered (Prometheus
    /// reads an empty label as no label).
    pub(super) fn record(
        &self,
        service: &str,
        layer: Option<&'static str>,
        status: Option<u16>,
        effect: Effect,
        latency: Duration,
    ) {
        let outcome = Outcome { layer, status, effect };
        let mut by_service = self.by_service.lock().unwrap_or_else(PoisonError::into_inner);
        if !by_service.contains_key(service) {
            if by_service.len() >= MAX_SERVICES {
                by_service.clear();
            }
            let duration = metrics::histogram!("moat_request_duration_seconds", "service" => service.to_owned());
            by_service.insert(service.to_owned(), ServiceCounters { duration, requests: Vec::new() });
        }
        let Some(counters) = by_service.get_mut(service) else { return };
        counters.duration.record(latency.as_secs_f64());
        match counters.requests.iter().find(|(o, _)| *o == outcome) {
            Some((_, counter)) => counter.increment(1),
            None => {
                let counter = requests_counter(service, outcome);
                counter.increment(1);
                counters.requests.push((outcome, counter));
            }
        }
    }
}

fn requests_counter(service: &str, o: Outcome) -> Counter {
    metrics::counter!(
        "moat_requests_total",
        "service" => service.to_owned(),
        "layer" => o.layer.unwrap_or(""),
        "status" => o.status.map_or_else(String::new, |s| s.to_string()),
        "effect" => match o.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        },
    )
}
