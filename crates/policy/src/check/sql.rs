//! MOAT017–MOAT022: Cloud SQL, as the hardening guides want it next to Cloud Run: no public IP,
//! a private network, TLS enforced, IAM database authentication instead of passwords, and
//! services that can actually reach a private-IP-only instance.
//!
//! Instances come from Terraform input (`Project::sql_instances`); a project directory has none,
//! so MOAT017–MOAT021 never fire on one. A setting the plan leaves unknown until apply is taken
//! at the provider's default (public IP on, unencrypted connections allowed, flags unset) and the
//! finding names the unknown value rather than guessing it safe.

use crate::check::{Finding, Rule, Severity};
use crate::model::{Project, SqlInstance};
use crate::source::SourceRef;

pub(crate) const MOAT017: Rule = Rule {
    id: "MOAT017",
    name: "SqlPublicIp",
    title: "Cloud SQL instance has a public IP",
    severity: Severity::Medium,
    explanation: "A Cloud SQL instance with a public IPv4 address (`ipv4_enabled`, on unless set to false) is an internet endpoint: anyone can try the database protocol against it, and one authorized network too many, or a leaked password with the Auth Proxy, is a breach. Cloud Run reaches a private IP through Direct VPC egress or a connector.",
    fix: "Give the instance a private IP and turn the public one off: Terraform `settings.ip_configuration.private_network = NETWORK` and `settings.ip_configuration.ipv4_enabled = false`; gcloud `gcloud sql instances patch INSTANCE --network NETWORK --no-assign-ip`.",
    check: check_public_ip,
};

pub(crate) const MOAT018: Rule = Rule {
    id: "MOAT018",
    name: "SqlNoPrivateNetwork",
    title: "Cloud SQL instance without a private network",
    severity: Severity::Low,
    explanation: "An instance with no `private_network` can only be reached on its public IP, so every client, Cloud Run included, connects over the internet path and the public IP can never be turned off. Private services access keeps database traffic inside the VPC.",
    fix: "Set Terraform `settings.ip_configuration.private_network` to the VPC network (with a private services access range), or `gcloud sql instances patch INSTANCE --network NETWORK`; then give the services VPC egress to it.",
    check: check_private_network,
};

pub(crate) const MOAT019: Rule = Rule {
    id: "MOAT019",
    name: "SqlTlsNotEnforced",
    title: "Cloud SQL instance accepts unencrypted connections",
    severity: Severity::Medium,
    explanation: "Unless `ssl_mode` is `ENCRYPTED_ONLY` or `TRUSTED_CLIENT_CERTIFICATE_REQUIRED` (or the older `require_ssl = true`), the instance accepts plaintext connections: a client that does not ask for TLS sends its password and data in the clear. The Cloud SQL Auth Proxy and connectors always encrypt, direct connections do not.",
    fix: "Terraform `settings.ip_configuration.ssl_mode = \"ENCRYPTED_ONLY\"` (or `TRUSTED_CLIENT_CERTIFICATE_REQUIRED`); gcloud `gcloud sql instances patch INSTANCE --ssl-mode ENCRYPTED_ONLY`.",
    check: check_tls,
};

pub(crate) const MOAT020: Rule = Rule {
    id: "MOAT020",
    name: "SqlIamAuthenticationOff",
    title: "Cloud SQL IAM database authentication off",
    severity: Severity::Low,
    explanation: "Without the `cloudsql.iam_authentication` flag, PostgreSQL and MySQL users authenticate with passwords only: long-lived secrets to store, rotate and leak. With it, a Cloud Run service logs in as its runtime service account with short-lived tokens, and access is granted and revoked in IAM.",
    fix: "Terraform `settings.database_flags { name = \"cloudsql.iam_authentication\" value = \"on\" }` (MySQL: `cloudsql_iam_authentication`); gcloud `gcloud sql instances patch INSTANCE --database-flags cloudsql.iam_authentication=on` (this flag list replaces the existing one).",
    check: check_iam_auth,
};

pub(crate) const MOAT021: Rule = Rule {
    id: "MOAT021",
    name: "SqlBuiltInPasswordUser",
    title: "Cloud SQL built-in user with a password where an IAM user would do",
    severity: Severity::Low,
    explanation: "A `BUILT_IN` database user with a password on a PostgreSQL or MySQL instance is a credential that lives in Terraform state, in Secret Manager and in every service that reads it. IAM database users (`CLOUD_IAM_SERVICE_ACCOUNT`, `CLOUD_IAM_USER`) log in with short-lived tokens of the runtime service account instead.",
    fix: "Enable IAM database authentication, create a `google_sql_user` with `type = \"CLOUD_IAM_SERVICE_ACCOUNT\"` for the runtime service account (name without `.gserviceaccount.com` on PostgreSQL), grant it the database privileges, and delete the built-in user.",
    check: check_builtin_users,
};

pub(crate) const MOAT022: Rule = Rule {
    id: "MOAT022",
    name: "CloudSqlWithoutVpcEgress",
    title: "service connects to a private-IP-only Cloud SQL instance without VPC egress",
    severity: Severity::Medium,
    explanation: "Cloud Run's built-in Cloud SQL connection reaches a private IP only through the VPC: a service with no Direct VPC egress or connector cannot connect to an instance that has no public IP, so every connection times out. The usual wrong fix is turning the public IP back on.",
    fix: "Give the service VPC egress on the instance's network (Terraform `template.vpc_access.network_interfaces`, gcloud `gcloud run services update SERVICE --network NETWORK --subnet SUBNET`); keep the instance private.",
    check: check_unreachable,
};

/// PostgreSQL and MySQL support IAM database authentication; SQL Server does not. An unknown
/// version is taken as supporting it (both defaults do).
fn supports_iam(i: &SqlInstance) -> bool {
    !i.database_version.starts_with("SQLSERVER")
}

/// The name of the IAM authentication flag for the instance's engine.
fn iam_flag(i: &SqlInstance) -> &'static str {
    if i.database_version.starts_with("MYSQL") { "cloudsql_iam_authentication" } else { "cloudsql.iam_authentication" }
}

/// Whether the instance has a public IP: `ipv4_enabled`, which defaults to true.
fn public_ip(i: &SqlInstance) -> bool {
    i.public_ip.unwrap_or(true)
}

/// `ADDRESS.ATTR` for Terraform input, else the instance's own source.
fn at(i: &SqlInstance, attr: &str) -> SourceRef {
    match &i.source.address {
        Some(a) if !attr.is_empty() => SourceRef::terraform(&i.source.file, format!("{a}.{attr}")),
        _ => i.source.clone(),
    }
}

/// `; depends on a value unknown until apply: X` for the instance's unknown settings among
/// `attrs`, or nothing.
fn depends(project: &Project, i: &SqlInstance, attrs: &[&str]) -> String {
    let Some(address) = i.source.address.as_deref() else { return String::new() };
    let unknown: Vec<String> = project
        .unknowns
        .iter()
        .filter(|u| u.address == address && attrs.iter().any(|a| u.attribute == *a))
        .map(crate::model::Unknown::path)
        .collect();
    if unknown.is_empty() {
        String::new()
    } else {
        format!("; depends on a value unknown until apply: {}", unknown.join(", "))
    }
}

const IPV4: &str = "settings[0].ip_configuration[0].ipv4_enabled";
const PRIVATE_NETWORK: &str = "settings[0].ip_configuration[0].private_network";
const SSL_MODE: &str = "settings[0].ip_configuration[0].ssl_mode";
const REQUIRE_SSL: &str = "settings[0].ip_configuration[0].require_ssl";
const FLAGS: &str = "settings[0].database_flags";

fn check_public_ip(project: &Project) -> Vec<Finding> {
    project
        .sql_instances
        .iter()
        .filter(|i| public_ip(i))
        .map(|i| {
            let unknown = depends(project, i, &[IPV4]);
            let how = match (i.public_ip, unknown.is_empty()) {
                (Some(_), _) => "sets `ipv4_enabled = true`",
                (None, true) => "leaves `ipv4_enabled` at its default, true",
                (None, false) => "has an `ipv4_enabled` the plan does not know (taken at its default, true)",
            };
            MOAT017.finding(
                Severity::Medium,
                None,
                format!("the Cloud SQL instance `{}` {how}: it has a public IP address reachable from the internet{unknown}", i.name),
                format!(
                    "set `settings.ip_configuration.ipv4_enabled = false` on `{}` (with `private_network` set), or `gcloud sql instances patch {} --no-assign-ip`",
                    i.source.address.as_deref().unwrap_or(&i.name),
                    i.name
                ),
                &at(i, IPV4),
            )
        })
        .collect()
}

fn check_private_network(project: &Project) -> Vec<Finding> {
    project
        .sql_instances
        .iter()
        .filter(|i| i.private_network.is_none())
        .map(|i| {
            MOAT018.finding(
                Severity::Low,
                None,
                format!(
                    "the Cloud SQL instance `{}` has no private network: clients can reach it only on its public IP{}",
                    i.name,
                    depends(project, i, &[PRIVATE_NETWORK])
                ),
                format!(
                    "set `settings.ip_configuration.private_network` on `{}` to the VPC network, or `gcloud sql instances patch {} --network NETWORK`",
                    i.source.address.as_deref().unwrap_or(&i.name),
                    i.name
                ),
                &at(i, PRIVATE_NETWORK),
            )
        })
        .collect()
}

/// Whether the instance refuses plaintext connections. `ssl_mode` wins over the legacy
/// `require_ssl` when both are set, as in the API.
fn tls_enforced(i: &SqlInstance) -> bool {
    match i.ssl_mode.as_deref() {
        Some("ENCRYPTED_ONLY" | "TRUSTED_CLIENT_CERTIFICATE_REQUIRED") => true,
        Some(_) => false,
        None => i.require_ssl == Some(true),
    }
}

fn check_tls(project: &Project) -> Vec<Finding> {
    project
        .sql_instances
        .iter()
        .filter(|i| !tls_enforced(i))
        .map(|i| {
            let how = match (&i.ssl_mode, i.require_ssl) {
                (Some(m), _) => format!("has `ssl_mode = {m}`"),
                (None, Some(false)) => "has `require_ssl = false`".to_owned(),
                _ => "sets no `ssl_mode`".to_owned(),
            };
            let attr = if i.ssl_mode.is_none() && i.require_ssl.is_some() { REQUIRE_SSL } else { SSL_MODE };
            MOAT019.finding(
                Severity::Medium,
                None,
                format!(
                    "the Cloud SQL instance `{}` {how}: it accepts unencrypted connections{}",
                    i.name,
                    depends(project, i, &[SSL_MODE, REQUIRE_SSL])
                ),
                format!(
                    "set `settings.ip_configuration.ssl_mode = \"ENCRYPTED_ONLY\"` on `{}`, or `gcloud sql instances patch {} --ssl-mode ENCRYPTED_ONLY`",
                    i.source.address.as_deref().unwrap_or(&i.name),
                    i.name
                ),
                &at(i, attr),
            )
        })
        .collect()
}

fn iam_auth_on(i: &SqlInstance) -> bool {
    i.flag(iam_flag(i)).is_some_and(|v| v.eq_ignore_ascii_case("on"))
}

fn check_iam_auth(project: &Project) -> Vec<Finding> {
    project
        .sql_instances
        .iter()
        .filter(|i| supports_iam(i) && !iam_auth_on(i))
        .map(|i| {
            let flag = iam_flag(i);
            let how = match i.flag(flag) {
                Some(v) => format!("sets `{flag}` to `{v}`"),
                None => format!("does not set `{flag}`"),
            };
            MOAT020.finding(
                Severity::Low,
                None,
                format!(
                    "the Cloud SQL instance `{}` {how}: IAM database authentication is off, so users log in with passwords only{}",
                    i.name,
                    depends(project, i, &[FLAGS])
                ),
                format!(
                    "add `settings.database_flags {{ name = \"{flag}\" value = \"on\" }}` to `{}`, or `gcloud sql instances patch {} --database-flags {flag}=on` (with the other flags: the list is replaced)",
                    i.source.address.as_deref().unwrap_or(&i.name),
                    i.name
                ),
                &at(i, FLAGS),
            )
        })
        .collect()
}

fn check_builtin_users(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for i in project.sql_instances.iter().filter(|i| supports_iam(i)) {
        for u in i.users.iter().filter(|u| u.kind == "BUILT_IN" && u.has_password) {
            let iam = if iam_auth_on(i) { "" } else { ", and IAM authentication is off on the instance" };
            out.push(MOAT021.finding(
                Severity::Low,
                None,
                format!(
                    "the Cloud SQL user `{}` on instance `{}` is a built-in user with a password: a long-lived credential where an IAM database user logs in with short-lived tokens{iam}",
                    u.name, i.name
                ),
                format!(
                    "replace `{}` with a `google_sql_user` of `type = \"CLOUD_IAM_SERVICE_ACCOUNT\"` for the runtime service account{}, then delete the built-in user",
                    u.source.address.as_deref().unwrap_or(&u.name),
                    if iam_auth_on(i) { String::new() } else { format!(" (turn `{}` on first)", iam_flag(i)) }
                ),
                &u.source,
            ));
        }
    }
    out
}

fn check_unreachable(project: &Project) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in project.services.values().filter(|s| s.vpc.is_none()) {
        for c in &s.cloud_sql {
            if c.project().is_some_and(|p| !project.is_self(p)) {
                continue;
            }
            let Some(i) = project.sql_instances.iter().find(|i| i.name == c.instance()) else { continue };
            if public_ip(i) {
                continue;
            }
            let network =
                i.private_network.as_deref().map_or_else(|| "the instance's network".to_owned(), |n| format!("`{n}`"));
            out.push(MOAT022.finding(
                Severity::Medium,
                Some(&s.name),
                format!(
                    "`{}` connects to Cloud SQL instance `{}`, which has no public IP, but has no VPC egress: its connections cannot reach the instance's private IP{}",
                    s.name,
                    i.name,
                    depends(project, i, &[IPV4])
                ),
                format!(
                    "give `{}` VPC egress on {network}: `gcloud run services update {} --network NETWORK --subnet SUBNET` (Terraform `template.vpc_access.network_interfaces`); keep the instance private",
                    s.name, s.name
                ),
                &c.source,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
