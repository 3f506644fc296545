//! Runner slots and chunk transactions on SQLite: the write turn a chunk keeps until it
//! commits, the intent record written before it opens, and the job savepoints inside it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{Executor as _, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::rows::{ids_json, job_from_row, modifier, types_json};
use super::{record_outcomes, sql, SqliteStore};
use crate::error::Result;
use crate::job::Job;
use crate::store::{ChunkTx, CommitProbe, JobConn, Locked, Outcome, Scope, Slot, ROLLBACK_JOB};

/// How long after a job's time limit its running SQL statement is interrupted.
const INTERRUPT_GRACE: Duration = Duration::from_millis(100);

/// A runner's slot. SQLite runs one writer at a time, so a kept connection buys nothing:
/// each chunk borrows one from the (small) pool.
pub(super) struct SqliteSlot {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
    running: Arc<Mutex<HashSet<Uuid>>>,
    node_id: String,
    /// This slot's intent record, a row of `holds`.
    slot: Uuid,
    /// The one queue this slot's runner serves.
    queue: String,
    /// The types its node can run, as the JSON array the statements read.
    types: String,
}

impl SqliteStore {
    pub(super) fn open_slot(&self, node_id: &str, scope: &Scope) -> SqliteSlot {
        SqliteSlot {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
            running: self.running.clone(),
            node_id: node_id.to_string(),
            slot: Uuid::now_v7(),
            queue: scope.queue.clone(),
            types: types_json(&scope.types),
        }
    }
}

#[async_trait]
impl Slot for SqliteSlot {
    async fn lock<'s>(&'s mut self, ids: &[Uuid]) -> Result<Locked<'s>> {
        let guard = self.writer.clone().lock_owned().await;
        self.lock_with(guard, ids).await
    }

    async fn claim<'s>(&'s mut self, max: usize) -> Result<Locked<'s>> {
        // With the write turn held, no chunk of this process holds any job, so the most
        // urgent pending ones are free here; another process's chunk may still take some
        // first, and locking them below (pending and due) drops those.
        let guard = self.writer.clone().lock_owned().await;
        let ids: Vec<String> = sqlx::query_scalar(sql::CLAIMABLE)
            .bind(max.min(i64::MAX as usize) as i64)
            .bind(&self.queue)
            .bind(&self.types)
            .fetch_all(&self.pool)
            .await?;
        let ids = ids
            .into_iter()
            .map(super::rows::uuid)
            .collect::<Result<Vec<_>>>()?;
        self.lock_with(guard, &ids).await
    }

    async fn begin<'s>(&'s mut self) -> Result<Box<dyn ChunkTx + 's>> {
        let guard = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteChunk {
            tx,
            turn: WriteTurn {
                _guard: guard,
                locked: Vec::new(),
                running: self.running.clone(),
                alive: Arc::new(AtomicBool::new(true)),
            },
            node_id: &self.node_id,
            probe: SqliteProbe {
                pool: self.pool.clone(),
                slot: self.slot.to_string(),
                recorded: false,
            },
        }))
    }
}

impl SqliteSlot {
    /// Records the intent to run `ids`, then opens the chunk's transaction and locks them,
    /// holding the store's write turn throughout.
    async fn lock_with(&mut self, guard: OwnedMutexGuard<()>, ids: &[Uuid]) -> Result<Locked<'_>> {
        let slot = self.slot.to_string();
        let popped = ids_json(ids);
        if !ids.is_empty() {
            // Committed before the chunk's transaction opens, so it outlives a crash mid-job.
            let mut intent = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(sql::RECORD_HOLD)
                .bind(&slot)
                .bind(&self.node_id)
                .bind(&popped)
                .execute(&mut *intent)
                .await?;
            intent.commit().await?;
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if !ids.is_empty() {
            sqlx::query(sql::CLEAR_HOLD)
                .bind(&slot)
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query(sql::LOCK_CHUNK)
            .bind(&popped)
            .bind(&self.queue)
            .bind(&self.types)
            .fetch_all(&mut *tx)
            .await?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
        let locked: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(locked.iter().copied());
        let turn = WriteTurn {
            _guard: guard,
            locked,
            running: self.running.clone(),
            alive: Arc::new(AtomicBool::new(true)),
        };
        Ok(Locked {
            jobs,
            tx: Box::new(SqliteChunk {
                tx,
                turn,
                node_id: &self.node_id,
                probe: SqliteProbe {
                    pool: self.pool.clone(),
                    slot,
                    recorded: !ids.is_empty(),
                },
            }),
        })
    }
}

/// The store's one write turn, held by a chunk until it ends, and what the chunk locked.
/// Declared after the transaction in [`SqliteChunk`], so that dropping a chunk queues its
/// rollback before the next writer is let in.
struct WriteTurn {
    _guard: OwnedMutexGuard<()>,
    /// IDs locked by this chunk (removed from `running` when the chunk ends, however).
    locked: Vec<Uuid>,
    running: Arc<Mutex<HashSet<Uuid>>>,
    /// Whether the chunk is alive. Its jobs' time-limit handlers check it, so a handler left
    /// on a connection by a chunk that ended abnormally never interrupts its next user.
    alive: Arc<AtomicBool>,
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for id in &self.locked {
            r.remove(id);
        }
    }
}

struct SqliteChunk<'s> {
    tx: Transaction<'static, Sqlite>,
    turn: WriteTurn,
    node_id: &'s str,
    probe: SqliteProbe,
}

#[async_trait]
impl ChunkTx for SqliteChunk<'_> {
    fn job_conn(&mut self) -> &mut dyn JobConn {
        self
    }

    fn probe(&self) -> Box<dyn CommitProbe> {
        Box::new(self.probe.clone())
    }

    async fn finish(self: Box<Self>, outcomes: &[Outcome]) -> Result<()> {
        let SqliteChunk {
            mut tx,
            turn,
            node_id,
            ..
        } = *self;
        record_outcomes(&mut tx, outcomes, node_id).await?;
        tx.commit().await?;
        drop(turn);
        Ok(())
    }

    async fn lease(&mut self, ids: &[Uuid], ttl: Duration) -> Result<()> {
        sqlx::query(sql::LEASE_JOBS)
            .bind(ids_json(ids))
            .bind(self.node_id)
            .bind(modifier(ttl, 1))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn finish_leases(
        self: Box<Self>,
        outcomes: &[Outcome],
        attempts: &[i32],
    ) -> Result<Vec<Uuid>> {
        let SqliteChunk {
            mut tx,
            turn,
            node_id,
            ..
        } = *self;
        let rows: Vec<serde_json::Value> = outcomes
            .iter()
            .zip(attempts)
            .map(|(o, a)| {
                serde_json::json!([
                    o.id().to_string(),
                    o.status().as_str(),
                    o.error(),
                    o.delay_ms(),
                    a,
                    o.took_ms()
                ])
            })
            .collect();
        let done: Vec<String> = sqlx::query_scalar(sql::COMPLETE_LEASES)
            .bind(serde_json::Value::from(rows).to_string())
            .bind(node_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        drop(turn);
        done.into_iter().map(super::rows::uuid).collect()
    }

    async fn abandon(self: Box<Self>) {
        let SqliteChunk { mut tx, turn, .. } = *self;
        // The processor may have ended the transaction under sqlx, which still counts one
        // open: its rollback would then fail and the pooled connection would keep that count,
        // turning the next chunk's BEGIN into a SAVEPOINT. Open one for it to roll back (an
        // error here means one is still open, which is as good).
        let _ = (&mut *tx).execute("BEGIN").await;
        let _ = tx.rollback().await;
        drop(turn);
    }
}

#[async_trait]
impl JobConn for SqliteChunk<'_> {
    async fn savepoint(&mut self, timeout: Duration) -> Result<()> {
        (&mut *self.tx).execute("SAVEPOINT job").await?;
        // No statement_timeout in SQLite: a progress handler interrupts the job's SQL past its
        // time limit instead. It trails the processor's own timer by INTERRUPT_GRACE, so that
        // timer normally fires first and names the failure; the interrupt is the backstop that
        // frees the connection. release() and rollback() remove it.
        let deadline = Instant::now() + timeout + INTERRUPT_GRACE;
        let alive = self.turn.alive.clone();
        let handler = move || !alive.load(Ordering::Relaxed) || Instant::now() < deadline;
        self.tx
            .lock_handle()
            .await?
            .set_progress_handler(1000, handler);
        Ok(())
    }

    async fn release(&mut self) -> Result<()> {
        self.tx.lock_handle().await?.remove_progress_handler();
        (&mut *self.tx).execute("RELEASE SAVEPOINT job").await?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<()> {
        self.tx.lock_handle().await?.remove_progress_handler();
        (&mut *self.tx).execute(ROLLBACK_JOB).await?;
        Ok(())
    }

    async fn execute(&mut self, sql: &str, job: &Job) -> Result<u64> {
        Ok(sqlx::query(sql)
            .bind(job.id.to_string())
            .bind(job.target.to_string())
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }

    fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        Some(&mut self.tx)
    }
}

/// Tells whether a broken chunk committed: its own transaction deleted its intent record
/// first, so a record that is gone was deleted by a commit.
#[derive(Clone)]
struct SqliteProbe {
    pool: SqlitePool,
    slot: String,
    /// Whether a record was written at all (a chunk that locked nothing writes none).
    recorded: bool,
}

#[async_trait]
impl CommitProbe for SqliteProbe {
    async fn committed(&self) -> Result<bool> {
        if !self.recorded {
            return Ok(false);
        }
        let n: i64 = sqlx::query_scalar(sql::HOLD_EXISTS)
            .bind(&self.slot)
            .fetch_one(&self.pool)
            .await?;
        Ok(n == 0)
    }
}
