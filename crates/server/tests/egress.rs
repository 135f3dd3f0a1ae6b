//! The egress proxy against a real front door: service hosts handed to the caller's
//! `service:NAME` listener, refusals with their reason header, HTTP forwarding to a local
//! stand-in, CONNECT tunnels, the metadata server, connect failures, reloads, and one record
//! per request that never carries a query string or a header value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/frontdoor.rs"]
mod harness;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{Harness, RawResponse, inline_project, send};
use moat_policy::{Origin, Project};
use moat_server::egress::{Caller, EgressProxy, EgressRecord};
use moat_server::frontdoor::{DecisionRecord, DecisionSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Egress records, in arrival order.
#[derive(Debug, Default)]
struct Egress(Mutex<Vec<EgressRecord>>);

impl DecisionSink for Egress {
    fn record(&self, record: &DecisionRecord) {
        panic!("the egress proxy wrote a front door record: {record:?}");
    }

    fn record_egress(&self, record: &EgressRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

impl Egress {
    /// The last record, waiting a little for tunnels (recorded when they close).
    async fn last(&self) -> EgressRecord {
        for _ in 0..200 {
            if let Some(r) = self.0.lock().unwrap().last() {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no egress record");
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

const SERVICE: &str = r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: INGRESS
    run.googleapis.com/invoker-iam-disabled: 'true'
  name: NAME
  namespace: '300000000003'
  labels:
    cloud.googleapis.com/location: us-central1
spec:
  template:
    metadata:
      annotations: ANNOTATIONS
    spec:
      containers:
      - image: x
      serviceAccountName: NAME@eg-proj.iam.gserviceaccount.com
"#;

fn service(name: &str, ingress: &str, annotations: &str) -> String {
    SERVICE.replace("NAME", name).replace("INGRESS", ingress).replace("ANNOTATIONS", annotations)
}

/// `caller` (egress as `annotations` say) and `api` (ingress `api_ingress`), with `db.internal`
/// (10.1.2.3) and `www.example.com` (203.0.113.10) in `egress.hosts`, both standing in locally
/// at `stand_in`.
fn project(annotations: &str, api_ingress: &str, stand_in: SocketAddr, extra_yaml: &str) -> Project {
    let moat = format!(
        r#"
project: {{id: eg-proj, number: "300000000003", region: us-central1}}
networks:
  - name: vpc
    subnets:
      - {{name: run, region: us-central1, range: 10.8.0.0/26, private_google_access: true}}
{extra_yaml}
egress:
  hosts:
    - {{name: db.internal, address: 10.1.2.3, local: "{stand_in}"}}
    - {{name: www.example.com, address: 203.0.113.10, local: "{stand_in}"}}
"#
    );
    inline_project(&[
        ("moat.yaml", &moat),
        ("services/caller.yaml", &service("caller", "all", annotations)),
        ("services/api.yaml", &service("api", api_ingress, "{}")),
    ])
}

const NO_VPC: &str = "{}";
const ALL_TRAFFIC: &str = r#"{run.googleapis.com/network-interfaces: '[{"network": "vpc", "subnetwork": "run"}]', run.googleapis.com/vpc-access-egress: all-traffic}"#;
const PRIVATE_RANGES: &str = r#"{run.googleapis.com/network-interfaces: '[{"network": "vpc", "subnetwork": "run"}]', run.googleapis.com/vpc-access-egress: private-ranges-only}"#;

/// A front door (listeners for the internet and for calls from `caller`, every service
/// answering with an echo) and the egress proxy of `caller` in front of it.
struct Setup {
    harness: Harness,
    proxy: SocketAddr,
    records: Arc<Egress>,
    egress: EgressProxy,
}

async fn setup(project: Project, metadata: Option<SocketAddr>) -> Setup {
    let harness = Harness::start(project, &[Origin::Internet, Origin::Service("caller".into())]).await;
    let records = Arc::new(Egress::default());
    let egress = EgressProxy::builder(Arc::new(harness.door.clone()))
        .sink(Arc::clone(&records) as Arc<dyn DecisionSink>)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let caller = Caller {
        service: "caller".into(),
        instance: Some("0a1b".into()),
        metadata,
        front_door: Some(harness.addr(&Origin::Service("caller".into()))),
    };
    let serving = egress.clone();
    tokio::spawn(async move { serving.serve(listener, caller).await });
    Setup { harness, proxy, records, egress }
}

/// `METHOD URL` in absolute form through the proxy.
async fn via_proxy(proxy: SocketAddr, url: &str, headers: &[(&str, &str)]) -> RawResponse {
    let host = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let mut raw = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    send(proxy, &raw).await.expect("a response")
}

/// A TCP server that echoes every byte back, for tunnels.
async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// `CONNECT authority`, then (if 200) `payload` through the tunnel: (status line, echoed bytes).
async fn connect(proxy: SocketAddr, authority: &str, payload: &[u8]) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    if !status.contains(" 200") {
        return (head, Vec::new());
    }
    s.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
    drop(s);
    (status, back)
}

fn unused_addr() -> SocketAddr {
    // Bound then dropped: nothing listens there now.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn service_hosts_go_to_the_callers_front_door_listener() {
    let s = setup(project(NO_VPC, "all", unused_addr(), ""), None).await;
    let resp = via_proxy(
        s.proxy,
        "http://api.run.localhost/orders?access_token=SECRET",
        &[("Authorization", "Bearer SECRET-TOKEN"), ("Proxy-Authorization", "Basic SECRET")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // The workload sees the path and query, its own Authorization, no proxy credentials.
    assert_eq!(resp.echo()["path"], "/orders?access_token=SECRET");
    assert!(resp.echoed("proxy-authorization").is_empty());
    // The front door decided it as a call from `caller`.
    let door = s.harness.last_record();
    assert_eq!(door.listener, "service:caller");
    assert_eq!(door.network_origin.as_deref(), Some("internet"));
    let rec = s.records.last().await;
    assert_eq!(rec.route.as_deref(), Some("front-door"));
    assert_eq!(rec.status, Some(200));
    assert_eq!(rec.path.as_deref(), Some("/orders"));
    assert_eq!(rec.instance.as_deref(), Some("0a1b"));
    let line = serde_json::to_string(&rec).unwrap();
    assert!(line.contains(r#""kind":"egress""#), "{line}");
    assert!(!line.contains("SECRET"), "{line}");
}

#[tokio::test]
async fn an_internal_service_is_external_to_a_caller_without_vpc_egress() {
    let s = setup(project(NO_VPC, "internal", unused_addr(), ""), None).await;
    let resp = via_proxy(s.proxy, "http://api.run.localhost/", &[]).await;
    assert_eq!(resp.status, 404);
    let s = setup(project(ALL_TRAFFIC, "internal", unused_addr(), ""), None).await;
    let resp = via_proxy(s.proxy, "http://api.run.localhost/", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn connect_to_a_service_host_is_refused_with_the_http_url_to_use() {
    let s = setup(project(NO_VPC, "all", unused_addr(), ""), None).await;
    let (head, _) = connect(s.proxy, "api.run.localhost:443", b"").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-moat-egress-reason: egress.service_tls"), "{head}");
    let rec = s.records.last().await;
    assert_eq!(rec.method, "CONNECT");
    assert_eq!(rec.codes(), ["egress.service_tls"]);
    assert!(rec.reasons[0].message.contains("http://api.run.localhost/"), "{rec:?}");
}

#[tokio::test]
async fn a_request_that_is_not_for_a_proxy_is_a_400() {
    let s = setup(project(NO_VPC, "all", unused_addr(), ""), None).await;
    let resp = send(s.proxy, "GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").await.unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("x-moat-egress-reason"), Some("egress.not_a_proxy_request"));
    assert_eq!(s.records.len(), 1);
}

#[tokio::test]
async fn private_destinations_need_vpc_access() {
    let stand_in = s_echo().await;
    let s = setup(project(NO_VPC, "all", stand_in, ""), None).await;
    let resp = via_proxy(s.proxy, "http://db.internal/q?password=SECRET", &[]).await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(resp.header("x-moat-egress-reason"), Some("egress.private_unreachable"));
    assert!(resp.body.contains("egress.private_unreachable"), "{}", resp.body);
    let rec = s.records.last().await;
    assert_eq!(rec.address.as_deref(), Some("10.1.2.3"));
    assert_eq!(rec.connected_to, None);
    assert_eq!(rec.path.as_deref(), Some("/q"));

    let s = setup(project(PRIVATE_RANGES, "all", stand_in, ""), None).await;
    let resp = via_proxy(s.proxy, "http://db.internal/q", &[("Proxy-Connection", "keep-alive")]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // Origin form upstream, with the Host the workload asked for and no proxy headers.
    assert_eq!(resp.echo()["path"], "/q");
    assert_eq!(resp.echoed("host"), ["db.internal"]);
    assert!(resp.echoed("proxy-connection").is_empty());
    let rec = s.records.last().await;
    assert_eq!(rec.route.as_deref(), Some("vpc:eg-proj/vpc"));
    assert_eq!(rec.connected_to, Some(stand_in.to_string()));
}

#[tokio::test]
async fn public_destinations_go_direct_or_need_nat_under_all_traffic() {
    let stand_in = s_echo().await;
    let s = setup(project(NO_VPC, "all", stand_in, ""), None).await;
    let resp = via_proxy(s.proxy, "http://www.example.com/", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(s.records.last().await.route.as_deref(), Some("direct"));

    let s = setup(project(ALL_TRAFFIC, "all", stand_in, ""), None).await;
    let resp = via_proxy(s.proxy, "http://www.example.com/", &[]).await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(resp.header("x-moat-egress-reason"), Some("egress.no_nat"));

    let s = setup(project(ALL_TRAFFIC, "all", stand_in, "    nat: true"), None).await;
    let resp = via_proxy(s.proxy, "http://www.example.com/", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn a_firewall_deny_rule_names_itself_in_the_record() {
    let stand_in = s_echo().await;
    let rule = "    nat: true\n    firewall:\n      - {name: no-web, direction: egress, action: deny, destination_ranges: [203.0.113.0/24], ports: [\"80\"]}";
    let s = setup(project(ALL_TRAFFIC, "all", stand_in, rule), None).await;
    let resp = via_proxy(s.proxy, "http://www.example.com/", &[]).await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert_eq!(resp.header("x-moat-egress-reason"), Some("egress.firewall.deny"));
    let rec = s.records.last().await;
    assert_eq!(rec.rule.as_deref(), Some("no-web"));
    // Another port is not the rule's.
    let resp = via_proxy(s.proxy, "http://www.example.com:8080/", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[tokio::test]
async fn connect_tunnels_bytes_to_allowed_hosts_only() {
    let echo = tcp_echo().await;
    let s = setup(project(NO_VPC, "all", echo, ""), None).await;
    let (status, back) = connect(s.proxy, "www.example.com:443", b"hello through the tunnel").await;
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(back, b"hello through the tunnel");
    let rec = s.records.last().await;
    assert_eq!(rec.method, "CONNECT");
    assert_eq!(rec.status, Some(200));
    assert_eq!(rec.bytes_up, Some(24));
    assert_eq!(rec.bytes_down, Some(24));

    let (head, _) = connect(s.proxy, "db.internal:5432", b"x").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-moat-egress-reason: egress.private_unreachable"), "{head}");
}

#[tokio::test]
async fn the_metadata_server_is_the_callers_own_in_every_mode() {
    let mds = s_echo().await;
    for mode in [NO_VPC, PRIVATE_RANGES, ALL_TRAFFIC] {
        let s = setup(project(mode, "all", unused_addr(), ""), Some(mds)).await;
        for url in [
            "http://metadata.google.internal/computeMetadata/v1/instance/id",
            "http://169.254.169.254/computeMetadata/v1/instance/id",
        ] {
            let resp = via_proxy(s.proxy, url, &[("Metadata-Flavor", "Google")]).await;
            assert_eq!(resp.status, 200, "{mode} {url}: {}", resp.body);
            assert_eq!(resp.echo()["path"], "/computeMetadata/v1/instance/id");
            assert_eq!(resp.echoed("metadata-flavor"), ["Google"]);
            let rec = s.records.last().await;
            assert_eq!(rec.route.as_deref(), Some("metadata"), "{mode}");
            assert_eq!(rec.connected_to, Some(mds.to_string()));
        }
    }
}

#[tokio::test]
async fn a_destination_that_does_not_answer_is_a_502() {
    let s = setup(project(NO_VPC, "all", unused_addr(), ""), None).await;
    let resp = via_proxy(s.proxy, "http://www.example.com/", &[]).await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.header("x-moat-egress-reason"), Some("egress.connect_failed"));
    let rec = s.records.last().await;
    assert_eq!(rec.error, Some("egress.connect_failed"));
    let (head, _) = connect(s.proxy, "www.example.com:443", b"").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
}

#[tokio::test]
async fn the_proxy_follows_reloads() {
    let stand_in = s_echo().await;
    let s = setup(project(NO_VPC, "all", stand_in, ""), None).await;
    assert_eq!(via_proxy(s.proxy, "http://db.internal/", &[]).await.status, 403);
    s.harness.door.replace_project(Arc::new(project(PRIVATE_RANGES, "all", stand_in, "")));
    assert_eq!(via_proxy(s.proxy, "http://db.internal/", &[]).await.status, 200);
    s.egress.shutdown();
}

async fn s_echo() -> SocketAddr {
    harness::echo_upstream().await.addr
}
