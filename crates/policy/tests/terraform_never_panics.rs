//! The Terraform loader reads untrusted plans (a pull request's `terraform show -json` in CI):
//! whatever the values, it returns a project or diagnostics, never panics, and what loads can
//! be checked and explained. Text mutations of JSON mostly fail the parse, so these mutate
//! values: a random node of a real fixture is replaced by null, `true`, a number, a string, an
//! empty list or an empty object.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

use moat_policy::SourceFile;
use moat_policy::config::{TerraformOptions, load_terraform};
use proptest::prelude::*;
use serde_json::{Value, json};

const FIXTURES: [&str; 7] = [
    "v2_public.plan.json",
    "v1_policy.plan.json",
    "modules.plan.json",
    "unknowns.plan.json",
    "state.json",
    "lb.plan.json",
    "insecure.plan.json",
];

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../moat/tests/fixtures/terraform").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Every node of `v`, in a fixed order, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

fn replacement(k: u8) -> Value {
    match k % 8 {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(""),
        4 => json!([]),
        5 => json!({}),
        6 => json!("projects/x/locations/y/services/../z"),
        _ => json!([{"references": ["google_cloud_run_v2_service.payments", "nope.nope"]}]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_plans_load_or_explain_why(which in 0usize..FIXTURES.len(), picks in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut doc = fixture(FIXTURES[which]);
        for (pick, kind) in picks {
            let mut all = Vec::new();
            pointers(&doc, String::new(), &mut all);
            if all.is_empty() {
                break;
            }
            let p = &all[pick % all.len()];
            if let Some(node) = doc.pointer_mut(p) {
                *node = replacement(kind);
            }
        }
        let file = SourceFile { path: "plan.json".into(), text: doc.to_string() };
        match load_terraform(&file, &TerraformOptions::default()) {
            Ok(p) => {
                let _ = moat_policy::check::run_all(&p);
                if let Some(name) = p.services.keys().next() {
                    let _ = moat_policy::explain::matrix(&p, Some(name));
                }
            }
            Err(errs) => prop_assert!(!errs.errors.is_empty()),
        }
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        let _ = moat_policy::config::is_terraform_json(&text);
        let _ = load_terraform(&SourceFile { path: "plan.json".into(), text }, &TerraformOptions::default());
    }
}
