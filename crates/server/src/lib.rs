//! moat-server is the only crate that does network I/O: the identity listener (JWKS, x509
//! certs, OpenID discovery) and per-workload metadata servers today; the front door, secret API
//! and egress proxy with their issues.
//!
//! Key decision: there is one [`IdentityState`] (keys, access tokens) per project and one
//! metadata server per workload identity. A workload's metadata server is built around its own
//! service account and has no route to any other, so "one workload cannot mint another's
//! tokens" holds by construction rather than by a check.

pub mod egress;
pub mod frontdoor;
pub mod identity;
pub mod metadata;
pub mod runtime;
pub mod secrets;
pub mod trust;

use std::net::SocketAddr;

pub use identity::{IdentityState, serve_identity, serve_identity_until, spawn_rotation};
pub use metadata::{Platform, Workload, serve_metadata, serve_metadata_until};

/// Why a listener stopped or never started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to serve metadata on `{0}`: bind a loopback address such as 127.0.0.1")]
    NotLocal(SocketAddr),
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The listener's address, when it is one only this machine can reach (loopback, or the
/// link-local 169.254.0.0/16 where metadata servers live).
fn local_only(listener: &tokio::net::TcpListener) -> Result<SocketAddr, ServeError> {
    let addr = listener.local_addr()?;
    let local = match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => v6.is_loopback(),
    };
    if local { Ok(addr) } else { Err(ServeError::NotLocal(addr)) }
}
