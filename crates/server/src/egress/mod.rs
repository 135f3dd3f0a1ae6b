//! The egress proxy: what a workload's `HTTP_PROXY` and `HTTPS_PROXY` point at. It takes
//! absolute-form HTTP/1.1 requests and CONNECT tunnels, decides each outbound connection with
//! `moat_policy::egress::decide` (the function `explain` runs), and forwards what is allowed:
//! to a moat service through the front door, to the caller's metadata server, or to the
//! destination (or its local stand-in from `egress.hosts`). DESIGN "Egress", spec/cloudrun.md §6.
//!
//! Key decision: as with the front door, the caller comes only from the listener a request
//! arrived on. The runtime binds one listener per service (and can bind one per instance, in
//! the instance's network namespace) and hands each to [`EgressProxy::serve`] with its
//! [`Caller`]; nothing a workload sends can change who is calling. Calls to moat services are
//! not decided here: they go unchanged to the caller's `service:NAME` front door listener,
//! which resolves the caller's egress into an origin and decides ingress, IAM and the rest.
//!
//! What it does not stop: a workload that ignores the proxy variables and opens sockets itself.
//! `moat up --isolate` (network namespaces) is the mode that closes that gap.

mod handle;
mod record;
mod target;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use moat_policy::Project;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use record::{EgressRecord, summary, write_summary};

use crate::frontdoor::{Clock, DecisionSink, FrontDoor, StderrSink};

/// What the proxy needs from the front door: the current project (it follows reloads) and
/// which hosts are moat services. [`FrontDoor`] is the one the runtime uses.
pub trait ServiceHosts: Send + Sync + 'static {
    /// The project snapshot outbound calls are decided against now.
    fn project(&self) -> Arc<Project>;
    /// Whether the front door answers to `host` (lower case, no port).
    fn routes_host(&self, host: &str) -> bool;
}

impl ServiceHosts for FrontDoor {
    fn project(&self) -> Arc<Project> {
        FrontDoor::project(self)
    }

    fn routes_host(&self, host: &str) -> bool {
        FrontDoor::routes_host(self, host)
    }
}

/// Who is calling through one proxy listener, and where its special destinations are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The calling service; its egress settings decide every outbound connection.
    pub service: String,
    /// The calling instance, when the listener is one instance's own (recorded only).
    pub instance: Option<String>,
    /// The caller's own metadata server: where `metadata.google.internal` and
    /// `169.254.169.254` go. `None`: those get a 502.
    pub metadata: Option<SocketAddr>,
    /// The front door listener for calls leaving this service (`service:NAME`): where calls to
    /// moat services go. `None`: those get a 502.
    pub front_door: Option<SocketAddr>,
}

/// Timeouts of outbound calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open a TCP connection to the destination (and to resolve its name).
    pub connect: Duration,
    /// From sending a request to its response head (Cloud Run's default request timeout).
    pub response: Duration,
    /// Time a client has to send a request head.
    pub header_read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(300),
            header_read: Duration::from_secs(30),
        }
    }
}

/// The listener could not serve.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("cannot serve an egress proxy for `{0}`: the project has no such service")]
    UnknownCaller(String),
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
}

struct Inner {
    services: Arc<dyn ServiceHosts>,
    sink: Arc<dyn DecisionSink>,
    clock: Clock,
    timeouts: Timeouts,
    /// Pooled HTTP/1.1 connections, keyed by the address connected to (the destination, its
    /// stand-in, a metadata server or a front door listener); requests are decided before
    /// they reach it.
    client: Client<HttpConnector, Incoming>,
    shutdown: watch::Sender<bool>,
}

/// The egress proxy of one project. Cheap to clone; clones share connections and shutdown.
#[derive(Clone)]
pub struct EgressProxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy").field("timeouts", &self.inner.timeouts).finish_non_exhaustive()
    }
}

/// Builds an [`EgressProxy`]; records go to stderr and the clock is the system's by default.
pub struct EgressProxyBuilder {
    services: Arc<dyn ServiceHosts>,
    sink: Arc<dyn DecisionSink>,
    clock: Clock,
    timeouts: Timeouts,
}

impl std::fmt::Debug for EgressProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxyBuilder").field("timeouts", &self.timeouts).finish_non_exhaustive()
    }
}

impl EgressProxyBuilder {
    pub fn sink(mut self, sink: Arc<dyn DecisionSink>) -> Self {
        self.sink = sink;
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub fn build(self) -> EgressProxy {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.timeouts.connect));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(http);
        EgressProxy {
            inner: Arc::new(Inner {
                services: self.services,
                sink: self.sink,
                clock: self.clock,
                timeouts: self.timeouts,
                client,
                shutdown: watch::Sender::new(false),
            }),
        }
    }
}

impl EgressProxy {
    pub fn builder(services: Arc<dyn ServiceHosts>) -> EgressProxyBuilder {
        EgressProxyBuilder {
            services,
            sink: Arc::new(StderrSink),
            clock: Arc::new(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            }),
            timeouts: Timeouts::default(),
        }
    }

    /// Serves the workload connections arriving on `listener`, every one of them from
    /// `caller`, until [`EgressProxy::shutdown`]. Bind one listener per service, or one per
    /// instance (inside its network namespace): each is one more `serve` call.
    pub async fn serve(&self, listener: TcpListener, caller: Caller) -> Result<(), EgressError> {
        if !self.inner.services.project().services.contains_key(&caller.service) {
            return Err(EgressError::UnknownCaller(caller.service));
        }
        let caller = Arc::new(caller);
        let mut stop = self.inner.shutdown.subscribe();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(connection(Arc::clone(&self.inner), stream, Arc::clone(&caller)));
                    }
                    Err(e) => {
                        tracing::warn!("egress proxy accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        // Requests in flight finish (each bounded by the response timeout); open tunnels are
        // given a moment, then cut.
        if tokio::time::timeout(Duration::from_secs(5), async { while conns.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            conns.abort_all();
        }
        self.inner.sink.flush();
        Ok(())
    }

    /// Stops every [`EgressProxy::serve`]: no new connections; requests in flight finish.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// One workload connection: HTTP/1.1 requests one after another, or one CONNECT tunnel.
async fn connection(inner: Arc<Inner>, stream: TcpStream, caller: Arc<Caller>) {
    let _ = stream.set_nodelay(true);
    let mut stop = inner.shutdown.subscribe();
    let header_read = inner.timeouts.header_read;
    let service = {
        let inner = Arc::clone(&inner);
        service_fn(move |req| {
            let inner = Arc::clone(&inner);
            let caller = Arc::clone(&caller);
            async move { Ok::<_, std::convert::Infallible>(handle::handle(inner, caller, req).await) }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
