//! Readiness: an instance is ready once something accepts TCP connections on its `PORT`, Cloud
//! Run's default startup probe (spec/cloudrun.md §3.4).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::Child;

/// How the first moments of an instance went.
#[derive(Debug)]
pub(super) enum Startup {
    Ready,
    /// The process ended before it listened.
    Exited(ExitStatus),
    /// Nothing listened on the port in time.
    TimedOut,
}

const POLL: Duration = Duration::from_millis(25);

/// Polls `127.0.0.1:port` until it accepts a connection, the child exits, or `timeout` passes.
pub(super) async fn wait(port: u16, timeout: Duration, child: &mut Child) -> Startup {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_for(|| TcpStream::connect(addr), timeout, child).await
}

/// [`wait`] with another way to connect (an isolated instance's port is inside its network
/// namespace).
pub(super) async fn wait_for<F, Fut>(mut connect: F, timeout: Duration, child: &mut Child) -> Startup
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<TcpStream>>,
{
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Startup::Exited(status),
            Ok(None) => {}
            // The child cannot be asked: treat it as gone, the supervisor restarts it.
            Err(e) => {
                tracing::warn!("cannot check on an instance: {e}");
            }
        }
        if let Ok(Ok(_)) = tokio::time::timeout(POLL * 4, connect()).await {
            return Startup::Ready;
        }
        if started.elapsed() >= timeout {
            return Startup::TimedOut;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A port nothing listens on right now, for the next instance. Another process may take it
/// before the instance binds it; the instance then fails to listen and is restarted on a new
/// port.
pub(super) fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}
