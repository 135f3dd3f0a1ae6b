//! HTTP/1.1 connections to the workload, owned by one client connection.
//!
//! Key decision: a pooled client (hyper-util's) runs every upstream connection as a task of its
//! own, so each request and each response crosses two tasks, often two threads. For an HTTP/1
//! client connection, whose requests come one at a time, the client connection's task polls
//! its upstream connections itself ([`Driver`]), next to the hyper server connection, and keeps
//! the idle ones for its next keep-alive request ([`Conns`]). An HTTP/2 client connection
//! carries many requests at once, each on a task of its own ([`spawned`]): there each upstream
//! connection is a task too, a request takes a kept connection only if it is free right now
//! and otherwise opens another, so concurrent requests never wait on each other's connection.
//! What goes on the wire is what hyper-util's client sends: Host filled in from the URL when
//! the request has none, origin-form (authority-form for CONNECT), and a request that never
//! started on a reused connection is retried once on a fresh one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Waker};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::Capped;

/// Idle upstream connections an HTTP/1 client connection keeps (one per workload it calls,
/// usually).
const MAX_IDLE: usize = 4;
/// Idle upstream connections an HTTP/2 client connection keeps: enough for its usual number of
/// requests at once; past it the oldest are closed.
const MAX_IDLE_SPAWNED: usize = 16;
/// How long a kept connection may take to be ready for the next request (it normally already
/// is: the previous response was read to its end) before a fresh one is opened instead.
const READY_WAIT: Duration = Duration::from_millis(100);

type ConnFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Default)]
struct State {
    /// Kept connections, by `HOST:PORT`, oldest first.
    idle: Vec<(String, SendRequest<Capped>)>,
    /// Connections opened since the driver last ran.
    opened: Vec<ConnFuture>,
    waker: Option<Waker>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The request side: what the pipeline sends requests through. Clones share the connections.
#[derive(Clone)]
pub(super) struct Conns {
    state: Arc<Mutex<State>>,
    /// Each upstream connection runs as a task of its own (HTTP/2 client connections), instead
    /// of on a [`Driver`].
    spawned: bool,
}

/// The connection side: polls every upstream connection of one client connection. Must be
/// polled on the same task as whatever awaits [`Conns::send`] (see [`Driver::run`]).
pub(super) struct Driver {
    state: Arc<Mutex<State>>,
    running: Vec<ConnFuture>,
}

/// Connections for an HTTP/1 client connection, driven on its task.
pub(super) fn new() -> (Conns, Driver) {
    let state = Arc::new(Mutex::new(State::default()));
    (Conns { state: Arc::clone(&state), spawned: false }, Driver { state, running: Vec::new() })
}

/// Connections for an HTTP/2 client connection: concurrent requests, each upstream connection
/// a task of its own.
pub(super) fn spawned() -> Conns {
    Conns { state: Arc::new(Mutex::new(State::default())), spawned: true }
}

/// Why the workload could not be asked.
#[derive(Debug)]
pub(super) struct SendError;

impl Conns {
    /// Sends `req` (an absolute `http://` URL) and returns the response head; the body streams
    /// as long as the [`Driver`] is polled.
    pub(super) async fn send(&self, mut req: Request<Capped>) -> Result<Response<Incoming>, SendError> {
        let uri = req.uri().clone();
        if uri.scheme_str() != Some("http") {
            return Err(SendError);
        }
        let host = uri.host().ok_or(SendError)?;
        let key = connect_key(host, uri.port_u16().unwrap_or(80));
        req.headers_mut().entry(HOST).or_insert_with(|| host_header(&uri, host));
        *req.uri_mut() = if req.method() == Method::CONNECT { authority_form(&uri) } else { origin_form(&uri) };
        loop {
            let (mut sender, reused) = match self.checkout(&key).await {
                Some(sender) => (sender, true),
                None => (self.connect(&key).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin(key, sender);
                    return Ok(resp);
                }
                // Never started on a kept connection (it closed under us): once more, fresh.
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError),
                },
            }
        }
    }

    /// A kept connection to `key` that can take a request now, if there is one.
    async fn checkout(&self, key: &str) -> Option<SendRequest<Capped>> {
        if self.spawned {
            // Another request may be streaming its response on a kept connection for as long
            // as it likes: only a connection that is free right now will do.
            let mut state = lock(&self.state);
            state.idle.retain(|(_, s)| !s.is_closed());
            let at = state.idle.iter().rposition(|(k, s)| k == key && s.is_ready())?;
            return Some(state.idle.remove(at).1);
        }
        // One request at a time: the kept connection is finishing the previous response.
        let mut sender = {
            let mut state = lock(&self.state);
            let at = state.idle.iter().rposition(|(k, _)| k == key)?;
            state.idle.remove(at).1
        };
        if sender.is_closed() {
            return None;
        }
        if sender.is_ready() {
            return Some(sender);
        }
        match tokio::time::timeout(READY_WAIT, sender.ready()).await {
            Ok(Ok(())) => Some(sender),
            _ => None,
        }
    }

    fn checkin(&self, key: String, sender: SendRequest<Capped>) {
        if sender.is_closed() {
            return;
        }
        let max = if self.spawned { MAX_IDLE_SPAWNED } else { MAX_IDLE };
        let mut state = lock(&self.state);
        if state.idle.len() >= max {
            state.idle.remove(0);
        }
        state.idle.push((key, sender));
    }

    async fn connect(&self, key: &str) -> Result<SendRequest<Capped>, SendError> {
        let stream = TcpStream::connect(key).await.map_err(|_| SendError)?;
        // Request heads are small writes the workload waits for.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|_| SendError)?;
        let conn = async move {
            // A connection error is the request's (it gets a 502), or the connection ends.
            let _ = conn.await;
        };
        if self.spawned {
            tokio::spawn(conn);
            return Ok(sender);
        }
        let conn: ConnFuture = Box::pin(conn);
        let waker = {
            let mut state = lock(&self.state);
            state.opened.push(conn);
            state.waker.clone()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(sender)
    }
}

impl Driver {
    /// Runs `fut` to completion, polling the upstream connections on the same task.
    pub(super) async fn run<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            self.poll_conns(cx);
            let out = fut.as_mut().poll(cx);
            // A request made during that poll opened a connection: start it now.
            if out.is_pending() && !lock(&self.state).opened.is_empty() {
                self.poll_conns(cx);
            }
            out
        })
        .await
    }

    fn poll_conns(&mut self, cx: &mut Context<'_>) {
        {
            let mut state = lock(&self.state);
            self.running.append(&mut state.opened);
            if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.waker = Some(cx.waker().clone());
            }
        }
        self.running.retain_mut(|conn| conn.as_mut().poll(cx).is_pending());
    }
}

/// `HOST:PORT`, what connections are kept by and connected to (built without formatting: once
/// per request).
fn connect_key(host: &str, port: u16) -> String {
    let mut port_text = itoa::Buffer::new();
    let port_text = port_text.format(port);
    let mut key = String::with_capacity(host.len() + 1 + port_text.len());
    key.push_str(host);
    key.push(':');
    key.push_str(port_text);
    key
}

/// What hyper-util's client puts in a missing Host: the URL's host, and its port unless it is
/// the default one.
fn host_header(uri: &Uri, host: &str) -> HeaderValue {
    let value = match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::try_from(format!("{host}:{port}")),
        _ => HeaderValue::try_from(host),
    };
    value.unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => {
            let mut parts = hyper::http::uri::Parts::default();
            parts.path_and_query = Some(pq.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    }
}

fn authority_form(uri: &Uri) -> Uri {
    let mut parts = hyper::http::uri::Parts::default();
    parts.authority = uri.authority().cloned();
    Uri::from_parts(parts).unwrap_or_default()
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests name the failing input")]
mod tests {
    use super::*;

    #[test]
    fn request_targets_and_host_as_hyper_util_sends_them() {
        let uri: Uri = "http://127.0.0.1:9000/a/b?c=d".parse().expect("uri");
        assert_eq!(origin_form(&uri).to_string(), "/a/b?c=d");
        assert_eq!(authority_form(&uri).to_string(), "127.0.0.1:9000");
        assert_eq!(host_header(&uri, "127.0.0.1"), "127.0.0.1:9000");
        let uri: Uri = "http://[::1]/".parse().expect("uri");
        assert_eq!(origin_form(&uri).to_string(), "/");
        assert_eq!(host_header(&uri, uri.host().expect("host")), "[::1]");
        let uri: Uri = "http://example.com:80/x".parse().expect("uri");
        assert_eq!(host_header(&uri, "example.com"), "example.com");
        assert_eq!(connect_key("127.0.0.1", 9000), "127.0.0.1:9000");
        assert_eq!(connect_key("[::1]", 80), "[::1]:80");
    }
}
