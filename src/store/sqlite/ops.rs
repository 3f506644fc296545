//! The operators' queries on SQLite: one job with its attempt history, bulk retry and
//! cancel, and retention's bounded deletes. The `Store` impl in `mod.rs` delegates here.

use sqlx::Row;
use uuid::Uuid;

use super::rows::{self, ids_json, job_detail_from_row, modifier};
use super::{sql, SqliteStore};
use crate::error::Result;
use crate::job::{Due, JobDetail};
use crate::store::{PruneRule, Selection};

impl SqliteStore {
    pub(super) async fn job_detail_op(&self, id: Uuid) -> Result<Option<JobDetail>> {
        let row = sqlx::query(sql::GET_JOB_DETAIL)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_detail_from_row).transpose()
    }

    pub(super) async fn retry_jobs_op(&self, sel: &Selection, limit: i64) -> Result<Vec<Due>> {
        let mut w = self.write().await?;
        let rows = sqlx::query(sql::RETRY_JOBS)
            .bind(sel.status.map(|s| s.as_str()))
            .bind(&sel.job_type)
            .bind(sel.batch_id.map(|b| b.to_string()))
            .bind(limit)
            .fetch_all(&mut *w.tx)
            .await?;
        w.tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    id: rows::uuid(r.try_get::<String, _>(0)?)?,
                    priority: r.try_get(1)?,
                    queue: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub(super) async fn cancel_jobs_op(&self, sel: &Selection, limit: i64) -> Result<u64> {
        // The SKIP LOCKED of this store: what our chunks hold when the request arrives is
        // running right now and is left alone, as a single cancel would refuse it, rather
        // than cancelled the moment its chunk lets go of the write turn.
        let running: Vec<Uuid> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let mut w = self.write().await?;
        let n = sqlx::query(sql::CANCEL_JOBS)
            .bind(&sel.job_type)
            .bind(sel.batch_id.map(|b| b.to_string()))
            .bind(ids_json(&running))
            .bind(limit)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.tx.commit().await?;
        Ok(n)
    }

    pub(super) async fn prune_finished_op(&self, rule: &PruneRule, limit: i64) -> Result<u64> {
        // One short write per call, so workers get their turns in between.
        let except = serde_json::Value::from(rule.except_types.clone()).to_string();
        let mut w = self.write().await?;
        let n = sqlx::query(sql::PRUNE_FINISHED)
            .bind(modifier(rule.older_than, -1))
            .bind(rule.status.as_str())
            .bind(&rule.job_type)
            .bind(except)
            .bind(limit)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
        w.tx.commit().await?;
        Ok(n)
    }
}
