//! A runner's slot on PostgreSQL (its kept connection and intent record) and the chunk
//! transaction it opens: the PostgreSQL side of the flow in `executor/chunk.rs`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{Executor as _, PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::rows::job_from_row;
use super::sql::{Statements, PROCESSOR_SESSION, RUNNER_SESSION};
use super::{record_outcomes, PgStore};
use crate::error::Result;
use crate::store::{ChunkTx, CommitProbe, JobConn, Locked, Outcome, Scope, Slot, ROLLBACK_JOB};
use crate::Job;

/// A runner's kept connection: a chunk costs no pool checkout and no release ping.
pub(super) struct PgSlot {
    conn: PoolConnection<Postgres>,
    node_id: String,
    /// This slot's id in its intent records (rows of `intents`, one appended per chunk).
    slot: Uuid,
    /// The one queue this slot's runner serves and the types its node can run.
    scope: Scope,
    sql: Arc<Statements>,
    pool: PgPool,
}

impl PgStore {
    pub(super) async fn open_slot(&self, node_id: &str, scope: &Scope) -> Result<PgSlot> {
        let mut conn = self.pool.acquire().await?;
        // A runner drops its slot only on error or exit: close the connection rather than
        // hand a possibly broken (or mid-transaction) one back to the pool (which also keeps
        // the setting below off the pool's other connections).
        conn.close_on_drop();
        (&mut *conn)
            .execute(format!("{RUNNER_SESSION}; {}", self.sql.prepare_hold).as_str())
            .await?;
        Ok(PgSlot {
            conn,
            node_id: node_id.to_string(),
            slot: Uuid::now_v7(),
            scope: scope.clone(),
            sql: self.sql.clone(),
            pool: self.pool.clone(),
        })
    }
}

#[async_trait]
impl Slot for PgSlot {
    async fn lock<'s>(&'s mut self, ids: &[Uuid]) -> Result<Locked<'s>> {
        let PgSlot {
            conn,
            node_id,
            slot,
            scope,
            sql,
            pool,
        } = self;
        let mut tx = if ids.is_empty() {
            sqlx::Connection::begin(&mut **conn).await?
        } else {
            // The intent record, committed before the chunk's transaction opens (so it
            // outlives a crash mid-job), travels with that transaction's BEGIN: one round
            // trip for both.
            let begin = hold_then_begin(&sql.hold_then_begin, *slot, node_id, ids);
            sqlx::Connection::begin_with(&mut **conn, begin).await?
        };
        let rows = sqlx::query(&sql.lock_chunk)
            .bind(ids)
            .bind(&scope.queue)
            .bind(&scope.types[..])
            .fetch_all(&mut *tx)
            .await?;
        locked(rows, tx, node_id, sql, pool)
    }

    async fn claim<'s>(&'s mut self, max: usize) -> Result<Locked<'s>> {
        let PgSlot {
            conn,
            node_id,
            slot,
            scope,
            sql,
            pool,
        } = self;
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        let rows = sqlx::query(&sql.claim_chunk)
            .bind(max.min(i64::MAX as usize) as i64)
            .bind(&scope.queue)
            .bind(&scope.types[..])
            .fetch_all(&mut *tx)
            .await?;
        if !rows.is_empty() {
            // The jobs are known only now, inside the transaction: their intent record is
            // committed on a connection of its own, before any processor runs.
            let ids = rows
                .iter()
                .map(|r| r.try_get::<Uuid, _>("id"))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            sqlx::query(&sql.record_hold)
                .bind(*slot)
                .bind(node_id.as_str())
                .bind(&ids)
                .execute(&*pool)
                .await?;
        }
        locked(rows, tx, node_id, sql, pool)
    }

    async fn begin<'s>(&'s mut self) -> Result<Box<dyn ChunkTx + 's>> {
        let PgSlot {
            conn,
            node_id,
            sql,
            pool,
            ..
        } = self;
        let tx = sqlx::Connection::begin(&mut **conn).await?;
        Ok(Box::new(PgChunk {
            tx,
            node_id,
            sql,
            pool,
            xid: None,
        }))
    }
}

/// `BEGIN; <the intent record>; COMMIT; BEGIN` as one simple query: the record commits on
/// its own (asynchronously), then the chunk's transaction is open. A simple query carries no
/// bind parameters, so the values are written as literals: ids and the slot are UUIDs we
/// format, the node id is quoted (standard-conforming strings: a quote is doubled).
fn hold_then_begin(template: &str, slot: Uuid, node_id: &str, ids: &[Uuid]) -> String {
    let mut list = String::with_capacity(ids.len() * 37 + 2);
    list.push('{');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&id.to_string());
    }
    list.push('}');
    // The node id last, so that nothing in it is ever taken for a placeholder.
    template
        .replace("$ids", &format!("'{list}'"))
        .replace("$slot", &format!("'{slot}'"))
        .replace("$node", &format!("'{}'", node_id.replace('\'', "''")))
}

/// The locked rows as jobs, highest priority first, and their chunk transaction.
fn locked<'s>(
    rows: Vec<PgRow>,
    tx: Transaction<'s, Postgres>,
    node_id: &'s str,
    sql: &'s Statements,
    pool: &'s PgPool,
) -> Result<Locked<'s>> {
    let xid: Option<i64> = rows.first().map(|r| r.try_get("xid")).transpose()?;
    let mut jobs = rows
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<Job>>>()?;
    jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
    Ok(Locked {
        jobs,
        tx: Box::new(PgChunk {
            tx,
            node_id,
            sql,
            pool,
            xid,
        }),
    })
}

/// A chunk's transaction on the slot's connection.
struct PgChunk<'s> {
    tx: Transaction<'s, Postgres>,
    node_id: &'s str,
    sql: &'s Statements,
    pool: &'s PgPool,
    /// The transaction's id, assigned by the lock statement: after a processor breaks the
    /// chunk, the server can still say whether it was committed.
    xid: Option<i64>,
}

#[async_trait]
impl ChunkTx for PgChunk<'_> {
    fn job_conn(&mut self) -> &mut dyn JobConn {
        self
    }

    fn probe(&self) -> Box<dyn CommitProbe> {
        Box::new(PgProbe {
            pool: self.pool.clone(),
            sql: self.sql.xact_status.clone(),
            xid: self.xid,
        })
    }

    async fn finish(self: Box<Self>, outcomes: &[Outcome]) -> Result<()> {
        let PgChunk {
            mut tx,
            node_id,
            sql,
            ..
        } = *self;
        record_outcomes(sql, &mut tx, outcomes, node_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn lease(&mut self, ids: &[Uuid], ttl: Duration) -> Result<()> {
        sqlx::query(&self.sql.lease_jobs)
            .bind(ids)
            .bind(self.node_id)
            .bind(ttl.as_secs_f64() * 1000.0)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn finish_leases(
        self: Box<Self>,
        outcomes: &[Outcome],
        attempts: &[i32],
    ) -> Result<Vec<Uuid>> {
        let PgChunk {
            mut tx,
            node_id,
            sql,
            ..
        } = *self;
        let ids: Vec<Uuid> = outcomes.iter().map(Outcome::id).collect();
        let st: Vec<&str> = outcomes.iter().map(|o| o.status().as_str()).collect();
        let err: Vec<Option<&str>> = outcomes.iter().map(Outcome::error).collect();
        let delay: Vec<Option<i64>> = outcomes.iter().map(Outcome::delay_ms).collect();
        let took: Vec<Option<i64>> = outcomes.iter().map(Outcome::took_ms).collect();
        let done: Vec<Uuid> = sqlx::query_scalar(&sql.complete_leases)
            .bind(ids)
            .bind(st)
            .bind(err)
            .bind(delay)
            .bind(attempts)
            .bind(node_id)
            .bind(took)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done)
    }
}

#[async_trait]
impl JobConn for PgChunk<'_> {
    async fn savepoint(&mut self, timeout: Duration) -> Result<()> {
        // One round trip: the savepoint and the statement timeout that lives and dies with it
        // (ROLLBACK TO undoes SET LOCAL; release() resets it). The number is ours, not input.
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
        let sql = format!("SAVEPOINT job; SET LOCAL statement_timeout = {ms}; {PROCESSOR_SESSION}");
        (&mut *self.tx).execute(sql.as_str()).await?;
        Ok(())
    }

    async fn release(&mut self) -> Result<()> {
        // RESET ALL puts every setting back to the connection's defaults (the statement
        // timeout, and anything the job SET, such as default_transaction_read_only); RESET
        // SESSION AUTHORIZATION undoes SET ROLE and SET SESSION AUTHORIZATION, which RESET
        // ALL leaves alone. The next job, and this chunk's outcome update, start clean, with
        // the runner's own setting back.
        (&mut *self.tx)
            .execute(
                format!(
                    "RELEASE SAVEPOINT job; RESET SESSION AUTHORIZATION; RESET ALL; \
                     {RUNNER_SESSION}"
                )
                .as_str(),
            )
            .await?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<()> {
        (&mut *self.tx).execute(ROLLBACK_JOB).await?;
        Ok(())
    }

    async fn execute(&mut self, sql: &str, job: &Job) -> Result<u64> {
        Ok(sqlx::query(sql)
            .bind(job.id)
            .bind(&job.target)
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }

    fn postgres(&mut self) -> Option<&mut PgConnection> {
        Some(&mut self.tx)
    }
}

/// Asks the server whether a broken chunk's transaction committed.
struct PgProbe {
    pool: PgPool,
    sql: String,
    xid: Option<i64>,
}

#[async_trait]
impl CommitProbe for PgProbe {
    async fn committed(&self) -> Result<bool> {
        let Some(xid) = self.xid else {
            return Ok(false);
        };
        let status: Option<String> = sqlx::query_scalar(&self.sql)
            .bind(xid)
            .fetch_one(&self.pool)
            .await?;
        Ok(status.as_deref() == Some("committed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intent_literals_cannot_be_escaped_from() {
        let slot = Uuid::nil();
        let ids = [Uuid::max(), Uuid::nil()];
        let sql = hold_then_begin(
            "X $slot $node $ids Y",
            slot,
            "n'; DROP TABLE jobs; -- $ids $slot",
            &ids,
        );
        assert_eq!(
            sql,
            "X '00000000-0000-0000-0000-000000000000' \
             'n''; DROP TABLE jobs; -- $ids $slot' \
             '{ffffffff-ffff-ffff-ffff-ffffffffffff,00000000-0000-0000-0000-000000000000}' Y"
        );
    }
}
