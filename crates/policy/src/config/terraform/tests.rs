//! Loader tests on small inline plans: detection, references, unknowns, addresses.

use serde_json::{Value, json};

use super::{TerraformOptions, UNKNOWN_PROJECT_NUMBER, is_terraform_json, load_terraform};
use crate::model::{EnvValue, Ingress, Member, Project, UnknownEffect, VpcEgress};
use crate::source::SourceFile;

/// A plan of `(address, type, name, values, after_unknown, expressions)`.
fn plan(resources: &[(&str, &str, &str, Value, Value, Value)]) -> String {
    let planned: Vec<Value> = resources
        .iter()
        .map(|(a, t, n, v, _, _)| json!({"address": a, "mode": "managed", "type": t, "name": n, "values": v}))
        .collect();
    let changes: Vec<Value> = resources
        .iter()
        .map(|(a, t, n, v, u, _)| {
            json!({"address": a, "mode": "managed", "type": t, "name": n,
                   "change": {"actions": ["create"], "before": null, "after": v, "after_unknown": u}})
        })
        .collect();
    let config: Vec<Value> = resources
        .iter()
        .map(|(a, t, n, _, _, e)| json!({"address": a, "mode": "managed", "type": t, "name": n, "expressions": e}))
        .collect();
    json!({
        "format_version": "1.2",
        "planned_values": {"root_module": {"resources": planned}},
        "resource_changes": changes,
        "configuration": {
            "provider_config": {"google": {"name": "google", "expressions": {"project": {"constant_value": "p"}, "region": {"constant_value": "r"}}}},
            "root_module": {"resources": config}
        }
    })
    .to_string()
}

fn load(text: &str) -> Project {
    let file = SourceFile { path: "plan.json".into(), text: text.into() };
    load_terraform(&file, &TerraformOptions::default()).unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn detects_plans_and_states_by_their_top_level_keys() {
    assert!(is_terraform_json(r#"{"format_version": "1.2", "planned_values": {}}"#));
    assert!(is_terraform_json(r#"{"format_version": "1.0", "values": {"root_module": {}}}"#));
    assert!(!is_terraform_json(r#"{"bindings": []}"#));
    assert!(!is_terraform_json(r#"{"format_version": "1.0"}"#));
    assert!(!is_terraform_json("not json"));
}

#[test]
fn a_new_service_accounts_email_is_derived_through_the_reference() {
    let text = plan(&[
        (
            "google_service_account.a",
            "google_service_account",
            "a",
            json!({"account_id": "caller", "email": null}),
            json!({"email": true}),
            json!({}),
        ),
        (
            "google_cloud_run_v2_service.s",
            "google_cloud_run_v2_service",
            "s",
            json!({"name": "s", "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY", "template": [{"service_account": null}]}),
            json!({"template": [{"service_account": true}]}),
            json!({"template": [{"service_account": {"references": ["google_service_account.a.email", "google_service_account.a"]}}]}),
        ),
        (
            "google_cloud_run_v2_service_iam_member.m",
            "google_cloud_run_v2_service_iam_member",
            "m",
            json!({"name": "s", "role": "roles/run.invoker", "member": null}),
            json!({"member": true}),
            json!({"member": {"references": ["google_service_account.a.email", "google_service_account.a"]}}),
        ),
    ]);
    let p = load(&text);
    let s = p.service("s").unwrap_or_else(|| panic!("no service"));
    assert_eq!(s.service_account.value, "caller@p.iam.gserviceaccount.com");
    assert_eq!(s.ingress.value, Ingress::Internal);
    let members: Vec<&Member> = s.iam.members().map(|(_, m)| &m.member).collect();
    assert_eq!(members, [&Member::ServiceAccount("caller@p.iam.gserviceaccount.com".into())]);
    assert!(p.unknowns.is_empty(), "{:?}", p.unknowns);
    assert_eq!(p.number, UNKNOWN_PROJECT_NUMBER);
    assert_eq!(s.source.to_string(), "google_cloud_run_v2_service.s");
    assert_eq!(s.ingress.source.to_string(), "google_cloud_run_v2_service.s.ingress");
}

#[test]
fn unknowns_that_decide_access_are_recorded_with_their_service_and_effect() {
    let text = plan(&[(
        "google_cloud_run_v2_service.s",
        "google_cloud_run_v2_service",
        "s",
        json!({"name": "s", "ingress": null, "uri": null, "template": [{"vpc_access": [{"egress": "ALL_TRAFFIC", "connector": null}]}]}),
        json!({"ingress": true, "uri": true, "template": [{"service_account": true, "vpc_access": [{"connector": true}]}]}),
        // `service_account` is not configured: the server default, not an unknown.
        json!({"ingress": {"references": ["var.x"]}, "template": [{"vpc_access": [{"connector": {"references": ["module.n.id"]}}]}]}),
    )]);
    let p = load(&text);
    let got: Vec<(String, Option<&str>, UnknownEffect)> =
        p.unknowns.iter().map(|u| (u.path(), u.service.as_deref(), u.effect)).collect();
    assert_eq!(
        got,
        [
            ("google_cloud_run_v2_service.s.ingress".to_owned(), Some("s"), UnknownEffect::Ingress),
            (
                "google_cloud_run_v2_service.s.template[0].vpc_access[0].connector".to_owned(),
                Some("s"),
                UnknownEffect::Egress
            ),
        ]
    );
    let s = p.service("s").unwrap_or_else(|| panic!("no service"));
    assert!(!s.ingress.explicit && s.vpc.is_none());
}

#[test]
fn an_unknown_in_the_second_container_is_judged_by_the_second_containers_configuration() {
    // Regression: the configuration was read through the first element of every block list, so
    // the first container (which configures no secret) made this unknown look like a server
    // default and it was dropped.
    let env_secret =
        json!([{"name": "TOKEN", "value_source": [{"secret_key_ref": [{"secret": null, "version": "1"}]}]}]);
    let text = plan(&[(
        "google_cloud_run_v2_service.s",
        "google_cloud_run_v2_service",
        "s",
        json!({"name": "s", "ingress": "INGRESS_TRAFFIC_ALL", "template": [{"containers": [
            {"name": "a", "env": [{"name": "MODE", "value": "x", "value_source": []}]},
            {"name": "b", "env": env_secret},
        ]}]}),
        json!({"template": [{"containers": [{}, {"env": [{"value_source": [{"secret_key_ref": [{"secret": true}]}]}]}]}]}),
        json!({"template": [{"containers": [
            {"env": [{"name": {"constant_value": "MODE"}, "value": {"constant_value": "x"}}]},
            {"env": [{"name": {"constant_value": "TOKEN"},
                      "value_source": [{"secret_key_ref": [{"secret": {"references": ["var.token_secret"]}}]}]}]},
        ]}]}),
    )]);
    let p = load(&text);
    let got: Vec<(String, UnknownEffect)> = p.unknowns.iter().map(|u| (u.path(), u.effect)).collect();
    assert_eq!(
        got,
        [(
            "google_cloud_run_v2_service.s.template[0].containers[1].env[0].value_source[0].secret_key_ref[0].secret"
                .to_owned(),
            UnknownEffect::Secrets
        )]
    );
}

#[test]
fn secret_env_vars_join_their_configuration_by_name_not_by_plan_order() {
    // A set of blocks comes in the plan's values in an order of its own: the second variable
    // there is the first in the configuration.
    let secret = |id: &str| {
        (json!({"secret_id": id, "name": null}), json!({"name": true}), json!({"secret_id": {"constant_value": id}}))
    };
    let (a, b) = (secret("a-key"), secret("b-key"));
    let env = |n: &str| json!({"name": n, "value_source": [{"secret_key_ref": [{"secret": null, "version": "1"}]}]});
    let env_conf = |n: &str, to: &str| json!({"name": {"constant_value": n}, "value_source": [{"secret_key_ref": [{"secret": {"references": [format!("{to}.secret_id"), to]}}]}]});
    let unknown = json!({"secret_key_ref": [{"secret": true}]});
    let text = plan(&[
        ("google_secret_manager_secret.a", "google_secret_manager_secret", "a", a.0, a.1, a.2),
        ("google_secret_manager_secret.b", "google_secret_manager_secret", "b", b.0, b.1, b.2),
        (
            "google_cloud_run_v2_service.s",
            "google_cloud_run_v2_service",
            "s",
            json!({"name": "s", "template": [{"containers": [{"name": "c", "env": [env("B"), env("A")]}]}]}),
            json!({"template": [{"containers": [{"env": [{"value_source": [unknown.clone()]}, {"value_source": [unknown]}]}]}]}),
            json!({"template": [{"containers": [{"env": [
                env_conf("A", "google_secret_manager_secret.a"),
                env_conf("B", "google_secret_manager_secret.b"),
            ]}]}]}),
        ),
    ]);
    let p = load(&text);
    let got: Vec<(&str, Option<&str>)> = p.services["s"]
        .env
        .iter()
        .map(|e| (e.name.as_str(), if let EnvValue::Secret(s) = &e.value { Some(s.secret.as_str()) } else { None }))
        .collect();
    assert_eq!(got, [("B", Some("b-key")), ("A", Some("a-key"))]);
}

#[test]
fn direct_vpc_egress_to_a_network_outside_the_plan_declares_it() {
    let text = plan(&[(
        "google_cloud_run_v2_service.s",
        "google_cloud_run_v2_service",
        "s",
        json!({"name": "s", "template": [{"vpc_access": [{"egress": "ALL_TRAFFIC", "network_interfaces": [{"network": "default", "subnetwork": "default"}]}]}]}),
        json!({}),
        json!({}),
    )]);
    let p = load(&text);
    let vpc = p.service("s").and_then(|s| s.vpc.clone()).unwrap_or_else(|| panic!("no vpc"));
    assert_eq!((vpc.network.project.as_str(), vpc.network.network.as_str()), ("p", "default"));
    assert_eq!(vpc.egress.value, VpcEgress::AllTraffic);
    assert!(p.network("default").is_some());
}

#[test]
fn bad_json_and_bad_values_are_load_errors_naming_the_address() {
    let file = SourceFile { path: "plan.json".into(), text: "{".into() };
    let e = load_terraform(&file, &TerraformOptions::default()).err().map(|e| e.errors[0].to_string());
    assert!(e.is_some_and(|e| e.contains("invalid JSON")));
    let text = plan(&[
        (
            "google_cloud_run_v2_service_iam_member.m",
            "google_cloud_run_v2_service_iam_member",
            "m",
            json!({"name": "s", "role": "roles/run.invoker", "member": "alluser"}),
            json!({}),
            json!({}),
        ),
        (
            "google_cloud_run_v2_service.s",
            "google_cloud_run_v2_service",
            "s",
            json!({"name": "s", "ingress": "SOMETIMES"}),
            json!({}),
            json!({}),
        ),
    ]);
    let file = SourceFile { path: "plan.json".into(), text };
    let errs: Vec<String> = load_terraform(&file, &TerraformOptions::default())
        .err()
        .map(|e| e.errors.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    assert!(
        errs.iter().any(|e| e.contains("`google_cloud_run_v2_service.s.ingress`: ingress `SOMETIMES` is not known")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("google_cloud_run_v2_service_iam_member.m.member") && e.contains("alluser")),
        "{errs:?}"
    );
}

#[test]
fn service_account_policies_and_cloud_sql_connections_resolve_through_references() {
    let text = plan(&[
        (
            "google_service_account.run",
            "google_service_account",
            "run",
            json!({"account_id": "run", "email": null, "name": null}),
            json!({"email": true, "name": true}),
            json!({}),
        ),
        (
            "google_service_account_iam_member.users",
            "google_service_account_iam_member",
            "users",
            json!({"service_account_id": null, "role": "roles/iam.serviceAccountUser", "member": "group:devs@example.com"}),
            json!({"service_account_id": true}),
            json!({"service_account_id": {"references": ["google_service_account.run.name", "google_service_account.run"]}}),
        ),
        (
            "google_service_account_iam_member.other",
            "google_service_account_iam_member",
            "other",
            json!({"service_account_id": "projects/p/serviceAccounts/ci@p.iam.gserviceaccount.com", "role": "roles/iam.serviceAccountTokenCreator", "member": "user:a@example.com"}),
            json!({}),
            json!({}),
        ),
        (
            "google_sql_database_instance.db",
            "google_sql_database_instance",
            "db",
            json!({"name": "db", "region": "r", "connection_name": null, "settings": [{"ip_configuration": [{"ipv4_enabled": false, "private_network": null}]}]}),
            json!({"connection_name": true, "settings": [{"ip_configuration": [{"private_network": true}]}]}),
            json!({"settings": [{"ip_configuration": [{"private_network": {"references": ["google_compute_network.vpc.id", "google_compute_network.vpc"]}}]}]}),
        ),
        (
            "google_compute_network.vpc",
            "google_compute_network",
            "vpc",
            json!({"name": "data-vpc"}),
            json!({"id": true}),
            json!({}),
        ),
        (
            "google_cloud_run_v2_service.api",
            "google_cloud_run_v2_service",
            "api",
            json!({"name": "api", "template": [{"volumes": [{"name": "sql", "cloud_sql_instance": [{"instances": null}]}]}]}),
            json!({"template": [{"volumes": [{"cloud_sql_instance": [{"instances": true}]}]}]}),
            json!({"template": [{"volumes": [{"cloud_sql_instance": [{"instances": {"references": ["google_sql_database_instance.db.connection_name", "google_sql_database_instance.db"]}}]}]}]}),
        ),
    ]);
    let p = load(&text);
    let run = &p.service_account_iam["run@p.iam.gserviceaccount.com"];
    assert_eq!(run.bindings[0].role, "roles/iam.serviceAccountUser");
    assert_eq!(run.bindings[0].members[0].member, Member::Group("devs@example.com".into()));
    assert!(p.service_account_iam.contains_key("ci@p.iam.gserviceaccount.com"));
    let conns: Vec<&str> = p.services["api"].cloud_sql.iter().map(|c| c.connection_name.as_str()).collect();
    assert_eq!(conns, ["p:r:db"]);
    assert_eq!(p.sql_instances[0].private_network.as_deref(), Some("data-vpc"));
    // Resolved, so not unknown.
    assert!(p.unknowns.iter().all(|u| u.effect != UnknownEffect::Database), "{:?}", p.unknowns);
}
