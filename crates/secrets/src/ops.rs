//! The operations behind [`crate::Secrets`]. Each one, in this order: open one redb
//! transaction, read the secret's record, authorize against its policy (or the project's alone
//! when it does not exist, so a caller without permission cannot tell a missing secret from a
//! forbidden one), then look at existence, arguments and state, act, commit durably. The facade
//! writes the audit record from the [`Event`] whatever the outcome.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use moat_policy::request::Principal;
use moat_policy::roles::Permission;
use moat_policy::secret_access::{PolicyDoc, authorize_secret};
use zeroize::Zeroizing;

use crate::MAX_PAYLOAD_BYTES;
use crate::api::{Caller, Inner, Page, Payload, SecretInfo, Selector, VersionInfo, VersionState};
use crate::audit::{AuditRecord, rfc3339};
use crate::error::SecretError;
use crate::master::MasterKey;
use crate::names::valid_secret_id;
use crate::seal::{self, Keyring, OpenError};
use crate::store::{Corrupt, SecretRecord, Stamp, VersionRecord, View, WriteTxn};

const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 25_000;

/// What the audit record of one call says, filled in as the call learns it.
#[derive(Debug)]
pub(crate) struct Event {
    action: &'static str,
    resource: String,
    version: Option<u64>,
    permission: Option<&'static str>,
    mutation: bool,
    note: Option<String>,
}

impl Inner {
    pub(crate) fn event(&self, action: &'static str, resource: String, mutation: bool) -> Event {
        Event { action, resource, version: None, permission: None, mutation, note: None }
    }

    pub(crate) fn project_name(&self) -> String {
        format!("projects/{}", self.project.load().number)
    }

    pub(crate) fn secret_name(&self, id: &str) -> String {
        format!("projects/{}/secrets/{id}", self.project.load().number)
    }

    pub(crate) fn version_name(&self, id: &str, version: impl std::fmt::Display) -> String {
        format!("projects/{}/secrets/{id}/versions/{version}", self.project.load().number)
    }

    /// Writes the audit record of `ev` and returns `r`. An access whose record cannot be
    /// written fails (no payload leaves unaudited); a mutation reports that it was committed.
    pub(crate) fn finish<T>(&self, caller: &Caller, ev: Event, r: Result<T, SecretError>) -> Result<T, SecretError> {
        let (result, message) = match &r {
            Ok(_) => ("ok", ev.note),
            Err(e) => (result_word(e), Some(e.to_string())),
        };
        let record = AuditRecord {
            time: rfc3339(std::time::SystemTime::now()),
            caller: caller.to_string(),
            action: ev.action.to_owned(),
            resource: ev.resource,
            version: ev.version,
            result: result.to_owned(),
            permission: ev.permission.map(str::to_owned),
            message,
        };
        match (self.audit.append(&record, ev.mutation), r) {
            (Ok(()), r) => r,
            (Err(e), Ok(_)) if ev.mutation => {
                Err(SecretError::Internal(format!("the change was committed, but its audit record was not: {e}")))
            }
            (Err(e), Ok(_)) => Err(e),
            (Err(_), Err(e)) => Err(e),
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Admin passes; anyone else needs `permission` through the secret's policy or the
    /// project's. The denial names the resource as asked, whether or not it exists.
    fn authorize(
        &self,
        caller: &Caller,
        permission: Permission,
        id: &str,
        policy: Option<&PolicyDoc>,
        ev: &mut Event,
    ) -> Result<(), SecretError> {
        let principal = match caller {
            Caller::Admin => return Ok(()),
            Caller::Principal(p) | Caller::Instance { account: p, .. } => p,
        };
        if allowed(&self.project.load(), principal, permission, id, policy)? {
            return Ok(());
        }
        ev.permission = Some(permission.as_str());
        if *principal == Principal::Anonymous {
            return Err(SecretError::Unauthenticated(
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.".into(),
            ));
        }
        Err(SecretError::PermissionDenied(format!(
            "Permission '{}' denied for resource '{}' (or it may not exist).",
            permission.as_str(),
            ev.resource
        )))
    }

    fn secret_not_found(&self, id: &str) -> SecretError {
        SecretError::NotFound(format!("Secret [{}] not found.", self.secret_name(id)))
    }

    fn no_versions(&self, id: &str) -> SecretError {
        SecretError::NotFound(format!("Secret [{}] not found or has no versions.", self.secret_name(id)))
    }

    fn version_not_found(&self, id: &str, version: Selector) -> SecretError {
        SecretError::NotFound(format!("Secret Version [{}] not found.", self.version_name(id, version)))
    }

    fn data_loss(&self, id: &str, n: u64, why: &str) -> SecretError {
        SecretError::DataLoss(format!(
            "Secret Version [{}] failed its integrity check: its stored data is corrupt or was tampered with ({why}); restore the store from a backup or destroy the version",
            self.version_name(id, n)
        ))
    }

    fn version_info(&self, id: &str, n: u64, v: &VersionRecord) -> VersionInfo {
        VersionInfo {
            secret: id.to_owned(),
            version: n,
            state: v.state,
            create_time: v.create_time.time(),
            destroy_time: v.destroy_time.map(Stamp::time),
            crc32c: v.crc32c,
            etag: quoted(v.etag),
        }
    }

    /// The version `version` names, or the NOT_FOUND Secret Manager answers.
    fn resolve(&self, id: &str, rec: &SecretRecord, version: Selector) -> Result<u64, SecretError> {
        match version {
            Selector::Latest if rec.latest == 0 => Err(self.no_versions(id)),
            Selector::Latest => Ok(rec.latest),
            Selector::Number(n) if n >= 1 && n <= rec.latest => Ok(n),
            Selector::Number(_) => Err(self.version_not_found(id, version)),
        }
    }

    fn read_version(
        &self,
        view: &impl View,
        id: &str,
        n: u64,
        version: Selector,
    ) -> Result<VersionRecord, SecretError> {
        match view.version(id, n)? {
            Some(Ok(v)) => Ok(v),
            Some(Err(Corrupt(why))) => Err(self.data_loss(id, n, why)),
            None => Err(self.version_not_found(id, version)),
        }
    }

    pub(crate) fn create_secret(
        &self,
        caller: &Caller,
        id: &str,
        labels: BTreeMap<String, String>,
        ev: &mut Event,
    ) -> Result<SecretInfo, SecretError> {
        let w = self.store.write()?;
        self.authorize(caller, Permission::SecretsCreate, id, None, ev)?;
        check_secret_id(id)?;
        if w.secret(id)?.is_some() {
            return Err(SecretError::AlreadyExists(format!("Secret [{}] already exists.", self.secret_name(id))));
        }
        check_labels(&labels)?;
        let rec = SecretRecord {
            labels,
            create_time: Stamp::now(),
            policy: PolicyDoc::default(),
            etag: quoted(new_etag()?),
            policy_etag: policy_etag()?,
            latest: 0,
        };
        w.put_secret(id, &rec)?;
        w.commit()?;
        self.changed();
        Ok(info(id, rec))
    }

    pub(crate) fn get_secret(&self, caller: &Caller, id: &str, ev: &mut Event) -> Result<SecretInfo, SecretError> {
        let r = self.store.read()?;
        let rec = r.secret(id)?;
        self.authorize(caller, Permission::SecretsGet, id, rec.as_ref().map(|r| &r.policy), ev)?;
        rec.map(|rec| info(id, rec)).ok_or_else(|| self.secret_not_found(id))
    }

    pub(crate) fn list_secrets(
        &self,
        caller: &Caller,
        page_size: usize,
        page_token: &str,
        ev: &mut Event,
    ) -> Result<Page<SecretInfo>, SecretError> {
        let r = self.store.read()?;
        self.authorize(caller, Permission::SecretsList, "*", None, ev)?;
        let after = match decode_token(b's', page_token)? {
            Some(b) => String::from_utf8(b).map_err(|_| bad_token(page_token))?,
            None => String::new(),
        };
        let size = clamp_page(page_size);
        let mut rows = r.secrets_after(&after, size + 1)?;
        let next_page_token = if rows.len() > size {
            rows.truncate(size);
            rows.last().map(|(id, _)| encode_token(b's', id.as_bytes())).unwrap_or_default()
        } else {
            String::new()
        };
        let items = rows.into_iter().map(|(id, rec)| info(&id, rec)).collect();
        Ok(Page { items, next_page_token, total_size: r.secret_count()? })
    }

    pub(crate) fn update_labels(
        &self,
        caller: &Caller,
        id: &str,
        labels: BTreeMap<String, String>,
        ev: &mut Event,
    ) -> Result<SecretInfo, SecretError> {
        let w = self.store.write()?;
        let rec = w.secret(id)?;
        self.authorize(caller, Permission::SecretsUpdate, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let mut rec = rec.ok_or_else(|| self.secret_not_found(id))?;
        check_labels(&labels)?;
        rec.labels = labels;
        rec.etag = quoted(new_etag()?);
        w.put_secret(id, &rec)?;
        w.commit()?;
        self.changed();
        Ok(info(id, rec))
    }

    pub(crate) fn delete_secret(
        &self,
        caller: &Caller,
        id: &str,
        etag: Option<&str>,
        ev: &mut Event,
    ) -> Result<(), SecretError> {
        let w = self.store.write()?;
        let rec = w.secret(id)?;
        self.authorize(caller, Permission::SecretsDelete, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let rec = rec.ok_or_else(|| self.secret_not_found(id))?;
        check_etag(etag, &rec.etag, || format!("Secret [{}]", self.secret_name(id)))?;
        w.delete_secret(id)?;
        w.commit()?;
        self.changed();
        Ok(())
    }

    pub(crate) fn add_version(
        &self,
        caller: &Caller,
        id: &str,
        data: &[u8],
        crc32c: Option<u32>,
        ev: &mut Event,
    ) -> Result<VersionInfo, SecretError> {
        let actual = crc32c::crc32c(data);
        let _sealing = self.rotation.read().unwrap_or_else(PoisonError::into_inner);
        let w = self.store.write()?;
        let rec = w.secret(id)?;
        self.authorize(caller, Permission::SecretVersionsAdd, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let mut rec = rec.ok_or_else(|| self.secret_not_found(id))?;
        check_payload(data.len(), actual, crc32c)?;
        let (n, v) = self.new_version(&w, id, &mut rec, data, actual)?;
        w.put_secret(id, &rec)?;
        w.commit()?;
        self.changed();
        ev.version = Some(n);
        Ok(self.version_info(id, n, &v))
    }

    /// Seals `data` as the next version of `rec` and stores it in `w` (`rec` is updated, not
    /// stored).
    fn new_version(
        &self,
        w: &WriteTxn<'_>,
        id: &str,
        rec: &mut SecretRecord,
        data: &[u8],
        crc: u32,
    ) -> Result<(u64, VersionRecord), SecretError> {
        let n = rec.latest.checked_add(1).ok_or_else(|| SecretError::Internal("too many versions".into()))?;
        let ring = self.keys.load_full();
        let key = wrapping_key(w, &ring)?;
        let sealed = seal::seal(key, id, n, data)
            .map_err(|_| SecretError::Internal("cannot seal the payload: the system RNG or cipher failed".into()))?;
        let v = VersionRecord {
            state: VersionState::Enabled,
            create_time: Stamp::now(),
            destroy_time: None,
            crc32c: Some(crc),
            etag: new_etag()?,
            sealed: Some(sealed),
        };
        w.put_version(id, n, &v)?;
        rec.latest = n;
        Ok((n, v))
    }

    pub(crate) fn get_version(
        &self,
        caller: &Caller,
        id: &str,
        version: Selector,
        ev: &mut Event,
    ) -> Result<VersionInfo, SecretError> {
        let r = self.store.read()?;
        let rec = r.secret(id)?;
        self.authorize(caller, Permission::SecretVersionsGet, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let rec = rec.ok_or_else(|| self.no_versions(id))?;
        let n = self.resolve(id, &rec, version)?;
        ev.version = Some(n);
        let v = self.read_version(&r, id, n, version)?;
        Ok(self.version_info(id, n, &v))
    }

    pub(crate) fn list_versions(
        &self,
        caller: &Caller,
        id: &str,
        page_size: usize,
        page_token: &str,
        ev: &mut Event,
    ) -> Result<Page<VersionInfo>, SecretError> {
        let r = self.store.read()?;
        let rec = r.secret(id)?;
        self.authorize(caller, Permission::SecretVersionsList, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let rec = rec.ok_or_else(|| self.secret_not_found(id))?;
        let below = match decode_token(b'v', page_token)? {
            Some(b) => u64::from_be_bytes(<[u8; 8]>::try_from(b.as_slice()).map_err(|_| bad_token(page_token))?),
            None => rec.latest.saturating_add(1),
        };
        let size = clamp_page(page_size);
        let top = below.saturating_sub(1);
        let mut rows = if top == 0 { Vec::new() } else { r.versions(id, 1..=top, true, size + 1)? };
        let next_page_token = if rows.len() > size {
            rows.truncate(size);
            rows.last().map(|(n, _)| encode_token(b'v', &n.to_be_bytes())).unwrap_or_default()
        } else {
            String::new()
        };
        let items = rows
            .into_iter()
            .map(|(n, v)| match v {
                Ok(v) => Ok(self.version_info(id, n, &v)),
                Err(Corrupt(why)) => Err(self.data_loss(id, n, why)),
            })
            .collect::<Result<_, _>>()?;
        let total_size = usize::try_from(rec.latest).unwrap_or(usize::MAX);
        Ok(Page { items, next_page_token, total_size })
    }

    pub(crate) fn access(
        &self,
        caller: &Caller,
        id: &str,
        version: Selector,
        ev: &mut Event,
    ) -> Result<Payload, SecretError> {
        let _unsealing = self.rotation.read().unwrap_or_else(PoisonError::into_inner);
        let r = self.store.read()?;
        let rec = r.secret(id)?;
        self.authorize(caller, Permission::SecretVersionsAccess, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let rec = rec.ok_or_else(|| self.no_versions(id))?;
        let n = self.resolve(id, &rec, version)?;
        ev.version = Some(n);
        let v = self.read_version(&r, id, n, version)?;
        drop(r);
        if v.state != VersionState::Enabled {
            return Err(state_error(&self.version_name(id, n), v.state));
        }
        let (Some(sealed), Some(crc)) = (v.sealed.as_deref(), v.crc32c) else {
            return Err(self.data_loss(id, n, "an enabled version without a payload"));
        };
        let keys = self.keys.load();
        let data: Zeroizing<Vec<u8>> = seal::open(&keys, id, n, sealed).map_err(|e| match e {
            OpenError::Corrupt(why) => self.data_loss(id, n, why),
            OpenError::UnknownKey(k) => {
                self.data_loss(id, n, &format!("sealed under unknown master key `{}`", hex(&k)))
            }
        })?;
        if crc32c::crc32c(&data) != crc {
            return Err(self.data_loss(id, n, "the payload does not match its CRC32C"));
        }
        Ok(Payload { version: n, data, crc32c: crc })
    }

    pub(crate) fn set_state(
        &self,
        caller: &Caller,
        id: &str,
        version: Selector,
        state: VersionState,
        etag: Option<&str>,
        ev: &mut Event,
    ) -> Result<VersionInfo, SecretError> {
        let permission = match state {
            VersionState::Enabled => Permission::SecretVersionsEnable,
            VersionState::Disabled => Permission::SecretVersionsDisable,
            VersionState::Destroyed => Permission::SecretVersionsDestroy,
        };
        let w = self.store.write()?;
        let rec = w.secret(id)?;
        self.authorize(caller, permission, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let rec = rec.ok_or_else(|| self.no_versions(id))?;
        let n = self.resolve(id, &rec, version)?;
        ev.version = Some(n);
        let name = self.version_name(id, n);
        let v = match w.version(id, n)? {
            Some(Ok(v)) => {
                check_etag(etag, &quoted(v.etag), || format!("Secret Version [{name}]"))?;
                if v.state == VersionState::Destroyed {
                    return Err(state_error(&name, v.state));
                }
                if v.state == state {
                    return Ok(self.version_info(id, n, &v));
                }
                v
            }
            // A corrupt record can still be destroyed: the way out of a DATA_LOSS version.
            Some(Err(_)) if state == VersionState::Destroyed => VersionRecord {
                state,
                create_time: Stamp::now(),
                destroy_time: None,
                crc32c: None,
                etag: 0,
                sealed: None,
            },
            Some(Err(Corrupt(why))) => return Err(self.data_loss(id, n, why)),
            None => return Err(self.version_not_found(id, version)),
        };
        let v = if state == VersionState::Destroyed {
            w.mark_wipe_pending()?;
            ev.note =
                Some("payload and data key removed; the store file is rewritten without them at the next open".into());
            VersionRecord {
                state,
                destroy_time: Some(Stamp::now()),
                crc32c: None,
                sealed: None,
                etag: new_etag()?,
                create_time: v.create_time,
            }
        } else {
            VersionRecord { state, etag: new_etag()?, ..v }
        };
        w.put_version(id, n, &v)?;
        w.commit()?;
        self.changed();
        Ok(self.version_info(id, n, &v))
    }

    pub(crate) fn get_iam_policy(
        &self,
        caller: &Caller,
        id: &str,
        ev: &mut Event,
    ) -> Result<(PolicyDoc, String), SecretError> {
        let r = self.store.read()?;
        let rec = r.secret(id)?;
        self.authorize(caller, Permission::SecretsGetIamPolicy, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let rec = rec.ok_or_else(|| self.secret_not_found(id))?;
        Ok((rec.policy, rec.policy_etag))
    }

    pub(crate) fn set_iam_policy(
        &self,
        caller: &Caller,
        id: &str,
        policy: PolicyDoc,
        etag: Option<&str>,
        ev: &mut Event,
    ) -> Result<(PolicyDoc, String), SecretError> {
        let w = self.store.write()?;
        let rec = w.secret(id)?;
        self.authorize(caller, Permission::SecretsSetIamPolicy, id, rec.as_ref().map(|r| &r.policy), ev)?;
        let mut rec = rec.ok_or_else(|| self.secret_not_found(id))?;
        check_policy(id, &policy)?;
        check_etag(etag, &rec.policy_etag, || format!("the IAM policy of Secret [{}]", self.secret_name(id)))?;
        rec.policy = policy;
        rec.policy_etag = policy_etag()?;
        rec.etag = quoted(new_etag()?);
        w.put_secret(id, &rec)?;
        w.commit()?;
        self.changed();
        Ok((rec.policy, rec.policy_etag))
    }

    pub(crate) fn test_iam_permissions(
        &self,
        caller: &Caller,
        id: &str,
        permissions: &[String],
    ) -> Result<Vec<String>, SecretError> {
        let r = self.store.read()?;
        let rec = r.secret(id)?;
        let project = self.project.load();
        let mut held: Vec<String> = Vec::new();
        for name in permissions {
            let Some(p) = Permission::parse(name).filter(|p| *p != Permission::RunRoutesInvoke) else {
                continue;
            };
            let ok = match caller {
                Caller::Admin => true,
                Caller::Principal(who) | Caller::Instance { account: who, .. } => {
                    allowed(&project, who, p, id, rec.as_ref().map(|r| &r.policy))?
                }
            };
            if ok && !held.contains(name) {
                held.push(name.clone());
            }
        }
        Ok(held)
    }

    pub(crate) fn ensure_declared(
        &self,
        id: &str,
        policy: &PolicyDoc,
        seed: Option<&[u8]>,
        ev: &mut Event,
    ) -> Result<(), SecretError> {
        check_secret_id(id)?;
        check_policy(id, policy)?;
        let seed = seed.map(|s| (s, crc32c::crc32c(s)));
        if let Some((s, crc)) = seed {
            check_payload(s.len(), crc, None)?;
        }
        let _sealing = self.rotation.read().unwrap_or_else(PoisonError::into_inner);
        let w = self.store.write()?;
        let existing = w.secret(id)?;
        let created = existing.is_none();
        let mut rec = match existing {
            Some(rec) => rec,
            None => SecretRecord {
                labels: BTreeMap::new(),
                create_time: Stamp::now(),
                policy: PolicyDoc::default(),
                etag: quoted(new_etag()?),
                policy_etag: policy_etag()?,
                latest: 0,
            },
        };
        let mut changed = created;
        if rec.policy != *policy {
            rec.policy = policy.clone();
            rec.policy_etag = policy_etag()?;
            rec.etag = quoted(new_etag()?);
            changed = true;
        }
        if let Some((data, crc)) = seed.filter(|_| rec.latest == 0) {
            let (n, _) = self.new_version(&w, id, &mut rec, data, crc)?;
            ev.version = Some(n);
            changed = true;
        }
        if !changed {
            ev.note = Some("unchanged".into());
            return Ok(());
        }
        ev.note = Some(if created { "created".into() } else { "updated".into() });
        w.put_secret(id, &rec)?;
        w.commit()?;
        self.changed();
        Ok(())
    }

    /// Re-wraps every data key under `new` in one transaction, holding the rotation lock
    /// exclusively so no read opens a pre-rotation snapshot with the new key or the reverse.
    pub(crate) fn rotate_master(&self, new: &MasterKey, ev: &mut Event) -> Result<usize, SecretError> {
        let _exclusive = self.rotation.write().unwrap_or_else(PoisonError::into_inner);
        let w = self.store.write()?;
        let old = self.keys.load_full();
        let old_key = wrapping_key(&w, &old)?;
        if old_key.id_bytes() == new.id_bytes() {
            ev.note = Some(format!("master key `{}` is already current", new.id()));
            return Ok(0);
        }
        let mut rewrapped = 0usize;
        let mut skipped = 0usize;
        for (id, n, raw) in w.all_versions()? {
            let Ok(mut v) = VersionRecord::decode(&raw) else {
                skipped += 1;
                continue;
            };
            let Some(sealed) = v.sealed.as_deref() else { continue };
            match seal::rewrap(&old, new, &id, n, sealed) {
                Ok(re) => {
                    v.sealed = Some(re);
                    w.put_version(&id, n, &v)?;
                    rewrapped += 1;
                }
                Err(seal::RewrapError::Open(_)) => skipped += 1,
                Err(seal::RewrapError::Seal(_)) => {
                    return Err(SecretError::Internal(
                        "cannot re-wrap a data key: the system RNG or cipher failed".into(),
                    ));
                }
            }
        }
        w.set_master_key_id(new.id_bytes())?;
        w.commit()?;
        self.keys.store(Arc::new(Keyring { current: new.duplicate() }));
        self.changed();
        ev.note = Some(format!(
            "master key `{}` → `{}`: {rewrapped} data keys re-wrapped{}",
            old_key.id(),
            new.id(),
            if skipped > 0 { format!(", {skipped} corrupt versions left as they were") } else { String::new() }
        ));
        Ok(rewrapped)
    }
}

/// The key the store's meta table says every data key is wrapped under.
fn wrapping_key<'k>(w: &WriteTxn<'_>, ring: &'k Keyring) -> Result<&'k MasterKey, SecretError> {
    let id = w.master_key_id()?.ok_or_else(|| {
        SecretError::Internal(format!("the secret store `{}` has no master key id", w.store().path().display()))
    })?;
    ring.find(id).ok_or_else(|| {
        SecretError::Internal(format!(
            "the secret store `{}` is sealed with master key `{}`, which is not loaded",
            w.store().path().display(),
            hex(&id)
        ))
    })
}

fn allowed(
    project: &moat_policy::Project,
    principal: &Principal,
    permission: Permission,
    id: &str,
    policy: Option<&PolicyDoc>,
) -> Result<bool, SecretError> {
    let model = policy
        .map(|p| p.to_model(&format!("secret {id}")))
        .transpose()
        .map_err(|e| SecretError::Internal(format!("the stored IAM policy of secret `{id}` is invalid: {e}")))?;
    Ok(authorize_secret(principal, permission, id, model.as_ref(), project).is_allowed())
}

fn info(id: &str, rec: SecretRecord) -> SecretInfo {
    SecretInfo {
        id: id.to_owned(),
        labels: rec.labels,
        create_time: rec.create_time.time(),
        etag: rec.etag,
        latest: rec.latest,
    }
}

fn result_word(e: &SecretError) -> &'static str {
    match e {
        SecretError::NotFound(_) => "not_found",
        SecretError::AlreadyExists(_) => "already_exists",
        SecretError::InvalidArgument(_) => "invalid_argument",
        SecretError::FailedPrecondition(_) => "failed_precondition",
        SecretError::PermissionDenied(_) | SecretError::Unauthenticated(_) => "denied",
        SecretError::Aborted(_) => "aborted",
        SecretError::DataLoss(_) => "data_loss",
        SecretError::Internal(_) => "internal",
    }
}

fn state_error(version_name: &str, state: VersionState) -> SecretError {
    SecretError::FailedPrecondition(format!("Secret Version [{version_name}] is in {} state.", state.as_str()))
}

fn check_secret_id(id: &str) -> Result<(), SecretError> {
    if valid_secret_id(id) {
        return Ok(());
    }
    Err(SecretError::InvalidArgument(format!(
        "Secret ID `{id}` is invalid: use 1 to 255 characters of letters, digits, `_` and `-`"
    )))
}

fn check_payload(len: usize, actual: u32, claimed: Option<u32>) -> Result<(), SecretError> {
    if len > MAX_PAYLOAD_BYTES {
        return Err(SecretError::InvalidArgument(format!(
            "Secret Payload is {len} bytes; a secret version holds at most {MAX_PAYLOAD_BYTES} bytes (64 KiB)"
        )));
    }
    match claimed {
        // Never the payload's own CRC32C: this message is audited, and a checksum of a short
        // secret gives the secret away to a brute force.
        Some(c) if c != actual => Err(SecretError::InvalidArgument(format!(
            "Checksum mismatch: the request's `dataCrc32c` {c} does not match the payload's CRC32C; compute it over exactly the bytes sent (nothing was stored)"
        ))),
        _ => Ok(()),
    }
}

/// Secret Manager's label rules: at most 64; keys 1 to 63 characters, starting with a
/// lowercase letter; keys and values of lowercase letters, digits, `_` and `-`, values up to 63.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), SecretError> {
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    if labels.len() > 64 {
        return Err(SecretError::InvalidArgument(format!("{} labels given; a secret takes at most 64", labels.len())));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > 63 || !k.starts_with(|c: char| c.is_ascii_lowercase()) || !k.bytes().all(ok_char) {
            return Err(SecretError::InvalidArgument(format!(
                "label key `{k}` is invalid: use 1 to 63 lowercase letters, digits, `_` and `-`, starting with a letter"
            )));
        }
        if v.len() > 63 || !v.bytes().all(ok_char) {
            return Err(SecretError::InvalidArgument(format!(
                "the value of label `{k}` is invalid: use up to 63 lowercase letters, digits, `_` and `-`"
            )));
        }
    }
    Ok(())
}

fn check_policy(id: &str, policy: &PolicyDoc) -> Result<(), SecretError> {
    policy
        .to_model(&format!("secret {id}"))
        .map(|_| ())
        .map_err(|e| SecretError::InvalidArgument(format!("the IAM policy for secret `{id}` is invalid: {e}")))
}

/// `given` (when given and not empty) must be `current`; quotes around either are ignored.
fn check_etag(given: Option<&str>, current: &str, what: impl FnOnce() -> String) -> Result<(), SecretError> {
    match given.map(|g| g.trim_matches('"')).filter(|g| !g.is_empty()) {
        Some(g) if g != current.trim_matches('"') => Err(SecretError::Aborted(format!(
            "The etag `{g}` does not match the current etag of {}: read it again and retry",
            what()
        ))),
        _ => Ok(()),
    }
}

fn new_etag() -> Result<u64, SecretError> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| SecretError::Internal("the system RNG failed".into()))?;
    Ok(u64::from_le_bytes(b))
}

/// An etag as Secret Manager spells it: a quoted hex string.
fn quoted(etag: u64) -> String {
    format!("\"{etag:016x}\"")
}

/// An IAM policy etag: bytes, so standard base64 in JSON.
fn policy_etag() -> Result<String, SecretError> {
    Ok(STANDARD.encode(new_etag()?.to_le_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn clamp_page(size: usize) -> usize {
    if size == 0 { DEFAULT_PAGE_SIZE } else { size.clamp(1, MAX_PAGE_SIZE) }
}

fn encode_token(kind: u8, body: &[u8]) -> String {
    let mut b = Vec::with_capacity(body.len() + 1);
    b.push(kind);
    b.extend_from_slice(body);
    URL_SAFE_NO_PAD.encode(b)
}

fn decode_token(kind: u8, token: &str) -> Result<Option<Vec<u8>>, SecretError> {
    if token.is_empty() {
        return Ok(None);
    }
    let b = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad_token(token))?;
    match b.split_first() {
        Some((k, body)) if *k == kind => Ok(Some(body.to_vec())),
        _ => Err(bad_token(token)),
    }
}

fn bad_token(token: &str) -> SecretError {
    SecretError::InvalidArgument(format!(
        "page token `{token}` is not one this list returned: pass the `nextPageToken` of the previous page"
    ))
}
