//! The store: all SQL lives behind this seam. PostgreSQL is the production store and the
//! reference for every invariant; SQLite is the embedded single-node default.
//!
//! The seam is three traits, each an owned object: [`Store`] (short transactions and the
//! queries everything else composes), [`Slot`] (a runner's kept connection and intent
//! record) and [`ChunkTx`] (a chunk's open transaction, which a processor sees through
//! [`JobTx`]). A backend slots in by implementing them; nothing above matches on backends.

mod jobtx;
#[cfg(feature = "postgres")]
pub mod postgres;
mod select;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use uuid::Uuid;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use jobtx::ROLLBACK_JOB;
pub use jobtx::{check_statement, JobConn, JobTx};
pub use select::{PruneRule, Selection, MAX_BULK};

use select::check_bulk;

use crate::error::{Error, Result};
use crate::job::{Due, Inserted, Job, JobDetail, JobStatus, NewJob, Submitted};
use crate::processor::Policy;
use crate::report::{BatchReport, NodeReport, StatusReport, Throughput, TypeCounts, Unrunnable};

/// Rows per bulk-insert statement: large enough to amortise round trips, small enough to
/// keep one statement's parameter arrays (and the server's memory for them) modest.
pub const INSERT_CHUNK: usize = 5_000;

/// Options shared by every job of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    pub name: Option<String>,
    pub max_attempts: Option<i32>,
    pub priority: i16,
    pub run_at: Option<DateTime<Utc>>,
    /// The W3C `traceparent` every job of the batch continues (see [`NewJob::traceparent`]).
    pub traceparent: Option<String>,
    /// The named queue; `None` takes the type's, else `default`.
    pub queue: Option<String>,
}

/// What one runner may take: jobs of one named queue whose type its node has a processor
/// for. Claims, locks of popped IDs and the reconciler's offers all keep to it, so a job
/// outside it stays pending, uncharged, for a node that can run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub queue: String,
    /// The node's job types (every runner of a node shares one list).
    pub types: Arc<[String]>,
}

/// Pending jobs of one queue and type: the report compares these against what the live
/// nodes can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGroup {
    pub queue: String,
    pub job_type: String,
    pub pending: i64,
}

/// What one processor run decided for its job, written in the chunk's transaction. Each
/// variant carries exactly what its outcome needs: a retry always has a delay, a success
/// never has an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded {
        id: Uuid,
    },
    /// Succeeded, and its row is deleted in the same transaction instead of kept: retention
    /// zero for its type's succeeded jobs. A delete writes no new row version and no index
    /// entry; the report's counts and batch progress stay exact without the row.
    SucceededDeleted {
        id: Uuid,
    },
    /// Back to `pending`, due again after `delay` (measured on the database's clock).
    /// `took` is how long the attempt ran, kept in the job's attempt history.
    Retry {
        id: Uuid,
        error: String,
        delay: Duration,
        took: Duration,
    },
    /// Attempts spent, or retrying is futile.
    Failed {
        id: Uuid,
        error: String,
        took: Duration,
    },
}

impl Outcome {
    pub fn id(&self) -> Uuid {
        match self {
            Outcome::Succeeded { id }
            | Outcome::SucceededDeleted { id }
            | Outcome::Retry { id, .. }
            | Outcome::Failed { id, .. } => *id,
        }
    }

    /// The status the row takes.
    pub fn status(&self) -> JobStatus {
        match self {
            Outcome::Succeeded { .. } | Outcome::SucceededDeleted { .. } => JobStatus::Succeeded,
            Outcome::Retry { .. } => JobStatus::Pending,
            Outcome::Failed { .. } => JobStatus::Failed,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Succeeded { .. } | Outcome::SucceededDeleted { .. } => None,
            Outcome::Retry { error, .. } | Outcome::Failed { error, .. } => Some(error),
        }
    }

    /// The retry delay in milliseconds, as both stores bind it.
    pub fn delay_ms(&self) -> Option<i64> {
        match self {
            Outcome::Retry { delay, .. } => Some(delay.as_millis().min(i64::MAX as u128) as i64),
            _ => None,
        }
    }

    /// How long a failed attempt ran, in milliseconds, as both stores bind it. `None` for a
    /// success: its attempt is not kept in the history.
    pub fn took_ms(&self) -> Option<i64> {
        match self {
            Outcome::Succeeded { .. } | Outcome::SucceededDeleted { .. } => None,
            Outcome::Retry { took, .. } | Outcome::Failed { took, .. } => {
                Some(took.as_millis().min(i64::MAX as u128) as i64)
            }
        }
    }
}

/// A chunk's outcomes split into the jobs whose rows are deleted (successes with retention
/// zero) and the outcomes written to rows.
pub(crate) fn split_deleted(outcomes: &[Outcome]) -> (Vec<Uuid>, Vec<Outcome>) {
    let mut gone = Vec::new();
    let mut kept = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        match o {
            Outcome::SucceededDeleted { id } => gone.push(*id),
            other => kept.push(other.clone()),
        }
    }
    (gone, kept)
}

/// A node's heartbeat: what it is and how it is doing. What it runs right now is recorded by
/// each chunk's intent record instead (see [`Slot::lock`]), so a node that never heartbeats
/// still leaves the evidence that convicts a poison job.
#[derive(Debug, Clone)]
pub struct NodeBeat {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub concurrency: i32,
    pub in_flight: i32,
    pub processed: i64,
    pub failed: i64,
    /// The queues it serves, with each one's runners.
    pub queues: std::collections::BTreeMap<String, usize>,
    /// The job types it has processors for, sorted.
    pub types: Vec<String>,
}

/// Filters for listing jobs. `after` is the cursor: the last ID of the previous page.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub job_type: Option<String>,
    pub batch_id: Option<Uuid>,
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// What rescuing abandoned jobs did, tallied above the store from the statuses it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rescued {
    pub dead_nodes: u64,
    /// Jobs given another attempt.
    pub retried: u64,
    /// Jobs that had spent their attempts and ended `failed` (poison jobs).
    pub failed: u64,
}

/// A runner's place at the store: the connection it keeps across chunks (on PostgreSQL; on
/// SQLite each chunk borrows one, since only one writes at a time) and its intent record,
/// the row saying which jobs it is about to run. Dropping a slot closes its connection
/// rather than handing a possibly broken one back to the pool.
#[async_trait]
pub trait Slot: Send {
    /// Records the intent to run `ids` (committed first, so it outlives a crash mid-job),
    /// then opens the chunk's transaction and locks those of `ids` that are pending and due,
    /// skipping rows another transaction holds. The chunk may hold fewer jobs than asked.
    async fn lock<'s>(&'s mut self, ids: &[Uuid]) -> Result<Locked<'s>>;

    /// The database path to work: opens the chunk's transaction and locks up to `max` of the
    /// most urgent pending, due jobs (highest priority, then oldest) that no other
    /// transaction holds, then commits the intent record naming them (on a connection of its
    /// own, before any processor runs). The queue is only a hint; this is how a runner finds
    /// work that nobody pushed to it.
    async fn claim<'s>(&'s mut self, max: usize) -> Result<Locked<'s>>;

    /// A short transaction with nothing locked: where lease-mode outcomes are recorded
    /// ([`ChunkTx::finish_leases`]), with the processors' final writes.
    async fn begin<'s>(&'s mut self) -> Result<Box<dyn ChunkTx + 's>>;
}

/// Why a runner should look for work now, from the store's own notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something is (or may be) due now: new jobs, or notifications may have been missed.
    Now,
    /// The earliest job of an insert comes due at this time.
    At(DateTime<Utc>),
}

/// Locked jobs, highest priority first, and the open transaction that holds their locks.
pub struct Locked<'s> {
    pub jobs: Vec<Job>,
    pub tx: Box<dyn ChunkTx + 's>,
}

impl Locked<'_> {
    /// Writes the outcomes and commits (see [`ChunkTx::finish`]).
    pub async fn finish(self, outcomes: &[Outcome]) -> Result<()> {
        self.tx.finish(outcomes).await
    }
}

/// A chunk's open transaction. It owns everything the chunk holds (its connection, and on
/// SQLite the store's one write turn), so dropping it rolls back and lets go of all of it.
#[async_trait]
pub trait ChunkTx: Send {
    /// The transaction as one job's processor sees it (through [`JobTx`]).
    fn job_conn(&mut self) -> &mut dyn JobConn;

    /// What can tell, once this transaction is gone, whether it committed. Asked only after a
    /// processor broke the chunk: a `COMMIT` it sneaked past [`JobTx`] makes its chunk-mates'
    /// writes stand, and they must then be recorded rather than run again.
    fn probe(&self) -> Box<dyn CommitProbe>;

    /// Writes the outcomes in one statement and commits. Nothing is visible before this.
    async fn finish(self: Box<Self>, outcomes: &[Outcome]) -> Result<()>;

    /// Lease mode's claim, in this transaction: the jobs become `running`, leased to the
    /// slot's node for `ttl`, their attempt charged. They are free to run once this commits.
    async fn lease(&mut self, ids: &[Uuid], ttl: Duration) -> Result<()>;

    /// Records lease-mode outcomes and commits. Fenced: each job changes only if it is still
    /// `running` under this node with `attempts[i]` charged; returns the jobs that changed
    /// (the others lost their lease to a rescue or a cancel, and their outcome is dropped).
    async fn finish_leases(
        self: Box<Self>,
        outcomes: &[Outcome],
        attempts: &[i32],
    ) -> Result<Vec<Uuid>>;

    /// Gives up a chunk a processor broke: rolls back whatever is left of it and leaves the
    /// connection fit for its next user (or closes it).
    async fn abandon(self: Box<Self>) {}
}

/// See [`ChunkTx::probe`].
#[async_trait]
pub trait CommitProbe: Send + Sync {
    async fn committed(&self) -> Result<bool>;
}

/// The store seam. Every method is one short transaction unless it says otherwise. What
/// combines these queries (the status report, a refused retry's explanation, rescue tallies)
/// is written once above the seam, in `impl dyn Store` below and in the maintenance services.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and reports: `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Creates or upgrades the tables. Safe to run from several nodes at once.
    async fn migrate(&self) -> Result<()>;

    /// Inserts jobs in one transaction, a statement per [`INSERT_CHUNK`] rows, and says which
    /// queue each is in. A job that leaves `max_attempts` or `queue` unset takes its type's
    /// published policy (`job_types`), else [`crate::job::DEFAULT_MAX_ATTEMPTS`] and the
    /// `default` queue. A job with a unique key (its own, or derived by
    /// its type) that duplicates an open job (or one within its window), stored or earlier in
    /// `jobs`, is not inserted: its entry names that job, `duplicate` set.
    async fn insert_checked(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>>;

    /// [`Store::insert_checked`], the ids alone.
    async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        Ok(self
            .insert_checked(jobs)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect())
    }

    /// Cron: each entry's last claimed tick, by name.
    async fn cron_marks(&self) -> Result<Vec<(String, DateTime<Utc>)>>;

    /// Cron: moves entry `name`'s mark from `from` (`None`: the entry has no mark yet) to
    /// `to` and inserts `jobs`, in one transaction. `None` when the mark was no longer `from`
    /// (another node claimed those ticks first): nothing is inserted. Of any number of nodes
    /// claiming the same ticks, exactly one wins, and a mark never moves back, so a tick never
    /// runs twice, even after its job finished.
    async fn cron_claim(
        &self,
        name: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        jobs: &[NewJob],
    ) -> Result<Option<Vec<Inserted>>>;

    /// Inserts a batch: one type, many targets, one `batches` row. If the type derives unique
    /// keys, a target that duplicates an open job (stored, or earlier in the batch) is not
    /// inserted: its id is that job's, it is counted in `duplicates` and not in the batch.
    async fn insert_batch(
        &self,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        opts: BatchOptions,
    ) -> Result<Submitted>;

    /// A slot for one runner task of `node_id` to keep (see [`Slot`]). It locks and claims
    /// only jobs within `scope`.
    async fn slot(&self, node_id: &str, scope: &Scope) -> Result<Box<dyn Slot>>;

    /// Records outcomes outside any chunk, in one short transaction, for jobs that are still
    /// pending: a processor broke its chunk's transaction, so they could not be written there.
    /// Waits for row locks (the broken chunk's are on their way out). Returns the rows changed.
    async fn settle(&self, outcomes: &[Outcome], node_id: &str) -> Result<u64>;

    /// Pending jobs within `scope` that are due, highest priority and oldest first: what the
    /// queue should hold. Leaves out jobs a live node (heard from within `node_stale`) has
    /// recorded it is running.
    async fn due_pending(
        &self,
        limit: i64,
        node_stale: Duration,
        scope: &Scope,
    ) -> Result<Vec<Due>>;

    /// Of `ids`, those pending and due now, with their priorities (to push after a commit).
    async fn due_among(&self, ids: &[Uuid]) -> Result<Vec<Due>>;

    /// Publishes the job types' policy (their `max_attempts`) for every insert path, the SQL
    /// functions included: a job inserted without `max_attempts` takes its type's, or 3.
    async fn publish_policy(&self, policy: &Policy) -> Result<()>;

    /// A stream of wake-ups from the database itself (PostgreSQL LISTEN, SQLite's
    /// `data_version`), so idle runners claim new work within milliseconds; `None` when the
    /// store has none (or it is turned off), and runners only poll.
    async fn wakeups(&self) -> Result<Option<BoxStream<'static, Wake>>>;

    /// Upserts the node's row. On PostgreSQL it goes over a session of the node's own, which
    /// also marks the node alive for as long as it is connected (see `delete_dead_nodes`).
    async fn heartbeat(&self, beat: &NodeBeat) -> Result<()>;

    /// Deletes the node's row and its intent records (clean shutdown).
    async fn remove_node(&self, id: &str) -> Result<()>;

    /// Renews `node_id`'s leases on `ids` for `ttl`; returns those it still holds.
    async fn extend_leases(&self, node_id: &str, ids: &[Uuid], ttl: Duration) -> Result<Vec<Uuid>>;

    /// Gives back `node_id`'s leases on `ids` whose processors were stopped by a shutdown:
    /// `pending` again, due now, the claim's attempt returned.
    async fn release_leases(&self, node_id: &str, ids: &[Uuid]) -> Result<u64>;

    /// Puts jobs whose lease expired back to `pending` (or `failed`, attempts spent); returns
    /// their new statuses.
    async fn rescue_expired_leases(&self) -> Result<Vec<JobStatus>>;

    /// Deletes nodes silent for longer than `stale`; returns how many. On PostgreSQL a node
    /// whose heartbeat session is still connected is alive however late its heartbeat: it is
    /// slow, not dead (a killed process's session ends with it).
    async fn delete_dead_nodes(&self, stale: Duration) -> Result<u64>;

    /// Takes the intent records of runners whose node is not alive (as `delete_dead_nodes`
    /// judges it) and that are older than `stale`, and charges an attempt to each job they name
    /// that is still pending, untouched since the record was written and not locked. Spent
    /// attempts end the job `failed`: a poison job. Returns the charged jobs' new statuses.
    async fn charge_abandoned(&self, stale: Duration) -> Result<Vec<JobStatus>>;

    /// Deletes up to `limit` jobs finished more than `retention` ago; returns how many.
    async fn prune_jobs(&self, retention: Duration, limit: i64) -> Result<u64>;

    /// Deletes batches older than `retention` that have no jobs left.
    async fn prune_batches(&self, retention: Duration) -> Result<u64>;

    async fn job(&self, id: Uuid) -> Result<Option<Job>>;

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>>;

    /// Puts a `failed` or `cancelled` job back to `pending`, due now, with fresh attempts.
    /// `None` when no such job matched ([`Store::retry`] explains why).
    async fn retry_job(&self, id: Uuid) -> Result<Option<Job>>;

    /// Cancels a pending job that is not running right now. `None` when no such job matched.
    async fn cancel_job(&self, id: Uuid) -> Result<Option<Job>>;

    async fn batch(&self, id: Uuid) -> Result<Option<BatchReport>>;

    /// The `limit` newest batches with their progress, newest first.
    async fn recent_batches(&self, limit: i64) -> Result<Vec<BatchReport>>;

    /// Counts by type × status.
    async fn type_counts(&self) -> Result<Vec<TypeCounts>>;
    /// Folds the report's pending count changes into its totals (PostgreSQL appends a change
    /// per statement; SQLite, with one writer, keeps its totals current as it goes). Returns
    /// how many changes it folded; a fold already running elsewhere makes it return 0.
    async fn fold_counts(&self) -> Result<u64> {
        Ok(0)
    }
    /// The jobs table's upkeep, where the store has such a thing (PostgreSQL's autovacuum).
    async fn table_health(&self) -> Result<Option<crate::report::TableHealth>> {
        Ok(None)
    }

    /// Jobs finished in each of the last 30 ten-second buckets, as (bucket, jobs) with
    /// bucket 29 the latest.
    async fn finished_buckets(&self) -> Result<Vec<(i64, i64)>>;

    /// Live nodes (heard from within `node_stale`).
    async fn nodes(&self, node_stale: Duration) -> Result<Vec<NodeReport>>;

    /// Pending jobs by queue and type (see [`PendingGroup`]).
    async fn pending_groups(&self) -> Result<Vec<PendingGroup>>;

    /// The earliest `run_at` among the pending jobs of `queue` and `job_type` (since when the
    /// oldest has been due, or will be); `None` when there are none. It may read the whole
    /// group, so it is asked only of groups no live node can run.
    async fn oldest_pending(&self, queue: &str, job_type: &str) -> Result<Option<DateTime<Utc>>>;

    /// Fails up to `limit` pending jobs of `queue` and `job_type` due for longer than `older`,
    /// with `reason`; returns how many. Jobs locked right now are left alone.
    async fn fail_unrunnable(
        &self,
        queue: &str,
        job_type: &str,
        older: Duration,
        reason: &str,
        limit: i64,
    ) -> Result<u64>;

    /// One job with its attempt history (see [`JobDetail`]).
    async fn job_detail(&self, id: Uuid) -> Result<Option<JobDetail>>;

    /// Puts up to `limit` failed or cancelled jobs that `sel` matches back to `pending`, due
    /// now, with fresh attempts (their history stays), in one transaction, first IDs first.
    /// Returns them, for the caller to queue once this has committed. `sel.status` is `None`,
    /// failed or cancelled ([`Store::retry_matching`] checks).
    async fn retry_jobs(&self, sel: &Selection, limit: i64) -> Result<Vec<Due>>;

    /// Cancels up to `limit` pending jobs that `sel` matches, in one transaction, first IDs
    /// first, skipping any job running right now (its row is locked by a chunk). Returns how
    /// many it cancelled. `sel.status` is `None` or pending ([`Store::cancel_matching`]).
    async fn cancel_jobs(&self, sel: &Selection, limit: i64) -> Result<u64>;

    /// Deletes up to `limit` jobs that `rule` matches, in one short transaction; returns how
    /// many.
    async fn prune_finished(&self, rule: &PruneRule, limit: i64) -> Result<u64>;
}

/// Batches listed in the status report.
pub const REPORT_BATCHES: i64 = 20;
/// Finished jobs deleted per pruning statement, so that workers get turns in between.
pub const PRUNE_CHUNK: i64 = 10_000;

/// What is written once, above every backend.
impl dyn Store {
    /// The status report: counts by type × status, recent batches, live nodes, throughput.
    pub async fn report(&self, node_stale: Duration) -> Result<StatusReport> {
        // Folding first keeps the read small; a report that cannot write (a read-only role)
        // still reads exact counts, only over more unfolded changes.
        if let Err(e) = self.fold_counts().await {
            tracing::debug!(error = %e, "report: cannot fold the count changes; reading them as they are");
        }
        let nodes = self.nodes(node_stale).await?;
        Ok(StatusReport {
            types: self.type_counts().await?,
            batches: self.recent_batches(REPORT_BATCHES).await?,
            unrunnable: self.unrunnable(&nodes).await?,
            nodes,
            queue_depth: None,
            throughput: Throughput::from_buckets(self.finished_buckets().await?),
            health: self.table_health().await?,
            generated_at: chrono::Utc::now(),
        })
    }

    /// Pending jobs that no live node in `nodes` can run (none serves their queue with a
    /// processor for their type), by queue and type, oldest first.
    pub async fn unrunnable(&self, nodes: &[NodeReport]) -> Result<Vec<Unrunnable>> {
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        for g in self.pending_groups().await? {
            let runnable = nodes
                .iter()
                .any(|n| n.queues.contains_key(&g.queue) && n.types.contains(&g.job_type));
            if runnable {
                continue;
            }
            // Gone between the two reads: run, cancelled or failed meanwhile.
            let Some(since) = self.oldest_pending(&g.queue, &g.job_type).await? else {
                continue;
            };
            out.push(Unrunnable {
                type_known: nodes.iter().any(|n| n.types.contains(&g.job_type)),
                queue_served: nodes.iter().any(|n| n.queues.contains_key(&g.queue)),
                waiting_secs: (now - since).num_milliseconds().max(0) as f64 / 1000.0,
                queue: g.queue,
                job_type: g.job_type,
                pending: g.pending,
                since,
            });
        }
        out.sort_by_key(|u| u.since);
        Ok(out)
    }

    /// Retries a failed or cancelled job, or explains why not.
    pub async fn retry(&self, id: Uuid) -> Result<Job> {
        match self.retry_job(id).await.map_err(key_taken)? {
            Some(j) => Ok(j),
            None => Err(why_not(self, id, RETRY_RULE).await),
        }
    }

    /// Cancels a pending job, or explains why not.
    pub async fn cancel(&self, id: Uuid) -> Result<Job> {
        match self.cancel_job(id).await? {
            Some(j) => Ok(j),
            None => Err(why_not(self, id, CANCEL_RULE).await),
        }
    }

    /// Deletes finished jobs (and then-empty batches) past `retention`, a chunk at a time.
    pub async fn prune(&self, retention: Duration) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.prune_jobs(retention, PRUNE_CHUNK).await?;
            total += n;
            if n == 0 {
                break;
            }
        }
        self.prune_batches(retention).await?;
        Ok(total)
    }

    /// A bulk retry: checks the selection, then [`Store::retry_jobs`].
    pub async fn retry_matching(&self, sel: &Selection, limit: i64) -> Result<Vec<Due>> {
        check_bulk(
            sel,
            limit,
            &[JobStatus::Failed, JobStatus::Cancelled],
            "retried",
        )?;
        self.retry_jobs(sel, limit).await.map_err(key_taken)
    }

    /// A bulk cancel: checks the selection, then [`Store::cancel_jobs`].
    pub async fn cancel_matching(&self, sel: &Selection, limit: i64) -> Result<u64> {
        check_bulk(sel, limit, &[JobStatus::Pending], "cancelled")?;
        self.cancel_jobs(sel, limit).await
    }

    /// Deletes what `rule` matches, [`PRUNE_CHUNK`] jobs per transaction, so that a backlog
    /// of millions of old rows is many short deletes, never one huge one.
    pub async fn prune_rule(&self, rule: &PruneRule) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.prune_finished(rule, PRUNE_CHUNK).await?;
            total += n;
            if n < PRUNE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Drops dead nodes and charges an attempt to what their runners were running.
    pub async fn rescue_abandoned(&self, stale: Duration) -> Result<Rescued> {
        let dead_nodes = self.delete_dead_nodes(stale).await?;
        let mut statuses = self.charge_abandoned(stale).await?;
        statuses.extend(self.rescue_expired_leases().await?);
        let failed = statuses.iter().filter(|s| **s == JobStatus::Failed).count() as u64;
        Ok(Rescued {
            dead_nodes,
            retried: statuses.len() as u64 - failed,
            failed,
        })
    }
}

/// Opens the store a URL names: `postgres://…` or `sqlite://PATH`.
/// `idle_tx_limit`: on PostgreSQL, the longest a session may sit idle inside a transaction
/// (see [`postgres::PgStore::connect_guarded`]); `None` leaves the server's setting.
pub async fn connect(
    url: &str,
    schema: &str,
    pool_size: u32,
    idle_tx_limit: Option<Duration>,
) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        connect_postgres(url, schema, pool_size, idle_tx_limit).await
    } else if url.starts_with("sqlite:") {
        connect_sqlite(url, pool_size).await
    } else {
        Err(Error::Config(format!(
            "unsupported database URL {:?}: use postgres://… or sqlite://PATH",
            redact_url(url)
        )))
    }
}

#[cfg(feature = "postgres")]
async fn connect_postgres(
    url: &str,
    schema: &str,
    pool_size: u32,
    idle_tx_limit: Option<Duration>,
) -> Result<Arc<dyn Store>> {
    let store = postgres::PgStore::connect_guarded(url, schema, pool_size, idle_tx_limit).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(
    url: &str,
    _schema: &str,
    _pool_size: u32,
    _idle_tx_limit: Option<Duration>,
) -> Result<Arc<dyn Store>> {
    Err(not_built(url, "postgres"))
}

#[cfg(feature = "sqlite")]
async fn connect_sqlite(url: &str, pool_size: u32) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(
        sqlite::SqliteStore::connect(url, pool_size).await?,
    ))
}

#[cfg(not(feature = "sqlite"))]
async fn connect_sqlite(url: &str, _pool_size: u32) -> Result<Arc<dyn Store>> {
    Err(not_built(url, "sqlite"))
}

/// A store this build left out: say which Cargo feature brings it.
#[cfg(not(all(feature = "postgres", feature = "sqlite")))]
fn not_built(url: &str, feature: &str) -> Error {
    Error::Config(format!(
        "database URL {:?} needs skiplock built with the `{feature}` feature",
        redact_url(url)
    ))
}

/// A URL fit for logs and error messages: any password replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Validates a PostgreSQL schema name: it is spliced into SQL, so only plain identifiers.
pub fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid schema {schema:?}: use lowercase letters, digits and '_' (at most 63)"
        )))
    }
}

/// A status as the tables store it; anything else is a corrupt row.
pub(crate) fn decode_status(s: &str) -> Result<JobStatus> {
    s.parse()
        .map_err(|e: String| Error::Database(sqlx::Error::Decode(e.into())))
}

/// A retry that would open a second job with the same type and unique key is refused by the
/// database's constraint: said as a conflict, not as a database failure.
fn key_taken(e: Error) -> Error {
    match e {
        Error::Database(d)
            if d.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            Error::Conflict(
                "another open job of the same type has this job's unique key: cancel it or wait \
                 for it to finish, then retry"
                    .into(),
            )
        }
        other => other,
    }
}

/// Why a retry matched no row.
const RETRY_RULE: &str = "only failed or cancelled jobs can be retried";
/// Why a cancel matched no row.
const CANCEL_RULE: &str =
    "only pending jobs (not inside a transaction right now) and running lease-mode jobs can be cancelled";

/// Explains why a retry or cancel matched no row: missing, or in the wrong state.
async fn why_not(store: &dyn Store, id: Uuid, rule: &str) -> Error {
    match store.job(id).await {
        Ok(None) => Error::NotFound(format!("job {id}")),
        Ok(Some(j)) if j.status == JobStatus::Pending => Error::Conflict(format!(
            "job {id} is pending (perhaps running right now): {rule}"
        )),
        Ok(Some(j)) => Error::Conflict(format!("job {id} is {}: {rule}", j.status)),
        Err(e) => e,
    }
}

/// Checks a batch's type, options and targets before anything is written; returns its max
/// attempts if it sets them (otherwise the type's policy applies in the insert itself).
pub(crate) fn validate_batch(
    job_type: &str,
    targets: &[serde_json::Value],
    opts: &BatchOptions,
) -> Result<Option<i32>> {
    let probe = NewJob {
        max_attempts: opts.max_attempts,
        traceparent: opts.traceparent.clone(),
        queue: opts.queue.clone(),
        ..NewJob::new(job_type, serde_json::Value::Null)
    };
    probe.validate().map_err(Error::Invalid)?;
    for (i, t) in targets.iter().enumerate() {
        crate::job::validate_target(t).map_err(|e| Error::Invalid(format!("targets[{i}]: {e}")))?;
    }
    Ok(opts.max_attempts)
}
