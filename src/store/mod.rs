//! The store: all SQL lives behind this seam. PostgreSQL is the production store and the
//! reference for every invariant; SQLite is the embedded single-node default.
//!
//! The executor only sees [`Store`], [`Chunk`] and [`JobTx`], so a backend slots in by
//! implementing the trait and adding a [`Conn`] variant.

mod jobtx;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use jobtx::{Conn, JobTx};

use crate::error::{Error, Result};
use crate::job::{Job, JobStatus, NewJob, Submitted};
use crate::report::{BatchReport, NodeReport, StatusReport};

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
}

/// A job ID as the queue carries it, with the priority it is popped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Due {
    pub id: Uuid,
    pub priority: i16,
}

/// What one processor run decided for its job, written in the chunk's transaction.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: Uuid,
    pub status: JobStatus,
    pub error: Option<String>,
    /// For a retry: how long until it is due again (computed on the database's clock).
    pub retry_delay_ms: Option<i64>,
}

/// A node's heartbeat: what it is and what it holds right now.
#[derive(Debug, Clone)]
pub struct NodeBeat {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub concurrency: i32,
    pub in_flight: i32,
    pub processed: i64,
    pub failed: i64,
    /// Jobs locked by this node at the time of the beat: the evidence that convicts a
    /// poison job if the node dies holding it.
    pub held: Vec<Uuid>,
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

/// What rescuing abandoned jobs from dead nodes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rescued {
    pub dead_nodes: u64,
    /// Jobs given another attempt.
    pub retried: u64,
    /// Jobs that had spent their attempts and ended `failed` (poison jobs).
    pub failed: u64,
}

/// A connection a worker task keeps for its whole life: a chunk then costs no pool checkout
/// and no release ping. The executor drops it after any error, so a broken connection is
/// replaced by a fresh one; it is closed, not returned to the pool, when dropped.
pub enum Lease {
    Postgres {
        conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
        /// The node holding this lease, named in its intent records.
        node_id: String,
        /// This worker slot's intent record (a row of `holds`), overwritten each chunk.
        slot: Uuid,
    },
    /// SQLite runs one writer at a time, so a kept connection buys nothing; each chunk
    /// borrows one from the (small) pool instead.
    Sqlite,
}

/// Locked jobs and the open transaction (on a [`Lease`]) that holds their row locks.
pub struct Chunk<'c> {
    pub conn: Conn<'c>,
    pub jobs: Vec<Job>,
}

/// The store seam. Every method is one short transaction unless it says otherwise.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and reports: `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// For downcasting to a concrete store (PostgreSQL-only features such as `enqueue_in`).
    fn as_any(&self) -> &dyn std::any::Any;

    /// Creates or upgrades the tables. Safe to run from several nodes at once.
    async fn migrate(&self) -> Result<()>;

    /// Inserts jobs in one transaction, a statement per [`INSERT_CHUNK`] rows.
    async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<Vec<Uuid>>;

    /// Inserts a batch: one type, many targets, one `batches` row.
    async fn insert_batch(
        &self,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        opts: BatchOptions,
    ) -> Result<Submitted>;

    /// A connection for one worker task of `node_id` to keep (see [`Lease`]).
    async fn lease(&self, node_id: &str) -> Result<Lease>;

    /// Begins a transaction on the lease and locks those of `ids` that are pending and due,
    /// skipping rows another transaction holds. The chunk may hold fewer jobs than asked.
    async fn lock_chunk<'c>(&self, lease: &'c mut Lease, ids: &[Uuid]) -> Result<Chunk<'c>>;

    /// Writes the outcomes of a chunk's jobs and commits. Nothing is visible before this.
    async fn finish_chunk<'c>(
        &self,
        chunk: Chunk<'c>,
        outcomes: &[Outcome],
        node_id: &str,
    ) -> Result<()>;

    /// Pending jobs that are due, highest priority and oldest first: what the queue should hold.
    async fn due_pending(&self, limit: i64) -> Result<Vec<Due>>;

    /// Upserts the node's row.
    async fn heartbeat(&self, beat: &NodeBeat) -> Result<()>;

    /// Deletes the node's row (clean shutdown).
    async fn remove_node(&self, id: &str) -> Result<()>;

    /// Deletes nodes silent for longer than `stale` and charges an attempt to each pending job
    /// they held (ending it `failed` once its attempts are spent).
    async fn rescue_abandoned(&self, stale: Duration) -> Result<Rescued>;

    /// Deletes finished jobs (and then-empty batches) finished more than `retention` ago.
    async fn prune(&self, retention: Duration) -> Result<u64>;

    async fn job(&self, id: Uuid) -> Result<Option<Job>>;

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>>;

    /// Puts a `failed` or `cancelled` job back to `pending`, due now, with fresh attempts.
    async fn retry_job(&self, id: Uuid) -> Result<Job>;

    /// Cancels a pending job. A job running right now is locked: that is a conflict.
    async fn cancel_job(&self, id: Uuid) -> Result<Job>;

    async fn batch(&self, id: Uuid) -> Result<Option<BatchReport>>;

    /// Counts by type × status, per batch, per live node.
    async fn report(&self, node_stale: Duration) -> Result<StatusReport>;

    /// Live nodes (heard from within `node_stale`).
    async fn nodes(&self, node_stale: Duration) -> Result<Vec<NodeReport>>;
}

/// Opens the store a URL names: `postgres://…` or `sqlite://PATH`.
pub async fn connect(url: &str, schema: &str, pool_size: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PgStore::connect(url, schema, pool_size).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::connect(url, pool_size).await?,
        ))
    } else {
        Err(Error::Config(format!(
            "unsupported database URL {:?}: use postgres://… or sqlite://PATH",
            redact_url(url)
        )))
    }
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

/// Why a retry matched no row.
pub(crate) const RETRY_RULE: &str = "only failed or cancelled jobs can be retried";
/// Why a cancel matched no row.
pub(crate) const CANCEL_RULE: &str = "only pending jobs that are not running can be cancelled";

/// Explains why a retry or cancel matched no row: missing, or in the wrong state.
pub(crate) async fn why_not(store: &dyn Store, id: Uuid, rule: &str) -> Error {
    match store.job(id).await {
        Ok(None) => Error::NotFound(format!("job {id}")),
        Ok(Some(j)) if j.status == JobStatus::Pending => Error::Conflict(format!(
            "job {id} is pending (perhaps running right now): {rule}"
        )),
        Ok(Some(j)) => Error::Conflict(format!("job {id} is {}: {rule}", j.status)),
        Err(e) => e,
    }
}

/// Checks a batch's type and options before anything is written; returns its max attempts.
pub(crate) fn batch_max_attempts(job_type: &str, opts: &BatchOptions) -> Result<i32> {
    let probe = NewJob::new(job_type, serde_json::Value::Null).max_attempts(
        opts.max_attempts
            .unwrap_or(crate::job::DEFAULT_MAX_ATTEMPTS),
    );
    probe.validate().map_err(Error::Invalid)?;
    Ok(probe.max_attempts)
}
