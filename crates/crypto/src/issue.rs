//! Google-shaped ID tokens (spec/cloudrun.md §3.5), signed with the key ring's current key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::account::Account;
use crate::keys::{KeyRing, MAX_TOKEN_LIFETIME_SECS};

/// The issuer of every token moat mints: Google's, so unmodified clients and verifiers accept
/// the shape (only the keys differ).
pub const ISSUER: &str = "https://accounts.google.com";
/// Longest audience accepted (URLs of services and custom audiences are far shorter).
pub const MAX_AUDIENCE_BYTES: usize = 2048;

/// The metadata server's `format` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFormat {
    #[default]
    Standard,
    Full,
}

/// What GCE adds under `google.compute_engine` with `format=full`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeEngineInfo {
    pub project_id: String,
    pub project_number: String,
    pub zone: String,
    pub instance_id: String,
    pub instance_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("the audience is empty: pass the URL of the service to call, or a custom audience")]
    EmptyAudience,
    #[error("the audience is longer than {MAX_AUDIENCE_BYTES} bytes: pass the service URL")]
    AudienceTooLong,
    #[error("the audience contains control characters: pass the service URL")]
    BadAudience,
    #[error("signing the token failed: check the signing key")]
    Signing,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'static str,
}

#[derive(Serialize)]
struct Payload<'a> {
    aud: &'a str,
    azp: &'a str,
    email: &'a str,
    email_verified: bool,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    google: Option<Google<'a>>,
    iat: u64,
    iss: &'static str,
    sub: &'a str,
}

#[derive(Serialize)]
struct Google<'a> {
    compute_engine: ComputeEngine<'a>,
}

#[derive(Serialize)]
struct ComputeEngine<'a> {
    instance_id: &'a str,
    instance_name: &'a str,
    project_id: &'a str,
    project_number: ProjectNumber<'a>,
    zone: &'a str,
}

/// GCE sends the project number as a JSON number.
#[derive(Serialize)]
#[serde(untagged)]
enum ProjectNumber<'a> {
    Number(u64),
    Text(&'a str),
}

/// Mints an ID token for `account`, valid for an hour from `now`.
pub fn sign_id_token(
    keys: &KeyRing,
    account: &Account,
    audience: &str,
    now: u64,
    format: TokenFormat,
    gce: Option<&ComputeEngineInfo>,
) -> Result<String, IssueError> {
    if audience.is_empty() {
        return Err(IssueError::EmptyAudience);
    }
    if audience.len() > MAX_AUDIENCE_BYTES {
        return Err(IssueError::AudienceTooLong);
    }
    if audience.chars().any(char::is_control) {
        return Err(IssueError::BadAudience);
    }
    let id = account.unique_id();
    let google = match (format, gce) {
        (TokenFormat::Full, Some(g)) => Some(Google {
            compute_engine: ComputeEngine {
                instance_id: &g.instance_id,
                instance_name: &g.instance_name,
                project_id: &g.project_id,
                project_number: g
                    .project_number
                    .parse()
                    .map_or(ProjectNumber::Text(&g.project_number), ProjectNumber::Number),
                zone: &g.zone,
            },
        }),
        _ => None,
    };
    let payload = Payload {
        aud: audience,
        azp: &id,
        email: &account.email,
        email_verified: true,
        exp: now.saturating_add(MAX_TOKEN_LIFETIME_SECS),
        google,
        iat: now,
        iss: ISSUER,
        sub: &id,
    };
    let header = Header { alg: "RS256", kid: keys.current_kid(), typ: "JWT" };
    let header = serde_json::to_vec(&header).map_err(|_| IssueError::Signing)?;
    let payload = serde_json::to_vec(&payload).map_err(|_| IssueError::Signing)?;
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let sig = keys.sign_rs256(input.as_bytes()).ok_or(IssueError::Signing)?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}
