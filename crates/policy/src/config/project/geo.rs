//! Lowering the top-level `geo:` list of `moat.yaml` into the IP-to-region/ASN table.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_saphyr::Spanned;

use crate::armor::{GeoEntry, GeoTable, is_region_code};
use crate::config::diag::{ConfigError, FileCtx};
use crate::config::raw::RawGeoRow;
use crate::source::SourceRef;

/// The table; rows with an error are left out (the load fails anyway).
pub(super) fn lower_geo(ctx: &FileCtx, raw: Vec<Spanned<RawGeoRow>>, errs: &mut Vec<ConfigError>) -> GeoTable {
    let mut seen: BTreeMap<IpNet, SourceRef> = BTreeMap::new();
    let mut entries = Vec::new();
    for r in raw {
        let Some(entry) = lower_row(ctx, r, errs) else { continue };
        if let Some(first) = seen.get(&entry.range) {
            errs.push(ctx.error(
                &entry.source,
                format!("geo range `{}` is listed twice (first at {first})", entry.range),
                "keep one row per range; a longer prefix inside a range is fine and wins over it",
            ));
            continue;
        }
        seen.insert(entry.range, entry.source.clone());
        entries.push(entry);
    }
    GeoTable::new(entries)
}

fn lower_row(ctx: &FileCtx, raw: Spanned<RawGeoRow>, errs: &mut Vec<ConfigError>) -> Option<GeoEntry> {
    let source = ctx.at(&raw.referenced);
    let r = raw.value;
    let before = errs.len();
    let range = r.range.value.trim();
    let range = match range.parse::<IpNet>() {
        Ok(n) => Some(n.trunc()),
        Err(_) => range.parse::<IpAddr>().ok().map(|a| IpNet::from(a.to_canonical())),
    };
    if range.is_none() {
        errs.push(ctx.error(
            &ctx.at(&r.range.referenced),
            format!("geo range `{}` is not a CIDR range", r.range.value),
            "write an address and prefix length, e.g. `203.0.113.0/24`, or a single address",
        ));
    }
    if let Some(code) = &r.region_code
        && !is_region_code(&code.value)
    {
        errs.push(ctx.error(
            &ctx.at(&code.referenced),
            format!("`{}` is not an ISO 3166-1 alpha-2 region code", code.value),
            "write the two-letter code in upper case, as Cloud Armor's `origin.region_code` gives it, e.g. `CH`",
        ));
    }
    let asn = match &r.asn {
        None => None,
        Some(a) => match u32::try_from(a.value) {
            Ok(n) => Some(n),
            Err(_) => {
                errs.push(ctx.error(
                    &ctx.at(&a.referenced),
                    format!("`{}` is not an autonomous system number", a.value),
                    "write the ASN as a number from 0 to 4294967295, without `AS`, e.g. `15169`",
                ));
                None
            }
        },
    };
    if r.region_code.is_none() && r.asn.is_none() {
        errs.push(ctx.error(
            &source,
            format!("geo range `{}` gives neither `region_code` nor `asn`", r.range.value),
            "add `region_code: XX` and/or `asn: N`, or remove the row",
        ));
    }
    let range = range?;
    (errs.len() == before).then_some(GeoEntry { range, region_code: r.region_code.map(|c| c.value), asn, source })
}
