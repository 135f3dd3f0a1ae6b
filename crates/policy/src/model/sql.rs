//! Cloud SQL instances and their users, as a Terraform plan declares them. Kept for the Cloud
//! SQL checks (MOAT017–MOAT022: public IP, private network, TLS, IAM authentication, built-in
//! users, services that connect without VPC egress).

use crate::source::SourceRef;

#[derive(Debug, Clone)]
pub struct SqlInstance {
    pub name: String,
    /// `POSTGRES_15`, `MYSQL_8_0`, ...; empty when unknown.
    pub database_version: String,
    /// `settings.ip_configuration.ipv4_enabled`; `None` when unknown or unset.
    pub public_ip: Option<bool>,
    /// `settings.ip_configuration.private_network`, when set.
    pub private_network: Option<String>,
    /// `settings.ip_configuration.ssl_mode` (`ENCRYPTED_ONLY`, ...), when set.
    pub ssl_mode: Option<String>,
    /// `settings.ip_configuration.require_ssl` (older provider versions), when set.
    pub require_ssl: Option<bool>,
    /// `settings.database_flags` as name → value.
    pub flags: Vec<(String, String)>,
    pub users: Vec<SqlUser>,
    pub source: SourceRef,
}

#[derive(Debug, Clone)]
pub struct SqlUser {
    pub name: String,
    /// `BUILT_IN` (the default), `CLOUD_IAM_USER`, `CLOUD_IAM_SERVICE_ACCOUNT`, ...
    pub kind: String,
    /// Whether the plan sets a password (its value is never read).
    pub has_password: bool,
    pub source: SourceRef,
}

impl SqlInstance {
    /// The value of a database flag (`cloudsql.iam_authentication`), when set.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}
