//! `moat serve-identity`: the project's identity listener (JWKS, x509 certs, OpenID discovery)
//! and one metadata server for one service account, until SIGINT or SIGTERM. Stdout carries
//! only the `NAME=value` lines a client needs, so a harness can read them; logs go to stderr.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use moat_server::identity::base_url;
use moat_server::{IdentityState, Workload};
use tokio::net::TcpListener;

use crate::exit::{Exit, report};
use crate::identity::{IdentityError, keys_dir, keys_error, known_account, parse_principal, state_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The project directory (contains moat.yaml).
    pub project: PathBuf,
    /// The workload's service account: serviceAccount:EMAIL, one the project knows.
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub principal: String,
    /// Where the metadata server listens (loopback only; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where the identity listener (JWKS, certs, discovery) listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub identity_listen: SocketAddr,
    /// State directory (holds the signing keys under keys/). Default: PROJECT/.moat.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// How often the signing key rotates: a number with a unit, s, m, h or d (e.g. 24h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "24h")]
    pub rotate_every: Duration,
}

pub fn run(args: Args) -> Exit {
    // Rotations and failures are logged to stderr; RUST_LOG overrides the level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,moat_server=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return report(IdentityError::Usage(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => Exit::Clean,
        Err(e) => report(e),
    }
}

async fn serve(args: Args) -> Result<(), miette::Report> {
    let project = crate::project_dir::load(&args.project)?;
    let principal = parse_principal(&args.principal)?;
    if !matches!(principal, moat_policy::Principal::ServiceAccount(_)) {
        return Err(IdentityError::NotServiceAccount { given: args.principal.clone() }.into());
    }
    let account = known_account(&project, &principal)?;
    if !args.listen.ip().is_loopback() {
        return Err(IdentityError::NotLoopback { addr: args.listen }.into());
    }
    let state = state_dir(&args.project, args.state.as_deref());
    let keys = keys_dir(&state);
    let identity = Arc::new(IdentityState::from_store(&keys).map_err(|e| keys_error(&keys, &e))?);
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr).await.map_err(|e| IdentityError::Usage(format!("cannot listen on `{addr}`: {e}")))
    };
    let metadata_listener = bind(args.listen).await?;
    let identity_listener = bind(args.identity_listen).await?;
    let mds = metadata_listener.local_addr().map_err(|e| IdentityError::Usage(e.to_string()))?;
    let ids = base_url(identity_listener.local_addr().map_err(|e| IdentityError::Usage(e.to_string()))?);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let workload = Workload::cloud_run(&project, &account.email);
    let metadata = tokio::spawn(moat_server::serve_metadata_until(
        metadata_listener,
        workload,
        Arc::clone(&identity),
        until(stopped.clone()),
    ));
    let listener =
        tokio::spawn(moat_server::serve_identity_until(identity_listener, Arc::clone(&identity), until(stopped)));
    let rotation = moat_server::spawn_rotation(Arc::clone(&identity), args.rotate_every);

    let mut shutdown =
        Shutdown::install().map_err(|e| IdentityError::Usage(format!("cannot install signal handlers: {e}")))?;
    print_env(mds, &ids).map_err(|e| IdentityError::Usage(format!("cannot write to stdout: {e}")))?;
    eprintln!(
        "moat: metadata server for `{}` on {mds}, identity listener on {ids}; stop with Ctrl-C",
        account.principal()
    );

    shutdown.wait().await;
    eprintln!("moat: shutting down");
    let _ = stop.send(true);
    rotation.abort();
    for (what, task) in [("metadata server", metadata), ("identity listener", listener)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(IdentityError::Usage(format!("{what}: {e}")).into()),
            Err(e) => return Err(IdentityError::Usage(format!("{what} failed: {e}")).into()),
        }
    }
    Ok(())
}

/// The environment a client on this machine needs: google-auth reads GCE_METADATA_HOST (data)
/// and GCE_METADATA_IP (ping), gcloud reads GCE_METADATA_ROOT.
fn print_env(mds: SocketAddr, ids: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "GCE_METADATA_HOST={mds}")?;
    writeln!(out, "GCE_METADATA_IP={mds}")?;
    writeln!(out, "GCE_METADATA_ROOT={mds}")?;
    writeln!(out, "MOAT_JWKS_URL={ids}/oauth2/v3/certs")?;
    writeln!(out, "MOAT_X509_CERTS_URL={ids}/oauth2/v1/certs")?;
    out.flush()
}

/// SIGINT or SIGTERM. The handlers are installed when this is built, before the environment
/// lines are printed: a harness may signal as soon as it has read them.
pub(crate) struct Shutdown {
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 2],
}

impl Shutdown {
    pub(crate) fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self { signals: [signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?] })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    pub(crate) async fn wait(&mut self) {
        #[cfg(unix)]
        {
            let [int, term] = &mut self.signals;
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `30s`, `15m`, `24h`, `7d`. A unit is required so that `--rotate-every 24` is not read as
/// 24 seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: use a number and a unit, s, m, h or d (e.g. 24h)");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(per).ok_or_else(bad)?;
    if secs == 0 {
        return Err(format!("`{s}`: the rotation period must be longer than zero"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_server::identity::DEFAULT_ROTATE_EVERY;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["24", "h", "", "0s", "-1h", "1.5h", "1w", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_period_is_a_day() {
        assert_eq!(parse_duration("24h"), Ok(DEFAULT_ROTATE_EVERY));
    }
}
