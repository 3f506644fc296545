//! The operators' queries on PostgreSQL: one job with its attempt history, bulk retry and
//! cancel, and retention's bounded deletes. The `Store` impl in `mod.rs` delegates here.

use sqlx::Row;
use uuid::Uuid;

use super::rows::job_detail_from_row;
use super::{ms, PgStore};
use crate::error::Result;
use crate::job::{Due, JobDetail};
use crate::store::{PruneRule, Selection};

impl PgStore {
    pub(super) async fn job_detail_op(&self, id: Uuid) -> Result<Option<JobDetail>> {
        let row = sqlx::query(&self.sql.get_job_detail)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_detail_from_row).transpose()
    }

    pub(super) async fn retry_jobs_op(&self, sel: &Selection, limit: i64) -> Result<Vec<Due>> {
        let rows = sqlx::query(&self.sql.retry_jobs)
            .bind(sel.status.map(|s| s.as_str()))
            .bind(&sel.job_type)
            .bind(sel.batch_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Due {
                    id: r.try_get(0)?,
                    priority: r.try_get(1)?,
                    queue: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub(super) async fn cancel_jobs_op(&self, sel: &Selection, limit: i64) -> Result<u64> {
        Ok(sqlx::query(&self.sql.cancel_jobs)
            .bind(&sel.job_type)
            .bind(sel.batch_id)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub(super) async fn prune_finished_op(&self, rule: &PruneRule, limit: i64) -> Result<u64> {
        Ok(sqlx::query(&self.sql.prune_finished)
            .bind(ms(rule.older_than))
            .bind(rule.status.as_str())
            .bind(&rule.job_type)
            .bind(&rule.except_types)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
