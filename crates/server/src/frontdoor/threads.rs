//! The threads client connections run on: one single-threaded tokio runtime per core.
//!
//! Key decision: a connection lives its whole life on one thread. On tokio's work-stealing
//! runtime a request's wake-ups (client socket, upstream socket, the decision sink) keep
//! moving its task between workers, and the workers keep waking each other to steal; on the
//! front door's loopback benchmark that cost about a third of moat's CPU per request (user and
//! system time alike, `docs/BENCHMARKS.md` "Front door"). nginx's workers are built the same
//! way. [`FrontDoor::serve`](super::FrontDoor::serve) accepts on its caller's runtime and hands
//! each connection to the next thread in turn, so connections spread evenly however fast they
//! arrive (a shared listening socket polled by every thread would let whichever wakes first
//! take a whole burst).
//!
//! The threads are made once per process, on first use, and live as long as it; a connection
//! task on them is tracked and aborted by the `serve` that spawned it, like any other task.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

static THREADS: OnceLock<Vec<Handle>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The runtime the next connection should run on; `None` when no thread could be started (the
/// connection then runs on the caller's runtime, as it would on any tokio server).
pub(super) fn next() -> Option<&'static Handle> {
    let threads = THREADS.get_or_init(start);
    if threads.is_empty() {
        return None;
    }
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % threads.len();
    threads.get(i)
}

/// How many threads: `MOAT_DOOR_THREADS` when set (1 to 256), else one per core (at most 64).
fn count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(64);
    match std::env::var(THREADS_VAR) {
        Err(std::env::VarError::NotPresent) => cores,
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n @ 1..=256) => n,
            _ => {
                tracing::error!("{THREADS_VAR}={v:?} is not a number of threads from 1 to 256; using {cores}");
                cores
            }
        },
        Err(std::env::VarError::NotUnicode(_)) => {
            tracing::error!("{THREADS_VAR} is not valid UTF-8; using {cores} threads");
            cores
        }
    }
}

/// Overrides the number of connection threads (a whole number from 1 to 256).
pub const THREADS_VAR: &str = "MOAT_DOOR_THREADS";

fn start() -> Vec<Handle> {
    let n = count();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        match spawn(i) {
            Ok(h) => handles.push(h),
            Err(e) => {
                // Fewer threads only cost throughput; the connections still run (on fewer
                // threads, or on the caller's runtime).
                tracing::warn!("front door: could not start connection thread {i}: {e}");
                break;
            }
        }
    }
    handles
}

/// One thread running a current-thread runtime until the process exits.
fn spawn(i: usize) -> std::io::Result<Handle> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name(format!("moat-door-{i}")).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let _ = tx.send(Ok(rt.handle().clone()));
        // Drives every task spawned on this runtime, for as long as the process lives.
        rt.block_on(std::future::pending::<()>());
    })?;
    rx.recv().map_err(|_| std::io::Error::other("the thread ended before its runtime started"))?
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing step")]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Connections go to every thread in turn, and each runs on a `moat-door-N` thread.
    #[test]
    fn connections_take_the_threads_in_turn() {
        let n = THREADS.get_or_init(start).len();
        assert!(n >= 1, "no connection thread started");
        let mut seen = HashSet::new();
        for _ in 0..2 * n {
            let handle = next().expect("a thread");
            let (tx, rx) = std::sync::mpsc::channel();
            handle.spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
            let name = rx.recv().expect("the task ran").expect("a named thread");
            assert!(name.starts_with("moat-door-"), "{name}");
            seen.insert(name);
        }
        assert_eq!(seen.len(), n, "every thread takes connections: {seen:?}");
    }
}
