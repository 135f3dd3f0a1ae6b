//! Where `moat up` and `moat serve` put decision records: every record as a JSON line in
//! `STATE/decisions.jsonl`, and one human line per request on stderr.
//!
//! Key decision: records are buffered and written every few milliseconds (and when the front
//! door stops, and when the sink is dropped), one `write(2)` per file per batch instead of two
//! per request. A record can be a few milliseconds behind its response; none of a completed
//! request is lost on a graceful shutdown.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use moat_policy::Effect;

use crate::egress::EgressRecord;
use crate::frontdoor::{DecisionRecord, DecisionSink};

/// How long a record may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// A buffer this large is written at once, on the recording task.
const FLUSH_AT: usize = 256 * 1024;

#[derive(Debug)]
pub struct LogSink {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Buffers>,
    /// Signalled when the buffer stops being empty.
    dirty: Condvar,
    /// Held while writing, so batches reach the files in the order they were recorded.
    out: Mutex<Out>,
}

#[derive(Debug, Default)]
struct Buffers {
    /// decisions.jsonl lines.
    log: Vec<u8>,
    /// stderr summary lines.
    err: Vec<u8>,
}

impl Buffers {
    fn is_empty(&self) -> bool {
        self.log.is_empty() && self.err.is_empty()
    }
}

#[derive(Debug)]
struct Out {
    file: File,
    /// The batch being written (its capacity is kept for the next one).
    batch: Buffers,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogSink {
    /// Appends to `path`, creating it (and its directory) when missing.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Buffers::default()),
            dirty: Condvar::new(),
            out: Mutex::new(Out { file, batch: Buffers::default() }),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new().name("moat-decisions".into()).spawn(move || flusher(&weak))?;
        Ok(Self { shared })
    }
}

/// Writes the buffer out every [`FLUSH_EVERY`] while there is something in it; ends once the
/// sink is gone.
fn flusher(weak: &Weak<Shared>) {
    while let Some(shared) = weak.upgrade() {
        let dirty = {
            let pending = lock(&shared.pending);
            let (pending, _) = shared
                .dirty
                .wait_timeout_while(pending, Duration::from_secs(1), |b| b.is_empty())
                .unwrap_or_else(PoisonError::into_inner);
            !pending.is_empty()
        };
        if dirty {
            std::thread::sleep(FLUSH_EVERY);
            shared.flush();
        }
    }
}

impl Shared {
    fn flush(&self) {
        let mut out = lock(&self.out);
        let Out { file, batch } = &mut *out;
        {
            let mut pending = lock(&self.pending);
            std::mem::swap(&mut *pending, batch);
        }
        if !batch.log.is_empty()
            && let Err(e) = file.write_all(&batch.log)
        {
            tracing::warn!("cannot write decision records: {e}");
        }
        if !batch.err.is_empty() {
            let _ = std::io::stderr().lock().write_all(&batch.err);
        }
        batch.log.clear();
        batch.err.clear();
    }
}

impl LogSink {
    /// Buffers one JSON line and its stderr summary, and wakes or runs the flush.
    fn push<R: serde::Serialize>(&self, record: &R, summary: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
        let (was_empty, full) = {
            let mut pending = lock(&self.shared.pending);
            let was_empty = pending.is_empty();
            let at = pending.log.len();
            match serde_json::to_writer(&mut pending.log, record) {
                Ok(()) => pending.log.push(b'\n'),
                Err(e) => {
                    pending.log.truncate(at);
                    tracing::warn!("cannot serialise a decision record: {e}");
                }
            }
            let _ = summary(&mut pending.err);
            pending.err.push(b'\n');
            (was_empty, pending.log.len() + pending.err.len() >= FLUSH_AT)
        };
        if full {
            self.shared.flush();
        } else if was_empty {
            self.shared.dirty.notify_one();
        }
    }
}

impl DecisionSink for LogSink {
    fn record(&self, record: &DecisionRecord) {
        self.push(record, |err| write_summary(err, record));
    }

    fn record_egress(&self, record: &EgressRecord) {
        self.push(record, |err| crate::egress::write_summary(err, record));
    }

    fn flush(&self) {
        self.shared.flush();
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

/// `moat: 403 deny internet → status (default-url) as anonymous [iam.anonymous]`.
pub fn summary(r: &DecisionRecord) -> String {
    let mut out = Vec::with_capacity(128);
    let _ = write_summary(&mut out, r);
    String::from_utf8_lossy(&out).into_owned()
}

fn write_summary(out: &mut impl Write, r: &DecisionRecord) -> std::io::Result<()> {
    // Pieces written as they are, no formatting machinery: this runs for every request.
    out.write_all(b"moat: ")?;
    match r.status {
        Some(s) => out.write_all(itoa::Buffer::new().format(s).as_bytes())?,
        None => out.write_all(b"---")?,
    }
    let effect: &[u8] = match r.effect {
        Effect::Allow => b" allow ",
        Effect::Deny => b" deny ",
    };
    let service = r.service.as_deref().unwrap_or("(no service)");
    let entry = r.entry.as_deref().unwrap_or("unknown host");
    let who = r.principal.as_deref().unwrap_or("anonymous");
    let why = match (r.upstream_error, r.reasons.last()) {
        (Some(e), _) => e,
        (None, Some(reason)) => reason.code,
        (None, None) => "-",
    };
    out.write_all(effect)?;
    out.write_all(r.listener.as_bytes())?;
    match &r.network_origin {
        Some(net) if *net != r.listener => {
            out.write_all(b" (as ")?;
            out.write_all(net.as_bytes())?;
            out.write_all(b")")?;
        }
        _ => {}
    }
    for piece in [" → ", service, " (", entry, ") as ", who, " [", why, "]"] {
        out.write_all(piece.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
#[expect(clippy::expect_used, clippy::indexing_slicing, reason = "tests name the failing step")]
mod tests {
    use moat_policy::Reason;

    use super::*;

    fn record(n: u32) -> DecisionRecord {
        DecisionRecord {
            time: "2026-01-01T00:00:00Z".into(),
            request_id: format!("r{n}"),
            listener: "service:caller".into(),
            network_origin: Some("vpc:p/n".into()),
            entry: Some("default-url".into()),
            service: Some("api".into()),
            principal: None,
            edge_rule: None,
            waf_signatures: Vec::new(),
            effect: Effect::Deny,
            status: Some(403),
            layer: Some("authorization"),
            reasons: vec![Reason::new("iam.anonymous", "no", None)],
            upstream_error: None,
            latency_ms: 1.5,
        }
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            summary(&record(0)),
            "moat: 403 deny service:caller (as vpc:p/n) → api (default-url) as anonymous [iam.anonymous]"
        );
        let mut r = record(0);
        r.status = None;
        r.listener = "vpc:p/n".into();
        r.service = None;
        r.entry = None;
        r.principal = Some("a@b.example".into());
        r.effect = Effect::Allow;
        r.upstream_error = Some("upstream.timeout");
        assert_eq!(
            summary(&r),
            "moat: --- allow vpc:p/n → (no service) (unknown host) as a@b.example [upstream.timeout]"
        );
        r.status = Some(504);
        r.reasons.clear();
        r.upstream_error = None;
        assert_eq!(summary(&r), "moat: 504 allow vpc:p/n → (no service) (unknown host) as a@b.example [-]");
    }

    #[test]
    fn egress_records_share_the_log_with_their_kind() {
        let dir = std::env::temp_dir().join(format!("moat-decisions-egress-{}", std::process::id()));
        let path = dir.join("decisions.jsonl");
        let _ = std::fs::remove_file(&path);
        let sink = LogSink::open(&path).expect("open");
        sink.record(&record(1));
        sink.record_egress(&EgressRecord {
            kind: "egress",
            time: "2026-01-01T00:00:00Z".into(),
            caller: "api".into(),
            instance: None,
            method: "CONNECT".into(),
            host: "db.internal".into(),
            port: 5432,
            path: None,
            address: Some("10.1.2.3".into()),
            connected_to: Some("127.0.0.1:5432".into()),
            route: Some("vpc:p/n".into()),
            effect: Effect::Allow,
            rule: Some("allow-db".into()),
            reasons: vec![Reason::new("egress.firewall.allow", "yes", None)],
            status: Some(200),
            error: None,
            bytes_up: Some(10),
            bytes_down: Some(20),
            latency_ms: 0.5,
        });
        drop(sink);
        let log = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], serde_json::Value::Null);
        assert_eq!(lines[1]["kind"], "egress");
        assert_eq!(lines[1]["rule"], "allow-db");
        assert_eq!(lines[1]["bytes_down"], 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn buffered_records_are_written_on_flush_and_drop() {
        let dir = std::env::temp_dir().join(format!("moat-decisions-{}", std::process::id()));
        let path = dir.join("decisions.jsonl");
        let _ = std::fs::remove_file(&path);
        let sink = LogSink::open(&path).expect("open");
        sink.record(&record(1));
        DecisionSink::flush(&sink);
        let lines = |p: &Path| std::fs::read_to_string(p).expect("read").lines().count();
        assert_eq!(lines(&path), 1);
        sink.record(&record(2));
        drop(sink);
        let log = std::fs::read_to_string(&path).expect("read");
        let ids: Vec<String> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["request_id"].to_string())
            .collect();
        assert_eq!(ids, ["\"r1\"", "\"r2\""]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
