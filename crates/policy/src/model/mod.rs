//! The model: immutable, validated, with every item pointing back at its source.

pub mod iam;
pub mod project;
pub mod service;

pub use iam::{Binding, Condition, IamPolicy, Member, MemberRef};
pub use project::{
    Acceptance, Connector, DomainMapping, Group, LbRoute, LbScheme, LoadBalancer, Network, Perimeter, Project, RunSpec,
    Secret, ServiceAccount, SharedVpc, Subnet, default_compute_sa,
};
pub use service::{
    EnvValue, EnvVar, Ingress, NetworkRef, SecretRef, SecretVolume, Service, ServiceFormat, Setting, TrafficTag,
    VpcAccess, VpcAttachment, VpcEgress,
};
