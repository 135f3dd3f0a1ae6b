//! A Cloud Run service as the model holds it: every security-relevant setting, lowered from
//! either the v1 (Knative YAML) or the v2 (JSON) form, each with the line it came from.

use std::fmt;

use crate::model::iam::IamPolicy;
use crate::source::SourceRef;

/// A setting and where it was set. `explicit` is false for implied defaults (a missing
/// annotation), whose source then points at the service file as a whole.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: SourceRef,
    pub explicit: bool,
}

impl<T> Setting<T> {
    pub fn set(value: T, source: SourceRef) -> Self {
        Self { value, source, explicit: true }
    }
    pub fn implied(value: T, source: SourceRef) -> Self {
        Self { value, source, explicit: false }
    }
}

/// The service's ingress setting (spec/cloudrun.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ingress {
    All,
    Internal,
    InternalAndCloudLoadBalancing,
    /// v2 `INGRESS_TRAFFIC_NONE`: nothing is admitted.
    None,
}

impl Ingress {
    /// Accepts the v1 annotation values and the v2 enum names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" | "INGRESS_TRAFFIC_ALL" => Some(Self::All),
            "internal" | "INGRESS_TRAFFIC_INTERNAL_ONLY" => Some(Self::Internal),
            "internal-and-cloud-load-balancing" | "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" => {
                Some(Self::InternalAndCloudLoadBalancing)
            }
            "none" | "INGRESS_TRAFFIC_NONE" => Some(Self::None),
            _ => None,
        }
    }
}

impl fmt::Display for Ingress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::All => "all",
            Self::Internal => "internal",
            Self::InternalAndCloudLoadBalancing => "internal-and-cloud-load-balancing",
            Self::None => "none",
        })
    }
}

/// A VPC network, by owning project and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkRef {
    pub project: String,
    pub network: String,
}

impl fmt::Display for NetworkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.network)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VpcEgress {
    PrivateRangesOnly,
    AllTraffic,
}

impl fmt::Display for VpcEgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PrivateRangesOnly => "private-ranges-only",
            Self::AllTraffic => "all-traffic",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpcAttachment {
    /// Serverless VPC Access connector (`projects/P/locations/L/connectors/NAME` or NAME).
    Connector { name: String },
    /// Direct VPC egress through a network interface.
    Direct { subnetwork: Option<String>, tags: Vec<String> },
}

/// How the revision reaches a VPC network (spec/cloudrun.md §6.1).
#[derive(Debug, Clone)]
pub struct VpcAccess {
    pub attachment: VpcAttachment,
    /// The network the revision's traffic enters (resolved at load time).
    pub network: NetworkRef,
    /// Unset means `private-ranges-only`.
    pub egress: Setting<VpcEgress>,
    pub source: SourceRef,
}

/// A reference to a Secret Manager secret version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// `None` for a secret in the service's own project; else the project id or number.
    pub project: Option<String>,
    pub secret: String,
    /// `latest`, a number, or a version alias.
    pub version: String,
}

impl SecretRef {
    pub fn is_latest(&self) -> bool {
        self.version == "latest"
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.project {
            Some(p) => write!(f, "projects/{p}/secrets/{}/versions/{}", self.secret, self.version),
            None => write!(f, "{}:{}", self.secret, self.version),
        }
    }
}

#[derive(Debug, Clone)]
pub enum EnvValue {
    /// A literal value. Kept so that `check` can look for credentials; never printed.
    Plain(String),
    Secret(SecretRef),
}

#[derive(Debug, Clone)]
pub struct EnvVar {
    pub container: String,
    pub name: String,
    pub value: EnvValue,
    pub source: SourceRef,
}

/// A secret mounted as files.
#[derive(Debug, Clone)]
pub struct SecretVolume {
    pub name: String,
    pub mount_path: Option<String>,
    /// One entry per file: the version it holds and its path under the mount.
    pub files: Vec<SecretRef>,
    pub paths: Vec<String>,
    /// Each file's own `mode` (`items[].mode`), `None` when unset or 0.
    pub modes: Vec<Option<u32>>,
    /// `defaultMode`, `None` when unset or 0 (Cloud Run then uses 0444).
    pub default_mode: Option<u32>,
    pub source: SourceRef,
}

impl SecretVolume {
    /// The permission bits of file `i`: its own mode, else `defaultMode`, else 0444, with
    /// Cloud Run's umask 0222 applied, so a mounted secret is never writable.
    pub fn file_mode(&self, i: usize) -> u32 {
        let mode = self.modes.get(i).copied().flatten().or(self.default_mode).unwrap_or(0o444);
        mode & 0o777 & !0o222
    }
}

#[derive(Debug, Clone)]
pub struct TrafficTag {
    pub tag: String,
    pub source: SourceRef,
}

/// A Cloud SQL instance the revision connects to through Cloud Run's built-in Cloud SQL
/// connection (v1 `run.googleapis.com/cloudsql-instances`, v2 `volumes[].cloudSqlInstance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudSqlConnection {
    /// As written: a connection name `PROJECT:REGION:INSTANCE`, or a bare instance name.
    pub connection_name: String,
    pub source: SourceRef,
}

impl CloudSqlConnection {
    /// The instance name: the last `:`-separated part of the connection name.
    pub fn instance(&self) -> &str {
        self.connection_name.rsplit(':').next().unwrap_or(&self.connection_name)
    }

    /// The project part of `PROJECT:REGION:INSTANCE`, when written.
    pub fn project(&self) -> Option<&str> {
        let mut parts = self.connection_name.split(':');
        let first = parts.next()?;
        (self.connection_name.matches(':').count() == 2).then_some(first)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceFormat {
    /// `gcloud run services describe --format yaml` (serving.knative.dev/v1).
    KnativeV1,
    /// `google.cloud.run.v2.Service` JSON.
    V2,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub format: ServiceFormat,
    /// The service's name in its file.
    pub source: SourceRef,
    pub ingress: Setting<Ingress>,
    /// What the server reports as in force (v1 `ingress-status`), when the export has it.
    /// Decisions use [`Service::ingress_in_force`], not this or `ingress` directly.
    pub ingress_status: Option<Setting<Ingress>>,
    pub invoker_iam_disabled: Setting<bool>,
    pub custom_audiences: Setting<Vec<String>>,
    pub default_url_disabled: Setting<bool>,
    pub iap_enabled: Setting<bool>,
    /// Every `run.app` URL of the service: the deterministic form and any the export lists.
    pub urls: Vec<String>,
    /// The runtime service account; implied = the default compute service account.
    pub service_account: Setting<String>,
    pub vpc: Option<VpcAccess>,
    pub env: Vec<EnvVar>,
    pub volumes: Vec<SecretVolume>,
    pub tags: Vec<TrafficTag>,
    /// The Cloud SQL instances the revision connects to.
    pub cloud_sql: Vec<CloudSqlConnection>,
    /// The service IAM policy (`iam/SERVICE.json`; empty when there is no file).
    pub iam: IamPolicy,
}

impl Service {
    /// The ingress setting a request meets: the one the server reports in force
    /// (`ingress-status`) when the export has it, else the desired `ingress`. The two differ
    /// while a rollout is in progress (spec/cloudrun.md §1.6), and until it finishes the old
    /// setting is the one Cloud Run applies.
    pub fn ingress_in_force(&self) -> &Setting<Ingress> {
        self.ingress_status.as_ref().unwrap_or(&self.ingress)
    }

    /// The in-force setting, when it differs from the desired one (a rollout is pending).
    pub fn ingress_pending(&self) -> Option<&Setting<Ingress>> {
        self.ingress_status.as_ref().filter(|s| s.value != self.ingress.value)
    }

    /// Every secret the service reads, with the line that references it.
    pub fn secret_refs(&self) -> impl Iterator<Item = (&SecretRef, &SourceRef)> {
        let env = self.env.iter().filter_map(|e| match &e.value {
            EnvValue::Secret(r) => Some((r, &e.source)),
            EnvValue::Plain(_) => None,
        });
        let vols = self.volumes.iter().flat_map(|v| v.files.iter().map(move |r| (r, &v.source)));
        env.chain(vols)
    }

    /// URLs a tag is served on: `https://TAG---HOST` for each of the service's URLs.
    pub fn tag_urls(&self, tag: &str) -> Vec<String> {
        self.urls
            .iter()
            .filter_map(|u| u.strip_prefix("https://").map(|host| format!("https://{tag}---{host}")))
            .collect()
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.tag == tag)
    }
}
