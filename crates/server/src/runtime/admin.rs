//! The admin listener: `GET /healthz`, `GET /status` (every service's state as JSON, what
//! the status table prints) and `GET /metrics` (Prometheus text). The dashboard comes with its
//! issue.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
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
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(admin)
}

async fn status(State(admin): State<Arc<Admin>>) -> Response {
    axum::Json(StatusBody { project: &admin.project, listeners: &admin.listeners, services: admin.board.snapshot() })
        .into_response()
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    match super::metrics::render(&admin.board) {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder is installed in this process\n").into_response()
        }
    }
}
