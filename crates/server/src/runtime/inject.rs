//! Secrets into instances, as Cloud Run does (spec/cloudrun.md §5.3): env secrets are read once
//! when an instance starts (`latest` is resolved then and kept for the instance's life) and a
//! failure keeps the instance from starting; volume secrets are files under the instance's own
//! mount root (`MOAT_MOUNT_ROOT`) that follow the store, so a new version replaces the file and
//! an inaccessible one removes it.
//!
//! Every read goes through `Secrets::access` as the service's runtime service account, so IAM,
//! version states and the audit log apply exactly as for a workload calling the API. Values
//! only ever reach the child's environment and the mounted files: messages name the env var,
//! the secret, the version and why, never the value.

use std::fmt;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use moat_policy::Project;
use moat_policy::model::{EnvValue, Secret, SecretRef, Seed, Service};
use moat_policy::request::Principal;
use moat_policy::secret_access::PolicyDoc;
use moat_secrets::{Caller, Payload, SecretError, Secrets, Selector};
use tokio::task::JoinHandle;

/// How often a volume re-reads its secrets when the store has said nothing. The store's change
/// signal covers everything that can change an access decision: its own mutations (versions,
/// states, secret IAM, declared secrets) and, through `Secrets::set_project`, project IAM and
/// groups on a reload. Nothing depends on the clock (moat does not evaluate IAM conditions, and
/// versions do not expire). So the poll is only a safety net (a wake-up lost while a pass ran is
/// caught by `borrow_and_update` anyway), and each pass writes one audit line per mounted file:
/// every 10 s keeps the audit log readable.
const POLL: Duration = Duration::from_secs(10);

/// Where the secret mounts Cloud Run refuses would land.
const FORBIDDEN_MOUNTS: [&str; 3] = ["/dev", "/proc", "/sys"];

/// Creates every secret moat.yaml declares, sets its declared policy and, when it has no
/// versions, adds its seed as version 1. Seed files are read here and nowhere else.
pub(super) fn declare(project: &Project, project_dir: &Path, secrets: &Secrets) -> Result<(), String> {
    declare_each(project.secrets.values(), project_dir, secrets)
}

/// [`declare`] for some of the declared secrets (a reload applies the new and changed ones).
pub(super) fn declare_each<'a>(
    declared: impl IntoIterator<Item = &'a Secret>,
    project_dir: &Path,
    secrets: &Secrets,
) -> Result<(), String> {
    for secret in declared {
        let seed = match &secret.seed {
            None => None,
            Some(Seed::Random) => Some(zeroize::Zeroizing::new(random_seed()?)),
            Some(Seed::File { path, source }) => {
                let file = project_dir.join(path);
                let data = std::fs::read(&file).map_err(|e| {
                    format!(
                        "cannot read the seed of secret `{}` from `{}` ({source}): {e}",
                        secret.name,
                        file.display()
                    )
                })?;
                Some(zeroize::Zeroizing::new(data))
            }
        };
        secrets
            .ensure_declared(&secret.name, &PolicyDoc::from_model(&secret.iam), seed.as_deref().map(Vec::as_slice))
            .map_err(|e| format!("cannot declare secret `{}` ({}): {e}", secret.name, secret.source))?;
    }
    Ok(())
}

/// 32 random bytes, base64url without padding.
fn random_seed() -> Result<Vec<u8>, String> {
    let mut bytes = zeroize::Zeroizing::new([0_u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut_slice()).map_err(|_| "the system random number generator failed".to_owned())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()).into_bytes())
}

/// One service's secrets, read again for every instance it starts.
#[derive(Debug, Clone)]
pub(super) struct Injection {
    /// `ID (NUMBER)`, for messages.
    project: String,
    service: String,
    account: String,
    secrets: Secrets,
    env: Vec<(String, SecretRef)>,
    /// The files of its secret volumes, or why they cannot be laid out.
    files: Result<Vec<MountedFile>, String>,
    /// `STATE/instances/SERVICE`: one private directory per instance under it.
    instances: PathBuf,
}

/// One file of a secret volume.
#[derive(Debug, Clone)]
struct MountedFile {
    /// Under the mount root: `secrets/db-pass` for `/secrets` + `db-pass`.
    relative: PathBuf,
    /// As the workload would see it on Cloud Run (`/secrets/db-pass`), for messages.
    shown: String,
    secret: SecretRef,
    mode: u32,
}

/// What an instance starts with: its env secrets and its mount root.
pub(super) struct Prepared {
    /// Env var name and the payload, in the order the service spec lists them.
    pub env: Vec<(String, Payload)>,
    pub mount: Mount,
    /// The version each volume file holds now (`None`: not written).
    held: Vec<Held>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Prepared").field("env", &names).field("mount", &self.mount).finish_non_exhaustive()
    }
}

/// The instance's private directory: removed, with every file in it, when dropped (the instance
/// has stopped), and its follower with it.
#[derive(Debug)]
pub(super) struct Mount {
    root: PathBuf,
    follower: Option<JoinHandle<()>>,
}

impl Mount {
    /// `MOAT_MOUNT_ROOT`.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(task) = self.follower.take() {
            task.abort();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("moat: cannot remove the secret mounts `{}`: {e}", self.root.display());
        }
    }
}

/// What a volume file holds, and the last reason it could not hold anything (said once).
#[derive(Debug, Clone, Default)]
struct Held {
    version: Option<u64>,
    refused: Option<String>,
}

impl Injection {
    /// Clears what earlier runs left under `STATE/instances/SERVICE` (a moat that was killed
    /// cannot clean up): mounted secrets must not outlive their instance. `STATE/instances` is a
    /// link into a tmpfs when there is one ([`instances_dir`]).
    pub fn new(project: &Project, service: &Service, secrets: &Secrets, state_dir: &Path) -> Self {
        // Absolute: the workload runs in its own directory and is told this path.
        let state_dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        let instances = instances_dir(&state_dir).join(&service.name);
        if let Err(e) = std::fs::remove_dir_all(&instances)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("moat: cannot remove old secret mounts `{}`: {e}", instances.display());
        }
        let env = service
            .env
            .iter()
            .filter_map(|e| match &e.value {
                EnvValue::Secret(r) => Some((e.name.clone(), r.clone())),
                EnvValue::Plain(_) => None,
            })
            .collect();
        Self {
            project: format!("{} ({})", project.id, project.number),
            service: service.name.clone(),
            account: service.service_account.value.clone(),
            secrets: secrets.clone(),
            env,
            files: layout(service),
            instances,
        }
    }

    /// Wakes on every committed change of the store (a fixed grant, a new version).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.secrets.subscribe()
    }

    fn caller(&self) -> Caller {
        Caller::Instance { service: self.service.clone(), account: Principal::from_email(&self.account) }
    }

    /// Reads the env secrets and writes the volume files into a new private directory. An env
    /// secret that cannot be read fails the start (every failing one is named); a volume file
    /// that cannot be read is left out, as on Cloud Run, where the read fails.
    pub fn prepare(&self) -> Result<Prepared, String> {
        let caller = self.caller();
        let mut env = Vec::with_capacity(self.env.len());
        let mut failures = Vec::new();
        for (name, r) in &self.env {
            match self.read(&caller, r) {
                Ok(p) if p.data.contains(&0) => failures.push(format!(
                    "env var `{name}` cannot be set from secret `{}` version {}: the value contains a NUL byte, which an environment variable cannot hold (mount it as a file instead)",
                    r.secret, p.version
                )),
                Ok(p) => env.push((name.clone(), p)),
                Err(why) => failures.push(format!(
                    "env var `{name}` cannot be set from secret `{}` version `{}`: {why}",
                    r.secret, r.version
                )),
            }
        }
        if !failures.is_empty() {
            return Err(failures.join("; "));
        }
        let files = self.files.as_ref().map_err(Clone::clone)?;
        let root = self.instances.join(instance_id()?);
        private_dir(&root).map_err(|e| format!("cannot create its secret mounts `{}`: {e}", root.display()))?;
        let mount = Mount { root, follower: None };
        for f in files {
            if let Some(parent) = mount.root.join(&f.relative).parent() {
                private_dir(parent).map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
            }
        }
        let mut held = vec![Held::default(); files.len()];
        self.refresh(&mount.root, &mut held, false);
        Ok(Prepared { env, mount, held })
    }

    /// Keeps the instance's volume files in step with the store until the mount is dropped.
    pub fn follow(&self, prepared: &mut Prepared) {
        if self.files.as_ref().is_ok_and(Vec::is_empty) {
            return;
        }
        let this = self.clone();
        let root = prepared.mount.root.clone();
        let mut held = std::mem::take(&mut prepared.held);
        let mut changes = self.secrets.subscribe();
        prepared.mount.follower = Some(tokio::spawn(async move {
            let mut poll = tokio::time::interval(POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            poll.tick().await;
            let mut store_open = true;
            loop {
                tokio::select! {
                    changed = changes.changed(), if store_open => store_open = changed.is_ok(),
                    _ = poll.tick() => {}
                }
                let _ = changes.borrow_and_update();
                let (inner, dir) = (this.clone(), root.clone());
                held = match tokio::task::spawn_blocking(move || {
                    inner.refresh(&dir, &mut held, true);
                    held
                })
                .await
                {
                    Ok(h) => h,
                    Err(_) => return,
                };
            }
        }));
    }

    /// One pass over the volume files: a file whose secret now resolves to another version is
    /// replaced atomically; one whose version cannot be read any more is removed.
    fn refresh(&self, root: &Path, held: &mut [Held], running: bool) {
        let Ok(files) = &self.files else { return };
        let caller = self.caller();
        for (f, h) in files.iter().zip(held.iter_mut()) {
            let path = root.join(&f.relative);
            match self.read(&caller, &f.secret) {
                Ok(p) if h.version == Some(p.version) && path.exists() => {}
                Ok(p) => match write_atomically(&path, &p.data, f.mode) {
                    Ok(()) => {
                        if running {
                            eprintln!(
                                "moat: `{}`: {} now holds version {} of secret `{}`",
                                self.service, f.shown, p.version, f.secret.secret
                            );
                        }
                        *h = Held { version: Some(p.version), refused: None };
                    }
                    // The instance has stopped and its directory is gone.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                    Err(e) => eprintln!("moat: `{}`: cannot write {}: {e}", self.service, f.shown),
                },
                Err(why) => {
                    let gone = h.version.take().is_some();
                    if gone
                        && let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        eprintln!("moat: `{}`: cannot remove {}: {e}", self.service, f.shown);
                    }
                    if gone || h.refused.as_deref() != Some(why.as_str()) {
                        let what = if gone { "removed" } else { "not written" };
                        eprintln!(
                            "moat: `{}`: {} {what}: secret `{}` version `{}`: {why}",
                            self.service, f.shown, f.secret.secret, f.secret.version
                        );
                    }
                    h.refused = Some(why);
                }
            }
        }
    }

    /// Reads `r` as the service's runtime service account; the error says why, in words a
    /// person can act on (never the value).
    fn read(&self, caller: &Caller, r: &SecretRef) -> Result<Payload, String> {
        if let Some(p) = &r.project
            && !self.secrets.is_own_project(p)
        {
            return Err(format!(
                "the secret is in project `{p}`, which moat does not hold: moat's secret store holds project {} only (create the secret there and reference it without a project)",
                self.project
            ));
        }
        let selector = r.version.parse::<Selector>().map_err(|_| {
            format!(
                "`{}` is a version alias, which moat's secret store does not have: reference `latest` or a version number",
                r.version
            )
        })?;
        self.secrets.access(caller, &r.secret, selector).map_err(|e| self.why(&e, r))
    }

    fn why(&self, e: &SecretError, r: &SecretRef) -> String {
        let secret = &r.secret;
        match e {
            SecretError::PermissionDenied(_) => format!(
                "service account `{}` lacks permission `secretmanager.versions.access` on secret `{secret}`: grant it `roles/secretmanager.secretAccessor` on the secret (its `iam` in moat.yaml)",
                self.account
            ),
            SecretError::FailedPrecondition(m) if r.is_latest() => format!(
                "{m} `latest` is the newest version whatever its state and never falls back to an older one: enable it, add a new version, or pin an enabled version"
            ),
            SecretError::FailedPrecondition(m) => format!("{m} Enable it or reference an enabled version"),
            SecretError::NotFound(m) => format!(
                "{m} Add a version (the Secret Manager API or `moat secrets`), or declare the secret with a `seed` in moat.yaml"
            ),
            other => other.to_string(),
        }
    }
}

/// Every file of the service's secret volumes under the mount root, checked as Cloud Run checks
/// them at deploy time: absolute mount paths outside `/dev`, `/proc` and `/sys`, one volume per
/// mount path, relative file paths without `..`.
fn layout(service: &Service) -> Result<Vec<MountedFile>, String> {
    let mut files = Vec::new();
    let mut mounts: Vec<&str> = Vec::new();
    for v in &service.volumes {
        // A volume no container mounts is not visible anywhere.
        let Some(mount) = v.mount_path.as_deref() else { continue };
        let at = format!("secret volume `{}` ({})", v.name, v.source);
        let mount_rel = normal(mount.strip_prefix('/').unwrap_or(""))
            .filter(|_| mount.starts_with('/'))
            .ok_or_else(|| format!("{at}: mount path `{mount}` must be an absolute path without `.` or `..`"))?;
        if FORBIDDEN_MOUNTS.iter().any(|f| Path::new(mount).starts_with(f)) {
            return Err(format!("{at}: secrets cannot be mounted at `{mount}` (under /dev, /proc or /sys)"));
        }
        if mounts.contains(&mount) {
            return Err(format!("{at}: another secret volume is already mounted at `{mount}`"));
        }
        mounts.push(mount);
        for (i, (secret, path)) in v.files.iter().zip(&v.paths).enumerate() {
            let rel = normal(path)
                .ok_or_else(|| format!("{at}: file path `{path}` must be a relative path without `.` or `..`"))?;
            files.push(MountedFile {
                relative: mount_rel.join(rel),
                shown: format!("{}/{path}", mount.trim_end_matches('/')),
                secret: secret.clone(),
                mode: v.file_mode(i),
            });
        }
    }
    Ok(files)
}

/// `p` as a non-empty relative path of plain names.
fn normal(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}

/// A fresh name for an instance's directory.
fn instance_id() -> Result<String, String> {
    let mut b = [0_u8; 8];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| "the system random number generator failed".to_owned())?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `STATE/instances`, where each instance's mount root goes, made a symbolic link to a private
/// (0700) directory on a tmpfs so that plaintext secret files stay off the persistent disk:
/// under `$XDG_RUNTIME_DIR` when it is set and on a tmpfs, else under `/dev/shm`. An existing
/// link into a tmpfs directory of moat's user is kept (a reload adds services while others run);
/// a link whose target is gone (a reboot) and a directory left by an earlier run are replaced.
/// With neither tmpfs, `STATE/instances` stays a directory on disk, and moat says so.
pub(crate) fn instances_dir(state_dir: &Path) -> PathBuf {
    let link = state_dir.join("instances");
    if let Err(why) = link_to_tmpfs(&link) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!(
                "moat: secret volumes are written on disk under `{}`: {why} (mount a tmpfs at $XDG_RUNTIME_DIR or /dev/shm to keep them in memory)",
                link.display()
            );
        });
        if let Err(e) = private_dir(&link) {
            eprintln!("moat: cannot create `{}`: {e}", link.display());
        }
    }
    link
}

/// After the last instance stopped: removes the tmpfs directory `STATE/instances` links to,
/// and the link, when nothing but the (empty) per-service directories is left in it, so that a
/// finished run leaves nothing in `/dev/shm`. Only empty directories are removed: anything an
/// instance still holds stays, and so does a `STATE/instances` that is a plain directory.
pub(crate) fn release_instances_dir(state_dir: &Path) {
    let link = state_dir.join("instances");
    let Ok(target) = std::fs::read_link(&link) else { return };
    if let Ok(entries) = std::fs::read_dir(&target) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    if std::fs::remove_dir(&target).is_ok() {
        let _ = std::fs::remove_file(&link);
    }
}

fn link_to_tmpfs(link: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).map_err(|e| format!("cannot read /proc/self: {e}"))?;
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(link).map_err(|e| format!("cannot read the link: {e}"))?;
            let ours =
                std::fs::symlink_metadata(&target).is_ok_and(|t| t.is_dir() && t.uid() == me && t.mode() & 0o077 == 0);
            if ours && on_tmpfs(&target) {
                return Ok(());
            }
            std::fs::remove_file(link).map_err(|e| format!("cannot remove the stale link: {e}"))?;
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg
        .into_iter()
        .chain([PathBuf::from("/dev/shm")])
        .find(|b| b.is_dir() && on_tmpfs(b))
        .ok_or_else(|| "neither $XDG_RUNTIME_DIR nor /dev/shm is a tmpfs".to_owned())?;
    // A fresh random name, created exclusively: nobody can have prepared it (/dev/shm is shared).
    let target = base.join(format!("moat-{}", instance_id()?));
    let mut b = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(&target).map_err(|e| format!("cannot create `{}`: {e}", target.display()))?;
    let linked = (|| {
        // A directory left by an earlier run (older moat, or no tmpfs then): its files are
        // plaintext on disk, and no instance of this run uses them yet.
        if std::fs::symlink_metadata(link).is_ok() {
            std::fs::remove_dir_all(link)?;
        }
        let tmp = link.with_file_name(".instances.moat-tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)?;
        std::fs::rename(&tmp, link)
    })();
    linked.map_err(|e| {
        let _ = std::fs::remove_dir(&target);
        format!("cannot link `{}` to `{}`: {e}", link.display(), target.display())
    })
}

/// Whether `dir` is on a tmpfs (or ramfs), by the mount table.
fn on_tmpfs(dir: &Path) -> bool {
    let (Ok(dir), Ok(mounts)) = (std::fs::canonicalize(dir), std::fs::read_to_string("/proc/self/mounts")) else {
        return false;
    };
    on_tmpfs_in(&mounts, &dir)
}

/// [`on_tmpfs`] over a mount table in `/proc/mounts` form: the deepest mount point holding
/// `dir` decides (the last one listed when several are stacked there).
fn on_tmpfs_in(mounts: &str, dir: &Path) -> bool {
    let mut best: Option<(usize, bool)> = None;
    for line in mounts.lines() {
        let mut fields = line.split(' ');
        let (Some(_), Some(point), Some(fstype)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let point = PathBuf::from(unescape_mount(point));
        if dir.starts_with(&point) {
            let depth = point.components().count();
            if best.is_none_or(|(d, _)| depth >= d) {
                best = Some((depth, matches!(fstype, "tmpfs" | "ramfs")));
            }
        }
    }
    best.is_some_and(|(_, tmpfs)| tmpfs)
}

/// The kernel writes space, tab, newline and backslash in mount points as `\NNN` (octal).
fn unescape_mount(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let code = tail.get(1..4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = tail.get(4..).unwrap_or_default();
            }
            None => {
                out.push('\\');
                rest = tail.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// Creates `dir` and its missing parents, readable by moat's user only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Replaces `path` in one step: the data goes to a temporary file in the same directory, gets
/// its final mode, and is renamed over the old file, so a reader sees the old value or the new
/// one, never a mix.
fn write_atomically(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.moat-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(data)?;
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        #[cfg(not(unix))]
        let _ = mode;
        // No fsync: the file is plaintext and lives only as long as its instance (on a tmpfs,
        // where there is nothing to sync; on a disk, syncing would only make it outlive a crash).
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use moat_policy::SourceFile;

    use super::*;

    fn service(volumes: &str, mounts: &str) -> Service {
        let text = format!(
            r#"{{"name": "s", "template": {{"containers": [{{"image": "i", "volumeMounts": [{mounts}]}}], "volumes": [{volumes}]}}}}"#
        );
        let files = [
            SourceFile { path: "moat.yaml".into(), text: "project: {id: p, number: '1', region: r}\n".into() },
            SourceFile { path: "services/s.json".into(), text },
        ];
        moat_policy::load(&files).unwrap().services.remove("s").unwrap()
    }

    #[test]
    fn volume_files_land_under_the_mount_root() {
        let s = service(
            r#"{"name": "a", "secret": {"secret": "api-key", "items": [{"path": "key", "version": "2", "mode": 256}]}},
               {"name": "b", "secret": {"secret": "db"}}, {"name": "unmounted", "secret": {"secret": "x"}}"#,
            r#"{"name": "a", "mountPath": "/secrets"}, {"name": "b", "mountPath": "/etc/db/"}"#,
        );
        let files = layout(&s).unwrap();
        let got: Vec<(String, &str, &str, u32)> = files
            .iter()
            .map(|f| (f.relative.display().to_string(), f.shown.as_str(), f.secret.version.as_str(), f.mode))
            .collect();
        assert_eq!(
            got,
            [
                ("secrets/key".to_owned(), "/secrets/key", "2", 0o400),
                ("etc/db/db".to_owned(), "/etc/db/db", "latest", 0o444)
            ]
        );
    }

    #[test]
    fn mounts_cloud_run_refuses_are_refused() {
        let one = |mount: &str, path: &str| {
            let vol = format!(r#"{{"name": "a", "secret": {{"secret": "k", "items": [{{"path": "{path}"}}]}}}}"#);
            layout(&service(&vol, &format!(r#"{{"name": "a", "mountPath": "{mount}"}}"#)))
        };
        assert!(one("/secrets", "k").is_ok());
        for (mount, path, why) in [
            ("secrets", "k", "must be an absolute path"),
            ("/", "k", "must be an absolute path"),
            ("/a/../b", "k", "must be an absolute path"),
            ("/proc/x", "k", "under /dev, /proc or /sys"),
            ("/dev", "k", "under /dev, /proc or /sys"),
            ("/s", "../k", "must be a relative path"),
            ("/s", "/k", "must be a relative path"),
            ("/s", "", "must be a relative path"),
        ] {
            let err = one(mount, path).unwrap_err();
            assert!(err.contains(why) && err.contains("services/s.json:"), "{mount} {path}: {err}");
        }
        let two = service(
            r#"{"name": "a", "secret": {"secret": "k"}}, {"name": "b", "secret": {"secret": "l"}}"#,
            r#"{"name": "a", "mountPath": "/s"}, {"name": "b", "mountPath": "/s"}"#,
        );
        assert!(layout(&two).unwrap_err().contains("already mounted at `/s`"));
    }

    #[test]
    fn files_are_replaced_whole_and_never_writable() {
        let dir = std::env::temp_dir().join(format!("moat-inject-{}", std::process::id()));
        private_dir(&dir.join("secrets")).unwrap();
        let path = dir.join("secrets/k");
        write_atomically(&path, b"one", 0o444).unwrap();
        write_atomically(&path, b"two", 0o400).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o400);
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.join("secrets")).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tmpfs_is_told_by_the_deepest_mount_point() {
        let mounts = "overlay / overlay rw 0 0\n\
                      tmpfs /dev/shm tmpfs rw 0 0\n\
                      tmpfs /run/user/1000 tmpfs rw 0 0\n\
                      /dev/sda1 /run/user/1000/disk ext4 rw 0 0\n\
                      tmpfs /mnt/with\\040space tmpfs rw 0 0\n\
                      tmpfs /stacked tmpfs rw 0 0\n\
                      /dev/sdb /stacked xfs rw 0 0\n";
        for (dir, want) in [
            ("/", false),
            ("/dev/shm/moat-1", true),
            ("/dev/shmx", false),
            ("/run/user/1000", true),
            ("/run/user/1000/disk/a", false),
            ("/mnt/with space/x", true),
            ("/stacked/x", false),
            ("/home/u/state", false),
        ] {
            assert_eq!(on_tmpfs_in(mounts, Path::new(dir)), want, "{dir}");
        }
        assert_eq!(unescape_mount("a\\011b\\134c\\"), "a\tb\\c\\");
    }

    #[test]
    fn instances_go_to_a_private_tmpfs_directory_that_is_kept_across_calls() {
        use std::os::unix::fs::PermissionsExt as _;
        if !on_tmpfs(Path::new("/dev/shm")) {
            eprintln!("SKIP: /dev/shm is not a tmpfs here");
            return;
        }
        let state = std::env::temp_dir().join(format!("moat-inject-base-{}", std::process::id()));
        // A directory an earlier run left on disk.
        std::fs::create_dir_all(state.join("instances/old/0a")).unwrap();
        std::fs::write(state.join("instances/old/0a/k"), b"left over").unwrap();
        let link = instances_dir(&state);
        let target = std::fs::read_link(&link).expect("a link");
        assert!(on_tmpfs(&target), "{}", target.display());
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!link.join("old").exists(), "leftovers of an earlier run are removed");
        private_dir(&link.join("svc/1")).unwrap();
        assert_eq!(std::fs::read_link(instances_dir(&state)).unwrap(), target, "kept while it is valid");
        assert!(link.join("svc/1").is_dir());
        // The target vanished (a reboot): a fresh one.
        std::fs::remove_dir_all(&target).unwrap();
        let again = std::fs::read_link(instances_dir(&state)).unwrap();
        assert_ne!(again, target);
        assert!(again.is_dir());
        // Released at shutdown only once nothing but empty service directories is left.
        private_dir(&link.join("svc/2")).unwrap();
        release_instances_dir(&state);
        assert!(again.join("svc/2").is_dir(), "an instance's directory is never removed");
        std::fs::remove_dir(again.join("svc/2")).unwrap();
        release_instances_dir(&state);
        assert!(!again.exists(), "the tmpfs directory is removed");
        assert!(std::fs::symlink_metadata(&link).is_err(), "and so is the link");
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn random_seeds_are_32_bytes_of_base64url() {
        let a = random_seed().unwrap();
        assert_eq!(a.len(), 43);
        assert!(a.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'));
        assert_ne!(a, random_seed().unwrap());
    }
}
