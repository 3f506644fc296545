//! `skiplock worker`: workers and maintenance until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::{bail, Context};

use super::Settings;
use crate::node::{Node, NodeConfig};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Runner tasks (concurrent jobs) on this node [default: 16]
    #[arg(long, env = "SKIPLOCK_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Jobs locked per transaction; 1 runs each job in its own transaction [default: 1]
    #[arg(long, env = "SKIPLOCK_CHUNK_SIZE")]
    pub chunk_size: Option<usize>,
    /// Do not create or upgrade tables on start.
    #[arg(long)]
    pub no_migrate: bool,
    /// Seconds running jobs get to finish after SIGINT/SIGTERM before they are rolled back.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    #[command(flatten)]
    pub timing: TimingArgs,
}

/// How quickly a node notices lost IDs and dead peers. The defaults suit production; tests
/// shorten them.
#[derive(Debug, Clone, clap::Args)]
pub struct TimingArgs {
    /// Milliseconds between this node's heartbeats.
    #[arg(long, env = "SKIPLOCK_HEARTBEAT_MS", default_value_t = 1_000)]
    pub heartbeat_ms: u64,
    /// Milliseconds between reconciler passes (how long a lost ID waits at most).
    #[arg(long, env = "SKIPLOCK_RECONCILE_MS", default_value_t = 1_000)]
    pub reconcile_ms: u64,
    /// Milliseconds of silence after which a node is dead: dropped from `status` and its
    /// held jobs charged an attempt. Must exceed twice the heartbeat interval.
    #[arg(long, env = "SKIPLOCK_NODE_TIMEOUT_MS", default_value_t = 10_000)]
    pub node_timeout_ms: u64,
}

impl Default for TimingArgs {
    fn default() -> Self {
        TimingArgs {
            heartbeat_ms: 1_000,
            reconcile_ms: 1_000,
            node_timeout_ms: 10_000,
        }
    }
}

impl TimingArgs {
    /// Applies the intervals, refusing a node timeout a healthy node could hit.
    pub fn apply(&self, config: &mut NodeConfig) -> anyhow::Result<()> {
        if self.heartbeat_ms == 0 || self.reconcile_ms == 0 {
            bail!("--heartbeat-ms and --reconcile-ms must be positive");
        }
        if self.node_timeout_ms < 2 * self.heartbeat_ms {
            bail!(
                "--node-timeout-ms ({}) must be at least twice --heartbeat-ms ({}): \
                 otherwise live nodes would be declared dead",
                self.node_timeout_ms,
                self.heartbeat_ms
            );
        }
        config.heartbeat.interval = Duration::from_millis(self.heartbeat_ms);
        config.reconciler.interval = Duration::from_millis(self.reconcile_ms);
        config.reconciler.node_stale = Duration::from_millis(self.node_timeout_ms);
        Ok(())
    }
}

pub async fn run(s: &Settings, a: WorkerArgs) -> anyhow::Result<()> {
    let worker = start(s, a.concurrency, a.chunk_size, !a.no_migrate, &a.timing).await?;
    shutdown_signal().await?;
    tracing::info!("shutting down: finishing running jobs");
    worker.shutdown(Duration::from_secs(a.grace_secs)).await;
    Ok(())
}

/// Starts a node from the settings (shared with `serve` and `demo`, which may pass
/// `&TimingArgs::default()` or flatten [`TimingArgs`] into their own flags).
pub async fn start(
    s: &Settings,
    concurrency: Option<usize>,
    chunk: Option<usize>,
    migrate: bool,
    timing: &TimingArgs,
) -> anyhow::Result<Node> {
    let mut config = NodeConfig::default();
    timing.apply(&mut config)?;
    config.executor.concurrency = s.concurrency(concurrency);
    config.executor.chunk_size = s.chunk_size(chunk);
    config.executor.validate()?;
    let registry = s.registry()?;
    // One connection per worker task plus room for heartbeats, the reconciler and the API.
    let pool = config.executor.concurrency as u32 + 4;
    let store = s.store(pool, migrate).await?;
    let queue = s.queue().await?;
    let bus = s.bus().await?;
    Node::builder(store, queue)
        .registry(registry)
        .events(bus)
        .config(config)
        .start()
        .await
        .context("cannot start the worker")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
