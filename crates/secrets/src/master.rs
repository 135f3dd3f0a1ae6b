//! The master key: wraps every version's data key. From `MOAT_MASTER_KEY` (base64 of 32
//! bytes) or a key file created on first run with mode 0600.
//!
//! PUBLIC API CONTRACT (fixed by the lead).

use std::path::Path;

/// Name of the environment variable that carries the master key (standard base64, 32 bytes).
pub const MASTER_KEY_ENV: &str = "MOAT_MASTER_KEY";

/// A 256-bit key. `Debug` prints only its id; dropped bytes are zeroed.
pub struct MasterKey {
    bytes: zeroize::Zeroizing<[u8; 32]>,
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
        Self { bytes: zeroize::Zeroizing::new(bytes) }
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut b = [0u8; 32];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| MasterKeyError::Io("the system RNG failed".into()))?;
        Ok(Self::from_bytes(b))
    }

    /// `MOAT_MASTER_KEY` when set (a malformed value is an error, never ignored); else the key
    /// file `file`, created with mode 0600 when missing. A key file readable by group or others
    /// is refused.
    pub fn from_env_or_file(file: &Path) -> Result<Self, MasterKeyError> {
        let _ = file;
        Err(MasterKeyError::Io("not built yet".into()))
    }

    /// A short public id (hex of the first 4 bytes of SHA-256 of the key), recorded with each
    /// wrapped data key so that a wrong master key is reported as such.
    pub fn id(&self) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.bytes.as_ref());
        d.as_ref().iter().take(4).map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}
