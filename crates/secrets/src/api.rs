//! The facade every caller uses: the Secret Manager API handlers, `moat up`'s injection and
//! the CLI (through the API). Each call: authorize (moat_policy::secret_access), act on the
//! store, write one audit record, whatever the outcome.
//!
//! PUBLIC API CONTRACT (fixed by the lead; other crates are written against it): keep these
//! types and signatures; add private helpers freely.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use moat_policy::Project;
use moat_policy::request::Principal;
use moat_policy::secret_access::PolicyDoc;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::audit::AuditLog;
use crate::error::SecretError;
use crate::master::MasterKey;
use crate::seal::Keyring;
use crate::store::Store;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The local admin credential (`STATE/secrets/admin.token`, mode 0600): the CLI. Allowed
    /// everything, audited as `admin`.
    Admin,
    /// A principal authenticated by an access token from moat's metadata server or an ID token;
    /// IAM decides. `Principal::Anonymous` for a request with no credential.
    Principal(Principal),
    /// `moat up` itself, resolving a secret for an instance of a service: decided as the
    /// service's runtime service account, audited with the service name.
    Instance { service: String, account: Principal },
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admin => f.write_str("admin"),
            Self::Principal(p) => write!(f, "{p}"),
            Self::Instance { service, account } => write!(f, "{account} (instance of `{service}`)"),
        }
    }
}

/// Which version: `latest` or a number (`"latest"` / `"3"` in names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Number(u64),
}

impl std::str::FromStr for Selector {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, SecretError> {
        if s == "latest" {
            return Ok(Self::Latest);
        }
        match s.parse::<u64>() {
            Ok(n) if n >= 1 && !s.starts_with('+') && !s.starts_with('0') => Ok(Self::Number(n)),
            _ => Err(SecretError::InvalidArgument(format!(
                "`{s}` is not a secret version: use `latest` or a version number from 1"
            ))),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
}

impl VersionState {
    /// The proto enum name (`ENABLED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "ENABLED",
            Self::Disabled => "DISABLED",
            Self::Destroyed => "DESTROYED",
        }
    }

    /// The proto enum number (`SecretVersion.State`: ENABLED = 1, DISABLED = 2, DESTROYED = 3).
    pub fn as_int(self) -> i32 {
        match self {
            Self::Enabled => 1,
            Self::Disabled => 2,
            Self::Destroyed => 3,
        }
    }
}

/// A secret's metadata (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The secret id (`db-password`).
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub create_time: SystemTime,
    /// Opaque; changes with every update of the secret's metadata or policy.
    pub etag: String,
    /// The newest version number; 0 when the secret has no versions.
    pub latest: u64,
}

/// A version's metadata (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub secret: String,
    pub version: u64,
    pub state: VersionState,
    pub create_time: SystemTime,
    pub destroy_time: Option<SystemTime>,
    /// CRC32C of the payload (absent once destroyed).
    pub crc32c: Option<u32>,
    pub etag: String,
}

/// A payload read by `access`. `Debug` never prints the data; dropped data is zeroed.
pub struct Payload {
    /// The resolved version (a number even when `latest` was asked for).
    pub version: u64,
    pub data: Zeroizing<Vec<u8>>,
    pub crc32c: u32,
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload").field("version", &self.version).field("len", &self.data.len()).finish_non_exhaustive()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_page_token: String,
    pub total_size: usize,
}

/// The store of one project, with its authorization and audit. Cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) project: arc_swap::ArcSwap<Project>,
    pub(crate) changes: watch::Sender<u64>,
    pub(crate) dir: PathBuf,
    pub(crate) store: Store,
    /// The master key the store's data keys are wrapped under.
    pub(crate) keys: arc_swap::ArcSwap<Keyring>,
    /// Shared by every call that seals or unseals, exclusive for a master key rotation: a read
    /// snapshot and the key it is opened with always agree.
    pub(crate) rotation: std::sync::RwLock<()>,
    pub(crate) audit: AuditLog,
    pub(crate) admin_token: Zeroizing<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

impl Secrets {
    /// Opens (creating if missing) the store under `dir` (`STATE/secrets`): `secrets.redb`
    /// and `audit.jsonl`. Project IAM and groups come from `project` (replace with
    /// [`Secrets::set_project`] on reload).
    ///
    /// A store whose data keys are wrapped under another master key is refused with a message
    /// naming both key ids, unless `DIR/master.key.next` holds that key: then an interrupted
    /// rotation is completed (the next key is renamed over `DIR/master.key`) and used.
    pub fn open(dir: &Path, master: MasterKey, project: Arc<Project>) -> Result<Self, SecretError> {
        let inner = crate::open::open(dir, master, project)?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// `STATE/secrets/admin.token`: the local admin credential (a bearer token), created with
    /// mode 0600 by [`Secrets::open`] when missing. The CLI reads it; nothing else should.
    pub fn admin_token_path(&self) -> std::path::PathBuf {
        self.inner.dir.join(crate::open::ADMIN_TOKEN_FILE)
    }

    /// Whether `token` is the admin credential (constant-time comparison).
    pub fn is_admin_token(&self, token: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(token.as_bytes(), self.inner.admin_token.as_bytes()).is_ok()
    }

    /// Replaces the project (a reload): its IAM policy and groups decide from the next call on.
    /// Subscribers are woken as after a mutation, since project IAM can grant or revoke access
    /// to every secret (volume injection re-checks its files).
    pub fn set_project(&self, project: Arc<Project>) {
        self.inner.project.store(project);
        self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The project id (`demo`), as `moat.yaml` names it.
    pub fn project_id(&self) -> String {
        self.inner.project.load().id.clone()
    }

    /// The id of the master key the store is sealed with now (the hex of the first 4 bytes of
    /// its SHA-256; never the key).
    pub fn master_key_id(&self) -> String {
        self.inner.keys.load().current.id()
    }

    /// The project number, as resource names carry it (`projects/NUMBER/secrets/ID`).
    pub fn project_number(&self) -> String {
        self.inner.project.load().number.clone()
    }

    /// Whether `project` (an id or a number from a resource name) is this store's project.
    pub fn is_own_project(&self, project: &str) -> bool {
        let p = self.inner.project.load();
        p.id == project || p.number == project
    }

    /// Bumped after every committed mutation and every [`Secrets::set_project`] (volume
    /// injection watches it).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The audit log (`DIR/audit.jsonl`).
    pub fn audit_path(&self) -> PathBuf {
        self.inner.audit.path().to_owned()
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn create_secret(
        &self,
        caller: &Caller,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<SecretInfo, SecretError> {
        let mut ev = self.inner.event("createSecret", self.inner.secret_name(id), true);
        let r = self.inner.create_secret(caller, id, labels, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    pub fn get_secret(&self, caller: &Caller, id: &str) -> Result<SecretInfo, SecretError> {
        let mut ev = self.inner.event("getSecret", self.inner.secret_name(id), false);
        let r = self.inner.get_secret(caller, id, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// Secrets in id order. `page_token` is the opaque token of a previous page.
    pub fn list_secrets(
        &self,
        caller: &Caller,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<SecretInfo>, SecretError> {
        let mut ev = self.inner.event("listSecrets", self.inner.project_name(), false);
        let r = self.inner.list_secrets(caller, page_size, page_token, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// Replaces the labels (`PATCH ...?updateMask=labels`).
    pub fn update_labels(
        &self,
        caller: &Caller,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<SecretInfo, SecretError> {
        let mut ev = self.inner.event("updateSecret", self.inner.secret_name(id), true);
        let r = self.inner.update_labels(caller, id, labels, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// Deletes the secret and every version (payloads wiped). `etag`, when given, must match.
    pub fn delete_secret(&self, caller: &Caller, id: &str, etag: Option<&str>) -> Result<(), SecretError> {
        let mut ev = self.inner.event("deleteSecret", self.inner.secret_name(id), true);
        let r = self.inner.delete_secret(caller, id, etag, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// Adds a version. `crc32c`, when the client sent one, must match the data (else
    /// INVALID_ARGUMENT and nothing is stored). Durable before it returns.
    pub fn add_version(
        &self,
        caller: &Caller,
        id: &str,
        data: &[u8],
        crc32c: Option<u32>,
    ) -> Result<VersionInfo, SecretError> {
        let mut ev = self.inner.event("addVersion", self.inner.secret_name(id), true);
        let r = self.inner.add_version(caller, id, data, crc32c, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    pub fn get_version(&self, caller: &Caller, id: &str, version: Selector) -> Result<VersionInfo, SecretError> {
        let mut ev = self.inner.event("getVersion", self.inner.version_name(id, version), false);
        let r = self.inner.get_version(caller, id, version, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// Versions, newest first (as Secret Manager lists them).
    pub fn list_versions(
        &self,
        caller: &Caller,
        id: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page<VersionInfo>, SecretError> {
        let mut ev = self.inner.event("listVersions", self.inner.secret_name(id), false);
        let r = self.inner.list_versions(caller, id, page_size, page_token, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// The payload of an ENABLED version; FAILED_PRECONDITION for DISABLED or DESTROYED
    /// (`latest` never falls back to an older version). A payload that fails to open (tampered
    /// on disk) is DATA_LOSS and audited as such.
    pub fn access(&self, caller: &Caller, id: &str, version: Selector) -> Result<Payload, SecretError> {
        let mut ev = self.inner.event("access", self.inner.version_name(id, version), false);
        let r = self.inner.access(caller, id, version, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// enable / disable / destroy. Destroy wipes the payload and is final; enabling or
    /// disabling a destroyed version is FAILED_PRECONDITION.
    pub fn set_state(
        &self,
        caller: &Caller,
        id: &str,
        version: Selector,
        state: VersionState,
        etag: Option<&str>,
    ) -> Result<VersionInfo, SecretError> {
        let action = match state {
            VersionState::Enabled => "enableVersion",
            VersionState::Disabled => "disableVersion",
            VersionState::Destroyed => "destroyVersion",
        };
        let mut ev = self.inner.event(action, self.inner.version_name(id, version), true);
        let r = self.inner.set_state(caller, id, version, state, etag, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// The secret's policy and its etag.
    pub fn get_iam_policy(&self, caller: &Caller, id: &str) -> Result<(PolicyDoc, String), SecretError> {
        let mut ev = self.inner.event("getIamPolicy", self.inner.secret_name(id), false);
        let r = self.inner.get_iam_policy(caller, id, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// Replaces the policy; `etag`, when given, must be the current one (else ABORTED).
    /// Returns the new policy and etag.
    pub fn set_iam_policy(
        &self,
        caller: &Caller,
        id: &str,
        policy: PolicyDoc,
        etag: Option<&str>,
    ) -> Result<(PolicyDoc, String), SecretError> {
        let mut ev = self.inner.event("setIamPolicy", self.inner.secret_name(id), true);
        let r = self.inner.set_iam_policy(caller, id, policy, etag, &mut ev);
        self.inner.finish(caller, ev, r)
    }

    /// The subset of `permissions` the caller holds on the secret (unknown names dropped).
    /// Answers the same whether or not the secret exists (a missing secret is judged on the
    /// project's policy alone), so it cannot be used to probe for secrets.
    pub fn test_iam_permissions(
        &self,
        caller: &Caller,
        id: &str,
        permissions: &[String],
    ) -> Result<Vec<String>, SecretError> {
        let ev = self.inner.event("testIamPermissions", self.inner.secret_name(id), false);
        let r = self.inner.test_iam_permissions(caller, id, permissions);
        self.inner.finish(caller, ev, r)
    }

    /// `moat up`'s seeding of a secret declared in moat.yaml: create it if missing, set the
    /// declared policy (moat.yaml wins over API changes, like Terraform), and add `seed` as
    /// version 1 when the secret has no versions. Audited as `admin`.
    pub fn ensure_declared(&self, id: &str, policy: &PolicyDoc, seed: Option<&[u8]>) -> Result<(), SecretError> {
        let mut ev = self.inner.event("ensureDeclared", self.inner.secret_name(id), true);
        let r = self.inner.ensure_declared(id, policy, seed, &mut ev);
        self.inner.finish(&Caller::Admin, ev, r)
    }

    /// Re-wraps every data key under `new` (payloads untouched), then makes `new` current.
    /// Returns the number of versions re-wrapped. The caller persists the new key first.
    pub fn rotate_master(&self, new: MasterKey) -> Result<usize, SecretError> {
        let mut ev = self.inner.event("rotateMasterKey", self.inner.project_name(), true);
        let r = self.inner.rotate_master(&new, &mut ev);
        self.inner.finish(&Caller::Admin, ev, r)
    }

    /// Rotates the key file `DIR/master.key`: generates a key, saves it as
    /// `DIR/master.key.next` (0600, fsynced), re-wraps every data key under it in one
    /// transaction, then renames the next file over `DIR/master.key`. A crash at any step
    /// leaves a store that opens (see [`Secrets::open`] and docs/SECRETS.md). Refused when the
    /// key comes from `MOAT_MASTER_KEY`. Returns the number of versions re-wrapped.
    pub fn rotate_master_key_file(&self) -> Result<usize, SecretError> {
        let mut ev = self.inner.event("rotateMasterKeyFile", self.inner.project_name(), true);
        let r = crate::open::rotate_key_file(
            &self.inner,
            std::env::var_os(crate::master::MASTER_KEY_ENV).is_some(),
            &mut ev,
        );
        self.inner.finish(&Caller::Admin, ev, r)
    }
}
