//! The caller path matters: examples/shop's `web` reaches the internal `api` only because its
//! traffic leaves through the VPC. Remove its VPC egress and the same call is refused at
//! ingress with a 404, whatever its token says.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn shop() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop")
}

fn explain_json(project: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("explain")
        .arg(project)
        .args(["--service", "api", "--from", "service:web", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of examples/shop in a fresh directory, so the test can edit it.
fn copy_shop(name: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("moat-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    for sub in ["", "services", "iam", "armor"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for e in std::fs::read_dir(shop().join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), dst.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    dst
}

#[test]
fn web_reaches_the_internal_api_over_direct_vpc_egress() {
    let a = explain_json(&shop());
    assert_eq!(a["effect"], "allow");
    assert_eq!(a["status"], 200);
    assert_eq!(a["layer"], serde_json::Value::Null);
    assert_eq!(a["principal"], "serviceAccount:web@shop-prod.iam.gserviceaccount.com");
}

#[test]
fn without_vpc_egress_the_same_call_is_refused_at_ingress() {
    let dir = copy_shop("no-egress");
    let svc = dir.join("services/web.yaml");
    let text = std::fs::read_to_string(&svc).unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| {
            !l.contains("run.googleapis.com/network-interfaces") && !l.contains("run.googleapis.com/vpc-access-egress")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(stripped, text, "the example's VPC egress annotations moved; update this test");
    std::fs::write(&svc, stripped).unwrap();

    let a = explain_json(&dir);
    assert_eq!(a["effect"], "deny");
    assert_eq!(a["status"], 404);
    assert_eq!(a["layer"], "ingress");
    let codes: Vec<&str> = a["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["egress.no_vpc_access", "ingress.internal_only"]);
    let _ = std::fs::remove_dir_all(&dir);
}
