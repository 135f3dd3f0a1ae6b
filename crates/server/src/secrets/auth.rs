//! Who is calling: the `Authorization: Bearer` credential, which is one of
//! - the local admin credential (`STATE/secrets/admin.token`, the CLI's) → [`Caller::Admin`];
//! - an opaque access token minted by one of moat's metadata servers, with the
//!   `cloud-platform` scope → the token's account;
//! - an ID token signed with the project's keys for `https://secretmanager.googleapis.com/`
//!   or this listener's own URL → the token's verified email.
//!
//! Every request must carry one (Secret Manager has no anonymous access). Messages never
//! include the token.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use moat_crypto::Verifier;
use moat_crypto::access::ACCESS_TOKEN_PREFIX;
use moat_secrets::{Caller, Secrets};

use super::reply::ApiError;
use crate::identity::IdentityState;
use crate::metadata::CLOUD_PLATFORM_SCOPE;

/// The audience Google's own APIs accept in self-signed JWTs; moat accepts it in ID tokens.
pub const API_AUDIENCE: &str = "https://secretmanager.googleapis.com/";

const MISSING: &str = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.";
const INVALID: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.";
const SCOPES: &str = "Request had insufficient authentication scopes.";

/// What authentication needs, built once per listener.
#[derive(Debug)]
pub(crate) struct Authenticator {
    pub secrets: Secrets,
    pub identity: std::sync::Arc<IdentityState>,
    pub verifier: std::sync::Arc<Verifier>,
    /// Acceptable ID-token audiences: the API's name and this listener's URL, each with and
    /// without the trailing slash.
    pub audiences: Vec<String>,
}

impl Authenticator {
    pub(crate) fn new(
        secrets: Secrets,
        identity: std::sync::Arc<IdentityState>,
        verifier: std::sync::Arc<Verifier>,
        own_url: &str,
    ) -> Self {
        let mut audiences = Vec::with_capacity(4);
        for base in [API_AUDIENCE.trim_end_matches('/'), own_url.trim_end_matches('/')] {
            audiences.push(base.to_owned());
            audiences.push(format!("{base}/"));
        }
        Self { secrets, identity, verifier, audiences }
    }

    /// The caller behind the request's credential, or the 401/403 that refuses it.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = bearer(headers)?;
        if self.secrets.is_admin_token(token) {
            return Ok(Caller::Admin);
        }
        let now = self.identity.now();
        if token.starts_with(ACCESS_TOKEN_PREFIX) {
            let Some(grant) = self.identity.access_tokens().lookup(token, now) else {
                return Err(unauthenticated(
                    "the access token is unknown or has expired: get a new one from the metadata server",
                    "ACCESS_TOKEN_EXPIRED",
                ));
            };
            if !grant.scopes.iter().any(|s| s == CLOUD_PLATFORM_SCOPE) {
                return Err(
                    ApiError::new(403, "PERMISSION_DENIED", SCOPES).with_reason("ACCESS_TOKEN_SCOPE_INSUFFICIENT")
                );
            }
            return Ok(Caller::Principal(grant.account.principal()));
        }
        let claims = self
            .verifier
            .verify(token, &self.audiences, now)
            .map_err(|e| unauthenticated(&e.to_string(), "ACCESS_TOKEN_TYPE_UNSUPPORTED"))?;
        match claims.principal() {
            Some(p) => Ok(Caller::Principal(p)),
            None => Err(unauthenticated(
                "the ID token carries no verified email: request one with the email claim",
                "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            )),
        }
    }
}

fn unauthenticated(why: &str, reason: &'static str) -> ApiError {
    ApiError::new(401, "UNAUTHENTICATED", format!("{INVALID} ({why})")).with_reason(reason)
}

/// The token of the one `Authorization: Bearer TOKEN` header. Another scheme (`Basic`) is no
/// credential at all; two headers or an empty token are a bad one.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let missing = || ApiError::new(401, "UNAUTHENTICATED", MISSING).with_reason("CREDENTIALS_MISSING");
    let Some(value) = values.next() else {
        return Err(missing());
    };
    if values.next().is_some() {
        return Err(unauthenticated("the request has more than one `Authorization` header", "CREDENTIALS_MISSING"));
    }
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("the `Authorization` header is not ASCII", "CREDENTIALS_MISSING"))?;
    let value = value.trim();
    let (scheme, token) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(unauthenticated("the `Authorization` header is not `Bearer TOKEN`", "CREDENTIALS_MISSING"));
    }
    Ok(token)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_bearer_header() {
        assert_eq!(bearer(&headers(&["Bearer abc"])).unwrap(), "abc");
        assert_eq!(bearer(&headers(&["bearer   abc  "])).unwrap(), "abc");
        let missing = bearer(&headers(&[])).unwrap_err();
        assert_eq!((missing.code, missing.message.as_str()), (401, MISSING));
        assert_eq!(bearer(&headers(&["Basic dXNlcjpwdw=="])).unwrap_err().message, MISSING);
        for bad in [&["Bearer"][..], &["Bearer a b"], &["Bearer a", "Bearer b"]] {
            let e = bearer(&headers(bad)).unwrap_err();
            assert_eq!(e.code, 401, "{bad:?}");
            assert!(e.message.starts_with(INVALID), "{bad:?}: {}", e.message);
        }
    }
}
