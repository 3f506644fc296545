//! The SQLite store: the embedded single-node default. Same tables, same semantics as the
//! PostgreSQL reference, within what one SQLite file can honestly do.
//!
//! # Writes are serialised, on purpose
//!
//! SQLite has one writer per database file. A job's transaction must hold the write lock
//! from the moment it picks its rows until its outcome commits (that is what makes the
//! processor's writes and the job's status commit together), so job transactions cannot
//! overlap: `concurrency` workers on SQLite take turns, one transaction at a time.
//!
//! Two layers make that orderly instead of a storm of "database is locked" errors:
//!
//! * inside this process, every write (job chunks, inserts, heartbeats, maintenance) first
//!   takes [`SqliteStore`]'s async writer mutex, so writers queue in FIFO order without ever
//!   touching SQLite's lock while another of ours holds it;
//! * across processes (a `submit` beside a `worker`), every write transaction is
//!   `BEGIN IMMEDIATE`, taking SQLite's write lock up front, and waits for it under a busy
//!   timeout. A deferred `BEGIN` would read first and could fail to upgrade to a writer
//!   (`SQLITE_BUSY_SNAPSHOT`) with no retry at all.
//!
//! WAL mode lets readers (reports, listings, the reconciler's due-job query) run beside the
//! writer. `FOR UPDATE SKIP LOCKED` does not exist here and is not needed: with writes
//! serialised, `lock_chunk`'s "pending and due" check inside the write transaction sees the
//! only truth there is, and a duplicate ID simply finds its job no longer pending.

mod chunk;
mod ops;
mod outcomes;
mod rows;
pub mod sql;
mod unique;
mod watch;
mod writer;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use self::outcomes::{plain_outcomes, record_outcomes};
use self::rows::{batch_from_row, fmt_time, job_from_row, modifier, node_from_row};
use super::{
    decode_status, validate_batch, BatchOptions, JobFilter, NodeBeat, Outcome, PendingGroup,
    PruneRule, Scope, Selection, Slot, Store, Wake, INSERT_CHUNK,
};
use crate::error::{Error, Result};
use crate::job::{Due, Inserted, Job, JobDetail, JobStatus, NewJob, Submitted, DEFAULT_QUEUE};
use crate::processor::Policy;
use crate::report::{BatchReport, NodeReport, TypeCounts};
use futures::stream::BoxStream;

/// The migrations, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a write waits for another process's write transaction before SQLite gives up
/// with "database is locked". A job transaction lasts as long as its processor, so this
/// matches the default processor time limit (60 s).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows buffered between a connection's thread and its reader (sqlx's default is 50).
const ROW_BUFFER: usize = 1024;

/// Most pooled connections (each is an OS thread in sqlx). Only one writes at a time and
/// workers waiting for their turn hold none, so the rest only serve readers: a handful is
/// plenty, however high the concurrency.
const MAX_CONNECTIONS: u32 = 8;

/// SQLite over a small connection pool. Only one connection writes at a time (see the
/// module docs); the others serve readers.
pub struct SqliteStore {
    pool: SqlitePool,
    /// The write turn and the connection job chunks run on: held for the whole life of every
    /// write transaction this store opens, including a job chunk's (its guard travels inside
    /// the chunk's transaction object). See [`writer`].
    writer: Arc<tokio::sync::Mutex<writer::Writer>>,
    /// Jobs locked by this store's open chunks. Lets `cancel_job` answer "running right now"
    /// at once, as PostgreSQL's `SKIP LOCKED` does, instead of queueing behind the job.
    running: Arc<Mutex<HashSet<Uuid>>>,
}

/// A plain write: the transaction first so that, dropped on an error path, its rollback is
/// queued before the writer mutex is released.
struct Write {
    tx: Transaction<'static, Sqlite>,
    _guard: writer::Turn,
}

impl SqliteStore {
    pub(super) fn is_running(&self, id: Uuid) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    /// Opens (creating if missing) the database a `sqlite:` URL names, in WAL mode.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL never corrupts and survives any process crash; only an OS
            // crash or power cut may undo the last commits (jobs then run again, their
            // database effects undone with them). FULL would fsync every job's commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            // Rows a query's answer carries from the connection's thread before it waits for
            // the reader: a whole chunk's lock (up to 1000 jobs) in one hand-over, not twenty.
            .row_buffer_size(ROW_BUFFER);
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size.clamp(2, MAX_CONNECTIONS))
            .acquire_timeout(Duration::from_secs(30))
            // A local file has no server to drop the connection: the default ping before
            // every acquire would be two extra round trips per job for nothing.
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// Wraps an existing pool. The pool's connections should use WAL and a busy timeout.
    pub fn from_pool(pool: SqlitePool) -> Self {
        SqliteStore {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(writer::Writer::default())),
            running: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Waits for our turn to write, then opens a `BEGIN IMMEDIATE` transaction.
    async fn write(&self) -> Result<Write> {
        let guard = writer::turn(&self.writer).await?;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Write { tx, _guard: guard })
    }

    async fn insert_batch_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        batch_id: Uuid,
        job_type: &str,
        targets: &[serde_json::Value],
        max_attempts: Option<i32>,
        opts: &BatchOptions,
    ) -> Result<(Vec<Uuid>, String)> {
        let queue: String = sqlx::query_scalar(sql::RESOLVE_QUEUE)
            .bind(&opts.queue)
            .bind(job_type)
            .fetch_one(&mut **tx)
            .await?;
        sqlx::query(sql::INSERT_BATCH_ROW)
            .bind(batch_id.to_string())
            .bind(&opts.name)
            .bind(job_type)
            .bind(targets.len() as i64)
            .execute(&mut **tx)
            .await?;
        let run_at = opts.run_at.map(fmt_time);
        let mut ids = Vec::with_capacity(targets.len());
        let mut chunks = targets.chunks(INSERT_CHUNK);
        let mut next = chunks.next().map(encode_batch_rows).transpose()?;
        while let Some((cids, rows)) = next.take() {
            let insert = sqlx::query(sql::INSERT_BATCH_JOBS)
                .bind(rows)
                .bind(job_type)
                .bind(max_attempts)
                .bind(&run_at)
                .bind(opts.priority)
                .bind(batch_id.to_string())
                .bind(&queue)
                .bind(&opts.traceparent)
                .execute(&mut **tx);
            // The next chunk is encoded here while SQLite inserts this one on the connection's
            // thread: the two halves of a bulk insert overlap instead of taking turns.
            let (done, following) = tokio::join!(insert, async {
                chunks.next().map(encode_batch_rows).transpose()
            });
            done?;
            next = following?;
            ids.extend(cids);
        }
        Ok((ids, queue))
    }
}

/// Inserts jobs (validated) in the caller's write transaction: plain ones in bulk, keyed
/// ones (see [`unique`]) one by one after them, in order.
async fn insert_checked_in(
    tx: &mut Transaction<'static, Sqlite>,
    jobs: &[NewJob],
) -> Result<Vec<Inserted>> {
    let mut types: Vec<&str> = jobs.iter().map(|j| j.job_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let policies = unique::policies(&mut *tx, &types).await?;
    let policy = |j: &NewJob| policies.get(&j.job_type);
    let mut out = Vec::with_capacity(jobs.len());
    // RETURNING promises no order: each plain job's queue, matched back to its ID.
    let mut queues = std::collections::HashMap::new();
    for chunk in jobs.chunks(INSERT_CHUNK) {
        let mut rows = Vec::with_capacity(chunk.len());
        for j in chunk {
            let id = Uuid::now_v7();
            if !unique::Unique::keyed(policy(j), j) {
                rows.push(serde_json::json!([
                    id.to_string(),
                    j.job_type,
                    j.target.to_string(),
                    j.max_attempts,
                    j.run_at.map(fmt_time),
                    j.priority,
                    j.queue,
                    j.traceparent
                ]));
            }
            out.push(Inserted {
                id,
                duplicate: false,
                queue: String::new(),
            });
        }
        if !rows.is_empty() {
            let inserted = sqlx::query(sql::INSERT_JOBS)
                .bind(serde_json::Value::from(rows).to_string())
                .fetch_all(&mut **tx)
                .await?;
            for r in &inserted {
                queues.insert(rows::uuid(r.try_get(0)?)?, r.try_get::<String, _>(1)?);
            }
        }
    }
    // Keyed jobs after the plain ones, in order: each sees the ones before it.
    for (j, done) in jobs.iter().zip(out.iter_mut()) {
        if unique::Unique::keyed(policy(j), j) {
            *done = unique::insert_keyed(&mut *tx, j, policy(j), done.id, None).await?;
        } else {
            done.queue = queues
                .remove(&done.id)
                .unwrap_or_else(|| DEFAULT_QUEUE.to_string());
        }
    }
    Ok(out)
}

/// A chunk of a batch as [`sql::INSERT_BATCH_JOBS`] reads it, `[[id, target JSON text], …]`,
/// with the IDs it gives the jobs.
fn encode_batch_rows(chunk: &[serde_json::Value]) -> Result<(Vec<Uuid>, String)> {
    let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<(String, String)> = ids
        .iter()
        .zip(chunk)
        .map(|(id, t)| (id.to_string(), t.to_string()))
        .collect();
    Ok((ids, serde_json::to_string(&rows).map_err(invalid)?))
}

fn due_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Due> {
    Ok(Due {
        id: rows::uuid(r.try_get::<String, _>(0)?)?,
        priority: r.try_get(1)?,
        queue: r.try_get(2)?,
    })
}

fn invalid(e: serde_json::Error) -> Error {
    Error::Invalid(format!("cannot encode rows: {e}"))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        // Inside one BEGIN IMMEDIATE, so that concurrent migrators (two processes starting at
        // once) queue for the write lock instead of failing to upgrade a read; the migrator's
        // own transactions become savepoints inside it.
        let mut w = self.write().await?;
        MIGRATOR
            .run_direct(&mut *w.tx)
            .await
            .map_err(|e| Error::Config(format!("cannot migrate the SQLite database: {e}")))?;
        w.tx.commit().await?;
        Ok(())
    }

    async fn insert_checked(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>> {
        for j in jobs {
            j.validate().map_err(Error::Invalid)?;
        }
        let mut w = self.write().await?;
        let out = insert_checked_in(&mut w.tx, jobs).await?;
        w.tx.commit().await?;
        Ok(out)
    }

    async fn cron_marks(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(sql::CRON_MARKS).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    rows::parse_time(&r.try_get::<String, _>(1)?)?,
                ))
            })
            .collect()
    }

    async fn cron_claim(
        &self,
        name: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        jobs: &[NewJob],
    ) -> Result<Option<Vec<Inserted>>> {
        for j in jobs {
            j.validate().map_err(Error::Invalid)?;
        }
        let mut w = self.write().await?;
        let q = match from {
            None => sqlx::query(sql::CRON_CREATE).bind(name).bind(fmt_time(to)),
            Some(f) => sqlx::query(sql::CRON_ADVANCE)
                .bind(name)
                .bind(fmt_time(f))
                .bind(fmt_time(to)),
        };
        if q.execute(&mut *w.tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let out = insert_checked_in(&mut w.tx, jobs).await?;
        w.tx.commit().await?;
        Ok(Some(out))
    }

    async fn insert_batch(
        &self,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        opts: BatchOptions,
    ) -> Result<Submitted> {
        let max_attempts = validate_batch(job_type, &targets, &opts)?;
        let batch_id = Uuid::now_v7();
        let mut w = self.write().await?;
        let policies = unique::policies(&mut w.tx, &[job_type]).await?;
        let policy = policies.get(job_type);
        let probe = NewJob::new(job_type, serde_json::Value::Null);
        if !unique::Unique::keyed(policy, &probe) {
            let (ids, queue) = self
                .insert_batch_in(&mut w.tx, batch_id, job_type, &targets, max_attempts, &opts)
                .await?;
            w.tx.commit().await?;
            return Ok(Submitted {
                batch_id: Some(batch_id),
                ids,
                queue,
                duplicates: 0,
            });
        }
        // A type that derives unique keys: each target through the keyed insert; the batch
        // counts only the jobs it got.
        let (_, queue) = self
            .insert_batch_in(&mut w.tx, batch_id, job_type, &[], max_attempts, &opts)
            .await?;
        let mut ids = Vec::with_capacity(targets.len());
        let mut duplicates = 0;
        for t in targets {
            let job = NewJob {
                max_attempts,
                run_at: opts.run_at,
                priority: opts.priority,
                queue: Some(queue.clone()),
                ..NewJob::new(job_type, t)
            };
            let i = unique::insert_keyed(&mut w.tx, &job, policy, Uuid::now_v7(), Some(batch_id))
                .await?;
            duplicates += u64::from(i.duplicate);
            ids.push(i.id);
        }
        sqlx::query(sql::SET_BATCH_TOTAL)
            .bind(batch_id.to_string())
            .bind((ids.len() as u64 - duplicates) as i64)
            .execute(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        Ok(Submitted {
            batch_id: Some(batch_id),
            ids,
            queue,
            duplicates,
        })
    }

    async fn slot(&self, node_id: &str, scope: &Scope) -> Result<Box<dyn Slot>> {
        Ok(Box::new(self.open_slot(node_id, scope)))
    }

    async fn settle(&self, outcomes: &[Outcome], node_id: &str) -> Result<u64> {
        let mut w = self.write().await?;
        let n = record_outcomes(&mut w.tx, outcomes, node_id).await?;
        w.tx.commit().await?;
        Ok(n)
    }

    async fn due_pending(
        &self,
        limit: i64,
        node_stale: Duration,
        scope: &Scope,
    ) -> Result<Vec<Due>> {
        let rows = sqlx::query(sql::DUE_PENDING)
            .bind(limit)
            .bind(modifier(node_stale, -1))
            .bind(&scope.queue)
            .bind(rows::types_json(&scope.types))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(due_from_row).collect()
    }

    async fn due_among(&self, ids: &[Uuid]) -> Result<Vec<Due>> {
        let rows = sqlx::query(sql::DUE_AMONG)
            .bind(rows::ids_json(ids))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(due_from_row).collect()
    }

    async fn publish_policy(&self, policy: &Policy) -> Result<()> {
        let rows: Vec<serde_json::Value> = policy
            .types()
            .into_iter()
            .map(|(t, o)| {
                let u = policy.unique(t);
                let fields = u
                    .filter(|u| !u.fields.is_empty())
                    .map(|u| serde_json::Value::from(u.fields.clone()).to_string());
                let ms = u.and_then(|u| u.window).map(|w| w.as_millis() as i64);
                serde_json::json!([t, o.max_attempts, fields, ms, policy.queue(t)])
            })
            .collect();
        let mut w = self.write().await?;
        sqlx::query(sql::PUBLISH_POLICY)
            .bind(serde_json::Value::from(rows).to_string())
            .execute(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        Ok(())
    }

    async fn wakeups(&self) -> Result<Option<BoxStream<'static, Wake>>> {
        Ok(Some(watch::wakeups(&self.pool).await?))
    }

    async fn heartbeat(&self, b: &NodeBeat) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(sql::HEARTBEAT)
            .bind(&b.id)
            .bind(&b.host)
            .bind(b.pid)
            .bind(b.concurrency)
            .bind(b.in_flight)
            .bind(b.processed)
            .bind(b.failed)
            .bind(serde_json::to_string(&b.queues).map_err(invalid)?)
            .bind(serde_json::to_string(&b.types).map_err(invalid)?)
            .execute(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        Ok(())
    }

    async fn remove_node(&self, id: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(sql::REMOVE_NODE)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
        sqlx::query(sql::REMOVE_HOLDS)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        Ok(())
    }

    async fn extend_leases(&self, node_id: &str, ids: &[Uuid], ttl: Duration) -> Result<Vec<Uuid>> {
        let mut w = self.write().await?;
        let kept: Vec<String> = sqlx::query_scalar(sql::EXTEND_LEASES)
            .bind(rows::ids_json(ids))
            .bind(node_id)
            .bind(modifier(ttl, 1))
            .fetch_all(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        kept.into_iter().map(rows::uuid).collect()
    }

    async fn release_leases(&self, node_id: &str, ids: &[Uuid]) -> Result<u64> {
        let mut w = self.write().await?;
        let n = sqlx::query(sql::RELEASE_LEASES)
            .bind(rows::ids_json(ids))
            .bind(node_id)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.tx.commit().await?;
        Ok(n)
    }

    async fn rescue_expired_leases(&self) -> Result<Vec<JobStatus>> {
        let mut w = self.write().await?;
        let statuses: Vec<String> = sqlx::query_scalar(sql::RESCUE_EXPIRED)
            .fetch_all(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        statuses.iter().map(|s| decode_status(s)).collect()
    }

    async fn delete_dead_nodes(&self, stale: Duration) -> Result<u64> {
        let mut w = self.write().await?;
        let n = sqlx::query(sql::DELETE_DEAD_NODES)
            .bind(modifier(stale, -1))
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.tx.commit().await?;
        Ok(n)
    }

    async fn charge_abandoned(&self, stale: Duration) -> Result<Vec<JobStatus>> {
        let cutoff = modifier(stale, -1);
        let mut w = self.write().await?;
        let statuses: Vec<String> = sqlx::query_scalar(sql::CHARGE_ABANDONED)
            .bind(&cutoff)
            .fetch_all(&mut *w.tx)
            .await?;
        sqlx::query(sql::DELETE_ABANDONED)
            .bind(&cutoff)
            .execute(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        statuses.iter().map(|s| decode_status(s)).collect()
    }

    async fn prune_jobs(&self, retention: Duration, limit: i64) -> Result<u64> {
        // One short write per call, so workers get their turns in between.
        let mut w = self.write().await?;
        let n = sqlx::query(sql::PRUNE)
            .bind(modifier(retention, -1))
            .bind(limit)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.tx.commit().await?;
        Ok(n)
    }

    async fn prune_batches(&self, retention: Duration) -> Result<u64> {
        let mut w = self.write().await?;
        let n = sqlx::query(sql::PRUNE_BATCHES)
            .bind(modifier(retention, -1))
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.tx.commit().await?;
        Ok(n)
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query(sql::GET_JOB)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let rows = sqlx::query(sql::LIST_JOBS)
            .bind(f.status.map(|s| s.as_str()))
            .bind(&f.job_type)
            .bind(f.batch_id.map(|b| b.to_string()))
            .bind(f.after.map(|a| a.to_string()))
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_job(&self, id: Uuid) -> Result<Option<Job>> {
        // Only a failed or cancelled job can match, and no chunk ever holds one: check first
        // so that a pending (perhaps running) job is a conflict without queueing to write.
        match self.job(id).await? {
            Some(j) if matches!(j.status, JobStatus::Failed | JobStatus::Cancelled) => {}
            _ => return Ok(None),
        }
        let mut w = self.write().await?;
        let row = sqlx::query(sql::RETRY_JOB)
            .bind(id.to_string())
            .fetch_optional(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn cancel_job(&self, id: Uuid) -> Result<Option<Job>> {
        // The SKIP LOCKED of this store: a job one of our chunks holds is running right now.
        if self.is_running(id) {
            return Ok(None);
        }
        let mut w = self.write().await?;
        let row = sqlx::query(sql::CANCEL_JOB)
            .bind(id.to_string())
            .fetch_optional(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn batch(&self, id: Uuid) -> Result<Option<BatchReport>> {
        let row = sqlx::query(sql::BATCH)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(batch_from_row).transpose()
    }

    async fn recent_batches(&self, limit: i64) -> Result<Vec<BatchReport>> {
        sqlx::query(sql::RECENT_BATCHES)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(batch_from_row)
            .collect()
    }

    async fn type_counts(&self) -> Result<Vec<TypeCounts>> {
        Ok(sqlx::query_as(sql::TYPE_COUNTS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn finished_buckets(&self) -> Result<Vec<(i64, i64)>> {
        sqlx::query(sql::THROUGHPUT)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("bucket")?, r.try_get("n")?)))
            .collect()
    }

    async fn nodes(&self, node_stale: Duration) -> Result<Vec<NodeReport>> {
        sqlx::query(sql::NODES)
            .bind(modifier(node_stale, -1))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(node_from_row)
            .collect()
    }

    async fn pending_groups(&self) -> Result<Vec<PendingGroup>> {
        sqlx::query(sql::PENDING_GROUPS)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(PendingGroup {
                    queue: r.try_get("queue")?,
                    job_type: r.try_get("type")?,
                    pending: r.try_get("pending")?,
                })
            })
            .collect()
    }

    async fn oldest_pending(&self, queue: &str, job_type: &str) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(sql::OLDEST_PENDING)
            .bind(queue)
            .bind(job_type)
            .fetch_one(&self.pool)
            .await?;
        rows::opt_time(&row, "since")
    }

    async fn fail_unrunnable(
        &self,
        queue: &str,
        job_type: &str,
        older: Duration,
        reason: &str,
        limit: i64,
    ) -> Result<u64> {
        // What our chunks hold right now is running: left alone, as in a bulk cancel.
        let running: Vec<Uuid> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let mut w = self.write().await?;
        let n = sqlx::query(sql::FAIL_UNRUNNABLE)
            .bind(queue)
            .bind(job_type)
            .bind(reason)
            .bind(modifier(older, -1))
            .bind(limit)
            .bind(rows::ids_json(&running))
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.tx.commit().await?;
        Ok(n)
    }

    async fn job_detail(&self, id: Uuid) -> Result<Option<JobDetail>> {
        self.job_detail_op(id).await
    }

    async fn retry_jobs(&self, sel: &Selection, limit: i64) -> Result<Vec<Due>> {
        self.retry_jobs_op(sel, limit).await
    }

    async fn cancel_jobs(&self, sel: &Selection, limit: i64) -> Result<u64> {
        self.cancel_jobs_op(sel, limit).await
    }

    async fn prune_finished(&self, rule: &PruneRule, limit: i64) -> Result<u64> {
        self.prune_finished_op(rule, limit).await
    }
}
