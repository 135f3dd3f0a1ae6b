//! Secret store throughput and latency, with a floor: the same reads straight from redb,
//! without authorization, unsealing or the audit record.
//!
//! `cargo bench -p moat-secrets --bench store` runs the full version (about 25 s); without
//! `--bench` (as in `cargo test --benches`) it runs a few iterations only, to check it works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "benchmark")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_policy::request::Principal;
use moat_policy::secret_access::{BindingDoc, PolicyDoc};
use moat_policy::{Project, SourceFile};
use moat_secrets::{Caller, MasterKey, Secrets, Selector};
use redb::ReadableDatabase;

const VERSIONS: u64 = 16;
const PAYLOAD: usize = 64;
const THREADS: usize = 32;

fn project() -> Arc<Project> {
    let text = "project: {id: bench, number: '123456789012', region: europe-west1}\n".to_owned();
    Arc::new(moat_policy::load(&[SourceFile { path: "moat.yaml".into(), text }]).unwrap())
}

fn caller() -> Caller {
    Caller::Instance {
        service: "api".into(),
        account: Principal::ServiceAccount("app@bench.iam.gserviceaccount.com".into()),
    }
}

/// Runs `op` on `threads` threads for `dur`; operations per second over all threads.
fn throughput(threads: usize, dur: Duration, op: impl Fn(u64) + Send + Sync) -> f64 {
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut n = 0u64;
                    let mut i = t as u64;
                    loop {
                        for _ in 0..64 {
                            op(i % VERSIONS + 1);
                            i += 1;
                            n += 1;
                        }
                        if start.elapsed() >= dur {
                            return n;
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn setup(dir: &Path) -> Secrets {
    let s = Secrets::open(dir, MasterKey::from_bytes([42; 32]), project()).unwrap();
    s.create_secret(&Caller::Admin, "bench", BTreeMap::new()).unwrap();
    let policy = PolicyDoc {
        version: 1,
        bindings: vec![BindingDoc {
            role: "roles/secretmanager.secretAccessor".into(),
            members: vec!["serviceAccount:app@bench.iam.gserviceaccount.com".into()],
            condition: None,
        }],
    };
    s.set_iam_policy(&Caller::Admin, "bench", policy, None).unwrap();
    for v in 0..VERSIONS {
        s.add_version(&Caller::Admin, "bench", &[b'a' + v as u8; PAYLOAD], None).unwrap();
    }
    s.create_secret(&Caller::Admin, "writes", BTreeMap::new()).unwrap();
    s
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let dur = if full { Duration::from_secs(4) } else { Duration::from_millis(100) };
    let adds = if full { 400 } else { 10 };
    let dir = tempfile::Builder::new().prefix("moat-secrets-bench").tempdir_in(std::env::temp_dir()).unwrap();
    let bench_start = Instant::now();

    let s = setup(dir.path());
    let who = caller();
    let access = |v: u64| {
        let p = s.access(&who, "bench", Selector::Number(v)).unwrap();
        assert_eq!(p.data.len(), PAYLOAD);
    };
    let seq = throughput(1, dur, access);
    let conc = throughput(THREADS, dur, access);

    let mut lat = Vec::with_capacity(adds);
    let payload = vec![b'z'; PAYLOAD];
    for _ in 0..adds {
        let t = Instant::now();
        s.add_version(&Caller::Admin, "writes", &payload, None).unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let audit_len = std::fs::metadata(s.audit_path()).unwrap().len();
    drop(s);

    // The floor: the same two lookups from the same file, no authorization, no unsealing, no
    // audit record.
    let db = redb::Database::open(dir.path().join(moat_secrets::store::STORE_FILE)).unwrap();
    let raw = |v: u64| {
        let r = db.begin_read().unwrap();
        let secrets = r.open_table(moat_secrets::store::SECRETS).unwrap();
        assert!(secrets.get("bench").unwrap().is_some());
        let versions = r.open_table(moat_secrets::store::VERSIONS).unwrap();
        let rec = versions.get(("bench", v)).unwrap().unwrap().value().to_vec();
        assert!(rec.len() > PAYLOAD);
    };
    let floor_seq = throughput(1, dur, raw);
    let floor_conc = throughput(THREADS, dur, raw);

    println!("secret store: {VERSIONS} versions of {PAYLOAD} bytes, caller = a service account granted on the secret");
    println!("| case | moat-secrets | floor: redb reads only | moat ÷ floor |");
    println!("| --- | --- | --- | --- |");
    println!("| access, 1 thread | {seq:.0} /s | {floor_seq:.0} /s | {:.2} |", seq / floor_seq);
    println!("| access, {THREADS} threads | {conc:.0} /s | {floor_conc:.0} /s | {:.2} |", conc / floor_conc);
    println!(
        "add version (durable commit + audit fsync), {adds} sequential: p50 {}  p99 {}  max {}",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
    println!("audit log written: {:.1} MiB", audit_len as f64 / (1024.0 * 1024.0));
    println!("total bench time: {:.1} s", bench_start.elapsed().as_secs_f64());
}
