//! Runner slots and chunk transactions on SQLite: the write turn a chunk keeps until it
//! commits, the intent record written before it opens, and the job savepoints inside it. A
//! chunk runs on the store's writing connection in two messages (see [`super::writer`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{Executor as _, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::rows::{ids_json, job_from_row, modifier, types_json};
use super::writer::{self, Turn, Writer};
use super::{plain_outcomes, record_outcomes, sql, SqliteStore};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::store::{ChunkTx, CommitProbe, JobConn, Locked, Outcome, Scope, Slot, ROLLBACK_JOB};

/// How long after a job's time limit its running SQL statement is interrupted.
const INTERRUPT_GRACE: Duration = Duration::from_millis(100);

/// A runner's slot. SQLite runs one writer at a time, so every slot's chunks run on the
/// store's one writing connection, in turn.
pub(super) struct SqliteSlot {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<Writer>>,
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
        let turn = writer::turn(&self.writer).await?;
        self.lock_with(turn, ids).await
    }

    async fn claim<'s>(&'s mut self, max: usize) -> Result<Locked<'s>> {
        // With the write turn held, no chunk of this process holds any job, so the most
        // urgent pending ones are free here; another process's chunk may still take some
        // first, and locking them below (pending and due) drops those.
        let mut turn = writer::turn(&self.writer).await?;
        let ids: Vec<String> = sqlx::query_scalar(sql::CLAIMABLE)
            .bind(max.min(i64::MAX as usize) as i64)
            .bind(&self.queue)
            .bind(&self.types)
            .fetch_all(turn.conn(&self.pool).await?)
            .await?;
        let ids = ids
            .into_iter()
            .map(super::rows::uuid)
            .collect::<Result<Vec<_>>>()?;
        self.lock_with(turn, &ids).await
    }

    async fn begin<'s>(&'s mut self) -> Result<Box<dyn ChunkTx + 's>> {
        let mut turn = writer::turn(&self.writer).await?;
        turn.began();
        let conn = turn.conn(&self.pool).await?;
        conn.execute(sql::BEGIN_CHUNK).await?;
        Ok(Box::new(SqliteChunk {
            turn: WriteTurn::new(turn, Vec::new(), self.running.clone()),
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
    /// holding the store's write turn throughout: one message to the connection
    /// ([`sql::START_CHUNK`]).
    async fn lock_with(&mut self, mut turn: Turn, ids: &[Uuid]) -> Result<Locked<'_>> {
        let slot = self.slot.to_string();
        turn.began();
        let conn = turn.conn(&self.pool).await?;
        let rows = if ids.is_empty() {
            conn.execute(sql::BEGIN_CHUNK).await?;
            Vec::new()
        } else {
            sqlx::query(sql::START_CHUNK)
                .bind(&slot)
                .bind(&self.node_id)
                .bind(ids_json(ids))
                .bind(&self.queue)
                .bind(&self.types)
                .fetch_all(conn)
                .await?
        };
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
        let locked: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(locked.iter().copied());
        Ok(Locked {
            jobs,
            tx: Box::new(SqliteChunk {
                turn: WriteTurn::new(turn, locked, self.running.clone()),
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
/// A chunk dropped without ending leaves its transaction marked open on the connection; the
/// next turn rolls it back (see [`super::writer`]).
struct WriteTurn {
    turn: Turn,
    /// IDs locked by this chunk (removed from `running` when the chunk ends, however).
    locked: Vec<Uuid>,
    running: Arc<Mutex<HashSet<Uuid>>>,
    /// Whether the chunk is alive. Its jobs' time-limit handlers check it, so a handler left
    /// on the connection by a chunk that ended abnormally never interrupts its next user.
    alive: Arc<AtomicBool>,
}

impl WriteTurn {
    fn new(turn: Turn, locked: Vec<Uuid>, running: Arc<Mutex<HashSet<Uuid>>>) -> Self {
        WriteTurn {
            turn,
            locked,
            running,
            alive: Arc::new(AtomicBool::new(true)),
        }
    }

    fn conn(&mut self) -> Result<&mut SqliteConnection> {
        self.turn
            .open_conn()
            .ok_or_else(|| Error::Invalid("the chunk's connection is gone".into()))
    }

    /// Sends the statement that ends the chunk's transaction (and, before it, whatever else
    /// `sql` holds); marks the transaction ended once it has.
    async fn end(&mut self, sql: &str) -> Result<()> {
        self.conn()?.execute(sql).await?;
        self.turn.ended();
        Ok(())
    }
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

    async fn finish(mut self: Box<Self>, outcomes: &[Outcome]) -> Result<()> {
        let node_id = self.node_id;
        if outcomes.is_empty() {
            self.turn.end(sql::COMMIT).await?;
        } else if let Some(rows) = plain_outcomes(outcomes) {
            // The common case: outcomes and commit in one message.
            sqlx::query(sql::RECORD_OUTCOMES_AND_COMMIT)
                .bind(rows)
                .bind(node_id)
                .execute(self.turn.conn()?)
                .await?;
            self.turn.turn.ended();
        } else {
            record_outcomes(self.turn.conn()?, outcomes, node_id).await?;
            self.turn.end(sql::COMMIT).await?;
        }
        Ok(())
    }

    async fn lease(&mut self, ids: &[Uuid], ttl: Duration) -> Result<()> {
        sqlx::query(sql::LEASE_JOBS)
            .bind(ids_json(ids))
            .bind(self.node_id)
            .bind(modifier(ttl, 1))
            .execute(self.turn.conn()?)
            .await?;
        Ok(())
    }

    async fn finish_leases(
        mut self: Box<Self>,
        outcomes: &[Outcome],
        attempts: &[i32],
    ) -> Result<Vec<Uuid>> {
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
            .bind(self.node_id)
            .fetch_all(self.turn.conn()?)
            .await?;
        self.turn.end(sql::COMMIT).await?;
        done.into_iter().map(super::rows::uuid).collect()
    }

    async fn abandon(mut self: Box<Self>) {
        // The processor may have ended the transaction already: then this fails, as good.
        if let Ok(conn) = self.turn.conn() {
            let _ = conn.execute(sql::ROLLBACK).await;
        }
        self.turn.turn.ended();
    }
}

#[async_trait]
impl JobConn for SqliteChunk<'_> {
    async fn savepoint(&mut self, timeout: Duration) -> Result<()> {
        self.turn.conn()?.execute("SAVEPOINT job").await?;
        // No statement_timeout in SQLite: a progress handler interrupts the job's SQL past its
        // time limit instead. It trails the processor's own timer by INTERRUPT_GRACE, so that
        // timer normally fires first and names the failure; the interrupt is the backstop that
        // frees the connection. release() and rollback() remove it.
        let deadline = Instant::now() + timeout + INTERRUPT_GRACE;
        let alive = self.turn.alive.clone();
        let handler = move || !alive.load(Ordering::Relaxed) || Instant::now() < deadline;
        self.turn
            .conn()?
            .lock_handle()
            .await?
            .set_progress_handler(1000, handler);
        Ok(())
    }

    async fn release(&mut self) -> Result<()> {
        let conn = self.turn.conn()?;
        conn.lock_handle().await?.remove_progress_handler();
        conn.execute("RELEASE SAVEPOINT job").await?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<()> {
        let conn = self.turn.conn()?;
        conn.lock_handle().await?.remove_progress_handler();
        conn.execute(ROLLBACK_JOB).await?;
        Ok(())
    }

    async fn execute(&mut self, sql: &str, job: &Job) -> Result<u64> {
        Ok(sqlx::query(sql)
            .bind(job.id.to_string())
            .bind(job.target.to_string())
            .execute(self.turn.conn()?)
            .await?
            .rows_affected())
    }

    fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        self.turn.conn().ok()
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
