//! `moat up --isolate`: each instance runs in a Linux network namespace of its own, with only a
//! loopback interface. Its ways out are the relays moat opens into it (its metadata server, its
//! egress proxy, the Secret Manager API) and its way in is one relay to its `PORT`, so a
//! workload that ignores `HTTP_PROXY` and opens raw sockets reaches nothing.
//!
//! Key decision: no `unsafe` (no `pre_exec`, no `clone`). A dedicated OS thread unshares its
//! own network namespace (allowed in a multi-threaded process: only that thread moves) and
//! stays there for the namespace's life. Two facts make that thread enough: a socket belongs
//! to the namespace it was created in, whichever thread uses it later, and a child starts in
//! the namespace of the thread that forked it. So the thread only creates sockets and spawns
//! processes; every byte is relayed by ordinary tasks on the runtime.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};

use super::env::Contract;

/// One network namespace, alive while this value is (and while a process still runs in it).
/// Dropping it stops its relays and its thread.
pub struct NetNs {
    thread: Thread,
    relays: Vec<AbortHandle>,
    /// The thread's handle on the namespace (`/proc/thread-self/ns/net`), held open so the
    /// namespace outlives any one of its processes.
    _handle: File,
}

impl std::fmt::Debug for NetNs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetNs").field("relays", &self.relays.len()).finish_non_exhaustive()
    }
}

/// What the namespace's thread does for the rest of moat.
enum Request {
    Socket(oneshot::Sender<io::Result<TcpSocket>>),
    Spawn(Box<Command>, oneshot::Sender<io::Result<Child>>),
}

/// The way to the namespace's thread; relays keep a clone to open connections inside.
#[derive(Clone)]
struct Thread(mpsc::Sender<Request>);

impl Thread {
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> io::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.0.send(request(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// A TCP socket that lives in the namespace.
    async fn socket(&self) -> io::Result<TcpSocket> {
        self.ask(Request::Socket).await?
    }

    async fn connect(&self, port: u16) -> io::Result<TcpStream> {
        self.socket().await?.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
    }
}

fn gone() -> io::Error {
    io::Error::other("the network namespace's thread has ended")
}

impl NetNs {
    /// Whether this process can create network namespaces: creates one, brings its loopback
    /// up, and lets it go. The error says what failed.
    pub fn available() -> Result<(), String> {
        match std::thread::spawn(|| enter().map(drop)).join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the thread that tried a network namespace panicked".to_owned()),
        }
    }

    /// A new namespace with its loopback interface up. Must be called within a tokio runtime:
    /// children spawned in the namespace are reaped by it.
    pub async fn new() -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (requests, incoming) = mpsc::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new().name("moat-netns".to_owned()).spawn(move || {
            let handle = match enter() {
                Ok(h) => h,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            if ready_tx.send(Ok(handle)).is_ok() {
                let _runtime = runtime.enter();
                serve(&incoming);
            }
        })?;
        let handle = ready_rx.await.map_err(|_| gone())??;
        Ok(Self { thread: Thread(requests), relays: Vec::new(), _handle: handle })
    }

    /// A listener on `127.0.0.1:port` inside the namespace (`0`: any free port), for a caller
    /// that serves it itself (the host side of moat reaches it only through
    /// [`NetNs::connect`]).
    pub async fn listen(&self, port: u16) -> io::Result<TcpListener> {
        let socket = self.thread.socket().await?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
        socket.listen(1024)
    }

    /// Opens `127.0.0.1:PORT` inside the namespace and relays every connection to it to
    /// `target` on the host. PORT is `target`'s own port when it is free inside (it is in a
    /// new namespace), so a loopback address means the same inside and out; metadata clients
    /// put it in `Host`, which the metadata server checks. Returns PORT.
    pub async fn bind_inward(&mut self, target: SocketAddr) -> io::Result<u16> {
        let listener = match self.listen(target.port()).await {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => self.listen(0).await?,
            Err(e) => return Err(e),
        };
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(relay(listener, move || TcpStream::connect(target)));
        self.relays.push(task.abort_handle());
        Ok(port)
    }

    /// Opens a host listener on `127.0.0.1:0` and relays every connection to it to
    /// `127.0.0.1:port` inside the namespace. Returns the host address. Must be called from a
    /// task of the runtime (whose threads are in the host's namespace).
    pub async fn expose_outward(&mut self, port: u16) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let thread = self.thread.clone();
        let task = tokio::spawn(relay(listener, move || {
            let thread = thread.clone();
            async move { thread.connect(port).await }
        }));
        self.relays.push(task.abort_handle());
        Ok(addr)
    }

    /// A connection to `127.0.0.1:port` inside the namespace (the readiness probe's).
    pub async fn connect(&self, port: u16) -> io::Result<TcpStream> {
        self.thread.connect(port).await
    }

    /// Starts `cmd` inside the namespace.
    pub async fn spawn(&self, cmd: Command) -> io::Result<Child> {
        self.thread.ask(|tx| Request::Spawn(Box::new(cmd), tx)).await?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // The relays hold the last senders to the thread: once they are gone it ends, and the
        // namespace with its last process and socket.
        for relay in &self.relays {
            relay.abort();
        }
    }
}

/// The namespace's thread: socket creation and process spawning, until every sender is gone.
fn serve(incoming: &mpsc::Receiver<Request>) {
    while let Ok(request) = incoming.recv() {
        match request {
            Request::Socket(reply) => {
                let _ = reply.send(TcpSocket::new_v4());
            }
            Request::Spawn(mut cmd, reply) => {
                let _ = reply.send(cmd.spawn());
            }
        }
    }
}

/// Accepts on `listener` and joins each connection to a fresh one from `connect`. The
/// connections in flight end with the relay (they live in its `JoinSet`).
async fn relay<F, Fut>(listener: TcpListener, connect: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = io::Result<TcpStream>> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        let mut from = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::debug!("isolation relay cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let to = connect();
        conns.spawn(async move {
            // Refused on the other side: closing this side is the closest answer.
            let Ok(mut to) = to.await else { return };
            let _ = from.set_nodelay(true);
            let _ = to.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
        });
    }
}

/// Moves the calling thread into a new network namespace and brings its loopback up.
#[cfg(target_os = "linux")]
fn enter() -> io::Result<File> {
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot create a network namespace (unshare CLONE_NEWNET): {e}"),
        )
    })?;
    // A child forked from this thread runs in its namespace.
    let out = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound { " (install iproute2)" } else { "" };
            io::Error::new(e.kind(), format!("cannot run `ip link set lo up` in a new network namespace: {e}{hint}"))
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip link set lo up` failed in a new network namespace ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    File::open("/proc/thread-self/ns/net")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open `/proc/thread-self/ns/net`: {e}")))
}

#[cfg(not(target_os = "linux"))]
fn enter() -> io::Result<File> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "network namespaces are a Linux feature"))
}

/// An isolated instance's namespace and what it is told inside it: the same addresses as
/// without isolation, unless a port was taken inside.
#[derive(Debug)]
pub(super) struct Isolation {
    pub ns: NetNs,
    /// The service's contract with the in-namespace relays in place of the host addresses of
    /// its metadata server, egress proxy and Secret Manager API.
    pub contract: Contract,
    /// Where the front door reaches the instance's `PORT`.
    pub upstream: SocketAddr,
}

impl Isolation {
    /// A new namespace for one instance that will listen on `port` inside it.
    pub async fn start(contract: &Contract, port: u16) -> io::Result<Self> {
        let mut ns = NetNs::new().await?;
        let mut inside = contract.clone();
        inside.metadata = loopback(ns.bind_inward(contract.metadata).await?);
        if let Some(proxy) = contract.proxy {
            inside.proxy = Some(loopback(ns.bind_inward(proxy).await?));
        }
        if let Some(endpoint) = &contract.secrets_endpoint {
            let addr =
                endpoint.strip_prefix("http://").and_then(|a| a.parse::<SocketAddr>().ok()).ok_or_else(|| {
                    io::Error::other(format!("the Secret Manager endpoint `{endpoint}` is not http://ADDR"))
                })?;
            inside.secrets_endpoint = Some(format!("http://{}", loopback(ns.bind_inward(addr).await?)));
        }
        let upstream = ns.expose_outward(port).await?;
        Ok(Self { ns, contract: inside, upstream })
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
