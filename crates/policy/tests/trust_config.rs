//! `trust:` in moat.yaml: other ID-token issuers, parsed into the project, and every bad value
//! refused at load with `file:line:col` and what to write instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use moat_policy::SourceFile;
use moat_policy::model::trust::{JwksLocation, TrustAlgorithm, TrustedIssuer};

const PROJECT: &str = "project:\n  id: p\n  number: \"1\"\n  region: us-central1\n";

fn load(extra: &str) -> Result<Vec<TrustedIssuer>, Vec<String>> {
    let files = [SourceFile { path: "moat.yaml".into(), text: format!("{PROJECT}{extra}") }];
    match moat_policy::load(&files) {
        Ok(p) => Ok(p.trusted_issuers),
        Err(e) => Err(e.errors.iter().map(|e| format!("{e} | help: {}", e.help.clone().unwrap_or_default())).collect()),
    }
}

#[test]
fn absent_means_only_moats_own_issuer() {
    assert_eq!(load("").unwrap(), []);
}

#[test]
fn issuers_with_a_url_or_a_file() {
    let t = load(
        "trust:\n  issuers:\n    - issuer: https://kc.example/realms/acme\n      jwks_url: https://kc.example/realms/acme/protocol/openid-connect/certs\n      email_domains: [Example.COM, example.com]\n    - {issuer: \"https://idp.test\", jwks_file: keys/jwks.json, algorithms: [ES256, RS256]}\n",
    )
    .unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].issuer, "https://kc.example/realms/acme");
    assert_eq!(t[0].keys, JwksLocation::Url("https://kc.example/realms/acme/protocol/openid-connect/certs".into()));
    assert_eq!(t[0].email_domains, ["example.com"]);
    assert_eq!(t[0].algorithms, [TrustAlgorithm::Rs256]);
    assert_eq!(t[0].source.line, 7);
    // As written: relative to the project directory.
    assert_eq!(t[1].keys, JwksLocation::File(PathBuf::from("keys/jwks.json")));
    assert_eq!(t[1].algorithms, [TrustAlgorithm::Es256, TrustAlgorithm::Rs256]);
}

#[test]
fn bad_values_name_their_line_and_column() {
    let i = "trust:\n  issuers:\n    - issuer: https://kc.example\n";
    for (yaml, at, says) in [
        (format!("{i}      jwks_url: https://kc.example/certs\n      jwks: x\n"), "moat.yaml:9", "jwks"),
        (format!("{i}      jwks_url: https://kc.example/certs\n      jwks_file: a.json\n"), "moat.yaml:7", "exactly one of"),
        (format!("{i}      email_domains: [x]\n"), "moat.yaml:7", "exactly one of"),
        (format!("{i}      jwks_url: ftp://kc.example/certs\n"), "moat.yaml:8:17", "is not an http or https URL"),
        (format!("{i}      jwks_file: a.json\n      email_domains: [\"a@b.c\"]\n"), "moat.yaml:9:23", "is not a domain name"),
        (
            format!("{i}      jwks_file: a.json\n      email_domains: [proj.iam.gserviceaccount.com]\n"),
            "moat.yaml:9:23",
            "Google's service-account domain",
        ),
        (format!("{i}      jwks_file: a.json\n      algorithms: [HS256]\n"), "moat.yaml:9:20", "`HS256` is not an algorithm"),
        (
            "trust:\n  issuers:\n    - {issuer: \"https://accounts.google.com\", jwks_file: a.json}\n".to_owned(),
            "moat.yaml:7:16",
            "is moat's own issuer",
        ),
        ("trust:\n  issuers:\n    - {issuer: \"kc.example\", jwks_file: a.json}\n".to_owned(), "moat.yaml:7:16", "is not an https URL"),
        (
            "trust:\n  issuers:\n    - {issuer: \"https://a.example\", jwks_file: a.json}\n    - {issuer: \"https://a.example\", jwks_file: b.json}\n".to_owned(),
            "moat.yaml:8",
            "is listed twice",
        ),
        ("trust:\n  issuer: x\n".to_owned(), "moat.yaml:6", "issuer"),
    ] {
        let errs = load(&yaml).unwrap_err();
        assert!(errs.iter().any(|e| e.contains(at) && e.contains(says)), "{yaml}: want {at} {says}, got {errs:#?}");
    }
}
