//! Edge policy evaluation cost per request, for policies of 10, 100 and 1,000 rules made of
//! `SRC_IPS_V1` ranges, CEL expressions, or half of each. No rule matches the request, so every
//! rule is evaluated and the default rule decides: the worst case for a request that passes.
//!
//! Run: `cargo bench -p moat-policy --bench armor` (plain timing, no harness).

#![expect(clippy::indexing_slicing, reason = "a benchmark over fixed tables; a bad index is a bug to see at once")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use moat_policy::armor::{EdgeRequest, SecurityPolicy};

/// The CEL rules cycle through these shapes (`{i}` is the rule number), all common in real
/// policies: path prefixes, guarded header tests, address ranges, regexes, decoding.
const CEL_SHAPES: [&str; 6] = [
    "request.path.startsWith('/admin{i}/')",
    "has(request.headers['user-agent']) && request.headers['user-agent'].lower().contains('scanner{i}')",
    "inIpRange(origin.ip, '172.{b}.0.0/16') && request.method == 'POST'",
    "request.method == 'DELETE' && request.path.matches('^/api/v{i}/[a-z]+$')",
    "request.query.urlDecode().contains('union select {i}')",
    "has(request.headers['x-api-key']) && request.headers['x-api-key'] == 'key-{i}'",
];

#[derive(Clone, Copy)]
enum Mix {
    Cidr,
    Cel,
    Half,
    /// Only CEL rules of one shape.
    Shape(usize),
}

fn policy_json(rules: usize, mix: Mix) -> String {
    let mut out = Vec::with_capacity(rules + 1);
    for i in 0..rules {
        let priority = 1000 + i * 10;
        let cel = match mix {
            Mix::Cidr => false,
            Mix::Cel => true,
            Mix::Half => i % 2 == 1,
            Mix::Shape(_) => true,
        };
        let matcher = if cel {
            let shape = match mix {
                Mix::Shape(k) => CEL_SHAPES[k],
                _ => CEL_SHAPES[i % CEL_SHAPES.len()],
            };
            let expr = shape.replace("{i}", &i.to_string()).replace("{b}", &(i % 256).to_string());
            format!(r#"{{"expr": {{"expression": {}}}}}"#, serde_json::to_string(&expr).unwrap_or_default())
        } else {
            // Three ranges per rule, none holding the client (203.0.113.7).
            format!(
                r#"{{"versionedExpr": "SRC_IPS_V1", "config": {{"srcIpRanges": ["10.{}.{}.0/24", "198.18.{}.0/24", "2001:db8:{:x}::/48"]}}}}"#,
                i / 256 % 256,
                i % 256,
                i % 256,
                i
            )
        };
        out.push(format!(r#"{{"priority": {priority}, "action": "deny(403)", "match": {matcher}}}"#));
    }
    out.push(
        r#"{"priority": 2147483647, "action": "allow", "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}"#
            .to_owned(),
    );
    format!(r#"{{"name": "bench", "rules": [{}]}}"#, out.join(","))
}

fn request() -> EdgeRequest {
    EdgeRequest::new("GET", "https", "shop.example.com", "/shop/items?id=5&sort=price", [203, 0, 113, 7].into())
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0 Safari/537.36",
        )
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-language", "en-GB,en;q=0.9")
        .header("cookie", "session=abc123; theme=dark")
}

/// Best and median time per evaluation over `rounds` rounds of `iters` evaluations. The best
/// round is the figure to quote on a shared machine: preemption only ever adds time.
fn time(policy: &SecurityPolicy, req: &EdgeRequest, iters: u32, rounds: usize) -> (Duration, Duration) {
    for _ in 0..iters / 10 + 1 {
        black_box(policy.evaluate(black_box(req)));
    }
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(policy.evaluate(black_box(req)));
            }
            start.elapsed() / iters
        })
        .collect();
    samples.sort();
    (samples[0], samples[rounds / 2])
}

fn main() {
    let req = request();
    println!("{:>6}  {:>6}  {:>12}  {:>12}  {:>14}", "rules", "mix", "best", "per rule", "median");
    let mut runs: Vec<(usize, Mix, String)> = Vec::new();
    for rules in [10usize, 100, 1000] {
        for (mix, name) in [(Mix::Cidr, "cidr"), (Mix::Cel, "cel"), (Mix::Half, "half")] {
            runs.push((rules, mix, name.to_owned()));
        }
    }
    for k in 0..CEL_SHAPES.len() {
        runs.push((100, Mix::Shape(k), format!("cel#{}", k + 1)));
    }
    for (rules, mix, name) in runs {
        let text = policy_json(rules, mix);
        let policy = match SecurityPolicy::from_json(&text, "bench.json") {
            Ok(p) => p,
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                std::process::exit(1);
            }
        };
        let verdict = policy.evaluate(&req);
        assert_eq!(verdict.priority(), 2_147_483_647, "no rule may match the bench request");
        assert!(verdict.errors.is_empty(), "{:?}", verdict.errors);
        let iters = (50_000 / rules as u32).max(50);
        let (best, median) = time(&policy, &req, iters, 21);
        println!(
            "{rules:>6}  {name:>6}  {:>9.2} µs  {:>9.0} ns  {:>11.2} µs",
            best.as_secs_f64() * 1e6,
            best.as_secs_f64() * 1e9 / (rules + 1) as f64,
            median.as_secs_f64() * 1e6
        );
    }
}
