//! Rows to model types.

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::{Error, Result};
use crate::job::{Job, JobDetail};
use crate::report::BatchReport;
use crate::store::decode_status;

pub(crate) fn job_from_row(r: &PgRow) -> Result<Job> {
    let status: String = r.try_get("status")?;
    Ok(Job {
        id: r.try_get("id")?,
        job_type: r.try_get("type")?,
        target: r.try_get("target")?,
        status: decode_status(&status)?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        run_at: r.try_get("run_at")?,
        priority: r.try_get("priority")?,
        batch_id: r.try_get("batch_id")?,
        queue: r.try_get("queue")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
        node_id: r.try_get("node_id")?,
        traceparent: r.try_get("traceparent")?,
    })
}

/// A job and its attempt history (`GET_JOB_DETAIL`'s extra column).
pub(crate) fn job_detail_from_row(r: &PgRow) -> Result<JobDetail> {
    let history: Option<serde_json::Value> = r.try_get("attempt_history")?;
    JobDetail::new(job_from_row(r)?, history)
        .map_err(|e| Error::Database(sqlx::Error::Decode(Box::new(e))))
}

pub(crate) fn batch_from_row(r: &PgRow) -> Result<BatchReport> {
    Ok(BatchReport {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        job_type: r.try_get("type")?,
        total: r.try_get("total")?,
        succeeded: r.try_get("succeeded")?,
        failed: r.try_get("failed")?,
        cancelled: r.try_get("cancelled")?,
        pending: 0,
        progress: 0.0,
        created_at: r.try_get("created_at")?,
    }
    .derive())
}
