//! Serving the API on a TCP listener, with the limits `axum::serve` lacks. Each is there
//! because a prober exhausted the server without it: 20,000 connections that each sent one
//! header line (no token needed) used up every file descriptor and ~400 MB of memory, and
//! `/healthz` stopped answering.
//!
//! - **A cap on open connections** ([`ServerConfig::max_connections`]). A connection beyond it
//!   is not accepted until another closes: it waits in the kernel's listen backlog (and once
//!   that is full, the kernel drops new attempts, which clients retry). Waiting rather than
//!   closing means a burst of real clients is served late instead of refused.
//! - **A deadline for each request head** ([`ServerConfig::header_timeout`]), counted from
//!   when the server starts waiting for it: a new connection, or a keep-alive one after its
//!   last response. So it also closes idle keep-alive connections.
//! - **An idle limit while waiting on the peer** ([`ServerConfig::idle_timeout`]): a request
//!   body that stops arriving, or a response the peer stops reading (see [`super::stall`]). A
//!   slow handler is not idle: its client is not the one holding things up.
//! - **A bounded buffer per connection** ([`MAX_BUF_BYTES`]), freed when the connection closes.
//!
//! Shutdown: stop accepting, let each connection finish the request in flight (server-sent
//! event streams end on the same signal), and close whatever is still open after
//! [`ServerConfig::drain`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::stall::{Activity, Watched, WatchedBody};
use crate::error::{Error, Result};

/// Largest read or write buffer of one connection, which also bounds a request head. hyper's
/// default is ~400 KB: times a thousand connections sending slow, huge heads, that is
/// 400 MB. 64 KiB holds any real head (browsers stay under 16 KiB) and reads bodies in
/// chunks just as well.
pub const MAX_BUF_BYTES: usize = 64 * 1024;

/// The server's connection limits, each with a default that suits a single service.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most connections open at once. Default 1024: far above what a job API's clients
    /// need, far below the usual open-file limit, and at most [`MAX_BUF_BYTES`] twice each.
    pub max_connections: usize,
    /// Time a client has to send a request head once the server waits for one. Default 10 s:
    /// a real client sends its head at once, so this is for clients that never will.
    pub header_timeout: Duration,
    /// Time a connection may go without a byte moving while the server waits on the peer.
    /// Default 60 s: above any real pause, and above the 15 s keep-alive of event streams.
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight before closing their connections.
    /// Default 30 s.
    pub drain: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return Err(Error::Config(
                "the connection limit must be at least 1".into(),
            ));
        }
        if self.header_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(Error::Config(
                "the header and idle timeouts must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    shutdown: CancellationToken,
) {
    warn_if_few_fds(config.max_connections);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Every open connection's task, so that shutdown can wait for them (or end them).
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connections, so the set holds only open ones.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = accept(&listener, &slots) => {
                if let Some((stream, slot)) = accepted {
                    let (app, config, stop) = (app.clone(), config.clone(), shutdown.clone());
                    conns.spawn(connection(stream, app, config, stop, slot));
                }
            }
        }
    }
    // Closing the listener refuses new connections, and those still in its backlog.
    drop(listener);
    let drained = tokio::time::timeout(config.drain, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = conns.len(),
            "closing connections still open after the drain period"
        );
        conns.shutdown().await;
    }
}

/// Waits for a free slot, then for a connection. `None` when accepting failed; the caller
/// simply tries again. Cancel-safe: a slot or connection not yet handed over is not lost.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    // The semaphore is never closed.
    let slot = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, slot)),
        // The peer gave up between connecting and being accepted: nothing to do.
        Err(e) if is_connection_error(&e) => None,
        // Out of file descriptors or memory: wait rather than spin, as hyper's examples do.
        Err(e) => {
            drop(slot);
            warn!(error = %e, "cannot accept a connection; retrying in a second");
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One connection, from accept to close. Holding `_slot` is what counts it under the cap.
async fn connection(
    stream: TcpStream,
    app: Router,
    config: ServerConfig,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(stream, activity.clone()));
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let req = req.map(|body| WatchedBody::new(body, activity.clone()));
            app.clone().oneshot(req)
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(MAX_BUF_BYTES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!(error = %e, "connection closed with an error");
                }
                return;
            }
            // Finish the request in flight, then close instead of keeping the connection.
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.stalled(config.idle_timeout) => {
                debug!("closing a connection stalled on its peer");
                return;
            }
        }
    }
}

/// A cap above what the process may open fails later as refused connections and database
/// errors; say so at start-up instead.
#[cfg(unix)]
fn warn_if_few_fds(max_connections: usize) {
    use rustix::process::{getrlimit, Resource};
    /// File descriptors `serve` needs besides its connections (database pool, Redis, logs).
    const OTHER_FDS: u64 = 128;
    let Some(limit) = getrlimit(Resource::Nofile).current else {
        return;
    };
    if (max_connections as u64).saturating_add(OTHER_FDS) > limit {
        warn!(
            max_connections,
            open_file_limit = limit,
            "the connection limit is close to the open-file limit: raise `ulimit -n` or lower \
             --max-connections"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_few_fds(_: usize) {}
