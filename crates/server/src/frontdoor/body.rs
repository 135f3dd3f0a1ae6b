//! Bodies through the front door, never buffered: every response it writes (a page of its own,
//! or the workload's response streamed through as it arrives), and request bodies on their way
//! to the workload, counted against the body limit as they stream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, Incoming, SizeHint};

/// A response body: a page the front door wrote, or the upstream's body, never buffered.
#[derive(Debug)]
pub enum Body {
    /// A complete body; `None` once it has been sent.
    Full(Option<Bytes>),
    /// The workload's response body, passed on frame by frame.
    Upstream(Incoming),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::Full((!bytes.is_empty()).then_some(bytes))
    }

    pub fn empty() -> Self {
        Self::Full(None)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Upstream(incoming) => Pin::new(incoming).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Upstream(incoming) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Upstream(incoming) => incoming.size_hint(),
        }
    }
}

/// The error a [`Capped`] body ends with once it has passed the limit: the HTTP client sending
/// it aborts the request.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the {0} byte limit")]
pub(super) struct BodyTooLarge(u64);

/// Set when a [`Capped`] body passed the limit, so that whoever sees the forward fail knows
/// why.
#[derive(Debug, Clone, Default)]
pub(super) struct Overflow(Arc<AtomicBool>);

impl Overflow {
    pub(super) fn happened(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A client's request body streaming to the workload, ended with [`BodyTooLarge`] as soon as
/// more than the limit has arrived. A body whose length was declared (Content-Length) has
/// already been checked against the limit and cannot outgrow it (hyper holds the client to
/// the declared length), so only a body of unknown length (chunked, or HTTP/2 without
/// content-length) is counted.
#[derive(Debug)]
pub(super) struct Capped {
    /// Body bytes read before forwarding (the WAF's inspection prefix), sent first.
    prefix: std::collections::VecDeque<Bytes>,
    prefix_trailers: Option<hyper::HeaderMap>,
    /// The whole body was in the prefix: `inner` is done.
    prefix_complete: bool,
    inner: Incoming,
    limit: u64,
    /// Bytes still allowed; `None` when the length was declared.
    left: Option<u64>,
    overflow: Option<Overflow>,
}

impl Capped {
    /// The capped body and, for a body of unknown length, what tells that it overflowed;
    /// `prefix` (bytes already read, for the WAF) is sent before the rest of `inner`.
    pub(super) fn with_prefix(prefix: super::waf::BodyPrefix, inner: Incoming, limit: u64) -> (Self, Option<Overflow>) {
        let read: u64 = prefix.chunks.iter().map(|c| c.len() as u64).sum();
        let remaining = hyper::body::Body::size_hint(&inner).exact();
        let declared = !prefix.complete && remaining.is_some_and(|n| n.saturating_add(read) <= limit)
            || prefix.complete && read <= limit;
        let overflow = (!declared).then(Overflow::default);
        let left = (!declared).then_some(limit);
        let mut capped = Self {
            prefix: prefix.chunks.into(),
            prefix_trailers: prefix.trailers,
            prefix_complete: prefix.complete,
            inner,
            limit,
            left,
            overflow: overflow.clone(),
        };
        // The prefix counts against the limit like any other bytes.
        if let Some(left) = capped.left.as_mut() {
            *left = left.saturating_sub(read);
        }
        (capped, overflow)
    }
}

impl hyper::body::Body for Capped {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if this.prefix_complete {
            return Poll::Ready(this.prefix_trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let (Some(left), Some(data)) = (this.left.as_mut(), frame.data_ref()) {
            match left.checked_sub(data.len() as u64) {
                Some(rest) => *left = rest,
                None => {
                    if let Some(o) = &this.overflow {
                        o.0.store(true, Ordering::Release);
                    }
                    return Poll::Ready(Some(Err(BodyTooLarge(this.limit).into())));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        if !self.prefix.is_empty() {
            return false;
        }
        if self.prefix_complete {
            return self.prefix_trailers.is_none();
        }
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let queued: u64 = self.prefix.iter().map(|c| c.len() as u64).sum();
        if self.prefix_complete {
            return SizeHint::with_exact(queued);
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(queued));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(queued));
        }
        hint
    }
}
