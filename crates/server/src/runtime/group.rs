//! Each instance runs in its own process group, so that stopping it reaches everything it
//! started (a shell wrapper, a reloader, worker processes), and so that the terminal's Ctrl-C
//! reaches moat alone: moat then stops the instances itself, SIGTERM first as Cloud Run does.
//!
//! [`ProcessGroup`] kills the group when it is dropped, which covers early returns, errors and
//! panics (moat unwinds). A `SIGKILL` of moat itself cannot be covered without `PR_SET_PDEATHSIG`,
//! which needs `unsafe` between fork and exec; the workspace forbids it.

use std::time::Duration;

use tokio::process::Child;

/// The process group of one running instance. Dropping it kills the group.
#[derive(Debug)]
pub(super) struct ProcessGroup {
    pgid: Option<i32>,
}

#[derive(Debug, Clone, Copy)]
enum Sig {
    Term,
    Kill,
}

impl ProcessGroup {
    /// The group led by `pid` (the child was spawned with `process_group(0)`).
    pub(super) fn led_by(pid: Option<u32>) -> Self {
        Self { pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) }
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
