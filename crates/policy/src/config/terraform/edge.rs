//! The edge: external and internal Application Load Balancers (forwarding rule → target proxy →
//! URL map → backend service → serverless NEG → Cloud Run service), Cloud Armor security
//! policies, domain mappings; and Cloud SQL instances with their users (MOAT017–MOAT022).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::Lower;
use super::plan::{Res, Seg, last_segment};
use super::services::{V1, V2};
use super::val::{block, blocks, bool_, str_, strings};
use crate::armor::SecurityPolicy;
use crate::model::{DomainMapping, LbRoute, LbScheme, LoadBalancer, SqlInstance, SqlUser, UnknownEffect};

const FORWARDING: &[&str] = &["google_compute_global_forwarding_rule", "google_compute_forwarding_rule"];
const PROXY: &[&str] = &[
    "google_compute_target_https_proxy",
    "google_compute_target_http_proxy",
    "google_compute_region_target_https_proxy",
    "google_compute_region_target_http_proxy",
];
const URL_MAP: &[&str] = &["google_compute_url_map", "google_compute_region_url_map"];
const BACKEND: &[&str] = &["google_compute_backend_service", "google_compute_region_backend_service"];
const NEG: &[&str] = &["google_compute_region_network_endpoint_group"];
const POLICY: &[&str] = &["google_compute_security_policy"];

pub(crate) fn lower(l: &mut Lower<'_, '_>) {
    armor(l);
    load_balancers(l);
    domain_mappings(l);
}

fn load_balancers(l: &mut Lower<'_, '_>) {
    let plan = l.plan;
    for map in l.mine(URL_MAP) {
        // The forwarding rules that reach this URL map through a proxy: the LB's front ends.
        let fronts: Vec<&Res<'_>> = plan
            .of_kind(FORWARDING)
            .filter(|fr| {
                plan.link(fr, &["target"], fr.str("target"), PROXY)
                    .and_then(|p| plan.link(p, &["url_map"], p.str("url_map"), URL_MAP))
                    .is_some_and(|m| m.address == map.address)
            })
            .collect();
        let Some(front) = fronts.first() else { continue };
        let scheme = match front.str("load_balancing_scheme") {
            Some("INTERNAL_MANAGED" | "INTERNAL_SELF_MANAGED" | "INTERNAL") => LbScheme::Internal,
            _ => LbScheme::External,
        };
        let network = match scheme {
            LbScheme::Internal => {
                let net = super::network::network_name(l, front, "network");
                match net {
                    Some(n) => {
                        let at = l.at(front, "network");
                        Some(super::network::network_ref(l, &n, at))
                    }
                    None => {
                        l.unknown(front, "network", None, crate::model::UnknownEffect::Ingress);
                        continue;
                    }
                }
            }
            LbScheme::External => None,
        };
        let mut routes = Vec::new();
        let mut policies: Vec<Option<String>> = Vec::new();
        let mut iap = Vec::new();
        let mut add_backend = |l: &mut Lower<'_, '_>, path: &str, at: &[Seg<'_>], value: Option<&str>| {
            let Some(b) = plan.link_at(map, at, value, BACKEND) else { return };
            policies.push(backend_policy(l, b));
            iap.push(block(b.values, "iap").is_some_and(|i| bool_(i, "enabled").unwrap_or(true)));
            // `backend` is a set: the plan's order need not be the configuration's, but every
            // group gets the same route, so pairing the i-th of each still finds every NEG.
            for (gi, g) in blocks(b.values, "backend").iter().enumerate() {
                let group = [Seg::Key("backend"), Seg::Index(gi), Seg::Key("group")];
                let neg = plan.follow_at(b, &group, NEG).or_else(|| {
                    str_(g, "group").and_then(|v| plan.of_kind(NEG).find(|n| n.str("name") == Some(last_segment(v))))
                });
                let Some(neg) = neg else { continue };
                let Some(cr) = block(neg.values, "cloud_run") else { continue };
                let service = str_(cr, "service").map(str::to_owned).or_else(|| {
                    plan.follow(neg, &["cloud_run", "service"], &[V2, V1])
                        .and_then(|s| s.str("name"))
                        .map(str::to_owned)
                });
                match service {
                    // A matcher's default is often the map's own default: one route for both.
                    Some(s) if routes.iter().any(|r: &LbRoute| r.path == path && r.service == s) => {}
                    Some(s) => routes.push(LbRoute {
                        path: path.to_owned(),
                        service: s,
                        source: l.at(neg, "cloud_run[0].service"),
                    }),
                    None => l.unknown(neg, "cloud_run[0].service", None, crate::model::UnknownEffect::Ingress),
                }
            }
        };
        add_backend(l, "/*", &[Seg::Key("default_service")], map.str("default_service"));
        // Backend ids are unknown until apply when the plan creates the backends: path matchers
        // and path rules then join only through their configuration's references, at the
        // matcher's and the rule's own index.
        for (pi, pm) in blocks(map.values, "path_matcher").iter().enumerate() {
            let matcher = [Seg::Key("path_matcher"), Seg::Index(pi)];
            let at = [matcher.as_slice(), &[Seg::Key("default_service")]].concat();
            add_backend(l, "/*", &at, str_(pm, "default_service"));
            for (ri, pr) in blocks(pm, "path_rule").iter().enumerate() {
                let at = [matcher.as_slice(), &[Seg::Key("path_rule"), Seg::Index(ri), Seg::Key("service")]].concat();
                for p in strings(pr, "paths") {
                    add_backend(l, p, &at, str_(pr, "service"));
                }
            }
        }
        // Routes to services outside the plan have nothing to route to.
        routes.retain(|r| l.project.services.contains_key(&r.service));
        let mut hosts: Vec<String> = blocks(map.values, "host_rule")
            .iter()
            .flat_map(|h| strings(h, "hosts"))
            .filter(|h| *h != "*")
            .map(str::to_ascii_lowercase)
            .collect();
        hosts.dedup();
        // Cloud Armor and IAP sit on backend services; the model has one per load balancer.
        // The first policy found stands for the load balancer; IAP counts only when every
        // backend has it.
        let security_policy = policies.iter().flatten().next().cloned();
        let name = map.str("name").unwrap_or(map.name).to_owned();
        let source = l.at(map, "");
        l.project.load_balancers.push(LoadBalancer {
            name,
            scheme,
            network,
            hosts,
            security_policy,
            iap: !iap.is_empty() && iap.iter().all(|x| *x),
            routes,
            source,
        });
    }
}

fn backend_policy(l: &Lower<'_, '_>, b: &Res<'_>) -> Option<String> {
    if let Some(p) = l.plan.follow(b, &["security_policy"], POLICY) {
        return p.str("name").map(str::to_owned);
    }
    b.str("security_policy").map(|s| last_segment(s).to_owned())
}

/// Block lists that hold one block: unwrapped into an object in the gcloud JSON shape.
const SINGLE: &[&str] = &[
    "match",
    "config",
    "expr",
    "expr_options",
    "recaptcha_options",
    "rate_limit_options",
    "rate_limit_threshold",
    "ban_threshold",
    "exceed_redirect_options",
    "redirect_options",
    "header_action",
    "preconfigured_waf_config",
    "advanced_options_config",
    "adaptive_protection_config",
    "layer_7_ddos_defense_config",
    "json_custom_config",
    "recaptcha_options_config",
];

fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A Terraform `google_compute_security_policy` value in the shape `gcloud compute
/// security-policies describe --format json` prints: camelCase keys, single blocks as objects,
/// `rule` as `rules`, nulls and empty blocks dropped.
pub(crate) fn to_gcloud_json(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let x = if SINGLE.contains(&k.as_str()) {
                    match x {
                        Value::Array(a) => match a.first() {
                            Some(first) => first,
                            None => continue,
                        },
                        other => other,
                    }
                } else {
                    x
                };
                if x.is_null() {
                    continue;
                }
                let key = if k == "rule" { "rules".to_owned() } else { camel(k) };
                out.insert(key, to_gcloud_json(x));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_gcloud_json).collect()),
        other => other.clone(),
    }
}

fn armor(l: &mut Lower<'_, '_>) {
    for r in l.mine(POLICY) {
        let Some(name) = r.str("name") else { continue };
        let json = to_gcloud_json(r.values).to_string();
        match SecurityPolicy::from_json(&json, l.file().as_ref()) {
            Ok(mut p) => {
                let rules = blocks(r.values, "rule");
                let file = Arc::clone(l.file());
                let address = r.address.clone();
                p.relocate(|priority| {
                    let i = rules
                        .iter()
                        .position(|x| x.get("priority").and_then(Value::as_u64) == Some(u64::from(priority)));
                    let attr = i.map_or_else(|| "rule".to_owned(), |i| format!("rule[{i}]"));
                    crate::source::SourceRef::terraform(&file, format!("{address}.{attr}"))
                });
                l.project.armor_policies.insert(name.to_owned(), Arc::new(p));
            }
            Err(es) => {
                for e in es {
                    l.error(
                        r,
                        "rule",
                        e.message,
                        e.help.as_deref().unwrap_or("see docs/TERRAFORM.md for the attributes read"),
                    );
                }
            }
        }
    }
}

fn domain_mappings(l: &mut Lower<'_, '_>) {
    let plan = l.plan;
    for r in l.mine(&["google_cloud_run_domain_mapping"]) {
        let Some(domain) = r.str("name") else { continue };
        let service = block(r.values, "spec").and_then(|s| str_(s, "route_name")).map(str::to_owned).or_else(|| {
            plan.follow(r, &["spec", "route_name"], &[V2, V1]).and_then(|s| s.str("name")).map(str::to_owned)
        });
        let Some(service) = service else {
            l.unknown(r, "spec[0].route_name", None, crate::model::UnknownEffect::Ingress);
            continue;
        };
        if !l.project.services.contains_key(&service) {
            continue;
        }
        let source = l.at(r, "spec[0].route_name");
        l.project.domain_mappings.push(DomainMapping { domain: domain.to_ascii_lowercase(), service, source });
    }
}

pub(crate) fn sql(l: &mut Lower<'_, '_>) {
    let plan = l.plan;
    for r in l.mine(&["google_sql_database_instance"]) {
        let Some(name) = r.str("name") else { continue };
        let settings = block(r.values, "settings");
        let ip = settings.and_then(|s| block(s, "ip_configuration"));
        let flags = settings
            .map(|s| blocks(s, "database_flags"))
            .unwrap_or_default()
            .iter()
            .filter_map(|f| Some((str_(f, "name")?.to_owned(), str_(f, "value").unwrap_or_default().to_owned())))
            .collect();
        // Settings unknown until apply (typically `private_network` referencing a network
        // created in the same apply): resolved through the reference when it names a network
        // of the plan, else recorded so that the Cloud SQL findings say so.
        let ip_path = |key: &'static str| {
            [Seg::Key("settings"), Seg::Index(0), Seg::Key("ip_configuration"), Seg::Index(0), Seg::Key(key)]
        };
        let private_network =
            ip.and_then(|i| str_(i, "private_network")).map(|n| last_segment(n).to_owned()).or_else(|| {
                plan.follow_at(r, &ip_path("private_network"), &["google_compute_network"])
                    .and_then(|n| n.str("name"))
                    .map(str::to_owned)
            });
        for key in ["ipv4_enabled", "private_network", "ssl_mode", "require_ssl"] {
            if key == "private_network" && private_network.is_some() {
                continue;
            }
            let configured = r.configured(&ip_path(key)) != Some(false);
            if configured && r.is_unknown(&ip_path(key)) {
                l.unknown(r, &format!("settings[0].ip_configuration[0].{key}"), None, UnknownEffect::Database);
            }
        }
        if r.is_unknown(&[Seg::Key("settings"), Seg::Index(0), Seg::Key("database_flags")]) {
            l.unknown(r, "settings[0].database_flags", None, UnknownEffect::Database);
        }
        let source = l.at(r, "");
        l.project.sql_instances.push(SqlInstance {
            name: name.to_owned(),
            database_version: r.str("database_version").unwrap_or_default().to_owned(),
            public_ip: ip.and_then(|i| bool_(i, "ipv4_enabled")),
            private_network,
            ssl_mode: ip.and_then(|i| str_(i, "ssl_mode")).map(str::to_owned),
            require_ssl: ip.and_then(|i| bool_(i, "require_ssl")),
            flags,
            users: Vec::new(),
            source,
        });
    }
    for r in l.mine(&["google_sql_user"]) {
        let instance = plan
            .link(r, &["instance"], r.str("instance"), &["google_sql_database_instance"])
            .and_then(|i| i.str("name"))
            .map(str::to_owned)
            .or_else(|| r.str("instance").map(str::to_owned));
        let Some(instance) = instance else { continue };
        // Only whether a password is set: its value is never read.
        let has_password = ["password", "password_wo"].iter().any(|k| {
            r.values.get(*k).is_some_and(|p| !p.is_null())
                || r.is_unknown(&[Seg::Key(k)])
                || r.configured(&[Seg::Key(k)]) == Some(true)
        });
        let user = SqlUser {
            name: r.str("name").unwrap_or(r.name).to_owned(),
            kind: r.str("type").unwrap_or("BUILT_IN").to_owned(),
            has_password,
            source: l.at(r, ""),
        };
        if let Some(i) = l.project.sql_instances.iter_mut().find(|i| i.name == instance) {
            i.users.push(user);
        }
    }
}
