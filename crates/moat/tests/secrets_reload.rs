//! Secrets across a config reload of `moat up` (a temporary copy of a small project with one
//! stdlib Python workload): declared secrets that are new or whose `iam` changed are applied to
//! the store, a project IAM change reaches the mounted files through the store's change signal
//! (well within the 10 s fallback poll), a declared secret that cannot be applied refuses the
//! reload, and a change to a service's secret env or volumes needs a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/http.rs"]
mod http;
#[path = "common/listeners.rs"]
mod listeners;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listeners::{collect, listener_addr, read_until_ready};
use serde_json::Value;

const SEED: &str = "reload-seed-vol-v1-6c1e0f";
const READER: &str = "serviceAccount:reader@rel-proj.iam.gserviceaccount.com";
/// Well under the volume poll (10 s): only the change signal can make it.
const SIGNAL_BUDGET: Duration = Duration::from_secs(3);

fn moat_yaml(project_iam: bool, vol_iam: bool, extra: &str) -> String {
    let iam = if project_iam {
        format!("iam:\n  bindings:\n    - role: roles/secretmanager.secretAccessor\n      members: ['{READER}']\n")
    } else {
        String::new()
    };
    let vol_iam = if vol_iam {
        format!(
            "    iam:\n      bindings:\n        - role: roles/secretmanager.secretAccessor\n          members: ['{READER}']\n"
        )
    } else {
        String::new()
    };
    format!(
        "project: {{id: rel-proj, number: '300000000003', region: us-central1}}\nlisteners:\n  internet: 127.0.0.1:0\n{iam}secrets:\n  - name: vol\n    seed: {{file: seeds/vol.txt}}\n{vol_iam}{extra}run:\n  reader:\n    command: [python3, app.py]\n    dir: app\n"
    )
}

fn reader_yaml(mount: &str, env_secret: Option<&str>) -> String {
    let env = env_secret.map_or_else(String::new, |s| {
        format!("        env:\n        - name: FROM_SECRET\n          valueFrom:\n            secretKeyRef:\n              name: {s}\n              key: latest\n")
    });
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: reader\n  namespace: '300000000003'\n  labels:\n    cloud.googleapis.com/location: us-central1\nspec:\n  template:\n    spec:\n      serviceAccountName: reader@rel-proj.iam.gserviceaccount.com\n      containers:\n      - image: reader\n{env}        volumeMounts:\n        - name: vol\n          mountPath: {mount}\n      volumes:\n      - name: vol\n        secret:\n          secretName: vol\n          items:\n          - key: latest\n            path: current\n"
    )
}

/// Replaces `path` in one rename, as editors that save atomically do.
fn write(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Up {
    child: Child,
    admin: SocketAddr,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Up {
    fn start(dir: PathBuf) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("up")
            .arg(&dir)
            .env_remove("MOAT_MASTER_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let Some(printed) = read_until_ready(child.stdout.take().unwrap(), Duration::from_secs(60)).ready else {
            let _ = child.kill();
            panic!("moat up printed no `ready:` line: {}", stderr.lock().unwrap())
        };
        Self { admin: listener_addr(&printed, "admin"), child, stderr, dir }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (10 s at most) until stderr says `text` `n` times; the stderr.
    fn said(&self, text: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let err = self.stderr();
            if err.matches(text).count() >= n {
                return err;
            }
            assert!(Instant::now() < deadline, "moat never said `{text}` {n} times:\n{err}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn instance(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = json(self.admin, "/status");
            let s = status["services"].as_array().unwrap().iter().find(|s| s["service"] == "reader").cloned().unwrap();
            if s["state"] == "ready" {
                return SocketAddr::from(([127, 0, 0, 1], u16::try_from(s["port"].as_u64().unwrap()).unwrap()));
            }
            assert!(Instant::now() < deadline, "`reader` never became ready: {s}\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn file(&self) -> Result<String, String> {
        let out = json(self.instance(), "/file?name=secrets/current");
        match (out["data"].as_str(), out["error"].as_str()) {
            (Some(d), _) => Ok(d.to_owned()),
            (None, Some(e)) => Err(e.to_owned()),
            _ => panic!("{out}"),
        }
    }

    fn file_becomes(&self, want: Result<&str, &str>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.file();
            if got.as_deref().map_err(String::as_str) == want {
                return;
            }
            assert!(Instant::now() < deadline, "secrets/current: {got:?}, want {want:?}\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `moat secrets ARGS...` against this moat; (success, stdout + stderr).
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_moat"))
            .arg("secrets")
            .arg("--project")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

fn project() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-secrets-reload-{}-{:?}", std::process::id(), Instant::now()));
    for sub in ["app", "seeds", "services"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/secrets/app/app.py");
    std::fs::copy(app, dir.join("app/app.py")).unwrap();
    std::fs::write(dir.join("seeds/vol.txt"), SEED).unwrap();
    std::fs::write(dir.join("moat.yaml"), moat_yaml(false, false, "")).unwrap();
    std::fs::write(dir.join("services/reader.yaml"), reader_yaml("/secrets", None)).unwrap();
    dir
}

#[test]
fn reloads_apply_declared_secrets_and_project_iam_and_refuse_instance_contract_changes() {
    let up = Up::start(project());
    let moat = up.dir.join("moat.yaml");
    // No grant yet: the file is not written.
    up.file_becomes(Err("No such file or directory"), Duration::from_secs(5));

    // Project IAM grants the reader: the reload wakes the volume (the store said nothing).
    write(&moat, &moat_yaml(true, false, ""));
    up.said("moat: reloaded (", 1);
    up.file_becomes(Ok(SEED), SIGNAL_BUDGET);

    // The grant moves to the declared secret's own `iam`, and a new declared secret appears:
    // both are applied to the store by the reload.
    let extra = "  - name: extra\n    seed: random\n";
    write(&moat, &moat_yaml(false, true, extra));
    up.said("moat: reloaded (", 2);
    let (ok, policy) = up.cli(&["iam", "get", "vol", "--format", "json"]);
    assert!(ok && policy.contains("reader@rel-proj.iam.gserviceaccount.com"), "{policy}");
    let (ok, versions) = up.cli(&["versions", "extra"]);
    assert!(ok && versions.lines().nth(1).is_some_and(|l| l.starts_with("1 ")), "{versions}");
    up.file_becomes(Ok(SEED), SIGNAL_BUDGET);

    // A declared secret whose seed cannot be read refuses the whole reload: `vol`'s grant stays.
    let broken = "  - name: broken\n    seed: {file: seeds/missing.txt}\n";
    write(&moat, &moat_yaml(false, false, &format!("{extra}{broken}")));
    let err = up.said("reload refused, still serving the previous config", 1);
    assert!(err.contains("cannot read the seed of secret `broken`"), "{err}");
    let (_, versions) = up.cli(&["versions", "broken"]);
    assert!(versions.contains("NOT_FOUND"), "{versions}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(up.file(), Ok(SEED.to_owned()), "the previous config still applies");

    // Secret env and volumes are read when the instance starts: a change needs a restart.
    write(&moat, &moat_yaml(false, true, extra));
    up.said("moat: reloaded (", 3);
    write(&up.dir.join("services/reader.yaml"), &reader_yaml("/elsewhere", Some("extra")));
    let err = up.said("reload refused, still serving the previous config", 2);
    assert!(err.contains("the secret env of `reader` changed"), "{err}");
    assert!(err.contains("the secret volumes of `reader` changed"), "{err}");
}

fn json(addr: SocketAddr, path: &str) -> Value {
    http::get_json(addr, path).unwrap_or_else(|e| panic!("{e}"))
}
