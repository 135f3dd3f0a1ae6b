//! Parity: every query of the fidelity corpus (`tests/fidelity/*/case.yaml`) sent through the
//! real front door over HTTP, compared with what the case expects and with what `explain`
//! answers for the same question. Effect, status, layer and every reason code must match; a
//! network refusal must close the connection without an HTTP response. All mismatches are
//! reported in one failure, and the number of queries sent must equal the number in the corpus.
//!
//! How a query becomes a request:
//! - `from`: the listener of that origin (`service:NAME` is the listener the egress proxy will
//!   hand NAME's outbound calls to).
//! - `via`: the Host. default-url → the service's first run.app host; `tag:T` → `T---host`;
//!   `domain:D` → D; `lb:NAME` → the LB's first exact host, else `NAME.lb.localhost`, and a path
//!   its route to the service matches.
//! - `as`: a real ID token signed by the front door's trusted keys, for `audience` (default the
//!   service's first URL), in `Authorization: Bearer`; without `as`, a `service:NAME` origin
//!   calls as NAME's runtime service account and every other origin is anonymous (as explain).
//!
//! Every query of the corpus can be expressed over HTTP this way; none is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../../../tests/fidelity/case.rs"]
mod case;
#[path = "common/frontdoor.rs"]
mod harness;

use std::collections::BTreeSet;
use std::fmt;

use case::{Case, CaseQuery, Outcome, case_dirs, corpus_dir, describe};
use harness::{Harness, read_project_dir, request, send, token_for};
use moat_policy::edge::EdgeFacts;
use moat_policy::explain::{Query, default_principal, query};
use moat_policy::{Entry, Origin, Principal, Project};
use serde::Deserialize;

/// The corpus's own count of queries, read without the runner's schema.
#[derive(Debug, Deserialize)]
struct Count {
    queries: Vec<serde::de::IgnoredAny>,
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap().to_owned()
}

/// The Host and path that reach `service` through `entry`.
fn target(project: &Project, service: &str, entry: &Entry) -> Result<(String, String), String> {
    let svc = project.service(service).ok_or_else(|| format!("no service `{service}`"))?;
    let default_host = || svc.urls.first().map(|u| host_of(u)).ok_or_else(|| format!("`{service}` has no URL"));
    Ok(match entry {
        Entry::DefaultUrl => (default_host()?, "/".to_owned()),
        Entry::Tag(t) => (format!("{t}---{}", default_host()?), "/".to_owned()),
        Entry::Domain(d) => (d.clone(), "/".to_owned()),
        Entry::Lb(name) => {
            let lb = project.load_balancer(name).ok_or_else(|| format!("no load balancer `{name}`"))?;
            let host =
                lb.hosts.iter().find(|h| !h.contains('*')).cloned().unwrap_or_else(|| format!("{name}.lb.localhost"));
            let route = lb
                .routes
                .iter()
                .find(|r| r.service == service)
                .ok_or_else(|| format!("`{name}` does not route to `{service}`"))?;
            let path = match route.path.strip_suffix('*') {
                Some(prefix) => format!("{prefix}parity"),
                None => route.path.clone(),
            };
            (host, path)
        }
    })
}

struct Prepared {
    origin: Origin,
    host: String,
    path: String,
    method: String,
    headers: Vec<(String, String)>,
    token: Option<String>,
    explain: Outcome,
}

fn prepare(project: &Project, h: &Harness, q: &CaseQuery) -> Result<Prepared, String> {
    let origin: Origin = q.from.parse::<Origin>().map_err(|e| e.to_string())?.in_project(&project.id);
    let entry: Entry = match &q.via {
        Some(v) => v.parse().map_err(|e: moat_policy::request::ParseError| e.to_string())?,
        None => Entry::DefaultUrl,
    };
    let principal: Principal = match &q.principal {
        Some(p) => p.parse().map_err(|e: moat_policy::request::ParseError| e.to_string())?,
        None => default_principal(project, &origin).map_err(|e| e.to_string())?,
    };
    let svc = project.service(&q.service).ok_or_else(|| format!("no service `{}`", q.service))?;
    let token = (principal != Principal::Anonymous).then(|| {
        let aud = q.audience.clone().or_else(|| svc.urls.first().cloned()).unwrap_or_default();
        token_for(&h.keys, &principal, &aud, harness::NOW)
    });
    let (host, route_path) = target(project, &q.service, &entry)?;
    let path = q.path.clone().unwrap_or(route_path);
    let method = q.method.clone().unwrap_or_else(|| "GET".to_owned());
    let source_ip = match &q.source_ip {
        Some(ip) => {
            let ip: std::net::IpAddr = ip.parse().map_err(|e| format!("`source_ip: {ip}`: {e}"))?;
            if !ip.is_loopback() {
                return Err(format!("`source_ip: {ip}` cannot be sent over HTTP: the test client is on loopback"));
            }
            Some(ip)
        }
        None => None,
    };
    let headers: Option<Vec<(String, String)>> = match &q.headers {
        Some(hs) => Some(
            hs.iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .ok_or_else(|| format!("header `{h}` is not `NAME: VALUE`"))
                })
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    let request = EdgeFacts { method: q.method.clone(), target: q.path.clone(), source_ip, headers: headers.clone() };
    let answer = query(
        project,
        &Query {
            service: q.service.clone(),
            origin: origin.clone(),
            entry,
            principal: Some(principal),
            audience: q.audience.clone(),
            request,
        },
    )
    .map_err(|e| format!("explain cannot ask this: {e}"))?;
    let explain = Outcome {
        effect: serde_json::to_value(answer.effect).unwrap().as_str().unwrap().to_owned(),
        status: answer.status,
        layer: answer.layer.map(|l| l.to_string()),
        codes: answer.reasons.iter().map(|r| r.code.to_owned()).collect(),
    };
    Ok(Prepared { origin, host, path, method, headers: headers.unwrap_or_default(), token, explain })
}

/// Sends one query; the outcome as the client and the decision record saw it.
async fn ask(h: &Harness, p: &Prepared) -> Result<Outcome, String> {
    let before = h.records.len();
    let auth = p.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    headers.extend(p.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let resp = send(h.addr(&p.origin), &request(&p.method, &p.host, &p.path, &headers, "")).await;
    let records = h.records.all();
    let [record] = &records[before..] else {
        return Err(format!("expected one decision record, got {}", records.len() - before));
    };
    let http_status = resp.as_ref().map(|r| r.status);
    if record.status != http_status {
        return Err(format!("the record says status {:?} but the client got {http_status:?}", record.status));
    }
    if record.layer == Some("network") && resp.is_some() {
        return Err("a network refusal wrote an HTTP response".to_owned());
    }
    if let Some(r) = &resp
        && r.status == 200
        && r.echo()["path"].as_str() != Some(p.path.as_str())
    {
        return Err(format!("the upstream did not receive the request: {}", r.body));
    }
    Ok(Outcome {
        effect: serde_json::to_value(record.effect).unwrap().as_str().unwrap().to_owned(),
        status: http_status,
        layer: record.layer.map(str::to_owned),
        codes: record.codes().into_iter().map(str::to_owned).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fidelity_query_gets_the_same_decision_over_http() {
    let dirs = case_dirs(env!("CARGO_MANIFEST_DIR"));
    assert!(!dirs.is_empty(), "no cases under {}", corpus_dir(env!("CARGO_MANIFEST_DIR")).display());
    let mut failures = Vec::new();
    let (mut corpus_queries, mut sent, mut cases_run) = (0usize, 0usize, 0usize);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = match std::fs::read_to_string(dir.join("case.yaml")) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: cannot read case.yaml: {e}"));
                continue;
            }
        };
        match serde_saphyr::from_str::<Count>(&text) {
            Ok(c) => corpus_queries += c.queries.len(),
            Err(e) => failures.push(format!("{name}: case.yaml has no query list: {e}")),
        }
        let case: Case = match serde_saphyr::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{name}: case.yaml does not parse: {e}"));
                continue;
            }
        };
        let project = match read_project_dir(dir) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: project does not load: {e}"));
                continue;
            }
        };
        let origins: BTreeSet<Origin> = case
            .queries
            .iter()
            .filter_map(|q| q.from.parse::<Origin>().ok().map(|o| o.in_project(&project.id)))
            .collect();
        let origins: Vec<Origin> = origins.into_iter().collect();
        let h = Harness::start(project.clone(), &origins).await;
        cases_run += 1;
        for (i, q) in case.queries.iter().enumerate() {
            let at = format!("{name} query {} ({})", i + 1, describe(q));
            let prepared = match prepare(&project, &h, q) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("{at}: {e}"));
                    continue;
                }
            };
            sent += 1;
            let mismatch = |what: &str, got: &dyn fmt::Display| {
                format!("{at}\n    behaviour: {}\n    expected:  {}\n    {what} {got}", case.behaviour, q.expect)
            };
            if prepared.explain != q.expect {
                failures.push(mismatch("explain:  ", &prepared.explain));
            }
            match ask(&h, &prepared).await {
                Ok(got) if got == q.expect => {}
                Ok(got) => failures.push(mismatch("HTTP:     ", &got)),
                Err(e) => failures.push(format!("{at}: {e}")),
            }
        }
        h.door.shutdown();
        for s in h.serving {
            match s.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{name}: a listener did not serve: {e}")),
                Err(e) => failures.push(format!("{name}: a listener task failed: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} parity failures ({sent} queries sent):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(sent, corpus_queries, "every query of the corpus must be sent through the front door");
    assert_eq!(cases_run, dirs.len(), "every case directory must run");
}
