//! VPC egress firewall rules: which rule decides a connection that entered a VPC network.
//!
//! GCP's evaluation: of the rules that apply to the sending instance (no target tags, or a tag
//! the instance carries) and match the destination and port, the lowest priority number wins;
//! at equal priority a deny wins over an allow. No match leaves the implied allow-egress rule
//! (below priority 65535). moat models TCP only, so a rule's ports are TCP ports.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::model::{FirewallAction, FirewallRule, Project, VpcAccess, VpcAttachment};

/// A rule without destination ranges: `0.0.0.0/0`, GCP's default for an egress rule (IPv4
/// only; an IPv6 egress rule names `::/0` itself).
const ANY_V4: IpNet = IpNet::V4(Ipv4Net::new_assert(std::net::Ipv4Addr::UNSPECIFIED, 0));

/// The network tags the caller's traffic carries into the VPC network.
///
/// Direct VPC egress: the tags of the revision's network interface. A Serverless VPC Access
/// connector: the traffic leaves from the connector's own instances, which carry no tags of the
/// service but the connector's implicit ones, `vpc-connector` (every connector) and
/// `vpc-connector-REGION-NAME` (this one); so rules targeting other tags never apply to
/// connector traffic, and rules targeting those two do. The connector's region is taken to be
/// the project's.
pub fn caller_tags(project: &Project, vpc: &VpcAccess) -> Vec<String> {
    match &vpc.attachment {
        VpcAttachment::Direct { tags, .. } => tags.clone(),
        VpcAttachment::Connector { name } => {
            vec!["vpc-connector".to_owned(), format!("vpc-connector-{}-{name}", project.region)]
        }
    }
}

/// Whether `rule` applies to traffic carrying `tags` towards `addr:port`.
pub fn rule_matches(rule: &FirewallRule, tags: &[String], addr: IpAddr, port: u16) -> bool {
    let targeted = rule.target_tags.is_empty() || rule.target_tags.iter().any(|t| tags.contains(t));
    let addr = addr.to_canonical();
    let to = if rule.destination_ranges.is_empty() {
        ANY_V4.contains(&addr)
    } else {
        rule.destination_ranges.iter().any(|r| r.contains(&addr))
    };
    let on_port = rule.ports.is_empty() || rule.ports.iter().any(|p| p.contains(port));
    targeted && to && on_port
}

/// The rule that decides, or `None` for the implied allow-egress rule. Among equals (same
/// priority and action) the first written is named.
pub fn deciding_rule<'a>(
    rules: &'a [FirewallRule],
    tags: &[String],
    addr: IpAddr,
    port: u16,
) -> Option<&'a FirewallRule> {
    let rank = |r: &FirewallRule| (r.priority, r.action == FirewallAction::Allow);
    rules.iter().filter(|r| rule_matches(r, tags, addr, port)).fold(None, |best, r| match best {
        Some(b) if rank(b) <= rank(r) => Some(b),
        _ => Some(r),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PortRange;
    use crate::source::SourceRef;

    fn rule(
        name: &str,
        priority: u32,
        action: FirewallAction,
        ranges: &[&str],
        tags: &[&str],
        ports: &[(u16, u16)],
    ) -> FirewallRule {
        FirewallRule {
            name: name.to_owned(),
            priority,
            action,
            destination_ranges: ranges.iter().filter_map(|r| r.parse().ok()).collect(),
            target_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ports: ports.iter().map(|&(first, last)| PortRange { first, last }).collect(),
            source: SourceRef::new(&std::sync::Arc::from("moat.yaml"), 1, 1),
        }
    }

    fn decide<'a>(rules: &'a [FirewallRule], tags: &[&str], addr: &str, port: u16) -> Option<&'a str> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        let addr = addr.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        deciding_rule(rules, &tags, addr, port).map(|r| r.name.as_str())
    }

    use FirewallAction::{Allow, Deny};

    #[test]
    fn lowest_priority_number_wins_and_deny_wins_ties() {
        let rules = [
            rule("allow-late", 2000, Allow, &[], &[], &[]),
            rule("deny-all", 1000, Deny, &[], &[], &[]),
            rule("allow-db", 900, Allow, &["10.0.0.0/8"], &[], &[(5432, 5432)]),
            rule("allow-tie", 1000, Allow, &[], &[], &[]),
        ];
        assert_eq!(decide(&rules, &[], "10.1.2.3", 5432), Some("allow-db"));
        assert_eq!(decide(&rules, &[], "10.1.2.3", 5433), Some("deny-all"));
        assert_eq!(decide(&rules, &[], "8.8.8.8", 443), Some("deny-all"));
        // Equal priority: the deny wins whichever is written first.
        let tie = [rule("a", 5, Allow, &[], &[], &[]), rule("d", 5, Deny, &[], &[], &[])];
        assert_eq!(decide(&tie, &[], "8.8.8.8", 1), Some("d"));
        let tie = [rule("d", 5, Deny, &[], &[], &[]), rule("a", 5, Allow, &[], &[], &[])];
        assert_eq!(decide(&tie, &[], "8.8.8.8", 1), Some("d"));
    }

    #[test]
    fn tags_ports_and_ranges_narrow_a_rule() {
        let rules = [rule("deny-web", 10, Deny, &["203.0.113.0/24"], &["web"], &[(80, 80), (8000, 9000)])];
        assert_eq!(decide(&rules, &["web"], "203.0.113.9", 8500), Some("deny-web"));
        assert_eq!(decide(&rules, &["db", "web"], "203.0.113.9", 80), Some("deny-web"));
        assert_eq!(decide(&rules, &["db"], "203.0.113.9", 80), None);
        assert_eq!(decide(&rules, &[], "203.0.113.9", 80), None);
        assert_eq!(decide(&rules, &["web"], "203.0.114.9", 80), None);
        assert_eq!(decide(&rules, &["web"], "203.0.113.9", 443), None);
        assert_eq!(decide(&rules, &["web"], "203.0.113.9", 9001), None);
        // A mapped IPv6 address is its IPv4 address.
        assert_eq!(decide(&rules, &["web"], "::ffff:203.0.113.9", 80), Some("deny-web"));
    }

    #[test]
    fn no_destination_ranges_means_every_ipv4_address() {
        let rules = [rule("deny", 10, Deny, &[], &[], &[])];
        assert_eq!(decide(&rules, &[], "1.2.3.4", 1), Some("deny"));
        assert_eq!(decide(&rules, &[], "2001:db8::1", 1), None);
        let v6 = [rule("deny6", 10, Deny, &["::/0"], &[], &[])];
        assert_eq!(decide(&v6, &[], "2001:db8::1", 1), Some("deny6"));
    }
}
