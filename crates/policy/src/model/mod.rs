//! The model: immutable, validated, with every item pointing back at its source.

pub mod iam;
pub mod project;
pub mod service;

pub use iam::{Binding, Condition, IamPolicy, Member, MemberRef};
pub use project::{
    Acceptance, Connector, DEFAULT_INTERNET_LISTENER, DomainMapping, EPHEMERAL_LISTENER, EgressConfig, ExternalHost,
    FirewallAction, FirewallRule, Group, LbRoute, LbScheme, Listeners, LoadBalancer, Network, Perimeter, PortRange,
    Project, RunSpec, RunTarget, Secret, Seed, ServiceAccount, SharedVpc, Subnet, default_compute_sa,
};
pub use service::{
    EnvValue, EnvVar, Ingress, NetworkRef, SecretRef, SecretVolume, Service, ServiceFormat, Setting, TrafficTag,
    VpcAccess, VpcAttachment, VpcEgress,
};
