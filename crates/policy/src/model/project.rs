//! The project: everything in `moat.yaml` plus the services and policies loaded beside it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

use crate::armor::SecurityPolicy;
use crate::model::iam::{IamPolicy, MemberRef};
use crate::model::service::{NetworkRef, Service};
use crate::request::GoogleProduct;
use crate::source::SourceRef;

#[derive(Debug, Clone)]
pub struct Subnet {
    pub name: String,
    pub region: String,
    pub range: IpNet,
    pub private_google_access: bool,
    pub source: SourceRef,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub subnets: Vec<Subnet>,
    /// Cloud NAT on the network: traffic that enters the VPC may leave it for the internet.
    pub nat: bool,
    /// Egress firewall rules, as written (evaluated by priority by `egress::decide`).
    pub firewall: Vec<FirewallRule>,
    pub source: SourceRef,
}

/// What a VPC firewall rule does with the traffic it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    Allow,
    Deny,
}

/// A port or an inclusive range of ports (`443`, `8000-9000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// A VPC egress firewall rule (`networks[].firewall` in moat.yaml). Only egress rules are
/// modelled: ingress to Cloud Run is governed by ingress settings, not VPC firewall rules.
#[derive(Debug, Clone)]
pub struct FirewallRule {
    pub name: String,
    /// 0 (first) to 65535 (last); GCP's default is 1000.
    pub priority: u32,
    pub action: FirewallAction,
    /// Empty in moat.yaml means `0.0.0.0/0` (GCP's default for egress rules); stored as given.
    pub destination_ranges: Vec<IpNet>,
    /// Network tags of the instances the rule applies to; empty = every instance.
    pub target_tags: Vec<String>,
    /// TCP ports; empty = every port.
    pub ports: Vec<PortRange>,
    pub source: SourceRef,
}

/// A host outside the project as the simulated network sees it (`egress.hosts` in moat.yaml):
/// the address egress decisions use, and where moat's egress proxy really connects locally.
#[derive(Debug, Clone)]
pub struct ExternalHost {
    /// Lower-case DNS name.
    pub name: String,
    /// The address the host has on the modelled network (decides the route and the rules).
    pub address: std::net::IpAddr,
    /// Where the proxy connects instead (a local stand-in server); `None` connects to
    /// `address`.
    pub local: Option<SocketAddr>,
    pub source: SourceRef,
}

/// Project-wide egress settings (`egress:` in moat.yaml).
#[derive(Debug, Clone, Default)]
pub struct EgressConfig {
    /// Whether `100.64.0.0/10` (RFC 6598, shared address space) counts as a private range for
    /// `private-ranges-only`. The spec is unsure (spec/cloudrun.md §6.2); default `false`.
    pub rfc6598_is_private: bool,
    pub hosts: Vec<ExternalHost>,
}

impl EgressConfig {
    pub fn host(&self, name: &str) -> Option<&ExternalHost> {
        self.hosts.iter().find(|h| h.name.eq_ignore_ascii_case(name))
    }
}

/// A Shared VPC network of another (host) project that revisions may attach to.
#[derive(Debug, Clone)]
pub struct SharedVpc {
    pub network: NetworkRef,
    pub source: SourceRef,
}

/// A Serverless VPC Access connector and the network it sits in.
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub network: NetworkRef,
    pub source: SourceRef,
}

/// The VPC Service Controls perimeter that contains the project (Cloud Run restricted).
#[derive(Debug, Clone)]
pub struct Perimeter {
    pub name: String,
    /// Other projects inside the same perimeter (ids or numbers).
    pub projects: Vec<String>,
    pub source: SourceRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LbScheme {
    External,
    Internal,
}

#[derive(Debug, Clone)]
pub struct LbRoute {
    pub path: String,
    pub service: String,
    pub source: SourceRef,
}

#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub name: String,
    pub scheme: LbScheme,
    /// The VPC network an internal load balancer lives in.
    pub network: Option<NetworkRef>,
    pub hosts: Vec<String>,
    /// Name of the security policy file in `armor/` (without `.json`).
    pub security_policy: Option<String>,
    pub iap: bool,
    pub routes: Vec<LbRoute>,
    pub source: SourceRef,
}

impl LoadBalancer {
    pub fn routes_to(&self, service: &str) -> bool {
        self.routes.iter().any(|r| r.service == service)
    }
}

#[derive(Debug, Clone)]
pub struct DomainMapping {
    pub domain: String,
    pub service: String,
    pub source: SourceRef,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub email: String,
    pub members: Vec<MemberRef>,
    pub source: SourceRef,
}

/// Secret metadata (never values): name, the secret's own IAM policy and how `moat up` seeds it.
#[derive(Debug, Clone)]
pub struct Secret {
    pub name: String,
    pub iam: IamPolicy,
    /// Version 1 when `moat up` finds the secret without versions; `None` leaves it empty.
    pub seed: Option<Seed>,
    pub source: SourceRef,
}

/// Where a declared secret's first version comes from (`seed:` in moat.yaml). Only `moat up`
/// acts on it; `explain` and `check` never read a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// `seed: random`: 32 random bytes, base64url, generated on the first `moat up`.
    Random,
    /// `seed: {file: PATH}`: the file's content. `path` is as written, relative to the project
    /// directory.
    File { path: PathBuf, source: SourceRef },
}

/// How `moat up` runs a service locally, or where `moat serve` finds it.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub target: RunTarget,
    pub source: SourceRef,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunTarget {
    /// A workload moat starts: the program and its arguments, run in `dir` (relative to the
    /// project directory; the project directory itself when `None`).
    Command { command: Vec<String>, dir: Option<String> },
    /// An upstream moat proxies to: `http(s)://HOST:PORT[/PREFIX]`, already checked.
    Url(String),
}

/// Where the front door and the admin API listen (`listeners:` in moat.yaml). What is not
/// configured listens on an ephemeral loopback port, except the internet listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub internet: SocketAddr,
    /// Keyed by the network as moat.yaml names it (`NAME` or `HOST_PROJECT/NAME`).
    pub vpc: BTreeMap<NetworkRef, SocketAddr>,
    pub google: BTreeMap<GoogleProduct, SocketAddr>,
    pub admin: SocketAddr,
}

/// The internet listener when moat.yaml does not say: Cloud Run's default container port.
pub const DEFAULT_INTERNET_LISTENER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
/// Every other listener when moat.yaml does not say: a free loopback port.
pub const EPHEMERAL_LISTENER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

impl Default for Listeners {
    fn default() -> Self {
        Self {
            internet: DEFAULT_INTERNET_LISTENER,
            vpc: BTreeMap::new(),
            google: BTreeMap::new(),
            admin: EPHEMERAL_LISTENER,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub email: String,
    pub source: SourceRef,
}

/// A `moat check` finding the project has decided to live with (`accept:` in moat.yaml). The
/// finding is still reported, marked accepted with the reason, but does not fail the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    /// A rule id of the `check` catalogue (`MOAT001`).
    pub rule: String,
    /// The service the acceptance covers; `None` covers every finding of the rule.
    pub service: Option<String>,
    pub reason: String,
    pub source: SourceRef,
}

impl Acceptance {
    /// Whether this acceptance covers a finding of `rule` about `service`.
    pub fn covers(&self, rule: &str, service: Option<&str>) -> bool {
        self.rule == rule && self.service.as_deref().is_none_or(|s| Some(s) == service)
    }
}

/// A loaded, validated project. Immutable; shared by analysis and enforcement.
#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub number: String,
    pub region: String,
    pub source: SourceRef,
    pub networks: Vec<Network>,
    /// Egress settings: which ranges are private, and the outside hosts of the simulation.
    pub egress: EgressConfig,
    /// The IP-to-region/ASN table (`geo:`); empty when moat.yaml has none, and then
    /// `origin.region_code` and `origin.asn` are unavailable for every request.
    pub geo: crate::armor::GeoTable,
    pub shared_vpc: Vec<SharedVpc>,
    pub connectors: Vec<Connector>,
    pub perimeter: Option<Perimeter>,
    pub load_balancers: Vec<LoadBalancer>,
    pub domain_mappings: Vec<DomainMapping>,
    /// Keyed by lower-case group email.
    pub groups: BTreeMap<String, Group>,
    /// The project IAM policy, including the implied Editor grant of the default compute
    /// service account unless `automatic_default_sa_grants: false`.
    pub iam: IamPolicy,
    pub service_accounts: Vec<ServiceAccount>,
    pub secrets: BTreeMap<String, Secret>,
    pub run: BTreeMap<String, RunSpec>,
    pub listeners: Listeners,
    pub services: BTreeMap<String, Service>,
    /// The security policies of `armor/NAME.json`, by NAME: every file there, referenced by a
    /// load balancer or not, parsed and compiled at load.
    pub armor_policies: BTreeMap<String, Arc<SecurityPolicy>>,
    /// Findings accepted as known risks, in the order written.
    pub accepted: Vec<Acceptance>,
    /// Shared rate-limit counters and bans (`rate_limit_state:`); `None`: each process counts
    /// in its own memory.
    pub rate_limit_state: Option<crate::model::RateLimitState>,
    /// Other ID-token issuers the front door trusts (`trust.issuers`); moat's own is implicit.
    pub trusted_issuers: Vec<crate::model::trust::TrustedIssuer>,
    /// Values a Terraform plan leaves unknown until apply (always empty for a project
    /// directory); see `model::unknown`.
    pub unknowns: Vec<crate::model::Unknown>,
    /// Cloud SQL instances (from Terraform input; empty for a project directory).
    pub sql_instances: Vec<crate::model::SqlInstance>,
    /// The IAM policy of each service account as a resource (who may act as it or mint its
    /// tokens), by lower-case email: moat.yaml `service_accounts[].iam`, Terraform
    /// `google_service_account_iam_*`. Project-level grants are in `iam`.
    pub service_account_iam: BTreeMap<String, IamPolicy>,
}

impl Project {
    /// `PROJECT_NUMBER-compute@developer.gserviceaccount.com`.
    pub fn default_compute_sa(&self) -> String {
        default_compute_sa(&self.number)
    }

    /// The unknown values that bear on `service`'s access decisions.
    pub fn unknowns_for<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a crate::model::Unknown> + 'a {
        self.unknowns.iter().filter(move |u| u.matters() && u.service.as_deref() == Some(service))
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Whether `project` (id or number) is this project.
    pub fn is_self(&self, project: &str) -> bool {
        project == self.id || project == self.number
    }

    /// Whether `project` is this project or shares its VPC-SC perimeter.
    pub fn in_perimeter(&self, project: &str) -> bool {
        self.perimeter.as_ref().is_some_and(|p| p.projects.iter().any(|q| q == project))
    }

    pub fn load_balancer(&self, name: &str) -> Option<&LoadBalancer> {
        self.load_balancers.iter().find(|lb| lb.name == name)
    }

    /// The security policy attached to `lb`, if any. Loading guarantees that a named policy
    /// exists.
    pub fn security_policy(&self, lb: &LoadBalancer) -> Option<&SecurityPolicy> {
        lb.security_policy.as_deref().and_then(|name| self.armor_policies.get(name)).map(|p| &**p)
    }

    pub fn domain_mapping(&self, domain: &str) -> Option<&DomainMapping> {
        self.domain_mappings.iter().find(|d| d.domain.eq_ignore_ascii_case(domain))
    }

    /// Whether a VPC network is one of this project's own.
    pub fn owns_network(&self, net: &NetworkRef) -> bool {
        self.is_self(&net.project) && self.network(&net.network).is_some()
    }

    pub fn is_shared_vpc(&self, net: &NetworkRef) -> bool {
        self.shared_vpc.iter().any(|s| &s.network == net)
    }
}

pub fn default_compute_sa(project_number: &str) -> String {
    format!("{project_number}-compute@developer.gserviceaccount.com")
}
