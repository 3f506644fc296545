//! The reconciler: makes the queue agree with the database. It offers the queue every pending,
//! due job (IDs lost in a crash, flushed from Redis, retries whose backoff ran out, scheduled
//! jobs that came due) and rescues the jobs of nodes that died holding them. The queue drops
//! IDs it already holds and the row lock drops IDs already running, so every node can run it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node_state::NodeState;
use crate::queue::Queue;
use crate::store::{Scope, Store};

#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// How often to look. Default 1 s: a lost ID waits about this long.
    pub interval: Duration,
    /// Most IDs offered per tick, highest priority and oldest first. Default 10,000: the
    /// queue only needs to stay ahead of the workers, not to hold the whole backlog.
    pub limit: i64,
    /// A node silent this long is dead and its held jobs are charged an attempt. Default 10 s.
    pub node_stale: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            interval: Duration::from_secs(1),
            limit: 10_000,
            node_stale: Duration::from_secs(10),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Due IDs offered to the queue.
    pub offered: u64,
    /// Of those, IDs the queue did not already hold.
    pub enqueued: u64,
    pub dead_nodes: u64,
    pub rescued: u64,
    pub poisoned: u64,
}

pub struct Reconciler {
    store: Arc<dyn Store>,
    /// This node: the jobs it is running are due and pending too, but offering them again
    /// would only make a worker find them locked.
    node: Arc<NodeState>,
    queue: Arc<dyn Queue>,
    metrics: Arc<Metrics>,
    config: ReconcilerConfig,
    /// What this node runs, a scope per queue it serves: it offers only those jobs, so the
    /// IDs it pushes are ones its own runners can take, and a job no node here can run is
    /// never passed around (a node that can run it offers it).
    scopes: Vec<Scope>,
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn Store>,
        node: Arc<NodeState>,
        queue: Arc<dyn Queue>,
        metrics: Arc<Metrics>,
        config: ReconcilerConfig,
        scopes: Vec<Scope>,
    ) -> Result<Self> {
        if config.interval.is_zero() || config.limit < 1 || config.node_stale.is_zero() {
            return Err(Error::Config(
                "reconciler interval, limit and node timeout must be positive".into(),
            ));
        }
        Ok(Reconciler {
            store,
            node,
            queue,
            metrics,
            config,
            scopes,
        })
    }

    pub fn config(&self) -> &ReconcilerConfig {
        &self.config
    }

    pub async fn run_once(&self) -> Result<Reconciled> {
        let rescued = self.store.rescue_abandoned(self.config.node_stale).await?;
        // Keeps the report's pending count changes few, so a report costs the same at any
        // age of the queue (see migration 0009).
        self.store.fold_counts().await?;
        let mut due = Vec::new();
        for scope in &self.scopes {
            due.extend(
                self.store
                    .due_pending(self.config.limit, self.config.node_stale, scope)
                    .await?,
            );
        }
        let held = self.node.held();
        due.retain(|d| !held.contains(&d.id));
        let enqueued = self.queue.push(&due).await? as u64;
        self.metrics
            .reconciled
            .fetch_add(enqueued, Ordering::Relaxed);
        self.metrics
            .rescued
            .fetch_add(rescued.retried + rescued.failed, Ordering::Relaxed);
        Ok(Reconciled {
            offered: due.len() as u64,
            enqueued,
            dead_nodes: rescued.dead_nodes,
            rescued: rescued.retried,
            poisoned: rescued.failed,
        })
    }

    /// One tick, logging only what matters.
    pub async fn tick(&self) -> Result<()> {
        let r = self.run_once().await?;
        if r.enqueued > 0 {
            info!(
                enqueued = r.enqueued,
                "reconciler put due jobs (back) in the queue"
            );
        }
        if r.dead_nodes > 0 {
            warn!(
                dead_nodes = r.dead_nodes,
                retried = r.rescued,
                failed = r.poisoned,
                "nodes stopped heartbeating; charged an attempt to the jobs they held"
            );
        }
        Ok(())
    }
}
