//! Networks, subnets, egress firewall rules, Cloud NAT and Serverless VPC Access connectors.

use ipnet::IpNet;

use super::Lower;
use super::plan::{Res, last_segment};
use super::val::{blocks, bool_, str_, strings};
use crate::model::{
    Connector, FirewallAction, FirewallRule, Network, NetworkRef, PortRange, SharedVpc, Subnet, UnknownEffect,
};
use crate::source::SourceRef;

const NETWORK: &[&str] = &["google_compute_network"];
const SUBNET: &[&str] = &["google_compute_subnetwork"];

pub(crate) fn lower(l: &mut Lower<'_, '_>) {
    let plan = l.plan;
    for r in l.mine(NETWORK) {
        let Some(name) = r.str("name") else { continue };
        if l.project.network(name).is_none() {
            let source = l.at(r, "");
            l.project.networks.push(Network {
                name: name.to_owned(),
                subnets: Vec::new(),
                nat: false,
                firewall: Vec::new(),
                source,
            });
        }
    }
    for r in l.mine(SUBNET) {
        let Some(net) = network_name(l, r, "network") else {
            l.unknown(r, "network", None, UnknownEffect::Egress);
            continue;
        };
        let (Some(name), Some(range)) = (r.str("name"), r.str("ip_cidr_range")) else {
            l.unknown(r, "ip_cidr_range", None, UnknownEffect::Egress);
            continue;
        };
        let Ok(range) = range.parse::<IpNet>() else {
            l.error(
                r,
                "ip_cidr_range",
                format!("`{range}` is not a CIDR range"),
                "write the range as an address and prefix length, e.g. `10.0.0.0/24`",
            );
            continue;
        };
        let subnet = Subnet {
            name: name.to_owned(),
            region: r.str("region").map_or_else(|| l.project.region.clone(), str::to_owned),
            range,
            private_google_access: bool_(r.values, "private_ip_google_access").unwrap_or(false),
            source: l.at(r, ""),
        };
        let source = l.at(r, "network");
        if let Some(n) = ensure_network(l, &net, source) {
            n.subnets.push(subnet);
        }
    }
    for r in l.mine(&["google_compute_firewall"]) {
        if r.str("direction") != Some("EGRESS") || bool_(r.values, "disabled") == Some(true) {
            continue;
        }
        let Some(net) = network_name(l, r, "network") else {
            l.unknown(r, "network", None, UnknownEffect::Egress);
            continue;
        };
        if let Some(rule) = firewall_rule(l, r) {
            let source = l.at(r, "network");
            if let Some(n) = ensure_network(l, &net, source) {
                n.firewall.push(rule);
            }
        }
    }
    for r in l.mine(&["google_compute_router_nat"]) {
        let router = plan.link(r, &["router"], r.str("router"), &["google_compute_router"]);
        match router.and_then(|router| network_name(l, router, "network")) {
            Some(net) => {
                let source = l.at(r, "");
                if let Some(n) = ensure_network(l, &net, source) {
                    n.nat = true;
                }
            }
            None => l.unknown(r, "router", None, UnknownEffect::Egress),
        }
    }
    for r in l.mine(&["google_vpc_access_connector"]) {
        let Some(name) = r.str("name") else { continue };
        let net = network_name(l, r, "network").or_else(|| {
            // A connector on a subnet names the subnet only; its network is the subnet's.
            let subnet = blocks(r.values, "subnet").first().and_then(|s| str_(s, "name"))?;
            let s = plan.of_kind(SUBNET).find(|s| s.str("name") == Some(subnet))?;
            network_name(l, s, "network")
        });
        let Some(net) = net else {
            l.unknown(r, "network", None, UnknownEffect::Egress);
            continue;
        };
        let source = l.at(r, "");
        let network = network_ref(l, &net, source.clone());
        l.project.connectors.push(Connector { name: name.to_owned(), network, source });
    }
}

/// The network `res.attr` names: by reference to a network in the plan, else the last segment
/// of its value (`projects/P/global/networks/N`, a self link or a name). Shared VPC networks
/// keep their host project as `HOST/NAME`.
pub(crate) fn network_name(l: &Lower<'_, '_>, res: &Res<'_>, attr: &str) -> Option<String> {
    let value = res.str(attr);
    if let Some(n) = l.plan.follow(res, &[attr], NETWORK) {
        return n.str("name").map(str::to_owned);
    }
    let value = value?;
    let host = value.split("projects/").nth(1).and_then(|rest| rest.split('/').next());
    match host {
        Some(h) if !l.project.is_self(h) => Some(format!("{h}/{}", last_segment(value))),
        _ => Some(last_segment(value).to_owned()),
    }
}

/// The network named `name` (`NAME` or `HOST/NAME`), added when the plan uses it without
/// declaring it: it exists outside the plan.
pub(crate) fn network_ref(l: &mut Lower<'_, '_>, name: &str, source: SourceRef) -> NetworkRef {
    if let Some((host, net)) = name.split_once('/') {
        let r = NetworkRef { project: host.to_owned(), network: net.to_owned() };
        if !l.project.is_shared_vpc(&r) {
            l.project.shared_vpc.push(SharedVpc { network: r.clone(), source });
        }
        return r;
    }
    ensure_network(l, name, source);
    NetworkRef { project: l.project.id.clone(), network: name.to_owned() }
}

/// The project's network `name`, added first when missing (always `Some`).
fn ensure_network<'l>(l: &'l mut Lower<'_, '_>, name: &str, source: SourceRef) -> Option<&'l mut Network> {
    let name = name.rsplit('/').next().unwrap_or(name);
    if l.project.network(name).is_none() {
        l.project.networks.push(Network {
            name: name.to_owned(),
            subnets: Vec::new(),
            nat: false,
            firewall: Vec::new(),
            source,
        });
    }
    l.project.networks.iter_mut().find(|n| n.name == name)
}

fn firewall_rule(l: &mut Lower<'_, '_>, r: &Res<'_>) -> Option<FirewallRule> {
    let (action, rules) = match (blocks(r.values, "allow"), blocks(r.values, "deny")) {
        (a, []) if !a.is_empty() => (FirewallAction::Allow, a),
        ([], d) if !d.is_empty() => (FirewallAction::Deny, d),
        _ => return None,
    };
    // Only TCP is modelled: a rule for other protocols only does not touch HTTP(S) egress.
    let mut ports = Vec::new();
    let mut tcp = false;
    for b in rules {
        let proto = str_(b, "protocol").unwrap_or("all");
        if !matches!(proto, "all" | "tcp" | "6") {
            continue;
        }
        tcp = true;
        let list = strings(b, "ports");
        if list.is_empty() {
            ports.clear();
            break;
        }
        for p in list {
            let parsed = match p.split_once('-') {
                Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
                None => p.parse().ok().map(|x| (x, x)),
            };
            match parsed {
                Some((first, last)) => ports.push(PortRange { first, last }),
                None => l.error(
                    r,
                    "ports",
                    format!("`{p}` is not a port or port range"),
                    "write ports as `443` or `8000-9000`",
                ),
            }
        }
    }
    if !tcp {
        return None;
    }
    let mut ranges = Vec::new();
    for d in strings(r.values, "destination_ranges") {
        match d.parse::<IpNet>() {
            Ok(n) => ranges.push(n),
            Err(_) => {
                l.error(r, "destination_ranges", format!("`{d}` is not a CIDR range"), "write ranges like `10.0.0.0/8`")
            }
        }
    }
    let priority = r
        .values
        .get("priority")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(1000);
    Some(FirewallRule {
        name: r.str("name").unwrap_or(r.name).to_owned(),
        priority,
        action,
        destination_ranges: ranges,
        target_tags: strings(r.values, "target_tags").into_iter().map(str::to_owned).collect(),
        ports,
        source: l.at(r, ""),
    })
}
