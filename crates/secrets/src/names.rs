//! Resource names: `projects/{project}/secrets/{secret}[/versions/{version}]` and their
//! regional twins `projects/{p}/locations/{l}/secrets/...`.
//!
//! PUBLIC API CONTRACT (fixed by the lead).

use crate::api::Selector;
use crate::error::SecretError;

/// A parsed secret name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretName {
    /// As written: a project id or number.
    pub project: String,
    pub location: Option<String>,
    pub secret: String,
}

/// Parses `projects/P/secrets/S` or `projects/P/locations/L/secrets/S`. Secret ids are
/// `[A-Za-z0-9_-]{1,255}`.
pub fn parse_secret_name(name: &str) -> Result<SecretName, SecretError> {
    let _ = name;
    Err(SecretError::InvalidArgument("not built yet".into()))
}

/// Parses `.../secrets/S/versions/V` (V = `latest` or a number).
pub fn parse_version_name(name: &str) -> Result<(SecretName, Selector), SecretError> {
    let _ = name;
    Err(SecretError::InvalidArgument("not built yet".into()))
}

/// Whether `id` is a valid secret id.
pub fn valid_secret_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
