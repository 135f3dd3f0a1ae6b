//! The metadata server: one per workload identity, so an instance can only ever obtain tokens
//! for its own service account (there is no other account in its tree to ask for). It speaks
//! the GCE/Cloud Run protocol that unmodified google-auth, gcloud and google-auth-library
//! clients use (spec/cloudrun.md §3, spec/clients.md §1 and §6), quirks included.

mod guards;
mod responses;
mod routes;
mod stamp_io;
mod tree;

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use moat_crypto::access::TokenScope;
use moat_crypto::{Account, ComputeEngineInfo};
use moat_policy::Project;
use tokio::net::TcpListener;

use crate::ServeError;
use crate::identity::IdentityState;
use responses::{Refusal, Reply};
use routes::Options;

/// The scope a Cloud Run instance's tokens carry unless a client asks for others.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Request bodies are never used (bound tokens are not supported) but are read, so their size
/// is bounded.
const MAX_BODY: usize = 64 * 1024;

/// Which platform's metadata the server imitates where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// `format=full` ID tokens carry no `google` claim (spec/cloudrun.md §3.5).
    CloudRun,
    /// `format=full` ID tokens carry `google.compute_engine` (project, zone, instance).
    ComputeEngine,
}

/// Everything one workload instance's metadata server knows.
#[derive(Debug, Clone)]
pub struct Workload {
    pub project_id: String,
    pub project_number: String,
    pub region: String,
    /// The zone name, e.g. `us-central1-1` (Cloud Run's form).
    pub zone: String,
    pub instance_id: String,
    pub instance_name: String,
    /// The runtime service account: the only account this server ever issues tokens for.
    pub account: Account,
    /// Scopes of access tokens when the client names none.
    pub scopes: Vec<String>,
    pub platform: Platform,
}

impl Workload {
    /// A Cloud Run instance of `project` running as the service account `email`, with a fresh
    /// opaque instance id.
    pub fn cloud_run(project: &Project, email: &str) -> Self {
        let instance_id = opaque_instance_id();
        Self {
            project_id: project.id.clone(),
            project_number: project.number.clone(),
            region: project.region.clone(),
            zone: format!("{}-1", project.region),
            instance_name: format!("moat-{}", instance_id.get(..12).unwrap_or(&instance_id)),
            instance_id,
            account: Account::service_account(email),
            scopes: vec![CLOUD_PLATFORM_SCOPE.to_owned()],
            platform: Platform::CloudRun,
        }
    }

    pub fn email(&self) -> &str {
        &self.account.email
    }

    fn compute_engine_claims(&self) -> Option<ComputeEngineInfo> {
        (self.platform == Platform::ComputeEngine).then(|| ComputeEngineInfo {
            project_id: self.project_id.clone(),
            project_number: self.project_number.clone(),
            zone: self.zone.clone(),
            instance_id: self.instance_id.clone(),
            instance_name: self.instance_name.clone(),
        })
    }
}

/// 64 hex digits. Opaque, like Cloud Run's; not a secret, so std's randomly seeded hasher is
/// enough.
fn opaque_instance_id() -> String {
    let state = std::collections::hash_map::RandomState::new();
    (0..4u8)
        .map(|i| {
            let mut h = state.build_hasher();
            h.write_u8(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// One running metadata server's shared, read-only state.
#[derive(Debug)]
pub(crate) struct Server {
    workload: Workload,
    tree: tree::Node,
    identity: Arc<IdentityState>,
    /// This server's partition of the shared access-token store: its workload's `/token`
    /// calls evict its own oldest tokens, and another server's only when the whole store is
    /// full and that server holds more.
    token_scope: TokenScope,
    /// The listener's address: its port and IP are accepted in `Host`.
    local: SocketAddr,
}

/// Serves `workload`'s metadata on `listener` until the task is dropped.
pub async fn serve_metadata(
    listener: TcpListener,
    workload: Workload,
    identity: Arc<IdentityState>,
) -> Result<(), ServeError> {
    serve_metadata_until(listener, workload, identity, std::future::pending()).await
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
///
/// The listener must be bound to a loopback or link-local address: a metadata server hands out
/// credentials to whoever can connect.
pub async fn serve_metadata_until(
    listener: TcpListener,
    workload: Workload,
    identity: Arc<IdentityState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let local = crate::local_only(&listener)?;
    let app = router(workload, identity, local);
    // hyper's own parse-error responses are stamped on the way out (stamp_io.rs).
    axum::serve(stamp_io::StampingListener(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Io)
}

fn router(workload: Workload, identity: Arc<IdentityState>, local: SocketAddr) -> Router {
    let tree = tree::build(&workload);
    let token_scope = identity.access_token_scope();
    let server = Arc::new(Server { workload, tree, identity, token_scope, local });
    Router::new().fallback(handle).with_state(server).layer(axum::middleware::map_response(responses::stamp))
}

async fn handle(State(server): State<Arc<Server>>, request: Request) -> Response {
    match pipeline(&server, request).await {
        Ok(reply) => reply.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Every metadata request, top to bottom.
async fn pipeline(server: &Server, request: Request) -> Result<Reply, Refusal> {
    let (parts, body) = request.into_parts();
    // Host first: a DNS-rebinding page must learn nothing, not even which paths exist.
    guards::host(&parts.headers, &parts.uri, server.local)?;
    // A relayed request is SSRF whatever it asks for, the ping included.
    guards::not_forwarded(&parts.headers)?;
    // The flavor header before the path, so an unknown path without it is 403 like GCE; only
    // the ping at `/` is exempt.
    let target = routes::resolve(&server.tree, parts.uri.path());
    let exempt = matches!(&target, Ok(t) if !t.needs_flavor());
    if !exempt {
        guards::flavor(&parts.headers)?;
    }
    let target = target?;
    // POST only on the token endpoints.
    target.allows(&parts.method)?;
    let options = Options::parse(&parts.uri)?;
    // Bounded even though unused, so a client cannot make the server buffer without limit.
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| Refusal::BodyTooLarge { limit: MAX_BODY })?;
    routes::answer(server, &target, &options)
}
