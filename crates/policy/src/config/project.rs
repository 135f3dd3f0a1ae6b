//! Lowering `moat.yaml` into the project skeleton (everything but services and their policies).

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::config::diag::{ConfigError, FileCtx};
use crate::config::iam::lower_policy;
use crate::config::raw::{RawListeners, RawMoat, RawRun, RawSeed};
use crate::model::{
    Acceptance, Binding, Connector, DomainMapping, EPHEMERAL_LISTENER, Group, IamPolicy, LbRoute, LbScheme, Listeners,
    LoadBalancer, Member, MemberRef, Network, NetworkRef, Perimeter, Project, RunSpec, RunTarget, Secret, Seed,
    ServiceAccount, SharedVpc, Subnet, default_compute_sa,
};
use crate::request::GoogleProduct;

mod egress;
mod geo;

pub(crate) fn lower_project(ctx: &FileCtx, raw: RawMoat, errs: &mut Vec<ConfigError>) -> Project {
    let p = raw.project.value;
    let id = p.id.value;
    let number = p.number.value.0;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        errs.push(ctx.error(
            &ctx.at(&p.number.referenced),
            format!("project number `{number}` is not a number"),
            "use the numeric project number (`gcloud projects describe PROJECT --format 'value(projectNumber)'`)",
        ));
    }
    let project_src = ctx.at(&raw.project.referenced);

    let networks: Vec<Network> = raw
        .networks
        .into_iter()
        .map(|n| {
            let source = ctx.at(&n.referenced);
            let subnets = n
                .value
                .subnets
                .into_iter()
                .filter_map(|s| {
                    let src = ctx.at(&s.referenced);
                    let s = s.value;
                    match s.range.value.parse::<IpNet>() {
                        Ok(range) => Some(Subnet {
                            name: s.name,
                            region: s.region,
                            range,
                            private_google_access: s.private_google_access,
                            source: src,
                        }),
                        Err(_) => {
                            errs.push(ctx.error(
                                &ctx.at(&s.range.referenced),
                                format!("`{}` is not a CIDR range", s.range.value),
                                "write the subnet range as an address and prefix length, e.g. `10.0.0.0/24`",
                            ));
                            None
                        }
                    }
                })
                .collect();
            let firewall = egress::lower_firewall(ctx, &n.value.name.value, n.value.firewall, errs);
            Network { name: n.value.name.value, subnets, nat: n.value.nat, firewall, source }
        })
        .collect();
    egress::check_rule_names(ctx, &networks, errs);
    let shared_vpc: Vec<SharedVpc> = raw
        .shared_vpc
        .into_iter()
        .map(|s| SharedVpc {
            source: ctx.at(&s.referenced),
            network: NetworkRef { project: s.value.host_project, network: s.value.network },
        })
        .collect();

    let mut project = Project {
        id: id.clone(),
        number: number.clone(),
        region: p.region.value,
        source: project_src.clone(),
        networks,
        egress: egress::lower_egress(ctx, raw.egress, errs),
        geo: geo::lower_geo(ctx, raw.geo, errs),
        shared_vpc,
        connectors: Vec::new(),
        perimeter: None,
        load_balancers: Vec::new(),
        domain_mappings: Vec::new(),
        groups: BTreeMap::new(),
        iam: IamPolicy::default(),
        service_accounts: Vec::new(),
        secrets: BTreeMap::new(),
        run: BTreeMap::new(),
        listeners: Listeners::default(),
        services: BTreeMap::new(),
        armor_policies: BTreeMap::new(),
        accepted: Vec::new(),
        rate_limit_state: None,
        trusted_issuers: Vec::new(),
        unknowns: Vec::new(),
        sql_instances: Vec::new(),
        service_account_iam: std::collections::BTreeMap::new(),
    };

    for c in raw.connectors {
        let at = ctx.at(&c.value.network.referenced);
        if let Some(network) = resolve_network(&project, &c.value.network.value) {
            project.connectors.push(Connector { name: c.value.name, network, source: ctx.at(&c.referenced) });
        } else {
            errs.push(unknown_network(ctx, &at, &c.value.network.value));
        }
    }

    if let Some(name) = raw.vpc_sc_perimeter {
        let mut projects = vec![id.clone(), number.clone()];
        projects.extend(raw.vpc_sc_perimeter_projects.into_iter().map(|p| p.value.0));
        project.perimeter = Some(Perimeter { name: name.value, projects, source: ctx.at(&name.referenced) });
    } else if let Some(first) = raw.vpc_sc_perimeter_projects.first() {
        errs.push(ctx.error(
            &ctx.at(&first.referenced),
            "`vpc_sc_perimeter_projects` without `vpc_sc_perimeter`",
            "name the perimeter with `vpc_sc_perimeter: NAME` or remove the project list",
        ));
    }

    for lb in raw.load_balancers {
        let source = ctx.at(&lb.referenced);
        let lb = lb.value;
        let scheme = match lb.scheme.value.as_str() {
            "external" => LbScheme::External,
            "internal" => LbScheme::Internal,
            other => {
                errs.push(ctx.error(
                    &ctx.at(&lb.scheme.referenced),
                    format!("load balancer scheme `{other}` is not known"),
                    "use `external` or `internal`",
                ));
                continue;
            }
        };
        let network = match (&lb.network, scheme) {
            (Some(n), LbScheme::Internal) => {
                let r = resolve_network(&project, &n.value);
                if r.is_none() {
                    errs.push(unknown_network(ctx, &ctx.at(&n.referenced), &n.value));
                }
                r
            }
            (None, LbScheme::Internal) => {
                errs.push(ctx.error(
                    &source,
                    format!("internal load balancer `{}` has no `network`", lb.name.value),
                    "an internal load balancer is reachable only from its VPC network: add `network: NAME`",
                ));
                None
            }
            (Some(n), LbScheme::External) => {
                errs.push(ctx.error(
                    &ctx.at(&n.referenced),
                    "`network` is only meaningful for an internal load balancer",
                    "remove `network`, or set `scheme: internal`",
                ));
                None
            }
            (None, LbScheme::External) => None,
        };
        project.load_balancers.push(LoadBalancer {
            name: lb.name.value,
            scheme,
            network,
            hosts: lb.hosts,
            security_policy: lb.security_policy.map(|s| s.value),
            iap: lb.iap,
            routes: lb
                .routes
                .into_iter()
                .map(|r| LbRoute {
                    path: r.value.path,
                    service: r.value.service.value,
                    source: ctx.at(&r.value.service.referenced),
                })
                .collect(),
            source,
        });
    }

    for d in raw.domain_mappings {
        project.domain_mappings.push(DomainMapping {
            domain: d.value.domain.value.to_ascii_lowercase(),
            service: d.value.service.value,
            source: ctx.at(&d.value.service.referenced),
        });
    }

    for g in raw.groups {
        let source = ctx.at(&g.referenced);
        let email = g.value.email.value.to_ascii_lowercase();
        let mut members = Vec::new();
        for m in g.value.members {
            let at = ctx.at(&m.referenced);
            match Member::parse(&m.value) {
                Ok(member) => members.push(MemberRef { member, source: at }),
                Err(e) => {
                    errs.push(ctx.error(&at, e, "group members use IAM member syntax, e.g. `user:dev@example.com`"))
                }
            }
        }
        if project
            .groups
            .insert(email.clone(), Group { email: email.clone(), members, source: source.clone() })
            .is_some()
        {
            errs.push(ctx.error(&source, format!("group `{email}` is declared twice"), "merge the two member lists"));
        }
    }

    project.iam = raw.iam.map(|p| lower_policy(ctx, p, errs)).unwrap_or_default();
    if p.automatic_default_sa_grants.unwrap_or(true) {
        // Google grants the default compute service account Editor on the project when the
        // Compute API is enabled, unless the org policy `iam.automaticIamGrantsForDefaultServiceAccounts`
        // is enforced (spec/cloudrun.md §4).
        project.iam.bindings.push(Binding {
            role: "roles/editor".to_owned(),
            members: vec![MemberRef {
                member: Member::ServiceAccount(default_compute_sa(&number)),
                source: project_src.clone(),
            }],
            condition: None,
            source: project_src,
            implied: true,
        });
    }

    for sa in raw.service_accounts {
        let email = sa.value.email.value.to_ascii_lowercase();
        if let Some(p) = sa.value.iam {
            let policy = lower_policy(ctx, p, errs);
            project.service_account_iam.entry(email.clone()).or_default().bindings.extend(policy.bindings);
        }
        project.service_accounts.push(ServiceAccount { email, source: ctx.at(&sa.referenced) });
    }
    for s in raw.secrets {
        let source = ctx.at(&s.referenced);
        let name = s.value.name.value;
        let iam = s.value.iam.map(|p| lower_policy(ctx, p, errs)).unwrap_or_default();
        let seed = s.value.seed.and_then(|seed| lower_seed(ctx, seed, errs));
        let secret = Secret { name: name.clone(), iam, seed, source: source.clone() };
        if project.secrets.insert(name.clone(), secret).is_some() {
            errs.push(ctx.error(&source, format!("secret `{name}` is declared twice"), "keep one entry per secret"));
        }
    }
    for a in raw.accept {
        let source = ctx.at(&a.referenced);
        let a = a.value;
        if crate::check::rule(&a.rule.value).is_none() {
            let ids: Vec<&str> = crate::check::RULES.iter().map(|r| r.id).collect();
            errs.push(ctx.error(
                &ctx.at(&a.rule.referenced),
                format!("`{}` is not a moat check rule", a.rule.value),
                format!("use one of {}", ids.join(", ")),
            ));
            continue;
        }
        if a.reason.value.trim().is_empty() {
            errs.push(ctx.error(
                &ctx.at(&a.reason.referenced),
                format!("accepting `{}` needs a reason", a.rule.value),
                "say why the risk is acceptable, so that the next reviewer can tell whether it still is",
            ));
            continue;
        }
        project.accepted.push(Acceptance {
            rule: a.rule.value,
            service: a.service.map(|s| s.value),
            reason: a.reason.value,
            source,
        });
    }
    for (service, r) in raw.run {
        let source = ctx.at(&r.referenced);
        if let Some(target) = lower_run(ctx, &service, &source, r.value, errs) {
            project.run.insert(service, RunSpec { target, source });
        }
    }
    if let Some(l) = raw.listeners {
        project.listeners = lower_listeners(ctx, &project, l.value, errs);
    }
    if let Some(r) = raw.rate_limit_state {
        project.rate_limit_state = crate::config::rate_state::lower_rate_state(ctx, r, errs);
    }
    if let Some(t) = raw.trust {
        project.trusted_issuers = crate::config::trust::lower_trust(ctx, t, errs);
    }
    project
}

/// `NAME` (a network of this project) or `HOST_PROJECT/NAME` or
/// `projects/HOST/global/networks/NAME`.
pub(crate) fn resolve_network(project: &Project, s: &str) -> Option<NetworkRef> {
    let (host, name) = if let Some(rest) = s.strip_prefix("projects/") {
        let (host, tail) = rest.split_once('/')?;
        (host, tail.strip_prefix("global/networks/")?)
    } else if let Some((host, name)) = s.split_once('/') {
        (host, name)
    } else {
        (project.id.as_str(), s)
    };
    let net = NetworkRef { project: host.to_owned(), network: name.to_owned() };
    if project.is_self(host) {
        return project.network(name).map(|_| NetworkRef { project: project.id.clone(), network: name.to_owned() });
    }
    project.is_shared_vpc(&net).then_some(net)
}

pub(crate) fn unknown_network(ctx: &FileCtx, at: &crate::source::SourceRef, name: &str) -> ConfigError {
    ctx.error(
        at,
        format!("network `{name}` is not declared"),
        "declare it under `networks:` in moat.yaml, or under `shared_vpc:` if it belongs to a Shared VPC host project (then write `HOST_PROJECT/NETWORK`)",
    )
}

/// `run.SERVICE`: exactly one of `command` (with an optional `dir`) and `url`.
fn lower_run(
    ctx: &FileCtx,
    service: &str,
    source: &crate::source::SourceRef,
    r: RawRun,
    errs: &mut Vec<ConfigError>,
) -> Option<RunTarget> {
    match (r.command, r.url) {
        (Some(command), None) => {
            if command.value.is_empty() {
                errs.push(ctx.error(
                    &ctx.at(&command.referenced),
                    format!("`run.{service}.command` is empty"),
                    "give the program and its arguments, e.g. `command: [python3, app.py]`",
                ));
                return None;
            }
            Some(RunTarget::Command { command: command.value, dir: r.dir })
        }
        (None, Some(url)) => {
            let at = ctx.at(&url.referenced);
            if r.dir.is_some() {
                errs.push(ctx.error(
                    &at,
                    format!("`run.{service}` has a `url` and a `dir`"),
                    "`dir` is where a `command` runs; remove it for an upstream URL",
                ));
            }
            match upstream_url(&url.value) {
                Ok(()) => Some(RunTarget::Url(url.value)),
                Err(why) => {
                    errs.push(ctx.error(
                        &at,
                        format!("`run.{service}.url` `{}` {why}", url.value),
                        "write the upstream as `http://HOST:PORT` (or `https://HOST:PORT`)",
                    ));
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            errs.push(ctx.error(
                source,
                format!("`run.{service}` has both `command` and `url`"),
                "keep `command` for a workload moat starts, or `url` for an upstream moat proxies to",
            ));
            None
        }
        (None, None) => {
            errs.push(ctx.error(
                source,
                format!("`run.{service}` has neither `command` nor `url`"),
                "add `command: [PROGRAM, ARGS...]` (and `dir`) for a workload moat starts, or `url: http://HOST:PORT` for an upstream",
            ));
            None
        }
    }
}

/// `http(s)://HOST:PORT[/PATH]`, nothing else (no user info, query or fragment).
fn upstream_url(url: &str) -> Result<(), &'static str> {
    let rest =
        url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or("is not http:// or https://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if authority.contains('@') || path.contains(['?', '#']) || authority.contains(['?', '#']) {
        return Err("has user info, a query or a fragment");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, port) = v6.split_once("]:").ok_or("has no port")?;
            (host, port)
        }
        None => authority.rsplit_once(':').ok_or("has no port")?,
    };
    if host.is_empty() {
        return Err("has no host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("has no valid port"),
    }
}

fn lower_listeners(ctx: &FileCtx, project: &Project, raw: RawListeners, errs: &mut Vec<ConfigError>) -> Listeners {
    let mut out = Listeners::default();
    let addr = |what: &str, s: &serde_saphyr::Spanned<String>, errs: &mut Vec<ConfigError>| match s
        .value
        .parse::<std::net::SocketAddr>(
    ) {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(ctx.error(
                &ctx.at(&s.referenced),
                format!("listener `{what}` address `{}` is not IP:PORT", s.value),
                "write an address and a port, e.g. `127.0.0.1:8080` (port 0 picks a free one)",
            ));
            None
        }
    };
    if let Some(a) = raw.internet.as_ref().and_then(|s| addr("internet", s, errs)) {
        out.internet = a;
    }
    out.admin = raw.admin.as_ref().and_then(|s| addr("admin", s, errs)).unwrap_or(EPHEMERAL_LISTENER);
    for (name, s) in &raw.vpc {
        let Some(a) = addr(&format!("vpc.{name}"), s, errs) else { continue };
        match resolve_network(project, name) {
            Some(net) => {
                out.vpc.insert(net, a);
            }
            None => errs.push(unknown_network(ctx, &ctx.at(&s.referenced), name)),
        }
    }
    for (name, s) in &raw.google {
        let Some(a) = addr(&format!("google.{name}"), s, errs) else { continue };
        match GoogleProduct::ALL.into_iter().find(|p| p.as_str() == name) {
            Some(p) => {
                out.google.insert(p, a);
            }
            None => {
                let names: Vec<&str> = GoogleProduct::ALL.iter().map(|p| p.as_str()).collect();
                errs.push(ctx.error(
                    &ctx.at(&s.referenced),
                    format!("`{name}` is not a Google product moat has a listener for"),
                    format!("use one of {}", names.join(", ")),
                ));
            }
        }
    }
    out
}

/// `seed: random` or `seed: {file: PATH}`. The file is not read here: only `moat up` reads it,
/// so `explain` and `check` never touch seed contents.
fn lower_seed(ctx: &FileCtx, seed: serde_saphyr::Spanned<RawSeed>, errs: &mut Vec<ConfigError>) -> Option<Seed> {
    let at = ctx.at(&seed.referenced);
    match seed.value {
        RawSeed::Word(w) if w == "random" => Some(Seed::Random),
        RawSeed::Word(w) => {
            errs.push(ctx.error(
                &at,
                format!("seed `{w}` is not known"),
                "use `seed: random` (32 random bytes) or `seed: {file: PATH}` (relative to the project directory)",
            ));
            None
        }
        RawSeed::File(f) if f.value.trim().is_empty() => {
            errs.push(ctx.error(
                &ctx.at(&f.referenced),
                "the seed file path is empty",
                "name a file relative to the project directory, e.g. `seed: {file: seeds/api-key.txt}`",
            ));
            None
        }
        RawSeed::File(f) => Some(Seed::File { path: f.value.into(), source: ctx.at(&f.referenced) }),
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "tests fail on an input that does not load")]
mod tests {
    use super::upstream_url;
    use crate::model::Seed;
    use crate::source::SourceFile;

    fn load(moat_extra: &str) -> Result<crate::Project, Vec<String>> {
        let text = format!("project:\n  id: p\n  number: \"1\"\n  region: r\n{moat_extra}");
        crate::load(&[SourceFile { path: "moat.yaml".into(), text }])
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn seeds_are_random_or_a_file_and_nothing_else() {
        let p =
            load("secrets:\n  - name: a\n    seed: random\n  - name: b\n    seed: {file: seeds/b.txt}\n  - name: c\n")
                .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.secrets.get("a").and_then(|s| s.seed.clone()), Some(Seed::Random));
        match p.secrets.get("b").and_then(|s| s.seed.clone()) {
            Some(Seed::File { path, source }) => {
                assert_eq!(path, std::path::Path::new("seeds/b.txt"));
                assert_eq!(source.line, 9);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.secrets.get("c").and_then(|s| s.seed.clone()), None);
        let cases = [
            ("seed: randomly", "moat.yaml:7:11: seed `randomly` is not known"),
            ("seed: {path: x}", "moat.yaml:7:11: unknown field `path` in `seed`"),
            ("seed: {file: \"\"}", "moat.yaml:7:18: the seed file path is empty"),
            ("seed: {}", "missing field `file`"),
            ("seed: [a]", "moat.yaml:7"),
        ];
        for (seed, want) in cases {
            let errs = load(&format!("secrets:\n  - name: a\n    {seed}\n")).err().unwrap_or_default();
            assert!(errs.iter().any(|e| e.contains(want)), "{seed}: {errs:?}");
        }
    }

    #[test]
    fn upstream_urls_need_scheme_host_and_port() {
        for ok in ["http://127.0.0.1:9000", "https://api.internal:443/prefix", "http://[::1]:8080/"] {
            assert_eq!(upstream_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:9000",
            "ftp://h:1",
            "http://h",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://u@h:1",
            "http://h:1/?q",
            "http://[::1]/",
        ] {
            assert!(upstream_url(bad).is_err(), "{bad}");
        }
    }
}
