//! Runner 3 of the fidelity corpus (tests/fidelity/README.md): the queries whose origin is
//! `service:NAME`, asked by real workloads. Each case that has such a query is copied to a
//! temporary directory, every service gets the stdlib workload `fixtures/fidelity/caller.py`
//! under `run:`, and one `moat up` runs them all. For each query the caller's instance is asked
//! to call the callee's run.app URL (`http://` form, through its proxy variables) with an ID
//! token from its own metadata server; the status it gets must be the case's, and the front
//! door's decision record for the call must carry the case's effect, layer and reason codes.
//!
//! A network refusal has no HTTP response at the front door; the caller's egress proxy turns the
//! closed connection into `502` with `X-Moat-Egress-Reason: egress.upstream_failed`, which this
//! runner reads as "no response" (`status: null`).
//!
//! What a workload cannot ask is skipped with a counted message, never silently: a door other
//! than the default URL (the workload calls run.app URLs only), a principal other than the
//! caller's runtime service account (a workload has only its own identity), and request facts
//! (method, path, source address, headers) meant for a load balancer's security policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../../../tests/fidelity/case.rs"]
mod case;
#[path = "common/http.rs"]
mod http;
#[path = "common/listeners.rs"]
mod listeners;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use case::{Case, CaseQuery, Outcome, case_dirs, corpus_dir, describe};
use http::{enc, get_json as get};
use listeners::{listener_addr, read_until_ready};
use serde_json::Value;

/// The corpus has this many default-URL `service:` queries as its own runtime service account;
/// fewer calls means queries were lost on the way, not that the corpus shrank.
const MIN_CALLS: usize = 11;

/// `moat up` processes at once: each is a few processes and mostly waits on its workloads.
const PARALLEL: usize = 4;

/// A case with at least one `service:` query.
struct Planned {
    name: String,
    dir: PathBuf,
    behaviour: String,
    /// `(1-based index, query)`: the `service:` queries a workload can ask.
    queries: Vec<(usize, CaseQuery)>,
}

/// What one case produced.
#[derive(Default)]
struct Report {
    /// `service:` queries in the corpus (counted while planning).
    service_queries: usize,
    calls: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

/// Why a `service:` query cannot be asked by a workload, if it cannot.
fn unaskable(q: &CaseQuery) -> Option<String> {
    if let Some(via) = q.via.as_deref().filter(|v| *v != "default-url") {
        return Some(format!("door `{via}`: the workloads call run.app URLs only"));
    }
    let facts = [("method", q.method.is_some()), ("path", q.path.is_some()), ("source_ip", q.source_ip.is_some())];
    if let Some((fact, _)) = facts.iter().find(|(_, set)| *set) {
        return Some(format!("request fact `{fact}` is for a load balancer's security policy"));
    }
    if q.headers.is_some() {
        return Some("request fact `headers` is for a load balancer's security policy".to_owned());
    }
    None
}

/// Reads every case; the ones with `service:` queries, and the skips and failures met on the way.
fn plan(report: &mut Report) -> Vec<Planned> {
    let dirs = case_dirs(env!("CARGO_MANIFEST_DIR"));
    assert!(!dirs.is_empty(), "no cases under {}", corpus_dir(env!("CARGO_MANIFEST_DIR")).display());
    let mut planned = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let case: Case = match std::fs::read_to_string(dir.join("case.yaml"))
            .map_err(|e| e.to_string())
            .and_then(|t| serde_saphyr::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                report.failures.push(format!("{name}: case.yaml cannot be read: {e}"));
                continue;
            }
        };
        let mut queries = Vec::new();
        for (i, q) in case.queries.into_iter().enumerate() {
            if !q.from.starts_with("service:") {
                continue;
            }
            report.service_queries += 1;
            match unaskable(&q) {
                Some(why) => report.skipped.push(format!("{name} query {} ({}): {why}", i + 1, describe(&q))),
                None => queries.push((i + 1, q)),
            }
        }
        if !queries.is_empty() {
            planned.push(Planned { name, dir, behaviour: case.behaviour, queries });
        }
    }
    planned
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The case's project in a fresh directory, every service run by caller.py, the internet
/// listener on a free port (the default 8080 would clash between cases and with anything else).
fn write_project(p: &Planned) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-fidelity-{}-{}", p.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&p.dir, &dir);
    let mut services: Vec<String> = std::fs::read_dir(dir.join("services"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    services.sort();
    let moat = dir.join("moat.yaml");
    let mut text = std::fs::read_to_string(&moat).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("listeners:") || l.starts_with("run:")),
        "{}: moat.yaml already has `listeners:` or `run:`; runner 3 adds its own",
        p.name
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("listeners:\n  internet: 127.0.0.1:0\nrun:\n");
    for s in &services {
        text.push_str(&format!("  {s}: {{command: [python3, caller.py]}}\n"));
    }
    std::fs::write(&moat, text).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fidelity/caller.py");
    std::fs::copy(script, dir.join("caller.py")).unwrap();
    dir
}

/// A running `moat up`; stopped, and its directory removed, when dropped.
struct Up {
    child: Child,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(dir: PathBuf) -> Result<Up, String> {
    let stderr = std::fs::File::create(dir.join("moat.stderr")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("up")
        .arg(&dir)
        .env_remove("MOAT_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("moat does not start: {e}"))?;
    let printed = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(45));
    let admin = printed.ready.as_ref().map(|out| listener_addr(out, "admin"));
    let up = Up { child, admin: admin.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))), dir };
    let Some(out) = printed.ready else {
        return Err(format!(
            "moat up printed no `ready:` line within 45 s:\n{}\nstderr:\n{}",
            printed.all.lock().unwrap().join("\n"),
            std::fs::read_to_string(up.dir.join("moat.stderr")).unwrap_or_default()
        ));
    };
    let ready = out.last().cloned().unwrap_or_default();
    let counts = ready.trim_start_matches("ready: ").split_whitespace().next().unwrap_or_default().to_owned();
    match counts.split_once('/') {
        Some((a, b)) if a == b => Ok(up),
        _ => Err(format!(
            "not every workload started ({ready}):\n{}\nstderr:\n{}",
            out.join("\n"),
            std::fs::read_to_string(up.dir.join("moat.stderr")).unwrap_or_default()
        )),
    }
}

impl Up {
    /// The admin API's row for `service`.
    fn status(&self, service: &str) -> Result<Value, String> {
        let all = get(self.admin, "/status")?;
        all["services"]
            .as_array()
            .and_then(|ss| ss.iter().find(|s| s["service"] == service).cloned())
            .ok_or_else(|| format!("no service `{service}` in /status: {all}"))
    }

    /// The front door's records (not the egress proxy's) from `STATE/decisions.jsonl`.
    fn door_records(&self) -> Vec<Value> {
        let log = std::fs::read_to_string(self.dir.join(".moat/decisions.jsonl")).unwrap_or_default();
        log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|r| r["kind"].is_null()).collect()
    }

    /// The record of the front door for a call from `caller` to `service` after the first
    /// `seen` records (the log is written every few milliseconds).
    fn record_of(&self, seen: usize, caller: &str, service: &str) -> Option<Value> {
        let listener = format!("service:{caller}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .door_records()
                .into_iter()
                .skip(seen)
                .find(|r| r["listener"] == listener.as_str() && r["service"] == service);
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn outcome_of(record: &Value) -> Outcome {
    Outcome {
        effect: record["effect"].as_str().unwrap_or_default().to_owned(),
        status: record["status"].as_u64().and_then(|s| u16::try_from(s).ok()),
        layer: record["layer"].as_str().map(str::to_owned),
        codes: record["reasons"]
            .as_array()
            .map(|rs| rs.iter().filter_map(|r| r["code"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    }
}

fn show(status: Option<u16>) -> String {
    status.map_or_else(|| "null (no response)".to_owned(), |s| s.to_string())
}

/// One query: the caller's instance calls the callee; a mismatch goes to `report.failures`,
/// a query the workload cannot ask to `report.skipped`.
fn ask(up: &Up, p: &Planned, q: &CaseQuery, report: &mut Report, at: &str) -> Result<(), String> {
    let caller = q.from.strip_prefix("service:").unwrap();
    let from = up.status(caller)?;
    let sa = format!("serviceAccount:{}", from["service_account"].as_str().unwrap_or_default());
    if let Some(principal) = q.principal.as_deref().filter(|p| !p.eq_ignore_ascii_case(&sa)) {
        report.skipped.push(format!("{at}: `as: {principal}` is not the caller's runtime service account `{sa}`"));
        return Ok(());
    }
    let callee = up.status(&q.service)?;
    let url = callee["url"].as_str().ok_or_else(|| format!("`{}` has no URL in /status: {callee}", q.service))?;
    let audience = q.audience.clone().unwrap_or_else(|| url.to_owned());
    let plain = format!("http://{}/", url.trim_start_matches("https://").trim_end_matches('/'));
    let port = from["port"].as_u64().ok_or_else(|| format!("`{caller}` has no instance: {from}"))?;
    let instance = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()));

    let seen = up.door_records().len();
    report.calls += 1;
    let out = get(instance, &format!("/call?url={}&audience={}", enc(&plain), enc(&audience)))?;
    if let Some(e) = out.get("error") {
        return Err(format!("the workload `{caller}` could not call {plain}: {e}"));
    }
    let status = out["status"].as_u64().and_then(|s| u16::try_from(s).ok());
    // A closed connection at the front door reaches the workload as the proxy's 502.
    let got = match (status, out["reason"].as_str()) {
        (Some(502), Some("egress.upstream_failed")) => None,
        (s, _) => s,
    };
    let record = up.record_of(seen, caller, &q.service);
    let mut wrong = Vec::new();
    if got != q.expect.status {
        wrong.push(format!(
            "    expected status: {}\n    got status:      {} (the workload's answer: {out})",
            show(q.expect.status),
            show(got)
        ));
    }
    match &record {
        Some(r) if outcome_of(r) == q.expect => {}
        Some(r) => wrong.push(format!(
            "    expected:        {}\n    front door:      {} (network origin {})",
            q.expect,
            outcome_of(r),
            r["network_origin"]
        )),
        None => wrong.push("    the front door wrote no decision record for the call".to_owned()),
    }
    if got == Some(200)
        && !out["body"].as_str().unwrap_or_default().contains(&format!("\"service\": \"{}\"", q.service))
    {
        wrong.push(format!("    a 200 that did not come from `{}`: {out}", q.service));
    }
    let door = record.as_ref().map_or_else(|| "no record".to_owned(), |r| outcome_of(r).to_string());
    println!("called: {at}: the workload got {}; front door: {door}", show(got));
    if !wrong.is_empty() {
        report.failures.push(format!("{at}\n    behaviour: {}\n{}", p.behaviour, wrong.join("\n")));
    }
    Ok(())
}

/// One case: one `moat up` with every service, its queries in order.
fn run_case(p: &Planned) -> Report {
    let mut report = Report::default();
    let up = match start(write_project(p)) {
        Ok(up) => up,
        Err(e) => {
            report.failures.push(format!("{}: {e}", p.name));
            return report;
        }
    };
    for (i, q) in &p.queries {
        let at = format!("{} query {i} ({})", p.name, describe(q));
        if let Err(e) = ask(&up, p, q, &mut report, &at) {
            report.failures.push(format!("{at}: {e}"));
        }
    }
    report
}

/// A place among the [`PARALLEL`] cases running, handed back when dropped.
struct Slot(mpsc::Sender<()>);

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn workloads_calling_each_other_get_the_corpus_answers() {
    let began = Instant::now();
    let mut total = Report::default();
    let planned = plan(&mut total);
    let (tokens, slots) = mpsc::channel::<()>();
    for _ in 0..PARALLEL {
        tokens.send(()).unwrap();
    }
    let slots = std::sync::Mutex::new(slots);
    let reports: Vec<(String, Report)> = std::thread::scope(|scope| {
        let handles: Vec<_> = planned
            .iter()
            .map(|p| {
                let (slots, tokens) = (&slots, tokens.clone());
                scope.spawn(move || {
                    slots.lock().unwrap().recv().unwrap();
                    // The slot goes back even if the case panics, so the others still run.
                    let _slot = Slot(tokens);
                    (p.name.clone(), run_case(p))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let cases = reports.len();
    for (_, r) in reports {
        total.calls += r.calls;
        total.skipped.extend(r.skipped);
        total.failures.extend(r.failures);
    }
    println!(
        "runner 3: {cases} cases, {} calls, {} queries skipped, {:.1} s",
        total.calls,
        total.skipped.len(),
        began.elapsed().as_secs_f64()
    );
    for s in &total.skipped {
        println!("skipped: {s}");
    }
    assert!(
        total.failures.is_empty(),
        "{} of {} workload calls disagree with the corpus:\n\n{}",
        total.failures.len(),
        total.calls,
        total.failures.join("\n\n")
    );
    assert_eq!(
        total.calls + total.skipped.len(),
        total.service_queries,
        "every `service:` query of the corpus must be called or skipped with a reason"
    );
    assert!(total.calls >= MIN_CALLS, "only {} workload calls ran; the corpus has at least {MIN_CALLS}", total.calls);
}
