//! Cloud Run services: `google_cloud_run_v2_service` and the v1 `google_cloud_run_service`
//! become the same `model::Service` a project directory's exports give.

use std::collections::BTreeMap;

use serde_json::Value;

use super::plan::{Res, Seg, last_segment};
use super::val::{block, blocks, bool_, map_str, num_or_str, str_, strings};
use super::{Lower, unknown_paths};
use crate::model::{
    CloudSqlConnection, EnvValue, EnvVar, IamPolicy, Ingress, SecretRef, SecretVolume, Service, ServiceFormat, Setting,
    TrafficTag, UnknownEffect, VpcAccess, VpcAttachment, VpcEgress,
};

pub(crate) const V2: &str = "google_cloud_run_v2_service";
pub(crate) const V1: &str = "google_cloud_run_service";
const ANN: &str = "run.googleapis.com/";
const SA: &[&str] = &["google_service_account"];
const SECRET: &[&str] = &["google_secret_manager_secret"];
const CONNECTOR: &[&str] = &["google_vpc_access_connector"];

pub(crate) fn lower(l: &mut Lower<'_, '_>) {
    for r in l.mine(&[V2, V1]) {
        let name = match r.str("name") {
            Some(n) => n.to_owned(),
            None => {
                l.unknown(r, "name", Some(r.name), UnknownEffect::Ingress);
                r.name.to_owned()
            }
        };
        record_unknowns(l, r, &name);
        let svc = if r.kind == V2 { v2(l, r, name) } else { v1(l, r, name) };
        if let Some(first) = l.project.services.get(&svc.name) {
            let msg = format!("service `{}` is defined twice (first by {})", svc.name, first.source);
            l.error(r, "name", msg, "give each Cloud Run service its own name");
            continue;
        }
        l.project.services.insert(svc.name.clone(), svc);
    }
}

/// Which part of the access path an attribute decides, by its key names.
fn effect_of(keys: &[&str]) -> UnknownEffect {
    let has = |names: &[&str]| keys.iter().any(|k| names.iter().any(|n| k == n || k.ends_with(&format!("/{n}"))));
    if has(&[
        "ingress",
        "invoker_iam_disabled",
        "default_uri_disabled",
        "iap_enabled",
        "custom_audiences",
        "invoker-iam-disabled",
        "default-url-disabled",
        "custom-audiences",
    ]) {
        UnknownEffect::Ingress
    } else if has(&["service_account", "service_account_name"]) {
        UnknownEffect::Identity
    } else if has(&[
        "vpc_access",
        "network_interfaces",
        "connector",
        "egress",
        "vpc-access-connector",
        "vpc-access-egress",
        "network-interfaces",
    ]) {
        UnknownEffect::Egress
    } else if has(&["value_source", "value_from", "secret", "secrets"]) {
        UnknownEffect::Secrets
    } else {
        UnknownEffect::Other
    }
}

/// Records the unknown attributes that bear on access. One the configuration does not set is a
/// server default (an unset `service_account` is the default compute service account), not an
/// unknown.
fn record_unknowns(l: &mut Lower<'_, '_>, r: &Res<'_>, service: &str) {
    for (path, segs) in unknown_paths(r) {
        let keys: Vec<&str> = segs.iter().filter_map(|s| if let Seg::Key(k) = s { Some(*k) } else { None }).collect();
        let effect = effect_of(&keys);
        if effect == UnknownEffect::Other {
            continue;
        }
        // Indices as well as keys: `containers[1].env[2]` is not `containers[0].env[0]`.
        if r.configured(&segs) == Some(false) {
            continue;
        }
        // Derivable through a reference: a new service account's email, a secret's id, a
        // connector. Those are resolved where they are read.
        if resolvable(l, r, &segs, &keys) {
            continue;
        }
        l.unknown(r, &path, Some(service), effect);
    }
}

fn resolvable(l: &Lower<'_, '_>, r: &Res<'_>, path: &[Seg<'_>], keys: &[&str]) -> bool {
    let refs = r.references_at(path);
    let kinds: &[&str] = match keys.last().copied() {
        Some("service_account" | "service_account_name") => SA,
        Some("secret" | "secret_name" | "name") => SECRET,
        Some("connector") => CONNECTOR,
        Some("network") => &["google_compute_network"],
        Some("subnetwork") => &["google_compute_subnetwork"],
        _ => return false,
    };
    refs.iter().any(|x| l.plan.referenced(r, x, kinds).is_some())
}

fn ingress_setting(l: &mut Lower<'_, '_>, r: &Res<'_>, value: Option<&str>, attr: &str) -> Setting<Ingress> {
    match value {
        Some(v) => {
            match Ingress::parse(v) {
                Some(i) => Setting::set(i, l.at(r, attr)),
                None if v == "INGRESS_TRAFFIC_UNSPECIFIED" => Setting::set(Ingress::None, l.at(r, attr)),
                None => {
                    l.error(r, attr, format!("ingress `{v}` is not known"), "use INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER");
                    Setting::implied(Ingress::All, l.at(r, ""))
                }
            }
        }
        None => Setting::implied(Ingress::All, l.at(r, "")),
    }
}

fn flag(l: &Lower<'_, '_>, r: &Res<'_>, v: Option<bool>, attr: &str) -> Setting<bool> {
    match v {
        Some(b) => Setting::set(b, l.at(r, attr)),
        None => Setting::implied(false, l.at(r, "")),
    }
}

/// The runtime service account: written, derived from a `google_service_account` in the plan,
/// or the default compute service account.
fn service_account(l: &Lower<'_, '_>, r: &Res<'_>, value: Option<&str>, path: &[&str], attr: &str) -> Setting<String> {
    if let Some(v) = value {
        return Setting::set(v.to_ascii_lowercase(), l.at(r, attr));
    }
    if let Some(email) = l.plan.follow(r, path, SA).and_then(|sa| super::iam::sa_email(l, sa)) {
        return Setting::set(email, l.at(r, attr));
    }
    Setting::implied(l.project.default_compute_sa(), l.at(r, ""))
}

/// A secret reference: `NAME`, `projects/P/secrets/NAME`, or (unknown in the plan) a reference
/// to a `google_secret_manager_secret`.
fn secret_ref(
    l: &Lower<'_, '_>,
    r: &Res<'_>,
    value: Option<&str>,
    path: &[Seg<'_>],
    version: Option<String>,
) -> Option<SecretRef> {
    let version = version.unwrap_or_else(|| "latest".to_owned());
    let full = match value {
        Some(v) => v.to_owned(),
        None => {
            let s = l.plan.follow_at(r, path, SECRET)?;
            s.str("secret_id").or_else(|| s.str("name"))?.to_owned()
        }
    };
    Some(match full.strip_prefix("projects/").and_then(|x| x.split_once("/secrets/")) {
        Some((p, s)) if !l.project.is_self(p) => {
            SecretRef { project: Some(p.to_owned()), secret: last_secret(s), version }
        }
        Some((_, s)) => SecretRef { project: None, secret: last_secret(s), version },
        None => SecretRef { project: None, secret: full, version },
    })
}

fn last_secret(s: &str) -> String {
    s.split('/').next().unwrap_or(s).to_owned()
}

/// How a revision reaches a VPC, as the v1 and v2 forms both describe it.
#[derive(Default)]
struct Vpc {
    connector: Option<String>,
    network: Option<String>,
    subnetwork: Option<String>,
    tags: Vec<String>,
    egress: Option<(VpcEgress, String)>,
    /// The attribute the access is written at.
    attr: String,
}

fn vpc_access(l: &mut Lower<'_, '_>, r: &Res<'_>, service: &str, v: Vpc) -> Option<VpcAccess> {
    let source = l.at(r, &v.attr);
    let (attachment, network) = if let Some(c) = v.connector {
        let short = last_segment(&c).to_owned();
        let Some(decl) = l.project.connectors.iter().find(|k| k.name == short) else {
            // A connector outside the plan: its network is not known, so neither is the origin
            // of this service's calls.
            l.unknown(r, &format!("{}.connector", v.attr), Some(service), UnknownEffect::Egress);
            return None;
        };
        (VpcAttachment::Connector { name: short }, decl.network.clone())
    } else if v.network.is_some() || v.subnetwork.is_some() {
        let net = v.network.clone().or_else(|| {
            let sub = last_segment(v.subnetwork.as_deref()?);
            let s = l.plan.of_kind(&["google_compute_subnetwork"]).find(|s| s.str("name") == Some(sub))?;
            super::network::network_name(l, s, "network")
        });
        let net = net.or_else(|| match l.project.networks.as_slice() {
            [only] => Some(only.name.clone()),
            _ => None,
        });
        let Some(net) = net else {
            l.unknown(r, &format!("{}.network_interfaces", v.attr), Some(service), UnknownEffect::Egress);
            return None;
        };
        let network = super::network::network_ref(l, &net, source.clone());
        (VpcAttachment::Direct { subnetwork: v.subnetwork, tags: v.tags }, network)
    } else {
        return None;
    };
    let egress = match v.egress {
        Some((e, attr)) => Setting::set(e, l.at(r, &attr)),
        None => Setting::implied(VpcEgress::PrivateRangesOnly, source.clone()),
    };
    Some(VpcAccess { attachment, network, egress, source })
}

fn v2(l: &mut Lower<'_, '_>, r: &Res<'_>, name: String) -> Service {
    let v = r.values;
    let region = r.str("location").map_or_else(|| l.project.region.clone(), str::to_owned);
    let ingress = ingress_setting(l, r, str_(v, "ingress"), "ingress");
    let custom_audiences = match v.get("custom_audiences").and_then(Value::as_array) {
        Some(a) => {
            Setting::set(a.iter().filter_map(Value::as_str).map(str::to_owned).collect(), l.at(r, "custom_audiences"))
        }
        None => Setting::implied(Vec::new(), l.at(r, "")),
    };
    let mut urls: Vec<String> = strings(v, "urls").into_iter().map(str::to_owned).collect();
    urls.extend(str_(v, "uri").map(str::to_owned));
    let empty = Value::Null;
    let t = block(v, "template").unwrap_or(&empty);
    let service_account = service_account(
        l,
        r,
        str_(t, "service_account"),
        &["template", "service_account"],
        "template[0].service_account",
    );

    let vpc = block(t, "vpc_access").map(|va| {
        let connector = str_(va, "connector").map(str::to_owned).or_else(|| {
            let c = l.plan.follow(r, &["template", "vpc_access", "connector"], CONNECTOR)?;
            c.str("name").map(str::to_owned)
        });
        let ni = blocks(va, "network_interfaces").first();
        let ni_path = [
            Seg::Key("template"),
            Seg::Index(0),
            Seg::Key("vpc_access"),
            Seg::Index(0),
            Seg::Key("network_interfaces"),
            Seg::Index(0),
        ];
        let network = ni.and_then(|n| {
            let mut p = ni_path.to_vec();
            p.push(Seg::Key("network"));
            net_name(l, r, str_(n, "network"), &p)
        });
        let subnetwork = ni.and_then(|n| {
            str_(n, "subnetwork").map(str::to_owned).or_else(|| {
                let mut p = ni_path.to_vec();
                p.push(Seg::Key("subnetwork"));
                l.plan.follow_at(r, &p, &["google_compute_subnetwork"]).and_then(|s| s.str("name")).map(str::to_owned)
            })
        });
        let egress = match str_(va, "egress") {
            Some("ALL_TRAFFIC") => Some(VpcEgress::AllTraffic),
            Some("PRIVATE_RANGES_ONLY" | "VPC_EGRESS_UNSPECIFIED") => Some(VpcEgress::PrivateRangesOnly),
            _ => None,
        };
        Vpc {
            connector,
            network,
            subnetwork,
            tags: ni.map(|n| strings(n, "tags").into_iter().map(str::to_owned).collect()).unwrap_or_default(),
            egress: egress.map(|e| (e, "template[0].vpc_access[0].egress".to_owned())),
            attr: "template[0].vpc_access[0]".to_owned(),
        }
    });
    let vpc = vpc.and_then(|x| vpc_access(l, r, &name, x));

    let mut env = Vec::new();
    let mut mounts = BTreeMap::new();
    for (i, c) in blocks(t, "containers").iter().enumerate() {
        let cname = str_(c, "name").map_or_else(|| format!("container-{i}"), str::to_owned);
        for m in blocks(c, "volume_mounts") {
            if let Some(n) = str_(m, "name") {
                mounts.insert(n.to_owned(), str_(m, "mount_path").map(str::to_owned));
            }
        }
        for (j, e) in blocks(c, "env").iter().enumerate() {
            let Some(ename) = str_(e, "name") else { continue };
            let attr = format!("template[0].containers[{i}].env[{j}]");
            let value = match block(e, "value_source").and_then(|s| block(s, "secret_key_ref")) {
                Some(k) => {
                    // Found by name, as in v1, whatever order the plan lists the variables in.
                    let list =
                        [Seg::Key("template"), Seg::Index(0), Seg::Key("containers"), Seg::Index(i), Seg::Key("env")];
                    let j = r.config_block(&list, "name", ename).unwrap_or(j);
                    let path = [
                        Seg::Key("template"),
                        Seg::Index(0),
                        Seg::Key("containers"),
                        Seg::Index(i),
                        Seg::Key("env"),
                        Seg::Index(j),
                        Seg::Key("value_source"),
                        Seg::Index(0),
                        Seg::Key("secret_key_ref"),
                        Seg::Index(0),
                        Seg::Key("secret"),
                    ];
                    match secret_ref(l, r, str_(k, "secret"), &path, num_or_str(k, "version")) {
                        Some(s) => EnvValue::Secret(s),
                        None => continue,
                    }
                }
                None => EnvValue::Plain(str_(e, "value").unwrap_or_default().to_owned()),
            };
            env.push(EnvVar { container: cname.clone(), name: ename.to_owned(), value, source: l.at(r, &attr) });
        }
    }
    let mut volumes = Vec::new();
    for (i, vol) in blocks(t, "volumes").iter().enumerate() {
        let (Some(vname), Some(s)) = (str_(vol, "name"), block(vol, "secret")) else { continue };
        let attr = format!("template[0].volumes[{i}]");
        let path = [
            Seg::Key("template"),
            Seg::Index(0),
            Seg::Key("volumes"),
            Seg::Index(i),
            Seg::Key("secret"),
            Seg::Index(0),
            Seg::Key("secret"),
        ];
        let default_mode = mode(s, "default_mode");
        let items = blocks(s, "items");
        let (mut files, mut paths, mut modes) = (Vec::new(), Vec::new(), Vec::new());
        if items.is_empty()
            && let Some(f) = secret_ref(l, r, str_(s, "secret"), &path, None)
        {
            paths.push(f.secret.clone());
            files.push(f);
            modes.push(None);
        }
        for it in items {
            if let Some(f) = secret_ref(l, r, str_(s, "secret"), &path, num_or_str(it, "version")) {
                files.push(f);
                paths.push(str_(it, "path").unwrap_or_default().to_owned());
                modes.push(mode(it, "mode"));
            }
        }
        volumes.push(SecretVolume {
            mount_path: mounts.get(vname).cloned().flatten(),
            name: vname.to_owned(),
            files,
            paths,
            modes,
            default_mode,
            source: l.at(r, &attr),
        });
    }
    let mut cloud_sql = Vec::new();
    for (i, vol) in blocks(t, "volumes").iter().enumerate() {
        let Some(c) = block(vol, "cloud_sql_instance") else { continue };
        let attr = format!("template[0].volumes[{i}].cloud_sql_instance[0].instances");
        let path = [
            Seg::Key("template"),
            Seg::Index(0),
            Seg::Key("volumes"),
            Seg::Index(i),
            Seg::Key("cloud_sql_instance"),
            Seg::Index(0),
            Seg::Key("instances"),
        ];
        cloud_sql.extend(cloud_sql_of(l, r, &name, strings(c, "instances"), (&path, &path), &attr));
    }
    let tags = traffic_tags(l, r);
    let invoker_iam_disabled = flag(l, r, bool_(v, "invoker_iam_disabled"), "invoker_iam_disabled");
    let default_url_disabled = flag(l, r, bool_(v, "default_uri_disabled"), "default_uri_disabled");
    let iap_enabled = flag(l, r, bool_(v, "iap_enabled"), "iap_enabled");
    Service {
        urls: crate::config::service::service_urls(&name, &l.project.number, &region, urls),
        source: l.at(r, ""),
        name,
        format: ServiceFormat::V2,
        ingress,
        ingress_status: None,
        invoker_iam_disabled,
        custom_audiences,
        default_url_disabled,
        iap_enabled,
        service_account,
        vpc,
        env,
        volumes,
        tags,
        cloud_sql,
        iam: IamPolicy::default(),
    }
}

/// The Cloud SQL instances a service connects to: as written, else (unknown in the plan: a
/// `connection_name` is computed) `PROJECT:REGION:NAME` of each `google_sql_database_instance`
/// the configuration references at `refs`. An unknown value that references none is recorded.
fn cloud_sql_of(
    l: &mut Lower<'_, '_>,
    r: &Res<'_>,
    service: &str,
    written: Vec<&str>,
    (refs, unknown): (&[Seg<'_>], &[Seg<'_>]),
    attr: &str,
) -> Vec<CloudSqlConnection> {
    let at = l.at(r, attr);
    let mut out = crate::config::service::cloud_sql_connections(written, &at);
    if !out.is_empty() {
        return out;
    }
    for x in r.references_at(refs) {
        let Some(db) = l.plan.referenced(r, x, &["google_sql_database_instance"]) else { continue };
        let Some(name) = db.str("name") else { continue };
        let conn = db.str("connection_name").map_or_else(
            || {
                let project = db.str("project").unwrap_or(&l.project.id);
                let region = db.str("region").unwrap_or(&l.project.region);
                format!("{project}:{region}:{name}")
            },
            str::to_owned,
        );
        if !out.iter().any(|c: &CloudSqlConnection| c.connection_name == conn) {
            out.push(CloudSqlConnection { connection_name: conn, source: at.clone() });
        }
    }
    if out.is_empty() && r.is_unknown(unknown) {
        l.unknown(r, attr, Some(service), UnknownEffect::Database);
    }
    out
}

fn net_name(l: &Lower<'_, '_>, r: &Res<'_>, value: Option<&str>, path: &[Seg<'_>]) -> Option<String> {
    if let Some(n) = l.plan.follow_at(r, path, &["google_compute_network"]) {
        return n.str("name").map(str::to_owned);
    }
    let value = value?;
    let host = value.split("projects/").nth(1).and_then(|rest| rest.split('/').next());
    match host {
        Some(h) if !l.project.is_self(h) => Some(format!("{h}/{}", last_segment(value))),
        _ => Some(last_segment(value).to_owned()),
    }
}

/// A file mode as a decimal number; 0 means unset.
fn mode(v: &Value, key: &str) -> Option<u32> {
    v.get(key).and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok()).filter(|m| *m != 0 && *m <= 0o777)
}

fn traffic_tags(l: &Lower<'_, '_>, r: &Res<'_>) -> Vec<TrafficTag> {
    blocks(r.values, "traffic")
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            str_(t, "tag").map(|tag| TrafficTag { tag: tag.to_owned(), source: l.at(r, &format!("traffic[{i}].tag")) })
        })
        .collect()
}

fn v1(l: &mut Lower<'_, '_>, r: &Res<'_>, name: String) -> Service {
    let v = r.values;
    let region = r.str("location").map_or_else(|| l.project.region.clone(), str::to_owned);
    let meta = block(v, "metadata");
    let ann = |key: &str| map_str(meta, "annotations", &format!("{ANN}{key}"));
    let ann_attr = |key: &str| format!("metadata[0].annotations[\"{ANN}{key}\"]");
    let ingress = ingress_setting(l, r, ann("ingress"), &ann_attr("ingress"));
    let ingress_status = ann("ingress-status").map(|v| ingress_setting(l, r, Some(v), &ann_attr("ingress-status")));
    let bool_ann = |l: &Lower<'_, '_>, key: &str| match ann(key).map(str::to_ascii_lowercase).as_deref() {
        Some("true") => Setting::set(true, l.at(r, &ann_attr(key))),
        Some(_) => Setting::set(false, l.at(r, &ann_attr(key))),
        None => Setting::implied(false, l.at(r, "")),
    };
    let invoker_iam_disabled = bool_ann(l, "invoker-iam-disabled");
    let default_url_disabled = bool_ann(l, "default-url-disabled");
    let iap_enabled = bool_ann(l, "iap-enabled");
    let custom_audiences = match ann("custom-audiences").and_then(|a| serde_json::from_str::<Vec<String>>(a).ok()) {
        Some(list) => Setting::set(list, l.at(r, &ann_attr("custom-audiences"))),
        None => Setting::implied(Vec::new(), l.at(r, "")),
    };
    let mut urls: Vec<String> = Vec::new();
    for s in blocks(v, "status") {
        urls.extend(str_(s, "url").map(str::to_owned));
    }
    let empty = Value::Null;
    let t = block(v, "template").unwrap_or(&empty);
    let tmeta = block(t, "metadata");
    let tann = |key: &str| map_str(tmeta, "annotations", &format!("{ANN}{key}"));
    let tann_attr = |key: &str| format!("template[0].metadata[0].annotations[\"{ANN}{key}\"]");
    let spec = block(t, "spec").unwrap_or(&empty);
    let service_account = service_account(
        l,
        r,
        str_(spec, "service_account_name"),
        &["template", "spec", "service_account_name"],
        "template[0].spec[0].service_account_name",
    );

    let connector = tann("vpc-access-connector").map(str::to_owned).or_else(|| {
        let c = l.plan.follow(r, &["template", "metadata", "annotations"], CONNECTOR)?;
        c.str("name").map(str::to_owned)
    });
    let interface = tann("network-interfaces")
        .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
        .and_then(|list| list.into_iter().next());
    let egress = match tann("vpc-access-egress") {
        Some("all-traffic" | "all") => Some(VpcEgress::AllTraffic),
        Some("private-ranges-only") => Some(VpcEgress::PrivateRangesOnly),
        _ => None,
    };
    let vpc = if connector.is_some() || interface.is_some() {
        let (attr, network, subnetwork, tags) = match &interface {
            Some(i) => (
                tann_attr("network-interfaces"),
                str_(i, "network").map(|n| last_segment(n).to_owned()),
                str_(i, "subnetwork").map(str::to_owned),
                strings(i, "tags").into_iter().map(str::to_owned).collect(),
            ),
            None => (tann_attr("vpc-access-connector"), None, None, Vec::new()),
        };
        let spec = Vpc {
            connector,
            network,
            subnetwork,
            tags,
            egress: egress.map(|e| (e, tann_attr("vpc-access-egress"))),
            attr,
        };
        vpc_access(l, r, &name, spec)
    } else {
        None
    };

    // `run.googleapis.com/secrets: ALIAS:projects/N/secrets/NAME,...`
    let aliases: BTreeMap<String, String> = tann("secrets")
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter_map(|e| e.trim().split_once(':').map(|(a, p)| (a.to_owned(), p.to_owned())))
        .collect();
    let resolve = |l: &Lower<'_, '_>, name: &str, path: &[Seg<'_>], version: Option<String>| {
        let target = aliases.get(name).map_or(name, String::as_str);
        secret_ref(l, r, Some(target).filter(|t| !t.is_empty()), path, version)
    };

    let mut env = Vec::new();
    let mut mounts = BTreeMap::new();
    for (i, c) in blocks(spec, "containers").iter().enumerate() {
        let cname = str_(c, "name").map_or_else(|| format!("container-{i}"), str::to_owned);
        for m in blocks(c, "volume_mounts") {
            if let Some(n) = str_(m, "name") {
                mounts.insert(n.to_owned(), str_(m, "mount_path").map(str::to_owned));
            }
        }
        for (j, e) in blocks(c, "env").iter().enumerate() {
            let Some(ename) = str_(e, "name") else { continue };
            let attr = format!("template[0].spec[0].containers[{i}].env[{j}]");
            let value = match block(e, "value_from").and_then(|s| block(s, "secret_key_ref")) {
                Some(k) => {
                    // `env` is a set in the v1 schema: the configuration's block is found by name.
                    let list = [
                        Seg::Key("template"),
                        Seg::Index(0),
                        Seg::Key("spec"),
                        Seg::Index(0),
                        Seg::Key("containers"),
                        Seg::Index(i),
                        Seg::Key("env"),
                    ];
                    let j = r.config_block(&list, "name", ename).unwrap_or(j);
                    let path = [
                        Seg::Key("template"),
                        Seg::Index(0),
                        Seg::Key("spec"),
                        Seg::Index(0),
                        Seg::Key("containers"),
                        Seg::Index(i),
                        Seg::Key("env"),
                        Seg::Index(j),
                        Seg::Key("value_from"),
                        Seg::Index(0),
                        Seg::Key("secret_key_ref"),
                        Seg::Index(0),
                        Seg::Key("name"),
                    ];
                    match resolve(l, str_(k, "name").unwrap_or_default(), &path, num_or_str(k, "key")) {
                        Some(s) => EnvValue::Secret(s),
                        None => continue,
                    }
                }
                None => EnvValue::Plain(str_(e, "value").unwrap_or_default().to_owned()),
            };
            env.push(EnvVar { container: cname.clone(), name: ename.to_owned(), value, source: l.at(r, &attr) });
        }
    }
    let mut volumes = Vec::new();
    for (i, vol) in blocks(spec, "volumes").iter().enumerate() {
        let (Some(vname), Some(s)) = (str_(vol, "name"), block(vol, "secret")) else { continue };
        let attr = format!("template[0].spec[0].volumes[{i}]");
        let path = [
            Seg::Key("template"),
            Seg::Index(0),
            Seg::Key("spec"),
            Seg::Index(0),
            Seg::Key("volumes"),
            Seg::Index(i),
            Seg::Key("secret"),
            Seg::Index(0),
            Seg::Key("secret_name"),
        ];
        let secret_name = str_(s, "secret_name").unwrap_or_default();
        let items = blocks(s, "items");
        let (mut files, mut paths, mut modes) = (Vec::new(), Vec::new(), Vec::new());
        if items.is_empty()
            && let Some(f) = resolve(l, secret_name, &path, None)
        {
            paths.push(f.secret.clone());
            files.push(f);
            modes.push(None);
        }
        for it in items {
            if let Some(f) = resolve(l, secret_name, &path, num_or_str(it, "key")) {
                files.push(f);
                paths.push(str_(it, "path").unwrap_or_default().to_owned());
                modes.push(mode(it, "mode"));
            }
        }
        volumes.push(SecretVolume {
            mount_path: mounts.get(vname).cloned().flatten(),
            name: vname.to_owned(),
            files,
            paths,
            modes,
            default_mode: mode(s, "default_mode"),
            source: l.at(r, &attr),
        });
    }
    let cloud_sql_key = format!("{ANN}cloudsql-instances");
    let annotations =
        [Seg::Key("template"), Seg::Index(0), Seg::Key("metadata"), Seg::Index(0), Seg::Key("annotations")];
    let mut annotation = annotations.to_vec();
    annotation.push(Seg::Key(&cloud_sql_key));
    let written: Vec<&str> = tann("cloudsql-instances").map(|v| v.split(',').collect()).unwrap_or_default();
    let cloud_sql = cloud_sql_of(l, r, &name, written, (&annotations, &annotation), &tann_attr("cloudsql-instances"));
    let tags = traffic_tags(l, r);
    Service {
        urls: crate::config::service::service_urls(&name, &l.project.number, &region, urls),
        source: l.at(r, ""),
        name,
        format: ServiceFormat::KnativeV1,
        ingress,
        ingress_status,
        invoker_iam_disabled,
        custom_audiences,
        default_url_disabled,
        iap_enabled,
        service_account,
        vpc,
        env,
        volumes,
        tags,
        cloud_sql,
        iam: IamPolicy::default(),
    }
}
