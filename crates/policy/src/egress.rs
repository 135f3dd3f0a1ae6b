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
