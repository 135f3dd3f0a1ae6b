//! Egress: where a service's outbound connections go, and whether they get there
//! (spec/cloudrun.md §6).
//!
//! Two questions share one routing table, [`way`]. [`decide`] answers the egress proxy: may an
//! instance of a service open a TCP connection to an address and port, by which route, under
//! which firewall rule. [`origin_of_call`] answers the caller path of `explain` and `check`:
//! from which network does a call to another service arrive at the callee's ingress. Because
//! both start from `way`, the proxy and the caller path cannot disagree about a route.
//!
//! This is how "the caller path matters": a service without VPC egress calls from the internet;
//! with `private-ranges-only` only private destinations (an internal load balancer) go through
//! the VPC, while `run.app` and custom domains are public and go direct; with `all-traffic`
//! everything leaves through the VPC network the revision is attached to, and reaches run.app
//! from inside Google only if the subnet has Private Google Access.

mod classify;
mod firewall;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

pub use classify::{AddressClass, METADATA_ADDRESS, classify};
pub use firewall::{caller_tags, deciding_rule, rule_matches};

use crate::decision::{Effect, Reason};
use crate::model::{
    FirewallAction, FirewallRule, Network, NetworkRef, Project, Service, Subnet, VpcAccess, VpcAttachment, VpcEgress,
};
use crate::request::NetOrigin;
use crate::source::SourceRef;

/// The stable reason codes of egress decisions.
pub mod codes {
    /// What kind of address the destination is (always the first reason of [`super::decide`]).
    pub const ADDRESS: &str = "egress.address";
    /// The metadata server: reachable in every egress mode.
    pub const METADATA: &str = "egress.metadata";
    /// A loopback address: the instance itself, never through the egress proxy (denied).
    pub const LOOPBACK: &str = "egress.loopback";
    /// No VPC access: everything leaves straight for the internet.
    pub const NO_VPC_ACCESS: &str = "egress.no_vpc_access";
    /// A private (or Private Google Access) destination without VPC access (denied).
    pub const PRIVATE_UNREACHABLE: &str = "egress.private_unreachable";
    /// `private-ranges-only`, public destination: straight to the internet.
    pub const PRIVATE_RANGES_ONLY: &str = "egress.private_ranges_only";
    /// `private-ranges-only`, private destination: through the VPC network.
    pub const PRIVATE_RANGES_VIA_VPC: &str = "egress.private_ranges_via_vpc";
    /// `all-traffic`: through the VPC network.
    pub const ALL_TRAFFIC: &str = "egress.all_traffic";
    /// The connection goes straight to the internet and is allowed.
    pub const DIRECT: &str = "egress.direct";
    /// A VPC firewall rule allows the connection.
    pub const FIREWALL_ALLOW: &str = "egress.firewall.allow";
    /// A VPC firewall rule denies the connection (denied).
    pub const FIREWALL_DENY: &str = "egress.firewall.deny";
    /// No VPC firewall rule matches (or moat.yaml does not describe the network's rules): GCP's
    /// implied allow-egress rule lets the connection out.
    pub const FIREWALL_IMPLIED_ALLOW: &str = "egress.firewall.implied_allow";
    /// Private destination inside the VPC: delivered once the firewall lets it out.
    pub const VPC_DELIVERED: &str = "egress.vpc_delivered";
    /// The subnet has Private Google Access: the PGA addresses are reachable.
    pub const PRIVATE_GOOGLE_ACCESS: &str = "egress.private_google_access";
    /// The subnet is not described (connector, Shared VPC): Private Google Access is assumed.
    pub const PRIVATE_GOOGLE_ACCESS_ASSUMED: &str = "egress.private_google_access_assumed";
    /// The subnet has no Private Google Access: PGA addresses are unreachable (denied by
    /// `decide`), run.app calls leave through Cloud NAT (`origin_of_call`).
    pub const NO_PRIVATE_GOOGLE_ACCESS: &str = "egress.no_private_google_access";
    /// The network has Cloud NAT: a public destination is reachable from the VPC.
    pub const NAT: &str = "egress.nat";
    /// moat.yaml does not describe the network (a Shared VPC): Cloud NAT is assumed.
    pub const NAT_ASSUMED: &str = "egress.nat_assumed";
    /// `all-traffic` to a public destination, and the network has no Cloud NAT (denied).
    pub const NO_NAT: &str = "egress.no_nat";
}

// ------------------------------------------------------------------ the routing table

/// Which way traffic to one class of address leaves a caller (spec/cloudrun.md §6.2), before
/// firewall rules, Private Google Access and Cloud NAT.
#[derive(Debug, Clone, Copy)]
pub enum Way<'a> {
    /// To the metadata server; never leaves the instance's host.
    Metadata,
    /// The instance itself; not an egress at all.
    Loopback,
    /// Straight to the internet.
    Direct,
    /// No route: a private destination and no VPC access.
    Unreachable,
    /// Into the VPC network of the caller's VPC access.
    Vpc(&'a VpcAccess),
}

/// The routing table: how traffic to `class` leaves `caller`, and why.
///
/// | class \ egress              | no VPC access | `private-ranges-only` | `all-traffic` |
/// |-----------------------------|---------------|-----------------------|---------------|
/// | metadata                    | metadata      | metadata              | metadata      |
/// | loopback                    | loopback      | loopback              | loopback      |
/// | private, Google Access VIPs | unreachable   | VPC                   | VPC           |
/// | public                      | direct        | direct                | VPC           |
///
/// Private Google Access VIPs route like private ranges: gcloud counts them as private for
/// `private-ranges-only`, and they exist only inside a VPC network.
pub fn way(caller: &Service, class: AddressClass) -> (Way<'_>, Reason) {
    let private = match class {
        AddressClass::Metadata => {
            let why = format!(
                "`{}` reaches its metadata server in every egress mode; the connection never leaves the instance's host",
                caller.name
            );
            return (Way::Metadata, Reason::new(codes::METADATA, why, Some(&caller.source)));
        }
        AddressClass::Loopback => {
            let why = format!(
                "a loopback address is `{}`'s own instance, which it reaches directly, not through the egress proxy",
                caller.name
            );
            return (Way::Loopback, Reason::new(codes::LOOPBACK, why, Some(&caller.source)));
        }
        AddressClass::Private | AddressClass::GoogleAccess => true,
        AddressClass::Public => false,
    };
    let Some(vpc) = &caller.vpc else {
        let why = format!("`{}` has no VPC egress, so its calls leave from the internet", caller.name);
        let way = if private { Way::Unreachable } else { Way::Direct };
        return (way, Reason::new(codes::NO_VPC_ACCESS, why, Some(&caller.source)));
    };
    let how = how(vpc);
    match (vpc.egress.value, private) {
        (VpcEgress::AllTraffic, _) => (
            Way::Vpc(vpc),
            Reason::new(
                codes::ALL_TRAFFIC,
                format!("`{}` sends all traffic through {how} into VPC network `{}`", caller.name, vpc.network),
                Some(&vpc.egress.source),
            ),
        ),
        (VpcEgress::PrivateRangesOnly, true) => (
            Way::Vpc(vpc),
            Reason::new(
                codes::PRIVATE_RANGES_VIA_VPC,
                format!(
                    "`{}` sends private destinations through {how} into VPC network `{}`",
                    caller.name, vpc.network
                ),
                Some(&vpc.egress.source),
            ),
        ),
        (VpcEgress::PrivateRangesOnly, false) => (
            Way::Direct,
            Reason::new(
                codes::PRIVATE_RANGES_ONLY,
                format!(
                    "`{}` uses {how} with `private-ranges-only` egress, so calls to public addresses such as run.app leave from the internet",
                    caller.name
                ),
                Some(&vpc.egress.source),
            ),
        ),
    }
}

fn how(vpc: &VpcAccess) -> String {
    match &vpc.attachment {
        VpcAttachment::Connector { name } => format!("connector `{name}`"),
        VpcAttachment::Direct { .. } => "Direct VPC egress".to_owned(),
    }
}

/// The caller's Direct VPC egress subnet, when moat.yaml declares it.
fn subnet_of<'a>(project: &'a Project, caller: &Service) -> Option<&'a Subnet> {
    let vpc = caller.vpc.as_ref()?;
    let VpcAttachment::Direct { subnetwork: Some(sub), .. } = &vpc.attachment else { return None };
    let net = project.network(&vpc.network.network).filter(|_| project.is_self(&vpc.network.project))?;
    net.subnets.iter().find(|s| &s.name == sub)
}

/// The network as moat.yaml describes it: one of the project's own. A Shared VPC network has
/// no description (its NAT and firewall rules belong to the host project).
fn described<'a>(project: &'a Project, net: &NetworkRef) -> Option<&'a Network> {
    project.network(&net.network).filter(|_| project.is_self(&net.project))
}

// ------------------------------------------------------------------ calls to other services

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
    let class = match dest {
        Destination::Public => AddressClass::Public,
        Destination::Private => AddressClass::Private,
    };
    match way(caller, class) {
        (Way::Vpc(vpc), why) => {
            // VPC egress makes run.app calls internal only with Private Google Access on the
            // subnet (spec/cloudrun.md §1.2, §6.2); without it they can leave only through
            // Cloud NAT, i.e. from the internet. An unknown subnet (connector, undeclared) is
            // given the benefit of the doubt.
            if dest == Destination::Public
                && let Some(subnet) = subnet_of(project, caller).filter(|s| !s.private_google_access)
            {
                let why = format!(
                    "`{}` sends all traffic through {} into VPC network `{}`, but its subnet has no Private Google Access, so calls to public addresses such as run.app leave through Cloud NAT, from the internet",
                    caller.name,
                    how(vpc),
                    vpc.network
                );
                return (NetOrigin::Internet, Reason::new(codes::NO_PRIVATE_GOOGLE_ACCESS, why, Some(&subnet.source)));
            }
            (NetOrigin::Vpc(vpc.network.clone()), why)
        }
        // Unreachable: a private address without VPC access; the call starts on the internet,
        // where that address does not exist (`network::reach` refuses internal load balancers
        // from there). Metadata and loopback are not classes a `Destination` has.
        (Way::Direct | Way::Unreachable | Way::Metadata | Way::Loopback, why) => (NetOrigin::Internet, why),
    }
}

// ------------------------------------------------------------------ outbound connections

/// How an outbound connection leaves the calling instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// To the instance's own metadata server; never leaves the instance's host.
    Metadata,
    /// Straight to the internet, from Google's shared, changing addresses. Also the route of a
    /// connection refused before it is routed (loopback, or a private address without VPC
    /// access: such traffic would go straight out, where the address does not exist).
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
    /// An allow rule stays named when a later step (Cloud NAT, Private Google Access) refuses.
    pub rule: Option<String>,
    pub reasons: Vec<Reason>,
}

impl EgressDecision {
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The reason that settled the decision (the last one).
    pub fn last_reason(&self) -> Option<&Reason> {
        self.reasons.last()
    }
}

/// Decides an outbound TCP connection from an instance of `caller` to `addr:port`.
///
/// The steps, each recorded as a reason: classify the address; route it ([`way`]); for a VPC
/// route, the network's egress firewall rules, then what lies beyond the firewall (Private
/// Google Access for the PGA addresses, Cloud NAT for a public address).
pub fn decide(project: &Project, caller: &Service, addr: IpAddr, port: u16) -> EgressDecision {
    // An IPv4-mapped IPv6 address is its IPv4 address on the wire: decide on that, so that
    // `::ffff:10.0.0.1` cannot dodge a rule written for `10.0.0.0/8`.
    let addr = addr.to_canonical();
    let class = classify(addr, &project.egress);
    let target = SocketAddr::new(addr, port);
    let (way, why) = way(caller, class);
    let mut reasons = vec![address_reason(project, addr, class), why];
    match way {
        Way::Metadata => allow(Route::Metadata, None, reasons),
        Way::Loopback => deny(Route::Direct, None, reasons),
        Way::Direct => {
            reasons.push(Reason::new(
                codes::DIRECT,
                format!(
                    "`{}` connects to `{target}` straight over the internet, from Google's shared addresses; no VPC firewall rule applies",
                    caller.name
                ),
                caller.vpc.as_ref().map_or(Some(&caller.source), |v| Some(&v.egress.source)),
            ));
            allow(Route::Direct, None, reasons)
        }
        Way::Unreachable => {
            reasons.push(Reason::new(
                codes::PRIVATE_UNREACHABLE,
                format!(
                    "`{}` has no VPC access, private ranges are unreachable: `{target}` exists only inside a VPC network",
                    caller.name
                ),
                Some(&caller.source),
            ));
            deny(Route::Direct, None, reasons)
        }
        Way::Vpc(vpc) => through_vpc(project, caller, vpc, class, target, reasons),
    }
}

/// A connection that entered the VPC network: the firewall at the instance's interface first
/// (it sees the packet before any route does), then what lies beyond it.
fn through_vpc(
    project: &Project,
    caller: &Service,
    vpc: &VpcAccess,
    class: AddressClass,
    target: SocketAddr,
    mut reasons: Vec<Reason>,
) -> EgressDecision {
    let route = Route::Vpc(vpc.network.clone());
    let at = Vpc::new(project, caller, vpc, target);
    let (why, rule) = at.firewall();
    reasons.push(why);
    let rule = rule.map(|r| (r.name.clone(), r.action));
    if let Some((name, FirewallAction::Deny)) = rule {
        return deny(route, Some(name), reasons);
    }
    let rule = rule.map(|(name, _)| name);
    match at.beyond_firewall(class) {
        Ok(r) => {
            reasons.push(r);
            allow(route, rule, reasons)
        }
        Err(r) => {
            reasons.push(r);
            deny(route, rule, reasons)
        }
    }
}

/// One connection inside a VPC network, with what moat.yaml says about the network.
struct Vpc<'a> {
    project: &'a Project,
    caller: &'a Service,
    vpc: &'a VpcAccess,
    target: SocketAddr,
    /// The network as moat.yaml describes it; `None` for a Shared VPC network.
    network: Option<&'a Network>,
    /// Where a statement about an undescribed (Shared VPC) network points: its declaration.
    undescribed_at: &'a SourceRef,
}

impl<'a> Vpc<'a> {
    fn new(project: &'a Project, caller: &'a Service, vpc: &'a VpcAccess, target: SocketAddr) -> Self {
        let net = &vpc.network;
        let undescribed_at = project.shared_vpc.iter().find(|s| &s.network == net).map_or(&vpc.source, |s| &s.source);
        Self { project, caller, vpc, target, network: described(project, net), undescribed_at }
    }

    /// The firewall step's reason, and the rule that decided (`None`: the implied rule).
    fn firewall(&self) -> (Reason, Option<&'a FirewallRule>) {
        let (net, target, name) = (&self.vpc.network, self.target, &self.caller.name);
        let Some(network) = self.network else {
            let why = format!(
                "moat.yaml does not describe the firewall rules of Shared VPC network `{net}`, so only GCP's implied allow-egress rule is modelled: `{name}`'s connection to `{target}` goes out"
            );
            return (Reason::new(codes::FIREWALL_IMPLIED_ALLOW, why, Some(self.undescribed_at)), None);
        };
        let tags = caller_tags(self.project, self.vpc);
        let Some(rule) = deciding_rule(&network.firewall, &tags, target.ip(), target.port()) else {
            let why = format!(
                "no egress firewall rule of network `{net}` matches `{name}`'s connection to `{target}` ({}), so the implied allow-egress rule (priority 65535) lets it out",
                describe_tags(&tags)
            );
            return (Reason::new(codes::FIREWALL_IMPLIED_ALLOW, why, Some(&network.source)), None);
        };
        let (code, verb) = match rule.action {
            FirewallAction::Deny => (codes::FIREWALL_DENY, "denies"),
            FirewallAction::Allow => (codes::FIREWALL_ALLOW, "allows"),
        };
        let why = format!(
            "egress firewall rule `{}` (priority {}, {}) of network `{net}` {verb} `{name}`'s connection to `{target}`",
            rule.name,
            rule.priority,
            describe_targets(&rule.target_tags)
        );
        (Reason::new(code, why, Some(&rule.source)), Some(rule))
    }

    /// What lies beyond the firewall: Private Google Access for the PGA addresses, Cloud NAT
    /// for a public address, the network itself for a private one. `Err` refuses.
    fn beyond_firewall(&self, class: AddressClass) -> Result<Reason, Reason> {
        let (net, target, name) = (&self.vpc.network, self.target, &self.caller.name);
        match (class, self.network) {
            (AddressClass::GoogleAccess, _) => {
                private_google_access(self.project, self.caller, target, self.undescribed_at)
            }
            (AddressClass::Public, Some(n)) if n.nat => Ok(Reason::new(
                codes::NAT,
                format!("network `{net}` has Cloud NAT, so `{name}` reaches the public address `{target}`"),
                Some(&n.source),
            )),
            (AddressClass::Public, Some(n)) => Err(Reason::new(
                codes::NO_NAT,
                format!(
                    "`{name}` sends all traffic into network `{net}`, which has no Cloud NAT, so the public address `{target}` is unreachable"
                ),
                Some(&n.source),
            )),
            (AddressClass::Public, None) => Ok(Reason::new(
                codes::NAT_ASSUMED,
                format!(
                    "moat.yaml does not describe Shared VPC network `{net}`, so Cloud NAT is assumed there: `{name}` reaches the public address `{target}`"
                ),
                Some(self.undescribed_at),
            )),
            // Private ranges: the address is in the network or routed from it (peering, VPN);
            // moat does not model routes inside the VPC. (Metadata and loopback never get here.)
            (AddressClass::Private | AddressClass::Metadata | AddressClass::Loopback, _) => Ok(Reason::new(
                codes::VPC_DELIVERED,
                format!("`{target}` is reached inside VPC network `{net}`"),
                Some(&self.vpc.source),
            )),
        }
    }
}

/// The Private Google Access VIPs answer only subnets with Private Google Access (the same
/// rule `origin_of_call` applies to run.app). An undescribed subnet is given the benefit of the
/// doubt.
fn private_google_access(
    project: &Project,
    caller: &Service,
    target: SocketAddr,
    undescribed_at: &SourceRef,
) -> Result<Reason, Reason> {
    match subnet_of(project, caller) {
        Some(s) if s.private_google_access => Ok(Reason::new(
            codes::PRIVATE_GOOGLE_ACCESS,
            format!("subnet `{}` has Private Google Access, so `{}` reaches `{target}`", s.name, caller.name),
            Some(&s.source),
        )),
        Some(s) => Err(Reason::new(
            codes::NO_PRIVATE_GOOGLE_ACCESS,
            format!(
                "subnet `{}` of `{}` has no Private Google Access, so the Private Google Access address `{target}` is unreachable",
                s.name, caller.name
            ),
            Some(&s.source),
        )),
        None => Ok(Reason::new(
            codes::PRIVATE_GOOGLE_ACCESS_ASSUMED,
            format!(
                "moat.yaml does not describe the subnet `{}`'s traffic leaves from, so Private Google Access is assumed: `{target}` is reachable",
                caller.name
            ),
            Some(undescribed_at),
        )),
    }
}

/// The first reason of a decision: what the address is, and the egress host it belongs to.
fn address_reason(project: &Project, addr: IpAddr, class: AddressClass) -> Reason {
    let what = match (class, addr) {
        (AddressClass::Metadata, _) => "the metadata server",
        (AddressClass::Loopback, _) => "a loopback address",
        (AddressClass::Private, IpAddr::V6(_)) => "a private address (unique local IPv6, fc00::/7)",
        (AddressClass::Private, IpAddr::V4(a)) if classify::RFC6598.contains(&a) => {
            "a private address (RFC 6598 shared address space, private because `egress.rfc6598_is_private` is true)"
        }
        (AddressClass::Private, IpAddr::V4(_)) => "a private address (RFC 1918)",
        (AddressClass::GoogleAccess, IpAddr::V4(a)) if classify::PGA_RESTRICTED.contains(&a) => {
            "a Private Google Access address (restricted.googleapis.com, 199.36.153.4/30)"
        }
        (AddressClass::GoogleAccess, _) => "a Private Google Access address (private.googleapis.com, 199.36.153.8/30)",
        (AddressClass::Public, IpAddr::V4(a)) if classify::RFC6598.contains(&a) => {
            "a public address (RFC 6598 shared address space counts as public unless `egress.rfc6598_is_private` is true)"
        }
        (AddressClass::Public, _) => "a public address",
    };
    let host = project.egress.hosts.iter().find(|h| h.address.to_canonical() == addr);
    match host {
        Some(h) => {
            Reason::new(codes::ADDRESS, format!("`{addr}` (egress host `{}`) is {what}", h.name), Some(&h.source))
        }
        None => Reason::new(codes::ADDRESS, format!("`{addr}` is {what}"), None),
    }
}

fn describe_tags(tags: &[String]) -> String {
    if tags.is_empty() {
        "its traffic carries no network tags".to_owned()
    } else {
        format!("its traffic carries network tags {}", quoted(tags))
    }
}

fn describe_targets(tags: &[String]) -> String {
    if tags.is_empty() { "applies to every instance".to_owned() } else { format!("targets tags {}", quoted(tags)) }
}

fn quoted(items: &[String]) -> String {
    items.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
}

fn allow(route: Route, rule: Option<String>, reasons: Vec<Reason>) -> EgressDecision {
    EgressDecision { route, effect: Effect::Allow, rule, reasons }
}

fn deny(route: Route, rule: Option<String>, reasons: Vec<Reason>) -> EgressDecision {
    EgressDecision { route, effect: Effect::Deny, rule, reasons }
}
