//! moat.yaml's egress settings as a user gets them wrong: every error names `moat.yaml:line:col`
//! of the value at fault and says what to write instead. One project carries every mistake,
//! since loading reports them all at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use moat_policy::SourceFile;

const HEAD: &str = "project:\n  id: p\n  number: \"1\"\n  region: r\n";

fn errors(moat: &str) -> Vec<String> {
    let files = [SourceFile { path: "moat.yaml".into(), text: format!("{HEAD}{moat}") }];
    match moat_policy::load(&files) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.iter().map(|e| format!("{e}\n  help: {}", e.help.as_deref().unwrap_or("-"))).collect(),
    }
}

const BAD: &str = r#"networks:
  - name: vpc
    firewall:
      - name: inbound
        direction: ingress
        action: allow
      - name: sideways
        direction: both
        action: allow
      - name: undirected
        action: allow
      - name: bad-values
        direction: EGRESS
        priority: 70000
        action: reject
        destination_ranges: [10.0.0.0/8, 10.0.0.0/40, "not-a-range"]
        target_tags: [web, Web]
        ports: ["443", "9000-8000", 70000, "http"]
      - {name: twice, direction: egress, action: deny}
  - name: other
    firewall:
      - {name: twice, direction: egress, action: allow}
egress:
  hosts:
    - {name: api.example.com, address: 203.0.113.10}
    - {name: API.example.com., address: 203.0.113.11}
    - {name: "bad host", address: 203.0.113.12}
    - {name: db.internal, address: 10.0.0.300}
    - {name: self.internal, address: 127.0.0.1}
    - {name: meta.internal, address: "::ffff:169.254.169.254"}
    - {name: stand-in.internal, address: 10.0.0.5, local: "localhost:80"}
    - {name: zero.internal, address: 10.0.0.6, local: "127.0.0.1:0"}
"#;

#[test]
fn every_mistake_is_reported_at_its_value() {
    let errs = errors(BAD);
    let want = [
        (
            "moat.yaml:9:20:",
            "firewall rule `inbound` of network `vpc` is an ingress rule: moat models only egress firewall rules",
        ),
        ("moat.yaml:12:20:", "firewall rule `sideways` has direction `both`"),
        ("moat.yaml:14:9:", "firewall rule `undirected` has no `direction`"),
        ("moat.yaml:18:19:", "firewall rule `bad-values` has priority `70000`"),
        ("moat.yaml:19:17:", "firewall rule `bad-values` has action `reject`"),
        ("moat.yaml:20:42:", "`10.0.0.0/40` in firewall rule `bad-values` is not a CIDR range"),
        ("moat.yaml:20:55:", "`not-a-range` in firewall rule `bad-values` is not a CIDR range"),
        ("moat.yaml:21:28:", "`Web` in firewall rule `bad-values` is not a network tag"),
        ("moat.yaml:22:24:", "`9000-8000` in firewall rule `bad-values` is not a port or a port range"),
        ("moat.yaml:22:37:", "`70000` in firewall rule `bad-values` is not a port or a port range"),
        ("moat.yaml:22:44:", "`http` in firewall rule `bad-values` is not a port or a port range"),
        ("moat.yaml:26:16:", "firewall rule `twice` is declared twice (first in network `vpc`, moat.yaml:23)"),
        ("moat.yaml:30:14:", "egress host `api.example.com` is declared twice (first at moat.yaml:29)"),
        ("moat.yaml:31:14:", "`bad host` is not a host name"),
        ("moat.yaml:32:36:", "address `10.0.0.300` of egress host `db.internal` is not an IP address"),
        ("moat.yaml:33:38:", "egress host `self.internal` has address `127.0.0.1`, which is the instance itself"),
        ("moat.yaml:34:38:", "egress host `meta.internal` has address `::ffff:169.254.169.254`"),
        ("moat.yaml:35:59:", "`local` of egress host `stand-in.internal` `localhost:80` is not IP:PORT"),
        ("moat.yaml:36:55:", "`local` of egress host `zero.internal` `127.0.0.1:0` is not IP:PORT"),
    ];
    for (at, message) in want {
        assert!(
            errs.iter().any(|e| e.starts_with(at) && e.contains(message)),
            "expected `{at} {message}` among:\n{}",
            errs.join("\n")
        );
    }
    assert_eq!(errs.len(), want.len(), "{}", errs.join("\n"));
    insta::assert_snapshot!(errs.join("\n"));
}

#[test]
fn unknown_keys_are_errors() {
    for (extra, at) in [
        (
            "networks:\n  - name: vpc\n    firewall:\n      - {name: r, direction: egress, action: deny, target_service_accounts: [a]}\n",
            "moat.yaml:8:",
        ),
        ("networks:\n  - name: vpc\n    cloud_nat: true\n", "moat.yaml:7:"),
        ("egress:\n  rfc1918_only: true\n", "moat.yaml:6:"),
        ("egress:\n  hosts:\n    - {name: a.example, address: 192.0.2.1, port: 443}\n", "moat.yaml:7:"),
    ] {
        let errs = errors(extra);
        assert!(errs.iter().any(|e| e.starts_with(at) && e.contains("unknown field")), "{extra}: {}", errs.join("\n"));
    }
}

#[test]
fn defaults() {
    let moat = "networks:\n  - name: vpc\n    firewall:\n      - {name: r, direction: egress, action: allow}\n";
    assert!(errors(moat).is_empty(), "{:?}", errors(moat));
    assert!(errors("egress: {}\n").is_empty());
    assert!(errors("egress:\n  rfc6598_is_private: true\n  hosts: []\n").is_empty());
}
