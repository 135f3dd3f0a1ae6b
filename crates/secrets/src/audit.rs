//! Append-only audit log: `DIR/audit.jsonl`, one JSON object per line, one line for every call
//! of every [`crate::Secrets`] operation, whatever its outcome.
//!
//! ```json
//! {"time":"2026-11-22T10:00:00.123Z","caller":"serviceAccount:app@p.iam.gserviceaccount.com",
//!  "action":"access","resource":"projects/123/secrets/db/versions/latest","version":4,"result":"ok"}
//! ```
//!
//! Never a payload, never a token. The file is opened with `O_APPEND` (mode 0600) and each
//! line goes out in one `write(2)` under a lock, so lines never interleave. Mutations are
//! followed by `fdatasync` before the call returns; accesses are written (to the page cache)
//! before the payload is handed out, without an fsync.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::SecretError;

/// The audit log's file name in the store directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// `admin`, `serviceAccount:EMAIL`, `user:EMAIL`, `anonymous`, or
    /// `serviceAccount:EMAIL (instance of `SERVICE`)`.
    pub caller: String,
    /// The Secret Manager method: `access`, `addVersion`, `createSecret`, ...
    pub action: String,
    /// `projects/NUMBER/secrets/ID[/versions/V]` as asked (`latest` stays `latest`), or
    /// `projects/NUMBER` for a list.
    pub resource: String,
    /// The version number the call resolved to, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `ok`, `denied`, `not_found`, `already_exists`, `invalid_argument`,
    /// `failed_precondition`, `aborted`, `data_loss`, `internal`, `unauthenticated`.
    pub result: String,
    /// The permission that was missing, when `denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// The error message, when not `ok` (resource names only, never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub(crate) struct AuditLog {
    file: Mutex<File>,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (creating with mode 0600) `dir/audit.jsonl`. A last line left unfinished by a
    /// crash is closed with a newline so the next record starts on a line of its own.
    pub(crate) fn open(dir: &Path) -> Result<Self, SecretError> {
        let path = dir.join(AUDIT_FILE);
        let fail = |e: std::io::Error| {
            SecretError::Internal(format!("cannot open the secret audit log `{}`: {e}", path.display()))
        };
        let mut file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path).map_err(fail)?;
        let len = file.metadata().map_err(fail)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(fail)?;
            file.read_exact(&mut last).map_err(fail)?;
            if last != *b"\n" {
                file.write_all(b"\n").map_err(fail)?;
                file.sync_data().map_err(fail)?;
            }
        }
        Ok(Self { file: Mutex::new(file), path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line; `durable` waits for the disk.
    pub(crate) fn append(&self, record: &AuditRecord, durable: bool) -> Result<(), SecretError> {
        let fail = |e: &dyn std::fmt::Display| {
            SecretError::Internal(format!("cannot write the secret audit log `{}`: {e}", self.path.display()))
        };
        let mut line = serde_json::to_vec(record).map_err(|e| fail(&e))?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        f.write_all(&line).map_err(|e| fail(&e))?;
        if durable {
            f.sync_data().map_err(|e| fail(&e))?;
        }
        Ok(())
    }
}

/// `2026-11-22T10:00:00.123Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Howard Hinnant's days-to-civil, for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_250)), "2000-02-29T00:00:00.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn a_torn_last_line_is_closed_on_open() {
        let d = tempfile::tempdir().expect("dir");
        std::fs::write(d.path().join(AUDIT_FILE), b"{\"time\":\"2026").expect("torn");
        let log = AuditLog::open(d.path()).expect("open");
        let rec = AuditRecord {
            time: rfc3339(SystemTime::now()),
            caller: "admin".into(),
            action: "getSecret".into(),
            resource: "projects/1/secrets/s".into(),
            version: None,
            result: "ok".into(),
            permission: None,
            message: None,
        };
        log.append(&rec, true).expect("append");
        let text = std::fs::read_to_string(log.path()).expect("read");
        let last = text.lines().last().expect("a line");
        assert_eq!(serde_json::from_str::<AuditRecord>(last).expect("json"), rec);
        assert_eq!(text.lines().count(), 2);
    }
}
