//! The `SRC_IPS_V1` prefix table: every range of every basic-match rule in one binary trie per
//! address family, so one walk of at most 32 (or 128) steps finds every rule whose ranges hold
//! the client address, however many rules and ranges the policy has.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Default, Clone)]
pub(crate) struct SrcIpTable {
    v4: Trie,
    v6: Trie,
}

#[derive(Debug, Clone)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// Index of the child for bit 0 and bit 1; 0 is "none" (the root is never a child).
    children: [u32; 2],
    /// Rules with a range ending exactly here.
    rules: Vec<u32>,
}

impl Default for Trie {
    fn default() -> Self {
        Self { nodes: vec![Node::default()] }
    }
}

impl Trie {
    fn insert(&mut self, bits: u128, width: u8, len: u8, rule: u32) {
        let mut node = 0usize;
        for depth in 0..len {
            let bit = ((bits >> (width - 1 - depth)) & 1) as usize;
            let next = self.nodes.get(node).and_then(|n| n.children.get(bit)).copied().unwrap_or(0);
            node = if next == 0 {
                let id = self.nodes.len();
                self.nodes.push(Node::default());
                if let Some(slot) = self.nodes.get_mut(node).and_then(|n| n.children.get_mut(bit)) {
                    *slot = u32::try_from(id).unwrap_or(0);
                }
                id
            } else {
                next as usize
            };
        }
        if let Some(n) = self.nodes.get_mut(node)
            && n.rules.last() != Some(&rule)
        {
            n.rules.push(rule);
        }
    }

    fn lookup(&self, bits: u128, width: u8, out: &mut Vec<u32>) {
        let mut node = 0usize;
        let mut depth = 0u8;
        while let Some(n) = self.nodes.get(node) {
            out.extend_from_slice(&n.rules);
            if depth == width {
                break;
            }
            let bit = ((bits >> (width - 1 - depth)) & 1) as usize;
            let next = n.children.get(bit).copied().unwrap_or(0);
            if next == 0 {
                break;
            }
            node = next as usize;
            depth += 1;
        }
    }
}

impl SrcIpTable {
    /// Adds `net` as one of the ranges of rule `rule` (its index in priority order).
    pub(crate) fn insert(&mut self, net: &IpNet, rule: u32) {
        match net {
            IpNet::V4(n) => self.v4.insert(u128::from(u32::from(n.network())), 32, n.prefix_len(), rule),
            IpNet::V6(n) => self.v6.insert(u128::from(n.network()), 128, n.prefix_len(), rule),
        }
    }

    /// The rules with a range holding `ip`, ascending, without repeats.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Vec<u32> {
        let mut out = Vec::new();
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u128::from(u32::from(a)), 32, &mut out),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a), 128, &mut out),
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|_| IpNet::from(IpAddr::from([0, 0, 0, 0])))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn finds_every_rule_whose_range_holds_the_address() {
        let mut t = SrcIpTable::default();
        t.insert(&net("10.0.0.0/8"), 3);
        t.insert(&net("10.1.0.0/16"), 1);
        t.insert(&net("10.1.2.3/32"), 7);
        t.insert(&net("0.0.0.0/0"), 9);
        t.insert(&net("192.168.0.0/16"), 1);
        t.insert(&net("2001:db8::/32"), 2);
        assert_eq!(t.lookup(ip("10.1.2.3")), vec![1, 3, 7, 9]);
        assert_eq!(t.lookup(ip("10.2.0.1")), vec![3, 9]);
        assert_eq!(t.lookup(ip("192.168.5.5")), vec![1, 9]);
        assert_eq!(t.lookup(ip("8.8.8.8")), vec![9]);
        assert_eq!(t.lookup(ip("::ffff:10.1.2.3")), vec![1, 3, 7, 9], "IPv4-mapped is IPv4");
        assert_eq!(t.lookup(ip("2001:db8::1")), vec![2]);
        assert_eq!(t.lookup(ip("2001:db9::1")), Vec::<u32>::new());
    }

    proptest::proptest! {
        /// The trie agrees with checking every range one by one.
        #[test]
        fn agrees_with_a_linear_scan(ranges in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32, 0u32..20), 0..60), probe in proptest::prelude::any::<u32>()) {
            let mut t = SrcIpTable::default();
            let mut nets = Vec::new();
            for (addr, len, rule) in ranges {
                let n = IpNet::new(IpAddr::from(addr.to_be_bytes()), len).map(|n| n.trunc()).unwrap_or_else(|_| net("0.0.0.0/0"));
                t.insert(&n, rule);
                nets.push((n, rule));
            }
            let probe = IpAddr::from(probe.to_be_bytes());
            let mut want: Vec<u32> = nets.iter().filter(|(n, _)| n.contains(&probe)).map(|(_, r)| *r).collect();
            want.sort_unstable();
            want.dedup();
            proptest::prop_assert_eq!(t.lookup(probe), want);
        }
    }
}
