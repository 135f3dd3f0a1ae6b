//! Where a service's outbound call comes from, for the callee's ingress (spec/cloudrun.md §6).
//!
//! This is how "the caller path matters": a service without VPC egress calls from the internet;
//! with `private-ranges-only` only private destinations (an internal load balancer) go through
//! the VPC, while `run.app` and custom domains are public and go direct; with `all-traffic`
//! everything leaves through the VPC network the revision is attached to, and reaches run.app
//! from inside Google only if the subnet has Private Google Access.

use crate::decision::Reason;
use crate::model::{Project, Service, Subnet, VpcAttachment, VpcEgress};
use crate::request::NetOrigin;

/// Whether the destination has a public or a private (RFC 1918) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// `run.app`, custom domains, external load balancers.
    Public,
    /// An internal load balancer's address in a VPC.
    Private,
}

/// The network origin a call from `caller` to a `dest` address has, and why.
pub fn origin_of_call(caller: &Service, dest: Destination, project: &Project) -> (NetOrigin, Reason) {
    let Some(vpc) = &caller.vpc else {
        return (
            NetOrigin::Internet,
            Reason::new(
                "egress.no_vpc_access",
                format!("`{}` has no VPC egress, so its calls leave from the internet", caller.name),
                Some(&caller.source),
            ),
        );
    };
    let how = match &vpc.attachment {
        VpcAttachment::Connector { name } => format!("connector `{name}`"),
        VpcAttachment::Direct { .. } => "Direct VPC egress".to_owned(),
    };
    // VPC egress makes run.app calls internal only with Private Google Access on the subnet
    // (spec/cloudrun.md §1.2, §6.2); without it they can leave only through Cloud NAT, i.e. from
    // the internet. An unknown subnet (connector, undeclared) is given the benefit of the doubt.
    let no_pga = subnet_of(project, caller).filter(|s| !s.private_google_access);
    match (vpc.egress.value, dest, no_pga) {
        (VpcEgress::AllTraffic, Destination::Public, Some(subnet)) => (
            NetOrigin::Internet,
            Reason::new(
                "egress.no_private_google_access",
                format!(
                    "`{}` sends all traffic through {how} into VPC network `{}`, but its subnet has no Private Google Access, so calls to public addresses such as run.app leave through Cloud NAT, from the internet",
                    caller.name, vpc.network
                ),
                Some(&subnet.source),
            ),
        ),
        (VpcEgress::AllTraffic, _, _) => (
            NetOrigin::Vpc(vpc.network.clone()),
            Reason::new(
                "egress.all_traffic",
                format!("`{}` sends all traffic through {how} into VPC network `{}`", caller.name, vpc.network),
                Some(&vpc.egress.source),
            ),
        ),
        (VpcEgress::PrivateRangesOnly, Destination::Private, _) => (
            NetOrigin::Vpc(vpc.network.clone()),
            Reason::new(
                "egress.private_ranges_via_vpc",
                format!(
                    "`{}` sends private destinations through {how} into VPC network `{}`",
                    caller.name, vpc.network
                ),
                Some(&vpc.egress.source),
            ),
        ),
        (VpcEgress::PrivateRangesOnly, Destination::Public, _) => (
            NetOrigin::Internet,
            Reason::new(
                "egress.private_ranges_only",
                format!(
                    "`{}` uses {how} with `private-ranges-only` egress, so calls to public addresses such as run.app leave from the internet",
                    caller.name
                ),
                Some(&vpc.egress.source),
            ),
        ),
    }
}

/// The caller's Direct VPC egress subnet, when moat.yaml declares it.
fn subnet_of<'a>(project: &'a Project, caller: &Service) -> Option<&'a Subnet> {
    let vpc = caller.vpc.as_ref()?;
    let VpcAttachment::Direct { subnetwork: Some(sub), .. } = &vpc.attachment else { return None };
    let net = project.network(&vpc.network.network).filter(|_| project.is_self(&vpc.network.project))?;
    net.subnets.iter().find(|s| &s.name == sub)
}

// ------------------------------------------------------------------ outbound connections
//
// SKELETON (filled in by the egress policy work): the types and signatures are fixed; the
// bodies below are placeholders that refuse everything.

/// What kind of address an outbound destination has (spec/cloudrun.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// The instance's metadata server, `169.254.169.254`: reachable in every egress mode.
    Metadata,
    /// The instance itself (`127.0.0.0/8`, `::1`).
    Loopback,
    /// RFC 1918 (and `100.64.0.0/10` when configured as private).
    Private,
    /// Private Google Access VIPs: `199.36.153.8/30` (private.googleapis.com) and
    /// `199.36.153.4/30` (restricted.googleapis.com).
    GoogleAccess,
    /// Everything else: the internet.
    Public,
}

/// Classifies `addr` for `private-ranges-only` routing.
pub fn classify(addr: std::net::IpAddr, config: &crate::model::EgressConfig) -> AddressClass {
    let _ = (addr, config);
    AddressClass::Public
}

/// How an outbound connection leaves the calling instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// To the instance's own metadata server; never leaves the instance's host.
    Metadata,
    /// Straight to the internet, from Google's shared, changing addresses.
    Direct,
    /// Into a VPC network (through a connector or Direct VPC egress); firewall rules apply.
    Vpc(crate::model::NetworkRef),
}

/// The egress decision for one outbound connection: the route, whether it is allowed, the
/// firewall rule that decided (if one did), and every step, as `explain` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressDecision {
    pub route: Route,
    pub effect: crate::decision::Effect,
    /// The name of the VPC firewall rule that decided, when one did (not for implied rules).
    pub rule: Option<String>,
    pub reasons: Vec<Reason>,
}

/// Decides an outbound TCP connection from an instance of `caller` to `addr:port`.
pub fn decide(project: &Project, caller: &Service, addr: std::net::IpAddr, port: u16) -> EgressDecision {
    let _ = (project, caller, addr, port);
    EgressDecision {
        route: Route::Direct,
        effect: crate::decision::Effect::Deny,
        rule: None,
        reasons: vec![Reason::new("egress.unimplemented", "egress decisions are not built yet", None)],
    }
}
