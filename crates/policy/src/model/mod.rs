//! The model: immutable, validated, with every item pointing back at its source.

pub mod iam;
pub mod project;
pub mod rate_state;
pub mod service;
pub mod sql;
pub mod trust;
pub mod unknown;

pub use iam::{Binding, Condition, IamPolicy, Member, MemberRef};
pub use project::{
    Acceptance, Connector, DEFAULT_INTERNET_LISTENER, DomainMapping, EPHEMERAL_LISTENER, EgressConfig, ExternalHost,
    FirewallAction, FirewallRule, Group, LbRoute, LbScheme, Listeners, LoadBalancer, Network, Perimeter, PortRange,
    Project, RunSpec, RunTarget, Secret, Seed, ServiceAccount, SharedVpc, Subnet, default_compute_sa,
};
pub use rate_state::{DEFAULT_RATE_STATE_TIMEOUT, MAX_RATE_STATE_TIMEOUT_MS, RateLimitState, RateStateOnError};
pub use service::{
    CloudSqlConnection, EnvValue, EnvVar, Ingress, NetworkRef, SecretRef, SecretVolume, Service, ServiceFormat,
    Setting, TrafficTag, VpcAccess, VpcAttachment, VpcEgress,
};
pub use sql::{SqlInstance, SqlUser};
pub use unknown::{Unknown, UnknownEffect};
