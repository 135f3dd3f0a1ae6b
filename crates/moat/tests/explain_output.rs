//! Snapshots of what `moat explain` shows people, on examples/shop: single answers (human
//! trace), the matrix for one service, and the DOT graph; and the matrix over load balancers
//! whose security policies close an entry or depend on the request (tests/fixtures/edge_matrix).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

/// Runs `moat explain examples/shop ARGS...` from the repository root; expects success.
fn explain(args: &[&str]) -> String {
    explain_in("examples/shop", args)
}

/// Runs `moat explain PROJECT ARGS...` from the repository root; expects success.
fn explain_in(project: &str, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(root)
        .args(["explain", project])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("moat runs");
    assert!(out.status.success(), "moat explain {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "nothing on stderr, got:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

#[test]
fn allowed_through_direct_vpc_egress() {
    // web sends all traffic into shop-vpc, so the internal api admits it.
    let out = explain(&["--service", "api", "--from", "service:web"]);
    assert!(out.contains("→ ALLOW"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn denied_at_ingress() {
    // A valid invoker token does not help against ingress `internal`.
    let out = explain(&[
        "--service",
        "api",
        "--from",
        "internet",
        "--as",
        "serviceAccount:web@shop-prod.iam.gserviceaccount.com",
    ]);
    assert!(out.contains("DENY at ingress: HTTP 404"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn denied_at_network() {
    let out = explain(&["--service", "admin", "--from", "internet", "--via", "lb:admin-ilb"]);
    assert!(out.contains("DENY at network: no HTTP response"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn denied_at_authorization() {
    let out = explain(&["--service", "status", "--from", "internet", "--as", "user:mallory@example.org"]);
    assert!(out.contains("DENY at authorization: HTTP 403"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn denied_at_authentication() {
    // A token made for another service: refused before IAM is asked.
    let out = explain(&[
        "--service",
        "status",
        "--from",
        "internet",
        "--as",
        "user:mallory@example.org",
        "--audience",
        "https://elsewhere.example.com",
    ]);
    assert!(out.contains("DENY at authentication: HTTP 401") && out.contains("https://elsewhere.example.com"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn ingress_rollout_pending_decides_on_the_setting_in_force() {
    // api asks for `internal`, but `all` is still in force: the trace says which it used.
    let out = explain_in(
        "tests/fidelity/048-ingress-status-in-force",
        &["--service", "api", "--from", "internet", "--as", "user:dev@example.com"],
    );
    assert!(out.contains("asks for ingress `internal`") && out.contains("→ ALLOW"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn denied_by_iap() {
    // ops holds run.invoker, but IAP admits only holders of roles/iap.httpsResourceAccessor.
    let out = explain_in(
        "tests/fidelity/049-iap-enabled",
        &["--service", "app", "--from", "internet", "--as", "user:ops@example.com"],
    );
    assert!(out.contains("DENY at iap: HTTP 403"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn allowed_through_iap_as_its_service_agent() {
    let out = explain_in(
        "tests/fidelity/049-iap-enabled",
        &["--service", "app", "--from", "internet", "--as", "user:dev@example.com"],
    );
    assert!(
        out.contains("service-100000000001@gcp-sa-iap.iam.gserviceaccount.com") && out.contains("→ ALLOW"),
        "{out}"
    );
    insta::assert_snapshot!(out);
}

#[test]
fn allowed_through_a_group() {
    // bob holds no role himself: only through shop-admins@example.com.
    let out = explain(&[
        "--service",
        "admin",
        "--from",
        "vpc:shop-vpc",
        "--via",
        "lb:admin-ilb",
        "--as",
        "user:bob@example.com",
    ]);
    assert!(out.contains("group:shop-admins@example.com") && out.contains("→ ALLOW"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn matrix_for_one_service() {
    let out = explain(&["--service", "api"]);
    assert!(out.starts_with("api\n"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn dot_graph_for_one_service() {
    let out = explain(&["--service", "admin", "--format", "dot"]);
    assert!(out.starts_with("digraph moat {") && out.ends_with("}\n"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn denied_at_the_edge_by_the_load_balancers_security_policy() {
    let out = explain(&[
        "--service",
        "web",
        "--from",
        "internet",
        "--via",
        "lb:shop-edge",
        "--path",
        "/search?q=1%20UNION%20SELECT%20card",
    ]);
    assert!(out.contains("DENY at edge: HTTP 403"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn edge_rules_needing_facts_the_query_lacks_are_set_aside() {
    let out = explain(&["--service", "web", "--from", "internet", "--via", "lb:shop-edge"]);
    assert!(out.contains("depends on request attributes: request.path/request.query (--path)"), "{out}");
    insta::assert_snapshot!(out);
}

/// Runs `moat explain crates/moat/tests/fixtures/DIR ARGS...`; expects success.
fn explain_fixture(dir: &str, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .current_dir(root)
        .arg("explain")
        .arg(Path::new("tests/fixtures").join(dir))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("moat runs");
    assert!(out.status.success(), "moat explain {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

#[test]
fn matrix_marks_the_entries_a_security_policy_closes() {
    // lb:closed refuses every request; lb:partner all but one address range; lb:open none.
    let out = explain_fixture("edge_matrix", &[]);
    let internet: Vec<&str> = out.lines().filter(|l| l.starts_with("  internet ")).collect();
    assert!(internet.iter().any(|l| l.contains("lb:closed") && l.contains("deny  403 edge")), "{out}");
    assert!(internet.iter().any(|l| l.contains("lb:partner") && l.ends_with("? edge")), "{out}");
    insta::assert_snapshot!(format!("{}\n{}", internet.join("\n"), out.lines().last().unwrap_or_default()));

    let json: serde_json::Value = serde_json::from_str(&explain_fixture("edge_matrix", &["--format", "json"])).unwrap();
    for d in json["decisions"].as_array().unwrap() {
        let (entry, effect, layer) = (d["entry"].as_str().unwrap(), &d["effect"], &d["layer"]);
        match entry {
            "lb:closed" => assert_eq!(
                (d["edge"].as_str(), effect.as_str(), layer.as_str()),
                (Some("closed"), Some("deny"), Some("edge")),
                "{d}"
            ),
            "lb:partner" => assert_eq!((d["edge"].as_str(), effect.as_str()), (Some("depends"), Some("allow")), "{d}"),
            "lb:open" => assert_eq!((d["edge"].as_str(), effect.as_str()), (Some("open"), Some("allow")), "{d}"),
            _ => assert!(d.get("edge").is_none(), "{d}"),
        }
    }

    // A single question is answered as before: with no request facts, the policy's default
    // rule refuses, and the rule that could allow is set aside.
    let single = explain_fixture("edge_matrix", &["--service", "web", "--from", "internet", "--via", "lb:partner"]);
    assert!(single.contains("DENY at edge: HTTP 403") && single.contains("? rule 1000 (allow)"), "{single}");

    let dot = explain_fixture("edge_matrix", &["--format", "dot"]);
    assert!(
        dot.contains(
            r#""internet" -> "service:web" [label="lb:closed (edge: closed)", style=dashed, color=red, fontcolor=red];"#
        ),
        "{dot}"
    );
    assert!(dot.contains(r#""internet" -> "service:web" [label="lb:partner (edge: depends), lb:open"];"#), "{dot}");
}
