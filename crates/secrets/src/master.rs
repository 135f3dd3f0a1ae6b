//! The master key: wraps every version's data key. From `MOAT_MASTER_KEY` (base64 of 32
//! bytes) or a key file created on first run with mode 0600.
//!
//! PUBLIC API CONTRACT (fixed by the lead).
//!
//! Key file format: moat writes the standard base64 of the 32 key bytes and a newline (the
//! same text `MOAT_MASTER_KEY` takes, so `MOAT_MASTER_KEY=$(cat master.key)` works). On
//! reading it also accepts a file of exactly 32 raw bytes (`head -c 32 /dev/urandom`); the two
//! cannot be confused, since the base64 text is 44 characters long.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Name of the environment variable that carries the master key (standard base64, 32 bytes).
pub const MASTER_KEY_ENV: &str = "MOAT_MASTER_KEY";

/// The key file's name in the store directory (`STATE/secrets/master.key`).
pub const MASTER_KEY_FILE: &str = "master.key";

/// A 256-bit key. `Debug` prints only its id; dropped bytes are zeroed.
pub struct MasterKey {
    bytes: zeroize::Zeroizing<[u8; 32]>,
    /// Computed once: every unseal looks the key up by id.
    id: [u8; 4],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id()).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::from_zeroizing(zeroize::Zeroizing::new(bytes))
    }

    fn from_zeroizing(bytes: Zeroizing<[u8; 32]>) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes.as_ref());
        let mut id = [0u8; 4];
        for (o, i) in id.iter_mut().zip(d.as_ref()) {
            *o = *i;
        }
        Self { bytes, id }
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut b = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(b.as_mut()).map_err(|_| MasterKeyError::Io("the system RNG failed".into()))?;
        Ok(Self::from_zeroizing(b))
    }

    /// `MOAT_MASTER_KEY` when set (a malformed value is an error, never ignored); else the key
    /// file `file`, created with mode 0600 when missing. A key file readable by group or others
    /// is refused.
    pub fn from_env_or_file(file: &Path) -> Result<Self, MasterKeyError> {
        from_sources(std::env::var_os(MASTER_KEY_ENV), file)
    }

    /// Reads the key file `file` (32 raw bytes or their standard base64). A file readable by
    /// group or others is refused; a missing file is an error.
    pub fn from_file(file: &Path) -> Result<Self, MasterKeyError> {
        let mut f = File::open(file)
            .map_err(|e| MasterKeyError::Io(format!("cannot open the master key file `{}`: {e}", file.display())))?;
        let mode = f
            .metadata()
            .map_err(|e| MasterKeyError::Io(format!("cannot read the master key file `{}`: {e}", file.display())))?
            .mode();
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::Invalid(format!(
                "the master key file `{f}` is accessible to group or others (mode {m:04o}): run `chmod 600 {f}`",
                f = file.display(),
                m = mode & 0o7777
            )));
        }
        let mut text = Zeroizing::new(Vec::with_capacity(64));
        f.read_to_end(&mut text)
            .map_err(|e| MasterKeyError::Io(format!("cannot read the master key file `{}`: {e}", file.display())))?;
        if let Ok(raw) = <[u8; 32]>::try_from(text.as_slice()) {
            return Ok(Self::from_bytes(raw));
        }
        decode_base64(text.trim_ascii()).map_err(|detail| {
            MasterKeyError::Invalid(format!(
                "the master key file `{}` must hold 32 raw bytes or their standard base64 (44 characters, as moat writes it): {detail}",
                file.display()
            ))
        })
    }

    /// Writes the key to `file` atomically: a temporary file beside it created with mode 0600,
    /// written and fsynced, renamed over `file`, then the directory fsynced. A crash leaves
    /// either the old file or the new one, never a torn one.
    pub fn save(&self, file: &Path) -> Result<(), MasterKeyError> {
        let io = |what: &str, e: std::io::Error| {
            MasterKeyError::Io(format!("cannot {what} the master key file `{}`: {e}", file.display()))
        };
        let tmp = temp_path(file);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("replace a stale temporary copy of", e)),
        }
        write_new(&tmp, &self.encoded()).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, file).map_err(|e| io("rename into place", e))?;
        sync_dir(file).map_err(|e| io("sync the directory of", e))
    }

    /// A short public id (hex of the first 4 bytes of SHA-256 of the key), recorded with each
    /// wrapped data key so that a wrong master key is reported as such.
    pub fn id(&self) -> String {
        self.id_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn id_bytes(&self) -> [u8; 4] {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A second handle on the same key (both zeroed on drop).
    pub(crate) fn duplicate(&self) -> Self {
        Self::from_bytes(*self.bytes)
    }

    fn encoded(&self) -> Zeroizing<Vec<u8>> {
        let mut s = Zeroizing::new(STANDARD.encode(self.bytes.as_ref()).into_bytes());
        s.push(b'\n');
        s
    }
}

/// `FILE.next`: the key a rotation is moving to (see docs/SECRETS.md, "Master key rotation").
pub fn next_key_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

/// `FILE.tmp`: where [`MasterKey::save`] writes before renaming.
pub(crate) fn temp_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

pub(crate) fn from_sources(env: Option<OsString>, file: &Path) -> Result<MasterKey, MasterKeyError> {
    let Some(value) = env else {
        return load_or_create(file);
    };
    let form = "the standard base64 of exactly 32 bytes (44 characters, e.g. from `openssl rand -base64 32`)";
    let Some(text) = value.to_str() else {
        return Err(MasterKeyError::Invalid(format!("`{MASTER_KEY_ENV}` is not valid UTF-8: it must be {form}")));
    };
    if text.trim().is_empty() {
        return Err(MasterKeyError::Invalid(format!(
            "`{MASTER_KEY_ENV}` is set but empty: set it to {form}, or unset it to use the key file `{}`",
            file.display()
        )));
    }
    decode_base64(text.trim().as_bytes())
        .map_err(|detail| MasterKeyError::Invalid(format!("`{MASTER_KEY_ENV}` must be {form}: {detail}")))
}

fn decode_base64(text: &[u8]) -> Result<MasterKey, String> {
    let bytes = Zeroizing::new(STANDARD.decode(text).map_err(|_| "the value is not standard base64".to_owned())?);
    let raw = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("the value decodes to {} bytes, not 32", bytes.len()))?;
    Ok(MasterKey::from_bytes(raw))
}

fn load_or_create(file: &Path) -> Result<MasterKey, MasterKeyError> {
    match std::fs::symlink_metadata(file) {
        Ok(_) => return MasterKey::from_file(file),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(MasterKeyError::Io(format!("cannot read the master key file `{}`: {e}", file.display())));
        }
    }
    let key = MasterKey::generate()?;
    match write_new(file, &key.encoded()) {
        Ok(()) => {}
        // Another process created it between our look and our write: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return MasterKey::from_file(file),
        Err(e) => {
            return Err(MasterKeyError::Io(format!("cannot create the master key file `{}`: {e}", file.display())));
        }
    }
    sync_dir(file).map_err(|e| {
        MasterKeyError::Io(format!("cannot sync the directory of the master key file `{}`: {e}", file.display()))
    })?;
    Ok(key)
}

/// Creates `path` (which must not exist) with mode 0600, writes `data` and fsyncs it.
pub(crate) fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// fsync of the directory holding `path`, so a create or rename in it survives a crash.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn missing_file_is_created_0600_and_read_back() {
        let d = tmp();
        let f = d.path().join(MASTER_KEY_FILE);
        let a = from_sources(None, &f).expect("created");
        let mode = std::fs::metadata(&f).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&f).expect("text");
        assert_eq!(text.len(), 45, "base64 of 32 bytes and a newline");
        let b = from_sources(None, &f).expect("read back");
        assert_eq!(a.id(), b.id());
        assert_eq!(a.bytes(), b.bytes());
    }

    #[test]
    fn raw_32_byte_files_are_accepted() {
        let d = tmp();
        let f = d.path().join("raw.key");
        write_new(&f, &[7u8; 32]).expect("write");
        assert_eq!(MasterKey::from_file(&f).expect("raw").bytes(), &[7u8; 32]);
    }

    #[test]
    fn a_key_file_open_to_group_or_others_is_refused_with_the_fix() {
        let d = tmp();
        let f = d.path().join(MASTER_KEY_FILE);
        from_sources(None, &f).expect("created");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = from_sources(None, &f).expect_err("refused").to_string();
        assert!(e.contains(&format!("run `chmod 600 {}`", f.display())), "{e}");
        assert!(e.contains("0644"), "{e}");
    }

    #[test]
    fn a_malformed_env_value_is_an_error_naming_the_variable_never_ignored() {
        let d = tmp();
        let f = d.path().join(MASTER_KEY_FILE);
        for (value, detail) in [
            ("not base64!", "not standard base64"),
            ("AAAA", "decodes to 3 bytes"),
            ("", "set but empty"),
            (&STANDARD.encode([1u8; 31]), "decodes to 31 bytes"),
            (&STANDARD.encode([1u8; 33]), "decodes to 33 bytes"),
        ] {
            let e = from_sources(Some(value.into()), &f).expect_err(value).to_string();
            assert!(e.contains("`MOAT_MASTER_KEY`") && e.contains(detail), "{value}: {e}");
        }
        assert!(!f.exists(), "a bad env value must not fall back to creating the file");
        let good = STANDARD.encode([9u8; 32]);
        let k = from_sources(Some(format!("{good}\n").into()), &f).expect("good");
        assert_eq!(k.bytes(), &[9u8; 32]);
    }

    #[test]
    fn save_is_atomic_0600_and_leaves_no_temporary() {
        let d = tmp();
        let f = d.path().join(MASTER_KEY_FILE);
        let k = MasterKey::generate().expect("key");
        k.save(&f).expect("save");
        k.save(&f).expect("save over");
        assert_eq!(std::fs::metadata(&f).expect("file").permissions().mode() & 0o777, 0o600);
        assert!(!temp_path(&f).exists());
        assert_eq!(MasterKey::from_file(&f).expect("read").id(), k.id());
        assert_eq!(next_key_path(&f).file_name().and_then(|n| n.to_str()), Some("master.key.next"));
    }

    #[test]
    fn debug_shows_the_id_only() {
        let k = MasterKey::from_bytes([3u8; 32]);
        let s = format!("{k:?}");
        assert!(s.contains(&k.id()) && !s.contains("bytes"), "{s}");
        assert_eq!(k.id().len(), 8);
    }
}
