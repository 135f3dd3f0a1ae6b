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
use super::lenient::{Fed, RequestLine};
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
            let io = Io::http1(stream, prefix, Arc::clone(&activity));
            let conn = http1::Builder::new()
                // Timed by `Activity`: hyper's would also cut idle keep-alive connections.
                .header_read_timeout(None)
                .max_header_size(limits.max_header_bytes)
                .serve_connection(TokioIo::new(io), service);
            driver.run(serve(conn, |c| c.graceful_shutdown(), &activity, &mut stop)).await;
        }
        _ => {
            let io = Io::http2(stream, prefix);
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

    /// Bytes arrived. On an idle HTTP/1 connection they are the start of the next head: `true`.
    fn read(&self) -> bool {
        if !self.awaiting_head.load(Ordering::Relaxed) || !self.awaiting_head.swap(false, Ordering::Relaxed) {
            return false;
        }
        let mut clock = self.clock();
        if let Phase::Idle(_) = clock.phase {
            clock.phase = Phase::Head(Instant::now());
            self.moved(clock);
        }
        true
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
/// connection's [`Activity`] (HTTP/1) when bytes arrive, and, for HTTP/1, with the request line
/// of each head hyper reads made acceptable to it ([`RequestLine`]).
#[derive(Debug)]
struct Io<S = TcpStream> {
    stream: S,
    /// Read before the protocol was known: they go through the rewriter as the stream's do.
    prefix: Bytes,
    /// Rewritten bytes that did not fit in the last read's buffer: handed on first.
    pending: Bytes,
    activity: Option<Arc<Activity>>,
    /// HTTP/1 only: HTTP/2 heads are binary frames.
    line: Option<RequestLine>,
}

impl<S> Io<S> {
    fn http1(stream: S, prefix: Bytes, activity: Arc<Activity>) -> Self {
        Self { stream, prefix, pending: Bytes::new(), activity: Some(activity), line: Some(RequestLine::new()) }
    }

    fn http2(stream: S, prefix: Bytes) -> Self {
        Self { stream, prefix, pending: Bytes::new(), activity: None, line: None }
    }
}

/// Hands on as much of `bytes` as fits in `buf`; the rest is returned.
fn put(buf: &mut ReadBuf<'_>, mut bytes: Bytes) -> Bytes {
    let n = bytes.len().min(buf.remaining());
    buf.put_slice(&bytes.split_to(n));
    bytes
}

impl<S: AsyncRead + Unpin> AsyncRead for Io<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !this.pending.is_empty() {
            this.pending = put(buf, std::mem::take(&mut this.pending));
            return Poll::Ready(Ok(()));
        }
        // Until some bytes can be handed on: a request line being rewritten is held back
        // until its end.
        loop {
            let before = buf.filled().len();
            if !this.prefix.is_empty() {
                let n = this.prefix.len().min(buf.remaining());
                buf.put_slice(&this.prefix.split_to(n));
            } else {
                match Pin::new(&mut this.stream).poll_read(cx, buf) {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
                if buf.filled().len() == before {
                    // The end of the stream: bytes held back go on as sent.
                    if let Some(line) = &mut this.line {
                        this.pending = put(buf, Bytes::from(line.end()));
                    }
                    return Poll::Ready(Ok(()));
                }
                if let Some(activity) = &this.activity
                    && activity.read()
                    && let Some(line) = &mut this.line
                {
                    line.arm();
                }
            }
            let Some(line) = &mut this.line else { return Poll::Ready(Ok(())) };
            let Fed::Rewritten { keep, then } = line.feed(buf.filled().get(before..).unwrap_or_default()) else {
                return Poll::Ready(Ok(()));
            };
            buf.set_filled(before.saturating_add(keep));
            this.pending = put(buf, Bytes::from(then));
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Io<S> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use tokio::io::{AsyncWriteExt as _, DuplexStream};

    use super::*;

    /// Reads `io` to its end in reads of at most `size` bytes.
    async fn drain(io: &mut Io<DuplexStream>, size: usize) -> String {
        let mut out = Vec::new();
        let mut buf = vec![0; size];
        loop {
            let n = io.read(&mut buf).await.unwrap();
            if n == 0 {
                return String::from_utf8(out).unwrap();
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn http1(stream: DuplexStream, prefix: &str) -> (Io<DuplexStream>, Arc<Activity>) {
        let activity = Arc::new(Activity::new(Limits::default()));
        (Io::http1(stream, Bytes::from(prefix.to_owned()), Arc::clone(&activity)), activity)
    }

    #[tokio::test]
    async fn rewritten_lines_grow_past_the_read_buffer() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (mut io, _activity) = http1(server, "GET /?q=");
        let attack = "<>".repeat(50);
        client.write_all(format!("{attack} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        drop(client);
        let want = format!("GET /?q={} HTTP/1.1\r\nHost: x\r\n\r\n", "%3C%3E".repeat(50));
        // Reads of 7 bytes: the 300 encoded bytes come out over many reads, none lost.
        assert_eq!(drain(&mut io, 7).await, want);
    }

    #[tokio::test]
    async fn a_line_sent_byte_by_byte_is_rewritten_whole() {
        let (mut client, server) = tokio::io::duplex(16);
        let (mut io, _activity) = http1(server, "");
        let sent = "GET /a?x=<script>\"1\" HTTP/1.1\r\nHost: x\r\n\r\n";
        let writer = tokio::spawn(async move {
            for b in sent.bytes() {
                client.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let out = drain(&mut io, 4096).await;
        writer.await.unwrap();
        assert_eq!(out, "GET /a?x=%3Cscript%3E%221%22 HTTP/1.1\r\nHost: x\r\n\r\n");
    }

    #[tokio::test]
    async fn each_keep_alive_head_is_rewritten_and_pipelined_ones_are_not() {
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut io, activity) = http1(server, "");
        let mut buf = vec![0; 4096];
        // The first head, with a pipelined second one in the same bytes: only the first is
        // at a head's start.
        client.write_all(b"GET /<1> HTTP/1.1\r\n\r\nGET /<2> HTTP/1.1\r\n\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET /%3C1%3E HTTP/1.1\r\n\r\nGET /<2> HTTP/1.1\r\n\r\n");
        // The response is sent: the next bytes start the next head.
        drop(activity.start());
        client.write_all(b"GET /<3> HTTP/1.1\r\n\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET /%3C3%3E HTTP/1.1\r\n\r\n");
        // While a request is in flight, bytes are body or a pipelined head: untouched.
        let _busy = activity.start();
        client.write_all(b"GET /<4> HTTP/1.1\r\n\r\n").await.unwrap();
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET /<4> HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn http2_connections_are_not_rewritten() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut io = Io::http2(server, Bytes::from_static(PREFACE));
        client.write_all(b"GET /<x> HTTP/1.1\r\n\r\n").await.unwrap();
        drop(client);
        let out = drain(&mut io, 4096).await;
        assert_eq!(out.as_bytes(), [PREFACE, b"GET /<x> HTTP/1.1\r\n\r\n"].concat());
    }

    #[tokio::test]
    async fn a_line_cut_short_goes_on_as_sent() {
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut io, _activity) = http1(server, "");
        client.write_all(b"GET /<x").await.unwrap();
        drop(client);
        assert_eq!(drain(&mut io, 4096).await, "GET /<x");
    }
}
