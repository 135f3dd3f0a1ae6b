//! The issuer's RS256 signing keys: one current key, older ones still published until every
//! token they signed has expired, and an optional on-disk store.
//!
//! On disk, `DIR/index.json` lists the keys (`kid`, `created_at`, `retired_at`) and each private
//! key sits in `DIR/<kid>.pem` (PKCS#8, mode 0600 from creation). Every write goes to a temp
//! file that is fsynced and renamed, then the directory is fsynced, so a crash leaves either the
//! old or the new state. A damaged store is an error that says what to do: keys are never
//! regenerated over existing ones, because that would silently invalidate issued tokens.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self as sig, KeyPair as _, RsaKeyPair};
use aws_lc_rs::{rand, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::verify::{KeySet, VerifyingKey};

/// Longest lifetime of a token this issuer signs; retired keys stay published this long
/// (plus [`CLOCK_SKEW_MARGIN_SECS`]) after retirement.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 3600;
/// Extra time a retired key stays published, for verifiers whose clock runs late.
pub const CLOCK_SKEW_MARGIN_SECS: u64 = 300;
/// Validity of the current key's certificate; it is reissued shorter when the key retires.
const CURRENT_CERT_VALIDITY_SECS: u64 = 365 * 24 * 3600;
const INDEX_FILE: &str = "index.json";
/// Taken (flock, exclusive) around every read-modify-write of the store, by every process.
const LOCK_FILE: &str = ".lock";
/// How long a new key of a scheduled rotation or `moat keys rotate` is published before it
/// signs. Longer than any refresh interval of moat's own verifiers: a running server adopts a
/// rotation made by another process within 60 s and its front door copies keys every 5 s.
pub const PREPUBLISH_SECS: u64 = 120;
const INDEX_VERSION: u32 = 1;
/// Latest instant X.509 can express with a four-digit year.
const MAX_CERT_TIME: u64 = 253_402_300_799;

/// The key store cannot be read, written or trusted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {op} `{path}`: {reason}: check that the key directory exists and belongs to moat's user")]
    Io { op: &'static str, path: PathBuf, reason: String },
    #[error("`{0}` is not a directory: point the key store at a directory")]
    NotADirectory(PathBuf),
    #[error(
        "`{path}` has mode {mode:03o}, open to other users: run `chmod {want:03o} {path}` (key files must be private)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32, want: u32 },
    #[error(
        "the key index `{path}` is corrupt ({detail}): restore it from a backup, or move the key directory away to start with new keys (tokens signed by the old keys then stop verifying)"
    )]
    CorruptIndex { path: PathBuf, detail: String },
    #[error(
        "the key file `{path}` listed in the index is missing: restore it from a backup, or move the key directory away to start with new keys"
    )]
    MissingKeyFile { path: PathBuf },
    #[error(
        "the key file `{path}` is not a PKCS#8 RSA private key of at least 2048 bits ({detail}): restore it from a backup, or move the key directory away to start with new keys"
    )]
    CorruptKeyFile { path: PathBuf, detail: &'static str },
    #[error(
        "`{0}` holds key files but no index.json: restore index.json from a backup, or move the key files away to create new keys"
    )]
    OrphanKeys(PathBuf),
    #[error("cannot generate an RSA signing key: the system random source may be unavailable")]
    Generate,
    #[error("cannot create the X.509 certificate of key `{kid}` ({detail})")]
    Certificate { kid: String, detail: String },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.to_path_buf();
    move |e| KeyError::Io { op, path, reason: e.to_string() }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    version: u32,
    keys: Vec<IndexEntry>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct IndexEntry {
    kid: String,
    created_at: u64,
    retired_at: Option<u64>,
    /// A pre-published key: in the JWKS already, signing from this unix time on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activates_at: Option<u64>,
}

impl IndexEntry {
    /// The signing key: neither retired nor waiting.
    fn is_current(&self) -> bool {
        self.retired_at.is_none() && self.activates_at.is_none()
    }
}

struct RingKey {
    meta: IndexEntry,
    pair: RsaKeyPair,
    pkcs8: Vec<u8>,
    n: Vec<u8>,
    e: Vec<u8>,
    verifying: Arc<VerifyingKey>,
    cert_pem: String,
}

impl RingKey {
    fn generate(now: u64, activates_at: Option<u64>) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(rsa::KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let pkcs8 = pair.as_der().map_err(|_| KeyError::Generate)?.as_ref().to_vec();
        let mut id = [0u8; 20];
        rand::fill(&mut id).map_err(|_| KeyError::Generate)?;
        let kid: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Self::from_parts(IndexEntry { kid, created_at: now, retired_at: None, activates_at }, pair, pkcs8)
    }

    fn from_parts(meta: IndexEntry, pair: RsaKeyPair, pkcs8: Vec<u8>) -> Result<Self, KeyError> {
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let verifying = VerifyingKey::rsa(&meta.kid, Some(Algorithm::RS256), &n, &e)
            .map_err(|_| KeyError::Certificate { kid: meta.kid.clone(), detail: "public key rejected".into() })?;
        let mut key = Self { meta, pair, pkcs8, n, e, verifying: Arc::new(verifying), cert_pem: String::new() };
        key.cert_pem = key.certificate()?;
        Ok(key)
    }

    /// Self-signed certificate for Google's v1 PEM map, valid from creation (minus the skew
    /// margin) until the key is pruned.
    fn certificate(&self) -> Result<String, KeyError> {
        let err = |detail: String| KeyError::Certificate { kid: self.meta.kid.clone(), detail };
        let signer = rcgen::KeyPair::try_from(self.pkcs8.as_slice()).map_err(|e| err(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, format!("moat token signing key {}", self.meta.kid));
        params.distinguished_name = dn;
        let not_before = self.meta.created_at.saturating_sub(CLOCK_SKEW_MARGIN_SECS);
        let not_after = match self.meta.retired_at {
            Some(r) => prune_at(r),
            None => self.meta.created_at.saturating_add(CURRENT_CERT_VALIDITY_SECS),
        };
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs(not_before.min(MAX_CERT_TIME));
        params.not_after = epoch + Duration::from_secs(not_after.clamp(not_before, MAX_CERT_TIME));
        let mut serial = [0u8; 16];
        rand::fill(&mut serial).map_err(|_| KeyError::Generate)?;
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.self_signed(&signer).map(|c| c.pem()).map_err(|e| err(e.to_string()))
    }

    fn pem(&self) -> String {
        let b64 = STANDARD.encode(&self.pkcs8);
        let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }
}

/// Pre-publication delay of a scheduled rotation every `every_secs`: [`PREPUBLISH_SECS`], but
/// at most half the period, so that very short periods (tests) still rotate.
pub fn prepublish_delay(every_secs: u64) -> u64 {
    PREPUBLISH_SECS.min(every_secs / 2)
}

/// Takes the store's exclusive lock; it is released when the returned file is dropped.
fn lock_store(dir: &Path) -> Result<File, KeyError> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io("open", &path))?;
    f.lock().map_err(io("lock", &path))?;
    Ok(f)
}

fn prune_at(retired_at: u64) -> u64 {
    retired_at.saturating_add(MAX_TOKEN_LIFETIME_SECS).saturating_add(CLOCK_SKEW_MARGIN_SECS)
}

fn parse_pem(text: &str) -> Option<Vec<u8>> {
    let body = text.trim().strip_prefix("-----BEGIN PRIVATE KEY-----")?.strip_suffix("-----END PRIVATE KEY-----")?;
    let joined: String = body.split_ascii_whitespace().collect();
    STANDARD.decode(joined).ok()
}

/// A kid from the index is used as a file name: allow only what we generate and similar ids.
fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The signing keys. The current key is the one without `retired_at`.
pub struct KeyRing {
    dir: Option<PathBuf>,
    /// Oldest first; the last one is current.
    keys: Vec<RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private keys.
        let keys: Vec<_> = self.keys.iter().map(|k| (&k.meta.kid, k.meta.created_at, k.meta.retired_at)).collect();
        f.debug_struct("KeyRing").field("dir", &self.dir).field("keys", &keys).finish()
    }
}

impl KeyRing {
    /// Opens the key store in `dir`, creating the directory (0700) and a first key when the
    /// directory holds no keys yet. A pre-published key whose time has come becomes the signing
    /// key, and retired keys past their retention are pruned.
    pub fn load_or_create(dir: &Path, now: u64) -> Result<Self, KeyError> {
        match fs::metadata(dir) {
            Ok(m) if !m.is_dir() => return Err(KeyError::NotADirectory(dir.to_path_buf())),
            Ok(m) => {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o022 != 0 {
                    return Err(KeyError::InsecurePermissions { path: dir.to_path_buf(), mode, want: 0o700 });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("create", dir))?;
            }
            Err(e) => return Err(io("read", dir)(e)),
        }
        let _lock = lock_store(dir)?;
        Self::load_locked(dir, now)
    }

    /// Reads the store; the caller holds the store lock (it may write the index).
    fn load_locked(dir: &Path, now: u64) -> Result<Self, KeyError> {
        let index_path = dir.join(INDEX_FILE);
        let text = match fs::read_to_string(&index_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::create_store(dir, now),
            Err(e) => return Err(io("read", &index_path)(e)),
        };
        let corrupt = |detail: String| KeyError::CorruptIndex { path: index_path.clone(), detail };
        let index: Index = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if index.version != INDEX_VERSION {
            return Err(corrupt(format!("version {} is not {INDEX_VERSION}", index.version)));
        }
        let current = index.keys.iter().filter(|k| k.is_current()).count();
        if current != 1 {
            return Err(corrupt(format!("{current} current keys instead of one")));
        }
        let pending: Vec<&IndexEntry> = index.keys.iter().filter(|k| k.activates_at.is_some()).collect();
        if pending.len() > 1 || pending.iter().any(|k| k.retired_at.is_some()) {
            return Err(corrupt("more than one pre-published key, or a retired one".into()));
        }
        // Oldest first: the current key is last, or second to last before a pre-published key.
        let mut newest = index.keys.iter().rev();
        let last_is_pending = newest.next().is_some_and(|k| k.activates_at.is_some());
        let current_in_place = if last_is_pending { newest.next() } else { index.keys.last() };
        if !current_in_place.is_some_and(IndexEntry::is_current) {
            return Err(corrupt("the current key is not the last one".into()));
        }
        let mut keys: Vec<RingKey> = Vec::with_capacity(index.keys.len());
        for meta in index.keys {
            if !valid_kid(&meta.kid) {
                return Err(corrupt("a kid is not 1-64 letters, digits, `-` or `_`".into()));
            }
            if keys.iter().any(|k| k.meta.kid == meta.kid) {
                return Err(corrupt(format!("kid `{}` is listed twice", meta.kid)));
            }
            keys.push(load_key(dir, meta)?);
        }
        let mut ring = Self { dir: Some(dir.to_path_buf()), keys };
        ring.promote(now)?;
        ring.prune(now)?;
        Ok(ring)
    }

    fn create_store(dir: &Path, now: u64) -> Result<Self, KeyError> {
        let entries = fs::read_dir(dir).map_err(io("list", dir))?;
        for entry in entries {
            let entry = entry.map_err(io("list", dir))?;
            if entry.path().extension().is_some_and(|e| e == "pem") {
                return Err(KeyError::OrphanKeys(dir.to_path_buf()));
            }
        }
        let ring = Self { dir: Some(dir.to_path_buf()), keys: vec![RingKey::generate(now, None)?] };
        for k in &ring.keys {
            write_atomic(dir, &format!("{}.pem", k.meta.kid), k.pem().as_bytes())?;
        }
        ring.write_index(&ring.keys.iter().map(|k| k.meta.clone()).collect::<Vec<_>>())?;
        Ok(ring)
    }

    /// A key ring that lives only in memory (tests, ephemeral runs).
    pub fn in_memory(now: u64) -> Result<Self, KeyError> {
        Ok(Self { dir: None, keys: vec![RingKey::generate(now, None)?] })
    }

    /// The signing key: the one neither retired nor waiting to sign.
    #[expect(clippy::expect_used, reason = "every constructor leaves one current key and nothing removes it")]
    fn current(&self) -> &RingKey {
        self.keys.iter().rev().find(|k| k.meta.is_current()).expect("a key ring always has a current key")
    }

    /// The kid of the key that signs now.
    pub fn current_kid(&self) -> &str {
        &self.current().meta.kid
    }

    /// The pre-published key, if any, and the unix time from which it signs.
    pub fn next_key(&self) -> Option<(&str, u64)> {
        self.keys.iter().find_map(|k| k.meta.activates_at.map(|at| (k.meta.kid.as_str(), at)))
    }

    /// Kids of every published key, oldest first (the last is the current key, or the
    /// pre-published one).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.meta.kid.as_str())
    }

    /// Makes a new signing key current at once and retires the old one at `now`. Verifiers
    /// that have not fetched the new key yet refuse its tokens until they do: moat's own
    /// rotations use [`KeyRing::rotate_prepublished`] instead. For issuers in tests.
    pub fn rotate(&mut self, now: u64) -> Result<(), KeyError> {
        self.update(now, |ring, now| ring.add_key(now, None))
    }

    /// Publishes a new key now and makes it the signing key `delay_secs` later, so that every
    /// verifier that refreshes its keys more often than that knows the key before it signs
    /// anything. The switch happens at the first load, [`KeyRing::rotate_if_due`] or
    /// [`KeyRing::promote_due`] at or after that time; until then the current key signs. A
    /// key pre-published earlier and not yet signing is replaced. Returns the new kid and when
    /// it signs.
    pub fn rotate_prepublished(&mut self, now: u64, delay_secs: u64) -> Result<(String, u64), KeyError> {
        let at = now.saturating_add(delay_secs);
        self.update(now, |ring, now| {
            ring.add_key(now, Some(at))?;
            ring.promote(now)?;
            Ok(())
        })?;
        let kid = self.keys.last().map(|k| k.meta.kid.clone()).unwrap_or_default();
        Ok((kid, at))
    }

    /// Rotates (pre-published, [`prepublish_delay`]) when the current key is at least
    /// `every_secs` old (0: never) and no key is waiting; makes a waiting key current once its
    /// time has come; prunes retired keys past retention. Returns whether the published keys
    /// or the signing key changed.
    pub fn rotate_if_due(&mut self, now: u64, every_secs: u64) -> Result<bool, KeyError> {
        let before = self.fingerprint();
        self.update(now, |ring, now| {
            ring.promote(now)?;
            let newest = ring.keys.last().map_or(0, |k| k.meta.created_at);
            if every_secs > 0 && ring.next_key().is_none() && now >= newest.saturating_add(every_secs) {
                ring.add_key(now, Some(now.saturating_add(prepublish_delay(every_secs))))?;
                ring.promote(now)?;
            }
            ring.prune(now)
        })?;
        Ok(self.fingerprint() != before)
    }

    /// Makes the pre-published key the signing key when its time has come (the old current
    /// key retires at `now`). Returns whether the signing key changed.
    pub fn promote_due(&mut self, now: u64) -> Result<bool, KeyError> {
        let before = self.current_kid().to_owned();
        self.update(now, |ring, now| ring.promote(now).map(|_| ()))?;
        Ok(self.current_kid() != before)
    }

    /// [`KeyRing::promote_due`] on a ring already under the store lock.
    fn promote(&mut self, now: u64) -> Result<bool, KeyError> {
        if self.next_key().is_none_or(|(_, at)| at > now) {
            return Ok(false);
        }
        let current = self.current_kid().to_owned();
        let metas = self
            .keys
            .iter()
            .map(|k| {
                let mut m = k.meta.clone();
                if m.kid == current {
                    m.retired_at = Some(now);
                }
                m.activates_at = None;
                m
            })
            .collect();
        self.commit(metas, None)?;
        Ok(true)
    }

    /// Kids and the signing kid: what verifiers and signers see of the ring.
    fn fingerprint(&self) -> (Vec<String>, String) {
        (self.kids().map(str::to_owned).collect(), self.current_kid().to_owned())
    }

    /// Runs `f` on the newest state of the ring. For a store: under the store lock, on a ring
    /// read afresh from disk (another process may have rotated since this one was loaded), so
    /// that concurrent writers (`moat token`, `moat keys rotate`, a running server) never lose
    /// each other's keys; the result replaces `self`.
    fn update<R>(&mut self, now: u64, f: impl FnOnce(&mut Self, u64) -> Result<R, KeyError>) -> Result<R, KeyError> {
        let Some(dir) = self.dir.clone() else { return f(self, now) };
        let _lock = lock_store(&dir)?;
        let mut fresh = Self::load_locked(&dir, now)?;
        let r = f(&mut fresh, now)?;
        *self = fresh;
        Ok(r)
    }

    /// Adds a new key: current at once (`activates_at` `None`, the old one retires at `now`)
    /// or pre-published until `activates_at`. A pre-published key that never signed is dropped.
    fn add_key(&mut self, now: u64, activates_at: Option<u64>) -> Result<(), KeyError> {
        let new = RingKey::generate(now, activates_at)?;
        if let Some(dir) = &self.dir {
            write_atomic(dir, &format!("{}.pem", new.meta.kid), new.pem().as_bytes())?;
        }
        let current = self.current_kid().to_owned();
        let mut metas: Vec<IndexEntry> = self
            .keys
            .iter()
            .filter(|k| k.meta.activates_at.is_none())
            .map(|k| {
                let mut m = k.meta.clone();
                if activates_at.is_none() && m.kid == current {
                    m.retired_at = Some(now);
                }
                m
            })
            .collect();
        metas.push(new.meta.clone());
        metas.retain(|m| m.retired_at.is_none_or(|r| now < prune_at(r)));
        self.commit(metas, Some(new))
    }

    fn prune(&mut self, now: u64) -> Result<(), KeyError> {
        let metas: Vec<IndexEntry> = self
            .keys
            .iter()
            .map(|k| k.meta.clone())
            .filter(|m| m.retired_at.is_none_or(|r| now < prune_at(r)))
            .collect();
        if metas.len() == self.keys.len() {
            return Ok(());
        }
        self.commit(metas, None)
    }

    /// Makes `metas` the ring's state: on disk first (the index is the truth), then in memory.
    /// Everything that can fail (certificates of newly retired keys) happens before the index
    /// changes on disk. Keys not in `metas` are forgotten and their files deleted.
    fn commit(&mut self, metas: Vec<IndexEntry>, new: Option<RingKey>) -> Result<(), KeyError> {
        let mut certs = Vec::new();
        for (i, k) in self.keys.iter_mut().enumerate() {
            if let Some(m) = metas.iter().find(|m| m.kid == k.meta.kid)
                && m.retired_at != k.meta.retired_at
            {
                let old = std::mem::replace(&mut k.meta, m.clone());
                let cert = k.certificate();
                k.meta = old;
                certs.push((i, cert?));
            }
        }
        self.write_index(&metas)?;
        for (i, cert) in certs {
            if let Some(k) = self.keys.get_mut(i) {
                k.cert_pem = cert;
            }
        }
        for k in &mut self.keys {
            if let Some(m) = metas.iter().find(|m| m.kid == k.meta.kid) {
                k.meta = m.clone();
            }
        }
        self.keys.extend(new);
        self.drop_pruned(&metas);
        Ok(())
    }

    /// Forgets keys not in `metas` and deletes their files. A file that cannot be deleted is
    /// left behind: it is no longer in the index, so it is never used again.
    fn drop_pruned(&mut self, metas: &[IndexEntry]) {
        let dir = self.dir.clone();
        self.keys.retain(|k| {
            let keep = metas.iter().any(|m| m.kid == k.meta.kid);
            if !keep && let Some(dir) = &dir {
                let _ = fs::remove_file(dir.join(format!("{}.pem", k.meta.kid)));
            }
            keep
        });
    }

    fn write_index(&self, metas: &[IndexEntry]) -> Result<(), KeyError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let index = Index { version: INDEX_VERSION, keys: metas.to_vec() };
        let mut text = serde_json::to_string_pretty(&index)
            .map_err(|e| KeyError::CorruptIndex { path: dir.join(INDEX_FILE), detail: e.to_string() })?;
        text.push('\n');
        write_atomic(dir, INDEX_FILE, text.as_bytes())
    }

    /// The JWKS of every published key, current first.
    pub fn jwks_json(&self) -> String {
        #[derive(Serialize)]
        struct Jwk<'a> {
            kty: &'static str,
            alg: &'static str,
            #[serde(rename = "use")]
            use_: &'static str,
            kid: &'a str,
            n: String,
            e: String,
        }
        #[derive(Serialize)]
        struct Jwks<'a> {
            keys: Vec<Jwk<'a>>,
        }
        let keys = self
            .keys
            .iter()
            .rev()
            .map(|k| Jwk {
                kty: "RSA",
                alg: "RS256",
                use_: "sig",
                kid: &k.meta.kid,
                n: URL_SAFE_NO_PAD.encode(&k.n),
                e: URL_SAFE_NO_PAD.encode(&k.e),
            })
            .collect();
        serde_json::to_string(&Jwks { keys }).unwrap_or_else(|_| String::from(r#"{"keys":[]}"#))
    }

    /// Google's v1 certs format: `{"<kid>": "-----BEGIN CERTIFICATE-----\n..."}`.
    pub fn x509_pem_map_json(&self) -> String {
        let map: std::collections::BTreeMap<&str, &str> =
            self.keys.iter().map(|k| (k.meta.kid.as_str(), k.cert_pem.as_str())).collect();
        serde_json::to_string(&map).unwrap_or_else(|_| String::from("{}"))
    }

    /// The verifier's view of the published keys.
    pub fn key_set(&self) -> KeySet {
        KeySet::from_arcs(self.keys.iter().rev().map(|k| Arc::clone(&k.verifying)).collect())
    }

    /// Signs `signing_input` (`b64(header).b64(payload)`) with the current key, RS256.
    pub(crate) fn sign_rs256(&self, signing_input: &[u8]) -> Option<Vec<u8>> {
        let key = &self.current().pair;
        let mut out = vec![0u8; key.public_modulus_len()];
        key.sign(&sig::RSA_PKCS1_SHA256, &rand::SystemRandom::new(), signing_input, &mut out).ok()?;
        Some(out)
    }

    /// The current private key, for tests that sign with other algorithms.
    #[cfg(test)]
    pub(crate) fn current_pair(&self) -> &RsaKeyPair {
        &self.current().pair
    }

    /// Signs arbitrary header and payload JSON with the current key, with no check at all.
    /// For tests and fuzzing only (the non-default `testing` feature): it can mint tokens no
    /// issuer rule allows, so release builds do not have it.
    #[cfg(any(test, feature = "testing"))]
    pub fn danger_sign_arbitrary(&self, header_json: &[u8], payload_json: &[u8]) -> Option<String> {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header_json), URL_SAFE_NO_PAD.encode(payload_json));
        let sig = self.sign_rs256(input.as_bytes())?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

fn load_key(dir: &Path, meta: IndexEntry) -> Result<RingKey, KeyError> {
    let path = dir.join(format!("{}.pem", meta.kid));
    let m = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyError::MissingKeyFile { path }),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions { path, mode, want: 0o600 });
    }
    let text = fs::read_to_string(&path).map_err(io("read", &path))?;
    let der =
        parse_pem(&text).ok_or(KeyError::CorruptKeyFile { path: path.clone(), detail: "not a PEM `PRIVATE KEY`" })?;
    let pair = RsaKeyPair::from_pkcs8(&der)
        .map_err(|_| KeyError::CorruptKeyFile { path: path.clone(), detail: "not an RSA key" })?;
    if pair.public_modulus_len() < 256 {
        return Err(KeyError::CorruptKeyFile { path, detail: "shorter than 2048 bits" });
    }
    RingKey::from_parts(meta, pair, der)
}

/// Writes `name` in `dir` atomically: a private temp file (0600 from creation), fsync, rename,
/// fsync of the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temp file left by a crash is garbage; create_new below refuses to follow it anyway.
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    drop(f);
    let dest = dir.join(name);
    fs::rename(&tmp, &dest).map_err(io("rename into place", &dest))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests;
