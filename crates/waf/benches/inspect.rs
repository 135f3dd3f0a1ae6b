//! WAF cost per request, in-process, one thread: the `sqli` and `xss` sets at sensitivity 2
//! (the throughput target's configuration) and every set at sensitivity 4, on benign and attack
//! requests. The end-to-end comparison with nginx + ModSecurity is `bench/waf/score.sh
//! throughput`; this isolates the engine.
//!
//! `cargo bench -p moat-waf --bench inspect` runs the full version (about 15 s); without
//! `--bench` (as in `cargo test --benches`) it runs a few iterations only, to check it works.
//! Needs the CRS (`/usr/share/modsecurity-crs` or `MOAT_CRS_DIR`); says so and exits otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, reason = "benchmark")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use moat_waf::{Crs, FAMILIES, WafRequest};

fn request(uri: &str, body: &str) -> WafRequest {
    let mut headers = vec![
        ("Host".to_owned(), b"shop.example.com".to_vec()),
        ("User-Agent".to_owned(), b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".to_vec()),
        ("Accept".to_owned(), b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".to_vec()),
        ("Accept-Language".to_owned(), b"en-US,en;q=0.5".to_vec()),
        ("Cookie".to_owned(), b"session=3f6c0a9e2b7d4c1f; theme=dark".to_vec()),
    ];
    if !body.is_empty() {
        headers.push(("Content-Type".to_owned(), b"application/x-www-form-urlencoded".to_vec()));
    }
    WafRequest {
        method: if body.is_empty() { "GET" } else { "POST" }.to_owned(),
        uri: uri.to_owned(),
        protocol: "HTTP/1.1".to_owned(),
        headers,
        body: body.as_bytes().to_vec(),
        json: false,
    }
}

fn main() {
    let dir = std::env::var_os("MOAT_CRS_DIR").map_or_else(|| PathBuf::from(moat_waf::DEFAULT_CRS_DIR), PathBuf::from);
    if !dir.is_dir() {
        eprintln!("CRS rules not found at {}; install Debian's modsecurity-crs or set MOAT_CRS_DIR", dir.display());
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let per_case = if full { Duration::from_secs(1) } else { Duration::from_millis(20) };
    let started = Instant::now();
    let crs = Crs::load(&dir).unwrap();
    println!(
        "CRS {} loaded from {} in {:.0} ms",
        crs.version,
        crs.dir.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    for f in crs.families() {
        let (with, rx) = f.prefiltered();
        println!(
            "  {}: {with}/{rx} @rx rules prefiltered; backtracking (id, relaxed): {:?}",
            f.name,
            f.backtracking_rules()
        );
    }
    let cases = [
        ("benign GET", request("/products/list?page=2&sort=price&q=blue+shoes", "")),
        ("benign form POST", request("/checkout", "name=Ada+Lovelace&address=12+Main+St&qty=2&note=leave+at+door")),
        ("sqli GET", request("/search?id=1%27%20UNION%20SELECT%20password%20FROM%20users--", "")),
        ("xss GET", request("/c?text=%3Cscript%3Ealert(document.cookie)%3C/script%3E", "")),
    ];
    let configs: [(&str, &[&str], u8); 2] =
        [("sqli+xss, sensitivity 2", &["sqli", "xss"], 2), ("all 12 sets, sensitivity 4", &[], 4)];
    println!("{:<28} {:<18} {:>10} {:>10}", "configuration", "request", "µs/req", "req/s");
    for (name, families, sensitivity) in configs {
        let families: Vec<&str> =
            if families.is_empty() { FAMILIES.iter().map(|(f, _)| *f).collect() } else { families.to_vec() };
        for (label, req) in &cases {
            let enabled = |_: u32, paranoia: u8| paranoia <= sensitivity;
            let none = |_: u32, _: moat_waf::rule::Var, _: &str| false;
            let mut n = 0u64;
            let start = Instant::now();
            while start.elapsed() < per_case {
                let mut inspection = crs.inspect(req);
                for f in &families {
                    std::hint::black_box(inspection.evaluate(f, &enabled, &none));
                }
                n += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            println!("{name:<28} {label:<18} {:>10.1} {:>10.0}", secs / n as f64 * 1e6, n as f64 / secs);
        }
    }
}
