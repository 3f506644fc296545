//! `skiplock worker`: workers and maintenance until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context;

use super::Settings;
use crate::worker::{Worker, WorkerConfig};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Worker tasks on this node [default: 16]
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
}

pub async fn run(s: &Settings, a: WorkerArgs) -> anyhow::Result<()> {
    let worker = start(s, a.concurrency, a.chunk_size, !a.no_migrate).await?;
    shutdown_signal().await?;
    tracing::info!("shutting down: finishing running jobs");
    worker.shutdown(Duration::from_secs(a.grace_secs)).await;
    Ok(())
}

/// Starts a node from the settings (shared with `serve` and `demo`).
pub async fn start(
    s: &Settings,
    concurrency: Option<usize>,
    chunk: Option<usize>,
    migrate: bool,
) -> anyhow::Result<Worker> {
    let mut config = WorkerConfig::default();
    config.executor.concurrency = s.concurrency(concurrency);
    config.executor.chunk_size = s.chunk_size(chunk);
    config.executor.validate()?;
    let registry = s.registry()?;
    // One connection per worker task plus room for heartbeats, the reconciler and the API.
    let pool = config.executor.concurrency as u32 + 4;
    let store = s.store(pool, migrate).await?;
    let queue = s.queue().await?;
    let bus = s.bus().await?;
    Worker::builder(store, queue)
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
