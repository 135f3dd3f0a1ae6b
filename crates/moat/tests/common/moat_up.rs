//! A `moat up` child process on a project written to a temporary directory, for the secret
//! store tests: started, read until `ready:`, stopped with SIGTERM or killed with SIGKILL.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::listeners::{listener_addr, read_until_ready};

/// A project directory under the system temp dir, removed when dropped.
pub struct TempProject {
    pub dir: PathBuf,
}

impl TempProject {
    /// A project with no services: the secret store and its API are all there is.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("moat-{name}-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("moat.yaml"),
            "project: {id: sec-proj, number: '200000000002', region: us-central1}\nlisteners:\n  internet: 127.0.0.1:0\n",
        )
        .unwrap();
        Self { dir }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join(".moat")
    }
}

impl Drop for TempProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// A running `moat up`; killed if still running when dropped.
pub struct Up {
    pub child: Child,
    pub stdout: Vec<String>,
    /// Every stdout line so far, what came after `ready:` included.
    pub printed: Arc<Mutex<Vec<String>>>,
    /// The `secrets` listener from the printed table.
    pub secrets: SocketAddr,
}

impl Up {
    /// Starts `moat up PROJECT` (stderr to `stderr`) and waits for its `ready:` line.
    pub fn start(project: &Path, stderr: &Path) -> Self {
        Self::start_with(project, &[], &[], stderr)
    }

    /// [`Up::start`] with more arguments (`--state DIR`) and environment (`RUST_LOG`).
    pub fn start_with(project: &Path, args: &[&OsStr], env: &[(&str, &str)], stderr: &Path) -> Self {
        let err = std::fs::File::create(stderr).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("up")
            .arg(project)
            .args(args)
            .env_remove("MOAT_MASTER_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("moat starts");
        let printed = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(30));
        let Some(stdout) = printed.ready else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "moat up printed no `ready:` line within 30 s:\n{}\nstderr:\n{}",
                printed.all.lock().unwrap().join("\n"),
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        };
        let secrets = listener_addr(&stdout, "secrets");
        Self { child, stdout, printed: printed.all, secrets }
    }

    /// SIGTERM, then wait (SIGKILL after 15 s); returns whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}
