//! The loader reads untrusted files (a pull request's exports in CI): whatever the bytes, it
//! returns a project or diagnostics, never panics. Mutations of the real example files reach
//! deep into the lowering code; random text covers the parser's front.
//!
//! The coverage-guided version of this test is `fuzz/fuzz_targets/load_project.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

use moat_policy::SourceFile;
use proptest::prelude::*;

fn example_files(dir: &str) -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(dir);
    let mut files =
        vec![SourceFile { path: "moat.yaml".into(), text: std::fs::read_to_string(root.join("moat.yaml")).unwrap() }];
    for sub in ["services", "iam", "armor"] {
        let Ok(entries) = std::fs::read_dir(root.join(sub)) else { continue };
        let mut names: Vec<_> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for n in names {
            files.push(SourceFile {
                text: std::fs::read_to_string(root.join(sub).join(&n)).unwrap(),
                path: format!("{sub}/{n}"),
            });
        }
    }
    files
}

/// Applies byte-level edits at char boundaries: delete a span, duplicate a span, insert text.
fn mutate(text: &str, edits: &[(usize, usize, u8, String)]) -> String {
    let mut s = text.to_owned();
    for (pos, len, kind, insert) in edits {
        if s.is_empty() {
            s.push_str(insert);
            continue;
        }
        let mut a = pos % s.len();
        while !s.is_char_boundary(a) {
            a -= 1;
        }
        let mut b = (a + len % 64).min(s.len());
        while !s.is_char_boundary(b) {
            b -= 1;
        }
        match kind % 3 {
            0 => s.replace_range(a..b, ""),
            1 => {
                let span = s[a..b].to_owned();
                s.insert_str(b, &span);
            }
            _ => s.insert_str(a, insert),
        }
    }
    s
}

fn edits() -> impl Strategy<Value = Vec<(usize, usize, u8, String)>> {
    let tokens = prop_oneof![
        Just(": ".to_owned()),
        Just("\n- ".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("{".to_owned()),
        Just("]".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("\t".to_owned()),
        Just("null".to_owned()),
        Just("allUsers".to_owned()),
        Just("roles/run.invoker".to_owned()),
        "[ -~]{0,8}",
    ];
    prop::collection::vec((any::<usize>(), any::<usize>(), any::<u8>(), tokens), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_examples_load_or_explain_why(which in 0usize..2, file in any::<usize>(), e in edits()) {
        let mut files = example_files(["shop", "insecure"][which]);
        let i = file % files.len();
        files[i].text = mutate(&files[i].text, &e);
        match moat_policy::load(&files) {
            Ok(p) => {
                // A project that loads must also be analysable without panicking.
                let _ = moat_policy::check::run_all(&p);
                if let Some(name) = p.services.keys().next() {
                    let _ = moat_policy::explain::matrix(&p, Some(name));
                }
            }
            Err(errs) => prop_assert!(!errs.errors.is_empty()),
        }
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}", path in prop_oneof![Just("moat.yaml"), Just("services/a.yaml"), Just("services/a.json"), Just("iam/a.json")]) {
        let mut files = example_files("shop");
        match files.iter_mut().find(|f| f.path == path) {
            Some(f) => f.text = text,
            None => files.push(SourceFile { path: path.into(), text }),
        }
        let _ = moat_policy::load(&files);
    }
}
