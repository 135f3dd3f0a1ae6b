//! The runtime behind `moat up` and `moat serve`: every listener of the front door (one per
//! origin), the identity listener, one metadata server per instance, the admin listener, and a
//! supervisor per service that runs its instance with the Cloud Run container contract
//! (spec/cloudrun.md §3.4, DESIGN "Runtime and state").
//!
//! Key decision: an instance's outbound calls go through its service's egress proxy listener
//! (`egress:NAME`, its `HTTP_PROXY` and `HTTPS_PROXY`), which decides each destination with
//! the caller's egress settings and hands calls to other services to the front door's
//! `service:NAME` listener, so such a call takes the origin the caller's egress implies,
//! through the same pipeline and the same decisions `explain` prints for `--from
//! service:NAME`. Nothing a workload sends can change where it calls from.

mod admin;
mod backoff;
mod decisions;
mod env;
mod group;
mod inject;
mod instance;
mod isolate;
pub mod metrics;
mod ready;
mod reload;
mod status;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hyper::Uri;
use moat_crypto::{Verifier, VerifierConfig};
use moat_policy::model::{EPHEMERAL_LISTENER, NetworkRef, RunTarget};
use moat_policy::request::GoogleProduct;
use moat_policy::{Origin, Project};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::frontdoor::{DecisionSink, FrontDoor, Upstreams};
use crate::identity::IdentityState;
use crate::metadata::Workload;

pub use admin::ListenerInfo;
pub use backoff::{Backoff, Delays};
pub use decisions::{LogSink, summary};
pub use env::{Contract, NO_PROXY, service_url, url_var};
pub use isolate::NetNs;
pub use reload::{NeedsRestart, ReloadError, declared_secret_changes, restart_changes};
pub use status::{Board, ServiceStatus, State, table};

/// Timings of the supervisor.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a new instance has to listen on its `PORT` (Cloud Run's default TCP startup
    /// probe allows 240 s; a local workload that needs a minute is broken).
    pub ready_timeout: Duration,
    /// Between SIGTERM and SIGKILL when an instance is stopped (Cloud Run gives 10 s).
    pub grace: Duration,
    pub backoff: Backoff,
    /// `moat up --isolate`: each instance in a network namespace of its own, whose only ways
    /// out are relays to its metadata server, its egress proxy and the Secret Manager API
    /// (Linux, root or CAP_SYS_ADMIN; check with [`NetNs::available`] first).
    pub isolate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ready_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            backoff: Backoff::default(),
            isolate: false,
        }
    }
}

/// What to run.
pub struct Config {
    pub project: Arc<Project>,
    /// `run.SERVICE.dir` and secret seed files are relative to it.
    pub project_dir: PathBuf,
    /// `STATE`: each instance's secret mounts live under `STATE/instances/`.
    pub state_dir: PathBuf,
    pub identity: Arc<IdentityState>,
    pub sink: Arc<dyn DecisionSink>,
    /// `false` (`moat serve`): no workloads are started, whatever `run:` says.
    pub start_workloads: bool,
    /// The project's secret store: served as the Secret Manager API and used to inject secrets
    /// into instances.
    pub secrets: moat_secrets::Secrets,
    pub options: Options,
    /// Where rate-limit counters and bans live: moat.yaml's `rate_limit_state`, or
    /// `--rate-state` over it; `None`, this process's memory.
    pub rate_state: Option<moat_policy::model::RateLimitState>,
    /// Where the OWASP CRS rule files are (`--crs-dir`; Debian's `modsecurity-crs` by default),
    /// read when a security policy uses preconfigured WAF rules.
    pub crs_dir: PathBuf,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("project", &self.project.id)
            .field("dir", &self.project_dir)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot listen on `{addr}` for the {what} listener: {source}")]
    Bind { what: String, addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    FrontDoor(#[from] crate::frontdoor::FrontDoorError),
    #[error("the metadata server for `{service}` cannot start: {source}")]
    Metadata { service: String, source: crate::ServeError },
    /// A secret declared in moat.yaml could not be created or seeded.
    #[error("{0}")]
    Secrets(String),
    #[error("cannot use the rate-limit state: {0}")]
    RateState(String),
    /// A security policy uses preconfigured WAF rules and the CRS rule files cannot be loaded.
    #[error("{0}")]
    Waf(String),
}

/// Where each service's requests go: the running instance, or the configured URL. Supervisors
/// write it; the front door reads it on every request.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTable(Arc<RwLock<HashMap<String, Uri>>>);

impl UpstreamTable {
    pub fn set(&self, service: &str, url: &str) {
        if let Ok(uri) = url.parse::<Uri>() {
            self.0.write().unwrap_or_else(PoisonError::into_inner).insert(service.to_owned(), uri);
        }
    }

    pub fn remove(&self, service: &str) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).remove(service);
    }
}

impl Upstreams for UpstreamTable {
    fn upstream(&self, service: &str) -> Option<Uri> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).get(service).cloned()
    }
}

/// Everything running. Stop it with [`Runtime::shutdown`]; dropping it kills every instance.
#[derive(Debug)]
pub struct Runtime {
    door: FrontDoor,
    egress: crate::egress::EgressProxy,
    /// Each service's egress caller (its metadata server and front door listener), for more
    /// proxy listeners of its own ([`Runtime::egress_caller`]).
    callers: HashMap<String, crate::egress::Caller>,
    board: Board,
    listeners: Vec<ListenerInfo>,
    stop: watch::Sender<bool>,
    supervisors: JoinSet<()>,
    servers: JoinSet<()>,
    /// Instances were started from `run:` commands (`moat up`).
    workloads: bool,
    secrets: moat_secrets::Secrets,
    /// Seed files of secrets declared by a reload are relative to it.
    project_dir: PathBuf,
    /// Where the CRS rules are read from when a reload brings the first WAF rule.
    crs_dir: PathBuf,
    /// moat's state directory (`STATE/instances` is released at shutdown).
    state_dir: PathBuf,
}

/// Resolves once `stop` is set (or can no longer be).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Runtime {
    /// Binds every listener, then starts the servers and the instances. Returns as soon as the
    /// instances are started; [`Runtime::wait_started`] waits for them to be ready.
    pub async fn start(config: Config) -> Result<Self, RuntimeError> {
        let project = Arc::clone(&config.project);
        let (stop, stop_rx) = watch::channel(false);
        let until = |mut rx: watch::Receiver<bool>| async move { stopped(&mut rx).await };
        let upstreams = UpstreamTable::default();
        let board = Board::default();
        let mut servers = JoinSet::new();
        let _ = metrics::handle();
        servers.spawn(metrics_upkeep(stop_rx.clone()));

        // Every listener is bound before anything serves, so a port clash fails the start
        // instead of leaving half a runtime.
        let door_listeners = bind_door_listeners(&project).await?;
        let admin_listener = bind("admin", project.listeners.admin).await?;
        let identity_listener = bind("identity", EPHEMERAL_LISTENER).await?;
        let secrets_listener = bind("secrets", EPHEMERAL_LISTENER).await?;
        let mut listeners: Vec<ListenerInfo> =
            door_listeners.iter().map(|(o, _, a)| ListenerInfo { origin: o.to_string(), addr: *a }).collect();
        let admin_addr = local(&admin_listener, "admin")?;
        let identity_addr = local(&identity_listener, "identity")?;
        // The Secret Manager API: workloads get its URL as `MOAT_SECRETMANAGER_ENDPOINT`.
        let secrets_addr = local(&secrets_listener, "secrets")?;
        listeners.push(ListenerInfo { origin: "admin".into(), addr: admin_addr });
        listeners.push(ListenerInfo { origin: "identity".into(), addr: identity_addr });
        listeners.push(ListenerInfo { origin: "secrets".into(), addr: secrets_addr });
        // Where each service's egress proxy hands calls to other services: its own front door
        // listener, whose origin is the calling service.
        let door_for_calls: HashMap<String, SocketAddr> = door_listeners
            .iter()
            .filter_map(|(o, _, a)| match o {
                Origin::Service(s) => Some((s.clone(), *a)),
                _ => None,
            })
            .collect();
        // One egress proxy listener per service: its instances' HTTP_PROXY and HTTPS_PROXY.
        let mut egress_listeners = HashMap::new();
        for name in project.services.keys() {
            let what = format!("egress:{name}");
            let l = bind(&what, EPHEMERAL_LISTENER).await?;
            let a = local(&l, &what)?;
            listeners.push(ListenerInfo { origin: what, addr: a });
            egress_listeners.insert(name.clone(), (l, a));
        }
        let proxies: HashMap<String, SocketAddr> = egress_listeners.iter().map(|(n, (_, a))| (n.clone(), *a)).collect();

        // The verifier trusts the keys the metadata servers sign with, and follows rotations.
        let identity = Arc::clone(&config.identity);
        let verifier = Arc::new(Verifier::new(VerifierConfig::google(), identity.key_set()));
        servers.spawn(follow_keys(Arc::clone(&identity), Arc::clone(&verifier), stop_rx.clone()));
        let rotation = crate::identity::spawn_rotation(Arc::clone(&identity), crate::identity::DEFAULT_ROTATE_EVERY);
        drop_on_stop(&mut servers, rotation, stop_rx.clone());

        let mut door = FrontDoor::builder(Arc::clone(&project), Arc::clone(&verifier), upstreams.clone())
            .sink(Arc::clone(&config.sink));
        // Rate-limit counters and bans in Redis when configured, shared with every replica that
        // names the same server; connected once, for the runtime's life (a reload keeps it).
        if let Some(shared) = &config.rate_state {
            let state = crate::frontdoor::RedisRateState::start(shared).await;
            door = door.rate_state(state.map_err(|e| RuntimeError::RateState(e.to_string()))?);
        }
        // The CRS rules, only when a policy uses them; missing rules fail the start.
        let crs = crate::frontdoor::load_crs_for(&project, &config.crs_dir, None).map_err(RuntimeError::Waf)?;
        let door = door.crs(crs).build();
        // The egress proxy reads the front door's project snapshot, so it follows reloads.
        let egress = crate::egress::EgressProxy::builder(Arc::new(door.clone())).sink(Arc::clone(&config.sink)).build();
        let mut callers = HashMap::new();
        for (origin, listener, addr) in door_listeners {
            let door = door.clone();
            servers.spawn(async move {
                if let Err(e) = door.serve(listener, origin).await {
                    eprintln!("moat: the front door listener on {addr} stopped: {e}");
                }
            });
        }
        servers.spawn({
            let identity = Arc::clone(&identity);
            let until = until(stop_rx.clone());
            async move {
                if let Err(e) = crate::identity::serve_identity_until(identity_listener, identity, until).await {
                    eprintln!("moat: the identity listener stopped: {e}");
                }
            }
        });
        servers.spawn({
            let (secrets, identity, verifier) = (config.secrets.clone(), Arc::clone(&identity), Arc::clone(&verifier));
            let until = until(stop_rx.clone());
            async move {
                if let Err(e) = crate::secrets::serve_until(secrets_listener, secrets, identity, verifier, until).await
                {
                    eprintln!("moat: the secrets listener stopped: {e}");
                }
            }
        });
        let admin =
            Arc::new(admin::Admin { project: project.id.clone(), board: board.clone(), listeners: listeners.clone() });
        servers.spawn({
            let until = until(stop_rx.clone());
            async move {
                let app = admin::router(admin);
                if let Err(e) = axum::serve(admin_listener, app).with_graceful_shutdown(until).await {
                    eprintln!("moat: the admin listener stopped: {e}");
                }
            }
        });

        // Instances a killed moat left on this state go first: they hold ports and secrets.
        let groups = config.start_workloads.then(|| config.state_dir.join("run").join("groups"));
        if let Some(dir) = &groups {
            for (pgid, service) in group::reap_leftovers(dir) {
                eprintln!(
                    "moat: killed instance group {pgid} of `{service}`, left running by an earlier moat on this state"
                );
            }
        }
        let shared = Arc::new(instance::Shared {
            board: board.clone(),
            upstreams: upstreams.clone(),
            options: config.options,
            groups,
        });
        let mut supervisors = JoinSet::new();
        // Declared secrets exist, with their policy and seed, before any instance reads them.
        inject::declare(&project, &config.project_dir, &config.secrets).map_err(RuntimeError::Secrets)?;
        for service in project.services.values() {
            let url = service_url(service);
            let account = service.service_account.value.clone();
            let base = ServiceStatus {
                service: service.name.clone(),
                state: State::NotRunning,
                url,
                upstream: None,
                pid: None,
                port: None,
                service_account: account.clone(),
                metadata: None,
                egress_proxy: proxies.get(&service.name).map(|a| format!("http://{a}")),
                restarts: 0,
                error: None,
                settled: true,
            };
            let mut caller = crate::egress::Caller {
                service: service.name.clone(),
                instance: None,
                metadata: None,
                front_door: door_for_calls.get(&service.name).copied(),
            };
            match project.run.get(&service.name).map(|r| &r.target) {
                Some(RunTarget::Url(url)) => {
                    upstreams.set(&service.name, url);
                    board.insert(ServiceStatus { state: State::Upstream, upstream: Some(url.clone()), ..base });
                }
                Some(RunTarget::Command { command, dir }) if config.start_workloads => {
                    // The instance's own metadata server, for its runtime service account only.
                    let mds = bind(&format!("metadata server of `{}`", service.name), EPHEMERAL_LISTENER).await?;
                    let mds_addr = local(&mds, "metadata")?;
                    caller.metadata = Some(mds_addr);
                    let workload = Workload::cloud_run(&project, &account);
                    let identity = Arc::clone(&identity);
                    let until = until(stop_rx.clone());
                    let name = service.name.clone();
                    servers.spawn(async move {
                        if let Err(e) = crate::metadata::serve_metadata_until(mds, workload, identity, until).await {
                            eprintln!("moat: the metadata server of `{name}` stopped: {e}");
                        }
                    });
                    let mut contract = Contract::new(&project, service, mds_addr, proxies.get(&service.name).copied());
                    contract.secrets_endpoint = Some(format!("http://{secrets_addr}"));
                    let inject = inject::Injection::new(&project, service, &config.secrets, &config.state_dir);
                    let dir = dir.as_deref().map_or_else(|| config.project_dir.clone(), |d| config.project_dir.join(d));
                    board.insert(ServiceStatus {
                        state: State::Starting,
                        metadata: Some(mds_addr.to_string()),
                        settled: false,
                        ..base
                    });
                    let slot = instance::Slot {
                        service: service.name.clone(),
                        command: command.clone(),
                        dir,
                        contract,
                        inject,
                    };
                    supervisors.spawn(instance::supervise(slot, Arc::clone(&shared), stop_rx.clone()));
                }
                Some(RunTarget::Command { .. }) | None => board.insert(base),
            }
            if let Some((listener, _)) = egress_listeners.remove(&service.name) {
                let (egress, caller) = (egress.clone(), caller.clone());
                servers.spawn(async move {
                    let name = caller.service.clone();
                    if let Err(e) = egress.serve(listener, caller).await {
                        eprintln!("moat: the egress proxy of `{name}` stopped: {e}");
                    }
                });
            }
            callers.insert(service.name.clone(), caller);
        }
        Ok(Self {
            door,
            egress,
            callers,
            board,
            listeners,
            stop,
            supervisors,
            servers,
            workloads: config.start_workloads,
            secrets: config.secrets,
            project_dir: config.project_dir,
            crs_dir: config.crs_dir,
            state_dir: config.state_dir,
        })
    }

    /// The project requests are decided against now.
    pub fn project(&self) -> Arc<Project> {
        self.door.project()
    }

    /// Applies a reloaded project: swapped into the front door in one step, so each request
    /// sees either the old snapshot or the new one, never a mix; requests in flight finish on
    /// the one they started with. Refused, with nothing applied, when it changes something only
    /// a restart can (see [`restart_changes`]). Secrets declared in moat.yaml that are new or
    /// whose `iam` changed are applied to the store first (created, policy set, seeded); if
    /// one fails the reload is refused and the previous project keeps serving (the secrets
    /// declared before the failing one stay applied: each is its own store transaction).
    /// Returns the number of services.
    pub fn reload(&self, project: Project) -> Result<usize, ReloadError> {
        let old = self.door.project();
        let changes = restart_changes(&old, &project, self.workloads);
        if !changes.is_empty() {
            metrics::reload("needs_restart");
            return Err(ReloadError::NeedsRestart(NeedsRestart { changes }));
        }
        // Before the swap, so that an instance woken by the new project IAM finds its secret.
        // A few small store transactions: fine on the reload task, which serves no request.
        let declared = reload::declared_secret_changes(&old, &project);
        if let Err(e) = inject::declare_each(declared, &self.project_dir, &self.secrets) {
            metrics::reload("invalid");
            return Err(ReloadError::Secrets(e));
        }
        // A policy with WAF rules needs the CRS; loaded on the first such reload, and a
        // reload that needs it and cannot have it is refused (the last good config serves on).
        match crate::frontdoor::load_crs_for(&project, &self.crs_dir, self.door.crs().as_ref()) {
            Ok(Some(crs)) => self.door.set_crs(Some(crs)),
            Ok(None) => {}
            Err(e) => {
                metrics::reload("invalid");
                return Err(ReloadError::Waf(e));
            }
        }
        let services = project.services.len();
        let project = Arc::new(project);
        self.secrets.set_project(Arc::clone(&project));
        // The egress proxy reads this snapshot too: one swap for both.
        self.door.replace_project(project);
        metrics::reload("applied");
        Ok(services)
    }

    /// The egress proxy: serve another listener for a caller with
    /// `runtime.egress().serve(listener, caller)`.
    pub fn egress(&self) -> &crate::egress::EgressProxy {
        &self.egress
    }

    /// `service`'s caller as its own egress listener serves it: its metadata server and its
    /// front door listener (`instance` unset).
    pub fn egress_caller(&self, service: &str) -> Option<crate::egress::Caller> {
        self.callers.get(service).cloned()
    }

    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Every listener: the front door's (one per origin), the admin and the identity listener.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// The address of the listener for `origin` (as [`ListenerInfo::origin`] spells it).
    pub fn listener(&self, origin: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|l| l.origin == origin).map(|l| l.addr)
    }

    /// Until every started instance is ready or has failed its first start; `progress` is told
    /// (ready, total, the names still starting) on every change.
    pub async fn wait_started(&self, mut progress: impl FnMut(usize, usize, &[String])) {
        let mut changes = self.board.subscribe();
        loop {
            let all = self.board.snapshot();
            let started: Vec<&ServiceStatus> =
                all.iter().filter(|s| !matches!(s.state, State::Upstream | State::NotRunning)).collect();
            let waiting: Vec<String> = started.iter().filter(|s| !s.settled).map(|s| s.service.clone()).collect();
            let ready = started.iter().filter(|s| s.state == State::Ready).count();
            progress(ready, started.len(), &waiting);
            if waiting.is_empty() || changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops the instances (SIGTERM to each process group, then SIGKILL after the grace period),
    /// then the listeners, letting requests in flight finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.supervisors.join_next().await.is_some() {}
        // Every instance has stopped and removed its secret mounts.
        if self.workloads {
            inject::release_instances_dir(&self.state_dir);
        }
        self.door.shutdown();
        self.egress.shutdown();
        let drain = async { while self.servers.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), drain).await.is_err() {
            self.servers.abort_all();
        }
        self.door.flush_records();
    }
}

/// Keeps the verifier's keys in step with the key ring: a rotation publishes a new key, and
/// pruning removes old ones.
async fn follow_keys(identity: Arc<IdentityState>, verifier: Arc<Verifier>, mut stop: watch::Receiver<bool>) {
    let mut last = identity.jwks_json();
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = stopped(&mut stop) => return,
        }
        let now = identity.jwks_json();
        if now != last {
            verifier.replace_keys(identity.key_set());
            last = now;
        }
    }
}

/// Histogram samples are folded into buckets every few seconds, scraped or not.
async fn metrics_upkeep(mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => metrics::upkeep(),
            () = stopped(&mut stop) => return,
        }
    }
}

/// The rotation task runs until the runtime stops.
fn drop_on_stop(servers: &mut JoinSet<()>, task: tokio::task::JoinHandle<()>, mut stop: watch::Receiver<bool>) {
    servers.spawn(async move {
        stopped(&mut stop).await;
        task.abort();
    });
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(addr).await.map_err(|source| RuntimeError::Bind { what: what.to_owned(), addr, source })
}

fn local(l: &TcpListener, what: &str) -> Result<SocketAddr, RuntimeError> {
    l.local_addr().map_err(|source| RuntimeError::Bind { what: what.to_owned(), addr: EPHEMERAL_LISTENER, source })
}

/// The front door's listeners: the internet, each VPC network (own and Shared VPC), each Google
/// product, and one per service for the calls it makes. Configured addresses from moat.yaml,
/// the rest on free loopback ports.
async fn bind_door_listeners(project: &Project) -> Result<Vec<(Origin, TcpListener, SocketAddr)>, RuntimeError> {
    let conf = &project.listeners;
    let mut wanted: Vec<(Origin, SocketAddr)> = vec![(Origin::Internet, conf.internet)];
    let own = project.networks.iter().map(|n| NetworkRef { project: project.id.clone(), network: n.name.clone() });
    let shared = project.shared_vpc.iter().map(|s| s.network.clone());
    for net in own.chain(shared) {
        let addr = conf.vpc.get(&net).copied().unwrap_or(EPHEMERAL_LISTENER);
        wanted.push((Origin::Vpc(net), addr));
    }
    for product in GoogleProduct::ALL {
        let addr = conf.google.get(&product).copied().unwrap_or(EPHEMERAL_LISTENER);
        wanted.push((Origin::Google { product, project: project.id.clone() }, addr));
    }
    for name in project.services.keys() {
        wanted.push((Origin::Service(name.clone()), EPHEMERAL_LISTENER));
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (origin, addr) in wanted {
        let l = bind(&origin.to_string(), addr).await?;
        let a = local(&l, &origin.to_string())?;
        out.push((origin, l, a));
    }
    Ok(out)
}
