//! The executor: per node and per named queue it serves, that queue's runner tasks, which pop
//! the queue's IDs and claim its jobs (of the types this node has processors for) and run the
//! transactional flow in [`chunk`]. Shutdown stops popping, lets running chunks finish within
//! a grace period, then abandons the rest (their transactions roll back; the jobs stay
//! pending).

mod chunk;
mod lease;
mod publisher;
mod sizing;
mod wake;

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
use crate::store::{Scope, Slot, Store};
use uuid::Uuid;

use chunk::Ran;

/// How the executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Runner tasks, each holding at most one transaction (one pool connection), when
    /// `queues` is empty: they all serve the `default` queue. Default 16.
    pub concurrency: usize,
    /// The named queues this node serves, each with its own runner tasks: a queue with 1
    /// never runs two jobs at once on this node. Empty (the default): `default` with
    /// `concurrency` runners, which is every job unless something names another queue.
    pub queues: Vec<(String, usize)>,
    /// Jobs locked per transaction: with `adaptive`, the most a runner takes; otherwise
    /// exactly what it asks for. 1 is the single-job flow; more means fewer commits and much
    /// higher throughput for short jobs. Default 1000, adaptive.
    pub chunk_size: usize,
    /// Whether each runner sizes its chunks to the work (see [`sizing`]): one job while jobs
    /// trickle in, growing toward `chunk_size` while a backlog lasts, and no more than about
    /// 100 ms of work at the jobs' measured pace. Default on; a fixed `chunk_size` turns it
    /// off (`NodeBuilder::chunk_size`).
    pub adaptive: bool,
    /// The fallback poll: how long an idle runner waits (on the queue, and for a wake-up from
    /// the database) before it claims from the store anyway. Wake-ups make this rarely
    /// matter; without them (LISTEN off) it is the pickup latency. Default 1 s.
    pub poll: Duration,
    /// Whether runners are woken by the store's own notifications (PostgreSQL LISTEN on the
    /// schema's channel, SQLite's `data_version`). Off behind PgBouncer in transaction mode,
    /// which cannot keep a session's LISTEN: runners then find new work by polling. Default on.
    pub listen: bool,
    /// How long a lease-mode claim lasts before the heartbeat renews it. Set by the node to
    /// its node timeout. Default 10 s.
    pub lease_ttl: Duration,
    /// Which types' successes delete their row at completion instead of keeping it (their
    /// succeeded retention is zero). Set by the node from its retention. Default none.
    pub delete_succeeded: DeleteSucceeded,
    /// Pause after a store or queue error, so a database outage is not a busy loop; doubles
    /// while errors continue, up to 4x. Default 500 ms.
    pub error_pause: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            concurrency: 16,
            queues: Vec::new(),
            chunk_size: DEFAULT_MAX_CHUNK,
            adaptive: true,
            poll: Duration::from_secs(1),
            listen: true,
            lease_ttl: Duration::from_secs(10),
            delete_succeeded: DeleteSucceeded::default(),
            error_pause: Duration::from_millis(500),
        }
    }
}

/// Which job types' successful `tx`-mode attempts delete their row in the chunk's
/// transaction: those whose succeeded jobs are kept for zero time (`[retention] succeeded =
/// "0s"`). Lease-mode successes are kept and pruned like any finished job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteSucceeded {
    /// Every type not listed in `except`.
    pub all: bool,
    /// With `all`: the types that keep theirs; without: the types that delete.
    pub except: std::collections::BTreeSet<String>,
}

impl DeleteSucceeded {
    pub fn deletes(&self, job_type: &str) -> bool {
        self.all != self.except.contains(job_type)
    }
}

/// Most runner tasks one node may run; far beyond any pool a database would grant.
pub const MAX_CONCURRENCY: usize = 1024;
/// Most jobs locked in one transaction.
pub const MAX_CHUNK: usize = 10_000;
/// The adaptive chunk size's ceiling unless set: past it, a commit is already a small share
/// of a chunk of short jobs.
pub const DEFAULT_MAX_CHUNK: usize = 1000;

impl ExecutorConfig {
    /// The queues served, with their runners: `queues`, or `default` with `concurrency`.
    pub fn served(&self) -> Vec<(String, usize)> {
        if self.queues.is_empty() {
            vec![(crate::job::DEFAULT_QUEUE.to_string(), self.concurrency)]
        } else {
            self.queues.clone()
        }
    }

    /// Runner tasks in all.
    pub fn total_concurrency(&self) -> usize {
        self.served().iter().map(|(_, n)| n).sum()
    }

    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(Error::Config(format!(
                "concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                self.concurrency
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (name, n) in &self.queues {
            crate::job::validate_queue(name).map_err(Error::Config)?;
            if !seen.insert(name.as_str()) {
                return Err(Error::Config(format!("queue {name:?} is given twice")));
            }
            if !(1..=MAX_CONCURRENCY).contains(n) {
                return Err(Error::Config(format!(
                    "queue {name:?}: concurrency must be between 1 and {MAX_CONCURRENCY}, got {n}"
                )));
            }
        }
        if self.total_concurrency() > MAX_CONCURRENCY {
            return Err(Error::Config(format!(
                "the queues' runners add up to {}, more than {MAX_CONCURRENCY}",
                self.total_concurrency()
            )));
        }
        if self.poll.is_zero() || self.poll > Duration::from_secs(3600) {
            return Err(Error::Config(format!(
                "the poll interval must be between 1 ms and an hour, got {:?}",
                self.poll
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
    pub wake: wake::Wakeups,
}

/// What one runner task serves, and what it shares with the other runners of its queue.
pub(crate) struct Lane {
    pub scope: Scope,
    /// Asks the queue's refill task to move a backlog's IDs into the queue (see
    /// [`refill_task`]).
    pub refill: Arc<tokio::sync::Notify>,
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
    /// The wake-up listener and alarm tasks; stopped with the runners.
    waking: JoinSet<()>,
    /// For giving back, at shutdown, the leases of jobs cut off by the grace period. (Not the
    /// whole `Ctx`: it holds an event sender, and the publisher ends only once every sender
    /// is gone.)
    store: Arc<dyn Store>,
    node: Arc<NodeState>,
    stop: CancellationToken,
}

impl Executor {
    /// Starts the runner tasks, and the tasks that wake them when the database says work
    /// arrived.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
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
        let stop = CancellationToken::new();
        let mut waking = JoinSet::new();
        let notices = if config.listen {
            store.wakeups().await?
        } else {
            None
        };
        let wake = wake::Wakeups::start(&mut waking, stop.clone(), notices);
        let types = node_types(&registry);
        let mut lanes = Vec::new();
        for (name, n) in config.served() {
            let lane = Arc::new(Lane {
                scope: Scope {
                    queue: name,
                    types: types.clone(),
                },
                refill: Arc::new(tokio::sync::Notify::new()),
            });
            waking.spawn(refill_task(
                store.clone(),
                queue.clone(),
                lane.clone(),
                config.lease_ttl,
                stop.clone(),
            ));
            lanes.push((lane, n));
        }
        let ctx = Arc::new(Ctx {
            store,
            queue,
            registry,
            node,
            metrics,
            config,
            events,
            wake,
        });
        let mut runners = JoinSet::new();
        for (lane, n) in lanes {
            for _ in 0..n {
                runners.spawn(runner(ctx.clone(), lane.clone(), stop.clone()));
            }
        }
        Ok(Executor {
            runners,
            publisher,
            waking,
            store: ctx.store.clone(),
            node: ctx.node.clone(),
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
            let leased = self.node.lease_ids();
            self.runners.shutdown().await;
            // Lease-mode jobs cut off here were never finished: give them back as they were
            // (pending, the claim's attempt returned) rather than wait for their leases to
            // expire. If this fails, the rescue of expired leases does it later.
            if !leased.is_empty() {
                if let Err(e) = self.store.release_leases(&self.node.id, &leased).await {
                    warn!(error = %e, "cannot give back the leases of cut-off jobs; they expire");
                }
            }
        }
        // Runners are gone, so every event sender is dropped: the publisher drains and ends.
        while self.publisher.join_next().await.is_some() {}
        while self.waking.join_next().await.is_some() {}
    }
}

/// The types a node's registry has processors for, sorted: what its runners may take.
pub fn node_types(registry: &Registry) -> Arc<[String]> {
    let mut t: Vec<String> = registry.types().map(str::to_string).collect();
    t.sort();
    t.into()
}

async fn runner(ctx: Arc<Ctx>, lane: Arc<Lane>, stop: CancellationToken) {
    let queue = lane.scope.queue.as_str();
    let mut sizing = sizing::Sizing::new(ctx.config.chunk_size, ctx.config.adaptive);
    let mut wake = ctx.wake.subscribe();
    // Consecutive failed rounds; drives the backoff and the sparse logging.
    let mut errors = 0u32;
    // Of those, database errors (the queue logs its own outages, once per outage).
    let mut logged = 0u32;
    // This task's slot at the store, kept across chunks and replaced after any error.
    let mut slot = None;
    // Whether the last look found nothing, so the next one may wait.
    let mut idle = false;
    // While the queue is down (Redis unreachable), it is asked again only once per poll
    // interval: each failed ask can take seconds, and the database path works meanwhile.
    let mut queue_retry: Option<tokio::time::Instant> = None;
    while !stop.is_cancelled() {
        let ask_queue = queue_retry.is_none_or(|t| tokio::time::Instant::now() >= t);
        let max = sizing.next();
        // 1. The fast path: IDs pushed to the queue. Waits only when idle, and then also for
        //    a wake-up from the database or the poll interval, whichever comes first.
        let popped = match (idle, ask_queue) {
            (false, true) => ctx.queue.pop(queue, max, Duration::ZERO).await,
            (true, true) => tokio::select! {
                r = ctx.queue.pop(queue, max, ctx.config.poll) => r,
                _ = wake.changed() => Ok(Vec::new()),
                _ = stop.cancelled() => break,
            },
            (false, false) => Ok(Vec::new()),
            (true, false) => tokio::select! {
                _ = tokio::time::sleep(ctx.config.poll) => Ok(Vec::new()),
                _ = wake.changed() => Ok(Vec::new()),
                _ = stop.cancelled() => break,
            },
        };
        // Seen: a wake-up from here on makes the next wait return at once.
        wake.borrow_and_update();
        if ask_queue {
            queue_retry = popped
                .is_err()
                .then(|| tokio::time::Instant::now() + ctx.config.poll);
        }
        // 2. Nothing queued (or the queue is down): the database path.
        let started = tokio::time::Instant::now();
        let result = match popped {
            Ok(ids) if !ids.is_empty() => {
                let n = ids.len();
                run_ids(&ctx, &lane, &mut slot, ids).await.map(|_| n)
            }
            _ => claim(&ctx, &lane, &mut slot, max).await,
        };
        match result {
            Ok(got) => {
                sizing.ran(max, got, started.elapsed());
                idle = got == 0;
                if logged > 0 {
                    info!("runner recovered after {errors} failed rounds");
                }
                errors = 0;
                logged = 0;
            }
            Err(e) => {
                // The jobs stay pending; a claim or the reconciler finds them again.
                if !e.is_queue() {
                    if logged == 0 || logged.is_power_of_two() {
                        warn!(error = %e, errors = logged + 1, "runner error; retrying");
                    }
                    logged += 1;
                }
                // Back off (error_pause, doubling, at most 4x) so that an outage of the
                // database is not hammered by every runner task at once.
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

/// Most IDs one refill moves into the queue.
const REFILL_LIMIT: i64 = 10_000;
/// How often a backlog's refills check whether the queue runs low.
const REFILL_EVERY: Duration = Duration::from_millis(100);

/// Moves a backlog of due jobs' IDs into the queue when a runner finds one, so that runners
/// take it by ID (the fast path) instead of contending for the head of the pending index.
async fn refill_task(
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    lane: Arc<Lane>,
    node_stale: Duration,
    stop: CancellationToken,
) {
    let refill = &lane.refill;
    // Whether the last refill found more than it could take: the backlog goes on, so the
    // queue is topped up again as it runs low, without waiting for another full claim.
    let mut backlog = false;
    loop {
        if backlog {
            tokio::select! {
                _ = tokio::time::sleep(REFILL_EVERY) => {}
                _ = refill.notified() => {}
                _ = stop.cancelled() => return,
            }
            match queue.depth().await {
                Ok(d) if d >= (REFILL_LIMIT / 2) as u64 => continue,
                Ok(_) => {}
                // Without a queue to fill, runners claim; wait for the next full claim.
                Err(_) => {
                    backlog = false;
                    continue;
                }
            }
        } else {
            tokio::select! {
                _ = refill.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
        // A failed refill costs nothing: runners keep claiming.
        backlog = match store
            .due_pending(REFILL_LIMIT, node_stale, &lane.scope)
            .await
        {
            Ok(due) => {
                let full = due.len() as i64 >= REFILL_LIMIT;
                full && queue.push(&due).await.is_ok()
            }
            Err(_) => false,
        };
    }
}

/// Claims a chunk of up to `max` jobs straight from the store and runs it; returns how many
/// jobs it ran.
async fn claim(
    ctx: &Ctx,
    lane: &Lane,
    slot: &mut Option<Box<dyn Slot>>,
    max: usize,
) -> Result<usize> {
    let s = match slot {
        Some(s) => s,
        None => slot.insert(ctx.store.slot(&ctx.node.id, &lane.scope).await?),
    };
    match chunk::run(ctx, s.as_mut(), chunk::Source::Claim(max)).await {
        Ok(Ran::Done(n)) => {
            if n == max && n > 1 {
                // A full claim: a backlog is waiting. Claiming it chunk by chunk makes every
                // runner skip the rows the others hold at the head of the index; one read of
                // the backlog into the queue lets them take disjoint chunks by ID instead.
                lane.refill.notify_one();
            }
            Ok(n)
        }
        Ok(Ran::Broken { rest, alone }) => {
            *slot = None;
            let n = rest.len().max(1);
            follow_up(ctx, lane, slot, rest, alone).await?;
            Ok(n)
        }
        Err(e) => {
            *slot = None;
            Err(e)
        }
    }
}

/// Runs what a broken chunk handed back: its chunk-mates together, or each job alone.
async fn follow_up(
    ctx: &Ctx,
    lane: &Lane,
    slot: &mut Option<Box<dyn Slot>>,
    rest: Vec<Uuid>,
    alone: bool,
) -> Result<()> {
    if alone {
        for id in rest {
            run_ids(ctx, lane, slot, vec![id]).await?;
        }
        Ok(())
    } else if rest.is_empty() {
        Ok(())
    } else {
        run_ids(ctx, lane, slot, rest).await
    }
}

/// Runs popped IDs as a chunk, then whatever a broken chunk hands back: its chunk-mates
/// (the culprit charged and gone, so this ends), or each job alone when the database refused
/// the chunk's outcomes. The slot is replaced after anything went wrong on its connection.
async fn run_ids(
    ctx: &Ctx,
    lane: &Lane,
    slot: &mut Option<Box<dyn Slot>>,
    ids: Vec<Uuid>,
) -> Result<()> {
    let mut work = vec![ids];
    while let Some(ids) = work.pop() {
        let s = match slot {
            Some(s) => s,
            None => slot.insert(ctx.store.slot(&ctx.node.id, &lane.scope).await?),
        };
        match chunk::run(ctx, s.as_mut(), chunk::Source::Ids(&ids)).await {
            Ok(Ran::Done(_)) => {}
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
