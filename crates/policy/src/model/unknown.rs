//! Values a Terraform plan does not know until apply (`after_unknown: true`).
//!
//! The model still needs a value for each setting, so the loader takes Cloud Run's default (or
//! leaves the item out) and records the unknown here. Anything that depends on one of these
//! says so: `moat check` adds "depends on a value unknown until apply: ADDRESS.ATTRIBUTE" to the
//! findings of the service, and `moat explain` to its answers.

use std::fmt;

use crate::source::SourceRef;

/// Which part of a service's access path the unknown value decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnknownEffect {
    /// The ingress setting, or whether the default URL / IAM check is on.
    Ingress,
    /// Who may invoke: an IAM member, role or the service an IAM resource is attached to.
    Invokers,
    /// VPC egress: connector, network interface, egress setting.
    Egress,
    /// The runtime service account.
    Identity,
    /// Secrets the service reads, or who may read them.
    Secrets,
    /// A Cloud SQL instance's network, TLS or authentication settings.
    Database,
    /// Something the checks and decisions do not read (IDs, URLs, timestamps).
    Other,
}

impl fmt::Display for UnknownEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingress => "ingress",
            Self::Invokers => "invokers",
            Self::Egress => "egress",
            Self::Identity => "identity",
            Self::Secrets => "secrets",
            Self::Database => "database",
            Self::Other => "other",
        })
    }
}

/// One attribute of one resource that the plan leaves unknown, and what it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The resource address as the user wrote it (`module.api.google_cloud_run_v2_service.svc["eu"]`).
    pub address: String,
    /// The attribute path inside the resource (`template[0].service_account`, `member`).
    pub attribute: String,
    /// The service whose decisions it affects, when the loader could tell.
    pub service: Option<String>,
    pub effect: UnknownEffect,
    pub source: SourceRef,
}

impl Unknown {
    /// `ADDRESS.ATTRIBUTE`.
    pub fn path(&self) -> String {
        format!("{}.{}", self.address, self.attribute)
    }

    /// Whether the value bears on access decisions (anything but `Other`).
    pub fn matters(&self) -> bool {
        self.effect != UnknownEffect::Other
    }
}
