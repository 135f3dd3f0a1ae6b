//! What kind of address a destination has (spec/cloudrun.md §6.2): the metadata server, the
//! instance itself, a private range (which `private-ranges-only` sends through the VPC),
//! Private Google Access, or the internet.
//!
//! IPv6: `::1` is loopback and `fc00::/7` (unique local addresses, RFC 4193) is private, because
//! that is where GCP puts internal IPv6 subnet ranges (`fd20::/20`), so a ULA destination is a
//! VPC address the way an RFC 1918 one is. Every other IPv6 address is public. An IPv4-mapped
//! IPv6 address (`::ffff:10.0.0.1`) is classified as its IPv4 address, which is what it
//! reaches on the wire: a mapped address cannot dodge the private-range rule or reach the
//! metadata server under another name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::model::EgressConfig;

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

/// The metadata server every Cloud Run instance reaches.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// RFC 1918.
pub(super) const RFC1918: [Ipv4Net; 3] = [
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16),
];

/// RFC 6598 shared address space (carrier-grade NAT): private only when configured so.
pub(super) const RFC6598: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10);

/// private.googleapis.com.
pub(super) const PGA_PRIVATE: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(199, 36, 153, 8), 30);

/// restricted.googleapis.com (VPC Service Controls).
pub(super) const PGA_RESTRICTED: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(199, 36, 153, 4), 30);

/// Unique local IPv6 addresses (RFC 4193).
pub(super) const ULA: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7);

/// Classifies `addr` for `private-ranges-only` routing.
pub fn classify(addr: IpAddr, config: &EgressConfig) -> AddressClass {
    match addr.to_canonical() {
        IpAddr::V4(a) if a == METADATA_ADDRESS => AddressClass::Metadata,
        IpAddr::V4(a) if a.is_loopback() => AddressClass::Loopback,
        IpAddr::V4(a) if RFC1918.iter().any(|n| n.contains(&a)) => AddressClass::Private,
        IpAddr::V4(a) if config.rfc6598_is_private && RFC6598.contains(&a) => AddressClass::Private,
        IpAddr::V4(a) if PGA_PRIVATE.contains(&a) || PGA_RESTRICTED.contains(&a) => AddressClass::GoogleAccess,
        IpAddr::V4(_) => AddressClass::Public,
        IpAddr::V6(a) if a.is_loopback() => AddressClass::Loopback,
        IpAddr::V6(a) if ULA.contains(&a) => AddressClass::Private,
        IpAddr::V6(_) => AddressClass::Public,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cfg(rfc6598_is_private: bool) -> EgressConfig {
        EgressConfig { rfc6598_is_private, hosts: Vec::new() }
    }

    #[expect(clippy::panic, reason = "a test table with a typo fails the test")]
    fn class(s: &str, rfc6598: bool) -> AddressClass {
        let Ok(a) = s.parse::<IpAddr>() else { panic!("`{s}` is not an address") };
        classify(a, &cfg(rfc6598))
    }

    #[test]
    fn table() {
        use AddressClass::*;
        let cases: &[(&str, bool, AddressClass)] = &[
            ("169.254.169.254", false, Metadata),
            ("169.254.169.253", false, Public),
            ("127.0.0.1", false, Loopback),
            ("127.255.255.255", false, Loopback),
            ("10.0.0.0", false, Private),
            ("10.255.255.255", false, Private),
            ("11.0.0.0", false, Public),
            ("9.255.255.255", false, Public),
            ("172.15.255.255", false, Public),
            ("172.16.0.0", false, Private),
            ("172.31.255.255", false, Private),
            ("172.32.0.0", false, Public),
            ("192.168.0.1", false, Private),
            ("192.169.0.1", false, Public),
            ("100.64.0.1", false, Public),
            ("100.64.0.1", true, Private),
            ("100.127.255.255", true, Private),
            ("100.128.0.0", true, Public),
            ("100.63.255.255", true, Public),
            ("199.36.153.8", false, GoogleAccess),
            ("199.36.153.11", false, GoogleAccess),
            ("199.36.153.4", false, GoogleAccess),
            ("199.36.153.7", false, GoogleAccess),
            ("199.36.153.3", false, Public),
            ("199.36.153.12", false, Public),
            ("8.8.8.8", false, Public),
            ("::1", false, Loopback),
            ("fd20::1", false, Private),
            ("fc00::", false, Private),
            ("fe80::1", false, Public),
            ("2001:db8::1", false, Public),
            ("::ffff:10.0.0.1", false, Private),
            ("::ffff:127.0.0.1", false, Loopback),
            ("::ffff:169.254.169.254", false, Metadata),
            ("::ffff:199.36.153.9", false, GoogleAccess),
            ("::ffff:100.64.0.1", true, Private),
            ("::ffff:8.8.8.8", false, Public),
        ];
        for (addr, rfc6598, want) in cases {
            assert_eq!(class(addr, *rfc6598), *want, "{addr} rfc6598_is_private={rfc6598}");
        }
    }

    /// The ranges written out as literal inclusive bounds, nothing shared with `classify`.
    fn naive_v4(a: u32, rfc6598: bool) -> AddressClass {
        let within = |lo: u32, hi: u32| lo <= a && a <= hi;
        if a == 0xA9FE_A9FE {
            AddressClass::Metadata
        } else if within(0x7F00_0000, 0x7FFF_FFFF) {
            AddressClass::Loopback
        } else if within(0x0A00_0000, 0x0AFF_FFFF)
            || within(0xAC10_0000, 0xAC1F_FFFF)
            || within(0xC0A8_0000, 0xC0A8_FFFF)
            || (rfc6598 && within(0x6440_0000, 0x647F_FFFF))
        {
            AddressClass::Private
        } else if within(0xC724_9904, 0xC724_990B) {
            AddressClass::GoogleAccess
        } else {
            AddressClass::Public
        }
    }

    /// Addresses next to every range boundary are where an off-by-one hides.
    fn v4() -> impl Strategy<Value = u32> {
        let edges: Vec<u32> = [
            0xA9FE_A9FE,
            0x7F00_0000,
            0x8000_0000,
            0x0A00_0000,
            0x0B00_0000,
            0xAC10_0000,
            0xAC20_0000,
            0xC0A8_0000,
            0xC0A9_0000,
            0x6440_0000,
            0x6480_0000,
            0xC724_9904,
            0xC724_990C,
        ]
        .into_iter()
        .flat_map(|e: u32| [e.wrapping_sub(1), e, e.wrapping_add(1)])
        .collect();
        prop_oneof![any::<u32>(), proptest::sample::select(edges)]
    }

    proptest! {
        #[test]
        fn matches_the_naive_table(a in v4(), rfc6598 in any::<bool>()) {
            let addr = Ipv4Addr::from(a);
            let want = naive_v4(a, rfc6598);
            prop_assert_eq!(classify(IpAddr::V4(addr), &cfg(rfc6598)), want);
            // The IPv4-mapped form is the same address on the wire.
            prop_assert_eq!(classify(IpAddr::V6(addr.to_ipv6_mapped()), &cfg(rfc6598)), want);
        }

        #[test]
        fn ipv6_outside_ula_and_loopback_is_public(a in any::<u128>()) {
            let addr = Ipv6Addr::from(a);
            prop_assume!(addr.to_ipv4_mapped().is_none());
            let want = if a == 1 {
                AddressClass::Loopback
            } else if a >> 121 == 0x7e {
                AddressClass::Private
            } else {
                AddressClass::Public
            };
            prop_assert_eq!(classify(IpAddr::V6(addr), &cfg(true)), want);
        }
    }
}
