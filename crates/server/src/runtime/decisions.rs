//! Where `moat up` and `moat serve` put decision records: every record as a JSON line in
//! `STATE/decisions.jsonl`, and one human line per request on stderr.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use moat_policy::Effect;

use crate::frontdoor::{DecisionRecord, DecisionSink};

#[derive(Debug)]
pub struct LogSink {
    file: Mutex<File>,
}

impl LogSink {
    /// Appends to `path`, creating it (and its directory) when missing.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file: Mutex::new(file) })
    }
}

impl DecisionSink for LogSink {
    fn record(&self, record: &DecisionRecord) {
        match serde_json::to_string(record) {
            Ok(mut line) => {
                line.push('\n');
                let mut f = self.file.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = f.write_all(line.as_bytes()) {
                    tracing::warn!("cannot write a decision record: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot serialise a decision record: {e}"),
        }
        let _ = writeln!(std::io::stderr().lock(), "{}", summary(record));
    }
}

/// `moat: 403 deny internet → status (default-url) as anonymous [iam.anonymous]`.
pub fn summary(r: &DecisionRecord) -> String {
    let status = r.status.map_or_else(|| "---".to_owned(), |s| s.to_string());
    let effect = match r.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    };
    let service = r.service.as_deref().unwrap_or("(no service)");
    let entry = r.entry.as_deref().unwrap_or("unknown host");
    let who = r.principal.as_deref().unwrap_or("anonymous");
    let why = match (r.upstream_error, r.reasons.last()) {
        (Some(e), _) => e,
        (None, Some(reason)) => reason.code,
        (None, None) => "-",
    };
    let from = match &r.network_origin {
        Some(net) if *net != r.listener => format!("{} (as {net})", r.listener),
        _ => r.listener.clone(),
    };
    format!("moat: {status} {effect} {from} → {service} ({entry}) as {who} [{why}]")
}
