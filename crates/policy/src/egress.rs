//! Where a service's outbound call comes from, for the callee's ingress (spec/cloudrun.md §6).
//!
//! This is how "the caller path matters": a service without VPC egress calls from the internet;
//! with `private-ranges-only` only private destinations (an internal load balancer) go through
//! the VPC, while `run.app` and custom domains are public and go direct; with `all-traffic`
//! everything leaves through the VPC network the revision is attached to.

use crate::decision::Reason;
use crate::model::{Project, Service, VpcAttachment, VpcEgress};
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
    match (vpc.egress.value, dest) {
        (VpcEgress::AllTraffic, _) => {
            let pga = private_google_access(project, caller);
            let note = if pga == Some(false) { " (its subnet has no Private Google Access)" } else { "" };
            (
                NetOrigin::Vpc(vpc.network.clone()),
                Reason::new(
                    "egress.all_traffic",
                    format!(
                        "`{}` sends all traffic through {how} into VPC network `{}`{note}",
                        caller.name, vpc.network
                    ),
                    Some(&vpc.egress.source),
                ),
            )
        }
        (VpcEgress::PrivateRangesOnly, Destination::Private) => (
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
        (VpcEgress::PrivateRangesOnly, Destination::Public) => (
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

/// Whether the caller's subnet has Private Google Access, when the subnet is known.
fn private_google_access(project: &Project, caller: &Service) -> Option<bool> {
    let vpc = caller.vpc.as_ref()?;
    let VpcAttachment::Direct { subnetwork: Some(sub), .. } = &vpc.attachment else { return None };
    let net = project.network(&vpc.network.network).filter(|_| project.is_self(&vpc.network.project))?;
    net.subnets.iter().find(|s| &s.name == sub).map(|s| s.private_google_access)
}
