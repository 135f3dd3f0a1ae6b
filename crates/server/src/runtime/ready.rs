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

/// A port nothing listens on right now, for the next instance.
///
/// Key decision: the port is picked below the kernel's ephemeral range. A port from port 0 is
/// an ephemeral one, and every outgoing connection on the machine takes its local port from that
/// same range: between this check and the instance's own bind, any of them could take it, and
/// the instance would fail with "address already in use" (seen in CI with tests running at
/// once). Below the range only another listener choosing the same port at random can; failing
/// that, the instance fails to listen and is restarted on a new port.
pub(super) fn free_port() -> std::io::Result<u16> {
    let (low, _) = ephemeral_range().unwrap_or(DEFAULT_EPHEMERAL);
    // From the half below the range (16384..32768 with Linux's default 32768..60999).
    let below = low / 2..low;
    if below.len() >= 1024 {
        let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), Instant::now());
        for i in 0..64u64 {
            let pick = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % below.len() as u64;
            let Ok(port) = u16::try_from(u64::from(below.start) + pick) else { continue };
            if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Linux's default `net.ipv4.ip_local_port_range`.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);

/// The kernel's ephemeral port range, from `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    match (parts.next(), parts.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing step")]
mod port_tests {
    use super::*;

    #[test]
    fn instance_ports_come_from_below_the_ephemeral_range_and_are_free() {
        let (low, _) = ephemeral_range().unwrap_or(DEFAULT_EPHEMERAL);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let port = free_port().expect("a free port");
            if low / 2 >= 1024 && (low - low / 2) >= 1024 {
                assert!((low / 2..low).contains(&port), "{port} is not below {low}");
            }
            // Free: an instance can listen on it.
            drop(std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the picked port"));
            seen.insert(port);
        }
        // Picked at random, not one port over and over.
        assert!(seen.len() > 10, "{seen:?}");
    }
}
