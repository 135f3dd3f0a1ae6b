//! moat-secrets: the secret store behind moat's Secret Manager API and secret injection.
//!
//! - `store`: one redb file; every mutation committed durably before it returns.
//! - `seal`: each version's payload sealed with AES-256-GCM under its own data key; data keys
//!   wrapped by the master key (`master`). No plaintext payload reaches the disk.
//! - `audit`: one JSON line per access and mutation (who, what, which version, result), never
//!   the value.
//! - [`Secrets`]: the facade the API and the runtime call: authorization through
//!   `moat_policy::secret_access` (the same function for every caller), then the store, then the
//!   audit record.
//!
//! Semantics follow Secret Manager (spec/cloudrun.md §5.4): versions numbered from 1, states
//! ENABLED / DISABLED / DESTROYED (destroy wipes the payload and is final), `latest` = the newest
//! version whatever its state, payloads up to 64 KiB with CRC32C.

mod api;
pub mod audit;
mod error;
pub mod master;
mod names;
mod open;
mod ops;
mod seal;
pub mod store;

pub use api::{Caller, Page, Payload, SecretInfo, Secrets, Selector, VersionInfo, VersionState};
pub use error::SecretError;
pub use master::{MasterKey, MasterKeyError};
pub use names::{SecretName, parse_secret_name, parse_version_name, valid_secret_id};
pub use open::ADMIN_TOKEN_FILE;

/// The largest payload Secret Manager accepts.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests;
