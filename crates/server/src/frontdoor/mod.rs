//! The front door: admits or refuses each request exactly as Cloud Run would, then passes the
//! admitted ones to the workload (spec/cloudrun.md §0.1, DESIGN "Request pipeline").
//!
//! Key decision: a request's origin comes only from the listener it arrived on, never from
//! anything the client sends. The caller creates one listener per origin (`internet`, each VPC
//! network, each Google product, `service:NAME` for calls leaving a service) and hands each to
//! [`FrontDoor::serve`] with its [`Origin`]. The door comes from the Host. Every decision is made
//! by the same `moat_policy` functions `explain` runs, so the gateway does what `explain` says.

mod body;
mod conn;
mod counters;
mod edge;
mod forward;
mod lenient;
mod pipeline;
mod rate;
mod rate_redis;

pub use rate::{Counted, Hit, MemoryRateState, RateFuture, RateState, RateStateError};
pub use rate_redis::{RedisKeys, RedisRateState};
mod record;
mod refusal;
mod route;
mod threads;
mod upstream;
mod waf;

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hyper::Uri;
use moat_crypto::Verifier;
use moat_policy::{Origin, Project};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use body::Body;
pub(crate) use record::rfc3339;
pub use record::{DecisionRecord, DecisionSink, StderrSink};
pub use waf::load_crs_for;

/// Seconds since the Unix epoch. Injected so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Where the workload serving a service listens.
pub trait Upstreams: Send + Sync + 'static {
    /// The base URL (`http://HOST:PORT`, optionally with a path prefix) of `service`'s
    /// workload; `None` when it has none (the request gets a 502).
    fn upstream(&self, service: &str) -> Option<Uri>;
}

impl<F> Upstreams for F
where
    F: Fn(&str) -> Option<Uri> + Send + Sync + 'static,
{
    fn upstream(&self, service: &str) -> Option<Uri> {
        self(service)
    }
}

/// Bounds on what one request, and one client connection, may cost. They apply alike to
/// HTTP/1.1 and to HTTP/2 (h2c) clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the request's arrival to the workload's response head (Cloud Run's default
    /// request timeout is 300 s). Past it the client gets a 504.
    pub request_timeout: Duration,
    /// Time a client has to send a whole request head: the first from the moment its
    /// connection is accepted (for HTTP/2, the connection preface and the first request), each
    /// later one from its first byte. Past it the connection is closed without a response.
    pub header_read_timeout: Duration,
    /// How long a client connection with no request in flight stays open before the front door
    /// closes it (HTTP/2: GOAWAY). Google's front end keeps idle client connections 610 s.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers; HTTP/2: the header list) accepted;
    /// larger gets a 431 before any decision is made.
    pub max_header_bytes: usize,
    /// Largest request body passed to the workload (Cloud Run's HTTP/1 request size limit is
    /// 32 MiB). A larger declared body gets a 413 before anything is forwarded; a body of
    /// undeclared length is cut off when it passes the limit: the forward is aborted and the
    /// client gets a 413, or, when the workload's response has already started, the connection
    /// (HTTP/2: the stream) is reset.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(300),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(610),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A listener's origin the project does not know (a network, or a calling service, that is not
/// declared).
#[derive(Debug, thiserror::Error)]
pub enum FrontDoorError {
    #[error("cannot serve listener origin `{origin}`: {reason}")]
    UnknownOrigin { origin: String, reason: String },
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One project snapshot and what the request path needs precomputed from it.
#[derive(Debug)]
struct Snapshot {
    project: Arc<Project>,
    routes: route::Routes,
    /// Per service: the audiences a token may carry, each with and without one trailing `/`
    /// (the verifier matches exactly; Cloud Run ignores one trailing slash).
    audiences: HashMap<String, Vec<String>>,
    /// moat's own keys and the issuers of this project's `trust:`: a reload that changes the
    /// list changes whom the door trusts (an issuer taken out is refused from the swap on).
    verifier: Arc<crate::trust::DoorVerifier>,
}

impl Snapshot {
    fn new(project: Arc<Project>, verifier: Arc<crate::trust::DoorVerifier>) -> Self {
        let routes = route::Routes::new(&project);
        let audiences = project
            .services
            .values()
            .map(|s| {
                let mut auds = Vec::new();
                for a in moat_policy::authn::accepted_audiences(s) {
                    let base = a.strip_suffix('/').unwrap_or(&a);
                    for form in [base.to_owned(), format!("{base}/")] {
                        if !auds.contains(&form) {
                            auds.push(form);
                        }
                    }
                }
                (s.name.clone(), auds)
            })
            .collect();
        Self { project, routes, audiences, verifier }
    }
}

struct Inner {
    snapshot: ArcSwap<Snapshot>,
    /// moat's own keys, which every snapshot's verifier trusts.
    own_keys: Arc<Verifier>,
    upstreams: Arc<dyn Upstreams>,
    clock: Clock,
    sink: Arc<dyn DecisionSink>,
    limits: Limits,
    /// Counters and bans of rate-limit rules; outlives project reloads.
    rate: Arc<dyn RateState>,
    /// The CRS rules, loaded when a policy uses preconfigured WAF rules (see `load_crs_for`).
    crs: ArcSwapOption<moat_waf::Crs>,
    shutdown: watch::Sender<bool>,
    /// Request ids: a random per-process prefix and a counter.
    id_prefix: u64,
    next_id: AtomicU64,
    counters: counters::Counters,
}

impl Inner {
    fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{n:08x}", self.id_prefix)
    }
}

/// The front door of one project. Cheap to clone; every clone serves the same snapshot.
#[derive(Clone)]
pub struct FrontDoor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoor")
            .field("project", &self.inner.snapshot.load().project.id)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// Builds a [`FrontDoor`]; the clock defaults to the system clock and records go to stderr.
pub struct FrontDoorBuilder {
    project: Arc<Project>,
    verifier: Arc<Verifier>,
    upstreams: Arc<dyn Upstreams>,
    clock: Clock,
    sink: Arc<dyn DecisionSink>,
    limits: Limits,
    rate: Arc<dyn RateState>,
    crs: Option<Arc<moat_waf::Crs>>,
}

impl std::fmt::Debug for FrontDoorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoorBuilder").field("project", &self.project.id).finish_non_exhaustive()
    }
}

impl FrontDoorBuilder {
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn sink(mut self, sink: Arc<dyn DecisionSink>) -> Self {
        self.sink = sink;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where rate-limit counters and bans live (default: this process's memory).
    pub fn rate_state(mut self, rate: Arc<dyn RateState>) -> Self {
        self.rate = rate;
        self
    }

    /// The CRS rules for policies with preconfigured WAF rules. Without them such a policy's
    /// requests are refused (fail closed); `load_crs_for` loads them when needed.
    pub fn crs(mut self, crs: Option<Arc<moat_waf::Crs>>) -> Self {
        self.crs = crs;
        self
    }

    pub fn build(self) -> FrontDoor {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        FrontDoor {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::new(
                    Arc::clone(&self.project),
                    Arc::new(crate::trust::DoorVerifier::new(
                        Arc::clone(&self.verifier),
                        &self.project.trusted_issuers,
                    )),
                )),
                own_keys: self.verifier,
                upstreams: self.upstreams,
                clock: self.clock,
                sink: self.sink,
                limits: self.limits,
                rate: self.rate,
                crs: ArcSwapOption::new(self.crs),
                shutdown: watch::Sender::new(false),
                id_prefix: h.finish(),
                next_id: AtomicU64::new(0),
                counters: counters::Counters::default(),
            }),
        }
    }
}

/// Every origin a project's front door needs a listener for: the internet, each VPC network
/// (its own and Shared VPC), each Google product in the project, and each service (the
/// listener its egress proxy hands outbound calls to).
pub fn listener_origins(project: &Project) -> Vec<Origin> {
    let mut out = vec![Origin::Internet];
    out.extend(
        project.networks.iter().map(|n| {
            Origin::Vpc(moat_policy::model::NetworkRef { project: project.id.clone(), network: n.name.clone() })
        }),
    );
    out.extend(project.shared_vpc.iter().map(|s| Origin::Vpc(s.network.clone())));
    out.extend(
        moat_policy::request::GoogleProduct::ALL
            .iter()
            .map(|p| Origin::Google { product: *p, project: project.id.clone() }),
    );
    out.extend(project.services.keys().map(|s| Origin::Service(s.clone())));
    out
}

fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

impl FrontDoor {
    pub fn builder(project: Arc<Project>, verifier: Arc<Verifier>, upstreams: impl Upstreams) -> FrontDoorBuilder {
        FrontDoorBuilder {
            project,
            verifier,
            upstreams: Arc::new(upstreams),
            clock: system_clock(),
            sink: Arc::new(StderrSink),
            limits: Limits::default(),
            rate: Arc::new(MemoryRateState::default()),
            crs: None,
        }
    }

    /// The CRS rules in use, if loaded.
    pub fn crs(&self) -> Option<Arc<moat_waf::Crs>> {
        self.inner.crs.load_full()
    }

    /// Installs the CRS rules (a reload that brings the first policy with WAF rules).
    pub fn set_crs(&self, crs: Option<Arc<moat_waf::Crs>>) {
        self.inner.crs.store(crs);
    }

    /// The project snapshot requests are decided against now.
    pub fn project(&self) -> Arc<Project> {
        Arc::clone(&self.inner.snapshot.load().project)
    }

    /// Whether a request with this Host (lower case, no port) would be routed: a service's
    /// run.app or local host, a traffic tag, a mapped domain, or a load balancer's host (except
    /// a bare `*`, which names no host). The egress proxy sends calls to these here.
    pub fn routes_host(&self, host: &str) -> bool {
        self.inner.snapshot.load().routes.knows_host(host)
    }

    /// Swaps in a new project snapshot. Requests already past routing finish on the old one.
    /// The trusted issuers' keys are kept (and their refreshes go on) unless `trust:` changed.
    pub fn replace_project(&self, project: Arc<Project>) {
        let old = self.inner.snapshot.load();
        let verifier = if same_trust(&old.project.trusted_issuers, &project.trusted_issuers) {
            Arc::clone(&old.verifier)
        } else {
            Arc::new(crate::trust::DoorVerifier::new(Arc::clone(&self.inner.own_keys), &project.trusted_issuers))
        };
        self.inner.snapshot.store(Arc::new(Snapshot::new(project, verifier)));
    }

    /// Stops every [`FrontDoor::serve`]: no new connections; requests in flight finish (each
    /// is bounded by the request timeout), then the connections close.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Writes out the decision records the sink has buffered.
    pub fn flush_records(&self) {
        self.inner.sink.flush();
    }

    /// Serves requests arriving on `listener`, all of which come from `origin`, until
    /// [`FrontDoor::shutdown`].
    pub async fn serve(&self, listener: TcpListener, origin: Origin) -> Result<(), FrontDoorError> {
        let origin = self.check_origin(origin)?;
        let origin = Arc::new(origin);
        let mut stop = self.inner.shutdown.subscribe();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => spawn_connection(&mut conns, &self.inner, stream, peer, &origin),
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("front door accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
        self.inner.sink.flush();
        Ok(())
    }

    /// The origin, with this project filled in where it was left out, if the project knows it.
    fn check_origin(&self, origin: Origin) -> Result<Origin, FrontDoorError> {
        let snap = self.inner.snapshot.load();
        let origin = origin.in_project(&snap.project.id);
        let any_door = moat_policy::path::ResolvedEntry { door: moat_policy::ingress::Door::DefaultUrl, lb: None };
        match moat_policy::path::resolve_origin(&snap.project, &origin, any_door) {
            Ok(_) => Ok(origin),
            Err(e) => Err(FrontDoorError::UnknownOrigin { origin: origin.to_string(), reason: e.to_string() }),
        }
    }
}

/// Runs one accepted connection on the next of the door's threads (see `threads`), tracked in
/// `conns`; on the caller's runtime when there are none.
fn spawn_connection(
    conns: &mut JoinSet<()>,
    inner: &Arc<Inner>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    origin: &Arc<Origin>,
) {
    let (inner, origin) = (Arc::clone(inner), Arc::clone(origin));
    let Some(thread) = threads::next() else {
        conns.spawn(conn::connection(inner, stream, peer, origin));
        return;
    };
    // Off this runtime's reactor, onto that thread's (an error leaves it closed).
    match stream.into_std() {
        Ok(stream) => {
            conns.spawn_on(
                async move {
                    if let Ok(stream) = TcpStream::from_std(stream) {
                        conn::connection(inner, stream, peer, origin).await;
                    }
                },
                thread,
            );
        }
        Err(e) => tracing::warn!("front door: connection dropped: {e}"),
    }
}

/// The same issuers with the same keys, domains and algorithms (where in moat.yaml they are
/// written does not matter: moving a line keeps the keys already fetched).
fn same_trust(a: &[moat_policy::model::trust::TrustedIssuer], b: &[moat_policy::model::trust::TrustedIssuer]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.issuer == y.issuer
                && x.keys == y.keys
                && x.email_domains == y.email_domains
                && x.algorithms == y.algorithms
        })
}

/// Resolves once the door is shut down (or can no longer be told to).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
