//! The redb store: one file, `DIR/secrets.redb`, three tables.
//!
//! - `secrets`: secret id → [`SecretRecord`] (a format byte, then JSON: labels, create time,
//!   IAM policy, etags, the newest version number). Never holds a value.
//! - `versions`: (secret id, version number) → [`VersionRecord`] (binary, below): state,
//!   times, CRC32C, the sealed envelope (`seal.rs`), and a CRC32C trailer over the whole
//!   record so that a flipped byte anywhere in it is reported as data loss, not misread.
//! - `meta`: `format` and `master_key_id` (the id of the master key every data key is wrapped
//!   under; rotation rewrites all of them in the same transaction), and `wipe_pending` while a
//!   destroyed envelope may linger in the file's free pages (the next open rewrites the file).
//!
//! Every write transaction commits with `Durability::Immediate`: the mutation is on disk
//! before the call returns. redb's copy-on-write commit makes a crash at any point leave the
//! last committed state, which the next open recovers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moat_policy::secret_access::PolicyDoc;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::api::VersionState;
use crate::error::SecretError;

/// The store's file name in its directory.
pub const STORE_FILE: &str = "secrets.redb";

/// The on-disk layout, for tools and benchmarks that read the file directly (with the store
/// closed): secret id → secret record.
pub const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
/// (secret id, version number) → version record (CRC32C-trailed; holds the sealed envelope).
pub const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
/// `format`, `master_key_id`.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const SECRET_FORMAT: u8 = 1;
const VERSION_MAGIC: [u8; 2] = [b'V', 1];
const STORE_FORMAT: u8 = 1;
const META_FORMAT: &str = "format";
const META_MASTER: &str = "master_key_id";
/// Present while a destroy or a delete has left wiped envelopes in the file's free pages; the
/// next open rewrites the file without them and so without this key.
const META_WIPE: &str = "wipe_pending";

/// A point in time as stored: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp(pub u64, pub u32);

impl Stamp {
    pub(crate) fn now() -> Self {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(d.as_secs(), d.subsec_nanos())
    }

    pub(crate) fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::new(self.0, self.1.min(999_999_999))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SecretRecord {
    pub labels: BTreeMap<String, String>,
    pub create_time: Stamp,
    pub policy: PolicyDoc,
    /// Changes with every update of labels or policy (the Secret's etag).
    pub etag: String,
    /// Changes with every update of the policy (the IAM policy's etag).
    pub policy_etag: String,
    /// The newest version number; 0 before the first version. Never decreases.
    pub latest: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRecord {
    pub state: VersionState,
    pub create_time: Stamp,
    pub destroy_time: Option<Stamp>,
    pub crc32c: Option<u32>,
    pub etag: u64,
    /// The envelope; `None` once destroyed.
    pub sealed: Option<Vec<u8>>,
}

/// A record that does not decode: corrupt on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub &'static str);

impl SecretRecord {
    fn encode(&self) -> Result<Vec<u8>, SecretError> {
        let mut out = vec![SECRET_FORMAT];
        serde_json::to_writer(&mut out, self)
            .map_err(|e| SecretError::Internal(format!("cannot encode a secret: {e}")))?;
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self, Corrupt> {
        match bytes.split_first() {
            Some((&SECRET_FORMAT, json)) => serde_json::from_slice(json).map_err(|_| Corrupt("secret record")),
            _ => Err(Corrupt("secret record format")),
        }
    }
}

impl VersionRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let sealed = self.sealed.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(48 + sealed.len());
        out.extend_from_slice(&VERSION_MAGIC);
        out.push(self.state.as_int().to_le_bytes()[0]);
        put_stamp(&mut out, Some(self.create_time));
        put_stamp(&mut out, self.destroy_time);
        out.push(u8::from(self.crc32c.is_some()));
        out.extend_from_slice(&self.crc32c.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.etag.to_le_bytes());
        out.push(u8::from(self.sealed.is_some()));
        out.extend_from_slice(&u32::try_from(sealed.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(sealed);
        let trailer = crc32c::crc32c(&out);
        out.extend_from_slice(&trailer.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Corrupt> {
        let (body, trailer) = bytes.split_at_checked(bytes.len().saturating_sub(4)).ok_or(Corrupt("short"))?;
        if trailer.len() != 4 || crc32c::crc32c(body).to_le_bytes() != trailer {
            return Err(Corrupt("the version record's checksum does not match"));
        }
        let mut r = Reader(body);
        if r.take(2)? != VERSION_MAGIC {
            return Err(Corrupt("version record format"));
        }
        let state = match r.u8()? {
            1 => VersionState::Enabled,
            2 => VersionState::Disabled,
            3 => VersionState::Destroyed,
            _ => return Err(Corrupt("version state")),
        };
        let create_time = r.stamp()?.ok_or(Corrupt("create time"))?;
        let destroy_time = r.stamp()?;
        let has_crc = r.u8()? == 1;
        let crc = u32::from_le_bytes(r.array()?);
        let etag = u64::from_le_bytes(r.array()?);
        let has_sealed = r.u8()? == 1;
        let len = usize::try_from(u32::from_le_bytes(r.array()?)).map_err(|_| Corrupt("length"))?;
        let sealed = r.take(len)?.to_vec();
        if !r.0.is_empty() {
            return Err(Corrupt("trailing bytes"));
        }
        Ok(Self {
            state,
            create_time,
            destroy_time,
            crc32c: has_crc.then_some(crc),
            etag,
            sealed: has_sealed.then_some(sealed),
        })
    }
}

fn put_stamp(out: &mut Vec<u8>, s: Option<Stamp>) {
    out.push(u8::from(s.is_some()));
    let Stamp(secs, nanos) = s.unwrap_or(Stamp(0, 0));
    out.extend_from_slice(&secs.to_le_bytes());
    out.extend_from_slice(&nanos.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Corrupt("truncated"))?;
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        self.take(N)?.try_into().map_err(|_| Corrupt("truncated"))
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    fn stamp(&mut self) -> Result<Option<Stamp>, Corrupt> {
        let present = self.u8()? == 1;
        let secs = u64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        Ok(present.then_some(Stamp(secs, nanos)))
    }
}

/// The open database.
pub(crate) struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens or creates `dir/secrets.redb`; after a crash redb recovers the last commit.
    ///
    /// redb verifies every page checksum on open (it does not on reads). A file changed outside
    /// redb fails that check as a whole, which would make every secret unreadable; instead the
    /// readable records are copied, byte for byte, into a fresh file ([`rebuild`]), so that only
    /// the versions whose own records were altered fail — with DATA_LOSS, from their CRC32C
    /// trailer and the envelope's authentication. The same rebuild runs when a destroy or a
    /// delete left wiped envelopes in free pages, so they leave the file at the next open.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Option<Rebuilt>), SecretError> {
        let path = dir.join(STORE_FILE);
        let temp = rebuild_path(&path);
        remove_stale(&temp)?;
        private_file(&path)?;
        let mut rebuilt = None;
        let db = match open_checked(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why))) => {
                let records = rebuild(&path).map_err(|e| {
                    SecretError::Internal(format!(
                        "the secret store `{}` failed its integrity check ({why}) and could not be rebuilt from its readable records ({e}): restore it from a backup, or move it away to start empty",
                        path.display()
                    ))
                })?;
                rebuilt = Some(Rebuilt::Tampered { why, records });
                open_checked(&path).map_err(|e| open_error(&path, e))?
            }
            Err(e) => return Err(open_error(&path, e)),
        };
        let store = Self { db, path };
        store.init()?;
        if rebuilt.is_none() && store.read()?.wipe_pending()? {
            let Self { db, path } = store;
            drop(db);
            let records = rebuild(&path).map_err(|e| {
                SecretError::Internal(format!(
                    "cannot rewrite the secret store `{}` to drop destroyed payloads: {e}",
                    path.display()
                ))
            })?;
            rebuilt = Some(Rebuilt::Wiped { records });
            let store = Self { db: open_checked(&path).map_err(|e| open_error(&path, e))?, path };
            store.init()?;
            return Ok((store, rebuilt));
        }
        Ok((store, rebuilt))
    }

    /// Checks the format and creates the tables.
    fn init(&self) -> Result<(), SecretError> {
        let w = self.write()?;
        {
            let mut meta = w.txn.open_table(META).map_err(|e| self.fail(e))?;
            let format = meta.get(META_FORMAT).map_err(|e| self.fail(e))?.map(|v| v.value().to_vec());
            match format.as_deref() {
                None => {
                    meta.insert(META_FORMAT, [STORE_FORMAT].as_slice()).map_err(|e| self.fail(e))?;
                }
                Some([STORE_FORMAT]) => {}
                Some(_) => {
                    return Err(SecretError::Internal(format!(
                        "the secret store `{}` was written by a newer moat: use that version",
                        self.path.display()
                    )));
                }
            }
            w.txn.open_table(SECRETS).map_err(|e| self.fail(e))?;
            w.txn.open_table(VERSIONS).map_err(|e| self.fail(e))?;
        }
        w.commit()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn read(&self) -> Result<ReadTxn<'_>, SecretError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        Ok(ReadTxn { txn, store: self })
    }

    pub(crate) fn write(&self) -> Result<WriteTxn<'_>, SecretError> {
        let mut txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        // The default, stated: a mutation is on disk before the call returns.
        txn.set_durability(Durability::Immediate).map_err(|e| self.fail(e))?;
        Ok(WriteTxn { txn, store: self })
    }

    pub(crate) fn fail(&self, e: impl std::fmt::Display) -> SecretError {
        SecretError::Internal(format!("the secret store `{}` failed: {e}", self.path.display()))
    }
}

/// What an open had to rebuild, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rebuilt {
    /// The file failed redb's integrity check (`why`): it was changed outside redb. `records`
    /// readable records were carried over unchanged.
    Tampered { why: String, records: usize },
    /// Destroyed payloads lingered in free pages; the file was rewritten without them.
    Wiped { records: usize },
}

fn open_checked(path: &Path) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(64 * 1024 * 1024)
        // Verify every page's checksum on open: a file altered outside redb is noticed (and
        // rebuilt, see `Store::open`) instead of being trusted; the store is small, so it is cheap.
        .set_check_integrity_on_open(true)
        .create(path)
}

fn open_error(path: &Path, e: redb::DatabaseError) -> SecretError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => SecretError::Internal(format!(
            "the secret store `{}` is already open in another process: stop the other moat first",
            path.display()
        )),
        e => SecretError::Internal(format!(
            "cannot open the secret store `{}`: {e} (restore it from a backup, or move it away to start empty)",
            path.display()
        )),
    }
}

/// `secrets.redb.rebuild`: the fresh file a rebuild writes before renaming it into place.
fn rebuild_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".rebuild");
    PathBuf::from(s)
}

/// A rebuild that a crash interrupted before its rename: the original is still in place.
fn remove_stale(path: &Path) -> Result<(), SecretError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SecretError::Internal(format!("cannot remove the stale file `{}`: {e}", path.display()))),
    }
}

/// Creates `path` empty with mode 0600 when missing (redb initialises an empty file; its own
/// create would follow the umask), and takes group and other access away from an existing one.
pub(crate) fn private_file(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| {
        SecretError::Internal(format!("cannot make `{}` private to moat's user (mode 0600): {e}", path.display()))
    };
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path).map_err(fail)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).map_err(fail)?;
            }
            Ok(())
        }
        Err(e) => Err(fail(e)),
    }
}

/// Copies every record of the (closed) store at `path` into a fresh file and renames it into
/// place; returns how many records were copied. Only what the tables reach is copied: free
/// pages (stale copies, wiped envelopes) stay behind in the old file, which the rename unlinks.
/// The old file is read without verification, so a value altered on disk is copied as it is,
/// for its own checksum and AEAD to report. A crash before the rename leaves the original in
/// place and a `.rebuild` file that the next open removes.
fn rebuild(path: &Path) -> Result<usize, String> {
    let temp = rebuild_path(path);
    remove_stale(&temp).map_err(|e| e.to_string())?;
    private_file(&temp).map_err(|e| e.to_string())?;
    // redb documents that an unverified read of a damaged file may panic rather than fail.
    let copied = quietly_catching(|| copy_records(path, &temp))
        .map_err(|()| "reading the damaged file stopped on a malformed page".to_owned())
        .and_then(|r| r);
    let copied = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
    };
    std::fs::rename(&temp, path)
        .and_then(|()| crate::master::sync_dir(path))
        .map_err(|e| format!("cannot rename `{}` over it: {e}", temp.display()))?;
    Ok(copied)
}

/// Runs `f`, turning a panic into `Err(())` without the panic hook's message and backtrace on
/// stderr: the caller reports it in its own words. The hook is process-wide, so swaps are
/// serialised (two stores opening at once must not leave the silent hook installed), and a
/// panic on another thread during `f` is silenced too; this runs only while a damaged store
/// is rebuilt at open.
fn quietly_catching<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| ());
    std::panic::set_hook(previous);
    result
}

fn copy_records(from: &Path, to: &Path) -> Result<usize, String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    // Read-only: never modifies the file, and refuses one a crash left (which needs redb's
    // verified recovery, the very check that failed).
    let src = redb::Builder::new().open_read_only(from).map_err(|e| s(&e))?;
    let dst = redb::Builder::new().create(to).map_err(|e| s(&e))?;
    let r = src.begin_read().map_err(|e| s(&e))?;
    let mut w = dst.begin_write().map_err(|e| s(&e))?;
    w.set_durability(Durability::Immediate).map_err(|e| s(&e))?;
    let mut n = 0;
    for (def, skip) in [(SECRETS, None), (META, Some(META_WIPE))] {
        let t = match r.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(s(&e)),
        };
        let mut out = w.open_table(def).map_err(|e| s(&e))?;
        for row in t.iter().map_err(|e| s(&e))? {
            let (k, v) = row.map_err(|e| s(&e))?;
            if Some(k.value()) != skip {
                out.insert(k.value(), v.value()).map_err(|e| s(&e))?;
                n += 1;
            }
        }
    }
    match r.open_table(VERSIONS) {
        Ok(t) => {
            let mut out = w.open_table(VERSIONS).map_err(|e| s(&e))?;
            for row in t.iter().map_err(|e| s(&e))? {
                let (k, v) = row.map_err(|e| s(&e))?;
                out.insert(k.value(), v.value()).map_err(|e| s(&e))?;
                n += 1;
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(s(&e)),
    }
    w.commit().map_err(|e| s(&e))?;
    drop(r);
    dst.close().map_err(|e| s(&e))?;
    Ok(n)
}

pub(crate) struct ReadTxn<'s> {
    txn: ReadTransaction,
    store: &'s Store,
}

pub(crate) struct WriteTxn<'s> {
    txn: WriteTransaction,
    store: &'s Store,
}

/// A version number and its record, or why the record did not decode.
pub(crate) type VersionRow = (u64, Result<VersionRecord, Corrupt>);

/// Reads shared by read and write transactions.
pub(crate) trait View {
    fn store(&self) -> &Store;
    fn secret(&self, id: &str) -> Result<Option<SecretRecord>, SecretError>;
    /// Versions of `id` with numbers in `range`, oldest first (`rev` for newest first), at most
    /// `limit`; decoding errors are reported per version.
    fn versions(
        &self,
        id: &str,
        range: std::ops::RangeInclusive<u64>,
        rev: bool,
        limit: usize,
    ) -> Result<Vec<VersionRow>, SecretError>;
    /// Secrets with ids after `after` (from the first when empty), at most `limit`.
    fn secrets_after(&self, after: &str, limit: usize) -> Result<Vec<(String, SecretRecord)>, SecretError>;
    fn secret_count(&self) -> Result<usize, SecretError>;
    fn master_key_id(&self) -> Result<Option<[u8; 4]>, SecretError>;

    fn version(&self, id: &str, n: u64) -> Result<Option<Result<VersionRecord, Corrupt>>, SecretError> {
        Ok(self.versions(id, n..=n, false, 1)?.into_iter().next().map(|(_, v)| v))
    }
}

macro_rules! view_impl {
    ($t:ty) => {
        impl View for $t {
            fn store(&self) -> &Store {
                self.store
            }

            fn secret(&self, id: &str) -> Result<Option<SecretRecord>, SecretError> {
                let s = self.store;
                let t = self.txn.open_table(SECRETS).map_err(|e| s.fail(e))?;
                let v = t.get(id).map_err(|e| s.fail(e))?;
                v.map(|v| SecretRecord::decode(v.value()).map_err(|c| corrupt_secret(s, id, &c))).transpose()
            }

            fn versions(
                &self,
                id: &str,
                range: std::ops::RangeInclusive<u64>,
                rev: bool,
                limit: usize,
            ) -> Result<Vec<VersionRow>, SecretError> {
                let s = self.store;
                let t = self.txn.open_table(VERSIONS).map_err(|e| s.fail(e))?;
                let it = t.range((id, *range.start())..=(id, *range.end())).map_err(|e| s.fail(e))?;
                let decode = |r: Result<_, redb::StorageError>| -> Result<VersionRow, SecretError> {
                    let (k, v): (redb::AccessGuard<'_, (&str, u64)>, redb::AccessGuard<'_, &[u8]>) =
                        r.map_err(|e| s.fail(e))?;
                    Ok((k.value().1, VersionRecord::decode(v.value())))
                };
                if rev { it.rev().take(limit).map(decode).collect() } else { it.take(limit).map(decode).collect() }
            }

            fn secrets_after(&self, after: &str, limit: usize) -> Result<Vec<(String, SecretRecord)>, SecretError> {
                let s = self.store;
                let t = self.txn.open_table(SECRETS).map_err(|e| s.fail(e))?;
                let it = t.range::<&str>(after..).map_err(|e| s.fail(e))?;
                let mut out = Vec::new();
                for r in it {
                    let (k, v) = r.map_err(|e| s.fail(e))?;
                    let id = k.value();
                    if id == after {
                        continue;
                    }
                    if out.len() == limit {
                        break;
                    }
                    let rec = SecretRecord::decode(v.value()).map_err(|c| corrupt_secret(s, id, &c))?;
                    out.push((id.to_owned(), rec));
                }
                Ok(out)
            }

            fn secret_count(&self) -> Result<usize, SecretError> {
                let s = self.store;
                let t = self.txn.open_table(SECRETS).map_err(|e| s.fail(e))?;
                let n = t.len().map_err(|e| s.fail(e))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }

            fn master_key_id(&self) -> Result<Option<[u8; 4]>, SecretError> {
                let s = self.store;
                let t = self.txn.open_table(META).map_err(|e| s.fail(e))?;
                let v = t.get(META_MASTER).map_err(|e| s.fail(e))?;
                v.map(|v| {
                    <[u8; 4]>::try_from(v.value()).map_err(|_| {
                        SecretError::DataLoss(format!(
                            "the secret store `{}` has a malformed master key id: restore it from a backup",
                            s.path.display()
                        ))
                    })
                })
                .transpose()
            }
        }
    };
}

view_impl!(ReadTxn<'_>);
view_impl!(WriteTxn<'_>);

fn corrupt_secret(s: &Store, id: &str, c: &Corrupt) -> SecretError {
    SecretError::DataLoss(format!(
        "the record of secret `{id}` in `{}` is corrupt ({}): restore the store from a backup",
        s.path.display(),
        c.0
    ))
}

impl WriteTxn<'_> {
    pub(crate) fn put_secret(&self, id: &str, rec: &SecretRecord) -> Result<(), SecretError> {
        let s = self.store;
        let bytes = rec.encode()?;
        let mut t = self.txn.open_table(SECRETS).map_err(|e| s.fail(e))?;
        t.insert(id, bytes.as_slice()).map_err(|e| s.fail(e))?;
        Ok(())
    }

    pub(crate) fn put_version(&self, id: &str, n: u64, rec: &VersionRecord) -> Result<(), SecretError> {
        self.put_raw_version(id, n, &rec.encode())
    }

    pub(crate) fn put_raw_version(&self, id: &str, n: u64, bytes: &[u8]) -> Result<(), SecretError> {
        let s = self.store;
        let mut t = self.txn.open_table(VERSIONS).map_err(|e| s.fail(e))?;
        t.insert((id, n), bytes).map_err(|e| s.fail(e))?;
        Ok(())
    }

    /// Notes that this transaction frees pages holding envelopes: the next open rewrites the file
    /// so that they do not linger in its free pages (docs/SECRETS.md, "Destroy").
    pub(crate) fn mark_wipe_pending(&self) -> Result<(), SecretError> {
        let s = self.store;
        let mut t = self.txn.open_table(META).map_err(|e| s.fail(e))?;
        t.insert(META_WIPE, [1u8].as_slice()).map_err(|e| s.fail(e))?;
        Ok(())
    }

    /// Removes the secret and all its versions.
    pub(crate) fn delete_secret(&self, id: &str) -> Result<(), SecretError> {
        self.mark_wipe_pending()?;
        let s = self.store;
        let mut versions = self.txn.open_table(VERSIONS).map_err(|e| s.fail(e))?;
        versions.retain_in((id, 0)..=(id, u64::MAX), |_, _| false).map_err(|e| s.fail(e))?;
        let mut secrets = self.txn.open_table(SECRETS).map_err(|e| s.fail(e))?;
        secrets.remove(id).map_err(|e| s.fail(e))?;
        Ok(())
    }

    pub(crate) fn set_master_key_id(&self, id: [u8; 4]) -> Result<(), SecretError> {
        let s = self.store;
        let mut t = self.txn.open_table(META).map_err(|e| s.fail(e))?;
        t.insert(META_MASTER, id.as_slice()).map_err(|e| s.fail(e))?;
        Ok(())
    }

    /// Every version that still holds an envelope, as (secret, number, raw record).
    pub(crate) fn all_versions(&self) -> Result<Vec<(String, u64, Vec<u8>)>, SecretError> {
        let s = self.store;
        let t = self.txn.open_table(VERSIONS).map_err(|e| s.fail(e))?;
        let mut out = Vec::new();
        for r in t.iter().map_err(|e| s.fail(e))? {
            let (k, v) = r.map_err(|e| s.fail(e))?;
            let (id, n) = k.value();
            out.push((id.to_owned(), n, v.value().to_vec()));
        }
        Ok(out)
    }

    /// Commits durably.
    pub(crate) fn commit(self) -> Result<(), SecretError> {
        let s = self.store;
        self.txn.commit().map_err(|e| s.fail(e))
    }
}

impl ReadTxn<'_> {
    /// Whether a destroy or delete since the last rebuild left wiped envelopes in free pages.
    pub(crate) fn wipe_pending(&self) -> Result<bool, SecretError> {
        let s = self.store;
        let t = self.txn.open_table(META).map_err(|e| s.fail(e))?;
        Ok(t.get(META_WIPE).map_err(|e| s.fail(e))?.is_some())
    }
}

#[cfg(test)]
impl ReadTxn<'_> {
    /// The raw bytes of a version record (tests and benchmarks).
    pub(crate) fn raw_version(&self, id: &str, n: u64) -> Result<Option<Vec<u8>>, SecretError> {
        let s = self.store;
        let t = self.txn.open_table(VERSIONS).map_err(|e| s.fail(e))?;
        let v = t.get((id, n)).map_err(|e| s.fail(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, clippy::indexing_slicing, reason = "tests name the failing input")]
mod tests {
    use super::*;

    fn record() -> VersionRecord {
        VersionRecord {
            state: VersionState::Disabled,
            create_time: Stamp(1_700_000_000, 5),
            destroy_time: None,
            crc32c: Some(42),
            etag: 7,
            sealed: Some(vec![1, 2, 3]),
        }
    }

    #[test]
    fn version_records_round_trip_and_any_flipped_byte_is_corrupt() {
        let r = record();
        let bytes = r.encode();
        assert_eq!(VersionRecord::decode(&bytes), Ok(r));
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x80;
            assert!(VersionRecord::decode(&t).is_err(), "byte {i}");
        }
        let destroyed = VersionRecord {
            state: VersionState::Destroyed,
            destroy_time: Some(Stamp(1_800_000_000, 0)),
            crc32c: None,
            sealed: None,
            ..record()
        };
        assert_eq!(VersionRecord::decode(&destroyed.encode()), Ok(destroyed));
    }

    #[test]
    fn tables_survive_reopen() {
        let d = tempfile::tempdir().expect("dir");
        {
            let (s, _) = Store::open(d.path()).expect("open");
            let w = s.write().expect("write");
            w.put_version("a", 1, &record()).expect("put");
            w.set_master_key_id([1, 2, 3, 4]).expect("meta");
            w.commit().expect("commit");
        }
        let (s, rebuilt) = Store::open(d.path()).expect("reopen");
        assert_eq!(rebuilt, None);
        let r = s.read().expect("read");
        assert_eq!(r.version("a", 1).expect("get"), Some(Ok(record())));
        assert_eq!(r.master_key_id().expect("meta"), Some([1, 2, 3, 4]));
        assert_eq!(r.version("a", 2).expect("get"), None);
    }

    /// A panic inside is an `Err` and prints nothing; the hook in place before is back after.
    #[test]
    fn quietly_catching_silences_the_panic_and_restores_the_hook() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        std::panic::set_hook(Box::new(|_| {
            CALLS.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(quietly_catching(|| 7), Ok(7));
        #[expect(clippy::panic, reason = "the panic under test")]
        let caught = quietly_catching(|| panic!("malformed page"));
        assert_eq!(caught, Err(()));
        assert_eq!(CALLS.load(Ordering::SeqCst), 0, "the hook saw nothing");
        #[expect(clippy::panic, reason = "the panic under test")]
        let _ = std::panic::catch_unwind(|| panic!("after"));
        assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the earlier hook is back");
        let _ = std::panic::take_hook();
    }
}
