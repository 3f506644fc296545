//! The executor: per node, `concurrency` runner tasks that pop IDs and run the transactional
//! flow in [`chunk`]. Shutdown stops popping, lets running chunks finish within a grace
//! period, then abandons the rest (their transactions roll back; the jobs stay pending).

mod chunk;
mod publisher;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use chunk::MAX_ERROR_LEN;

use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::node_state::NodeState;
use crate::processor::Registry;
use crate::queue::Queue;
use crate::store::{Slot, Store};
use uuid::Uuid;

use chunk::Ran;

/// How the executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Runner tasks, each holding at most one transaction (one pool connection). Default 16.
    pub concurrency: usize,
    /// IDs popped and locked per transaction. 1 is the single-job flow; more means fewer
    /// commits and much higher throughput for short jobs. Default 1.
    pub chunk_size: usize,
    /// How long an idle runner waits on the queue before checking for shutdown. Default 1 s.
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

/// Most runner tasks one node may run; far beyond any pool a database would grant.
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

/// What every runner task shares.
pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub registry: Registry,
    pub node: Arc<NodeState>,
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
    runners: JoinSet<()>,
    publisher: JoinSet<()>,
    stop: CancellationToken,
}

impl Executor {
    /// Starts the runner tasks.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        registry: Registry,
        node: Arc<NodeState>,
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
        let mut runners = JoinSet::new();
        for _ in 0..ctx.config.concurrency {
            runners.spawn(runner(ctx.clone(), stop.clone()));
        }
        Ok(Executor {
            runners,
            publisher,
            stop,
        })
    }

    /// Stops popping, waits up to `grace` for running chunks, then aborts the rest: their
    /// transactions roll back and their jobs stay pending for another worker.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        let drain = async { while self.runners.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            warn!(
                running = self.runners.len(),
                "grace period over: rolling back the jobs still running (they stay pending)"
            );
            self.runners.shutdown().await;
        }
        // Runners are gone, so every event sender is dropped: the publisher drains and ends.
        while self.publisher.join_next().await.is_some() {}
    }
}

async fn runner(ctx: Arc<Ctx>, stop: CancellationToken) {
    let max = ctx.config.chunk_size;
    // Consecutive failed rounds; drives the backoff and the sparse logging.
    let mut errors = 0u32;
    // Of those, database errors (the queue logs its own outages, once per outage).
    let mut logged = 0u32;
    // This task's slot at the store, kept across chunks and replaced after any error.
    let mut slot = None;
    while !stop.is_cancelled() {
        let popped = tokio::select! {
            r = ctx.queue.pop(max, ctx.config.pop_wait) => r,
            _ = stop.cancelled() => break,
        };
        let result = match popped {
            Ok(ids) if ids.is_empty() => Ok(()),
            Ok(ids) => run_ids(&ctx, &mut slot, ids).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                if logged > 0 {
                    info!("runner recovered after {errors} failed rounds");
                }
                errors = 0;
                logged = 0;
            }
            Err(e) => {
                // The jobs stay pending; the reconciler offers them again.
                if !matches!(e, Error::Queue(_) | Error::Redis { .. }) {
                    if logged == 0 || logged.is_power_of_two() {
                        warn!(error = %e, errors = logged + 1, "runner error; retrying");
                    }
                    logged += 1;
                }
                // Back off (error_pause, doubling, at most 4x) so that an outage of the
                // database or Redis is not hammered by every runner task at once.
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

/// Runs popped IDs as a chunk, then whatever a broken chunk hands back: its chunk-mates
/// (the culprit charged and gone, so this ends), or each job alone when the database refused
/// the chunk's outcomes. The slot is replaced after anything went wrong on its connection.
async fn run_ids(ctx: &Ctx, slot: &mut Option<Box<dyn Slot>>, ids: Vec<Uuid>) -> Result<()> {
    let mut work = vec![ids];
    while let Some(ids) = work.pop() {
        let s = match slot {
            Some(s) => s,
            None => slot.insert(ctx.store.slot(&ctx.node.id).await?),
        };
        match chunk::run(ctx, s.as_mut(), &ids).await {
            Ok(Ran::Done) => {}
            Ok(Ran::Broken { rest, alone }) => {
                *slot = None;
                if alone {
                    work.extend(rest.into_iter().map(|id| vec![id]));
                } else if !rest.is_empty() {
                    work.push(rest);
                }
            }
            Err(e) => {
                // Whatever failed, the connection may be broken or mid-transaction.
                *slot = None;
                return Err(e);
            }
        }
    }
    Ok(())
}
