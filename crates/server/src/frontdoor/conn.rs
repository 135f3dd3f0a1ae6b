//! One client connection: the protocol it speaks (HTTP/1.1, or HTTP/2 with prior knowledge,
//! "h2c", on the same listener) and how long it may stay open.
//!
//! Key decision: the front door keeps a connection's clocks itself ([`Activity`]). hyper's
//! HTTP/1 header read timeout also runs while a keep-alive connection waits for its next
//! request, so idle connections would close after it (seconds) instead of after the keep-alive
//! timeout (minutes); hyper's HTTP/2 server has neither. A connection is reading a head (the
//! first from the moment it is accepted, each later one from its first byte), busy (requests
//! in flight, bounded by the request timeout alone), or idle. The protocol is sniffed here too,
//! rather than by hyper-util's `auto` builder, which cannot set HTTP/1's head size limit.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use moat_policy::Origin;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::body::Body;
use super::{Inner, Limits, pipeline, stopped, upstream};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Serves one client connection until it ends, its clocks run out, or the door shuts down.
pub(super) async fn connection(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr, origin: Arc<Origin>) {
    let limits = inner.limits;
    let mut stop = inner.shutdown.subscribe();
    let activity = Arc::new(Activity::new(limits));
    // The first head is due within the header read timeout, and the protocol is in its first
    // bytes.
    let sniffed = tokio::select! {
        s = tokio::time::timeout(limits.header_read_timeout, sniff(stream)) => s,
        () = stopped(&mut stop) => return,
    };
    let Ok(Ok(Some((protocol, stream, prefix)))) = sniffed else { return };
    // HTTP/1 requests come one at a time: their upstream connections run on this task. HTTP/2
    // requests run concurrently, each on a task of its own, and so do their upstream
    // connections.
    let (conns, driver) = match protocol {
        Protocol::Http1 => {
            let (conns, driver) = upstream::new();
            (conns, Some(driver))
        }
        Protocol::Http2 => (upstream::spawned(), None),
    };
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let busy = activity.start();
            let inner = Arc::clone(&inner);
            let origin = Arc::clone(&origin);
            let conns = conns.clone();
            async move {
                let resp = pipeline::handle(&inner, &conns, &origin, peer, req).await?;
                // The connection is busy until the response has been sent (or given up on).
                Ok::<_, pipeline::NoRoute>(resp.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    match (protocol, driver) {
        (Protocol::Http1, Some(mut driver)) => {
            // Reads tell the clock when the next head starts.
            let io = Io { stream, prefix, activity: Some(Arc::clone(&activity)) };
            let conn = http1::Builder::new()
                // Timed by `Activity`: hyper's would also cut idle keep-alive connections.
                .header_read_timeout(None)
                .max_header_size(limits.max_header_bytes)
                .serve_connection(TokioIo::new(io), service);
            driver.run(serve(conn, |c| c.graceful_shutdown(), &activity, &mut stop)).await;
        }
        _ => {
            let io = Io { stream, prefix, activity: None };
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
                .serve_connection(TokioIo::new(io), service);
            serve(conn, |c| c.graceful_shutdown(), &activity, &mut stop).await;
        }
    }
}

/// Reads until the bytes are, or cannot be, the HTTP/2 preface. `None` when the client closed
/// without sending anything. What was read goes back in front of the stream ([`Io`]).
async fn sniff(mut stream: TcpStream) -> io::Result<Option<(Protocol, TcpStream, Bytes)>> {
    // Room for a whole request head, usually, so HTTP/1 needs no second read to start.
    let mut buf = Vec::with_capacity(4096);
    let protocol = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            // A fragment and then the end: HTTP/1 answers it (or not) as it would anyway.
            break Protocol::Http1;
        }
        let n = buf.len().min(PREFACE.len());
        if buf.get(..n) != PREFACE.get(..n) {
            break Protocol::Http1;
        }
        if n == PREFACE.len() {
            break Protocol::Http2;
        }
    };
    Ok(Some((protocol, stream, Bytes::from(buf))))
}

/// Drives `conn` until it ends, shutting it down gracefully when the door stops or it has been
/// idle too long, and dropping it (closing the socket) when a head or a closing connection
/// takes too long.
async fn serve<C, E>(conn: C, graceful: impl Fn(Pin<&mut C>), activity: &Activity, stop: &mut watch::Receiver<bool>)
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = pin!(conn);
    let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
    let mut armed = false;
    // Never under the clock's lock: hyper may drop a response body (which takes the lock) while
    // it shuts down.
    let close = |conn: Pin<&mut C>| {
        activity.closing();
        graceful(conn);
    };
    loop {
        // The timer only ever moves earlier here: a later deadline is picked up when the
        // earlier one fires, so a busy connection does not reset its timer on every request.
        {
            let mut clock = activity.clock();
            if let Some((at, _)) = clock.due(&activity.limits)
                && clock.armed.is_none_or(|armed| at < armed)
            {
                timer.as_mut().reset(at);
                clock.armed = Some(at);
                armed = true;
            }
        }
        tokio::select! {
            biased;
            // Errors are the client's (reset, bad request) or a network refusal: the connection
            // simply ends.
            _ = conn.as_mut() => return,
            () = activity.sooner.notified() => {}
            () = stopped(stop), if !activity.clock().closing => close(conn.as_mut()),
            () = timer.as_mut(), if armed => {
                armed = false;
                let due = {
                    let mut clock = activity.clock();
                    clock.armed = None;
                    clock.due(&activity.limits)
                };
                // The phase may have moved on since the timer was set.
                match due {
                    Some((at, _)) if at > Instant::now() => {}
                    None => {}
                    Some((_, Expiry::Idle)) => close(conn.as_mut()),
                    Some((_, Expiry::Head | Expiry::Closing)) => return,
                }
            }
        }
    }
}

/// Where one client connection stands, for its clocks.
#[derive(Debug)]
struct Activity {
    clock: Mutex<Clock>,
    limits: Limits,
    /// Wakes the connection's task when the phase changed to one whose deadline comes before
    /// the timer's.
    sooner: Notify,
    /// Idle, so the next byte read starts a head (HTTP/1 only).
    awaiting_head: AtomicBool,
}

#[derive(Debug)]
struct Clock {
    phase: Phase,
    /// Shutting down (the door stopped, or the connection was idle too long).
    closing: bool,
    /// When the connection's timer fires, if it is set.
    armed: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request head since then (the first from the connection's start).
    Head(Instant),
    /// This many requests in flight.
    Busy(usize),
    /// Nothing in flight since then.
    Idle(Instant),
}

/// What a connection's timer running out means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A head took longer than the header read timeout: the connection is closed.
    Head,
    /// The keep-alive timeout: the connection shuts down gracefully.
    Idle,
    /// A connection shutting down has had its grace (a header read timeout) to finish.
    Closing,
}

impl Clock {
    /// When the connection's timer should run out next, and what that means; `None` while
    /// busy (or for a timeout too large to represent).
    fn due(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let (since, after, expiry) = match self.phase {
            Phase::Busy(_) => return None,
            Phase::Head(t) => (t, limits.header_read_timeout, Expiry::Head),
            Phase::Idle(t) if self.closing => (t, limits.header_read_timeout, Expiry::Closing),
            Phase::Idle(t) => (t, limits.idle_timeout, Expiry::Idle),
        };
        Some((since.checked_add(after)?, expiry))
    }
}

impl Activity {
    fn new(limits: Limits) -> Self {
        Self {
            clock: Mutex::new(Clock { phase: Phase::Head(Instant::now()), closing: false, armed: None }),
            limits,
            sooner: Notify::new(),
            awaiting_head: AtomicBool::new(false),
        }
    }

    fn clock(&self) -> MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the connection's task if the timer has to be set earlier.
    fn moved(&self, clock: MutexGuard<'_, Clock>) {
        let sooner = match (clock.due(&self.limits), clock.armed) {
            (Some((at, _)), Some(armed)) => at < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        drop(clock);
        if sooner {
            self.sooner.notify_one();
        }
    }

    /// A request arrived (its head is complete). A busy connection has no deadline: a timer
    /// still set for an earlier phase finds that out when it fires.
    fn start(self: &Arc<Self>) -> Busy {
        let mut clock = self.clock();
        clock.phase = match clock.phase {
            Phase::Busy(n) => Phase::Busy(n.saturating_add(1)),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        self.awaiting_head.store(false, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    fn finish(&self) {
        let mut clock = self.clock();
        match clock.phase {
            Phase::Busy(n) if n > 1 => clock.phase = Phase::Busy(n - 1),
            Phase::Busy(_) => {
                clock.phase = Phase::Idle(Instant::now());
                self.awaiting_head.store(true, Ordering::Relaxed);
                self.moved(clock);
            }
            Phase::Head(_) | Phase::Idle(_) => {}
        }
    }

    /// The connection starts shutting down; if idle, it gets its grace from now.
    fn closing(&self) {
        let mut clock = self.clock();
        clock.closing = true;
        if let Phase::Idle(_) = clock.phase {
            clock.phase = Phase::Idle(Instant::now());
        }
    }

    /// Bytes arrived. On an idle HTTP/1 connection they are the start of the next head.
    fn read(&self) {
        if !self.awaiting_head.load(Ordering::Relaxed) || !self.awaiting_head.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut clock = self.clock();
        if let Phase::Idle(_) = clock.phase {
            clock.phase = Phase::Head(Instant::now());
            self.moved(clock);
        }
    }
}

/// One request in flight on the connection, until dropped.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// A response body that keeps its connection busy until it has been sent or dropped.
#[derive(Debug)]
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's stream with the bytes the sniff read put back in front, telling the
/// connection's [`Activity`] (HTTP/1) when bytes arrive.
#[derive(Debug)]
struct Io {
    stream: TcpStream,
    prefix: Bytes,
    activity: Option<Arc<Activity>>,
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() && buf.remaining() > 0 {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(activity) = &this.activity
        {
            activity.read();
        }
        polled
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
