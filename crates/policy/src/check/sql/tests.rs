//! MOAT017–MOAT022 on small built models: a project from moat.yaml plus Cloud SQL instances
//! pushed in as the Terraform loader would build them.

use std::sync::Arc;

use super::*;
use crate::check::testing::{ids, project, v1_full};
use crate::model::{SqlUser, Unknown, UnknownEffect};

fn file() -> Arc<str> {
    Arc::from("plan.json")
}

fn instance(version: &str, public_ip: Option<bool>, private_network: Option<&str>) -> SqlInstance {
    SqlInstance {
        name: "db".into(),
        database_version: version.into(),
        public_ip,
        private_network: private_network.map(str::to_owned),
        ssl_mode: Some("ENCRYPTED_ONLY".into()),
        require_ssl: None,
        flags: vec![("cloudsql.iam_authentication".into(), "on".into())],
        users: Vec::new(),
        source: SourceRef::terraform(&file(), "google_sql_database_instance.db"),
    }
}

fn with(instances: Vec<SqlInstance>) -> Project {
    let mut p = project("", &[]);
    p.sql_instances = instances;
    p
}

fn severities(check: fn(&Project) -> Vec<Finding>, p: &Project) -> Vec<Severity> {
    check(p).iter().map(|f| f.severity).collect()
}

#[test]
fn public_ip_and_private_network() {
    // (ipv4_enabled, private_network, MOAT017, MOAT018)
    let cases: &[(Option<bool>, Option<&str>, bool, bool)] = &[
        (Some(true), None, true, true),
        (None, None, true, true),
        (Some(false), Some("vpc"), false, false),
        (Some(true), Some("vpc"), true, false),
    ];
    for (ip, net, public, private) in cases {
        let p = with(vec![instance("POSTGRES_15", *ip, *net)]);
        let f17 = check_public_ip(&p);
        let f18 = check_private_network(&p);
        assert_eq!(f17.len(), usize::from(*public), "{ip:?} {net:?}");
        assert_eq!(f18.len(), usize::from(*private), "{ip:?} {net:?}");
        for f in &f17 {
            assert_eq!(
                f.source.address.as_deref(),
                Some("google_sql_database_instance.db.settings[0].ip_configuration[0].ipv4_enabled")
            );
            assert!(f.fix.contains("settings.ip_configuration.ipv4_enabled = false"), "{}", f.fix);
            assert!(f.service.is_none() && f.severity == Severity::Medium);
        }
        assert!(f18.iter().all(|f| f.fix.contains("settings.ip_configuration.private_network")));
    }
}

#[test]
fn tls_modes() {
    // (ssl_mode, require_ssl, reported)
    let cases: &[(Option<&str>, Option<bool>, bool)] = &[
        (Some("ENCRYPTED_ONLY"), None, false),
        (Some("TRUSTED_CLIENT_CERTIFICATE_REQUIRED"), None, false),
        (Some("ALLOW_UNENCRYPTED_AND_ENCRYPTED"), None, true),
        (Some("ALLOW_UNENCRYPTED_AND_ENCRYPTED"), Some(true), true),
        (None, Some(true), false),
        (None, Some(false), true),
        (None, None, true),
    ];
    for (mode, require, reported) in cases {
        let mut i = instance("POSTGRES_15", Some(false), Some("vpc"));
        i.ssl_mode = mode.map(str::to_owned);
        i.require_ssl = *require;
        let f = check_tls(&with(vec![i]));
        assert_eq!(f.len(), usize::from(*reported), "{mode:?} {require:?}");
        assert!(f.iter().all(|f| f.fix.contains("ssl_mode = \"ENCRYPTED_ONLY\"")));
    }
}

#[test]
fn iam_authentication_by_engine() {
    // (version, flags, reported)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case<'_>] = &[
        ("POSTGRES_15", &[("cloudsql.iam_authentication", "on")], false),
        ("POSTGRES_15", &[("cloudsql.iam_authentication", "off")], true),
        ("POSTGRES_15", &[], true),
        ("MYSQL_8_0", &[("cloudsql_iam_authentication", "on")], false),
        ("MYSQL_8_0", &[("cloudsql.iam_authentication", "on")], true),
        ("SQLSERVER_2019_STANDARD", &[], false),
        ("", &[], true),
    ];
    for (version, flags, reported) in cases {
        let mut i = instance(version, Some(false), Some("vpc"));
        i.flags = flags.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let f = check_iam_auth(&with(vec![i]));
        assert_eq!(f.len(), usize::from(*reported), "{version} {flags:?}");
        assert!(
            f.iter()
                .all(|f| f.source.address.as_deref()
                    == Some("google_sql_database_instance.db.settings[0].database_flags"))
        );
    }
}

#[test]
fn built_in_users_with_passwords() {
    let user = |name: &str, kind: &str, password: bool| SqlUser {
        name: name.into(),
        kind: kind.into(),
        has_password: password,
        source: SourceRef::terraform(&file(), format!("google_sql_user.{name}")),
    };
    let mut pg = instance("POSTGRES_15", Some(false), Some("vpc"));
    pg.users = vec![
        user("app", "BUILT_IN", true),
        user("nopass", "BUILT_IN", false),
        user("api@p.iam", "CLOUD_IAM_SERVICE_ACCOUNT", false),
    ];
    let mut ss = instance("SQLSERVER_2019_STANDARD", Some(false), Some("vpc"));
    ss.name = "mssql".into();
    ss.users = vec![user("sa", "BUILT_IN", true)];
    let f = check_builtin_users(&with(vec![pg, ss]));
    assert_eq!(f.len(), 1);
    assert!(f.iter().all(|f| f.source.address.as_deref() == Some("google_sql_user.app")
        && f.message.starts_with("the Cloud SQL user `app` on instance `db`")
        && !f.message.contains("IAM authentication is off")));
}

#[test]
fn unknown_settings_are_named_not_guessed() {
    let mut p = with(vec![instance("POSTGRES_15", None, None)]);
    p.unknowns.push(Unknown {
        address: "google_sql_database_instance.db".into(),
        attribute: IPV4.into(),
        service: None,
        effect: UnknownEffect::Database,
        source: SourceRef::terraform(&file(), format!("google_sql_database_instance.db.{IPV4}")),
    });
    let f = check_public_ip(&p);
    assert!(f.iter().all(|f| f.message.ends_with(
        "depends on a value unknown until apply: google_sql_database_instance.db.settings[0].ip_configuration[0].ipv4_enabled"
    )));
    assert_eq!(f.len(), 1);
    assert!(check_private_network(&p).iter().all(|f| !f.message.contains("unknown")));
}

#[test]
fn services_connecting_to_a_private_only_instance_need_vpc_egress() {
    let moat = "networks:\n  - name: vpc\n    subnets:\n      - {name: run, region: us-central1, range: 10.0.0.0/24}\n";
    let sql = "        run.googleapis.com/cloudsql-instances: p:us-central1:db\n";
    let vpc = "        run.googleapis.com/network-interfaces: '[{\"network\": \"vpc\", \"subnetwork\": \"run\"}]'\n";
    // (template annotations, instance public IP, expected)
    let cases: &[(String, Option<bool>, bool)] = &[
        (sql.to_owned(), Some(false), true),
        (format!("{sql}{vpc}"), Some(false), false),
        (sql.to_owned(), Some(true), false),
        (sql.to_owned(), None, false),
        (sql.replace("p:us", "other:us"), Some(false), false),
        (String::new(), Some(false), false),
    ];
    for (template, ip, expected) in cases {
        let mut p = project(moat, &[("services/s.yaml", &v1_full("s", "", template, ""))]);
        p.sql_instances = vec![instance("POSTGRES_15", *ip, Some("vpc"))];
        let f = check_unreachable(&p);
        let want: &[(&str, Option<&str>)] = if *expected { &[("MOAT022", Some("s"))] } else { &[] };
        assert_eq!(ids(&f), want, "{template} {ip:?}");
        for f in &f {
            assert_eq!((f.source.file.as_ref(), f.severity), ("services/s.yaml", Severity::Medium));
            assert!(f.source.line > 0 && f.fix.contains("VPC egress on `vpc`"), "{}", f.fix);
        }
    }
    assert!(severities(check_unreachable, &with(vec![])).is_empty());
}

#[test]
fn v2_cloud_sql_volumes_are_read() {
    let svc = r#"{"name": "s", "template": {"serviceAccount": "s@p.iam.gserviceaccount.com", "containers": [{"image": "i"}], "volumes": [{"name": "cloudsql", "cloudSqlInstance": {"instances": ["p:us-central1:db", " "]}}]}}"#;
    let p = project("", &[("services/s.json", svc)]);
    let conns: Vec<(&str, &str)> = p
        .services
        .values()
        .flat_map(|s| s.cloud_sql.iter().map(|c| (c.connection_name.as_str(), c.instance())))
        .collect();
    assert_eq!(conns, [("p:us-central1:db", "db")]);
}
