//! Fuzzes the project loader with untrusted files: the input is split into moat.yaml, one
//! service export and one IAM policy at NUL bytes. Loading must return a project or
//! diagnostics, and a project that loads must be checkable and explainable, without panics.
//!
//! Run: `cd fuzz && cargo fuzz run load_project` (nightly), or on stable:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none load_project -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_policy::SourceFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\0');
    let names = ["moat.yaml", "services/svc.yaml", "iam/svc.json"];
    let files: Vec<SourceFile> = names
        .iter()
        .zip(parts.by_ref())
        .map(|(path, text)| SourceFile { path: (*path).to_owned(), text: text.to_owned() })
        .collect();
    if let Ok(project) = moat_policy::load(&files) {
        let _ = moat_policy::check::run_all(&project);
        let _ = moat_policy::explain::matrix(&project, None);
    }
});
