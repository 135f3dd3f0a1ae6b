//! The admin listener: `GET /healthz` and `GET /status` (every service's state as JSON, what
//! the status table prints). Metrics and the dashboard come with their issue.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::status::{Board, ServiceStatus};

#[derive(Debug, Clone, Serialize)]
pub struct ListenerInfo {
    /// `internet`, `vpc:P/N`, `google:PRODUCT@P`, `service:NAME`, `admin`, `identity`.
    pub origin: String,
    pub addr: SocketAddr,
}

#[derive(Debug)]
pub(super) struct Admin {
    pub project: String,
    pub board: Board,
    pub listeners: Vec<ListenerInfo>,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    project: &'a str,
    listeners: &'a [ListenerInfo],
    services: Vec<ServiceStatus>,
}

pub(super) fn router(admin: Arc<Admin>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/status", get(status)).with_state(admin)
}

async fn status(State(admin): State<Arc<Admin>>) -> Response {
    axum::Json(StatusBody { project: &admin.project, listeners: &admin.listeners, services: admin.board.snapshot() })
        .into_response()
}
