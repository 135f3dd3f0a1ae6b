//! Opening a store directory: the redb file, the master key check (and the completion of an
//! interrupted rotation), the audit log and the admin token; and the key-file rotation.
//!
//! Rotation protocol (`DIR/master.key`, docs/SECRETS.md):
//! 1. a new key is saved as `DIR/master.key.next` (temp file 0600, fsync, rename, fsync dir);
//! 2. one redb transaction re-wraps every data key and sets the store's master key id;
//! 3. `master.key.next` is renamed over `master.key`, and the directory fsynced.
//!
//! A crash before 2 commits leaves the store on the old key: the next open finds the store's
//! id equal to `master.key`'s and deletes the unused `master.key.next`. A crash after 2 leaves
//! the store on the new key with `master.key` still old: the next open finds the store's id in
//! `master.key.next` and finishes step 3.

use std::fs::DirBuilder;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moat_policy::Project;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::api::Inner;
use crate::audit::{AuditLog, AuditRecord, rfc3339};
use crate::error::SecretError;
use crate::master::{MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey, next_key_path, sync_dir, temp_path, write_new};
use crate::ops::Event;
use crate::seal::Keyring;
use crate::store::{Rebuilt, Store, View};

/// The admin credential's file name in the store directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
const ADMIN_TOKEN_PREFIX: &str = "moat-admin.";

pub(crate) fn open(dir: &Path, master: MasterKey, project: Arc<Project>) -> Result<Inner, SecretError> {
    private_dir(dir)?;
    let key_file = dir.join(MASTER_KEY_FILE);
    for stale in [temp_path(&key_file), temp_path(&next_key_path(&key_file))] {
        remove_if_present(&stale)?;
    }
    let (store, rebuilt) = Store::open(dir)?;
    let master = check_master_key(&store, master, &key_file)?;
    let audit = AuditLog::open(dir)?;
    if let Some(rebuilt) = rebuilt {
        audit_rebuild(&audit, &store, &rebuilt)?;
    }
    let admin_token = admin_token(dir)?;
    let (changes, _) = watch::channel(0);
    Ok(Inner {
        project: arc_swap::ArcSwap::new(project),
        changes,
        dir: dir.to_owned(),
        store,
        keys: arc_swap::ArcSwap::from_pointee(Keyring { current: master }),
        rotation: std::sync::RwLock::new(()),
        audit,
        admin_token,
    })
}

/// Creates `dir` with mode 0700, or takes group and other access away from an existing one
/// (`moat up` or an operator may have created it under a looser umask): it holds the master key
/// file, the sealed store and the audit log.
fn private_dir(dir: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| {
        SecretError::Internal(format!("cannot create the secret store directory `{}` (mode 0700): {e}", dir.display()))
    };
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    let meta = std::fs::metadata(dir).map_err(fail)?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode() & 0o700)).map_err(fail)?;
    }
    Ok(())
}

/// One durable audit line for a store the open had to rebuild: who did it is unknown, so the
/// caller is `moat` itself.
fn audit_rebuild(audit: &AuditLog, store: &Store, rebuilt: &Rebuilt) -> Result<(), SecretError> {
    let (result, message) = match rebuilt {
        Rebuilt::Tampered { why, records } => (
            "data_loss",
            format!(
                "the store file `{}` failed its integrity check ({why}): it was changed outside redb (tampered with, or damaged by the disk); {records} records were carried over unchanged into a fresh file, and each version whose record was altered fails its integrity check (DATA_LOSS) when read",
                store.path().display()
            ),
        ),
        Rebuilt::Wiped { records } => (
            "ok",
            format!(
                "rewrote the store file `{}` ({records} records) so that destroyed payloads no longer linger in its free pages",
                store.path().display()
            ),
        ),
    };
    let record = AuditRecord {
        time: rfc3339(std::time::SystemTime::now()),
        caller: "moat".into(),
        action: "openStore".into(),
        resource: store.path().display().to_string(),
        version: None,
        result: result.into(),
        permission: None,
        message: Some(message),
    };
    audit.append(&record, true)
}

/// The key the store's data keys are wrapped under: `master`, or the key of an interrupted
/// rotation in `master.key.next` (whose rotation is then completed).
fn check_master_key(store: &Store, master: MasterKey, key_file: &Path) -> Result<MasterKey, SecretError> {
    let next_file = next_key_path(key_file);
    let stored = store.read()?.master_key_id()?;
    let Some(stored) = stored else {
        let w = store.write()?;
        w.set_master_key_id(master.id_bytes())?;
        w.commit()?;
        return Ok(master);
    };
    if stored == master.id_bytes() {
        // A rotation that never committed: its key never wrapped anything.
        remove_if_present(&next_file)?;
        return Ok(master);
    }
    if let Ok(next) = MasterKey::from_file(&next_file)
        && next.id_bytes() == stored
    {
        std::fs::rename(&next_file, key_file).and_then(|()| sync_dir(key_file)).map_err(|e| {
            SecretError::Internal(format!(
                "cannot finish the interrupted master key rotation (rename `{}` to `{}`): {e}",
                next_file.display(),
                key_file.display()
            ))
        })?;
        return Ok(next);
    }
    Err(SecretError::FailedPrecondition(format!(
        "the secret store `{}` was sealed with master key `{}`, got `{}`: set {MASTER_KEY_ENV} to the key it was sealed with, or restore `{}`",
        store.path().display(),
        hex(&stored),
        master.id(),
        key_file.display()
    )))
}

/// `DIR/admin.token`, created with mode 0600 when missing: `moat-admin.` and the base64url of
/// 32 random bytes.
fn admin_token(dir: &Path) -> Result<Zeroizing<String>, SecretError> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        SecretError::Internal(format!("cannot {what} the admin token `{}`: {e}", path.display()))
    };
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            let mode = f.metadata().map_err(|e| fail("read", &e))?.mode();
            if mode & 0o077 != 0 {
                return Err(SecretError::FailedPrecondition(format!(
                    "the admin token `{p}` is accessible to group or others (mode {m:04o}): run `chmod 600 {p}`",
                    p = path.display(),
                    m = mode & 0o7777
                )));
            }
            let mut text = Zeroizing::new(String::new());
            f.read_to_string(&mut text).map_err(|e| fail("read", &e))?;
            let token = Zeroizing::new(text.trim().to_owned());
            if !token.starts_with(ADMIN_TOKEN_PREFIX) || token.len() < ADMIN_TOKEN_PREFIX.len() + 32 {
                return Err(SecretError::FailedPrecondition(format!(
                    "the admin token `{}` is malformed: delete it and restart to get a new one",
                    path.display()
                )));
            }
            Ok(token)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut raw = Zeroizing::new([0u8; 32]);
            aws_lc_rs::rand::fill(raw.as_mut()).map_err(|_| fail("create", &"the system RNG failed"))?;
            let token = Zeroizing::new(format!("{ADMIN_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw.as_ref())));
            let mut line = Zeroizing::new(token.as_bytes().to_vec());
            line.push(b'\n');
            write_new(&path, &line).map_err(|e| fail("create", &e))?;
            sync_dir(&path).map_err(|e| fail("create", &e))?;
            Ok(token)
        }
        Err(e) => Err(fail("read", &e)),
    }
}

/// [`crate::Secrets::rotate_master_key_file`].
pub(crate) fn rotate_key_file(inner: &Inner, from_env: bool, ev: &mut Event) -> Result<usize, SecretError> {
    if from_env {
        return Err(SecretError::FailedPrecondition(format!(
            "the master key comes from `{MASTER_KEY_ENV}`, which moat cannot change, and a key file would be ignored while it is set: to rotate, stop moat, write the current key to `{file}` (mode 0600), unset `{MASTER_KEY_ENV}`, run `moat secrets rotate-master-key`, then set `{MASTER_KEY_ENV}` to the new contents of `{file}` (docs/SECRETS.md, Rotation)",
            file = inner.dir.join(MASTER_KEY_FILE).display()
        )));
    }
    let key_file = inner.dir.join(MASTER_KEY_FILE);
    let next_file = next_key_path(&key_file);
    let io = |what: String, e: &dyn std::fmt::Display| SecretError::Internal(format!("cannot {what}: {e}"));
    let new = MasterKey::generate().map_err(|e| io("generate a master key".into(), &e))?;
    new.save(&next_file).map_err(|e| io(format!("save `{}`", next_file.display()), &e))?;
    let n = match inner.rotate_master(&new, ev) {
        Ok(n) => n,
        Err(e) => {
            // Nothing was re-wrapped under it: the next key is garbage (open removes it too).
            let _ = std::fs::remove_file(&next_file);
            return Err(e);
        }
    };
    std::fs::rename(&next_file, &key_file).and_then(|()| sync_dir(&key_file)).map_err(|e| {
        io(
            format!(
                "rename `{}` over `{}` (the store is already sealed with the new key; the next open finishes this step)",
                next_file.display(),
                key_file.display()
            ),
            &e,
        )
    })?;
    Ok(n)
}

fn remove_if_present(path: &Path) -> Result<(), SecretError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SecretError::Internal(format!("cannot remove the stale file `{}`: {e}", path.display()))),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}
