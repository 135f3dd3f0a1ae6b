//! What the identity subcommands (`serve-identity`, `token`, `keys`) share: which accounts a
//! project knows, where its state lives, and its signing keys.

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use moat_crypto::{Account, KeyRing};
use moat_policy::{Principal, Project};

/// Why an identity subcommand cannot run. Every variant exits with status 2.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum IdentityError {
    #[error("`{given}` is not a principal")]
    #[diagnostic(help("use `serviceAccount:EMAIL` (or `user:EMAIL` for `moat token`)"))]
    BadPrincipal { given: String },
    #[error("a metadata server serves a service account, not `{given}`")]
    #[diagnostic(help("use `--as serviceAccount:EMAIL`; `moat token --as user:EMAIL` prints a user's token"))]
    NotServiceAccount { given: String },
    #[error("project `{project}` has no service account `{email}`")]
    #[diagnostic(help(
        "use one declared under `service_accounts:` in moat.yaml, a service's runtime service account (`serviceAccountName`), or the default compute service account `{default}`"
    ))]
    UnknownServiceAccount { project: String, email: String, default: String },
    /// The key store's own message names the path and the fix.
    #[error("{reason}")]
    #[diagnostic(help("the signing keys live in `{dir}`; `--state DIR` uses DIR/keys instead"))]
    Keys { dir: String, reason: String },
    #[error("`--listen {addr}` is not a loopback address")]
    #[diagnostic(help(
        "a metadata server hands out credentials to whoever connects: use 127.0.0.1:PORT (port 0 picks a free one)"
    ))]
    NotLoopback { addr: std::net::SocketAddr },
    #[error("`--audience` is empty")]
    #[diagnostic(help("pass the URL of the service the token is for"))]
    EmptyAudience,
    #[error("{0}")]
    Usage(String),
}

/// `--state`, or `PROJECT/.moat`.
pub fn state_dir(project_dir: &Path, state: Option<&Path>) -> PathBuf {
    state.map_or_else(|| project_dir.join(".moat"), Path::to_path_buf)
}

/// `STATE/keys`, where the project's signing keys live.
pub fn keys_dir(state: &Path) -> PathBuf {
    state.join("keys")
}

pub fn keys_error(dir: &Path, e: &moat_crypto::KeyError) -> IdentityError {
    IdentityError::Keys { dir: dir.display().to_string(), reason: e.to_string() }
}

/// The project's signing keys under `STATE/keys`, created on first use.
pub fn load_keys(state: &Path, now: u64) -> Result<KeyRing, IdentityError> {
    let dir = keys_dir(state);
    KeyRing::load_or_create(&dir, now).map_err(|e| keys_error(&dir, &e))
}

pub fn parse_principal(given: &str) -> Result<Principal, IdentityError> {
    match given.parse::<Principal>() {
        Ok(p @ (Principal::User(_) | Principal::ServiceAccount(_))) => Ok(p),
        _ => Err(IdentityError::BadPrincipal { given: given.to_owned() }),
    }
}

/// The account `principal` names, provided the project knows it: a service account it declares,
/// a service's runtime service account, or its default compute service account. Users are
/// whoever runs moat, as with `gcloud auth print-identity-token`, so any user is accepted.
pub fn known_account(project: &Project, principal: &Principal) -> Result<Account, IdentityError> {
    let email = match principal {
        Principal::ServiceAccount(e) => e,
        Principal::User(_) | Principal::Anonymous | Principal::Federated(_) => {
            return Account::from_principal(principal)
                .ok_or_else(|| IdentityError::BadPrincipal { given: principal.to_string() });
        }
    };
    let default = project.default_compute_sa();
    let known = project.service_accounts.iter().any(|sa| sa.email.eq_ignore_ascii_case(email))
        || project.services.values().any(|s| s.service_account.value.eq_ignore_ascii_case(email))
        || default.eq_ignore_ascii_case(email);
    if known {
        Ok(Account::service_account(email))
    } else {
        Err(IdentityError::UnknownServiceAccount { project: project.id.clone(), email: email.clone(), default })
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
