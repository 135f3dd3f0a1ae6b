//! The one place an outcome becomes an HTTP response: Google's error envelope
//! `{"error":{"code","message","status"[,"details"]}}` with the HTTP status of the
//! google.rpc code, and the JSON of a success.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use axum::http::{Response, StatusCode};
use moat_secrets::SecretError;
use serde_json::{Value, json};

const JSON: &str = "application/json; charset=UTF-8";
/// Google's challenge on a 401 from its APIs.
const CHALLENGE: &str = r#"Bearer realm="https://accounts.google.com/""#;
const SERVICE: &str = "secretmanager.googleapis.com";

/// A refused request, in Google's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub status: &'static str,
    pub message: String,
    /// `google.rpc.ErrorInfo.reason`, for the refusals Google explains with one (credentials).
    pub reason: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(code: u16, status: &'static str, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into(), reason: None }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "INTERNAL", message)
    }

    pub(crate) fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }
}

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> Self {
        Self::new(e.http_status(), e.status(), e.to_string())
    }
}

/// The error envelope. `rpc` names the method in the details (`AccessSecretVersion`).
pub(crate) fn error(e: &ApiError, rpc: Option<&str>) -> Response<Body> {
    let mut err = json!({"code": e.code, "message": e.message, "status": e.status});
    if let (Some(reason), Some(obj)) = (e.reason, err.as_object_mut()) {
        let mut metadata = json!({"service": SERVICE});
        if let (Some(rpc), Some(m)) = (rpc, metadata.as_object_mut()) {
            m.insert("method".into(), format!("google.cloud.secretmanager.v1.SecretManagerService.{rpc}").into());
        }
        obj.insert(
            "details".into(),
            json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": metadata,
            }]),
        );
    }
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = respond(code, &json!({ "error": err }), "private");
    if code == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    }
    resp
}

/// A success. Payloads are never cached by anything in between.
pub(crate) fn ok(body: &Value, payload: bool) -> Response<Body> {
    respond(StatusCode::OK, body, if payload { "no-store" } else { "private" })
}

fn respond(code: StatusCode, body: &Value, cache: &'static str) -> Response<Body> {
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = code;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    async fn body(resp: Response<Body>) -> Value {
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn store_errors_keep_their_status_and_message() {
        let e = ApiError::from(SecretError::FailedPrecondition(
            "Secret Version [projects/1/secrets/s/versions/2] is in DISABLED state.".into(),
        ));
        let resp = error(&e, Some("AccessSecretVersion"));
        assert_eq!(resp.status(), 400);
        assert!(resp.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(
            body(resp).await,
            json!({"error": {"code": 400, "status": "FAILED_PRECONDITION",
                "message": "Secret Version [projects/1/secrets/s/versions/2] is in DISABLED state."}})
        );
    }

    #[tokio::test]
    async fn a_401_challenges_and_explains_with_error_info() {
        let e = ApiError::new(401, "UNAUTHENTICATED", "no").with_reason("CREDENTIALS_MISSING");
        let resp = error(&e, Some("GetSecret"));
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], CHALLENGE);
        let v = body(resp).await;
        assert_eq!(v["error"]["details"][0]["reason"], "CREDENTIALS_MISSING");
        assert_eq!(
            v["error"]["details"][0]["metadata"]["method"],
            "google.cloud.secretmanager.v1.SecretManagerService.GetSecret"
        );
    }
}
