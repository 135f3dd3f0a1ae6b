//! Lowering Cloud Run service exports (v1 Knative YAML and v2 JSON) into `model::Service`.
//!
//! Both forms become the same model: the analysis and the front door never know which form a
//! service came from. Missing settings take Cloud Run's defaults (ingress `all`, the default
//! compute service account, `private-ranges-only` egress) and remember that they were implied.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use crate::config::diag::{ConfigError, FileCtx};
use crate::config::project::{resolve_network, unknown_network};
use crate::config::raw::{KService, NetworkInterface, Str, V2Service};
use crate::model::{
    CloudSqlConnection, EnvValue, EnvVar, IamPolicy, Ingress, NetworkRef, Project, SecretRef, SecretVolume, Service,
    ServiceFormat, Setting, TrafficTag, VpcAccess, VpcAttachment, VpcEgress,
};
use crate::source::SourceRef;

const ANN: &str = "run.googleapis.com/";

pub(crate) fn lower_v1(ctx: &FileCtx, k: KService, project: &Project, errs: &mut Vec<ConfigError>) -> Option<Service> {
    if let Some(kind) = &k.kind
        && kind.value != "Service"
    {
        errs.push(ctx.error(
            &ctx.at(&kind.referenced),
            format!("expected a Cloud Run `Service`, found kind `{}`", kind.value),
            "services/ holds `gcloud run services describe NAME --format yaml` exports only",
        ));
        return None;
    }
    if let Some(api) = &k.api_version
        && api.value != "serving.knative.dev/v1"
    {
        errs.push(ctx.error(
            &ctx.at(&api.referenced),
            format!("apiVersion `{}` is not supported", api.value),
            "export the service with `gcloud run services describe NAME --format yaml` (serving.knative.dev/v1)",
        ));
        return None;
    }
    let name = k.metadata.name.value.clone();
    let source = ctx.at(&k.metadata.name.referenced);
    if let Some(ns) = &k.metadata.namespace
        && !project.is_self(&ns.value.0)
    {
        errs.push(ctx.error(
            &ctx.at(&ns.referenced),
            format!(
                "service `{name}` belongs to project `{}`, not to `{}` ({})",
                ns.value.0, project.id, project.number
            ),
            "export services of the project named in moat.yaml only, or fix `project.number` there",
        ));
    }
    let ann = &k.metadata.annotations;
    let get = |key: &str| ann.get(&format!("{ANN}{key}"));
    let ingress = match get("ingress") {
        Some(v) => match Ingress::parse(&v.value.0) {
            Some(i) => Setting::set(i, ctx.at(&v.referenced)),
            None => {
                errs.push(bad_ingress(ctx, v));
                return None;
            }
        },
        None => Setting::implied(Ingress::All, source.clone()),
    };
    // Written by the server, so an unknown value means an export moat does not understand:
    // an error, never a silent fall-back to the desired setting.
    let ingress_status = match get("ingress-status") {
        Some(v) => match Ingress::parse(&v.value.0) {
            Some(i) => Some(Setting::set(i, ctx.at(&v.referenced))),
            None => {
                errs.push(ctx.error(
                    &ctx.at(&v.referenced),
                    format!("`{ANN}ingress-status` `{}` is not a known ingress setting", v.value.0),
                    "export the service again with `gcloud run services describe NAME --format yaml` (the server writes this annotation; its values are `all`, `internal` and `internal-and-cloud-load-balancing`)",
                ));
                return None;
            }
        },
        None => None,
    };
    let invoker_iam_disabled = bool_annotation(ctx, get("invoker-iam-disabled"), &source, errs);
    let default_url_disabled = bool_annotation(ctx, get("default-url-disabled"), &source, errs);
    let iap_enabled = bool_annotation(ctx, get("iap-enabled"), &source, errs);
    let custom_audiences = match get("custom-audiences") {
        Some(v) => match serde_json::from_str::<Vec<String>>(&v.value.0) {
            Ok(list) => Setting::set(list, ctx.at(&v.referenced)),
            Err(e) => {
                errs.push(ctx.error(
                    &ctx.at(&v.referenced),
                    format!("`{ANN}custom-audiences` is not a JSON array of strings: {e}"),
                    "write it as gcloud does: '[\"https://api.example.com\"]'",
                ));
                Setting::implied(Vec::new(), source.clone())
            }
        },
        None => Setting::implied(Vec::new(), source.clone()),
    };
    let mut urls: Vec<String> = match get("urls") {
        Some(v) => match serde_json::from_str::<Vec<String>>(&v.value.0) {
            Ok(list) => list,
            Err(e) => {
                // The URLs are token audiences: dropping a malformed list would refuse tokens
                // Cloud Run accepts, or hide a URL from `check`.
                errs.push(ctx.error(
                    &ctx.at(&v.referenced),
                    format!("`{ANN}urls` is not a JSON array of strings: {e}"),
                    "export the service again with `gcloud run services describe NAME --format yaml`, or write it as '[\"https://NAME-HASH-uc.a.run.app\"]'",
                ));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    if let Some(status) = &k.status {
        urls.extend(status.url.clone());
        urls.extend(status.address.as_ref().and_then(|a| a.url.clone()));
    }
    let region =
        k.metadata.labels.get("cloud.googleapis.com/location").map_or_else(|| project.region.clone(), |r| r.0.clone());

    let spec = k.spec.unwrap_or_default();
    let template = spec.template.unwrap_or_default();
    let tann = template.metadata.map(|m| m.annotations).unwrap_or_default();
    let tget = |key: &str| tann.get(&format!("{ANN}{key}"));
    let rev = template.spec.unwrap_or_default();

    let service_account = service_account(project, rev.service_account_name, &source);
    let aliases = secret_aliases(ctx, tget("secrets"), errs);
    let resolve = |name: &str, version: String| -> SecretRef {
        match aliases.get(name) {
            Some((project, secret)) => SecretRef { project: Some(project.clone()), secret: secret.clone(), version },
            None => SecretRef { project: None, secret: name.to_owned(), version },
        }
    };

    let vpc = {
        let egress = tget("vpc-access-egress");
        let connector = tget("vpc-access-connector").map(|c| (c.value.0.clone(), ctx.at(&c.referenced)));
        let interfaces = match tget("network-interfaces") {
            Some(v) => match serde_json::from_str::<Vec<NetworkInterface>>(&v.value.0) {
                Ok(list) => Some((list, ctx.at(&v.referenced))),
                Err(e) => {
                    errs.push(ctx.error(
                        &ctx.at(&v.referenced),
                        format!("`{ANN}network-interfaces` is not a JSON list of interfaces: {e}"),
                        "write it as gcloud does: '[{\"network\": \"default\", \"subnetwork\": \"default\"}]'",
                    ));
                    None
                }
            },
            None => None,
        };
        let egress = match egress {
            Some(v) => match v.value.0.as_str() {
                "private-ranges-only" => Some(Setting::set(VpcEgress::PrivateRangesOnly, ctx.at(&v.referenced))),
                // `all` is gcloud's deprecated alias of `all-traffic`.
                "all-traffic" | "all" => Some(Setting::set(VpcEgress::AllTraffic, ctx.at(&v.referenced))),
                other => {
                    errs.push(ctx.error(
                        &ctx.at(&v.referenced),
                        format!("`{ANN}vpc-access-egress` value `{other}` is not known"),
                        "use `private-ranges-only` or `all-traffic`",
                    ));
                    None
                }
            },
            None => None,
        };
        vpc_access(ctx, project, connector, interfaces, egress, errs)
    };

    let mut env = Vec::new();
    let mut mounts = BTreeMap::new();
    for (i, c) in rev.containers.into_iter().enumerate() {
        let cname = c.name.unwrap_or_else(|| format!("container-{i}"));
        for m in c.volume_mounts {
            mounts.insert(m.name, m.mount_path);
        }
        for e in c.env {
            let src = ctx.at(&e.referenced);
            let e = e.value;
            let value = match (e.value_from.and_then(|v| v.secret_key_ref), e.value) {
                (Some(r), _) => EnvValue::Secret(resolve(&r.name, r.key.0)),
                (None, v) => EnvValue::Plain(v.map(|s| s.0).unwrap_or_default()),
            };
            env.push(EnvVar { container: cname.clone(), name: e.name, value, source: src });
        }
    }
    let volumes = rev
        .volumes
        .into_iter()
        .filter_map(|v| {
            let src = ctx.at(&v.referenced);
            let v = v.value;
            let s = v.secret?;
            let default_mode = file_mode(ctx, s.default_mode.as_ref(), &src, errs);
            let (files, paths, modes) = if s.items.is_empty() {
                (vec![resolve(&s.secret_name, "latest".to_owned())], vec![s.secret_name.clone()], vec![None])
            } else {
                let mut out = (Vec::new(), Vec::new(), Vec::new());
                for it in s.items {
                    out.2.push(file_mode(ctx, it.mode.as_ref(), &src, errs));
                    out.0.push(resolve(&s.secret_name, it.key.0));
                    out.1.push(it.path);
                }
                out
            };
            Some(SecretVolume {
                mount_path: mounts.get(&v.name).cloned().flatten(),
                name: v.name,
                files,
                paths,
                modes,
                default_mode,
                source: src,
            })
        })
        .collect();
    let tags = spec
        .traffic
        .into_iter()
        .filter_map(|t| t.tag.map(|tag| TrafficTag { tag: tag.value, source: ctx.at(&tag.referenced) }))
        .collect();
    // `run.googleapis.com/cloudsql-instances: PROJECT:REGION:INSTANCE,...`
    let cloud_sql = tget("cloudsql-instances")
        .map(|v| cloud_sql_connections(v.value.0.split(','), &ctx.at(&v.referenced)))
        .unwrap_or_default();

    Some(Service {
        urls: service_urls(&name, &project.number, &region, urls),
        name,
        format: ServiceFormat::KnativeV1,
        source,
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
    })
}

pub(crate) fn lower_v2(ctx: &FileCtx, v: V2Service, project: &Project, errs: &mut Vec<ConfigError>) -> Option<Service> {
    // `projects/P/locations/L/services/NAME`, or a bare name in hand-written files.
    let full = v.name.value.clone();
    let parts: Vec<&str> = full.split('/').collect();
    let (name, region) = match parts.as_slice() {
        ["projects", p, "locations", l, "services", n] => {
            if !project.is_self(p) {
                errs.push(ctx.error(
                    &ctx.at(&v.name.referenced),
                    format!("service `{n}` belongs to project `{p}`, not to `{}`", project.id),
                    "export services of the project named in moat.yaml only",
                ));
            }
            ((*n).to_owned(), (*l).to_owned())
        }
        [n] => ((*n).to_owned(), project.region.clone()),
        _ => {
            errs.push(ctx.error(
                &ctx.at(&v.name.referenced),
                format!("`{full}` is not a service name"),
                "expected `projects/PROJECT/locations/REGION/services/NAME`",
            ));
            return None;
        }
    };
    let source = ctx.at(&v.name.referenced);
    let ingress = match &v.ingress {
        // Output-only "no active revision": nothing serves, so nothing is admitted.
        Some(i) if i.value == "INGRESS_TRAFFIC_UNSPECIFIED" => Setting::set(Ingress::None, ctx.at(&i.referenced)),
        Some(i) => match Ingress::parse(&i.value) {
            Some(x) => Setting::set(x, ctx.at(&i.referenced)),
            None => {
                errs.push(ctx.error(
                    &ctx.at(&i.referenced),
                    format!("ingress `{}` is not known", i.value),
                    "use INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
                ));
                return None;
            }
        },
        None => Setting::implied(Ingress::All, source.clone()),
    };
    let flag = |f: Option<Spanned<bool>>| match f {
        Some(b) => Setting::set(b.value, ctx.at(&b.referenced)),
        None => Setting::implied(false, source.clone()),
    };
    let custom_audiences = match v.custom_audiences {
        Some(a) => Setting::set(a.value, ctx.at(&a.referenced)),
        None => Setting::implied(Vec::new(), source.clone()),
    };
    let mut urls = v.urls;
    urls.extend(v.uri);
    let t = v.template.unwrap_or_default();
    let service_account = service_account(project, t.service_account, &source);
    let resolve = |secret: &str, version: Option<Str>| -> SecretRef {
        let version = version.map_or_else(|| "latest".to_owned(), |s| s.0);
        match secret.strip_prefix("projects/").and_then(|r| r.split_once("/secrets/")) {
            Some((p, s)) if !project.is_self(p) => {
                SecretRef { project: Some(p.to_owned()), secret: s.to_owned(), version }
            }
            Some((_, s)) => SecretRef { project: None, secret: s.to_owned(), version },
            None => SecretRef { project: None, secret: secret.to_owned(), version },
        }
    };
    let vpc = t.vpc_access.and_then(|a| {
        let at = ctx.at(&a.referenced);
        let a = a.value;
        let egress = match a.egress {
            Some(e) => match e.value.as_str() {
                "ALL_TRAFFIC" => Some(Setting::set(VpcEgress::AllTraffic, ctx.at(&e.referenced))),
                "PRIVATE_RANGES_ONLY" | "VPC_EGRESS_UNSPECIFIED" => {
                    Some(Setting::set(VpcEgress::PrivateRangesOnly, ctx.at(&e.referenced)))
                }
                other => {
                    errs.push(ctx.error(
                        &ctx.at(&e.referenced),
                        format!("vpcAccess egress `{other}` is not known"),
                        "use ALL_TRAFFIC or PRIVATE_RANGES_ONLY",
                    ));
                    None
                }
            },
            None => None,
        };
        let interfaces = (!a.network_interfaces.is_empty()).then(|| (a.network_interfaces, at.clone()));
        vpc_access(ctx, project, a.connector.map(|c| (c, at.clone())), interfaces, egress, errs)
    });
    let mut env = Vec::new();
    let mut mounts = BTreeMap::new();
    for (i, c) in t.containers.into_iter().enumerate() {
        let cname = c.name.unwrap_or_else(|| format!("container-{i}"));
        for m in c.volume_mounts {
            mounts.insert(m.name, m.mount_path);
        }
        for e in c.env {
            let src = ctx.at(&e.referenced);
            let e = e.value;
            let value = match (e.value_source.and_then(|s| s.secret_key_ref), e.value) {
                (Some(r), _) => EnvValue::Secret(resolve(&r.secret, r.version)),
                (None, v) => EnvValue::Plain(v.map(|s| s.0).unwrap_or_default()),
            };
            env.push(EnvVar { container: cname.clone(), name: e.name, value, source: src });
        }
    }
    let cloud_sql = t
        .volumes
        .iter()
        .filter_map(|vol| {
            let c = vol.value.cloud_sql_instance.as_ref()?;
            Some(cloud_sql_connections(c.instances.iter().map(String::as_str), &ctx.at(&vol.referenced)))
        })
        .flatten()
        .collect();
    let volumes = t
        .volumes
        .into_iter()
        .filter_map(|vol| {
            let src = ctx.at(&vol.referenced);
            let vol = vol.value;
            let s = vol.secret?;
            let default_mode = file_mode(ctx, s.default_mode.as_ref(), &src, errs);
            let (files, paths, modes) = if s.items.is_empty() {
                let r = resolve(&s.secret, None);
                let path = r.secret.clone();
                (vec![r], vec![path], vec![None])
            } else {
                let mut out = (Vec::new(), Vec::new(), Vec::new());
                for it in s.items {
                    out.2.push(file_mode(ctx, it.mode.as_ref(), &src, errs));
                    out.0.push(resolve(&s.secret, it.version));
                    out.1.push(it.path);
                }
                out
            };
            Some(SecretVolume {
                mount_path: mounts.get(&vol.name).cloned().flatten(),
                name: vol.name,
                files,
                paths,
                modes,
                default_mode,
                source: src,
            })
        })
        .collect();
    let tags = v
        .traffic
        .into_iter()
        .filter_map(|t| {
            t.tag
                .filter(|t| !t.value.is_empty())
                .map(|tag| TrafficTag { tag: tag.value, source: ctx.at(&tag.referenced) })
        })
        .collect();
    let invoker_iam_disabled = flag(v.invoker_iam_disabled);
    let default_url_disabled = flag(v.default_uri_disabled);
    let iap_enabled = flag(v.iap_enabled);
    Some(Service {
        urls: service_urls(&name, &project.number, &region, urls),
        name,
        format: ServiceFormat::V2,
        source,
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
    })
}

/// Cloud SQL connection names as written, blanks dropped, each pointing at where it is written.
pub(crate) fn cloud_sql_connections<'s>(
    names: impl IntoIterator<Item = &'s str>,
    at: &SourceRef,
) -> Vec<CloudSqlConnection> {
    names
        .into_iter()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| CloudSqlConnection { connection_name: n.to_owned(), source: at.clone() })
        .collect()
}

/// A secret volume's `defaultMode` or an item's `mode`: permission bits as a decimal number
/// (`292` for 0444), as the API and gcloud write them. 0 means unset.
fn file_mode(ctx: &FileCtx, mode: Option<&Str>, at: &SourceRef, errs: &mut Vec<ConfigError>) -> Option<u32> {
    let text = &mode?.0;
    match text.parse::<u32>() {
        Ok(0) => None,
        Ok(m) if m <= 0o777 => Some(m),
        _ => {
            errs.push(ctx.error(
                at,
                format!("secret volume file mode `{text}` is not a file mode"),
                "write the permission bits as a decimal number from 0 to 511, e.g. 292 for 0444 or 256 for 0400",
            ));
            None
        }
    }
}

fn bad_ingress(ctx: &FileCtx, v: &Spanned<Str>) -> ConfigError {
    ctx.error(
        &ctx.at(&v.referenced),
        format!("ingress `{}` is not known", v.value.0),
        "use `all`, `internal` or `internal-and-cloud-load-balancing`",
    )
}

/// gcloud writes `'True'`/`'False'`, the server echoes `'true'`: compare case-insensitively.
fn bool_annotation(
    ctx: &FileCtx,
    v: Option<&Spanned<Str>>,
    service: &SourceRef,
    errs: &mut Vec<ConfigError>,
) -> Setting<bool> {
    match v {
        None => Setting::implied(false, service.clone()),
        Some(v) => match v.value.0.to_ascii_lowercase().as_str() {
            "true" => Setting::set(true, ctx.at(&v.referenced)),
            "false" => Setting::set(false, ctx.at(&v.referenced)),
            other => {
                errs.push(ctx.error(
                    &ctx.at(&v.referenced),
                    format!("`{other}` is not a boolean"),
                    "use 'true' or 'false'",
                ));
                Setting::set(false, ctx.at(&v.referenced))
            }
        },
    }
}

fn service_account(project: &Project, sa: Option<Spanned<String>>, service: &SourceRef) -> Setting<String> {
    match sa {
        Some(s) if !s.value.is_empty() => {
            Setting::set(s.value.to_ascii_lowercase(), SourceRef::from_location(&service.file, &s.referenced))
        }
        _ => Setting::implied(project.default_compute_sa(), service.clone()),
    }
}

/// `run.googleapis.com/secrets: 'ALIAS:projects/N/secrets/NAME,...'` → alias → (project, secret).
fn secret_aliases(
    ctx: &FileCtx,
    v: Option<&Spanned<Str>>,
    errs: &mut Vec<ConfigError>,
) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return out };
    for entry in v.value.0.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once(':').and_then(|(alias, path)| {
            let rest = path.strip_prefix("projects/")?;
            let (p, s) = rest.split_once("/secrets/")?;
            Some((alias.to_owned(), (p.to_owned(), s.to_owned())))
        });
        match parsed {
            Some((alias, target)) => {
                out.insert(alias, target);
            }
            None => errs.push(ctx.error(
                &ctx.at(&v.referenced),
                format!("secret alias `{entry}` is not `ALIAS:projects/PROJECT_NUMBER/secrets/NAME`"),
                "let gcloud write this annotation (`--set-secrets`), or follow its format",
            )),
        }
    }
    out
}

fn vpc_access(
    ctx: &FileCtx,
    project: &Project,
    connector: Option<(String, SourceRef)>,
    interfaces: Option<(Vec<NetworkInterface>, SourceRef)>,
    egress: Option<Setting<VpcEgress>>,
    errs: &mut Vec<ConfigError>,
) -> Option<VpcAccess> {
    let (attachment, network, source) = if let Some((c, at)) = connector {
        let short = c.rsplit('/').next().unwrap_or(&c).to_owned();
        let Some(decl) = project.connectors.iter().find(|k| k.name == short) else {
            errs.push(ctx.error(
                &at,
                format!("VPC connector `{short}` is not declared"),
                "add it under `connectors:` in moat.yaml with the network it sits in, e.g. `{name: NAME, network: default}`",
            ));
            return None;
        };
        (VpcAttachment::Connector { name: short }, decl.network.clone(), at)
    } else if let Some((list, at)) = interfaces {
        let mut it = list.into_iter();
        let (Some(first), None) = (it.next(), it.next()) else {
            errs.push(ctx.error(
                &at,
                "Direct VPC egress takes exactly one network interface",
                "keep a single interface",
            ));
            return None;
        };
        let network = match (&first.network, &first.subnetwork) {
            (Some(n), _) => resolve_network(project, n),
            (None, Some(s)) => network_of_subnet(project, s),
            (None, None) => None,
        };
        let Some(network) = network else {
            let what = first.network.or(first.subnetwork).unwrap_or_default();
            errs.push(unknown_network(ctx, &at, &what));
            return None;
        };
        (VpcAttachment::Direct { subnetwork: first.subnetwork, tags: first.tags }, network, at)
    } else {
        // An egress setting without a connector or interface has no effect (gcloud clears it
        // together with the interfaces).
        return None;
    };
    let egress = egress.unwrap_or_else(|| Setting::implied(VpcEgress::PrivateRangesOnly, source.clone()));
    Some(VpcAccess { attachment, network, egress, source })
}

fn network_of_subnet(project: &Project, subnet: &str) -> Option<NetworkRef> {
    if let Some(rest) = subnet.strip_prefix("projects/") {
        // projects/HOST/regions/R/subnetworks/S: a Shared VPC subnet; the host must have one
        // declared network for the subnet's network to be known.
        let host = rest.split('/').next()?;
        let mut nets = project.shared_vpc.iter().filter(|s| s.network.project == host);
        return match (nets.next(), nets.next()) {
            (Some(one), None) => Some(one.network.clone()),
            _ => None,
        };
    }
    project
        .networks
        .iter()
        .find(|n| n.subnets.iter().any(|s| s.name == subnet))
        .map(|n| NetworkRef { project: project.id.clone(), network: n.name.clone() })
}

/// The service's run.app URLs: the deterministic form first, then those the export lists.
pub(crate) fn service_urls(name: &str, number: &str, region: &str, listed: Vec<String>) -> Vec<String> {
    let mut urls = vec![format!("https://{name}-{number}.{region}.run.app")];
    for u in listed {
        let u = u.trim_end_matches('/').to_owned();
        if !u.is_empty() && !urls.contains(&u) {
            urls.push(u);
        }
    }
    urls
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests fail on an input that does not load")]
mod tests {
    use crate::model::{Project, SecretVolume};
    use crate::source::SourceFile;

    fn load(file: &str, text: &str) -> Result<Project, Vec<String>> {
        let files = [
            SourceFile { path: "moat.yaml".into(), text: "project: {id: p, number: '1', region: r}\n".into() },
            SourceFile { path: file.into(), text: text.into() },
        ];
        crate::load(&files).map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    fn volume(file: &str, text: &str) -> SecretVolume {
        let p = load(file, text).unwrap_or_else(|e| panic!("{e:?}"));
        p.services.values().next().and_then(|s| s.volumes.first()).cloned().unwrap_or_else(|| panic!("no volume"))
    }

    #[test]
    fn secret_file_modes_follow_items_then_default_mode_then_0444_never_writable() {
        let v1 = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    spec:\n      containers:\n      - image: i\n        volumeMounts:\n        - {name: v, mountPath: /s}\n      volumes:\n      - name: v\n        secret:\n          secretName: k\n          defaultMode: 438\n          items:\n          - {key: latest, path: a, mode: 256}\n          - {key: '2', path: b}\n";
        let vol = volume("services/s.yaml", v1);
        // 0400 as written; 0666 (defaultMode) loses its write bits.
        assert_eq!((vol.file_mode(0), vol.file_mode(1)), (0o400, 0o444));
        assert_eq!(vol.mount_path.as_deref(), Some("/s"));
        let v2 = r#"{"name": "t", "template": {"containers": [{"image": "i", "volumeMounts": [{"name": "v", "mountPath": "/s"}]}], "volumes": [{"name": "v", "secret": {"secret": "k", "defaultMode": 0}}]}}"#;
        let vol = volume("services/t.json", v2);
        assert_eq!(vol.paths, ["k"]);
        assert_eq!(vol.file_mode(0), 0o444);
        let errs = load("services/t.json", &v2.replace("\"defaultMode\": 0", "\"defaultMode\": 1000")).err();
        assert!(
            errs.iter().flatten().any(|e| e.contains("services/t.json:1:") && e.contains("file mode `1000`")),
            "{errs:?}"
        );
    }
}
