//! `skiplock worker`: a node (its runners and maintenance) until SIGINT or SIGTERM. The node's
//! flags and its assembly are shared with `serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::Settings;
use crate::config::ChunkSetting;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::node::{Node, NodeConfig};
use crate::processor::Registry;
use crate::queue::Queue;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The flags of a node, shared by `worker` and `serve`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Runner tasks (concurrent jobs) on this node, all serving the `default` queue
    /// [default: 16]
    #[arg(long, env = "SKIPLOCK_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// The named queues this node serves, each with its runners: default=16,media=4
    /// [default: default=--concurrency]
    #[arg(long, env = "SKIPLOCK_QUEUES")]
    pub queues: Option<String>,
    /// Fail pending jobs of a type no live node has had a processor for this long (90s, 15m,
    /// 36h, 7d or never) [default: never]
    #[arg(long, env = "SKIPLOCK_FAIL_UNRUNNABLE_AFTER")]
    pub fail_unrunnable_after: Option<String>,
    /// Jobs locked per transaction: `auto` sizes each runner's chunks to the backlog (one job
    /// while jobs trickle in, up to 1000 while a backlog lasts; `auto:MAX` sets the ceiling),
    /// a number fixes it (1 runs each job in its own transaction) [default: auto]
    #[arg(long, env = "SKIPLOCK_CHUNK_SIZE")]
    pub chunk_size: Option<ChunkSetting>,
    /// Do not create or upgrade tables on start.
    #[arg(long)]
    pub no_migrate: bool,
    /// Seconds running jobs (and, for `serve`, requests in flight first) get to finish after
    /// SIGINT/SIGTERM before they are cut off; cut-off jobs roll back and stay pending.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// Milliseconds an idle runner waits before it looks in the database anyway: the pickup
    /// time when no notification arrives (and always with --no-listen) [default: 1000]
    #[arg(long, env = "SKIPLOCK_POLL_MS")]
    pub poll_ms: Option<u64>,
    /// Do not LISTEN for new jobs (PostgreSQL behind PgBouncer in transaction mode): runners
    /// find new work by polling every --poll-ms.
    #[arg(long, env = "SKIPLOCK_NO_LISTEN")]
    pub no_listen: bool,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub retention: super::retention::RetentionArgs,
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
    let plan = a.node.plan(s)?;
    let grace = plan.grace;
    let metrics = Arc::new(Metrics::with_known_types(plan.registry.types()));
    let started = plan.start(s, 4, metrics).await?;
    shutdown_signal().await?;
    tracing::info!("shutting down: finishing running jobs");
    started.node.shutdown(grace).await;
    Ok(())
}

/// How far past the longest tx-mode time limit a session may sit idle in a transaction
/// before the server ends it.
const IDLE_TX_MARGIN: Duration = Duration::from_secs(30);

/// A node's settings, validated before anything touches the database.
pub struct NodePlan {
    pub config: NodeConfig,
    pub registry: Registry,
    /// The config file's `[cron.NAME]` entries.
    pub cron: Vec<crate::maintenance::CronEntry>,
    pub migrate: bool,
    pub grace: Duration,
}

/// A started node and what it was started on (`serve` hands these to the API).
pub struct Started {
    pub node: Node,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub bus: Arc<dyn EventBus>,
}

impl NodeArgs {
    /// Resolves flags, environment and config file into a plan, refusing anything wrong
    /// (timings, concurrency, a broken `[types]` entry) before a connection is opened.
    pub fn plan(&self, s: &Settings) -> anyhow::Result<NodePlan> {
        let mut config = NodeConfig::default();
        self.timing.apply(&mut config)?;
        config.executor.concurrency = s.concurrency(self.concurrency);
        config.executor.queues = self.resolve_queues(s)?;
        config.unrunnable.fail_after = self.resolve_fail_after(s)?;
        s.chunk_size(self.chunk_size).apply(&mut config.executor);
        if let Some(ms) = self.poll_ms {
            config.executor.poll = Duration::from_millis(ms);
        }
        config.executor.listen = !self.no_listen;
        config.executor.validate()?;
        config.pruner.retention = self.retention.resolve(&s.file)?;
        let registry = s.registry()?;
        Ok(NodePlan {
            config,
            cron: s.file.cron_entries(&registry)?,
            registry,
            migrate: !self.no_migrate,
            grace: Duration::from_secs(self.grace_secs),
        })
    }
}

impl NodeArgs {
    /// `--queues` over the file's `[queues]`; empty when neither is given (the `default`
    /// queue with `--concurrency`). Both a concurrency and queues is refused: which one
    /// counts would otherwise be a guess.
    fn resolve_queues(&self, s: &Settings) -> anyhow::Result<Vec<(String, usize)>> {
        let queues = match &self.queues {
            Some(spec) => Some(
                crate::config::parse_queues(spec)
                    .map_err(anyhow::Error::msg)
                    .context("--queues")?,
            ),
            None => s.file.queues()?,
        };
        match queues {
            None => Ok(Vec::new()),
            Some(_) if self.concurrency.is_some() || s.file.concurrency.is_some() => bail!(
                "give either --concurrency (the default queue's runners) or --queues \
                 (each queue's runners), not both"
            ),
            Some(q) => Ok(q),
        }
    }

    /// `--fail-unrunnable-after` over the file's `fail_unrunnable_after`; `None`: never.
    fn resolve_fail_after(&self, s: &Settings) -> anyhow::Result<Option<Duration>> {
        use crate::maintenance::retention::parse_keep;
        use crate::maintenance::Keep;
        let (v, what) = match (&self.fail_unrunnable_after, &s.file.fail_unrunnable_after) {
            (Some(v), _) => (v, "--fail-unrunnable-after"),
            (None, Some(v)) => (v, "fail_unrunnable_after"),
            (None, None) => return Ok(None),
        };
        let keep = parse_keep(v.trim())
            .map_err(|e| anyhow::anyhow!(e.replace("retention", "duration")))
            .context(what)?;
        Ok(match keep {
            Keep::Forever => None,
            Keep::For(d) => Some(d),
        })
    }
}

impl NodePlan {
    /// Opens the store (one connection per runner plus `extra`), the queue and the event bus,
    /// and starts the node.
    pub async fn start(
        self,
        s: &Settings,
        extra: u32,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Started> {
        let pool = self.config.executor.total_concurrency() as u32 + extra;
        // A tx-mode job holds its transaction at most its time limit (plus the timer's
        // grace); a session idle in a transaction well past the longest is stuck.
        let longest = self
            .registry
            .types()
            .filter_map(|t| self.registry.get(t))
            .filter(|r| r.options.mode == crate::processor::Mode::Tx)
            .map(|r| r.options.timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        let guard = longest + IDLE_TX_MARGIN;
        let store = s.store_guarded(pool, self.migrate, Some(guard)).await?;
        let queue = s.queue().await?;
        let bus = s.bus().await?;
        let mut builder = Node::builder(store.clone(), queue.clone());
        for e in self.cron {
            builder = builder.cron(e);
        }
        let node = builder
            .registry(self.registry)
            .events(bus.clone())
            .metrics(metrics)
            .config(self.config)
            .start()
            .await
            .context("cannot start the node")?;
        Ok(Started {
            node,
            store,
            queue,
            bus,
        })
    }
}

/// Resolves on SIGINT or SIGTERM (on Unix; elsewhere on Ctrl-C, the one signal there is).
#[cfg(unix)]
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

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub async fn shutdown_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
