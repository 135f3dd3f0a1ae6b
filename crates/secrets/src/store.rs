//! The redb store: one file, `DIR/secrets.redb`, three tables.
//!
//! - `secrets`: secret id → [`SecretRecord`] (a format byte, then JSON: labels, create time,
//!   IAM policy, etags, the newest version number). Never holds a value.
//! - `versions`: (secret id, version number) → [`VersionRecord`] (binary, below): state,
//!   times, CRC32C, the sealed envelope (`seal.rs`), and a CRC32C trailer over the whole
//!   record so that a flipped byte anywhere in it is reported as data loss, not misread.
//! - `meta`: `format` and `master_key_id` (the id of the master key every data key is wrapped
//!   under; rotation rewrites all of them in the same transaction).
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
    pub(crate) fn open(dir: &Path) -> Result<Self, SecretError> {
        let path = dir.join(STORE_FILE);
        let db = redb::Builder::new()
            .set_cache_size(64 * 1024 * 1024)
            // Verify every page's checksum on open: a file altered outside redb fails to open
            // with an error instead of being trusted (the store is small, so this is cheap).
            .set_check_integrity_on_open(true)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => SecretError::Internal(format!(
                    "the secret store `{}` is already open in another process: stop the other moat first",
                    path.display()
                )),
                e => SecretError::Internal(format!(
                    "cannot open the secret store `{}`: {e} (restore it from a backup, or move it away to start empty)",
                    path.display()
                )),
            })?;
        let store = Self { db, path };
        let w = store.write()?;
        {
            let mut meta = w.txn.open_table(META).map_err(|e| store.fail(e))?;
            let format = meta.get(META_FORMAT).map_err(|e| store.fail(e))?.map(|v| v.value().to_vec());
            match format.as_deref() {
                None => {
                    meta.insert(META_FORMAT, [STORE_FORMAT].as_slice()).map_err(|e| store.fail(e))?;
                }
                Some([STORE_FORMAT]) => {}
                Some(_) => {
                    return Err(SecretError::Internal(format!(
                        "the secret store `{}` was written by a newer moat: use that version",
                        store.path.display()
                    )));
                }
            }
            w.txn.open_table(SECRETS).map_err(|e| store.fail(e))?;
            w.txn.open_table(VERSIONS).map_err(|e| store.fail(e))?;
        }
        w.commit()?;
        Ok(store)
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

    /// Removes the secret and all its versions.
    pub(crate) fn delete_secret(&self, id: &str) -> Result<(), SecretError> {
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
            let s = Store::open(d.path()).expect("open");
            let w = s.write().expect("write");
            w.put_version("a", 1, &record()).expect("put");
            w.set_master_key_id([1, 2, 3, 4]).expect("meta");
            w.commit().expect("commit");
        }
        let s = Store::open(d.path()).expect("reopen");
        let r = s.read().expect("read");
        assert_eq!(r.version("a", 1).expect("get"), Some(Ok(record())));
        assert_eq!(r.master_key_id().expect("meta"), Some([1, 2, 3, 4]));
        assert_eq!(r.version("a", 2).expect("get"), None);
    }
}
