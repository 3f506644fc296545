//! The PostgreSQL store: the production backend and the reference for every invariant.

mod rows;
mod sql;

use rows::{batch_from_row, job_from_row};
use sql::Statements;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor as _, PgConnection, PgPool, Row};
use uuid::Uuid;

use super::{
    batch_max_attempts, validate_schema, why_not, BatchOptions, Chunk, Conn, Due, JobFilter, Lease,
    NodeBeat, Outcome, Rescued, Store, CANCEL_RULE, INSERT_CHUNK, RETRY_RULE,
};
use crate::error::{Error, Result};
use crate::job::{Job, JobStatus, NewJob, Submitted};
use crate::report::{BatchReport, NodeReport, StatusReport, Throughput, TypeCounts};

/// PostgreSQL store over a connection pool sized by the caller (concurrency plus headroom).
pub struct PgStore {
    pool: PgPool,
    schema: String,
    sql: Statements,
}

impl PgStore {
    /// Connects eagerly, so a wrong URL or a server that is down fails at start-up.
    pub async fn connect(url: &str, schema: &str, pool_size: u32) -> Result<Self> {
        validate_schema(schema)?;
        let opts: PgConnectOptions = url
            .parse()
            .map_err(|e| Error::Config(format!("invalid PostgreSQL URL: {e}")))?;
        // Name our connections (so operators can find them) unless the URL already does.
        let opts = if url.contains("application_name=") {
            opts
        } else {
            opts.application_name("skiplock")
        };
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(2))
            .acquire_timeout(Duration::from_secs(30))
            // sqlx already pings every connection when it returns to the pool and closes
            // the broken ones; a second ping before each acquire would add a round trip
            // to every chunk for no extra safety.
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        Ok(Self::from_pool(pool, schema))
    }

    /// Wraps an existing pool (the caller's own, when embedding).
    pub fn from_pool(pool: PgPool, schema: &str) -> Self {
        PgStore {
            pool,
            schema: schema.to_string(),
            sql: Statements::new(schema),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Inserts jobs inside the caller's open transaction, so that the caller's own rows and
    /// the jobs commit together. The IDs reach the queue once the caller pushes them after
    /// commit ([`crate::Client::notify`]) or, failing that, through the reconciler.
    pub async fn insert_jobs_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<Uuid>> {
        let mut ids = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(INSERT_CHUNK) {
            let mut cids = Vec::with_capacity(chunk.len());
            let mut types = Vec::with_capacity(chunk.len());
            let mut targets = Vec::with_capacity(chunk.len());
            let mut max = Vec::with_capacity(chunk.len());
            let mut run_at = Vec::with_capacity(chunk.len());
            let mut prio = Vec::with_capacity(chunk.len());
            for j in chunk {
                j.validate().map_err(Error::Invalid)?;
                cids.push(Uuid::now_v7());
                types.push(j.job_type.as_str());
                targets.push(&j.target);
                max.push(j.max_attempts);
                run_at.push(j.run_at);
                prio.push(j.priority);
            }
            sqlx::query(&self.sql.insert_jobs)
                .bind(&cids)
                .bind(&types)
                .bind(&targets)
                .bind(&max)
                .bind(&run_at)
                .bind(&prio)
                .execute(&mut *conn)
                .await?;
            ids.extend(cids);
        }
        Ok(ids)
    }

    async fn migrate_inner(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // One migrator at a time across every node; the lock ends with the transaction.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('skiplock.migrate.' || $1))")
            .bind(&self.schema)
            .execute(&mut *tx)
            .await?;
        let s = format!("\"{}\"", self.schema);
        let setup = format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; \
             CREATE TABLE IF NOT EXISTS {s}.migrations \
             (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        );
        (&mut *tx).execute(setup.as_str()).await?;
        let done: Vec<i32> = sqlx::query_scalar(&format!("SELECT version FROM {s}.migrations"))
            .fetch_all(&mut *tx)
            .await?;
        for (version, text) in sql::MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            let text = text.replace("{s}", &s);
            (&mut *tx).execute(text.as_str()).await?;
            sqlx::query(&format!("INSERT INTO {s}.migrations (version) VALUES ($1)"))
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn migrate(&self) -> Result<()> {
        self.migrate_inner().await
    }

    async fn insert_jobs(&self, jobs: &[NewJob]) -> Result<Vec<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let ids = self.insert_jobs_in(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn insert_batch(
        &self,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        opts: BatchOptions,
    ) -> Result<Submitted> {
        let max_attempts = batch_max_attempts(job_type, &opts)?;
        let batch_id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&self.sql.insert_batch_row)
            .bind(batch_id)
            .bind(&opts.name)
            .bind(job_type)
            .bind(targets.len() as i64)
            .execute(&mut *tx)
            .await?;
        let mut ids = Vec::with_capacity(targets.len());
        for chunk in targets.chunks(INSERT_CHUNK) {
            let cids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
            sqlx::query(&self.sql.insert_batch_jobs)
                .bind(&cids)
                .bind(job_type)
                .bind(chunk)
                .bind(max_attempts)
                .bind(opts.run_at)
                .bind(opts.priority)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
            ids.extend(cids);
        }
        tx.commit().await?;
        Ok(Submitted {
            batch_id: Some(batch_id),
            ids,
        })
    }

    async fn lease(&self, node_id: &str) -> Result<Lease> {
        let mut conn = self.pool.acquire().await?;
        // A worker drops its lease only on error or exit: close it rather than hand a
        // possibly broken (or mid-transaction) connection back to the pool.
        conn.close_on_drop();
        Ok(Lease::Postgres {
            conn,
            node_id: node_id.to_string(),
            slot: Uuid::now_v7(),
        })
    }

    async fn lock_chunk<'c>(&self, lease: &'c mut Lease, ids: &[Uuid]) -> Result<Chunk<'c>> {
        let Lease::Postgres {
            conn,
            node_id,
            slot,
        } = lease
        else {
            return Err(Error::Invalid(
                "a SQLite lease reached the PostgreSQL store".into(),
            ));
        };
        let mut tx = if ids.is_empty() {
            sqlx::Connection::begin(&mut **conn).await?
        } else {
            // The intent record commits before the chunk's transaction opens, so it outlives a
            // crash mid-job; sent with that transaction's BEGIN, it costs no extra round trip.
            let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            let begin = self
                .sql
                .record_hold
                .replace("{slot}", &slot.to_string())
                .replace("{node}", &node_id.replace('\'', "''"))
                .replace("{ids}", &format!("{{{}}}", list.join(",")));
            sqlx::Connection::begin_with(&mut **conn, begin).await?
        };
        let rows = sqlx::query(&self.sql.lock_chunk)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
        Ok(Chunk {
            conn: Conn::Postgres(tx),
            jobs,
        })
    }

    async fn finish_chunk<'c>(
        &self,
        chunk: Chunk<'c>,
        outcomes: &[Outcome],
        node_id: &str,
    ) -> Result<()> {
        let Conn::Postgres(mut tx) = chunk.conn else {
            return Err(Error::Invalid(
                "a SQLite chunk reached the PostgreSQL store".into(),
            ));
        };
        let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id).collect();
        if outcomes.iter().all(|o| o.status == JobStatus::Succeeded) {
            if !ids.is_empty() {
                sqlx::query(&self.sql.record_successes)
                    .bind(&ids)
                    .bind(node_id)
                    .execute(&mut *tx)
                    .await?;
            }
        } else {
            let st: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
            let err: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
            let delay: Vec<Option<i64>> = outcomes.iter().map(|o| o.retry_delay_ms).collect();
            sqlx::query(&self.sql.record_outcomes)
                .bind(&ids)
                .bind(&st)
                .bind(&err)
                .bind(&delay)
                .bind(node_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn due_pending(&self, limit: i64) -> Result<Vec<Due>> {
        let rows = sqlx::query(&self.sql.due_pending)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    id: r.try_get(0)?,
                    priority: r.try_get(1)?,
                })
            })
            .collect()
    }

    async fn heartbeat(&self, b: &NodeBeat) -> Result<()> {
        sqlx::query(&self.sql.heartbeat)
            .bind(&b.id)
            .bind(&b.host)
            .bind(b.pid)
            .bind(b.concurrency)
            .bind(b.in_flight)
            .bind(b.processed)
            .bind(b.failed)
            .bind(&b.held)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remove_node(&self, id: &str) -> Result<()> {
        sqlx::query(&self.sql.remove_node)
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query(&self.sql.remove_holds)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn rescue_abandoned(&self, stale: Duration) -> Result<Rescued> {
        let mut tx = self.pool.begin().await?;
        let dead = sqlx::query(&self.sql.delete_dead_nodes)
            .bind(ms(stale))
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Rescued {
            dead_nodes: dead.len() as u64,
            ..Rescued::default()
        };
        // What the dead held: from their last heartbeats, and from their slots' intent
        // records, which only count for jobs untouched since they were written.
        let (mut ids, mut nodes, mut since) = (Vec::new(), Vec::new(), Vec::new());
        let mut dead_ids = Vec::with_capacity(dead.len());
        for r in &dead {
            let node: String = r.try_get("id")?;
            let held: Vec<Uuid> = r.try_get("held")?;
            for id in held {
                ids.push(id);
                nodes.push(node.clone());
                since.push(None);
            }
            dead_ids.push(node);
        }
        if !dead_ids.is_empty() {
            for r in sqlx::query(&self.sql.take_dead_holds)
                .bind(&dead_ids)
                .fetch_all(&mut *tx)
                .await?
            {
                let node: String = r.try_get("node_id")?;
                let at: chrono::DateTime<chrono::Utc> = r.try_get("written_at")?;
                for id in r.try_get::<Vec<Uuid>, _>("ids")? {
                    ids.push(id);
                    nodes.push(node.clone());
                    since.push(Some(at));
                }
            }
        }
        if !ids.is_empty() {
            let statuses: Vec<String> = sqlx::query_scalar(&self.sql.charge_abandoned)
                .bind(&ids)
                .bind(&nodes)
                .bind(&since)
                .fetch_all(&mut *tx)
                .await?;
            for s in statuses {
                if s == "failed" {
                    out.failed += 1;
                } else {
                    out.retried += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn prune(&self, retention: Duration) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = sqlx::query(&self.sql.prune)
                .bind(ms(retention))
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n == 0 {
                break;
            }
        }
        sqlx::query(&self.sql.prune_batches)
            .bind(ms(retention))
            .execute(&self.pool)
            .await?;
        Ok(total)
    }

    async fn job(&self, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query(&self.sql.get_job)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let rows = sqlx::query(&self.sql.list_jobs)
            .bind(f.status.map(|s| s.as_str()))
            .bind(&f.job_type)
            .bind(f.batch_id)
            .bind(f.after)
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn retry_job(&self, id: Uuid) -> Result<Job> {
        let row = sqlx::query(&self.sql.retry_job)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => job_from_row(&r),
            None => Err(why_not(self, id, RETRY_RULE).await),
        }
    }

    async fn cancel_job(&self, id: Uuid) -> Result<Job> {
        let row = sqlx::query(&self.sql.cancel_job)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => job_from_row(&r),
            None => Err(why_not(self, id, CANCEL_RULE).await),
        }
    }

    async fn batch(&self, id: Uuid) -> Result<Option<BatchReport>> {
        let row = sqlx::query(&self.sql.batch)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(batch_from_row).transpose()
    }

    async fn report(&self, node_stale: Duration) -> Result<StatusReport> {
        let types: Vec<TypeCounts> = sqlx::query_as(&self.sql.type_counts)
            .fetch_all(&self.pool)
            .await?;
        let batches = sqlx::query(&self.sql.recent_batches)
            .bind(20_i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(batch_from_row)
            .collect::<Result<Vec<_>>>()?;
        let nodes = self.nodes(node_stale).await?;
        let rows = sqlx::query(&self.sql.throughput)
            .fetch_all(&self.pool)
            .await?;
        let throughput = Throughput::from_buckets(
            rows.iter()
                .map(|r| Ok((i64::from(r.try_get::<i32, _>("bucket")?), r.try_get("n")?)))
                .collect::<Result<Vec<_>>>()?,
        );
        Ok(StatusReport {
            types,
            batches,
            nodes,
            queue_depth: None,
            throughput,
            generated_at: chrono::Utc::now(),
        })
    }

    async fn nodes(&self, node_stale: Duration) -> Result<Vec<NodeReport>> {
        sqlx::query(&self.sql.nodes)
            .bind(ms(node_stale))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(NodeReport {
                    id: r.try_get("id")?,
                    host: r.try_get("host")?,
                    pid: r.try_get("pid")?,
                    concurrency: r.try_get("concurrency")?,
                    in_flight: r.try_get("in_flight")?,
                    processed: r.try_get("processed")?,
                    failed: r.try_get("failed")?,
                    started_at: r.try_get("started_at")?,
                    last_heartbeat: r.try_get("last_seen")?,
                })
            })
            .collect()
    }
}
