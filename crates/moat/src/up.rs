//! `moat up`: the front door, the identity listener, a metadata server per instance and the
//! admin listener, and one instance per service from `run:` with the Cloud Run container
//! contract, until Ctrl-C or SIGTERM. Stdout carries the listeners and the status table; logs,
//! the workloads' output and one line per request go to stderr; decision records go to
//! `STATE/decisions.jsonl`. A change to the project's config (or SIGHUP) reloads it in place
//! (`crate::reload`).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::Diagnostic;
use moat_policy::Project;
use moat_policy::model::RunTarget;
use moat_server::IdentityState;
use moat_server::runtime::{Config, LogSink, NetNs, Options, Runtime, table};

use crate::exit::{Exit, report};
use crate::identity::{keys_dir, keys_error, state_dir};
use crate::reload::Triggers;
use crate::serve_identity::Shutdown;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml).
    pub project: PathBuf,
    /// State directory (signing keys, decisions.jsonl). Default: PROJECT/.moat.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Start each instance in a network namespace of its own (Linux, root or CAP_SYS_ADMIN):
    /// its only ways out are its metadata server, its egress proxy and the Secret Manager API,
    /// so a workload that ignores HTTP_PROXY reaches nothing.
    #[arg(long)]
    pub isolate: bool,
    /// Keep rate-limit counters and bans in this Redis (`redis://HOST:PORT/DB`), shared with
    /// every replica that names it; overrides moat.yaml's `rate_limit_state.redis`.
    #[arg(long, value_name = "URL")]
    pub rate_state: Option<String>,
    /// Where the OWASP CRS rule files are, for security policies with preconfigured WAF rules
    /// (`evaluatePreconfiguredWaf`): the package root or its `rules/` directory.
    #[arg(long, value_name = "DIR", default_value = moat_waf::DEFAULT_CRS_DIR)]
    pub crs_dir: PathBuf,
}

/// What `moat up` and `moat serve` share beyond the project and state directories.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub isolate: bool,
    pub rate_state: Option<String>,
    pub crs_dir: PathBuf,
}

/// Why `moat up` or `moat serve` cannot run. Every variant exits with status 2.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum RunError {
    #[error("`moat serve` starts no workloads, but {} no upstream URL: {}", if .services.len() == 1 { "this service has" } else { "these services have" }, .services.join(", "))]
    #[diagnostic(help(
        "give each one `run: {{SERVICE: {{url: http://HOST:PORT}}}}` in moat.yaml, or use `moat up` to start them from `command`"
    ))]
    NoUpstream { services: Vec<String> },
    #[error("`moat up --isolate` cannot start: network namespaces are not available here: {why}")]
    #[diagnostic(help(
        "--isolate needs Linux and root (or CAP_SYS_ADMIN) to give each instance a network namespace of its own; without --isolate the proxy variables (HTTP_PROXY, HTTPS_PROXY) are the only egress control, and a workload that ignores them reaches the network directly"
    ))]
    Isolate { why: String },
    #[error("{0}")]
    Start(String),
}

/// `moat up` starts workloads; `moat serve` only proxies to configured upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    Serve,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Up => "moat up",
            Self::Serve => "moat serve",
        }
    }
}

pub fn run(args: Args) -> Exit {
    let options = RunOptions { isolate: args.isolate, rate_state: args.rate_state, crs_dir: args.crs_dir };
    run_mode(&args.project, args.state.as_deref(), Mode::Up, options)
}

pub fn run_mode(project: &Path, state: Option<&Path>, mode: Mode, options: RunOptions) -> Exit {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,moat_server=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return report(RunError::Start(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(serve(project, state, mode, options)) {
        Ok(()) => Exit::Clean,
        Err(e) => report(e),
    }
}

async fn serve(dir: &Path, state: Option<&Path>, mode: Mode, options: RunOptions) -> Result<(), miette::Report> {
    let RunOptions { isolate, rate_state, crs_dir } = options;
    // Not a silent fallback: asked for isolation, moat runs isolated or not at all.
    if isolate {
        NetNs::available().map_err(|why| RunError::Isolate { why })?;
    }
    let project = crate::project_dir::load(dir)?;
    let rate_state = rate_limit_state(&project, rate_state)?;
    if mode == Mode::Serve {
        let missing = without_upstream(&project);
        if !missing.is_empty() {
            return Err(RunError::NoUpstream { services: missing }.into());
        }
    }
    let state = state_dir(dir, state);
    let keys = keys_dir(&state);
    let identity = Arc::new(IdentityState::from_store(&keys).map_err(|e| keys_error(&keys, &e))?);
    let log = state.join("decisions.jsonl");
    let sink = LogSink::open(&log)
        .map_err(|e| RunError::Start(format!("cannot open the decision log `{}`: {e}", log.display())))?;
    let mut shutdown =
        Shutdown::install().map_err(|e| RunError::Start(format!("cannot install signal handlers: {e}")))?;
    // Before anything is announced: SIGHUP's default action would end the process.
    let mut reloads =
        Triggers::install(dir).map_err(|e| RunError::Start(format!("cannot install signal handlers: {e}")))?;

    let secrets = open_secrets(&state, &project)?;
    let config = Config {
        project: Arc::new(project),
        project_dir: dir.to_path_buf(),
        state_dir: state.clone(),
        identity,
        sink: Arc::new(sink),
        start_workloads: mode == Mode::Up,
        secrets,
        options: Options { isolate, ..Options::default() },
        rate_state,
        crs_dir,
    };
    let project = Arc::clone(&config.project);
    let runtime = Runtime::start(config).await.map_err(|e| RunError::Start(e.to_string()))?;
    // Where `moat secrets` finds this moat's Secret Manager API; removed when moat stops.
    let _endpoint = match runtime.listener("secrets") {
        Some(addr) => Some(crate::secrets_cli::EndpointFile::write(&state, addr).map_err(RunError::Start)?),
        None => None,
    };
    print_listeners(&project, &runtime, mode, isolate).map_err(stdout_error)?;

    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    let started = runtime.wait_started(|ready, total, waiting| progress(tty, &mut last, ready, total, waiting));
    tokio::select! {
        () = started => {}
        () = shutdown.wait() => {
            eprintln!("\nmoat: stopping");
            runtime.shutdown().await;
            return Ok(());
        }
    }
    print_ready(&runtime, &log).map_err(stdout_error)?;

    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            () = reloads.next() => crate::reload::reload(dir, &runtime).await,
        }
    }
    eprintln!("moat: stopping (SIGTERM to every instance, SIGKILL after 10s)");
    runtime.shutdown().await;
    eprintln!("moat: stopped");
    Ok(())
}

/// The secret store under `STATE/secrets`, sealed by the master key from `MOAT_MASTER_KEY` or
/// `STATE/secrets/master.key` (created with mode 0600 on first run).
fn open_secrets(state: &Path, project: &Project) -> Result<moat_secrets::Secrets, RunError> {
    let dir = state.join("secrets");
    // 0700 from the start: it holds the master key file, the sealed store and the audit log
    // (`Secrets::open` also repairs the mode of a directory created looser before).
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .map_err(|e| RunError::Start(format!("cannot create the secret store directory `{}`: {e}", dir.display())))?;
    let key = moat_secrets::MasterKey::from_env_or_file(&dir.join("master.key"))
        .map_err(|e| RunError::Start(format!("cannot load the secret store's master key: {e}")))?;
    moat_secrets::Secrets::open(&dir, key, Arc::new(project.clone()))
        .map_err(|e| RunError::Start(format!("cannot open the secret store `{}`: {e}", dir.display())))
}

/// Where rate-limit counters and bans live: `--rate-state URL` over moat.yaml's
/// `rate_limit_state` (whose `on_error` and `timeout_ms` still apply), else moat.yaml's.
fn rate_limit_state(
    project: &Project,
    flag: Option<String>,
) -> Result<Option<moat_policy::model::RateLimitState>, RunError> {
    use moat_policy::model::{RateLimitState, rate_state::check_url};
    let Some(url) = flag else { return Ok(project.rate_limit_state.clone()) };
    if let Some(why) = check_url(&url) {
        return Err(RunError::Start(format!(
            "--rate-state {why}: write `redis://HOST:PORT/DB`, e.g. `redis://127.0.0.1:6379/0`"
        )));
    }
    let source = moat_policy::SourceRef::new(&std::sync::Arc::from("--rate-state"), 0, 0);
    Ok(Some(RateLimitState::with_url(project.rate_limit_state.as_ref(), url, source)))
}

/// Services `moat serve` cannot send anywhere: no `run:` entry, or one with a command.
fn without_upstream(project: &Project) -> Vec<String> {
    project
        .services
        .keys()
        .filter(|s| !matches!(project.run.get(*s).map(|r| &r.target), Some(RunTarget::Url(_))))
        .cloned()
        .collect()
}

fn stdout_error(e: std::io::Error) -> RunError {
    RunError::Start(format!("cannot write to stdout: {e}"))
}

/// `starting: 3/5 ready (waiting for api, orders)`, rewritten in place on a terminal.
fn progress(tty: bool, last: &mut String, ready: usize, total: usize, waiting: &[String]) {
    let line = if waiting.is_empty() {
        format!("moat: started: {ready}/{total} ready")
    } else {
        format!("moat: starting: {ready}/{total} ready (waiting for {})", waiting.join(", "))
    };
    if total == 0 || line == *last {
        return;
    }
    line.clone_into(last);
    let mut err = std::io::stderr().lock();
    if tty {
        let end = if waiting.is_empty() { "\n" } else { "" };
        let _ = write!(err, "\r\x1b[2K{line}{end}");
    } else {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}

fn print_listeners(project: &Project, runtime: &Runtime, mode: Mode, isolate: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: project {} ({})", mode.name(), project.id, project.region)?;
    writeln!(out)?;
    writeln!(out, "listeners (origin comes from the listener, never from the request)")?;
    let width = runtime.listeners().iter().map(|l| l.origin.len()).max().unwrap_or(0);
    for l in runtime.listeners() {
        let note = match l.origin.as_str() {
            "admin" => "   GET /status, /metrics, /healthz",
            "identity" => "   JWKS /oauth2/v3/certs, x509 /oauth2/v1/certs",
            "secrets" => "   Secret Manager v1 REST (MOAT_SECRETMANAGER_ENDPOINT of instances; moat secrets)",
            o if o.starts_with("service:") => "   calls from the service to other services (from its egress proxy)",
            o if o.starts_with("egress:") => "   HTTP_PROXY and HTTPS_PROXY of its instances",
            _ => "",
        };
        writeln!(out, "  {:<width$}  {}{note}", l.origin, l.addr)?;
    }
    if isolate {
        writeln!(out)?;
        writeln!(
            out,
            "isolation: each instance runs in a network namespace of its own; its only ways out are its metadata server, its HTTP_PROXY and the Secret Manager API"
        )?;
    }
    out.flush()
}

fn print_ready(runtime: &Runtime, log: &Path) -> std::io::Result<()> {
    let services = runtime.board().snapshot();
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    write!(out, "{}", table(&services))?;
    writeln!(out)?;
    if let Some(internet) = runtime.listener("internet") {
        writeln!(
            out,
            "call a service on the internet listener with its host: curl -H 'Host: HOST' http://{internet}/ (HOST: a run.app host from URL, NAME.run.localhost, a load balancer host or a mapped domain)"
        )?;
    }
    let ready = services.iter().filter(|s| s.state == moat_server::runtime::State::Ready).count();
    let started = services.iter().filter(|s| s.state != moat_server::runtime::State::NotRunning).count();
    writeln!(out, "decisions: {}", log.display())?;
    writeln!(out, "ready: {ready}/{started} services; stop with Ctrl-C")?;
    out.flush()
}
