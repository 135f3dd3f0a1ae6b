//! One instance slot of one service: start it with the contract, wait until it listens, put it
//! behind the front door, and start it again with backoff when it exits, until moat stops.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::env::{Contract, apply};
use super::group::ProcessGroup;
use super::inject::{Injection, Prepared};
use super::isolate::Isolation;
use super::ready::{Startup, free_port, wait, wait_for};
use super::status::{Board, State};
use super::{Options, UpstreamTable, stopped};

/// Everything needed to start the service's instance, again and again.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub service: String,
    pub command: Vec<String>,
    pub dir: PathBuf,
    pub contract: Contract,
    /// Its env secrets and secret volumes.
    pub inject: Injection,
}

#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub board: Board,
    pub upstreams: UpstreamTable,
    pub options: Options,
    /// Where running instance groups are written down (`STATE/run/groups`, see `group`).
    pub groups: Option<PathBuf>,
}

/// Runs until `stop` says so; the last instance is stopped (SIGTERM, grace, SIGKILL) before it
/// returns.
pub(super) async fn supervise(slot: Slot, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut delays = shared.options.backoff.start();
    let service = slot.service.as_str();
    let mut store = slot.inject.changes();
    let mut last_refusal: Option<String> = None;
    loop {
        let started = Instant::now();
        let _ = store.borrow_and_update();
        let ended = run_once(&slot, &shared, &mut stop).await;
        let wait = delays.after_exit(started.elapsed());
        let (why, state) = match ended {
            Ended::Stopped => break,
            Ended::Failed(why) => {
                last_refusal = None;
                eprintln!("moat: `{service}` {why}");
                eprintln!("moat: restarting `{service}` in {}", human(wait));
                (why, State::Restarting)
            }
            // Said in full once; a retry that fails the same way says only that.
            Ended::NotStarted(why) if last_refusal.as_ref() == Some(&why) => {
                eprintln!(
                    "moat: `{service}` still cannot start (same reason); trying again in {} or when a secret changes",
                    human(wait)
                );
                (why, State::Failed)
            }
            Ended::NotStarted(why) => {
                eprintln!("moat: `{service}` cannot start: {why}");
                eprintln!("moat: trying `{service}` again in {} or when a secret changes", human(wait));
                last_refusal = Some(why.clone());
                (why, State::Failed)
            }
        };
        shared.upstreams.remove(service);
        shared.board.update(service, |s| {
            s.state = state;
            s.pid = None;
            s.upstream = None;
            s.error = Some(why);
            s.settled = true;
        });
        // A start that failed on a secret is tried again as soon as the store changes (a grant
        // fixed, a version enabled or added), not only when the backoff is over.
        let failed = state == State::Failed;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            Ok(()) = store.changed(), if failed => {}
            () = stopped(&mut stop) => break,
        }
        shared.board.update(service, |s| s.restarts = s.restarts.saturating_add(1));
    }
    shared.upstreams.remove(service);
    shared.board.update(service, |s| {
        s.state = State::Stopped;
        s.pid = None;
        s.upstream = None;
        s.settled = true;
    });
}

enum Ended {
    Stopped,
    /// Started, then exited or never became ready.
    Failed(String),
    /// Not started: a secret its env needs cannot be read.
    NotStarted(String),
}

async fn run_once(slot: &Slot, shared: &Shared, stop: &mut watch::Receiver<bool>) -> Ended {
    let service = slot.service.as_str();
    if *stop.borrow() {
        return Ended::Stopped;
    }
    let port = match free_port() {
        Ok(p) => p,
        Err(e) => return Ended::Failed(format!("has no free port to listen on: {e}")),
    };
    // Secrets before the process: an env secret that cannot be read keeps the instance from
    // starting, as on Cloud Run, and the volume files are there when it starts.
    let inject = slot.inject.clone();
    let mut prepared = match tokio::task::spawn_blocking(move || inject.prepare()).await {
        Ok(Ok(p)) => p,
        Ok(Err(why)) => return Ended::NotStarted(why),
        Err(e) => return Ended::NotStarted(format!("its secrets could not be read: {e}")),
    };
    slot.inject.follow(&mut prepared);
    // `--isolate`: a network namespace of its own for each instance, new on every start.
    let isolation = if shared.options.isolate {
        match Isolation::start(&slot.contract, port).await {
            Ok(i) => Some(i),
            Err(e) => return Ended::Failed(format!("cannot get a network namespace of its own: {e}")),
        }
    } else {
        None
    };
    let spawned = match &isolation {
        None => spawn(slot, port, &prepared, shared),
        Some(iso) => spawn_isolated(slot, iso, port, &prepared, shared).await,
    };
    // The values now live in the child's environment only; moat's copies are zeroed.
    prepared.env.clear();
    let (mut child, mut group) = match spawned {
        Ok(c) => c,
        Err(e) => {
            let program = slot.command.first().map_or("", String::as_str);
            return Ended::Failed(format!(
                "cannot start `{program}` in `{}`: {e} (check `run.{service}` in moat.yaml)",
                slot.dir.display()
            ));
        }
    };
    let pid = child.id();
    shared.board.update(service, |s| {
        s.state = State::Starting;
        s.pid = pid;
        s.port = Some(port);
        s.upstream = None;
    });
    let ready = async {
        match &isolation {
            None => wait(port, shared.options.ready_timeout, &mut child).await,
            Some(iso) => wait_for(|| iso.ns.connect(port), shared.options.ready_timeout, &mut child).await,
        }
    };
    let startup = tokio::select! {
        s = ready => s,
        () = stopped(stop) => {
            group.terminate(&mut child, shared.options.grace).await;
            return Ended::Stopped;
        }
    };
    match startup {
        Startup::Ready => {}
        Startup::Exited(status) => {
            group.kill();
            return Ended::Failed(format!("exited before it listened on PORT {port} ({})", exit(status)));
        }
        Startup::TimedOut => {
            group.terminate(&mut child, shared.options.grace).await;
            return Ended::Failed(format!(
                "did not listen on PORT {port} within {} (it must listen on the port in $PORT)",
                human(shared.options.ready_timeout)
            ));
        }
    }
    let upstream = match &isolation {
        None => format!("http://127.0.0.1:{port}"),
        Some(iso) => format!("http://{}", iso.upstream),
    };
    shared.upstreams.set(service, &upstream);
    shared.board.update(service, |s| {
        s.state = State::Ready;
        s.upstream = Some(upstream);
        s.error = None;
        s.settled = true;
    });
    let ran = Instant::now();
    tokio::select! {
        status = child.wait() => {
            shared.upstreams.remove(service);
            // Whatever it started goes with it, as when a container exits.
            group.kill();
            let status = status.map_or_else(|e| format!("cannot be waited for: {e}"), exit);
            Ended::Failed(format!("exited after {} ({status})", human(ran.elapsed())))
        }
        () = stopped(stop) => {
            shared.upstreams.remove(service);
            group.terminate(&mut child, shared.options.grace).await;
            Ended::Stopped
        }
    }
}

fn spawn(slot: &Slot, port: u16, prepared: &Prepared, shared: &Shared) -> std::io::Result<(Child, ProcessGroup)> {
    let mut cmd = command(slot, &slot.contract, port, prepared)?;
    Ok(adopt(slot, cmd.spawn()?, shared))
}

/// [`spawn`] inside the instance's network namespace, told the in-namespace addresses.
async fn spawn_isolated(
    slot: &Slot,
    iso: &Isolation,
    port: u16,
    prepared: &Prepared,
    shared: &Shared,
) -> std::io::Result<(Child, ProcessGroup)> {
    let cmd = command(slot, &iso.contract, port, prepared)?;
    Ok(adopt(slot, iso.ns.spawn(cmd).await?, shared))
}

fn command(slot: &Slot, contract: &Contract, port: u16, prepared: &Prepared) -> std::io::Result<Command> {
    let (program, args) = slot.command.split_first().ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(&slot.dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    apply(&mut cmd, contract, port, prepared.mount.root(), &prepared.env);
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// Puts the started instance in its own process group and relays its output.
fn adopt(slot: &Slot, mut child: Child, shared: &Shared) -> (Child, ProcessGroup) {
    let group = ProcessGroup::led_by(child.id(), &slot.service, shared.groups.as_deref());
    if let Some(out) = child.stdout.take() {
        tokio::spawn(relay(slot.service.clone(), out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(relay(slot.service.clone(), err));
    }
    (child, group)
}

/// The instance's output, line by line, on moat's stderr with the service's name in front
/// (stdout is moat's status table).
async fn relay(service: String, from: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                eprintln!("[{service}] {}", line.trim_end());
            }
        }
    }
}

fn exit(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    status.code().map_or_else(|| status.to_string(), |c| format!("exit status {c}"))
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{}ms", d.as_millis()) } else { format!("{:.1}s", d.as_secs_f64()) }
}
