//! moat's own administration of the store, beside the Google surface: paths under `/moat/v1/`,
//! for the admin credential only. Not part of Secret Manager: no Google client sends these.
//!
//! - `POST /moat/v1/masterKey:rotate`: [`Secrets::rotate_master_key_file`] in the process that
//!   holds the store (redb lets one process open it), for `moat secrets rotate-master-key`.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response};
use moat_secrets::{Caller, Secrets};
use serde_json::json;

use super::auth::Authenticator;
use super::ops::blocking;
use super::reply::{self, ApiError};

/// Where moat's own methods live.
pub const ADMIN_PREFIX: &str = "/moat/v1/";
/// Rotates the master key file; answers `{"previousMasterKeyId", "masterKeyId",
/// "versionsRewrapped"}` (key ids, never keys).
pub const ROTATE_MASTER_KEY_PATH: &str = "/moat/v1/masterKey:rotate";

/// One request under [`ADMIN_PREFIX`], top to bottom.
pub(crate) async fn handle(
    secrets: &Secrets,
    auth: &Authenticator,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    // Which method: only one exists, and an unknown path says nothing about credentials.
    if path != ROTATE_MASTER_KEY_PATH || method != Method::POST {
        return reply::error(
            &ApiError::not_found(format!(
                "`{method} {path}` is not a moat method: moat serves `POST {ROTATE_MASTER_KEY_PATH}`"
            )),
            None,
        );
    }
    // Who: the admin credential, and nothing else (IAM has no permission for this).
    match auth.authenticate(headers) {
        Ok(Caller::Admin) => {}
        Ok(other) => {
            return reply::error(
                &ApiError::new(
                    403,
                    "PERMISSION_DENIED",
                    format!("only moat's admin credential may rotate the master key, not {other}"),
                ),
                None,
            );
        }
        Err(e) => return reply::error(&e, None),
    }
    // The store re-wraps and audits; the key file protocol is crash-safe (docs/SECRETS.md).
    let previous = secrets.master_key_id();
    let store = secrets.clone();
    match blocking(move || store.rotate_master_key_file()).await {
        Ok(n) => {
            let id = secrets.master_key_id();
            tracing::info!(master_key_id = %id, versions = n, "master key rotated");
            reply::ok(&json!({"previousMasterKeyId": previous, "masterKeyId": id, "versionsRewrapped": n}), false)
        }
        Err(e) => reply::error(&e, None),
    }
}
