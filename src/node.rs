//! A node, assembled: one process's executor (its runner tasks) plus the maintenance
//! services (heartbeat, reconciler, pruner), started together and stopped together. The
//! `skiplock worker` and `skiplock serve` commands each run one.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::Result;
use crate::events::{EventBus, LocalBus};
use crate::executor::{Executor, ExecutorConfig};
use crate::maintenance::{
    tick_loop, Cron, CronEntry, Heartbeat, HeartbeatConfig, Pruner, PrunerConfig, Reconciler,
    ReconcilerConfig, UnrunnableConfig, UnrunnableJobs,
};
use crate::metrics::Metrics;
use crate::node_state::NodeState;
use crate::processor::Registry;
use crate::queue::Queue;
use crate::store::{Scope, Store};

/// Everything a node is configured with.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub executor: ExecutorConfig,
    pub reconciler: ReconcilerConfig,
    pub heartbeat: HeartbeatConfig,
    pub pruner: PrunerConfig,
    pub unrunnable: UnrunnableConfig,
}

/// Builds a [`Node`].
pub struct NodeBuilder {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    registry: Registry,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    config: NodeConfig,
    /// Scheduled jobs this node evaluates (every node does; the database picks one insert).
    cron: Vec<CronEntry>,
}

impl NodeBuilder {
    /// Adds a cron entry (see [`crate::maintenance::cron`]); a duplicate name fails `start`.
    pub fn cron(mut self, entry: CronEntry) -> Self {
        self.cron.push(entry);
        self
    }

    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    pub fn events(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = bus;
        self
    }

    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.executor.concurrency = n;
        self
    }

    /// The named queues this node serves, each with its runners (replacing `concurrency`,
    /// which is otherwise the `default` queue's).
    pub fn queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = (S, usize)>) -> Self {
        self.config.executor.queues = queues.into_iter().map(|(q, n)| (q.into(), n)).collect();
        self
    }

    /// A fixed chunk size: every transaction locks up to `n` jobs, whatever the backlog.
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.config.executor.chunk_size = n;
        self.config.executor.adaptive = false;
        self
    }

    /// The chunk size as the command line and config file give it.
    pub fn chunks(mut self, setting: crate::config::ChunkSetting) -> Self {
        setting.apply(&mut self.config.executor);
        self
    }

    /// Adaptive chunks (the default) of at most `max` jobs: one job per transaction while
    /// jobs trickle in, growing toward `max` while a backlog lasts.
    pub fn adaptive_chunks(mut self, max: usize) -> Self {
        self.config.executor.chunk_size = max;
        self.config.executor.adaptive = true;
        self
    }

    /// Validates everything, writes the first heartbeat, and starts the node.
    pub async fn start(self) -> Result<Node> {
        let mut c = self.config;
        // A lease lasts as long as a node may stay silent before it is declared dead.
        c.heartbeat.lease_ttl = c.reconciler.node_stale;
        c.executor.lease_ttl = c.reconciler.node_stale;
        c.unrunnable.node_stale = c.reconciler.node_stale;
        // Succeeded jobs kept for zero time are deleted by the chunk that completes them.
        c.executor.delete_succeeded = c.pruner.retention.deleted_at_once();
        c.executor.validate()?;
        let served = c.executor.served();
        let types = crate::executor::node_types(&self.registry);
        let node = Arc::new(NodeState::new(&served, &types));
        let scopes: Vec<Scope> = served
            .iter()
            .map(|(q, _)| Scope {
                queue: q.clone(),
                types: types.clone(),
            })
            .collect();
        for t in types.iter() {
            let q = self.registry.queue(t);
            if !served.iter().any(|(s, _)| s == q) {
                warn!(
                    job_type = %t,
                    queue = q,
                    "this node does not serve the queue its type's jobs go to: \
                     they wait for a node that does"
                );
            }
        }
        let heartbeat = Arc::new(Heartbeat::new(
            self.store.clone(),
            node.clone(),
            c.heartbeat,
        )?);
        let reconciler = Arc::new(Reconciler::new(
            self.store.clone(),
            node.clone(),
            self.queue.clone(),
            self.metrics.clone(),
            c.reconciler,
            scopes,
        )?);
        let pruner = Arc::new(Pruner::new(
            self.store.clone(),
            self.metrics.clone(),
            c.pruner,
        )?);
        let unrunnable = Arc::new(UnrunnableJobs::new(self.store.clone(), c.unrunnable)?);
        let cron = Arc::new(Cron::new(
            self.store.clone(),
            self.cron,
            &self.registry.policy(),
        )?);
        // Every insert path (this process's, other processes', SQL's) applies the types'
        // policy from the database, so the node publishes its own at start: before its first
        // heartbeat, so that a node others can see has its types' queues in force.
        self.store.publish_policy(&self.registry.policy()).await?;
        heartbeat.run_once().await?;

        let stop = CancellationToken::new();
        let mut services = JoinSet::new();
        {
            let hb = heartbeat.clone();
            services.spawn(tick_loop(
                "heartbeat",
                hb.interval(),
                stop.clone(),
                move || {
                    let hb = hb.clone();
                    async move { hb.run_once().await }
                },
            ));
        }
        {
            let r = reconciler.clone();
            let every = r.config().interval;
            services.spawn(tick_loop("reconciler", every, stop.clone(), move || {
                let r = r.clone();
                async move { r.tick().await }
            }));
        }
        {
            let p = pruner.clone();
            services.spawn(tick_loop("pruner", p.interval(), stop.clone(), move || {
                let p = p.clone();
                async move { p.tick().await }
            }));
        }
        if let Some(every) = unrunnable.interval() {
            let u = unrunnable.clone();
            services.spawn(tick_loop("unrunnable", every, stop.clone(), move || {
                let u = u.clone();
                async move { u.tick().await }
            }));
        }
        if !cron.entries().is_empty() {
            services.spawn(cron.clone().run(stop.clone(), self.queue.clone()));
        }
        let executor = Executor::start(
            self.store.clone(),
            self.queue.clone(),
            self.registry,
            node.clone(),
            self.metrics.clone(),
            self.bus.clone(),
            c.executor.clone(),
        )
        .await?;
        info!(
            node = %node.id,
            store = self.store.backend(),
            queue = self.queue.backend(),
            concurrency = c.executor.total_concurrency(),
            queues = %served
                .iter()
                .map(|(q, n)| format!("{q}={n}"))
                .collect::<Vec<_>>()
                .join(","),
            chunk = c.executor.chunk_size,
            adaptive = c.executor.adaptive,
            "node started"
        );
        Ok(Node {
            state: node,
            executor,
            services,
            stop,
            heartbeat,
            reconciler,
            metrics: self.metrics,
        })
    }
}

/// A running node.
pub struct Node {
    state: Arc<NodeState>,
    executor: Executor,
    services: JoinSet<()>,
    stop: CancellationToken,
    heartbeat: Arc<Heartbeat>,
    reconciler: Arc<Reconciler>,
    metrics: Arc<Metrics>,
}

impl Node {
    pub fn builder(store: Arc<dyn Store>, queue: Arc<dyn Queue>) -> NodeBuilder {
        NodeBuilder {
            store,
            queue,
            registry: Registry::with_builtins(),
            bus: Arc::new(LocalBus::default()),
            metrics: Arc::new(Metrics::default()),
            config: NodeConfig::default(),
            cron: Vec::new(),
        }
    }

    /// The node's identity and live counters.
    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs one reconciler pass now (tests and `submit` use it to skip the wait).
    pub async fn reconcile(&self) -> Result<crate::maintenance::Reconciled> {
        self.reconciler.run_once().await
    }

    /// Graceful stop: no more pops; running jobs get `grace` to finish, the rest roll back
    /// and stay pending; the node's row is removed.
    pub async fn shutdown(mut self, grace: Duration) {
        self.executor.shutdown(grace).await;
        self.stop.cancel();
        while self.services.join_next().await.is_some() {}
        if let Err(e) = self.heartbeat.retire().await {
            warn!(error = %e, "could not remove this node's heartbeat row");
        }
        info!(node = %self.state.id, processed = self.state.processed(), "node stopped");
    }
}
