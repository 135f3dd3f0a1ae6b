//! Envelope encryption (aws-lc-rs only).
//!
//! Each version gets its own random 256-bit data key. The payload is sealed with AES-256-GCM
//! under the data key (random 96-bit nonce), with the secret id and version number as AAD, so a
//! ciphertext moved to another version or secret fails to open. The data key is sealed
//! ("wrapped") with AES-256-GCM under the master key, with the format tag, the master key id,
//! the secret id and the version as AAD. Data keys and plaintexts live in zeroed-on-drop
//! buffers; only the envelope reaches the store.
//!
//! Envelope layout (all fixed-size fields, then the payload ciphertext):
//!
//! ```text
//! "MSE1" | master key id (4) | wrap nonce (12) | wrapped data key (32 + 16 tag)
//!        | payload nonce (12) | payload ciphertext (n + 16 tag)
//! ```

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::master::MasterKey;

pub(crate) const FORMAT: &[u8; 4] = b"MSE1";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const ID_AT: usize = FORMAT.len();
const WRAP_NONCE_AT: usize = ID_AT + 4;
const WRAPPED_AT: usize = WRAP_NONCE_AT + NONCE_LEN;
const PAYLOAD_NONCE_AT: usize = WRAPPED_AT + KEY_LEN + TAG_LEN;
const CIPHERTEXT_AT: usize = PAYLOAD_NONCE_AT + NONCE_LEN;
/// Bytes an envelope adds to the payload.
pub(crate) const OVERHEAD: usize = CIPHERTEXT_AT + TAG_LEN;

/// Why an envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Wrapped under a master key that is not loaded.
    UnknownKey([u8; 4]),
    /// Malformed, or an authentication tag did not verify: tampered or corrupt.
    Corrupt(&'static str),
}

/// The RNG or the cipher failed (never expected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealError;

/// The master key envelopes are opened with, found by the id an envelope names (a different id
/// means a corrupt envelope: the store's id is checked at open, and a rotation replaces the key
/// under an exclusive lock, so readers never see a snapshot and a key that disagree).
pub(crate) struct Keyring {
    pub(crate) current: MasterKey,
}

impl Keyring {
    pub(crate) fn find(&self, id: [u8; 4]) -> Option<&MasterKey> {
        (self.current.id_bytes() == id).then_some(&self.current)
    }
}

/// Seals `plaintext` as version `version` of secret `secret`.
pub(crate) fn seal(master: &MasterKey, secret: &str, version: u64, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(data_key.as_mut()).map_err(|_| SealError)?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(FORMAT);
    out.extend_from_slice(&master.id_bytes());
    wrap_into(&mut out, master, secret, version, &data_key)?;

    let nonce = random_nonce()?;
    out.extend_from_slice(&nonce);
    let mut body = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    body.extend_from_slice(plaintext);
    cipher(&data_key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(payload_aad(secret, version)),
            &mut *body,
        )
        .map_err(|_| SealError)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens an envelope made by [`seal`] for the same secret and version.
pub(crate) fn open(keys: &Keyring, secret: &str, version: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let data_key = unwrap(keys, secret, version, sealed)?;
    let nonce = nonce_at(sealed, PAYLOAD_NONCE_AT)?;
    let mut body = Zeroizing::new(sealed.get(CIPHERTEXT_AT..).ok_or(OpenError::Corrupt("truncated"))?.to_vec());
    let cipher = cipher(&data_key).map_err(|_| OpenError::Corrupt("bad data key"))?;
    let len = cipher
        .open_in_place(nonce, Aad::from(payload_aad(secret, version)), &mut body)
        .map_err(|_| OpenError::Corrupt("the payload failed authentication"))?
        .len();
    body.truncate(len);
    Ok(body)
}

/// The envelope with its data key re-wrapped under `new`; the payload nonce and ciphertext are
/// copied unchanged.
pub(crate) fn rewrap(
    keys: &Keyring,
    new: &MasterKey,
    secret: &str,
    version: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, RewrapError> {
    let data_key = unwrap(keys, secret, version, sealed).map_err(RewrapError::Open)?;
    let rest = sealed.get(PAYLOAD_NONCE_AT..).ok_or(RewrapError::Open(OpenError::Corrupt("truncated")))?;
    let mut out = Vec::with_capacity(sealed.len());
    out.extend_from_slice(FORMAT);
    out.extend_from_slice(&new.id_bytes());
    wrap_into(&mut out, new, secret, version, &data_key).map_err(RewrapError::Seal)?;
    out.extend_from_slice(rest);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RewrapError {
    Open(OpenError),
    Seal(SealError),
}

/// The master key id an envelope names, if it is well-formed enough to say.
pub(crate) fn key_id(sealed: &[u8]) -> Option<[u8; 4]> {
    sealed.get(ID_AT..WRAP_NONCE_AT)?.try_into().ok()
}

/// The payload ciphertext (what rotation must leave untouched).
#[cfg(test)]
pub(crate) fn payload_part(sealed: &[u8]) -> &[u8] {
    sealed.get(PAYLOAD_NONCE_AT..).unwrap_or_default()
}

fn wrap_into(
    out: &mut Vec<u8>,
    master: &MasterKey,
    secret: &str,
    version: u64,
    data_key: &[u8; KEY_LEN],
) -> Result<(), SealError> {
    let nonce = random_nonce()?;
    out.extend_from_slice(&nonce);
    let mut wrapped = Zeroizing::new(Vec::with_capacity(KEY_LEN + TAG_LEN));
    wrapped.extend_from_slice(data_key);
    cipher(master.bytes())?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(wrap_aad(master.id_bytes(), secret, version)),
            &mut *wrapped,
        )
        .map_err(|_| SealError)?;
    out.extend_from_slice(&wrapped);
    Ok(())
}

fn unwrap(keys: &Keyring, secret: &str, version: u64, sealed: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, OpenError> {
    if sealed.get(..ID_AT) != Some(FORMAT.as_slice()) {
        return Err(OpenError::Corrupt("unknown envelope format"));
    }
    if sealed.len() < OVERHEAD {
        return Err(OpenError::Corrupt("truncated"));
    }
    let id = key_id(sealed).ok_or(OpenError::Corrupt("truncated"))?;
    let master = keys.find(id).ok_or(OpenError::UnknownKey(id))?;
    let nonce = nonce_at(sealed, WRAP_NONCE_AT)?;
    let mut wrapped =
        Zeroizing::new(sealed.get(WRAPPED_AT..PAYLOAD_NONCE_AT).ok_or(OpenError::Corrupt("truncated"))?.to_vec());
    let cipher = cipher(master.bytes()).map_err(|_| OpenError::Corrupt("bad master key"))?;
    let key = cipher
        .open_in_place(nonce, Aad::from(wrap_aad(id, secret, version)), &mut wrapped)
        .map_err(|_| OpenError::Corrupt("the data key failed authentication"))?;
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    if key.len() != KEY_LEN {
        return Err(OpenError::Corrupt("bad data key length"));
    }
    data_key.copy_from_slice(key);
    Ok(data_key)
}

fn cipher(key: &[u8; KEY_LEN]) -> Result<LessSafeKey, SealError> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError)?))
}

fn random_nonce() -> Result<[u8; NONCE_LEN], SealError> {
    let mut n = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut n).map_err(|_| SealError)?;
    Ok(n)
}

fn nonce_at(sealed: &[u8], at: usize) -> Result<Nonce, OpenError> {
    let bytes = sealed.get(at..at + NONCE_LEN).ok_or(OpenError::Corrupt("truncated"))?;
    Nonce::try_assume_unique_for_key(bytes).map_err(|_| OpenError::Corrupt("truncated"))
}

fn payload_aad(secret: &str, version: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(32 + secret.len());
    a.extend_from_slice(b"moat-secrets payload v1\0");
    a.extend_from_slice(secret.as_bytes());
    a.push(0);
    a.extend_from_slice(&version.to_be_bytes());
    a
}

fn wrap_aad(key_id: [u8; 4], secret: &str, version: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(40 + secret.len());
    a.extend_from_slice(b"moat-secrets data key v1\0");
    a.extend_from_slice(FORMAT);
    a.extend_from_slice(&key_id);
    a.extend_from_slice(secret.as_bytes());
    a.push(0);
    a.extend_from_slice(&version.to_be_bytes());
    a
}

#[cfg(test)]
#[expect(clippy::expect_used, clippy::indexing_slicing, reason = "tests name the failing input")]
mod tests {
    use super::*;

    fn ring(k: MasterKey) -> Keyring {
        Keyring { current: k }
    }

    #[test]
    fn round_trip_and_layout() {
        let keys = ring(MasterKey::from_bytes([1; 32]));
        let sealed = seal(&keys.current, "db", 3, b"hunter2").expect("seal");
        assert_eq!(sealed.len(), OVERHEAD + 7);
        assert_eq!(key_id(&sealed), Some(keys.current.id_bytes()));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "plaintext must not appear in the envelope");
        assert_eq!(open(&keys, "db", 3, &sealed).expect("open").as_slice(), b"hunter2");
        let empty = seal(&keys.current, "db", 1, b"").expect("seal empty");
        assert!(open(&keys, "db", 1, &empty).expect("open empty").is_empty());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let keys = ring(MasterKey::from_bytes([2; 32]));
        let sealed = seal(&keys.current, "db", 1, b"payload").expect("seal");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(open(&keys, "db", 1, &t).is_err(), "byte {i}");
        }
        assert!(open(&keys, "db", 1, &sealed[..sealed.len() - 1]).is_err());
    }

    #[test]
    fn envelopes_are_bound_to_their_secret_and_version() {
        let keys = ring(MasterKey::from_bytes([3; 32]));
        let sealed = seal(&keys.current, "db", 1, b"one").expect("seal");
        assert_eq!(
            open(&keys, "db", 2, &sealed).expect_err("other version"),
            OpenError::Corrupt("the data key failed authentication")
        );
        assert!(open(&keys, "dc", 1, &sealed).is_err());
        let other = ring(MasterKey::from_bytes([4; 32]));
        assert_eq!(
            open(&other, "db", 1, &sealed).expect_err("other key"),
            OpenError::UnknownKey(keys.current.id_bytes())
        );
    }

    #[test]
    fn rewrap_changes_only_the_wrapped_key() {
        let old = ring(MasterKey::from_bytes([5; 32]));
        let new = MasterKey::from_bytes([6; 32]);
        let sealed = seal(&old.current, "db", 9, b"value").expect("seal");
        let re = rewrap(&old, &new, "db", 9, &sealed).expect("rewrap");
        assert_eq!(payload_part(&re), payload_part(&sealed));
        assert_ne!(re[..PAYLOAD_NONCE_AT], sealed[..PAYLOAD_NONCE_AT]);
        assert!(open(&old, "db", 9, &re).is_err());
        assert_eq!(open(&ring(new), "db", 9, &re).expect("open").as_slice(), b"value");
    }
}
