//! Analysis speed on a large project: 5,000 services and 50,000 IAM bindings.
//!
//! `cargo bench -p moat --bench analysis` generates the project under
//! `target/bench-project/`, then times the real CLI end to end (`moat check`, and the full
//! `moat explain` matrix for one service, JSON output) and the in-process phases (load, check
//! rules, matrix). Figures go to docs/BENCHMARKS.md. Environment: `MOAT_BENCH_SERVICES`,
//! `MOAT_BENCH_BINDINGS`, `MOAT_BENCH_RUNS` override the defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deterministic pseudo-random sequence (xorshift), so every run benchmarks the same project.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NUMBER: &str = "998877665544";

fn sa(i: usize) -> String {
    format!("svc-{i:05}@big-corp.iam.gserviceaccount.com")
}

/// Writes the project and returns its directory.
fn generate(dir: &Path, services: usize, bindings: usize) -> (usize, usize) {
    let _ = std::fs::remove_dir_all(dir);
    for sub in ["services", "iam", "armor"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let users = 500;
    let groups = 50;
    let networks = ["prod", "staging", "shared-services"];

    let mut m = String::new();
    writeln!(m, "project:\n  id: big-corp\n  number: \"{NUMBER}\"\n  region: us-central1").unwrap();
    m.push_str("networks:\n");
    for (i, n) in networks.iter().enumerate() {
        writeln!(m, "  - name: {n}\n    subnets:\n      - {{name: {n}-run, region: us-central1, range: 10.{i}.0.0/20, private_google_access: true}}").unwrap();
    }
    m.push_str("connectors:\n  - {name: legacy-conn, network: prod}\n");
    m.push_str("load_balancers:\n");
    writeln!(m, "  - name: edge\n    scheme: external\n    hosts: [www.big-corp.example]\n    security_policy: edge-policy\n    routes:").unwrap();
    for i in (0..services).step_by(50) {
        writeln!(m, "      - {{path: /s{i}/*, service: svc-{i:05}}}").unwrap();
    }
    writeln!(m, "  - name: internal\n    scheme: internal\n    network: prod\n    routes:").unwrap();
    for i in (25..services).step_by(50) {
        writeln!(m, "      - {{path: /s{i}/*, service: svc-{i:05}}}").unwrap();
    }
    m.push_str("domain_mappings:\n");
    for i in (10..services).step_by(100) {
        writeln!(m, "  - {{domain: s{i}.big-corp.example, service: svc-{i:05}}}").unwrap();
    }
    m.push_str("groups:\n");
    for g in 0..groups {
        writeln!(m, "  - email: team-{g}@big-corp.example\n    members:").unwrap();
        for _ in 0..10 {
            writeln!(m, "      - user:dev-{}@big-corp.example", rng.below(users)).unwrap();
        }
    }
    let mut written = 0;
    m.push_str("iam:\n  bindings:\n");
    for g in 0..groups {
        writeln!(m, "    - role: roles/viewer\n      members: [\"group:team-{g}@big-corp.example\"]").unwrap();
        written += 1;
    }
    m.push_str("secrets:\n");
    for s in 0..200 {
        writeln!(m, "  - name: secret-{s}\n    iam:\n      bindings:\n        - role: roles/secretmanager.secretAccessor\n          members: [\"serviceAccount:{}\"]", sa(s * 25)).unwrap();
        written += 1;
    }
    std::fs::write(dir.join("moat.yaml"), m).unwrap();
    std::fs::write(dir.join("armor/edge-policy.json"), r#"{"name": "edge-policy", "rules": [{"action": "allow", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}]}"#).unwrap();

    let remaining = bindings.saturating_sub(written);
    let (base, extra) = (remaining / services.max(1), remaining % services.max(1));
    for i in 0..services {
        let per_service = base + usize::from(i < extra);
        let ingress = ["all", "internal", "internal-and-cloud-load-balancing"][i % 3];
        let egress = match i % 4 {
            0 => String::new(),
            1 => format!(
                "        run.googleapis.com/network-interfaces: '[{{\"network\": \"{}\", \"subnetwork\": \"{}-run\"}}]'\n        run.googleapis.com/vpc-access-egress: all-traffic\n",
                networks[i % 3],
                networks[i % 3]
            ),
            2 => "        run.googleapis.com/vpc-access-connector: legacy-conn\n        run.googleapis.com/vpc-access-egress: private-ranges-only\n".to_owned(),
            _ => format!(
                "        run.googleapis.com/network-interfaces: '[{{\"network\": \"{}\"}}]'\n",
                networks[i % 3]
            ),
        };
        let secret = if i % 25 == 0 {
            format!(
                "        - name: SECRET\n          valueFrom:\n            secretKeyRef:\n              key: '3'\n              name: secret-{}\n",
                i / 25
            )
        } else {
            String::new()
        };
        let svc = format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  annotations:\n    run.googleapis.com/ingress: {ingress}\n  name: svc-{i:05}\n  namespace: '{NUMBER}'\nspec:\n  template:\n    metadata:\n      annotations:\n{egress}        autoscaling.knative.dev/maxScale: '10'\n    spec:\n      containers:\n      - image: us-docker.pkg.dev/big-corp/apps/svc:{i}\n        env:\n        - name: LOG_LEVEL\n          value: info\n{secret}      serviceAccountName: {}\n  traffic:\n  - latestRevision: true\n    percent: 100\n",
            sa(i)
        );
        std::fs::write(dir.join(format!("services/svc-{i:05}.yaml")), svc).unwrap();

        let mut b = String::from("{\n  \"bindings\": [\n");
        for k in 0..per_service {
            let member = match rng.below(10) {
                0 => format!("user:dev-{}@big-corp.example", rng.below(users)),
                1 => format!("group:team-{}@big-corp.example", rng.below(groups)),
                _ => format!("serviceAccount:{}", sa(rng.below(services))),
            };
            let sep = if k + 1 == per_service { "" } else { "," };
            writeln!(b, "    {{\"role\": \"roles/run.invoker\", \"members\": [\"{member}\"]}}{sep}").unwrap();
        }
        b.push_str("  ],\n  \"etag\": \"BwYXmI3aKfs=\",\n  \"version\": 1\n}\n");
        std::fs::write(dir.join(format!("iam/svc-{i:05}.json")), b).unwrap();
        written += per_service;
    }
    (services, written)
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[0], last.unwrap())
}

fn cli(args: &[&str]) -> (bool, usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_moat")).args(args).stderr(Stdio::inherit()).output().unwrap();
    (out.status.code() != Some(2), out.stdout.len())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let services = env_or("MOAT_BENCH_SERVICES", if quick { 200 } else { 5000 });
    let bindings = env_or("MOAT_BENCH_BINDINGS", if quick { 2000 } else { 50_000 });
    let runs = env_or("MOAT_BENCH_RUNS", if quick { 1 } else { 5 });
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-project");
    let (n, b) = generate(&dir, services, bindings);
    let d = dir.to_str().unwrap();
    let one = format!("svc-{:05}", n / 2 + 1);
    println!("project: {n} services, {b} bindings ({d}); median and best of {runs} runs");

    let (med, best, (ok, bytes)) = time(runs, || cli(&["check", d, "--format", "json"]));
    assert!(ok, "moat check could not run");
    println!("  moat check --format json                 median {med:>10.3?}  best {best:>10.3?}  ({bytes} bytes out)");
    let (med, best, (ok, bytes)) = time(runs, || cli(&["explain", d, "--service", &one, "--format", "json"]));
    assert!(ok, "moat explain could not run");
    println!("  moat explain --service {one} (matrix)  median {med:>10.3?}  best {best:>10.3?}  ({bytes} bytes out)");

    let files = moat_bench_files(&dir);
    let (med, best, project) = time(runs, || moat_policy::load(&files).unwrap());
    println!("  in-process: load                         median {med:>10.3?}  best {best:>10.3?}");
    let (med, best, findings) = time(runs, || moat_policy::check::run_all(&project).len());
    println!("  in-process: check rules ({findings} findings) median {med:>10.3?}  best {best:>10.3?}");
    let (med, best, rows) = time(runs, || moat_policy::explain::matrix(&project, Some(&one)).unwrap().len());
    println!("  in-process: explain matrix ({rows} rows)  median {med:>10.3?}  best {best:>10.3?}");
}

fn moat_bench_files(dir: &Path) -> Vec<moat_policy::SourceFile> {
    let mut files = vec![moat_policy::SourceFile {
        path: "moat.yaml".into(),
        text: std::fs::read_to_string(dir.join("moat.yaml")).unwrap(),
    }];
    for sub in ["services", "iam", "armor"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub)).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            files.push(moat_policy::SourceFile {
                text: std::fs::read_to_string(dir.join(sub).join(&name)).unwrap(),
                path: format!("{sub}/{name}"),
            });
        }
    }
    files
}
