//! The IP-to-region/ASN table (`geo:` in moat.yaml) behind `origin.region_code`, `origin.asn`
//! and the `REGION_CODE` rate-limit key. moat ships no geolocation data: without a table, or
//! for an address no row holds, the attributes are unavailable (a rule reading them errors and
//! does not match). Rows may nest; the longest prefix holding the address decides, and a field
//! that row leaves out is unavailable (never borrowed from a shorter row).

use std::net::IpAddr;

use ipnet::IpNet;

use super::request::EdgeRequest;
use super::srcip::SrcIpTable;
use crate::source::SourceRef;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoEntry {
    /// Host bits cleared.
    pub range: IpNet,
    /// ISO 3166-1 alpha-2, upper case.
    pub region_code: Option<String>,
    pub asn: Option<u32>,
    pub source: SourceRef,
}

/// Every row in one prefix table (the `SRC_IPS_V1` trie, a row's index standing for a rule).
#[derive(Debug, Clone, Default)]
pub struct GeoTable {
    entries: Vec<GeoEntry>,
    trie: SrcIpTable,
}

impl GeoTable {
    /// A table of `entries`; ranges are expected distinct (loading refuses a repeated range;
    /// should one repeat anyway, the later row wins).
    pub fn new(entries: Vec<GeoEntry>) -> Self {
        let mut trie = SrcIpTable::default();
        for (i, e) in entries.iter().enumerate() {
            if let Ok(i) = u32::try_from(i) {
                trie.insert(&e.range, i);
            }
        }
        Self { entries, trie }
    }

    pub fn entries(&self) -> &[GeoEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The row with the longest range holding `ip` (IPv4-mapped addresses are IPv4).
    pub fn lookup(&self, ip: IpAddr) -> Option<&GeoEntry> {
        self.trie
            .lookup(ip)
            .into_iter()
            .filter_map(|i| self.entries.get(i as usize))
            .max_by_key(|e| e.range.prefix_len())
    }

    /// `request` with its region and ASN from the row holding its peer address (both `None`
    /// when no row does).
    pub fn locate(&self, mut request: EdgeRequest) -> EdgeRequest {
        let entry = self.lookup(request.remote_ip);
        request.region_code = entry.and_then(|e| e.region_code.clone());
        request.asn = entry.and_then(|e| e.asn).map(i64::from);
        request
    }
}

/// Whether `s` has the shape of an ISO 3166-1 alpha-2 code: two upper-case ASCII letters.
pub fn is_region_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(range: &str, region: Option<&str>, asn: Option<u32>) -> GeoEntry {
        GeoEntry {
            range: range.parse().unwrap_or_else(|_| IpNet::from(IpAddr::from([0, 0, 0, 0]))),
            region_code: region.map(str::to_owned),
            asn,
            source: SourceRef::file(&std::sync::Arc::from("moat.yaml")),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn the_longest_prefix_decides_both_fields() {
        let t = GeoTable::new(vec![
            row("8.8.0.0/16", Some("US"), Some(15169)),
            row("8.8.8.0/24", Some("CH"), None),
            row("2001:db8::/32", None, Some(64500)),
        ]);
        let at = |s: &str| t.lookup(ip(s)).map(|e| (e.region_code.as_deref(), e.asn));
        assert_eq!(at("8.8.4.4"), Some((Some("US"), Some(15169))));
        assert_eq!(at("8.8.8.8"), Some((Some("CH"), None)), "the /24 decides; its missing ASN is not borrowed");
        assert_eq!(at("::ffff:8.8.4.4"), Some((Some("US"), Some(15169))));
        assert_eq!(at("2001:db8::1"), Some((None, Some(64500))));
        assert_eq!(at("1.1.1.1"), None);
        let r = t.locate(EdgeRequest::new("GET", "http", "h", "/", ip("8.8.4.4")));
        assert_eq!((r.region_code.as_deref(), r.asn), (Some("US"), Some(15169)));
        let r = t.locate(EdgeRequest::new("GET", "http", "h", "/", ip("1.1.1.1")));
        assert_eq!((r.region_code, r.asn), (None, None));
    }

    #[test]
    fn region_codes_are_two_upper_case_letters() {
        assert!(is_region_code("CH"));
        for bad in ["ch", "C", "CHE", "C1", ""] {
            assert!(!is_region_code(bad), "{bad}");
        }
    }
}
