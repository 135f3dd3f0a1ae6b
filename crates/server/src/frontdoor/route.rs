//! Which service and which door a request is for, from its Host (and, behind a load balancer,
//! its path). Built once per project snapshot; the request path only looks things up.
//!
//! Hosts a service answers to: the run.app hosts of `service.urls`, the local forms
//! `NAME.run.localhost` and `NAME-NUMBER.REGION.run.localhost` (the default URL), and
//! `TAG---HOST` for any of those (a traffic tag). A mapped domain is its own door. A load
//! balancer answers to its `hosts` (exact, `*.suffix` or `*`) and to `NAME.lb.localhost`, which
//! stands in locally for the load balancer's IP address (an LB with no `hosts` has no other
//! name).

use std::collections::HashMap;

use moat_policy::Entry;
use moat_policy::model::{LbRoute, LoadBalancer, Project};

#[derive(Debug, Clone)]
enum Target {
    /// A default (run.app or local) host of a service.
    Service(String),
    Domain {
        domain: String,
        service: String,
    },
    Lb(String),
}

/// The host table of one project snapshot.
#[derive(Debug, Default)]
pub(super) struct Routes {
    hosts: HashMap<String, Target>,
    /// Load balancers with wildcard hosts: (suffix after `*`, LB name); `""` is `*`.
    wildcards: Vec<(String, String)>,
}

/// Why a request has no service: both are the 404 of an unknown URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unrouted {
    UnknownHost,
    /// The load balancer (named) has no route for the path.
    NoLbRoute(String),
}

impl Unrouted {
    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::UnknownHost => "route.unknown_host",
            Self::NoLbRoute(_) => "route.no_lb_route",
        }
    }

    pub(super) fn message(&self) -> String {
        match self {
            Self::UnknownHost => {
                "no service, traffic tag, domain mapping or load balancer answers to this host".to_owned()
            }
            Self::NoLbRoute(lb) => format!("load balancer `{lb}` has no route for this path"),
        }
    }
}

impl Routes {
    pub(super) fn new(project: &Project) -> Self {
        let mut hosts = HashMap::new();
        let mut wildcards = Vec::new();
        // Inserted lowest precedence first: a later kind wins a clash (run.app hosts last).
        for lb in &project.load_balancers {
            for h in &lb.hosts {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) => wildcards.push((suffix.to_owned(), lb.name.clone())),
                    None => {
                        hosts.insert(h, Target::Lb(lb.name.clone()));
                    }
                }
            }
            hosts.insert(format!("{}.lb.localhost", lb.name.to_ascii_lowercase()), Target::Lb(lb.name.clone()));
        }
        // Longest suffix first, so `*.api.example.com` beats `*.example.com` beats `*`.
        wildcards.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        for d in &project.domain_mappings {
            hosts.insert(
                d.domain.to_ascii_lowercase(),
                Target::Domain { domain: d.domain.clone(), service: d.service.clone() },
            );
        }
        for s in project.services.values() {
            let name = s.name.to_ascii_lowercase();
            let local = [
                format!("{name}.run.localhost"),
                format!("{name}-{}.{}.run.localhost", project.number, project.region),
            ];
            let run_app = s.urls.iter().filter_map(|u| url_host(u));
            for h in local.into_iter().chain(run_app) {
                hosts.insert(h, Target::Service(s.name.clone()));
            }
        }
        Self { hosts, wildcards }
    }

    /// Whether `host` is one of the table's (exact, tag, or a `*.suffix` wildcard; a bare `*`
    /// matches any Host on the load balancer's own listener but names no host of its own).
    pub(super) fn knows_host(&self, host: &str) -> bool {
        if self.hosts.contains_key(host) {
            return true;
        }
        if let Some((tag, rest)) = host.split_once("---")
            && !tag.is_empty()
            && matches!(self.hosts.get(rest), Some(Target::Service(_)))
        {
            return true;
        }
        self.wildcards.iter().any(|(suffix, _)| !suffix.is_empty() && host.ends_with(suffix.as_str()))
    }

    /// The service and door for `host` (already normalised by [`normalise_host`]) and `path`.
    pub(super) fn route(&self, project: &Project, host: &str, path: &str) -> Result<(String, Entry), Unrouted> {
        let target = match self.hosts.get(host) {
            Some(t) => t.clone(),
            None => {
                // A tag URL: `TAG---HOST` where HOST is a default host of the service.
                if let Some((tag, rest)) = host.split_once("---")
                    && !tag.is_empty()
                    && let Some(Target::Service(s)) = self.hosts.get(rest)
                {
                    return Ok((s.clone(), Entry::Tag(tag.to_owned())));
                }
                let lb = self.wildcards.iter().find(|(suffix, _)| host.ends_with(suffix.as_str()));
                Target::Lb(lb.map(|(_, name)| name.clone()).ok_or(Unrouted::UnknownHost)?)
            }
        };
        match target {
            Target::Service(s) => Ok((s, Entry::DefaultUrl)),
            Target::Domain { domain, service } => Ok((service, Entry::Domain(domain))),
            Target::Lb(name) => {
                let lb = project.load_balancer(&name).ok_or(Unrouted::UnknownHost)?;
                let route = lb_route(lb, path).ok_or_else(|| Unrouted::NoLbRoute(name.clone()))?;
                Ok((route.service.clone(), Entry::Lb(name)))
            }
        }
    }
}

/// The URL map's choice for `path`: the most specific matching route. `P/*` matches every path
/// under `P/`; a path without `*` matches only itself and beats a prefix of the same length.
pub(super) fn lb_route<'a>(lb: &'a LoadBalancer, path: &str) -> Option<&'a LbRoute> {
    lb.routes
        .iter()
        .filter_map(|r| match r.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix).then_some((prefix.len(), false, r)),
            None => (path == r.path).then_some((r.path.len(), true, r)),
        })
        .max_by_key(|(len, exact, _)| (*len, *exact))
        .map(|(_, _, r)| r)
}

/// `https://HOST[/]` → `host`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The host part of a Host header value: port dropped, lower-case, no trailing dot.
pub(super) fn normalise_host(value: &str) -> String {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match value.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => value,
        }
    };
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;
    use moat_policy::SourceFile;

    fn project() -> Project {
        let moat = r#"
project:
  id: p
  number: "42"
  region: europe-west1
load_balancers:
  - name: edge
    scheme: external
    hosts: [www.example.com, "*.shop.example.com"]
    routes:
      - path: /api/*
        service: api
      - path: /api/health
        service: web
      - service: web
  - name: bare
    scheme: external
    routes:
      - path: /only
        service: api
domain_mappings:
  - domain: Api.Example.com
    service: api
"#;
        let svc = |name: &str| SourceFile {
            path: format!("services/{name}.json"),
            text: format!(
                r#"{{"name":"projects/p/locations/europe-west1/services/{name}","uri":"https://{name}-abc-ew.a.run.app","ingress":"INGRESS_TRAFFIC_ALL","template":{{"containers":[{{"image":"x"}}]}}}}"#
            ),
        };
        moat_policy::load(&[SourceFile { path: "moat.yaml".into(), text: moat.into() }, svc("api"), svc("web")])
            .expect("test project loads")
    }

    #[test]
    fn hosts_map_to_doors() {
        let p = project();
        let r = Routes::new(&p);
        type Want = Result<(&'static str, Entry), Unrouted>;
        let cases: &[(&str, &str, Want)] = &[
            ("api-42.europe-west1.run.app", "/", Ok(("api", Entry::DefaultUrl))),
            ("api.run.localhost", "/", Ok(("api", Entry::DefaultUrl))),
            ("api-42.europe-west1.run.localhost", "/", Ok(("api", Entry::DefaultUrl))),
            ("canary---api.run.localhost", "/", Ok(("api", Entry::Tag("canary".into())))),
            ("api.example.com", "/", Ok(("api", Entry::Domain("api.example.com".into())))),
            ("www.example.com", "/api/x", Ok(("api", Entry::Lb("edge".into())))),
            ("www.example.com", "/api/health", Ok(("web", Entry::Lb("edge".into())))),
            ("www.example.com", "/other", Ok(("web", Entry::Lb("edge".into())))),
            ("eu.shop.example.com", "/", Ok(("web", Entry::Lb("edge".into())))),
            ("bare.lb.localhost", "/only", Ok(("api", Entry::Lb("bare".into())))),
            ("bare.lb.localhost", "/elsewhere", Err(Unrouted::NoLbRoute("bare".into()))),
            ("unknown.example.com", "/", Err(Unrouted::UnknownHost)),
            ("canary---api.example.com", "/", Err(Unrouted::UnknownHost)),
        ];
        for (host, path, want) in cases {
            let got = r.route(&p, host, path);
            let want = want.clone().map(|(s, e)| (s.to_owned(), e));
            assert_eq!(got, want, "{host}{path}");
        }
    }

    #[test]
    fn the_egress_proxy_knows_routed_hosts_only() {
        let p = project();
        let r = Routes::new(&p);
        for (host, known) in [
            ("api-42.europe-west1.run.app", true),
            ("api.run.localhost", true),
            ("canary---api.run.localhost", true),
            ("api.example.com", true),
            ("www.example.com", true),
            ("eu.shop.example.com", true),
            ("bare.lb.localhost", true),
            ("unknown.example.com", false),
            ("canary---api.example.com", false),
            ("db.internal", false),
        ] {
            assert_eq!(r.knows_host(host), known, "{host}");
        }
    }

    #[test]
    fn host_header_forms_normalise() {
        for (raw, want) in [
            ("API.run.localhost:8080", "api.run.localhost"),
            ("api.run.localhost.", "api.run.localhost"),
            ("[::1]:80", "::1"),
            ("example.com", "example.com"),
        ] {
            assert_eq!(normalise_host(raw), want, "{raw}");
        }
    }
}
