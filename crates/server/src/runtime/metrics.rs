//! `GET /metrics` on the admin listener, in the Prometheus text format.
//!
//! The front door counts requests (`moat_requests_total`, `moat_request_duration_seconds`) and
//! the egress proxy outbound calls (`moat_egress_requests_total`) through the `metrics` facade,
//! which costs nothing until a recorder is installed; the runtime installs the process-wide
//! Prometheus recorder once. Instance gauges are read from the board at scrape time, so they
//! cannot drift from `/status`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::status::{Board, State};

/// Latency buckets, in seconds: a local front door answers a refusal in microseconds and a
/// workload in milliseconds; past 10 s is a hung workload.
const BUCKETS: [f64; 14] =
    [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide recorder, installed on first use. `None` when another recorder was
/// installed first (an embedding program's): moat then exports nothing itself.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("moat_request_duration_seconds".into()), &BUCKETS)
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        "moat_requests_total",
        "requests decided by the front door, by service, refusing layer, status and effect"
    );
    metrics::describe_histogram!(
        "moat_request_duration_seconds",
        metrics::Unit::Seconds,
        "from a request's arrival to its response head, by service"
    );
    metrics::describe_counter!(
        "moat_rate_state_errors_total",
        "calls to the shared rate-limit state (Redis) that failed, by error (timeout, store); each rate-limited request got the failure policy"
    );
    metrics::describe_counter!(
        "moat_egress_requests_total",
        "outbound requests and tunnels through the egress proxy, by caller, route (metadata, direct, vpc:P/N, front-door) and effect"
    );
    metrics::describe_counter!("moat_reloads_total", "config reloads, by result (applied, invalid, needs_restart)");
    metrics::describe_gauge!("moat_instances", "instances by service and state");
    metrics::describe_counter!("moat_instance_restarts_total", "instance restarts by service");
}

/// One config reload: `applied`, `invalid` or `needs_restart`.
pub fn reload(result: &'static str) {
    metrics::counter!("moat_reloads_total", "result" => result).increment(1);
}

/// The text a scrape gets, with the instance gauges taken from `board` now.
pub(super) fn render(board: &Board) -> Option<String> {
    let handle = handle()?;
    const STATES: [State; 7] = [
        State::Starting,
        State::Ready,
        State::Restarting,
        State::Failed,
        State::Stopped,
        State::Upstream,
        State::NotRunning,
    ];
    for s in board.snapshot() {
        for state in STATES {
            metrics::gauge!("moat_instances", "service" => s.service.clone(), "state" => state.label())
                .set(f64::from(u8::from(s.state == state)));
        }
        metrics::counter!("moat_instance_restarts_total", "service" => s.service.clone()).absolute(s.restarts.into());
    }
    Some(handle.render())
}

/// Drains the histograms into their buckets; without it their samples pile up between scrapes.
pub(super) fn upkeep() {
    if let Some(h) = handle() {
        h.run_upkeep();
    }
}
