//! hyper answers a request it cannot parse (a malformed request line or header, a header
//! section or URI too long) by itself with a bare `400`/`414`/`431`, before any middleware
//! runs, and it has no hook to change that response. A metadata server must stamp every
//! response with `Metadata-Flavor: Google` and a `Content-Type`, so each accepted connection is
//! wrapped here and such a response gets the stamp on its way out.
//!
//! Recognising it: it is a write that starts with an HTTP/1.x status line `400`, `414` or
//! `431` and whose header section holds no `Metadata-Flavor`. Every response moat itself
//! produces carries that header (the `stamp` middleware), so none is ever rewritten. hyper
//! writes that automatic response as the connection's last bytes, as one buffer; a head split
//! across writes, or queued behind a pipelined response in the same write, is passed through
//! unchanged (and unstamped), which is the behaviour without this wrapper.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The headers added after the status line, the same as [`super::responses::stamp`] adds.
const STAMP: &[u8] = b"metadata-flavor: Google\r\ncontent-type: text/plain; charset=utf-8\r\n\
x-xss-protection: 0\r\nx-frame-options: SAMEORIGIN\r\n";

/// A listener whose connections stamp hyper's own error responses.
#[derive(Debug)]
pub(crate) struct StampingListener(pub(crate) TcpListener);

impl Listener for StampingListener {
    type Io = Stamped<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (Stamped { inner: io, pending: Vec::new() }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that rewrites hyper's automatic error responses (see the module comment).
#[derive(Debug)]
pub(crate) struct Stamped<T> {
    inner: T,
    /// Rewritten bytes already reported as written to hyper, still to go out.
    pending: Vec<u8>,
}

/// The rewritten response when `buf` is one of hyper's automatic error responses.
fn restamp(buf: &[u8]) -> Option<Vec<u8>> {
    // Cheap first: most writes are bodies or moat's own heads.
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let status_line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let status_line = buf.get(..status_line_end)?;
    let automatic = [&b"HTTP/1.1 "[..], b"HTTP/1.0 "].iter().any(|v| status_line.starts_with(v))
        && [&b" 400 "[..], b" 414 ", b" 431 "].iter().any(|code| status_line.windows(5).any(|w| w == *code));
    if !automatic {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf.get(..head_end)?.to_ascii_lowercase();
    if head.windows(16).any(|w| w == b"metadata-flavor:") {
        return None;
    }
    let (line, rest) = buf.split_at_checked(status_line_end + 2)?;
    Some([line, STAMP, rest].concat())
}

impl<T: AsyncWrite + Unpin> Stamped<T> {
    /// Writes out `pending`; ready once it is empty.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n.min(self.pending.len()));
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stamped<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        match restamp(buf) {
            Some(rewritten) => {
                // Taken whole: the caller sees its bytes written, the longer form goes out
                // from `pending` (now, or on the flush that follows).
                self.pending = rewritten;
                match self.drain(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(buf.len())),
                }
            }
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper sends a head as the first slice; only that one can be an automatic response.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && restamp(first).is_some()
        {
            return self.poll_write(cx, first);
        }
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unstamped_automatic_errors_are_rewritten() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let Some(out) = restamp(hyper_400) else { unreachable!("hyper's 400 is rewritten") };
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\nmetadata-flavor: Google\r\n"), "{text}");
        assert!(text.contains("content-type: text/plain") && text.ends_with("content-length: 0\r\ndate: x\r\n\r\n"));
        assert!(restamp(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n").is_some());
        assert!(restamp(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n").is_some());
        // moat's own responses already carry the stamp; other statuses and bodies are untouched.
        assert!(restamp(b"HTTP/1.1 400 Bad Request\r\nMetadata-Flavor: Google\r\n\r\nbad").is_none());
        assert!(restamp(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n400").is_none());
        assert!(restamp(b"HTTP/1.1 404 Not Found\r\n\r\n").is_none());
        assert!(restamp(b"computeMetadata/ 400 \r\n\r\n").is_none());
        assert!(restamp(b"HTTP/1.1 400 Bad Request\r\ncontent-").is_none(), "an incomplete head passes");
    }
}
