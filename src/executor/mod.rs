//! The executor: per node, `concurrency` worker tasks that pop IDs and run the transactional
//! flow in [`chunk`]. Shutdown stops popping, lets running chunks finish within a grace
//! period, then abandons the rest (their transactions roll back; the jobs stay pending).

mod chunk;
mod node;
mod publisher;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use chunk::MAX_ERROR_LEN;
pub use node::Node;

use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::processor::Registry;
use crate::queue::Queue;
use crate::store::Store;

/// How the executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Worker tasks, each holding at most one transaction (one pool connection). Default 16.
    pub concurrency: usize,
    /// IDs popped and locked per transaction. 1 is the single-job flow; more means fewer
    /// commits and much higher throughput for short jobs. Default 1.
    pub chunk_size: usize,
    /// How long an idle worker waits on the queue before checking for shutdown. Default 1 s.
    pub pop_wait: Duration,
    /// Pause after a store or queue error, so a database outage is not a busy loop; doubles
    /// while errors continue, up to 4x. Default 500 ms.
    pub error_pause: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            concurrency: 16,
            chunk_size: 1,
            pop_wait: Duration::from_secs(1),
            error_pause: Duration::from_millis(500),
        }
    }
}

/// Most worker tasks one node may run; far beyond any pool a database would grant.
pub const MAX_CONCURRENCY: usize = 1024;
/// Most jobs locked in one transaction.
pub const MAX_CHUNK: usize = 10_000;

impl ExecutorConfig {
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(Error::Config(format!(
                "concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                self.concurrency
            )));
        }
        if !(1..=MAX_CHUNK).contains(&self.chunk_size) {
            return Err(Error::Config(format!(
                "chunk size must be between 1 and {MAX_CHUNK}, got {}",
                self.chunk_size
            )));
        }
        Ok(())
    }
}

/// What every worker task shares.
pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub registry: Registry,
    pub node: Arc<Node>,
    pub metrics: Arc<Metrics>,
    pub config: ExecutorConfig,
    pub events: publisher::Sender,
}

impl Ctx {
    fn publish(&self, events: Vec<Event>) {
        self.events.send(events);
    }
}

/// A running executor. Dropping it without [`Executor::shutdown`] aborts its tasks.
pub struct Executor {
    workers: JoinSet<()>,
    publisher: JoinSet<()>,
    stop: CancellationToken,
}

impl Executor {
    /// Starts the worker tasks.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        registry: Registry,
        node: Arc<Node>,
        metrics: Arc<Metrics>,
        bus: Arc<dyn EventBus>,
        config: ExecutorConfig,
    ) -> Result<Self> {
        config.validate()?;
        let mut publisher = JoinSet::new();
        let events = publisher::spawn(&mut publisher, bus);
        let ctx = Arc::new(Ctx {
            store,
            queue,
            registry,
            node,
            metrics,
            config,
            events,
        });
        let stop = CancellationToken::new();
        let mut workers = JoinSet::new();
        for _ in 0..ctx.config.concurrency {
            workers.spawn(worker(ctx.clone(), stop.clone()));
        }
        Ok(Executor {
            workers,
            publisher,
            stop,
        })
    }

    /// Stops popping, waits up to `grace` for running chunks, then aborts the rest: their
    /// transactions roll back and their jobs stay pending for another worker.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        let drain = async { while self.workers.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            warn!(
                running = self.workers.len(),
                "grace period over: rolling back the jobs still running (they stay pending)"
            );
            self.workers.shutdown().await;
        }
        // Workers are gone, so every event sender is dropped: the publisher drains and ends.
        while self.publisher.join_next().await.is_some() {}
    }
}

async fn worker(ctx: Arc<Ctx>, stop: CancellationToken) {
    let max = ctx.config.chunk_size;
    // Consecutive failed rounds; drives the backoff and the sparse logging.
    let mut errors = 0u32;
    // Of those, database errors (the queue logs its own outages, once per outage).
    let mut logged = 0u32;
    // This task's connection, kept across chunks and replaced after any error.
    let mut lease = None;
    while !stop.is_cancelled() {
        let popped = tokio::select! {
            r = ctx.queue.pop(max, ctx.config.pop_wait) => r,
            _ = stop.cancelled() => break,
        };
        let result = match popped {
            Ok(ids) if ids.is_empty() => Ok(()),
            Ok(ids) => {
                let r = match lease.as_mut() {
                    Some(l) => chunk::run(&ctx, l, &ids).await,
                    None => match ctx.store.lease(&ctx.node.id).await {
                        Ok(l) => chunk::run(&ctx, lease.insert(l), &ids).await,
                        Err(e) => Err(e),
                    },
                };
                if r.is_err() {
                    // Whatever failed, the connection may be broken or mid-transaction.
                    lease = None;
                }
                r.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                if logged > 0 {
                    info!("worker recovered after {errors} failed rounds");
                }
                errors = 0;
                logged = 0;
            }
            Err(e) => {
                // The jobs stay pending; the reconciler offers them again.
                if !matches!(e, Error::Queue(_)) {
                    if logged == 0 || logged.is_power_of_two() {
                        warn!(error = %e, errors = logged + 1, "worker error; retrying");
                    }
                    logged += 1;
                }
                // Back off (error_pause, doubling, at most 4x) so that an outage of the
                // database or Redis is not hammered by every worker task at once.
                let pause = ctx.config.error_pause * (1 << errors.min(2));
                errors = errors.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
}
