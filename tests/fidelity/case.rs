//! The fidelity corpus's case format, shared by every runner (the `explain` binary in
//! crates/moat/tests/fidelity.rs, the HTTP front door in crates/server/tests/parity.rs), which
//! include this file with `#[path]`. The format is documented in tests/fidelity/README.md.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The spec item the case pins; shown with every mismatch.
    pub behaviour: String,
    pub queries: Vec<CaseQuery>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {
    pub service: String,
    pub from: String,
    #[serde(default)]
    pub via: Option<String>,
    #[serde(default, rename = "as")]
    pub principal: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// Request facts for a load balancer's security policy (`--method`, `--path`,
    /// `--source-ip`, `--header`). Over HTTP the request is sent with them; the source address
    /// can only be loopback there.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub source_ip: Option<String>,
    /// `NAME: VALUE` each; `[]` is a request with no headers but the Host (`--no-headers`).
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    pub expect: Outcome,
}

impl CaseQuery {
    /// The command-line flags of the query, in order.
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (flag, value) in [
            ("--via", &self.via),
            ("--as", &self.principal),
            ("--audience", &self.audience),
            ("--method", &self.method),
            ("--path", &self.path),
            ("--source-ip", &self.source_ip),
        ] {
            if let Some(v) = value {
                out.push((flag, v.clone()));
            }
        }
        match &self.headers {
            Some(hs) if hs.is_empty() => out.push(("--no-headers", String::new())),
            hs => out.extend(hs.iter().flatten().map(|h| ("--header", h.clone()))),
        }
        out
    }
}

/// What a request's decision is, in the terms every front end (CLI, HTTP) reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub effect: String,
    pub status: Option<u16>,
    pub layer: Option<String>,
    pub codes: Vec<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status.map_or_else(|| "null".to_owned(), |s| s.to_string());
        let layer = self.layer.as_deref().unwrap_or("null");
        write!(f, "{} status={status} layer={layer} codes=[{}]", self.effect, self.codes.join(", "))
    }
}

/// `tests/fidelity`, from a crate under `crates/`.
pub fn corpus_dir(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../../tests/fidelity")
}

/// Every case directory, sorted. Every directory is a case: a runner must fail on one it cannot
/// read rather than skip it.
pub fn case_dirs(manifest_dir: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus_dir(manifest_dir))
        .expect("tests/fidelity exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The query as `moat explain` flags, for messages.
pub fn describe(q: &CaseQuery) -> String {
    let mut s = format!("--service {} --from {}", q.service, q.from);
    for (flag, v) in q.flags() {
        s.push_str(&format!(" {flag}"));
        if !v.is_empty() {
            s.push_str(&format!(" {v}"));
        }
    }
    s
}
