//! Job chunks and what they hold: the writer's turn a chunk keeps until it commits, the
//! intent records that stand in for heartbeats while it does, and the rescue of jobs whose
//! node died holding them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::rows::{ids_json, job_from_row, modifier};
use super::{sql, SqliteStore};
use crate::error::{Error, Result};
use crate::store::{Chunk, Conn, Outcome, Rescued};

/// How long after a job's time limit its running SQL statement is interrupted.
const INTERRUPT_GRACE: Duration = Duration::from_millis(100);

/// A write transaction's place in line: the writer mutex and, for a job chunk, what it
/// holds. Lives inside [`Conn::Sqlite`] next to the transaction, declared after it so that
/// dropping a chunk queues its rollback before the next writer is let in.
pub struct WriteLock {
    _guard: OwnedMutexGuard<()>,
    /// IDs popped for this chunk, whose intent may be recorded in a node's `held` list.
    popped: Vec<Uuid>,
    /// IDs locked by this chunk (removed from `running` when the chunk ends, however).
    locked: Vec<Uuid>,
    running: Arc<Mutex<HashSet<Uuid>>>,
    /// Whether the chunk is alive. Its jobs' time-limit handlers check it, so a handler
    /// left on a connection by a chunk that ended abnormally (aborted mid-job) never
    /// interrupts the connection's next user.
    alive: Arc<AtomicBool>,
}

impl WriteLock {
    /// The deadline a job's SQL runs under, enforced by a progress handler on the connection
    /// (SQLite's stand-in for PostgreSQL's `statement_timeout`): past it, the running
    /// statement is interrupted, so the savepoint can be rolled back and the failure written.
    /// It trails the processor's own timer by [`INTERRUPT_GRACE`], so that timer normally
    /// fires first and names the failure ("timed out after N ms"); the interrupt is the
    /// backstop that frees the connection.
    pub(crate) fn deadline_handler(&self, timeout: Duration) -> impl FnMut() -> bool + Send {
        let deadline = Instant::now() + timeout + INTERRUPT_GRACE;
        let alive = self.alive.clone();
        move || !alive.load(Ordering::Relaxed) || Instant::now() < deadline
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for id in &self.locked {
            r.remove(id);
        }
    }
}

impl SqliteStore {
    fn local_nodes_json(&self) -> Option<String> {
        let nodes = self.local_nodes.lock().unwrap_or_else(|e| e.into_inner());
        (!nodes.is_empty()).then(|| serde_json::Value::from(nodes.clone()).to_string())
    }

    pub(super) fn is_running(&self, id: Uuid) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }

    pub(super) async fn lock(&self, ids: &[Uuid]) -> Result<Chunk<'static>> {
        let guard = self.writer.clone().lock_owned().await;
        let popped = ids_json(ids);
        // Committed before the job transaction opens, so it survives a crash mid-job.
        if let Some(nodes) = self.local_nodes_json() {
            let mut intent = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query(sql::RECORD_INTENT)
                .bind(&popped)
                .bind(&nodes)
                .execute(&mut *intent)
                .await?;
            intent.commit().await?;
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(sql::LOCK_CHUNK)
            .bind(&popped)
            .fetch_all(&mut *tx)
            .await?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
        let locked: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(locked.iter().copied());
        let lock = WriteLock {
            _guard: guard,
            popped: ids.to_vec(),
            locked,
            running: self.running.clone(),
            alive: Arc::new(AtomicBool::new(true)),
        };
        Ok(Chunk {
            conn: Conn::Sqlite(tx, lock),
            jobs,
        })
    }

    pub(super) async fn finish(
        &self,
        chunk: Chunk<'_>,
        outcomes: &[Outcome],
        node_id: &str,
    ) -> Result<()> {
        let Conn::Sqlite(mut tx, lock) = chunk.conn else {
            return Err(Error::Invalid(
                "a PostgreSQL chunk reached the SQLite store".into(),
            ));
        };
        if !outcomes.is_empty() {
            let rows: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|o| {
                    serde_json::json!([
                        o.id.to_string(),
                        o.status.as_str(),
                        o.error,
                        o.retry_delay_ms
                    ])
                })
                .collect();
            sqlx::query(sql::RECORD_OUTCOMES)
                .bind(serde_json::Value::from(rows).to_string())
                .bind(node_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(nodes) = self.local_nodes_json() {
            sqlx::query(sql::CLEAR_INTENT)
                .bind(ids_json(&lock.popped))
                .bind(&nodes)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        drop(lock);
        Ok(())
    }

    pub(super) async fn rescue(&self, stale: Duration) -> Result<Rescued> {
        let mut w = self.write().await?;
        let dead = sqlx::query(sql::DELETE_DEAD_NODES)
            .bind(modifier(stale, -1))
            .fetch_all(&mut *w.tx)
            .await?;
        let mut out = Rescued {
            dead_nodes: dead.len() as u64,
            ..Rescued::default()
        };
        // One charge per job, even if two dead nodes both listed it.
        let mut seen = HashSet::new();
        let mut pairs = Vec::new();
        for r in &dead {
            let node: String = r.try_get("id")?;
            let held: String = r.try_get("held")?;
            let held: Vec<Uuid> = serde_json::from_str(&held)
                .map_err(|e| Error::Database(sqlx::Error::Decode(e.into())))?;
            for id in held {
                if seen.insert(id) {
                    pairs.push(serde_json::json!([id.to_string(), node]));
                }
            }
        }
        if !pairs.is_empty() {
            let statuses: Vec<String> = sqlx::query_scalar(sql::CHARGE_ABANDONED)
                .bind(serde_json::Value::from(pairs).to_string())
                .fetch_all(&mut *w.tx)
                .await?;
            for s in statuses {
                if s == "failed" {
                    out.failed += 1;
                } else {
                    out.retried += 1;
                }
            }
        }
        w.tx.commit().await?;
        Ok(out)
    }
}
