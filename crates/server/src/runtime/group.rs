//! Each instance runs in its own process group, so that stopping it reaches everything it
//! started (a shell wrapper, a reloader, worker processes), and so that the terminal's Ctrl-C
//! reaches moat alone: moat then stops the instances itself, SIGTERM first as Cloud Run does.
//!
//! [`ProcessGroup`] kills the group when it is dropped, which covers early returns, errors and
//! panics (moat unwinds). A `SIGKILL` of moat itself cannot be covered as it happens without
//! `PR_SET_PDEATHSIG`, which needs `unsafe` between fork and exec; the workspace forbids it.
//! Instead each running group is written down (`STATE/run/groups/PGID`: the leader's start
//! time and its service), and the next `moat up` on the same state kills the groups a killed
//! moat left ([`reap_leftovers`]). The start time is what makes that safe: a recorded group is
//! killed only while its leader is the very process moat started (a reused pid has another).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Child;

/// The process group of one running instance. Dropping it kills the group.
#[derive(Debug)]
pub(super) struct ProcessGroup {
    pgid: Option<i32>,
    /// The record of the running group, removed when the group is killed.
    record: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
enum Sig {
    Term,
    Kill,
}

impl ProcessGroup {
    /// The group led by `pid` (the child was spawned with `process_group(0)`), written down
    /// in `records` (when given) for the next run to reap should moat be killed.
    pub(super) fn led_by(pid: Option<u32>, service: &str, records: Option<&Path>) -> Self {
        let pgid = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0);
        let record = match (pgid, records) {
            (Some(pgid), Some(dir)) => write_record(dir, pgid, service),
            _ => None,
        };
        Self { pgid, record }
    }

    /// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL to whatever is
    /// left. Returns once the leader has been reaped.
    pub(super) async fn terminate(&mut self, child: &mut Child, grace: Duration) {
        self.signal(Sig::Term);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            tracing::debug!("instance did not exit within {grace:?} of SIGTERM; killing it");
        }
        self.kill();
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    /// SIGKILL to the group (what the leader left behind after it exited), then forget it: the
    /// id may be reused once the group is empty.
    pub(super) fn kill(&mut self) {
        self.signal(Sig::Kill);
        self.pgid = None;
        if let Some(record) = self.record.take() {
            let _ = std::fs::remove_file(record);
        }
    }

    fn signal(&self, sig: Sig) {
        let Some(pgid) = self.pgid else { return };
        signal_group(pgid, sig);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(unix)]
fn signal_group(pgid: i32, sig: Sig) {
    use rustix::process::{Pid, Signal, kill_process_group};
    let Some(pid) = Pid::from_raw(pgid) else { return };
    let sig = match sig {
        Sig::Term => Signal::TERM,
        Sig::Kill => Signal::KILL,
    };
    // ESRCH: the group is already gone, which is the point.
    let _ = kill_process_group(pid, sig);
}

#[cfg(not(unix))]
fn signal_group(_pgid: i32, _sig: Sig) {}

/// `DIR/PGID` holding the leader's start time and the service; `None` (and a word on stderr)
/// when it cannot be written: the instance runs anyway, only a killed moat would leave it.
fn write_record(dir: &Path, pgid: i32, service: &str) -> Option<PathBuf> {
    let started = start_time(pgid)?;
    let path = dir.join(pgid.to_string());
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, format!("{started}\n{service}\n")));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("moat: cannot record instance group {pgid} of `{service}` in `{}`: {e}", dir.display());
            None
        }
    }
}

/// When process `pid` started (clock ticks since boot, `/proc/PID/stat` field 22), if it is
/// running.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    let after_name = stat.get(stat.rfind(')')?.checked_add(1)?..)?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Kills the instance groups an earlier moat on the same state left running (it was killed
/// before it could stop them), and forgets every record. Returns what it killed, as
/// `(pgid, service)`.
pub(super) fn reap_leftovers(records: &Path) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir(records) else { return Vec::new() };
    let mut reaped = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let recorded = std::fs::read_to_string(&path).ok();
        let _ = std::fs::remove_file(&path);
        let (Some(pgid), Some(text)) = (entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()), recorded)
        else {
            continue;
        };
        let mut lines = text.lines();
        let (Some(started), Some(service)) = (lines.next().and_then(|l| l.parse::<u64>().ok()), lines.next()) else {
            continue;
        };
        // Only the very process moat started: its pid may since have gone to another.
        if pgid > 0 && start_time(pgid) == Some(started) {
            signal_group(pgid, Sig::Kill);
            reaped.push((pgid, service.to_owned()));
        }
    }
    reaped
}

#[cfg(all(test, target_os = "linux"))]
#[expect(clippy::expect_used, reason = "tests name the failing step")]
mod tests {
    use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};

    use super::*;

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep").arg("30").process_group(0).spawn().expect("sleep starts")
    }

    /// A group a killed moat left (its record written, never killed) is killed by the next
    /// run; a record whose pid now names another process (a different start time) is only
    /// forgotten.
    #[test]
    fn leftover_groups_are_reaped_and_reused_pids_are_spared() {
        let dir = std::env::temp_dir().join(format!("moat-groups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut left = sleeper();
        let group = ProcessGroup::led_by(Some(left.id()), "api", Some(&dir));
        assert!(dir.join(left.id().to_string()).is_file(), "the running group is written down");
        // moat is killed: nothing runs the group's Drop.
        std::mem::forget(group);

        let mut other = sleeper();
        let other_pgid = i32::try_from(other.id()).expect("pid");
        let started = start_time(other_pgid).expect("a start time");
        std::fs::write(dir.join(other.id().to_string()), format!("{}\nweb\n", started + 1)).expect("record");

        let reaped = reap_leftovers(&dir);
        assert_eq!(reaped, vec![(i32::try_from(left.id()).expect("pid"), "api".to_owned())]);
        assert_eq!(left.wait().expect("reaped").signal(), Some(9), "the leftover group was killed");
        assert!(other.try_wait().expect("status").is_none(), "a process that only shares the pid lives");
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0, "every record is forgotten");

        // A group stopped the normal way leaves no record behind.
        let mut stopped = sleeper();
        let mut group = ProcessGroup::led_by(Some(stopped.id()), "api", Some(&dir));
        group.kill();
        let _ = stopped.wait();
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);

        let _ = other.kill();
        let _ = other.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
