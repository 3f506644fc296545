//! `skiplock serve`: a node plus the HTTP API, dashboard and `/metrics`, until SIGINT
//! or SIGTERM. Shutdown order: stop accepting requests and end event streams, let in-flight
//! requests finish (within the grace period), then stop the workers (running jobs get the
//! grace period). Connection limits and timeouts: [`crate::api::server`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::worker::shutdown_signal;
use super::Settings;
use crate::api::server::ServerConfig;
use crate::api::{self, ApiConfig, ApiState};
use crate::client::Client;
use crate::metrics::Metrics;

/// Shorter tokens are accepted but warned about: they can be guessed.
const WEAK_TOKEN_LEN: usize = 16;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free one [default: 127.0.0.1:8080]
    #[arg(long, env = "SKIPLOCK_BIND")]
    pub bind: Option<String>,
    /// Require `Authorization: Bearer <token>` on /api/v1 (needed to bind a non-loopback address)
    #[arg(long, env = "SKIPLOCK_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Largest request body in bytes; larger ones get 413 [default: 16777216]
    #[arg(long, env = "SKIPLOCK_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most targets in one POST /api/v1/batches [default: 100000]
    #[arg(long, env = "SKIPLOCK_MAX_BATCH_TARGETS")]
    pub max_batch_targets: Option<usize>,
    /// Most connections open at once; beyond it, new ones wait to be accepted [default: 1024]
    #[arg(long, env = "SKIPLOCK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Milliseconds a client has to send a request head; also closes idle keep-alive
    /// connections [default: 10000]
    #[arg(long, env = "SKIPLOCK_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Milliseconds a connection may stall on its client (a body that stopped arriving, a
    /// response left unread) before it is closed [default: 60000]
    #[arg(long, env = "SKIPLOCK_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    #[command(flatten)]
    pub node: super::worker::NodeArgs,
}

pub async fn run(s: &Settings, a: ServeArgs) -> anyhow::Result<()> {
    // Everything that can be refused is refused before touching the database.
    let token = a
        .api_token
        .clone()
        .or_else(|| s.file.api_token.clone())
        .filter(|t| !t.trim().is_empty());
    let addr = resolve(&s.bind(a.bind.clone())).await?;
    check_exposure(addr, token.as_deref())?;
    let mut config = ApiConfig::default();
    if let Some(n) = a.max_body_bytes {
        config.max_body_bytes = n;
    }
    if let Some(n) = a.max_batch_targets {
        config.max_batch_targets = n;
    }
    config.validate()?;
    let mut server = ServerConfig {
        drain: Duration::from_secs(a.node.grace_secs),
        ..ServerConfig::default()
    };
    if let Some(n) = a.max_connections {
        server.max_connections = n;
    }
    if let Some(ms) = a.header_timeout_ms {
        server.header_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = a.idle_timeout_ms {
        server.idle_timeout = Duration::from_millis(ms);
    }
    server.validate()?;
    let plan = a.node.plan(s)?;
    let grace = plan.grace;
    let registry = plan.registry.clone();
    let cron = plan.cron.clone();
    // Listen before touching the database: a busy or forbidden address must fail the start
    // before it migrates a schema or registers a node that will never serve.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;

    // `/metrics` is open to anyone who can reach the server: label only the types this node
    // runs, so made-up types cannot grow it.
    let metrics = Arc::new(Metrics::with_known_types(registry.types()));
    // Room beyond the runners' connections for maintenance and API requests.
    let started = plan.start(s, 8, metrics.clone()).await?;
    let (worker, store, queue, bus) = (started.node, started.store, started.queue, started.bus);

    let stop = CancellationToken::new();
    let state = ApiState::build(
        Client::new(store, queue),
        bus,
        metrics,
        token,
        config,
        stop.clone(),
    )
    .with_cron(cron);
    let local = listener.local_addr()?;
    // On stdout, so that a script (or a test) that asked for port 0 learns the port.
    println!("listening on http://{local}");
    info!(%local, "serving the API at /api/v1 and the dashboard at /");

    // The same token ends event streams (through the state) and stops the accept loop.
    let signal = async {
        if let Err(e) = shutdown_signal().await {
            warn!(error = %e, "cannot listen for signals; shutting down");
        }
        info!("shutting down: draining requests, then finishing running jobs");
        stop.cancel();
    };
    let app = api::app(state);
    tokio::join!(
        signal,
        api::server::serve(listener, app, server, stop.clone())
    );
    worker.shutdown(grace).await;
    Ok(())
}

/// The first address `bind` names (`host:port`, names resolved).
async fn resolve(bind: &str) -> anyhow::Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host(bind)
        .await
        .with_context(|| format!("--bind {bind:?} is not an address like 127.0.0.1:8080"))?;
    addrs
        .next()
        .with_context(|| format!("--bind {bind:?} resolves to no address"))
}

/// An open API on a reachable address would let anyone who can reach it submit, cancel and
/// retry jobs, so a token is required for anything but loopback.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    match token {
        None if !addr.ip().is_loopback() => bail!(
            "refusing to serve on {addr} without an API token: anyone who can reach that \
             address could submit, cancel and retry jobs. Set --api-token (or \
             SKIPLOCK_API_TOKEN, or api_token in the config file), or bind a loopback address \
             such as 127.0.0.1:8080"
        ),
        Some(t) if t.len() < WEAK_TOKEN_LEN => {
            warn!("the API token is shorter than {WEAK_TOKEN_LEN} characters; it can be guessed");
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_go_without_a_token() {
        let ok = |a: &str, t: Option<&str>| check_exposure(a.parse().unwrap(), t).is_ok();
        assert!(ok("127.0.0.1:8080", None));
        assert!(ok("[::1]:8080", None));
        assert!(!ok("0.0.0.0:8080", None));
        assert!(!ok("[::]:8080", None));
        assert!(!ok("192.168.1.10:80", None));
        assert!(ok("0.0.0.0:8080", Some("a-long-enough-secret-token")));
    }
}
