//! Unique jobs on PostgreSQL: which jobs take the keyed insert, and that insert, which the
//! schema's `insert_job` function does (the same function `add_job` calls, so every path
//! derives and checks keys alike; see `migrations/postgres/0006_unique_and_cron.sql`,
//! and 0012, which gave it the queue).

use std::collections::HashSet;

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::PgStore;
use crate::error::{Error, Result};
use crate::job::{Inserted, NewJob, Submitted};
use crate::store::{BatchOptions, INSERT_CHUNK};

impl PgStore {
    /// Of `types`, those whose jobs get a key derived from their target.
    pub(super) async fn unique_types(
        &self,
        conn: &mut PgConnection,
        types: &[&str],
    ) -> Result<HashSet<String>> {
        let rows = sqlx::query(&self.sql.unique_types)
            .bind(types)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// A batch of a type that derives unique keys: each target through `insert_job`. The
    /// batch counts only the jobs it got; a duplicate's id is the job it duplicates.
    pub(super) async fn insert_unique_batch(
        &self,
        conn: &mut PgConnection,
        batch_id: Uuid,
        job_type: &str,
        targets: Vec<serde_json::Value>,
        opts: &BatchOptions,
        queue: String,
    ) -> Result<Submitted> {
        let mut ids = Vec::with_capacity(targets.len());
        let mut duplicates = 0;
        for chunk in targets.chunks(INSERT_CHUNK) {
            let jobs: Vec<NewJob> = chunk
                .iter()
                .map(|t| NewJob {
                    max_attempts: opts.max_attempts,
                    run_at: opts.run_at,
                    priority: opts.priority,
                    queue: Some(queue.clone()),
                    ..NewJob::new(job_type, t.clone())
                })
                .collect();
            let refs: Vec<&NewJob> = jobs.iter().collect();
            let cids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
            for i in self
                .insert_keyed(conn, &refs, &cids, Some(batch_id))
                .await?
            {
                duplicates += u64::from(i.duplicate);
                ids.push(i.id);
            }
        }
        sqlx::query(&self.sql.set_batch_total)
            .bind(batch_id)
            .bind((ids.len() as u64 - duplicates) as i64)
            .execute(&mut *conn)
            .await?;
        Ok(Submitted {
            batch_id: Some(batch_id),
            ids,
            queue,
            duplicates,
        })
    }

    /// Inserts jobs one `insert_job` call each, in order, in the caller's transaction.
    /// `ids` are the ids the jobs get if they are not duplicates.
    pub(super) async fn insert_keyed(
        &self,
        conn: &mut PgConnection,
        jobs: &[&NewJob],
        ids: &[Uuid],
        batch_id: Option<Uuid>,
    ) -> Result<Vec<Inserted>> {
        let types: Vec<&str> = jobs.iter().map(|j| j.job_type.as_str()).collect();
        let targets: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.target).collect();
        let max: Vec<Option<i32>> = jobs.iter().map(|j| j.max_attempts).collect();
        let run_at: Vec<_> = jobs.iter().map(|j| j.run_at).collect();
        let prio: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
        let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.unique_key.as_deref()).collect();
        let for_ms: Vec<Option<i64>> = jobs
            .iter()
            .map(|j| {
                j.unique_for
                    .map(|w| w.as_millis().min(i64::MAX as u128) as i64)
            })
            .collect();
        let queues: Vec<Option<&str>> = jobs.iter().map(|j| j.queue.as_deref()).collect();
        let rows = sqlx::query(&self.sql.insert_keyed)
            .bind(ids)
            .bind(&types)
            .bind(&targets)
            .bind(&max)
            .bind(&run_at)
            .bind(&prio)
            .bind(&keys)
            .bind(&for_ms)
            .bind(batch_id)
            .bind(&queues)
            .fetch_all(&mut *conn)
            .await
            .map_err(refused)?;
        rows.iter()
            .map(|r| {
                Ok(Inserted {
                    id: r.try_get(0)?,
                    duplicate: r.try_get(1)?,
                    queue: r.try_get(2)?,
                })
            })
            .collect()
    }
}

/// `insert_job` refuses a target that lacks a field its type's key is made of (and other
/// bad input) with `invalid_parameter_value`: the caller's mistake, said as such.
pub(super) fn refused(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(d) = &e {
        if d.code().as_deref() == Some("22023") {
            return Error::Invalid(d.message().to_string());
        }
    }
    Error::Database(e)
}
