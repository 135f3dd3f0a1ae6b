//! The matrix and a single query are two ways of asking the same question: for random small
//! projects, every answer of `explain::matrix` must equal `explain::query` for the same
//! service, origin, entry and principal, and the matrix must ask every question there is.
//!
//! Projects are generated as the files a user would write (moat.yaml, v1 YAML and v2 JSON
//! service exports, IAM policy JSON) and loaded through `moat_policy::load`, so the loader is
//! exercised on every combination too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::fmt::Write as _;

use moat_policy::explain::{Answer, Query, matrix, query};
use moat_policy::{Effect, Entry, Layer, Origin, Principal, SourceFile, iap, load};
use proptest::prelude::*;
use serde_json::json;

const PROJECT: &str = "p-gen";
const NUMBER: &str = "4242";
const DEFAULT_SA: &str = "4242-compute@developer.gserviceaccount.com";
const PRODUCTS: [&str; 8] =
    ["scheduler", "tasks", "pubsub", "eventarc", "workflows", "bigquery", "dialogflow-cx", "synthetic-monitors"];
const ROLES: [&str; 6] = [
    "roles/run.invoker",
    "roles/run.admin",
    "roles/editor",
    "roles/owner",
    "roles/viewer",
    "roles/iap.httpsResourceAccessor",
];
const TAGS: [&str; 2] = ["blue", "green"];
const AUDIENCES: [&str; 2] = ["https://api.example.com", "my-aud"];
const DOMAIN: &str = "d.example.com";

/// Members bindings and groups draw from; `{N}` is the service index for service accounts.
const MEMBERS: [&str; 13] = [
    "allUsers",
    "allAuthenticatedUsers",
    "user:u0@example.com",
    "user:u1@other.org",
    "serviceAccount:s0@p-gen.iam.gserviceaccount.com",
    "serviceAccount:s1@p-gen.iam.gserviceaccount.com",
    "serviceAccount:s2@p-gen.iam.gserviceaccount.com",
    "serviceAccount:4242-compute@developer.gserviceaccount.com",
    "group:g0@example.com",
    "group:g1@example.com",
    "domain:example.com",
    "user:U0@Example.com",
    // IAP's service agent, so that IAP-enabled services are sometimes invocable.
    "serviceAccount:service-4242@gcp-sa-iap.iam.gserviceaccount.com",
];

#[derive(Debug, Clone, Copy)]
enum Net {
    A,
    B,
    Shared,
}

#[derive(Debug, Clone, Copy)]
enum Attach {
    None,
    Connector,
    Direct(Net),
}

#[derive(Debug, Clone)]
struct Binding {
    role: usize,
    members: Vec<usize>,
    conditional: bool,
}

#[derive(Debug, Clone)]
struct Svc {
    v2: bool,
    ingress: usize,
    attach: Attach,
    /// 0: unset, 1: private-ranges-only, 2: all-traffic.
    egress: usize,
    iam_disabled: bool,
    default_url_disabled: bool,
    audiences: Vec<usize>,
    tags: Vec<usize>,
    explicit_sa: bool,
    bindings: Vec<Binding>,
    ext_route: bool,
    ilb_route: bool,
    /// v1 only: an `ingress-status` annotation (index into the ingress values), in force.
    ingress_status: Option<usize>,
    iap: bool,
}

#[derive(Debug, Clone)]
struct Gen {
    second_network: bool,
    pga: bool,
    shared_vpc: bool,
    perimeter: bool,
    automatic_grants: Option<bool>,
    ilb_net: Net,
    domain_target: usize,
    g0: Vec<usize>,
    g1: Vec<usize>,
    project_bindings: Vec<Binding>,
    services: Vec<Svc>,
}

fn binding() -> impl Strategy<Value = Binding> {
    (0..ROLES.len(), prop::collection::vec(0..MEMBERS.len(), 1..=3), prop::bool::weighted(0.15))
        .prop_map(|(role, members, conditional)| Binding { role, members, conditional })
}

fn net() -> impl Strategy<Value = Net> {
    prop_oneof![Just(Net::A), Just(Net::B), Just(Net::Shared)]
}

fn svc() -> impl Strategy<Value = Svc> {
    let attach = prop_oneof![Just(Attach::None), Just(Attach::Connector), net().prop_map(Attach::Direct)];
    (
        (any::<bool>(), 0..4usize, attach, 0..3usize, prop::bool::weighted(0.2), prop::bool::weighted(0.2)),
        (
            prop::collection::btree_set(0..AUDIENCES.len(), 0..=2),
            prop::collection::btree_set(0..TAGS.len(), 0..=2),
            prop::bool::weighted(0.7),
            prop::collection::vec(binding(), 0..=3),
            any::<bool>(),
            any::<bool>(),
        ),
        (prop::option::of(0..4usize), prop::bool::weighted(0.3)),
    )
        .prop_map(
            |(
                (v2, ingress, attach, egress, iam_disabled, default_url_disabled),
                (audiences, tags, explicit_sa, bindings, ext_route, ilb_route),
                (ingress_status, iap),
            )| Svc {
                v2,
                ingress,
                attach,
                egress,
                iam_disabled,
                default_url_disabled,
                audiences: audiences.into_iter().collect(),
                tags: tags.into_iter().collect(),
                explicit_sa,
                bindings,
                ext_route,
                ilb_route,
                ingress_status,
                iap,
            },
        )
}

fn project() -> impl Strategy<Value = Gen> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), prop::option::of(any::<bool>()), net()),
        (
            0..5usize,
            prop::collection::vec(0..MEMBERS.len(), 0..=3),
            prop::collection::vec(0..MEMBERS.len(), 0..=3),
            prop::collection::vec(binding(), 0..=2),
            prop::collection::vec(svc(), 2..=5),
        ),
    )
        .prop_map(
            |(
                (second_network, pga, shared_vpc, perimeter, automatic_grants, ilb_net),
                (domain_target, g0, g1, project_bindings, services),
            )| Gen {
                second_network,
                pga,
                shared_vpc,
                perimeter,
                automatic_grants,
                ilb_net,
                domain_target: domain_target % services.len(),
                g0,
                g1,
                project_bindings,
                services,
            },
        )
}

impl Gen {
    /// A network that exists in this project: B without a second network, or the Shared VPC
    /// without one, falls back to A.
    fn real(&self, n: Net) -> Net {
        match n {
            Net::B if !self.second_network => Net::A,
            Net::Shared if !self.shared_vpc => Net::A,
            n => n,
        }
    }

    fn network_name(&self, n: Net) -> &'static str {
        match self.real(n) {
            Net::A => "net-a",
            Net::B => "net-b",
            Net::Shared => "host-p/shared-net",
        }
    }

    fn interface(&self, n: Net) -> serde_json::Value {
        match self.real(n) {
            Net::A => json!({"network": "net-a", "subnetwork": "sub-a", "tags": ["run"]}),
            Net::B => json!({"network": "net-b", "subnetwork": "sub-b"}),
            Net::Shared => json!({
                "network": "projects/host-p/global/networks/shared-net",
                "subnetwork": "projects/host-p/regions/us-central1/subnetworks/shared-sub"
            }),
        }
    }

    fn runtime_sa(&self, i: usize) -> String {
        if self.services[i].explicit_sa { format!("s{i}@{PROJECT}.iam.gserviceaccount.com") } else { DEFAULT_SA.into() }
    }

    fn files(&self) -> Vec<SourceFile> {
        let mut files = vec![SourceFile { path: "moat.yaml".into(), text: self.moat_yaml() }];
        for (i, s) in self.services.iter().enumerate() {
            let (path, text) = if s.v2 {
                (format!("services/s{i}.json"), self.v2_service(i))
            } else {
                (format!("services/s{i}.yaml"), self.v1_service(i))
            };
            files.push(SourceFile { path, text });
            files.push(SourceFile { path: format!("iam/s{i}.json"), text: policy_json(&s.bindings) });
        }
        files
    }

    fn moat_yaml(&self) -> String {
        let mut m = format!("project:\n  id: {PROJECT}\n  number: \"{NUMBER}\"\n  region: us-central1\n");
        if let Some(g) = self.automatic_grants {
            let _ = writeln!(m, "  automatic_default_sa_grants: {g}");
        }
        let _ = writeln!(
            m,
            "networks:\n  - name: net-a\n    subnets:\n      - {{name: sub-a, region: us-central1, range: 10.0.0.0/24, private_google_access: {}}}",
            self.pga
        );
        if self.second_network {
            m.push_str(
                "  - name: net-b\n    subnets:\n      - {name: sub-b, region: us-central1, range: 10.1.0.0/24}\n",
            );
        }
        if self.shared_vpc {
            m.push_str("shared_vpc:\n  - host_project: host-p\n    network: shared-net\n");
        }
        m.push_str("connectors:\n  - name: conn-a\n    network: net-a\n");
        if self.perimeter {
            m.push_str("vpc_sc_perimeter: perim\nvpc_sc_perimeter_projects: [peer-p]\n");
        }
        let routes = |pick: fn(&Svc) -> bool| -> String {
            let names: Vec<String> = self
                .services
                .iter()
                .enumerate()
                .filter(|(_, s)| pick(s))
                .map(|(i, _)| format!("{{path: /s{i}/*, service: s{i}}}"))
                .collect();
            format!("[{}]", names.join(", "))
        };
        let _ = write!(
            m,
            "load_balancers:\n  - name: ext\n    scheme: external\n    routes: {}\n  - name: ilb\n    scheme: internal\n    network: {}\n    routes: {}\n",
            routes(|s| s.ext_route),
            self.network_name(self.ilb_net),
            routes(|s| s.ilb_route)
        );
        let _ = writeln!(m, "domain_mappings:\n  - domain: {DOMAIN}\n    service: s{}", self.domain_target);
        let list = |ms: &[usize]| ms.iter().map(|&i| format!("'{}'", MEMBERS[i])).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            m,
            "groups:\n  - email: g0@example.com\n    members: [{}]\n  - email: g1@example.com\n    members: [{}]",
            list(&self.g0),
            list(&self.g1)
        );
        if !self.project_bindings.is_empty() {
            m.push_str("iam:\n  bindings:\n");
            for b in &self.project_bindings {
                let _ = writeln!(m, "    - role: {}\n      members: [{}]", ROLES[b.role], list(&b.members));
                if b.conditional {
                    m.push_str("      condition: {title: maybe, expression: 'request.time < timestamp(\"2030-01-01T00:00:00Z\")'}\n");
                }
            }
        }
        m
    }

    fn v1_service(&self, i: usize) -> String {
        let s = &self.services[i];
        let mut ann = vec![format!(
            "run.googleapis.com/ingress: {}",
            ["all", "internal", "internal-and-cloud-load-balancing", "none"][s.ingress]
        )];
        if let Some(st) = s.ingress_status {
            ann.push(format!(
                "run.googleapis.com/ingress-status: {}",
                ["all", "internal", "internal-and-cloud-load-balancing", "none"][st]
            ));
        }
        if s.iap {
            ann.push("run.googleapis.com/iap-enabled: 'true'".into());
        }
        if s.iam_disabled {
            ann.push("run.googleapis.com/invoker-iam-disabled: 'True'".into());
        }
        if s.default_url_disabled {
            ann.push("run.googleapis.com/default-url-disabled: 'true'".into());
        }
        if !s.audiences.is_empty() {
            let list: Vec<&str> = s.audiences.iter().map(|&a| AUDIENCES[a]).collect();
            ann.push(format!("run.googleapis.com/custom-audiences: '{}'", serde_json::to_string(&list).unwrap()));
        }
        let mut tann = Vec::new();
        match s.attach {
            Attach::None => {}
            Attach::Connector => tann.push("run.googleapis.com/vpc-access-connector: conn-a".to_owned()),
            Attach::Direct(n) => {
                let list = serde_json::to_string(&[self.interface(n)]).unwrap();
                tann.push(format!("run.googleapis.com/network-interfaces: '{list}'"));
            }
        }
        if !matches!(s.attach, Attach::None) && s.egress > 0 {
            tann.push(format!(
                "run.googleapis.com/vpc-access-egress: {}",
                ["", "private-ranges-only", "all-traffic"][s.egress]
            ));
        }
        let mut y = String::from("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  annotations:\n");
        for a in ann {
            let _ = writeln!(y, "    {a}");
        }
        let _ = writeln!(y, "  name: s{i}\n  namespace: '{NUMBER}'\nspec:\n  template:\n    metadata:");
        if tann.is_empty() {
            y.push_str("      annotations: {}\n");
        } else {
            y.push_str("      annotations:\n");
            for a in tann {
                let _ = writeln!(y, "        {a}");
            }
        }
        y.push_str("    spec:\n      containers:\n      - image: img\n");
        if s.explicit_sa {
            let _ = writeln!(y, "      serviceAccountName: s{i}@{PROJECT}.iam.gserviceaccount.com");
        }
        y.push_str("  traffic:\n  - latestRevision: true\n    percent: 100\n");
        for &t in &s.tags {
            let _ = writeln!(y, "  - tag: {}\n    revisionName: s{i}-00002-x\n    percent: 0", TAGS[t]);
        }
        y
    }

    fn v2_service(&self, i: usize) -> String {
        let s = &self.services[i];
        let ingress = [
            "INGRESS_TRAFFIC_ALL",
            "INGRESS_TRAFFIC_INTERNAL_ONLY",
            "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
            "INGRESS_TRAFFIC_NONE",
        ][s.ingress];
        let mut template = json!({"containers": [{"image": "img"}]});
        if s.explicit_sa {
            template["serviceAccount"] = json!(format!("s{i}@{PROJECT}.iam.gserviceaccount.com"));
        }
        let mut access = match s.attach {
            Attach::None => None,
            Attach::Connector => {
                Some(json!({"connector": format!("projects/{PROJECT}/locations/us-central1/connectors/conn-a")}))
            }
            Attach::Direct(n) => Some(json!({"networkInterfaces": [self.interface(n)]})),
        };
        if let Some(a) = access.as_mut().filter(|_| s.egress > 0) {
            a["egress"] = json!(["", "PRIVATE_RANGES_ONLY", "ALL_TRAFFIC"][s.egress]);
        }
        if let Some(a) = access {
            template["vpcAccess"] = a;
        }
        let mut traffic = vec![json!({"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100})];
        traffic.extend(s.tags.iter().map(|&t| json!({"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": format!("s{i}-00002-x"), "tag": TAGS[t]})));
        let mut v = json!({
            "name": format!("projects/{PROJECT}/locations/us-central1/services/s{i}"),
            "ingress": ingress,
            "template": template,
            "traffic": traffic,
        });
        if s.iam_disabled {
            v["invokerIamDisabled"] = json!(true);
        }
        if s.iap {
            v["iapEnabled"] = json!(true);
        }
        if s.default_url_disabled {
            v["defaultUriDisabled"] = json!(true);
        }
        if !s.audiences.is_empty() {
            v["customAudiences"] = json!(s.audiences.iter().map(|&a| AUDIENCES[a]).collect::<Vec<_>>());
        }
        serde_json::to_string_pretty(&v).unwrap()
    }

    /// Every (service, origin, entry, principal) the matrix must answer, worked out from the
    /// generator's own description rather than from the model.
    fn expected_questions(&self) -> BTreeSet<(String, String, String, String)> {
        let n = self.services.len();
        let mut principals: BTreeSet<String> = BTreeSet::from(["anonymous".to_owned()]);
        let bindings = self.project_bindings.iter().chain(self.services.iter().flat_map(|s| s.bindings.iter()));
        let named = bindings.flat_map(|b| b.members.iter()).chain(self.g0.iter()).chain(self.g1.iter());
        for &m in named {
            let m = MEMBERS[m];
            if m.starts_with("user:") || m.starts_with("serviceAccount:") {
                let (kind, email) = m.split_once(':').unwrap();
                principals.insert(format!("{kind}:{}", email.to_ascii_lowercase()));
            }
        }
        if self.automatic_grants != Some(false) {
            principals.insert(format!("serviceAccount:{DEFAULT_SA}"));
        }
        let mut nets = vec![format!("vpc:{PROJECT}/net-a")];
        if self.second_network {
            nets.push(format!("vpc:{PROJECT}/net-b"));
        }
        if self.shared_vpc {
            nets.push("vpc:host-p/shared-net".to_owned());
        }
        let mut out = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let mut entries = vec!["default-url".to_owned()];
            entries.extend(s.tags.iter().map(|&t| format!("tag:{}", TAGS[t])));
            if self.domain_target == i {
                entries.push(format!("domain:{DOMAIN}"));
            }
            if s.ext_route {
                entries.push("lb:ext".to_owned());
            }
            if s.ilb_route {
                entries.push("lb:ilb".to_owned());
            }
            let mut origins: Vec<(String, Vec<String>)> = Vec::new();
            let everyone: Vec<String> = principals.iter().cloned().collect();
            origins.push(("internet".to_owned(), everyone.clone()));
            origins.extend(nets.iter().map(|o| (o.clone(), everyone.clone())));
            origins.extend(PRODUCTS.iter().map(|p| (format!("google:{p}@{PROJECT}"), everyone.clone())));
            origins.extend(
                (0..n)
                    .filter(|&j| j != i)
                    .map(|j| (format!("service:s{j}"), vec![format!("serviceAccount:{}", self.runtime_sa(j))])),
            );
            for (origin, callers) in &origins {
                for entry in &entries {
                    for p in callers {
                        out.insert((format!("s{i}"), origin.clone(), entry.clone(), p.clone()));
                    }
                }
            }
        }
        out
    }
}

fn policy_json(bindings: &[Binding]) -> String {
    if bindings.is_empty() {
        // What get-iam-policy prints for a service without bindings.
        return "{\"etag\": \"ACAB\"}\n".to_owned();
    }
    let list: Vec<serde_json::Value> = bindings
        .iter()
        .map(|b| {
            let mut v =
                json!({"role": ROLES[b.role], "members": b.members.iter().map(|&m| MEMBERS[m]).collect::<Vec<_>>()});
            if b.conditional {
                v["condition"] = json!({"title": "maybe", "expression": "request.path.startsWith(\"/x\")"});
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&json!({"bindings": list, "etag": "BwYXmI3aKfs=", "version": 3})).unwrap()
}

/// The status every layer answers with (spec/cloudrun.md §1.5, §2.5).
fn status_of(a: &Answer) -> Option<u16> {
    match (a.effect, a.layer) {
        (Effect::Allow, _) => Some(200),
        (Effect::Deny, Some(Layer::Network)) => None,
        (Effect::Deny, Some(Layer::Ingress)) => Some(404),
        (Effect::Deny, Some(Layer::Authentication)) => Some(401),
        (Effect::Deny, Some(Layer::Iap)) => Some(iap::REFUSAL_STATUS),
        (Effect::Deny, Some(Layer::Authorization)) => Some(403),
        (Effect::Deny, other) => panic!("a denial at {other:?}: {a:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn matrix_answers_equal_single_queries(g in project()) {
        let files = g.files();
        let project = match load(&files) {
            Ok(p) => p,
            Err(e) => {
                let dump: String = files.iter().map(|f| format!("--- {}\n{}\n", f.path, f.text)).collect();
                panic!("generated project does not load: {e:?}\n{dump}");
            }
        };
        let answers = matrix(&project, None).unwrap();

        let asked: Vec<(String, String, String, String)> = answers
            .iter()
            .map(|a| (a.service.clone(), a.origin.clone(), a.entry.clone(), a.principal.clone()))
            .collect();
        let unique: BTreeSet<_> = asked.iter().cloned().collect();
        prop_assert_eq!(unique.len(), asked.len(), "the matrix asks some question twice");
        let expected = g.expected_questions();
        let missing: Vec<_> = expected.difference(&unique).take(5).collect();
        let extra: Vec<_> = unique.difference(&expected).take(5).collect();
        prop_assert!(missing.is_empty() && extra.is_empty(), "matrix coverage: missing {:?}, unexpected {:?}", missing, extra);

        for a in &answers {
            let origin: Origin = a.origin.parse().unwrap();
            let entry: Entry = a.entry.parse().unwrap();
            let principal: Principal = a.principal.parse().unwrap();
            // A calling service is asked with the default principal, to check that the default
            // is the one the matrix used.
            let principal = match origin {
                Origin::Service(_) => None,
                _ => Some(principal),
            };
            let q = Query { service: a.service.clone(), origin, entry, principal, audience: None, request: Default::default() };
            let single = query(&project, &q).unwrap();
            prop_assert_eq!(&single, a);
            prop_assert_eq!(a.status, status_of(a), "status does not match layer: {:?}", a);
        }
    }
}
