//! The Secret Manager v1 REST API (spec/clients.md §2) over the project's secret store, for
//! unmodified google-cloud-secret-manager (REST transport), gcloud and `moat secrets`.
//!
//! Key decision: this module only translates. Which method a path calls (`route`), who the
//! caller is (`auth`) and what the wire looks like (`wire`, `reply`) live here; whether the
//! caller may act, and the audit record of what it did, live in the store
//! ([`moat_secrets::Secrets`]), so injection and the API can never disagree. Nothing here logs
//! a token or a payload.

mod admin;
mod auth;
mod ops;
mod reply;
mod route;
mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{Response, StatusCode};
use moat_crypto::Verifier;
use moat_secrets::Secrets;
use tokio::net::TcpListener;

use crate::identity::IdentityState;
use auth::Authenticator;
use reply::ApiError;
use route::NoRoute;

pub use admin::{ADMIN_PREFIX, ROTATE_MASTER_KEY_PATH};
pub use auth::API_AUDIENCE;

/// The largest request body read. A payload is at most 64 KiB, which base64 and JSON make
/// about 88 KiB; policies are smaller still.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
struct Api {
    secrets: Secrets,
    auth: Authenticator,
}

/// Serves the API on `listener` until `until` resolves, then lets the requests in flight
/// finish. Callers authenticate with an access token from one of moat's metadata servers, an
/// ID token, or the admin credential.
pub async fn serve_until(
    listener: TcpListener,
    secrets: Secrets,
    identity: Arc<IdentityState>,
    verifier: Arc<Verifier>,
    until: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let own_url = format!("http://{}", listener.local_addr()?);
    let auth = Authenticator::new(secrets.clone(), identity, verifier, &own_url);
    let app = Router::new().fallback(handle).with_state(Arc::new(Api { secrets, auth }));
    axum::serve(listener, app).with_graceful_shutdown(until).await
}

/// One request, top to bottom.
async fn handle(State(api): State<Arc<Api>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // moat's own methods (admin credential only) sit outside Google's `/v1/` surface.
    if parts.uri.path().starts_with(ADMIN_PREFIX) {
        return admin::handle(&api.secrets, &api.auth, &parts.method, parts.uri.path(), &parts.headers).await;
    }
    // Which method: a path that names none has nothing to protect, so it is answered first.
    let route = match route::find(&parts.method, parts.uri.path()) {
        Ok(r) => r,
        Err(e) => return reply::error(&no_route(&e, &parts.method, parts.uri.path()), None),
    };
    let rpc = Some(route.rpc());
    // Who: every method needs a credential, checked before anything about the resource is said.
    let caller = match api.auth.authenticate(&parts.headers) {
        Ok(c) => c,
        Err(e) => return reply::error(&e, rpc),
    };
    // Whose: one store serves one project.
    if let Err(e) = ops::own_project(&api.secrets, route.parent()) {
        return reply::error(&e, rpc);
    }
    // What: the body, bounded before it is buffered.
    let body = match read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(e) => return reply::error(&e, rpc),
    };
    // The store decides (IAM), acts and audits.
    let query = wire::Query::parse(parts.uri.query());
    let method = route.rpc();
    let caller_name = caller.to_string();
    let outcome = ops::call(&api.secrets, ops::Call { route, caller, query, body }).await;
    let (resp, status) = match outcome {
        Ok(answer) => (reply::ok(&answer.body, answer.payload), 200),
        Err(e) => (reply::error(&e, rpc), e.code),
    };
    tracing::debug!(method, caller = %caller_name, status, "secret manager request");
    resp
}

fn no_route(e: &NoRoute, method: &axum::http::Method, path: &str) -> ApiError {
    match e {
        NoRoute::NotFound => ApiError::not_found(format!(
            "`{method} {path}` is not a Secret Manager v1 method: moat serves /v1/projects/PROJECT/secrets/..."
        )),
        NoRoute::Unimplemented(verb) => {
            ApiError::new(501, "UNIMPLEMENTED", format!("moat's Secret Manager does not implement `:{verb}`"))
        }
        NoRoute::BadVersion(msg) => ApiError::invalid(msg.clone()),
    }
}

async fn read_body(headers: &axum::http::HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
            "INVALID_ARGUMENT",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes: a secret payload is at most 64 KiB"),
        )
    };
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            too_large()
        } else {
            ApiError::invalid("the request body could not be read: send it again")
        }
    })
}
