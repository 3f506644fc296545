//! Telling a connection that waits on its peer from one that waits on the server. A request
//! body that stops arriving, or a response the peer stops reading, holds a connection (and a
//! slot under the cap) for as long as the peer likes; a handler that takes a while to answer
//! does not. [`Activity`] records which case a connection is in, from two vantage points:
//!
//! - [`Watched`], the socket, sees bytes move (any progress resets the clock) and writes that
//!   cannot proceed because the peer's receive window is full;
//! - [`WatchedBody`], each request's body, sees the handler wait for bytes not yet sent.
//!
//! Waiting for the next request's head is hyper's header timeout, not this.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// One connection's progress. Shared by its socket, its request bodies and its watchdog, all
/// polled by the connection's own task, so relaxed atomics suffice.
#[derive(Debug)]
pub struct Activity {
    born: Instant,
    /// When a byte last moved either way, in milliseconds after `born`.
    last: AtomicU64,
    /// A handler is waiting for request body bytes the peer has not sent.
    body_waiting: AtomicBool,
    /// A response write is waiting for the peer to read.
    write_blocked: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            born: Instant::now(),
            last: AtomicU64::new(0),
            body_waiting: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    fn waiting_on_peer(&self) -> bool {
        self.body_waiting.load(Ordering::Relaxed) || self.write_blocked.load(Ordering::Relaxed)
    }

    /// Returns once the connection has waited on its peer with no byte moving for `limit`.
    /// Checks only when that could first have become true, so an idle watchdog costs one
    /// timer per connection.
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let quiet = self.quiet_for();
            if quiet >= limit && self.waiting_on_peer() {
                return;
            }
            let wait = if quiet >= limit { limit } else { limit - quiet };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A socket that reports its progress to an [`Activity`].
pub struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    pub fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.activity.write_blocked.store(false, Ordering::Relaxed);
                self.activity.touch();
            }
            Poll::Pending => self.activity.write_blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request body that reports when its handler waits for bytes the peer has not sent.
pub struct WatchedBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl WatchedBody {
    pub fn new(inner: Incoming, activity: Arc<Activity>) -> Self {
        WatchedBody { inner, activity }
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        this.activity
            .body_waiting
            .store(r.is_pending(), Ordering::Relaxed);
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    /// A body dropped unread (a refused request) is no longer waited for.
    fn drop(&mut self) {
        self.activity.body_waiting.store(false, Ordering::Relaxed);
    }
}
