//! Lowering the egress parts of `moat.yaml`: `networks[].firewall` and the top-level `egress:`
//! (which ranges are private, and the outside hosts of the simulated network).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde_saphyr::Spanned;

use crate::config::diag::{ConfigError, FileCtx};
use crate::config::raw::{RawEgress, RawFirewallRule, RawHost};
use crate::model::{EgressConfig, ExternalHost, FirewallAction, FirewallRule, Network, PortRange};
use crate::source::SourceRef;

/// GCP's priority for a rule that does not give one.
const DEFAULT_PRIORITY: u32 = 1000;

/// One network's firewall rules. Rules with an error are left out (the load fails anyway).
pub(super) fn lower_firewall(
    ctx: &FileCtx,
    network: &str,
    raw: Vec<Spanned<RawFirewallRule>>,
    errs: &mut Vec<ConfigError>,
) -> Vec<FirewallRule> {
    raw.into_iter().filter_map(|r| lower_rule(ctx, network, r, errs)).collect()
}

fn lower_rule(
    ctx: &FileCtx,
    network: &str,
    raw: Spanned<RawFirewallRule>,
    errs: &mut Vec<ConfigError>,
) -> Option<FirewallRule> {
    let source = ctx.at(&raw.referenced);
    let r = raw.value;
    let name = r.name.value;
    let before = errs.len();
    match r.direction.as_ref().map(|d| d.value.to_ascii_lowercase()) {
        Some(d) if d == "egress" => {}
        Some(d) if d == "ingress" => errs.push(ctx.error(
            &ctx.at(&r.direction.as_ref().map_or(raw.referenced, |d| d.referenced)),
            format!(
                "firewall rule `{name}` of network `{network}` is an ingress rule: moat models only egress firewall rules (ingress to Cloud Run is decided by the service's ingress setting)"
            ),
            "remove the rule, or write `direction: egress` if it governs traffic leaving the network",
        )),
        Some(d) => errs.push(ctx.error(
            &ctx.at(&r.direction.as_ref().map_or(raw.referenced, |d| d.referenced)),
            format!("firewall rule `{name}` has direction `{d}`"),
            "write `direction: egress` (moat models only egress firewall rules)",
        )),
        None => errs.push(ctx.error(
            &source,
            format!("firewall rule `{name}` has no `direction`"),
            "write `direction: egress`: GCP's default is ingress, and moat models only egress firewall rules",
        )),
    }
    let priority = match r.priority {
        None => DEFAULT_PRIORITY,
        Some(p) => match u32::try_from(p.value).ok().filter(|p| *p <= 65535) {
            Some(p) => p,
            None => {
                errs.push(ctx.error(
                    &ctx.at(&p.referenced),
                    format!("firewall rule `{name}` has priority `{}`", p.value),
                    "use a priority from 0 (evaluated first) to 65535 (last); GCP's default is 1000",
                ));
                DEFAULT_PRIORITY
            }
        },
    };
    let action = match r.action.value.to_ascii_lowercase().as_str() {
        "allow" => FirewallAction::Allow,
        "deny" => FirewallAction::Deny,
        other => {
            errs.push(ctx.error(
                &ctx.at(&r.action.referenced),
                format!("firewall rule `{name}` has action `{other}`"),
                "use `allow` or `deny`",
            ));
            FirewallAction::Deny
        }
    };
    let mut destination_ranges = Vec::new();
    for range in r.destination_ranges {
        match parse_range(&range.value) {
            Some(net) => destination_ranges.push(net),
            None => errs.push(ctx.error(
                &ctx.at(&range.referenced),
                format!("`{}` in firewall rule `{name}` is not a CIDR range", range.value),
                "write an address and prefix length, e.g. `10.0.0.0/8`, or a single address",
            )),
        }
    }
    let mut target_tags = Vec::new();
    for tag in r.target_tags {
        if is_network_tag(&tag.value) {
            target_tags.push(tag.value);
        } else {
            errs.push(ctx.error(
                &ctx.at(&tag.referenced),
                format!("`{}` in firewall rule `{name}` is not a network tag", tag.value),
                "network tags are 1 to 63 lower-case letters, digits and dashes, starting with a letter",
            ));
        }
    }
    let mut ports = Vec::new();
    for port in r.ports {
        match parse_ports(&port.value.0) {
            Some(p) => ports.push(p),
            None => errs.push(ctx.error(
                &ctx.at(&port.referenced),
                format!("`{}` in firewall rule `{name}` is not a port or a port range", port.value.0),
                "write a port (`443`) or an inclusive range (`8000-9000`), from 0 to 65535",
            )),
        }
    }
    (errs.len() == before).then_some(FirewallRule {
        name,
        priority,
        action,
        destination_ranges,
        target_tags,
        ports,
        source: ctx.at(&r.name.referenced),
    })
}

/// GCP firewall rule names are unique in a project, across its networks.
pub(super) fn check_rule_names(ctx: &FileCtx, networks: &[Network], errs: &mut Vec<ConfigError>) {
    let mut seen: BTreeMap<&str, (&str, &SourceRef)> = BTreeMap::new();
    for net in networks {
        for rule in &net.firewall {
            if let Some((first_net, first)) = seen.get(rule.name.as_str()) {
                errs.push(ctx.error(
                    &rule.source,
                    format!(
                        "firewall rule `{}` is declared twice (first in network `{first_net}`, {first})",
                        rule.name
                    ),
                    "firewall rule names are unique in a project: rename one of the rules",
                ));
            } else {
                seen.insert(&rule.name, (&net.name, &rule.source));
            }
        }
    }
}

/// `10.0.0.0/8`, or a single address (as GCP accepts), with host bits cleared.
fn parse_range(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().map(|n| n.trunc()).or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `443` or `8000-9000` (first not above last).
fn parse_ports(s: &str) -> Option<PortRange> {
    let s = s.trim();
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let p = s.parse::<u16>().ok()?;
            (p, p)
        }
    };
    (first <= last).then_some(PortRange { first, last })
}

/// GCP network tag syntax: `[a-z]([-a-z0-9]{0,62})`.
fn is_network_tag(s: &str) -> bool {
    s.len() <= 63
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The top-level `egress:` block; absent means RFC 1918 only and no outside hosts.
pub(super) fn lower_egress(
    ctx: &FileCtx,
    raw: Option<Spanned<RawEgress>>,
    errs: &mut Vec<ConfigError>,
) -> EgressConfig {
    let Some(raw) = raw else { return EgressConfig::default() };
    let raw = raw.value;
    let mut hosts: Vec<ExternalHost> = Vec::new();
    for h in raw.hosts {
        let Some(host) = lower_host(ctx, h, errs) else { continue };
        if let Some(first) = hosts.iter().find(|o| o.name == host.name) {
            errs.push(ctx.error(
                &host.source,
                format!("egress host `{}` is declared twice (first at {})", host.name, first.source),
                "keep one entry per host name",
            ));
            continue;
        }
        hosts.push(host);
    }
    EgressConfig { rfc6598_is_private: raw.rfc6598_is_private, hosts }
}

fn lower_host(ctx: &FileCtx, raw: Spanned<RawHost>, errs: &mut Vec<ConfigError>) -> Option<ExternalHost> {
    let h = raw.value;
    let before = errs.len();
    let name = h.name.value.trim().trim_end_matches('.').to_ascii_lowercase();
    if !is_host_name(&name) {
        errs.push(ctx.error(
            &ctx.at(&h.name.referenced),
            format!("`{}` is not a host name", h.name.value),
            "write a DNS name such as `api.example.com` (letters, digits, dashes and dots)",
        ));
    }
    let address = match h.address.value.trim().parse::<IpAddr>() {
        Ok(a) => {
            let c = a.to_canonical();
            if c.is_loopback() || c == IpAddr::from(crate::egress::METADATA_ADDRESS) {
                errs.push(ctx.error(
                    &ctx.at(&h.address.referenced),
                    format!(
                        "egress host `{name}` has address `{a}`, which is the instance itself or its metadata server on the modelled network"
                    ),
                    "give the address the host has on the modelled network (public, or private in a VPC network) and put the local stand-in under `local: 127.0.0.1:PORT`",
                ));
            }
            Some(a)
        }
        Err(_) => {
            errs.push(ctx.error(
                &ctx.at(&h.address.referenced),
                format!("address `{}` of egress host `{name}` is not an IP address", h.address.value),
                "write the address the host has on the modelled network, e.g. `203.0.113.10` or `10.20.0.5`",
            ));
            None
        }
    };
    let local = h.local.and_then(|l| match l.value.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Some(a),
        _ => {
            errs.push(ctx.error(
                &ctx.at(&l.referenced),
                format!("`local` of egress host `{name}` `{}` is not IP:PORT", l.value),
                "write where the egress proxy connects instead, e.g. `127.0.0.1:9443` (a non-zero port)",
            ));
            None
        }
    });
    let address = address?;
    (errs.len() == before).then(|| ExternalHost { name, address, local, source: ctx.at(&h.name.referenced) })
}

/// Dot-separated labels of letters, digits, dashes and underscores, none empty.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(s: &str) -> Option<PortRange> {
        parse_ports(s)
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(port("443"), Some(PortRange { first: 443, last: 443 }));
        assert_eq!(port("8000-9000"), Some(PortRange { first: 8000, last: 9000 }));
        assert_eq!(port("0-65535"), Some(PortRange { first: 0, last: 65535 }));
        for bad in ["", "x", "9000-8000", "65536", "-1", "1-", "80,443"] {
            assert_eq!(port(bad), None, "{bad}");
        }
        assert_eq!(parse_range("10.1.2.3/8"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_range("203.0.113.9"), "203.0.113.9/32".parse().ok());
        assert_eq!(parse_range("fd20::/20"), "fd20::/20".parse().ok());
        assert_eq!(parse_range("10.0.0.0/33"), None);
        assert!(is_network_tag("web-1") && !is_network_tag("Web") && !is_network_tag("1web") && !is_network_tag(""));
        assert!(is_host_name("api.example.com") && !is_host_name("a..b") && !is_host_name("a b"));
    }
}
