//! `decide` over loaded projects: every egress mode against every address class, firewall
//! evaluation, Cloud NAT, Private Google Access, the RFC 6598 switch, IPv4-mapped addresses,
//! and agreement with `origin_of_call`.

#![expect(clippy::panic, reason = "tests fail on a project that does not load")]

use std::net::IpAddr;

use super::*;
use crate::decision::Effect::{Allow, Deny};
use crate::source::SourceFile;

const HEAD: &str = "project:\n  id: p\n  number: \"1234\"\n  region: us-central1\n";

/// Network `vpc` (Cloud NAT, two subnets, firewall rules), network `closed` (no NAT, no rules),
/// a connector in `vpc`, a Shared VPC network and an outside host.
const MOAT: &str = r#"networks:
  - name: vpc
    nat: true
    subnets:
      - {name: run, region: us-central1, range: 10.0.0.0/24, private_google_access: true}
      - {name: nopga, region: us-central1, range: 10.0.1.0/24}
    firewall:
      - {name: deny-db, direction: egress, priority: 900, action: deny, destination_ranges: [10.9.0.0/16], ports: ["5432"]}
      - {name: allow-db-web, direction: egress, priority: 800, action: allow, destination_ranges: [10.9.0.0/16], target_tags: [web], ports: ["5432"]}
      - {name: deny-mail, direction: egress, priority: 1000, action: deny, ports: ["25", "465-587"]}
      - {name: allow-mail, direction: egress, priority: 1000, action: allow, ports: ["25"]}
      - {name: deny-connectors, direction: egress, priority: 100, action: deny, destination_ranges: [198.51.100.0/24], target_tags: [vpc-connector]}
  - name: closed
    subnets:
      - {name: closed-run, region: us-central1, range: 10.1.0.0/24, private_google_access: true}
shared_vpc:
  - {host_project: host, network: shared}
connectors:
  - {name: conn, network: vpc}
egress:
  hosts:
    - {name: API.Example.com, address: 203.0.113.10, local: "127.0.0.1:9443"}
"#;

fn load(moat: &str, services: &[(&str, &str)]) -> Project {
    let mut files = vec![SourceFile { path: "moat.yaml".into(), text: format!("{HEAD}{moat}") }];
    for (name, vpc) in services {
        let text = format!(
            r#"{{"name": "{name}", "template": {{"serviceAccount": "{name}@p.iam.gserviceaccount.com"{vpc}}}}}"#
        );
        files.push(SourceFile { path: format!("services/{name}.json"), text });
    }
    match crate::load(&files) {
        Ok(p) => p,
        Err(e) => panic!("{:?}", e.errors.iter().map(ToString::to_string).collect::<Vec<_>>()),
    }
}

fn direct(network: &str, subnet: &str, tags: &str, egress: &str) -> String {
    format!(
        r#", "vpcAccess": {{"networkInterfaces": [{{"network": "{network}", "subnetwork": "{subnet}", "tags": [{tags}]}}]{egress}}}"#
    )
}

const ALL: &str = r#", "egress": "ALL_TRAFFIC""#;
const PRIVATE: &str = r#", "egress": "PRIVATE_RANGES_ONLY""#;

/// The services every test uses: one per egress shape.
fn project() -> Project {
    load(
        MOAT,
        &[
            ("none", ""),
            ("pro", &direct("vpc", "run", "", PRIVATE)),
            ("unset", &direct("vpc", "run", "", "")),
            ("all", &direct("vpc", "run", "", ALL)),
            ("web", &direct("vpc", "run", r#""web""#, ALL)),
            ("nopga", &direct("vpc", "nopga", "", ALL)),
            ("closed", &direct("closed", "closed-run", "", ALL)),
            ("conn", r#", "vpcAccess": {"connector": "conn", "egress": "ALL_TRAFFIC"}"#),
            ("shared", &direct("host/shared", "", "", ALL)),
        ],
    )
}

fn ask(p: &Project, service: &str, addr: &str, port: u16) -> EgressDecision {
    let Some(caller) = p.service(service) else { panic!("no service `{service}`") };
    let Ok(addr) = addr.parse::<IpAddr>() else { panic!("`{addr}` is not an address") };
    decide(p, caller, addr, port)
}

fn vpc(network: &str) -> Route {
    Route::Vpc(NetworkRef { project: "p".to_owned(), network: network.to_owned() })
}

fn codes_of(d: &EgressDecision) -> Vec<&'static str> {
    d.reasons.iter().map(|r| r.code).collect()
}

#[test]
fn every_mode_against_every_class() {
    let p = project();
    let metadata = "169.254.169.254";
    let loopback = "127.0.0.1";
    let private = "10.5.0.1";
    let google = "199.36.153.8";
    let public = "8.8.8.8";
    // (service, address, route, effect, last reason)
    let cases: &[(&str, &str, Route, Effect, &str)] = &[
        ("none", metadata, Route::Metadata, Allow, codes::METADATA),
        ("none", loopback, Route::Direct, Deny, codes::LOOPBACK),
        ("none", private, Route::Direct, Deny, codes::PRIVATE_UNREACHABLE),
        ("none", google, Route::Direct, Deny, codes::PRIVATE_UNREACHABLE),
        ("none", public, Route::Direct, Allow, codes::DIRECT),
        ("pro", metadata, Route::Metadata, Allow, codes::METADATA),
        ("pro", loopback, Route::Direct, Deny, codes::LOOPBACK),
        ("pro", private, vpc("vpc"), Allow, codes::VPC_DELIVERED),
        ("pro", google, vpc("vpc"), Allow, codes::PRIVATE_GOOGLE_ACCESS),
        ("pro", public, Route::Direct, Allow, codes::DIRECT),
        // No egress value with VPC access means private-ranges-only.
        ("unset", private, vpc("vpc"), Allow, codes::VPC_DELIVERED),
        ("unset", public, Route::Direct, Allow, codes::DIRECT),
        ("all", metadata, Route::Metadata, Allow, codes::METADATA),
        ("all", loopback, Route::Direct, Deny, codes::LOOPBACK),
        ("all", private, vpc("vpc"), Allow, codes::VPC_DELIVERED),
        ("all", google, vpc("vpc"), Allow, codes::PRIVATE_GOOGLE_ACCESS),
        ("all", public, vpc("vpc"), Allow, codes::NAT),
    ];
    for (service, addr, route, effect, last) in cases {
        let d = ask(&p, service, addr, 443);
        assert_eq!((&d.route, d.effect), (route, *effect), "{service} -> {addr}: {:#?}", d.reasons);
        assert_eq!(d.reasons.last().map(|r| r.code), Some(*last), "{service} -> {addr}: {:#?}", d.reasons);
        assert_eq!(d.reasons.first().map(|r| r.code), Some(codes::ADDRESS), "{service} -> {addr}");
        assert_eq!(d.rule, None, "{service} -> {addr}");
        assert_eq!(d.is_allowed(), *effect == Allow);
    }
}

#[test]
fn reasons_name_the_caller_the_address_and_the_config() {
    let p = project();
    let d = ask(&p, "none", "10.5.0.1", 443);
    assert_eq!(codes_of(&d), [codes::ADDRESS, codes::NO_VPC_ACCESS, codes::PRIVATE_UNREACHABLE]);
    let last = d.reasons.last().map(|r| r.message.as_str()).unwrap_or_default();
    assert!(last.contains("`none`") && last.contains("`10.5.0.1:443`"), "{last}");
    assert!(last.contains("no VPC access, private ranges are unreachable"), "{last}");
    assert_eq!(d.reasons.last().and_then(|r| r.source.as_ref()).map(|s| s.file.as_ref()), Some("services/none.json"));

    let d = ask(&p, "pro", "10.5.0.1", 443);
    assert_eq!(
        codes_of(&d),
        [codes::ADDRESS, codes::PRIVATE_RANGES_VIA_VPC, codes::FIREWALL_IMPLIED_ALLOW, codes::VPC_DELIVERED]
    );
    let implied = d.reasons.get(2).map(|r| r.message.as_str()).unwrap_or_default();
    assert!(implied.contains("network `p/vpc`") && implied.contains("priority 65535"), "{implied}");

    let d = ask(&p, "none", "127.0.0.1", 8080);
    let last = d.reasons.last().map(|r| r.message.as_str()).unwrap_or_default();
    assert!(last.contains("directly, not through the egress proxy"), "{last}");

    // An address of a declared outside host names the host and points at its entry.
    let d = ask(&p, "none", "203.0.113.10", 443);
    let first = d.reasons.first();
    assert!(first.is_some_and(|r| r.message.contains("egress host `api.example.com`")), "{first:?}");
    assert_eq!(first.and_then(|r| r.source.as_ref()).map(|s| (s.file.as_ref(), s.line)), Some(("moat.yaml", 26)));
}

#[test]
fn firewall_priority_deny_wins_tags_and_ports() {
    let p = project();
    /// (service, address, port, effect, deciding rule, last reason)
    type Case<'a> = (&'a str, &'a str, u16, Effect, Option<&'a str>, &'a str);
    let cases: &[Case<'_>] = &[
        // 900 deny beats the implied allow.
        ("all", "10.9.1.1", 5432, Deny, Some("deny-db"), codes::FIREWALL_DENY),
        // Tagged `web`: the 800 allow comes first.
        ("web", "10.9.1.1", 5432, Allow, Some("allow-db-web"), codes::VPC_DELIVERED),
        // Other ports and ranges are outside both rules.
        ("all", "10.9.1.1", 5433, Allow, None, codes::VPC_DELIVERED),
        ("all", "10.8.1.1", 5432, Allow, None, codes::VPC_DELIVERED),
        // Equal priority 1000: the deny wins over the allow written after it.
        ("all", "8.8.8.8", 25, Deny, Some("deny-mail"), codes::FIREWALL_DENY),
        ("all", "8.8.8.8", 500, Deny, Some("deny-mail"), codes::FIREWALL_DENY),
        ("all", "8.8.8.8", 588, Allow, None, codes::NAT),
        // private-ranges-only sends 10.9/16 through the VPC too, so the rule applies.
        ("pro", "10.9.1.1", 5432, Deny, Some("deny-db"), codes::FIREWALL_DENY),
        // ... but public destinations go direct, where VPC rules do not apply.
        ("pro", "8.8.8.8", 25, Allow, None, codes::DIRECT),
        ("none", "8.8.8.8", 25, Allow, None, codes::DIRECT),
    ];
    for (service, addr, port, effect, rule, last) in cases {
        let d = ask(&p, service, addr, *port);
        let at = format!("{service} -> {addr}:{port}: {:#?}", d.reasons);
        assert_eq!(d.effect, *effect, "{at}");
        assert_eq!(d.rule.as_deref(), *rule, "{at}");
        assert_eq!(d.reasons.last().map(|r| r.code), Some(*last), "{at}");
    }
    let d = ask(&p, "all", "10.9.1.1", 5432);
    let deny = d.reasons.iter().find(|r| r.code == codes::FIREWALL_DENY);
    let msg = deny.map(|r| r.message.as_str()).unwrap_or_default();
    assert!(msg.contains("`deny-db`") && msg.contains("priority 900") && msg.contains("`all`"), "{msg}");
    assert!(msg.contains("`10.9.1.1:5432`") && msg.contains("network `p/vpc`"), "{msg}");
    // The rule's own line in moat.yaml.
    assert_eq!(deny.and_then(|r| r.source.as_ref()).map(|s| s.line), Some(12));
    let allow = ask(&p, "web", "10.9.1.1", 5432);
    assert!(allow.reasons.iter().any(|r| r.code == codes::FIREWALL_ALLOW && r.message.contains("tags `web`")));
}

#[test]
fn connector_traffic_carries_the_connector_tags_only() {
    let p = project();
    // A rule targeting every connector applies to connector traffic...
    let d = ask(&p, "conn", "198.51.100.7", 443);
    assert_eq!((d.effect, d.rule.as_deref()), (Deny, Some("deny-connectors")), "{:#?}", d.reasons);
    // ... not to Direct VPC egress.
    assert!(ask(&p, "all", "198.51.100.7", 443).is_allowed());
    // A rule targeting a tag the service's own traffic might carry never applies to a
    // connector; untagged rules do.
    assert_eq!(ask(&p, "conn", "10.9.1.1", 5432).rule.as_deref(), Some("deny-db"));
    assert_eq!(
        caller_tags(&p, p.service("conn").and_then(|s| s.vpc.as_ref()).unwrap_or_else(|| panic!("no vpc"))),
        ["vpc-connector", "vpc-connector-us-central1-conn"]
    );
    // The connector's subnet is not described: Private Google Access is assumed.
    let d = ask(&p, "conn", "199.36.153.4", 443);
    assert_eq!(d.reasons.last().map(|r| r.code), Some(codes::PRIVATE_GOOGLE_ACCESS_ASSUMED));
}

#[test]
fn all_traffic_to_public_addresses_needs_cloud_nat() {
    let p = project();
    let d = ask(&p, "closed", "8.8.8.8", 443);
    assert_eq!((d.route.clone(), d.effect), (vpc("closed"), Deny));
    let last = d.reasons.last();
    assert_eq!(last.map(|r| r.code), Some(codes::NO_NAT));
    assert!(last.is_some_and(|r| r.message.contains("no Cloud NAT") && r.message.contains("`8.8.8.8:443`")));
    // Private destinations need no NAT.
    assert!(ask(&p, "closed", "10.1.0.9", 443).is_allowed());
    assert!(ask(&p, "all", "8.8.8.8", 443).is_allowed());
}

#[test]
fn shared_vpc_networks_are_not_described_so_nat_is_assumed() {
    let p = project();
    let d = ask(&p, "shared", "8.8.8.8", 443);
    let route = Route::Vpc(NetworkRef { project: "host".to_owned(), network: "shared".to_owned() });
    assert_eq!((d.route.clone(), d.effect), (route, Allow));
    assert_eq!(codes_of(&d), [codes::ADDRESS, codes::ALL_TRAFFIC, codes::FIREWALL_IMPLIED_ALLOW, codes::NAT_ASSUMED]);
    // Both point at the `shared_vpc` entry of moat.yaml.
    for r in d.reasons.iter().skip(2) {
        assert_eq!(r.source.as_ref().map(|s| (s.file.as_ref(), s.line)), Some(("moat.yaml", 21)), "{r:?}");
    }
}

#[test]
fn private_google_access_addresses_need_it_on_the_subnet() {
    let p = project();
    let d = ask(&p, "nopga", "199.36.153.9", 443);
    assert_eq!((d.effect, d.reasons.last().map(|r| r.code)), (Deny, Some(codes::NO_PRIVATE_GOOGLE_ACCESS)));
    assert!(ask(&p, "all", "199.36.153.9", 443).is_allowed());
    // Without VPC access, PGA addresses are as unreachable as private ones.
    assert_eq!(ask(&p, "none", "199.36.153.5", 443).reasons.last().map(|r| r.code), Some(codes::PRIVATE_UNREACHABLE));
}

#[test]
fn rfc6598_is_public_unless_configured_private() {
    let services = [("pro", direct("vpc", "run", "", PRIVATE)), ("none", String::new())];
    let services: Vec<(&str, &str)> = services.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let off = load(MOAT, &services);
    let on = load(&MOAT.replace("egress:\n", "egress:\n  rfc6598_is_private: true\n"), &services);
    assert!(!off.egress.rfc6598_is_private && on.egress.rfc6598_is_private);
    let d = ask(&off, "pro", "100.64.3.4", 443);
    assert_eq!((d.route.clone(), d.effect), (Route::Direct, Allow));
    assert!(d.reasons.first().is_some_and(|r| r.message.contains("RFC 6598")), "{:?}", d.reasons.first());
    assert_eq!(ask(&on, "pro", "100.64.3.4", 443).route, vpc("vpc"));
    assert!(ask(&off, "none", "100.64.3.4", 443).is_allowed());
    assert!(!ask(&on, "none", "100.64.3.4", 443).is_allowed());
}

#[test]
fn ipv4_mapped_ipv6_is_decided_as_ipv4() {
    let p = project();
    for (plain, mapped, port) in [
        ("10.9.1.1", "::ffff:10.9.1.1", 5432),
        ("169.254.169.254", "::ffff:169.254.169.254", 80),
        ("127.0.0.1", "::ffff:127.0.0.1", 80),
        ("199.36.153.8", "::ffff:199.36.153.8", 443),
        ("8.8.8.8", "::ffff:8.8.8.8", 25),
    ] {
        for service in ["none", "pro", "all", "nopga", "closed"] {
            assert_eq!(ask(&p, service, mapped, port), ask(&p, service, plain, port), "{service} -> {mapped}");
        }
    }
    assert_eq!(ask(&p, "all", "::ffff:10.9.1.1", 5432).rule.as_deref(), Some("deny-db"));
    // Unique local IPv6 is private; other IPv6 is public.
    assert_eq!(ask(&p, "none", "fd20::5", 443).reasons.last().map(|r| r.code), Some(codes::PRIVATE_UNREACHABLE));
    assert!(ask(&p, "none", "2001:db8::5", 443).is_allowed());
    assert!(!ask(&p, "none", "::1", 443).is_allowed());
}

/// The caller path of `explain`/`check` and the egress proxy's decision route the same
/// destination class the same way, for every caller shape.
#[test]
fn origin_of_call_agrees_with_decide() {
    let p = project();
    for caller in p.services.values() {
        for (dest, addr) in [(Destination::Private, "10.5.0.1"), (Destination::Public, "8.8.8.8")] {
            let (origin, why) = origin_of_call(caller, dest, &p);
            let d = ask(&p, &caller.name, addr, 443);
            let at = format!("{} {dest:?}: {origin:?} vs {:?}", caller.name, d.route);
            // The same routing reason opens both.
            if why.code != codes::NO_PRIVATE_GOOGLE_ACCESS {
                assert_eq!(d.reasons.get(1), Some(&why), "{at}");
            }
            match (&origin, &d.route) {
                (NetOrigin::Vpc(a), Route::Vpc(b)) => assert_eq!(a, b, "{at}"),
                // A run.app call from a subnet without Private Google Access leaves the VPC
                // through Cloud NAT: on the proxy's side that is the VPC route.
                (NetOrigin::Internet, Route::Vpc(_)) => assert_eq!(why.code, codes::NO_PRIVATE_GOOGLE_ACCESS, "{at}"),
                (NetOrigin::Internet, Route::Direct) => {}
                _ => panic!("{at}"),
            }
        }
    }
}

#[test]
fn moat_yaml_egress_settings_load() {
    let p = project();
    let vpc = p.network("vpc").unwrap_or_else(|| panic!("no vpc"));
    assert!(vpc.nat && p.network("closed").is_some_and(|n| !n.nat && n.firewall.is_empty()));
    let names: Vec<&str> = vpc.firewall.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["deny-db", "allow-db-web", "deny-mail", "allow-mail", "deny-connectors"]);
    let mail = vpc.firewall.get(2).unwrap_or_else(|| panic!("no rule"));
    assert_eq!((mail.priority, mail.action), (1000, FirewallAction::Deny));
    assert!(mail.destination_ranges.is_empty() && mail.target_tags.is_empty());
    assert_eq!(
        mail.ports,
        [crate::model::PortRange { first: 25, last: 25 }, crate::model::PortRange { first: 465, last: 587 }]
    );
    assert_eq!(mail.source.line, 14);
    let host = p.egress.host("api.example.COM").unwrap_or_else(|| panic!("no host"));
    assert_eq!(host.name, "api.example.com");
    assert_eq!(host.local, "127.0.0.1:9443".parse().ok());
    assert_eq!(host.address, "203.0.113.10".parse::<IpAddr>().unwrap_or_else(|_| panic!()));
    assert!(!p.egress.rfc6598_is_private);
}
