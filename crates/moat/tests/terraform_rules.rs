//! The rules from the hardening guides (MOAT017–MOAT028) on a Terraform plan: each finds its
//! mistake at the resource address that makes it, names values unknown until apply, and stays
//! quiet on the resources next to it that are right.
//! Fixture: tests/fixtures/terraform/hardening.plan.json (`hardening()` in make_fixtures.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const PLAN: &str = "crates/moat/tests/fixtures/terraform/hardening.plan.json";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `moat check PLAN --format json --fail-on info`, run once.
fn findings() -> &'static [Value] {
    static OUT: OnceLock<Vec<Value>> = OnceLock::new();
    OUT.get_or_init(|| {
        let o = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(["check", PLAN, "--format", "json", "--fail-on", "info"])
            .current_dir(workspace())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["findings"].as_array().unwrap().clone()
    })
}

/// (service, severity, address, message) of each finding of `rule`.
fn of(rule: &str) -> Vec<(String, String, String, String)> {
    findings()
        .iter()
        .filter(|f| f["rule"] == rule)
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("-").to_owned();
            (s("service"), s("severity"), s("address"), s("message"))
        })
        .collect()
}

/// Asserts the findings of `rule` as (service, severity, address), in report order.
fn expect(rule: &str, want: &[(&str, &str, &str)]) {
    let got: Vec<(String, String, String)> = of(rule).into_iter().map(|(s, v, a, _)| (s, v, a)).collect();
    let want: Vec<(String, String, String)> =
        want.iter().map(|(s, v, a)| ((*s).to_owned(), (*v).to_owned(), (*a).to_owned())).collect();
    assert_eq!(got, want, "{rule}");
}

const ORDERS: &str = "google_sql_database_instance.orders.settings[0]";
const REPORTS: &str = "google_sql_database_instance.reports.settings[0]";

#[test]
fn moat017_public_ip_with_the_unknown_one_said_out_loud() {
    expect(
        "MOAT017",
        &[
            ("-", "medium", &format!("{ORDERS}.ip_configuration[0].ipv4_enabled")),
            ("-", "medium", &format!("{REPORTS}.ip_configuration[0].ipv4_enabled")),
        ],
    );
    let unknown = of("MOAT017").into_iter().find(|f| f.2.starts_with("google_sql_database_instance.reports")).unwrap();
    assert!(
        unknown
            .3
            .ends_with(&format!("depends on a value unknown until apply: {REPORTS}.ip_configuration[0].ipv4_enabled")),
        "{}",
        unknown.3
    );
    // ledger-db sets ipv4_enabled = false.
    assert!(of("MOAT017").iter().all(|f| !f.3.contains("ledger-db")));
}

#[test]
fn moat018_no_private_network_but_a_referenced_network_counts() {
    // ledger-db's private_network is `google_compute_network.data.id`, unknown until apply and
    // resolved through the reference; reports-db names it as a string.
    expect("MOAT018", &[("-", "low", &format!("{ORDERS}.ip_configuration[0].private_network"))]);
}

#[test]
fn moat019_tls_not_enforced_and_legacy_require_ssl_counts() {
    expect("MOAT019", &[("-", "medium", &format!("{ORDERS}.ip_configuration[0].ssl_mode"))]);
    assert!(of("MOAT019")[0].3.contains("`ssl_mode = ALLOW_UNENCRYPTED_AND_ENCRYPTED`"));
}

#[test]
fn moat020_iam_authentication_off_with_the_engine_s_flag() {
    // reports-db is MySQL with `cloudsql_iam_authentication = on`; ledger-db PostgreSQL with it on.
    expect("MOAT020", &[("-", "low", &format!("{ORDERS}.database_flags"))]);
    assert!(of("MOAT020")[0].3.contains("does not set `cloudsql.iam_authentication`"));
}

#[test]
fn moat021_built_in_user_whose_password_is_unknown_until_apply() {
    // `password = random_password.app.result`: unknown in the plan, still a password. The IAM
    // user next to it is fine.
    expect("MOAT021", &[("-", "low", "google_sql_user.app")]);
}

#[test]
fn moat022_connection_to_a_private_only_instance_without_vpc_egress() {
    // api's `instances = [google_sql_database_instance.ledger.connection_name]` is unknown until
    // apply and resolved through the reference; legacy (v1 annotation) has Direct VPC egress.
    expect(
        "MOAT022",
        &[("api", "medium", "google_cloud_run_v2_service.api.template[0].volumes[0].cloud_sql_instance[0].instances")],
    );
    assert!(of("MOAT022")[0].3.contains("`ledger-db`"));
}

#[test]
fn moat023_public_service_with_nothing_in_front() {
    // shop is public too, but only through its load balancer with a policy.
    expect("MOAT023", &[("status", "medium", "google_cloud_run_v2_service.status.ingress")]);
}

#[test]
fn moat024_and_moat025_policy_without_waf_or_rate_limit() {
    expect("MOAT024", &[("-", "low", "google_compute_security_policy.edge.rule[1]")]);
    expect("MOAT025", &[("-", "medium", "google_compute_security_policy.edge.rule[1]")]);
    assert!(of("MOAT025")[0].3.starts_with("security policy `shop-edge` on external load balancer `shop-lb`"));
}

#[test]
fn moat028_waf_rule_only_in_preview_at_its_own_address() {
    // The preview WAF rule is listed after the default rule, so the address names its index in
    // the plan, not its priority order.
    expect("MOAT028", &[("-", "medium", "google_compute_security_policy.edge.rule[2]")]);
    assert!(
        of("MOAT028")[0].3.starts_with(
            "the preconfigured WAF rule of security policy `shop-edge` on external load balancer `shop-lb` is in preview: rule 900 (`sqli-v33-stable`)"
        ),
        "{}",
        of("MOAT028")[0].3
    );
}

#[test]
fn moat026_runtime_service_account_shared() {
    expect(
        "MOAT026",
        &[
            ("api", "low", "google_cloud_run_v2_service.api.template[0].service_account"),
            ("worker", "low", "google_cloud_run_v2_service.worker.template[0].service_account"),
        ],
    );
}

#[test]
fn moat027_acting_as_granted_to_a_domain_and_on_the_project() {
    // The account-level grant names the account through `google_service_account.shared.name`,
    // unknown until apply.
    expect(
        "MOAT027",
        &[
            ("-", "medium", "google_project_iam_member.release.member"),
            ("-", "medium", "google_service_account_iam_member.domain_users.member"),
        ],
    );
    let domain = of("MOAT027").into_iter().find(|f| f.2.contains("domain_users")).unwrap();
    assert!(
        domain.3.starts_with(
            "`shared@my-project.iam.gserviceaccount.com`, the runtime service account of `api` and `worker`"
        )
    );
}

#[test]
fn sarif_describes_every_new_rule() {
    let o = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["check", PLAN, "--format", "sarif"])
        .current_dir(workspace())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> =
        v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
    for i in 17..=28 {
        assert!(ids.contains(&format!("MOAT{i:03}").as_str()), "{ids:?}");
    }
}
