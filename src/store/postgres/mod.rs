//! The PostgreSQL store: the production backend and the reference for every invariant.
//! Runner slots and chunk transactions are in [`chunk`]; named statements in [`sql`].

mod beat;
mod chunk;
mod copy;
mod listen;
mod ops;
mod rows;
pub mod sql;
mod unique;

use rows::{batch_from_row, job_from_row};
use sql::Statements;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, Row};
use uuid::Uuid;

use super::split_deleted;
use super::{
    decode_status, validate_batch, validate_schema, BatchOptions, JobFilter, NodeBeat, Outcome,
    PendingGroup, PruneRule, Scope, Selection, Slot, Store, Wake, INSERT_CHUNK,
};
use crate::error::{Error, Result};
use crate::job::{Due, Inserted, Job, JobDetail, JobStatus, NewJob, Submitted, DEFAULT_QUEUE};
use crate::processor::Policy;
use crate::report::{BatchReport, NodeReport, TypeCounts};
use futures::stream::BoxStream;

/// Abandoned intent records charged per statement (each names up to a chunk of jobs).
const ABANDONED_BATCH: i64 = 16;

/// How long start-up waits for the first connection before reporting why it failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// PostgreSQL store over a connection pool sized by the caller (concurrency plus headroom).
pub struct PgStore {
    pool: PgPool,
    schema: String,
    sql: Arc<Statements>,
    /// Each node's heartbeat session, outside the pool (see [`beat`]).
    beats: beat::Sessions,
}

impl PgStore {
    /// Connects eagerly, so a wrong URL or a server that is down fails at start-up.
    pub async fn connect(url: &str, schema: &str, pool_size: u32) -> Result<Self> {
        Self::connect_guarded(url, schema, pool_size, None).await
    }

    /// [`PgStore::connect`], with every session's `idle_in_transaction_session_timeout` set
    /// to `idle_tx_limit` (as a session default, which the reset after each job restores): a
    /// node stuck with a transaction open (paused, hung) is cut off by the server instead of
    /// pinning the cluster's xmin horizon and its row locks forever.
    pub async fn connect_guarded(
        url: &str,
        schema: &str,
        pool_size: u32,
        idle_tx_limit: Option<Duration>,
    ) -> Result<Self> {
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
        let opts = match idle_tx_limit {
            Some(d) => opts.options([(
                "idle_in_transaction_session_timeout",
                d.as_millis().clamp(1, i32::MAX as u128).to_string(),
            )]),
            None => opts,
        };
        // One direct connection first: a pool would retry a refused connection until its
        // acquire timeout and then say only "pool timed out", hiding "connection refused" or
        // "password authentication failed" for half a minute.
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => conn.close().await?,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(Error::Config(format!(
                    "no answer from the database within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        }
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
            beats: beat::Sessions::new((*pool.connect_options()).clone()),
            pool,
            schema: schema.to_string(),
            sql: Arc::new(Statements::new(schema)),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Inserts jobs inside the caller's open transaction, so that the caller's own rows and
    /// the jobs commit together. [`crate::Client::enqueue_in`] applies the types' policy and
    /// calls this; after commit the caller pushes the IDs ([`crate::Client::notify`]) or,
    /// failing that, the reconciler finds them.
    pub async fn insert_jobs_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<Uuid>> {
        let done = self.insert_checked_in(conn, jobs).await?;
        Ok(done.into_iter().map(|i| i.id).collect())
    }

    /// [`PgStore::insert_jobs_in`], saying of each job whether it was a duplicate (see
    /// [`NewJob::unique_key`]). Jobs without a key take the bulk insert; keyed ones (given a
    /// key, or of a type that derives one) take the schema's `insert_job`, in order.
    pub async fn insert_checked_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> Result<Vec<Inserted>> {
        for j in jobs {
            j.validate().map_err(Error::Invalid)?;
        }
        let mut types: Vec<&str> = jobs.iter().map(|j| j.job_type.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        let unique = self.unique_types(conn, &types).await?;
        let keyed = |j: &NewJob| j.unique_key.is_some() || unique.contains(&j.job_type);
        let mut out = Vec::with_capacity(jobs.len());
        let mut queue_of = std::collections::HashMap::new();
        for chunk in jobs.chunks(INSERT_CHUNK) {
            let cids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
            let plain: Vec<usize> = (0..chunk.len()).filter(|&i| !keyed(&chunk[i])).collect();
            if !plain.is_empty() {
                let ids: Vec<Uuid> = plain.iter().map(|&i| cids[i]).collect();
                let types: Vec<&str> = plain.iter().map(|&i| chunk[i].job_type.as_str()).collect();
                let targets: Vec<&serde_json::Value> =
                    plain.iter().map(|&i| &chunk[i].target).collect();
                let max: Vec<Option<i32>> = plain.iter().map(|&i| chunk[i].max_attempts).collect();
                let run_at: Vec<_> = plain.iter().map(|&i| chunk[i].run_at).collect();
                let prio: Vec<i16> = plain.iter().map(|&i| chunk[i].priority).collect();
                let queues: Vec<Option<&str>> =
                    plain.iter().map(|&i| chunk[i].queue.as_deref()).collect();
                let traces: Vec<Option<&str>> = plain
                    .iter()
                    .map(|&i| chunk[i].traceparent.as_deref())
                    .collect();
                let rows = sqlx::query(&self.sql.insert_jobs)
                    .bind(&ids)
                    .bind(&types)
                    .bind(&targets)
                    .bind(&max)
                    .bind(&run_at)
                    .bind(&prio)
                    .bind(&queues)
                    .bind(&traces)
                    .fetch_all(&mut *conn)
                    .await?;
                // RETURNING promises no order: match the queues back to the IDs.
                for r in &rows {
                    queue_of.insert(r.try_get::<Uuid, _>(0)?, r.try_get::<String, _>(1)?);
                }
            }
            let mut done: Vec<Inserted> = cids
                .iter()
                .map(|&id| Inserted {
                    id,
                    duplicate: false,
                    queue: queue_of
                        .remove(&id)
                        .unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
                })
                .collect();
            let keyed_at: Vec<usize> = (0..chunk.len()).filter(|&i| keyed(&chunk[i])).collect();
            if !keyed_at.is_empty() {
                let js: Vec<&NewJob> = keyed_at.iter().map(|&i| &chunk[i]).collect();
                let ids: Vec<Uuid> = keyed_at.iter().map(|&i| cids[i]).collect();
                let got = self.insert_keyed(conn, &js, &ids, None).await?;
                // A keyed job inserted (not a duplicate) keeps the trace it was submitted in.
                let (mut tids, mut tps) = (Vec::new(), Vec::new());
                for (&i, g) in keyed_at.iter().zip(&got) {
                    if let (false, Some(tp)) = (g.duplicate, chunk[i].traceparent.as_deref()) {
                        tids.push(g.id);
                        tps.push(tp);
                    }
                }
                if !tids.is_empty() {
                    sqlx::query(&self.sql.set_traceparents)
                        .bind(&tids)
                        .bind(&tps)
                        .execute(&mut *conn)
                        .await?;
                }
                for (i, g) in keyed_at.into_iter().zip(got) {
                    done[i] = g;
                }
            }
            out.extend(done);
        }
        Ok(out)
    }

    async fn migrate_inner(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // One migrator per schema at a time across every node; the lock ends with the
        // transaction. (sqlx's own lock is per database, so it is off: schemas are independent.)
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('skiplock.migrate.' || $1))")
            .bind(&self.schema)
            .execute(&mut *tx)
            .await?;
        let s = format!("\"{}\"", self.schema);
        let setup = format!("CREATE SCHEMA IF NOT EXISTS {s}; SET LOCAL search_path TO {s}");
        sqlx::Executor::execute(&mut *tx, setup.as_str()).await?;
        // Embedded at build time. Their names are unqualified: they run under the
        // `SET LOCAL search_path` above, so they land in this store's schema.
        let mut migrator = sqlx::migrate!("migrations/postgres");
        migrator.set_locking(false);
        migrator
            .run_direct(&mut *tx)
            .await
            .map_err(|e| Error::Config(format!("cannot migrate schema {s}: {e}")))?;
        tx.commit().await?;
        Ok(())
    }
}

/// Writes a chunk's outcomes: one statement for an all-succeeded chunk (the common case, and
/// what the raw SQL would run), one UNNEST statement otherwise. Only rows still pending change.
async fn record_outcomes(
    sql: &Statements,
    conn: &mut PgConnection,
    outcomes: &[Outcome],
    node_id: &str,
) -> Result<u64> {
    let (gone, kept) = split_deleted(outcomes);
    let mut n = 0;
    if !gone.is_empty() {
        let (deleted,): (i64,) = sqlx::query_as(&sql.delete_succeeded)
            .bind(&gone)
            .fetch_one(&mut *conn)
            .await?;
        n += deleted as u64;
    }
    let outcomes = &kept[..];
    if outcomes.is_empty() {
        return Ok(n);
    }
    let ids: Vec<Uuid> = outcomes.iter().map(Outcome::id).collect();
    let q = if outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Succeeded { .. }))
    {
        sqlx::query(&sql.record_successes).bind(&ids).bind(node_id)
    } else {
        let st: Vec<&str> = outcomes.iter().map(|o| o.status().as_str()).collect();
        let err: Vec<Option<&str>> = outcomes.iter().map(Outcome::error).collect();
        let delay: Vec<Option<i64>> = outcomes.iter().map(Outcome::delay_ms).collect();
        let took: Vec<Option<i64>> = outcomes.iter().map(Outcome::took_ms).collect();
        sqlx::query(&sql.record_outcomes)
            .bind(ids)
            .bind(st)
            .bind(err)
            .bind(delay)
            .bind(node_id)
            .bind(took)
    };
    Ok(n + q.execute(conn).await?.rows_affected())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn due_from_row(r: &sqlx::postgres::PgRow) -> Result<Due> {
    Ok(Due {
        id: r.try_get(0)?,
        priority: r.try_get(1)?,
        queue: r.try_get(2)?,
    })
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        self.migrate_inner().await
    }

    async fn insert_checked(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>> {
        let mut tx = self.pool.begin().await?;
        let done = self.insert_checked_in(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn cron_marks(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(&self.sql.cron_marks)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn cron_claim(
        &self,
        name: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        jobs: &[NewJob],
    ) -> Result<Option<Vec<Inserted>>> {
        let mut tx = self.pool.begin().await?;
        let q = match from {
            None => sqlx::query(&self.sql.cron_create).bind(name).bind(to),
            Some(f) => sqlx::query(&self.sql.cron_advance)
                .bind(name)
                .bind(f)
                .bind(to),
        };
        if q.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let done = self.insert_checked_in(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(Some(done))
    }

    async fn insert_batch(
        &self,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        opts: BatchOptions,
    ) -> Result<Submitted> {
        let max_attempts = validate_batch(job_type, &targets, &opts)?;
        let batch_id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        let (queue, max_attempts): (String, i32) = sqlx::query_as(&self.sql.resolve_batch)
            .bind(&opts.queue)
            .bind(job_type)
            .bind(max_attempts)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(&self.sql.insert_batch_row)
            .bind(batch_id)
            .bind(&opts.name)
            .bind(job_type)
            .bind(targets.len() as i64)
            .execute(&mut *tx)
            .await?;
        if !self.unique_types(&mut tx, &[job_type]).await?.is_empty() {
            let sub = self
                .insert_unique_batch(&mut tx, batch_id, job_type, targets, &opts, queue)
                .await?;
            tx.commit().await?;
            return Ok(sub);
        }
        let rows = copy::BatchRows {
            job_type,
            max_attempts,
            run_at: opts.run_at,
            priority: opts.priority,
            batch_id,
            queue: &queue,
            traceparent: opts.traceparent.as_deref(),
        };
        let table = sql::qualify("{s}.jobs", &self.schema);
        let ids: Vec<Uuid> = targets.iter().map(|_| Uuid::now_v7()).collect();
        // A COPY per chunk, as the INSERTs were: each fires the statement triggers over a
        // transition table that stays in memory.
        for (cids, chunk) in ids.chunks(INSERT_CHUNK).zip(targets.chunks(INSERT_CHUNK)) {
            rows.copy(&mut tx, &table, cids, chunk).await?;
        }
        tx.commit().await?;
        Ok(Submitted {
            batch_id: Some(batch_id),
            ids,
            queue,
            duplicates: 0,
        })
    }

    async fn slot(&self, node_id: &str, scope: &Scope) -> Result<Box<dyn Slot>> {
        Ok(Box::new(self.open_slot(node_id, scope).await?))
    }

    async fn settle(&self, outcomes: &[Outcome], node_id: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = record_outcomes(&self.sql, &mut tx, outcomes, node_id).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn due_pending(
        &self,
        limit: i64,
        node_stale: Duration,
        scope: &Scope,
    ) -> Result<Vec<Due>> {
        let rows = sqlx::query(&self.sql.due_pending)
            .bind(limit)
            .bind(ms(node_stale))
            .bind(&scope.queue)
            .bind(&scope.types[..])
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(due_from_row).collect()
    }

    async fn due_among(&self, ids: &[Uuid]) -> Result<Vec<Due>> {
        let rows = sqlx::query(&self.sql.due_among)
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(due_from_row).collect()
    }

    async fn publish_policy(&self, policy: &Policy) -> Result<()> {
        let mut types = Vec::new();
        let mut max = Vec::new();
        let mut fields: Vec<Option<serde_json::Value>> = Vec::new();
        let mut for_ms: Vec<Option<i64>> = Vec::new();
        let mut queues: Vec<Option<&str>> = Vec::new();
        for (t, o) in policy.types() {
            let u = policy.unique(t);
            types.push(t);
            max.push(o.max_attempts);
            fields.push(u.and_then(|u| (!u.fields.is_empty()).then(|| u.fields.clone().into())));
            for_ms.push(u.and_then(|u| u.window).map(|w| w.as_millis() as i64));
            queues.push(policy.queue(t));
        }
        sqlx::query(&self.sql.publish_policy)
            .bind(types)
            .bind(max)
            .bind(fields)
            .bind(for_ms)
            .bind(queues)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn wakeups(&self) -> Result<Option<BoxStream<'static, Wake>>> {
        Ok(Some(listen::wakeups(&self.pool, &self.schema).await?))
    }

    async fn heartbeat(&self, b: &NodeBeat) -> Result<()> {
        let mut slot = self.beats.get(&b.id).await?;
        let session = slot.as_mut().expect("opened by get");
        let done = beat::write(session, &self.sql.heartbeat, b).await;
        if done.is_err() {
            beat::reset(slot).await;
        }
        done?;
        Ok(())
    }

    async fn remove_node(&self, id: &str) -> Result<()> {
        self.beats.close(id).await;
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

    async fn extend_leases(&self, node_id: &str, ids: &[Uuid], ttl: Duration) -> Result<Vec<Uuid>> {
        // On the heartbeat session, so that renewals never queue behind the runners for a
        // pooled connection.
        let mut slot = self.beats.get(node_id).await?;
        let session = slot.as_mut().expect("opened by get");
        let kept = beat::renew(session, &self.sql.extend_leases, node_id, ids, ms(ttl)).await;
        if kept.is_err() {
            beat::reset(slot).await;
        }
        Ok(kept?)
    }

    async fn release_leases(&self, node_id: &str, ids: &[Uuid]) -> Result<u64> {
        Ok(sqlx::query(&self.sql.release_leases)
            .bind(ids)
            .bind(node_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn rescue_expired_leases(&self) -> Result<Vec<JobStatus>> {
        let statuses: Vec<String> = sqlx::query_scalar(&self.sql.rescue_expired)
            .fetch_all(&self.pool)
            .await?;
        statuses.iter().map(|s| decode_status(s)).collect()
    }

    async fn delete_dead_nodes(&self, stale: Duration) -> Result<u64> {
        Ok(sqlx::query(&self.sql.delete_dead_nodes)
            .bind(ms(stale))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn charge_abandoned(&self, stale: Duration) -> Result<Vec<JobStatus>> {
        let mut charged = Vec::new();
        loop {
            let (records, statuses): (i64, Vec<String>) =
                sqlx::query_as(&self.sql.charge_abandoned)
                    .bind(ms(stale))
                    .bind(ABANDONED_BATCH)
                    .fetch_one(&self.pool)
                    .await?;
            for s in &statuses {
                charged.push(decode_status(s)?);
            }
            if records < ABANDONED_BATCH {
                return Ok(charged);
            }
        }
    }

    async fn prune_jobs(&self, retention: Duration, limit: i64) -> Result<u64> {
        Ok(sqlx::query(&self.sql.prune)
            .bind(ms(retention))
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn prune_batches(&self, retention: Duration) -> Result<u64> {
        Ok(sqlx::query(&self.sql.prune_batches)
            .bind(ms(retention))
            .execute(&self.pool)
            .await?
            .rows_affected())
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

    async fn retry_job(&self, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query(&self.sql.retry_job)
            .bind(id)
            .bind(&self.schema)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn cancel_job(&self, id: Uuid) -> Result<Option<Job>> {
        let row = sqlx::query(&self.sql.cancel_job)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn batch(&self, id: Uuid) -> Result<Option<BatchReport>> {
        let row = sqlx::query(&self.sql.batch)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(batch_from_row).transpose()
    }

    async fn recent_batches(&self, limit: i64) -> Result<Vec<BatchReport>> {
        sqlx::query(&self.sql.recent_batches)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(batch_from_row)
            .collect()
    }

    async fn fold_counts(&self) -> Result<u64> {
        let (n,): (i64,) = sqlx::query_as(&self.sql.fold_counts)
            .bind(&self.schema)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn table_health(&self) -> Result<Option<crate::report::TableHealth>> {
        let row = sqlx::query(&self.sql.table_health)
            .bind(&self.schema)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(crate::report::TableHealth {
                live_rows: r.try_get("live_rows")?,
                dead_rows: r.try_get("dead_rows")?,
                last_vacuum: r.try_get("last_vacuum")?,
                autovacuum: r.try_get("autovacuum")?,
                oldest_transaction_secs: r.try_get("oldest_transaction_secs")?,
            })
        })
        .transpose()
    }

    async fn type_counts(&self) -> Result<Vec<TypeCounts>> {
        Ok(sqlx::query_as(&self.sql.type_counts)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn finished_buckets(&self) -> Result<Vec<(i64, i64)>> {
        sqlx::query(&self.sql.throughput)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((i64::from(r.try_get::<i32, _>("bucket")?), r.try_get("n")?)))
            .collect()
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
                    queues: r
                        .try_get::<sqlx::types::Json<_>, _>("queues")
                        .map(|j| j.0)
                        .unwrap_or_default(),
                    types: r
                        .try_get::<sqlx::types::Json<_>, _>("types")
                        .map(|j| j.0)
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn pending_groups(&self) -> Result<Vec<PendingGroup>> {
        sqlx::query(&self.sql.pending_groups)
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
        Ok(sqlx::query_scalar(&self.sql.oldest_pending)
            .bind(queue)
            .bind(job_type)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn fail_unrunnable(
        &self,
        queue: &str,
        job_type: &str,
        older: Duration,
        reason: &str,
        limit: i64,
    ) -> Result<u64> {
        Ok(sqlx::query(&self.sql.fail_unrunnable)
            .bind(queue)
            .bind(job_type)
            .bind(reason)
            .bind(ms(older))
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
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
